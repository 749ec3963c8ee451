#!/usr/bin/env bash
# --litefs-db read-your-writes, with the LiteFS position files simulated
# (tests/integration/litefs_*.sh run the same against a real LiteFS cluster):
# a write sets __txid from the primary's <db>-pos; a read on a replica with a
# newer __txid waits until the replica catches up and is served locally, or
# after --txid-wait goes to the primary. Never a 504. Duplicate __txid cookies:
# the newest valid one counts.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib/common.sh"
bin=${LEASEWAY_BIN:-$here/../../build/leaseway}
d=$(mktmp)
up1=$(free_port); up2=$(free_port); p1=$(free_port); p2=$(free_port); a1=$(free_port); a2=$(free_port)
python3 "$here/../lib/upstream.py" --port "$up1" --name primary-app >/dev/null 2>&1 &
register_pid $!
python3 "$here/../lib/upstream.py" --port "$up2" --name replica-app >/dev/null 2>&1 &
register_pid $!
mkdir -p "$d/p" "$d/r"
printf '0000000000000010/00000000000000aa\n' >"$d/p/db-pos"
printf '0000000000000005/00000000000000bb\n' >"$d/r/db-pos"
"$bin" run --instance P --listen "127.0.0.1:$p1" --target "127.0.0.1:$up1" --admin "127.0.0.1:$a1" --workers 1 \
    --litefs-db "$d/p/db" >"$d/p.log" 2>&1 &
register_pid $!
"$bin" run --instance R --listen "127.0.0.1:$p2" --target "127.0.0.1:$up2" --admin "127.0.0.1:$a2" --workers 1 \
    --litefs-db "$d/r/db" --static-primary "P=http://127.0.0.1:$p1" --txid-wait 1s >"$d/r.log" 2>&1 &
register_pid $!
for u in "http://127.0.0.1:$a1/health" "http://127.0.0.1:$a2/health" "http://127.0.0.1:$up1/echo" \
    "http://127.0.0.1:$up2/echo"; do
    wait_for "curl -sf $u" 10 || die "$u did not come up"
done
fails=0
check() { if eval "$2"; then echo "ok   - $1"; else echo "FAIL - $1"; fails=$((fails + 1)); fi; }
served_by() { python3 -c 'import json,sys; print(json.load(sys.stdin)["served_by"])'; }

h=$(curl -s -m 20 -D - -o /dev/null -X POST -d x "http://127.0.0.1:$p2/echo")
check "a write through the replica sets __txid from the primary's position" \
    'grep -q "Set-Cookie: __txid=0000000000000010; Path=/; Max-Age=300; HttpOnly; SameSite=Lax" <<<"$h"'
h=$(curl -s -m 20 -D - -o /dev/null -H 'X-Forwarded-Proto: https' -X POST -d x "http://127.0.0.1:$p1/echo")
check "... with Secure when the client came over TLS" 'grep -q "SameSite=Lax; Secure" <<<"$h"'
h=$(curl -s -m 20 -D - -o /dev/null "http://127.0.0.1:$p2/echo")
check "a read sets no __txid" '! grep -qi "__txid" <<<"$h"'

s=$(curl -s -m 20 -H 'Cookie: a=b; __txid=0000000000000005' "http://127.0.0.1:$p2/echo" | served_by)
check "a read the replica has caught up with is served locally ($s)" '[ "$s" = replica-app ]'

(sleep 0.3; printf '0000000000000010/00000000000000cc\n' >"$d/r/db-pos") &
t0=$(date +%s%N)
s=$(curl -s -m 20 -H 'Cookie: __txid=0000000000000010' "http://127.0.0.1:$p2/echo" | served_by)
ms=$((($(date +%s%N) - t0) / 1000000))
check "a read ahead of the replica waits for it (${ms} ms) and is served locally ($s)" \
    '[ "$s" = replica-app ] && [ "$ms" -ge 250 ] && [ "$ms" -lt 900 ]'

t0=$(date +%s%N)
code=$(curl -s -m 20 -o "$d/body" -w '%{http_code}' -H 'Cookie: __txid=00000000000000ff' "http://127.0.0.1:$p2/echo")
ms=$((($(date +%s%N) - t0) / 1000000))
s=$(served_by <"$d/body")
check "a replica still behind after --txid-wait sends the read to the primary ($code, $s, ${ms} ms), never 504" \
    '[ "$code" = 200 ] && [ "$s" = primary-app ] && [ "$ms" -ge 900 ]'

# The replica is at 0x10. A browser sends every cookie of that name it has (another Path or
# Domain), oldest first, maybe in two Cookie fields: the newest valid TXID is the one to wait for.
dup() { # label, then curl's header args: the read must wait and go to the primary
    local label=$1
    shift
    t0=$(date +%s%N)
    s=$(curl -s -m 20 "$@" "http://127.0.0.1:$p2/echo" | served_by)
    ms=$((($(date +%s%N) - t0) / 1000000))
    check "$label: waits and goes to the primary ($s, ${ms} ms)" '[ "$s" = primary-app ] && [ "$ms" -ge 900 ]'
}
dup "two __txid, the older first" -H 'Cookie: __txid=0000000000000001; __txid=00000000000000ff'
dup "a malformed __txid, then a valid newer one" -H 'Cookie: __txid=junk; __txid=00000000000000ff'
dup "__txid in two Cookie fields" -H 'Cookie: __txid=0000000000000001' -H 'Cookie: __txid=00000000000000ff'
# A read with a body cannot wait here: it goes to the primary, which has the data.
s=$(curl -s -m 20 -X GET -d x -H 'Cookie: __txid=00000000000000ff' "http://127.0.0.1:$p2/echo" | served_by)
check "a GET with a body and a newer __txid is served by the primary ($s)" '[ "$s" = primary-app ]'

rm -f "$d/r/db-pos"
t0=$(date +%s%N)
code=$(curl -s -m 20 -o "$d/body" -w '%{http_code}' -H 'Cookie: __txid=0000000000000001' "http://127.0.0.1:$p2/echo")
ms=$((($(date +%s%N) - t0) / 1000000))
s=$(served_by <"$d/body")
check "an unreadable position counts as behind, not as an error ($code, $s, ${ms} ms)" \
    '[ "$code" = 200 ] && [ "$s" = primary-app ] && [ "$ms" -ge 900 ]'

# Two databases whose cookie names would be the same are refused at start (and by --check).
out=$("$bin" run --check --instance X --listen 127.0.0.1:1 --target 127.0.0.1:2 --admin off \
    --litefs-db "$d/p/db" --litefs-db "$d/a/x.db" --litefs-db "$d/b/x.db" 2>&1)
rc=$?
check "--litefs-db /a/x.db and /b/x.db: refused, naming the cookie (rc $rc: $out)" \
    '[ "$rc" != 0 ] && grep -q "__txid_x_db" <<<"$out"'

[ "$fails" -eq 0 ] || die "$fails check(s) failed"
echo "all checks passed"
