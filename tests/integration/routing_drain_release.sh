#!/usr/bin/env bash
# A write that arrives on a client's already-open keep-alive connection to a primary that has
# just given its lease away on SIGTERM (SPEC §7, docs/SPEC.md's draining deviation), on a real
# Consul dev agent. After the release the old primary goes on watching the lease key until it
# stops, so the write waits for the next primary (dr-b acquires within milliseconds) and is
# forwarded to it: 200 from dr-b's app, with the write in it. Never a connection closed
# without a byte, and no 503 for a write that a primary could take.
# Bounded: 60 s.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"

consul_test drain-release 60
trap 'rc=$?; [ $rc -eq 0 ] || show_tails 20 "$DIR"/lw-*.log; (exit $rc); cleanup' EXIT
KEY=leaseway/drainrel-$$/primary
IPS=(127.0.0.2 127.0.0.3)
IDS=(dr-a dr-b)
PUB=$(free_port) APP=$(free_port) ADM=$(free_port)
for i in 0 1; do
  "$PY" "$DEMO/app.py" --listen "${IPS[$i]}:$APP" --name "app-${IDS[$i]}" --db "$DIR/${IDS[$i]}.sqlite" --quiet \
    >>"$DIR/app-${IDS[$i]}.log" 2>&1 </dev/null &
  register_pid $!
done
for i in 0 1; do
  wait_for "curl -sf -m 1 http://${IPS[$i]}:$APP/healthz" 10 0.1 || die "demo app ${IDS[$i]} did not start"
done
for i in 0 1; do
  "$LEASEWAY_BIN" run --lease consul --lease-key "$KEY" --instance "${IDS[$i]}" --workers 1 \
    --listen "${IPS[$i]}:$PUB" --target "${IPS[$i]}:$APP" --admin "${IPS[$i]}:$ADM" \
    --advertise "http://${IPS[$i]}:$PUB" --consul-addr "$CONSUL_HTTP_ADDR" --service "drainrel-$$" \
    --lease-ttl 10s --lock-delay 1s --hold-timeout 5s --drain-timeout 5s >>"$DIR/lw-${IDS[$i]}.log" 2>&1 </dev/null &
  LW_PID[i]=$!
  register_pid "${LW_PID[$i]}"
  [ "$i" = 0 ] && { wait_for "curl -s -m 1 http://${IPS[0]}:$ADM/status | grep -Eq '\"role\": ?\"primary\"'" 15 0.1 || die "dr-a did not become primary"; }
done
wait_for "curl -s -m 1 http://${IPS[1]}:$ADM/status | grep -Eq '\"role\": ?\"replica\"'" 15 0.1 || die "dr-b is not a replica"

"$PY" - "${IPS[0]}" "$PUB" "${LW_PID[0]}" "$DIR/lw-dr-a.log" "${IPS[0]}:$APP" "${IPS[1]}:$APP" <<'EOF'
import json, os, signal, socket, sys, time, urllib.request
ip, port, pid, log, app_a, app_b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
fails = 0
def check(ok, msg):
    global fails
    print(("ok   - " if ok else "FAIL - ") + msg)
    fails += 0 if ok else 1
s = socket.create_connection((ip, port), timeout=10)
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
first = b""
while b"\r\n\r\n" not in first:
    first += s.recv(65536)
head, body = first.split(b"\r\n\r\n", 1)
clen = int([l.split(b":", 1)[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
while len(body) < clen:
    body += s.recv(65536)
check(first.startswith(b"HTTP/1.1 200"), "a keep-alive connection to the primary dr-a: first GET answered 200")
os.kill(pid, signal.SIGTERM)
t0 = time.time()
while b"release done" not in open(log, "rb").read() and time.time() - t0 < 10:
    time.sleep(0.005)
s.sendall(b"POST /write HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 14\r\n\r\nid=after-rel-1")
out = b""
try:
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
except OSError as e:
    print("#   recv: %r" % e)
head = out.split(b"\r\n\r\n", 1)[0].decode("latin-1")
print("#   answer after %.2f s: %r" % (time.time() - t0, head[:200]))
check(out != b"", "a POST on that connection after dr-a released the lease gets an answer, not a bare close")
check(time.time() - t0 < 2, "  ... within 2 s of the SIGTERM (not after --hold-timeout or the drain timeout)")
check(head.startswith("HTTP/1.1 200"), "  ... 200: the write waited for the next primary and was forwarded to it")
body = out.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in out else b""
check(b'"served_by": "app-dr-b"' in body or b'"served_by":"app-dr-b"' in body, "  ... served by dr-b's app: %r" % body[:120])
rows_b = [w["id"] for w in json.load(urllib.request.urlopen("http://%s/writes" % app_b, timeout=5))["writes"]]
rows_a = [w["id"] for w in json.load(urllib.request.urlopen("http://%s/writes" % app_a, timeout=5))["writes"]]
check("after-rel-1" in rows_b and "after-rel-1" not in rows_a, "  ... and only dr-b's app has the write")
sys.exit(1 if fails else 0)
EOF
rc=$?
echo "routing_drain_release: rc $rc"
exit $rc
