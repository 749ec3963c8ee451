#!/usr/bin/env bash
# A hung LiteFS must not stop a worker. --litefs-db's <db>-pos file is on LiteFS's FUSE mount;
# when the LiteFS daemon hangs (stopped, deadlocked), open(2) and read(2) of it never return.
# Here each position file is a FIFO with no writer, which blocks open(2) the same way (the
# real-LiteFS version, with SIGSTOP, is litefs_pos_hang.sh).
#
# Contract: leaseway reads the positions on a thread of its own and waits at most 100 ms for
# an answer (then not at all until the read returns), so
#   - on the replica, a read carrying a newer __txid counts as behind: after --txid-wait it
#     goes to the primary (as when the file cannot be read); the worker meanwhile answers
#     everything else at once;
#   - on the primary, a write is answered without a __txid cookie rather than not at all;
#   - the log says which position file does not answer, and when it answers again;
#   - once the file answers again, all is as before (a caught-up read is served locally, a
#     write sets __txid);
#   - SIGTERM ends leaseway with status 0 although a position read is still stuck.
# Bounded: 90 s.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib/common.sh"
bin=${LEASEWAY_BIN:-$here/../../build/leaseway}
watchdog 90 "txid_pos_hang timed out after 90 s"
d=$(mktmp)
up1=$(free_port); up2=$(free_port); p1=$(free_port); p2=$(free_port); a1=$(free_port); a2=$(free_port)
python3 "$here/../lib/upstream.py" --port "$up1" --name primary-app >/dev/null 2>&1 &
register_pid $!
python3 "$here/../lib/upstream.py" --port "$up2" --name replica-app >/dev/null 2>&1 &
register_pid $!
mkdir -p "$d/p" "$d/r"
mkfifo "$d/p/db-pos" "$d/r/db-pos"
# writers for the FIFOs at the end, so that no open(2) stays blocked after the test
trap 'exec 7<>"$d/p/db-pos" 8<>"$d/r/db-pos"; cleanup' EXIT
"$bin" run --instance P --listen "127.0.0.1:$p1" --target "127.0.0.1:$up1" --admin "127.0.0.1:$a1" --workers 1 \
    --litefs-db "$d/p/db" >"$d/p.log" 2>&1 &
lwp=$!
register_pid $lwp
"$bin" run --instance R --listen "127.0.0.1:$p2" --target "127.0.0.1:$up2" --admin "127.0.0.1:$a2" --workers 1 \
    --litefs-db "$d/r/db" --static-primary "P=http://127.0.0.1:$p1" --txid-wait 1s --drain-timeout 2s \
    >"$d/r.log" 2>&1 &
lwr=$!
register_pid $lwr
for u in "http://127.0.0.1:$a1/health" "http://127.0.0.1:$a2/health" "http://127.0.0.1:$up1/echo" \
    "http://127.0.0.1:$up2/echo"; do
    wait_for "curl -sf $u" 10 || die "$u did not come up"
