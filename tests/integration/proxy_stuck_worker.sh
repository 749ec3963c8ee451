#!/usr/bin/env bash
# SIGTERM must end leaseway even when a worker thread is stuck in a system call that never
# returns. Here: --access-log is a FIFO whose reader never reads (an access log piped to a
# process that hangs, or a disk that takes no more writes), so once the pipe's buffer is full
# the worker blocks in write(2), as nginx's would. (A hung LiteFS mount no longer blocks a
# worker: its position reads run on a thread of their own, txid_pos_hang.sh.)
# The drain times out, the control thread stops everything it can, and then it must not
# wait for the stuck worker for ever: it logs the fact and exits with status 1 (not 0: a
# request was cut and a thread was left behind). Before that, the stuck worker closes the
# gate, and its recovery opens it again. Bounded: 60 s.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib/common.sh"
bin=${LEASEWAY_BIN:-$here/../../build/leaseway}
watchdog 60 "proxy_stuck_worker timed out after 60 s"
d=$(mktmp)
up=$(free_port); pp=$(free_port); ap=$(free_port)
python3 "$here/../lib/upstream.py" --port "$up" --name app >/dev/null 2>&1 &
register_pid $!
mkfifo "$d/access"
sleep 120 <"$d/access" & # holds the FIFO open for reading, and never reads
register_pid $!
"$bin" run --instance R --listen "127.0.0.1:$pp" --target "127.0.0.1:$up" --admin "127.0.0.1:$ap" --workers 1 \
    --access-log "$d/access" --drain-timeout 1s >"$d/lw.log" 2>&1 &
lw=$!
register_pid $lw
wait_for "curl -sf http://127.0.0.1:$ap/health" 10 || die "leaseway did not start"
fails=0
check() { if eval "$2"; then echo "ok   - $1"; else echo "FAIL - $1"; fails=$((fails + 1)); fi; }

# fill: each request writes a line of about 200 bytes; the pipe takes 64 KiB
fill() {
    curl -s -m 30 -o /dev/null "http://127.0.0.1:$pp/echo?fill=[1-2000]" &
    register_pid $!
    wait_for '! curl -s -m 1 -o /dev/null "http://127.0.0.1:$pp/echo"' 20 0.2
}
fill
code=$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$pp/echo")
check "the worker is stuck: a plain read gets no answer ($code)" '[ "$code" = 000 ]'

# The admin listener must not go on saying all is well: like HAProxy's watchdog, leaseway
# notices a worker whose loop has not run for 5 s, and closes the gate (/health 503, the
# Consul ready check critical) until it runs again.
health() { curl -s -m 2 -o "$d/health.body" -w '%{http_code}' "http://127.0.0.1:$ap/health"; }
wait_for '[ "$(health)" = 503 ]' 10 0.2
check "a stuck worker closes the gate: /health $(health) ($(head -c 200 "$d/health.body"))" \
    '[ "$(health)" = 503 ] && grep -q "worker 0" "$d/health.body"'
check "... and it is logged" 'grep -q "worker stuck" "$d/lw.log"'
# unblock it: something reads the access log
cat "$d/access" >/dev/null &
drain=$!
register_pid $drain
wait_for '[ "$(health)" = 200 ]' 10 0.2
check "once the worker runs again, the gate opens (/health $(health))" '[ "$(health)" = 200 ]'
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$pp/echo")
check "... and reads are answered ($code)" '[ "$code" = 200 ]'

# stuck again, for the shutdown
kill $drain
wait $drain 2>/dev/null
fill

t0=$(date +%s%N)
kill -TERM $lw
rc=timeout
for _ in $(seq 1 200); do
    if ! kill -0 $lw 2>/dev/null; then
        wait $lw
        rc=$?
        break
    fi
    sleep 0.1
done
ms=$((($(date +%s%N) - t0) / 1000000))
check "SIGTERM ends leaseway within 10 s although a worker never returns (${ms} ms, status $rc)" \
    '[ "$rc" != timeout ] && [ "$ms" -lt 10000 ]'
check "... with status 1" '[ "$rc" = 1 ]'
check "... and the log says which worker was left" 'grep -q "worker did not stop" "$d/lw.log"'
[ "$rc" = timeout ] && kill -KILL $lw 2>/dev/null
[ "$fails" -eq 0 ] || { tail -n 20 "$d/lw.log" >&2; die "$fails check(s) failed"; }
echo "all checks passed"
