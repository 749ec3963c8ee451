#!/usr/bin/env bash
# A write held for a primary (SPEC §2) has been sent nowhere yet. If its client gives up and
# closes the connection while it waits, the write must be dropped, not applied later when the
# primary appears: a client that timed out and retried would otherwise have it applied twice
# (nginx, likewise, ends a request whose client closed: "client prematurely closed
# connection", 499). The same for an abrupt reset. A client that stays gets its answer.
# R names P primary (static lease); P's proxy is down at first, so R holds the write.
# Bounded: 60 s.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib/common.sh"
bin=${LEASEWAY_BIN:-$here/../../build/leaseway}
watchdog 60 "routing_hold_abandoned timed out after 60 s"
d=$(mktmp)
upp=$(free_port); upr=$(free_port); pp=$(free_port); pr=$(free_port); ar=$(free_port); ap=$(free_port)
python3 "$here/../lib/upstream.py" --port "$upp" --name p-app >/dev/null 2>&1 &
register_pid $!
python3 "$here/../lib/upstream.py" --port "$upr" --name r-app >/dev/null 2>&1 &
register_pid $!
"$bin" run --instance R --listen "127.0.0.1:$pr" --target "127.0.0.1:$upr" --admin "127.0.0.1:$ar" --workers 1 \
    --static-primary "P=http://127.0.0.1:$pp" --hold-timeout 10s >"$d/r.log" 2>&1 &
register_pid $!
for u in "http://127.0.0.1:$upp/echo" "http://127.0.0.1:$upr/echo" "http://127.0.0.1:$ar/health"; do
    wait_for "curl -sf $u" 10 || die "$u did not come up"
done
fails=0
check() { if eval "$2"; then echo "ok   - $1"; else echo "FAIL - $1"; fails=$((fails + 1)); fi; }
posts() { curl -s "http://127.0.0.1:$1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["paths"].get(sys.argv[1],0))' "$2"; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k {n = $2} END {print n + 0}'; }

# Two clients send a write and leave while it is held: one closes (FIN), one resets (RST).
python3 - "$pr" <<'EOF'
import socket, struct, sys, time
port = int(sys.argv[1])
fin = socket.create_connection(("127.0.0.1", port))
fin.sendall(b"POST /echo/left-fin HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
rst = socket.create_connection(("127.0.0.1", port))
rst.sendall(b"POST /echo/left-rst HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
time.sleep(1)
fin.close()
rst.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
rst.close()
EOF
sleep 0.5
check "before P is up, no held write was answered" \
    '[ "$(metric "$ar" "leaseway_requests_total{route=\"held\",code=\"200\"}")" = 0 ]'
# A third client stays: its write is answered once P comes up.
curl -s -m 15 -o "$d/stay.body" -w '%{http_code}' -X POST -d x "http://127.0.0.1:$pr/echo/stayed" >"$d/stay.code" &
stay=$!
register_pid $stay
sleep 0.5
"$bin" run --instance P --listen "127.0.0.1:$pp" --target "127.0.0.1:$upp" --admin "127.0.0.1:$ap" --workers 1 \
    --static-primary "P=http://127.0.0.1:$pp" >"$d/p.log" 2>&1 &
register_pid $!
wait "$stay"
check "the client that stayed gets its write answered 200 once P is up ($(cat "$d/stay.code"))" \
    '[ "$(cat "$d/stay.code")" = 200 ] && [ "$(posts "$upp" /echo/stayed)" = 1 ]'
sleep 1
check "the write whose client closed was never applied by P's app ($(posts "$upp" /echo/left-fin))" \
    '[ "$(posts "$upp" /echo/left-fin)" = 0 ]'
check "the write whose client reset was never applied by P's app ($(posts "$upp" /echo/left-rst))" \
    '[ "$(posts "$upp" /echo/left-rst)" = 0 ]'
check "R's own app saw none of the writes" \
    '[ "$(posts "$upr" /echo/left-fin)" = 0 ] && [ "$(posts "$upr" /echo/left-rst)" = 0 ] && [ "$(posts "$upr" /echo/stayed)" = 0 ]'
check "R counted the closed one as 499 (client closed request), as nginx logs it" \
    '[ "$(metric "$ar" "leaseway_requests_total{route=\"held\",code=\"499\"}")" -ge 1 ]'
[ "$fails" -eq 0 ] || { tail -n 20 "$d/r.log" >&2; die "$fails checks failed"; }
echo "PASS routing_hold_abandoned"
