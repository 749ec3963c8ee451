#!/usr/bin/env bash
# SPEC §2 step 9: a forwarded write that reaches a proxy which is not the
# primary is answered 421 before any app sees it; the sender re-resolves and
# retries once, then holds the write for a different primary until
# --hold-timeout, then gives the client 503 + Retry-After. A forged peer header
# without a secret configured gets the same 421, never the app.
# Three static-lease proxies: R forwards to M, which believes P is primary.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib/common.sh"
bin=${LEASEWAY_BIN:-$here/../../build/leaseway}
d=$(mktmp)
upr=$(free_port); upm=$(free_port); pr=$(free_port); pm=$(free_port); ar=$(free_port); am=$(free_port)
python3 "$here/../lib/upstream.py" --port "$upr" --name r-app >/dev/null 2>&1 &
register_pid $!
python3 "$here/../lib/upstream.py" --port "$upm" --name m-app >/dev/null 2>&1 &
register_pid $!
"$bin" run --instance M --listen "127.0.0.1:$pm" --target "127.0.0.1:$upm" --admin "127.0.0.1:$am" --workers 1 \
    --static-primary "P=http://127.0.0.1:9" >"$d/m.log" 2>&1 &
register_pid $!
"$bin" run --instance R --listen "127.0.0.1:$pr" --target "127.0.0.1:$upr" --admin "127.0.0.1:$ar" --workers 1 \
    --static-primary "M=http://127.0.0.1:$pm" --hold-timeout 3s >"$d/r.log" 2>&1 &
register_pid $!
for u in "http://127.0.0.1:$upr/echo" "http://127.0.0.1:$upm/echo" "http://127.0.0.1:$ar/health" \
    "http://127.0.0.1:$am/health"; do
    wait_for "curl -sf $u" 10 || die "$u did not come up"
done
fails=0
check() { if eval "$2"; then echo "ok   - $1"; else echo "FAIL - $1"; fails=$((fails + 1)); fi; }
posts() { curl -s "http://127.0.0.1:$1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["paths"].get("/upload",0))'; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k {print $2}'; }

t0=$(date +%s%N)
code=$(curl -s -m 20 -o "$d/body" -D "$d/head" -w '%{http_code}' -X POST -d x "http://127.0.0.1:$pr/upload")
ms=$((($(date +%s%N) - t0) / 1000000))
check "the client gets 503 after one retry and the hold timeout ($code, ${ms} ms)" \
    '[ "$code" = 503 ] && [ "$ms" -ge 2900 ] && [ "$ms" -lt 5000 ]'
check "... with Retry-After" 'grep -qi "^Retry-After: 1" "$d/head"'
check "M answered 421 twice, never touching its app" \
    '[ "$(metric "$am" "leaseway_requests_total{route=\"misdirected\",code=\"421\"}")" = 2 ] && [ "$(posts "$upm")" = 0 ]'
check "R's app never saw the write" '[ "$(posts "$upr")" = 0 ]'

code=$(curl -s -m 20 -o /dev/null -w '%{http_code}' -X POST -H 'Leaseway-Forwarded-By: someone' "http://127.0.0.1:$pm/upload")
check "a client claiming to be a peer at a non-primary gets 421 ($code), not the app" \
    '[ "$code" = 421 ] && [ "$(posts "$upm")" = 0 ]'
code=$(curl -s -m 20 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$pr/echo")
check "reads still served locally ($code)" '[ "$code" = 200 ]'

# A read that waited for replication (--litefs-db) and then goes to the primary is treated
# like the write above: M's inter-proxy 421 is never passed to the client.
mkdir -p "$d/lfs"
printf '0000000000000001/00000000000000aa\n' >"$d/lfs/db-pos"
pt=$(free_port); at=$(free_port)
"$bin" run --instance T --listen "127.0.0.1:$pt" --target "127.0.0.1:$upr" --admin "127.0.0.1:$at" --workers 1 \
    --static-primary "M=http://127.0.0.1:$pm" --litefs-db "$d/lfs/db" --txid-wait 300ms --hold-timeout 2s \
    >"$d/t.log" 2>&1 &
register_pid $!
wait_for "curl -sf http://127.0.0.1:$at/health" 10 || die "T did not come up"
before=$(metric "$am" "leaseway_requests_total{route=\"misdirected\",code=\"421\"}")
code=$(curl -s -m 20 -o /dev/null -D "$d/t.head" -w '%{http_code}' -H 'Cookie: __txid=00000000000000ff' \
    "http://127.0.0.1:$pt/echo")
after=$(metric "$am" "leaseway_requests_total{route=\"misdirected\",code=\"421\"}")
check "a read behind the replica, sent to a proxy that is not the primary: 503 + Retry-After, never its 421 ($code)" \
    '[ "$code" = 503 ] && grep -qi "^Retry-After: 1" "$d/t.head"'
check "... after one retry (M answered 421 $((after - before)) times)" '[ $((after - before)) = 2 ]'

[ "$fails" -eq 0 ] || { tail -n 20 "$d/r.log"; die "$fails check(s) failed"; }
echo "all checks passed"
