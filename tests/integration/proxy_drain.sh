#!/usr/bin/env bash
# Graceful shutdown (SPEC §7): on SIGTERM the gate closes, new connections
# are refused, a request in flight still completes, idle keep-alive
# connections do not hold the exit, and the process exits 0; past
# --drain-timeout it exits anyway. SIGINT does the same; a second SIGINT
# stops at once.
. "$(dirname "$0")/../lib/proxy.sh"

start_upstream app

# --- in-flight request completes, new connections refused, exit 0 ------------------
start_leaseway --drain-timeout 5s
pyrun drain "$LW_PORT" "$LW_ADMIN" "$LW_PID" "$PX_TMP/term.t" <<'EOF'
import sys, os, time, signal, socket, threading, urllib.request, urllib.error
from rawhttp import Client, Check
ck = Check()
port, admin, pid, tfile = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

idle = Client(port)
idle.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
ck.eq("idle keep-alive connection: first request 200", idle.response().status, 200)

busy = Client(port, timeout=10)
t0 = time.monotonic()
busy.send(b"GET /slow?ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n")
time.sleep(0.3)
os.kill(pid, signal.SIGTERM)
open(tfile, "w").write("%f\n" % time.time())

# New connections: refused (listener closed) within 0.5 s.
refused_at = None
deadline = time.monotonic() + 1.0
while time.monotonic() < deadline:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=0.3)
        s.close()
    except ConnectionRefusedError:
        refused_at = time.monotonic() - t0 - 0.3
        break
    except OSError:
        pass
    time.sleep(0.05)
ck.ok("new connections refused soon after SIGTERM", refused_at is not None and refused_at < 0.5,
      "still accepting 1 s after SIGTERM" if refused_at is None else "after %.2fs" % refused_at)

# The gate is closed while draining: /health is not 200 (503, or the admin is gone).
try:
    code = urllib.request.urlopen("http://127.0.0.1:%d/health" % admin, timeout=1).status
except urllib.error.HTTPError as e:
    code = e.code
except OSError as e:
    code = "unreachable"
ck.ok("/health during the drain is not 200", code != 200, "got %r" % code)

# The idle keep-alive connection: closed, or answered 503 / Connection: close.
if idle.closed(0.8):
    ck.ok("idle keep-alive connection closed by the drain", True)
else:
    try:
        idle.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
        r = idle.response()
        ck.ok("request on an idle connection during the drain: 503 draining or Connection: close",
              r.status == 503 or r.has_token("connection", "close"), "got %d %r" % (r.status, r.get("connection")))
    except Exception as e:
        ck.ok("idle keep-alive connection closed by the drain", True)

