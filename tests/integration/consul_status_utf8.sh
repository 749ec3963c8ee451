#!/usr/bin/env bash
# `leaseway status --json` lists every instance Consul lists, also when a value is longer than
# the column it is kept in and not ASCII: a service Meta value, node name or check status is
# cut at a UTF-8 character boundary, never inside a character (jansson refuses a string that
# is not UTF-8, and the row used to vanish from the JSON). Found by tests/fuzz/fuzz_consul_json
# (corpus/fuzz_consul_json/regress-status-json-utf8-cut). Real Consul dev agent, real binary.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"
watchdog 60 "consul_status_utf8 timed out after 60 s"
BIN=${LEASEWAY_BIN:-$HERE/../../build/leaseway}

DIR=$(mktmp consul-status-utf8)
consul_dev_start "$DIR" || die "consul dev agent did not start"
SVC=utf8-$$
E40=$(printf 'é%.0s' $(seq 1 40)) # 80 bytes: more than the region and version columns hold
register() { # id region version
    curl -sf -m 5 -X PUT "$CONSUL_HTTP_ADDR/v1/agent/service/register" --data-binary @- <<JSON >/dev/null ||
{"ID": "$1", "Name": "$SVC", "Address": "127.0.0.1", "Port": 8080, "Tags": ["replica"],
 "Meta": {"region": "$2", "gate": "open", "version": "$3"}}
JSON
        die "service registration of $1 failed"
}
register i1 ams 0.1.0
register i2 "$E40" "$E40"

fails=0
out=$("$BIN" status --json --consul-addr "$CONSUL_HTTP_ADDR" --service "$SVC" 2>"$DIR/err") ||
    die "leaseway status --json failed: $(cat "$DIR/err")"
if got=$(python3 -c '
import json, sys
rows = json.loads(sys.argv[1])
ids = sorted(r["id"] for r in rows)
assert ids == ["i1", "i2"], "instances listed: %s" % ids
i2 = [r for r in rows if r["id"] == "i2"][0]
assert i2["region"] and set(i2["region"]) == {"\u00e9"}, "region %r" % i2["region"]
assert i2["version"] and set(i2["version"]) == {"\u00e9"}, "version %r" % i2["version"]
print("%d instances, i2 region %d characters" % (len(rows), len(i2["region"])))' "$out" 2>&1); then
    printf 'ok   - status --json lists both instances, values cut between characters: %s\n' "$got"
else
    fails=$((fails + 1))
    printf 'FAIL - status --json: %s\n  output: %s\n' "$got" "$(head -c 600 <<<"$out")"
fi
# the table too: both rows
if "$BIN" status --consul-addr "$CONSUL_HTTP_ADDR" --service "$SVC" >"$DIR/table" 2>&1 &&
    grep -q '^i1 ' "$DIR/table" && grep -q '^i2 ' "$DIR/table"; then
    printf 'ok   - the status table lists both instances\n'
else
    fails=$((fails + 1))
    printf 'FAIL - status table: %s\n' "$(head -c 600 "$DIR/table")"
fi
consul_dev_stop
[ "$fails" = 0 ]
