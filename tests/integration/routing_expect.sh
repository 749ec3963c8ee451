#!/usr/bin/env bash
# Regression: a write that leaseway buffers (forwarded to the primary, so it
# can be held or retried) and that carries Expect: 100-continue must be told
# "100 Continue" by leaseway itself at once — curl would otherwise wait a
# second for it — and the app must not see the Expect field again.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/static_pair.sh
. "$here/../lib/static_pair.sh"
static_pair_start
head -c 100000 /dev/urandom >"$d/body"
t=$(curl -s -m 20 -o "$d/out" -w '%{http_code} %{time_total}' -H 'Expect: 100-continue' -X POST --data-binary @"$d/body" \
    "http://127.0.0.1:$p2/echo")
code=${t% *}
secs=${t#* }
echo "forwarded POST with Expect: $code in ${secs}s"
[ "$code" = 200 ] || die "expected 200, got $code"
python3 - "$secs" "$d/out" <<'PY' || die "see above"
import json, sys
secs, out = float(sys.argv[1]), json.load(open(sys.argv[2]))
assert secs < 0.8, "the client waited %.2fs for 100 Continue" % secs
assert out["served_by"] == "P-app", out["served_by"]
assert out["body_length"] == 100000
assert not any(h[0].lower() == "expect" for h in out["headers"]), "Expect reached the app"
print("ok - 100 Continue from leaseway, body intact on the primary, no Expect at the app")
PY