r = busy.response()
secs = time.monotonic() - t0
ck.eq("in-flight request completes with 200", (r.status, r.json().get("slept_ms")), (200, 1500))
ck.ok("... in ~1.5 s", secs < 2.5, "%.2fs" % secs)
ck.warn("... with Connection: close", r.has_token("connection", "close"), "got %r" % r.get("connection"))
ck.ok("... and then the connection is closed", busy.closed(2))
ck.done()
EOF
t_term=$(cat "$PX_TMP/term.t" 2>/dev/null || date +%s.%N)
stop_leaseway TERM 8
took=$(awk -v a="$t_term" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
expect_eq "exit status after SIGTERM" "$LW_EXIT" 0
check "exited within 3 s of SIGTERM (took ${took}s, drain-timeout 5s)" px_lt "$took" 3

# --- idle keep-alive connections do not hold the exit ---------------------------------
start_leaseway --drain-timeout 10s
"$PYTHON" - "$LW_PORT" <<'EOF' &
import sys, time
from rawhttp import Client
c = Client(int(sys.argv[1]))
c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n"); c.response()
time.sleep(15)
EOF
holder=$!
px_register_pid "$holder"
sleep 0.5
t=$(px_now)
stop_leaseway TERM 12
took=$(px_since "$t")
expect_eq "idle connections only: exit status" "$LW_EXIT" 0
check "idle connections only: exit within 2 s of SIGTERM (took ${took}s, drain-timeout 10s)" px_lt "$took" 2
kill "$holder" 2>/dev/null

# --- past --drain-timeout: exit anyway ------------------------------------------------
start_leaseway --drain-timeout 1s
curl -s -m 10 -o /dev/null "$LW_URL/slow?ms=6000" &
px_register_pid $!
sleep 0.3
t=$(px_now)
stop_leaseway TERM 8
took=$(px_since "$t")
check "a request longer than --drain-timeout 1s: exit within 2.5 s (took ${took}s)" px_lt "$took" 2.5
warn_unless "exit status 0 after the drain timeout (got $LW_EXIT)" [ "$LW_EXIT" = 0 ]

# --- two workers, a request in flight on each ---------------------------------
LW_WORKERS=2 start_leaseway --drain-timeout 5s
curls=()
for i in 1 2 3 4; do
    curl -s -m 10 -o "$PX_TMP/w$i.json" -w '%{http_code}' "$LW_URL/slow?ms=1200" >"$PX_TMP/w$i.code" &
    curls+=($!)
    px_register_pid $!
done
sleep 0.4
t=$(px_now)
stop_leaseway TERM 8
took=$(px_since "$t")
wait "${curls[@]}"
codes=$(for f in "$PX_TMP"/w?.code; do printf '%s ' "$(cat "$f")"; done)
expect_eq "--workers 2: four requests in flight all complete after SIGTERM" "$codes" "200 200 200 200 "
expect_eq "--workers 2: exit status" "$LW_EXIT" 0
check "--workers 2: exit within 2.5 s (took ${took}s)" px_lt "$took" 2.5

# --- SIGINT ---------------------------------------------------------------------------
start_leaseway --drain-timeout 5s
t=$(px_now)
stop_leaseway INT 8
took=$(px_since "$t")
expect_eq "SIGINT: exit status" "$LW_EXIT" 0
check "SIGINT, nothing in flight: exit within 1.5 s (took ${took}s)" px_lt "$took" 1.5

# --- a second SIGINT (Ctrl-C twice) stops at once ----------------------------------------
# The first one drains; the second gives up waiting for what is in flight (as a drain timeout
# does: the lease is released, the exit status is 0).
start_leaseway --drain-timeout 20s
curl -s -m 15 -o /dev/null "$LW_URL/slow?ms=10000" &
px_register_pid $!
sleep 0.3
t=$(px_now)
kill -s INT "$LW_PID"
sleep 0.5
check "first SIGINT: still draining the 10 s request" kill -0 "$LW_PID"
stop_leaseway INT 8
took=$(px_since "$t")
expect_eq "second SIGINT: exit status 0" "$LW_EXIT" 0
check "second SIGINT: exit within 2 s of the first (took ${took}s, drain-timeout 20s)" px_lt "$took" 2
check "second SIGINT: logged" grep -q 'msg="second interrupt: stopping now"' "$LW_LOG"

# --- SIGHUP, SIGUSR1, SIGUSR2: logged and ignored; SIGQUIT: a graceful stop ---------------
# An nginx operator's reflexes: HUP (reload), USR1 (reopen logs) must not kill leaseway
# without a drain or a lease release (it has no reload: its log says so); QUIT is nginx's
# graceful shutdown, and is leaseway's too.
start_leaseway --drain-timeout 5s
for sig in HUP USR1 USR2; do
    kill -s "$sig" "$LW_PID"
    sleep 0.3
    expect_eq "SIG$sig: still running and serving" \
        "$(kill -0 "$LW_PID" 2>/dev/null && curl -s -m 5 -o /dev/null -w '%{http_code}' "$LW_URL/echo")" 200
done
expect_eq "SIGHUP, SIGUSR1, SIGUSR2: each logged as ignored" \
    "$(grep -c 'msg="signal ignored"' "$LW_LOG")" 3
check "the log says a restart applies configuration" grep -q 'restart leaseway to apply' "$LW_LOG"
t=$(px_now)
stop_leaseway QUIT 8
took=$(px_since "$t")
expect_eq "SIGQUIT: exit status 0" "$LW_EXIT" 0
check "SIGQUIT: drained like SIGTERM" grep -q 'msg="shutting down" cause=SIGQUIT' "$LW_LOG"

finish