done
fails=0
check() { if eval "$2"; then echo "ok   - $1"; else echo "FAIL - $1"; fails=$((fails + 1)); fi; }
served_by() { python3 -c 'import json,sys; print(json.load(sys.stdin)["served_by"])' 2>/dev/null; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# timed OUT ARGS... — curl with -m 10; sets CODE, MS, and the body in $d/$OUT
timed() {
    local out=$1 t0
    shift
    t0=$(now_ms)
    CODE=$(curl -s -m 10 -o "$d/$out" -D "$d/$out.h" -w '%{http_code}' "$@")
    MS=$(($(now_ms) - t0))
}
# unblock FILE HEX — the position file answers again: a plain file with that TXID, and a
# writer for any open(2) still waiting on the FIFO
unblock() {
    ln "$1" "$1.fifo"
    printf '%s/00000000000000aa\n' "$2" >"$1.new"
    mv "$1.new" "$1"
    # (a subshell: the reader may close the FIFO before this write, and SIGPIPE ends the writer)
    (printf '%s/00000000000000aa\n' "$2" >"$1.fifo") 2>/dev/null || true
    rm -f "$1.fifo"
}

# --- the replica's position file hangs -------------------------------------------------
timed ahead -H 'Cookie: __txid=00000000000000ff' "http://127.0.0.1:$p2/echo" &
ahead=$!
sleep 0.3
timed plain "http://127.0.0.1:$p2/echo"
check "while a position read hangs, the replica's worker answers a plain read ($CODE in $MS ms)" \
    '[ "$CODE" = 200 ] && [ "$MS" -lt 1000 ] && [ "$(served_by <"$d/plain")" = replica-app ]'
timed h2 "http://127.0.0.1:$a2/health"
check "... /health stays 200 (no worker is stuck: $CODE)" '[ "$CODE" = 200 ]'
wait $ahead
# timed ran in a subshell: read what it left
code=$(cat "$d/ahead.h" 2>/dev/null | head -n1 | awk '{print $2}')
s=$(served_by <"$d/ahead")
check "the read with a newer __txid counts as behind and goes to the primary after --txid-wait ($code, $s)" \
    '[ "$code" = 200 ] && [ "$s" = primary-app ]'
check "the replica logs which position file does not answer" \
    'grep -q "LiteFS position read does not answer" "$d/r.log" && grep -q "r/db-pos" "$d/r.log"'
timed again -H 'Cookie: __txid=00000000000000ff' "http://127.0.0.1:$p2/echo"
check "a second read ahead does not wait for the stuck read either ($CODE, $(served_by <"$d/again"), $MS ms)" \
    '[ "$CODE" = 200 ] && [ "$(served_by <"$d/again")" = primary-app ] && [ "$MS" -lt 5000 ]'

# --- the primary's position file hangs --------------------------------------------------
timed w1 -X POST -d x "http://127.0.0.1:$p1/echo"
check "a write on the primary is answered without __txid ($CODE in $MS ms)" \
    '[ "$CODE" = 200 ] && [ "$MS" -lt 3000 ] && ! grep -qi "__txid" "$d/w1.h"'
timed w2 -X POST -d x "http://127.0.0.1:$p2/echo"
check "a write forwarded by the replica too ($CODE in $MS ms, $(served_by <"$d/w2"))" \
    '[ "$CODE" = 200 ] && [ "$MS" -lt 3000 ] && [ "$(served_by <"$d/w2")" = primary-app ] && ! grep -qi "__txid" "$d/w2.h"'
timed w3 -X POST -d x "http://127.0.0.1:$p1/echo"
check "... and while the read is still stuck, the next write does not wait for it ($MS ms)" \
    '[ "$CODE" = 200 ] && [ "$MS" -lt 1000 ]'
check "the primary logs it" 'grep -q "LiteFS position read does not answer" "$d/p.log"'

# --- both answer again ----------------------------------------------------------------
unblock "$d/r/db-pos" 0000000000000010
unblock "$d/p/db-pos" 0000000000000012
wait_for 'grep -q "LiteFS position read answers again" "$d/r.log"' 10 0.1
check "the replica logs that its position file answers again" 'grep -q "LiteFS position read answers again" "$d/r.log"'
timed local -H 'Cookie: __txid=0000000000000010' "http://127.0.0.1:$p2/echo"
check "then a read the replica has caught up with is served locally ($CODE, $(served_by <"$d/local"), $MS ms)" \
    '[ "$CODE" = 200 ] && [ "$(served_by <"$d/local")" = replica-app ] && [ "$MS" -lt 900 ]'
timed w4 -X POST -d x "http://127.0.0.1:$p1/echo"
check "and a write on the primary sets __txid again ($CODE)" \
    '[ "$CODE" = 200 ] && grep -q "Set-Cookie: __txid=0000000000000012;" "$d/w4.h"'

# --- stop while a position read hangs -----------------------------------------------------
rm -f "$d/r/db-pos"
mkfifo "$d/r/db-pos"
timed stuck -H 'Cookie: __txid=00000000000000ff' "http://127.0.0.1:$p2/echo" &
sleep 0.5
t0=$(now_ms)
kill -TERM $lwr
rc=timeout
for _ in $(seq 1 150); do
    if ! kill -0 $lwr 2>/dev/null; then
        wait $lwr
        rc=$?
        break
    fi
    sleep 0.1
done
ms=$(($(now_ms) - t0))
check "SIGTERM ends the replica with status 0 although a position read hangs (status $rc, $ms ms)" \
    '[ "$rc" = 0 ] && [ "$ms" -lt 10000 ]'
[ "$rc" = timeout ] && kill -KILL $lwr 2>/dev/null

[ "$fails" -eq 0 ] || { tail -n 20 "$d/r.log" "$d/p.log" >&2; die "$fails check(s) failed"; }
echo "all checks passed"
