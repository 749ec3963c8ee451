#!/usr/bin/env bash
# Timeouts (SPEC §3): a slowloris client that dribbles its headers gets 408
# after --header-timeout (a total budget, not a per-read one) while normal
# clients are served; silent and idle connections are closed; an app slower
# than --upstream-timeout gets 504, while an app that keeps talking (SSE)
# or answers in time is not cut off.
. "$(dirname "$0")/../lib/proxy.sh"

start_upstream app
start_leaseway --header-timeout 2s --idle-timeout 4s --upstream-timeout 1s

pyrun slowloris "$LW_PORT" <<'EOF'
import sys, time, threading, subprocess, select
from rawhttp import Client, Check
ck = Check()
port = int(sys.argv[1])

# Normal clients, all along: a fresh curl every 0.25 s.
results = []
stop = False
def normal():
    while not stop:
        t = time.monotonic()
        out = subprocess.run(["curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
                              "http://127.0.0.1:%d/echo" % port], capture_output=True).stdout.decode()
        results.append((out, time.monotonic() - t))
        time.sleep(0.25)
th = threading.Thread(target=normal); th.start()

# Ten slowloris connections, one byte every 200 ms.
req = b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n"
outcome = {}
def loris(i):
    c = Client(port, timeout=10)
    t0 = time.monotonic()
    try:
        for b in req:
            # Stop writing once the proxy has answered (writing into a closed
            # socket would draw a RST that can destroy the unread answer).
            if select.select([c.sock], [], [], 0)[0]:
                break
            c.send(bytes([b]))
            time.sleep(0.2)
            if time.monotonic() - t0 > 8:
                break
        else:
            outcome[i] = ("sent everything", time.monotonic() - t0, None, False)
    except OSError:
        pass
    try:
        r = c.response()
        outcome[i] = (r.status, time.monotonic() - t0, r, c.closed(2))
    except Exception as e:
        outcome[i] = ("no response: %r" % e, time.monotonic() - t0, None, True)
ts = [threading.Thread(target=loris, args=(i,)) for i in range(10)]
for t in ts: t.start()
for t in ts: t.join()
stop = True; th.join()

st, secs, r, closed = outcome[0]
print("     slowloris #0: %r after %.2fs" % (st, secs))
ck.eq("slowloris: 408 Request Timeout", st, 408)
ck.ok("slowloris: cut off after ~2 s (header timeout is a total budget)", 1.7 <= secs <= 4.0, "%.2fs" % secs)
if r is not None:
    ck.ok("408: Connection: close", r.has_token("connection", "close"), "got %r" % r.get("connection"))
    ck.ok("408: one-line body", r.body.count(b"\n") <= 1 and len(r.body.strip()) > 0, "got %r" % r.body[:200])
    ck.eq("408: Fly-Instance", r.get("fly-instance"), "i1")
ck.ok("408: connection closed", closed)
ck.eq("all ten slowloris connections got 408", sorted(str(o[0]) for o in outcome.values()), ["408"] * 10)
codes = [c for c, _ in results]
slow = [round(t, 2) for _, t in results if t > 2.0]
ck.ok("normal clients served meanwhile (%d requests)" % len(results), len(results) >= 5 and all(c == "200" for c in codes), "codes %r" % codes)
ck.ok("normal clients not held up by the slowloris (none > 2 s)", not slow, "slow: %r" % slow)

# A connection that never sends a byte is closed after the header timeout.
c = Client(port, timeout=10)
t0 = time.monotonic()
closed = False
try:
    c.settimeout(8)
    data = c.sock.recv(65536)
    closed = True
    print("     silent connection: got %r after %.2fs" % (data[:40], time.monotonic() - t0))
except Exception as e:
    closed = "reset" in repr(e).lower()
ck.ok("silent connection closed within ~2-4 s", closed and time.monotonic() - t0 < 4.5, "%.2fs" % (time.monotonic() - t0))

# Idle keep-alive: closed after --idle-timeout 4s, not by the 2 s header timeout.
c = Client(port, timeout=10)
c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
ck.eq("keep-alive request: 200", c.response().status, 200)
t0 = time.monotonic()
ck.ok("idle keep-alive connection closed by --idle-timeout", c.closed(8))
idle = time.monotonic() - t0
print("     idle connection closed after %.2fs" % idle)
ck.ok("idle keep-alive closed after ~4 s (3.5-6 s)", 3.5 <= idle <= 6.0, "%.2fs" % idle)
ck.done()
EOF

pyrun upstream-timeout "$LW_PORT" <<'EOF'
import sys, time
from rawhttp import Client, Check
ck = Check()
port = int(sys.argv[1])

c = Client(port)
t0 = time.monotonic()
c.send(b"GET /slow?ms=3000 HTTP/1.1\r\nHost: t\r\n\r\n")
r = c.response()
secs = time.monotonic() - t0
ck.eq("app slower than --upstream-timeout: 504", r.status, 504)
ck.ok("504 after ~1 s", 0.8 <= secs <= 2.5, "%.2fs" % secs)
ck.ok("504: one-line body", r.body.count(b"\n") <= 1 and len(r.body.strip()) > 0, "got %r" % r.body[:200])
ck.ok("504: Connection: close", r.has_token("connection", "close"), "got %r" % r.get("connection"))
ck.eq("504: Fly-Instance", r.get("fly-instance"), "i1")
ck.ok("504: connection closed", c.closed(2))

c = Client(port)
c.send(b"GET /slow?ms=400 HTTP/1.1\r\nHost: t\r\n\r\n")
ck.eq("app answering in 0.4 s (< 1 s timeout): 200", c.response().status, 200)

# 5 events, 700 ms apart: 2.8 s in all, but never 1 s of silence.
c.send(b"GET /sse?n=5&ms=700 HTTP/1.1\r\nHost: t\r\n\r\n")
r = c.response()
ck.eq("SSE with 700 ms gaps outlives a 1 s silence timeout", (r.status, r.body.count(b"data:")), (200, 5))
c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
ck.eq("proxy fine after the 504", c.response().status, 200)
ck.done()
EOF

# --- timers must track the side being waited on -----------------------------
# A slow client holds the proxy back (backpressure): the app is not silent,
# the proxy is simply not reading it, so --upstream-timeout 1s must not fire.
n=$((40 * 1024 * 1024))
got=$(curl -s -m 30 --limit-rate 10M -o /dev/null -w '%{http_code} %{size_download}' "$LW_URL/bytes?n=$n")
expect_eq "slow client (10 MB/s, 4 s) with --upstream-timeout 1s: complete download" "$got" "200 $n"

pyrun slow-body "$LW_PORT" <<'EOF'
import sys, time
from rawhttp import Client, Check
ck = Check()
port = int(sys.argv[1])
with ck.step("slow request body"):
    # The client pauses 1.5 s between pieces of its body: the proxy waits on
    # the client, not the app; neither the 1 s upstream timeout nor the 2 s
    # header timeout applies.
    c = Client(port)
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nabc")
    time.sleep(1.5); c.send(b"def"); time.sleep(1.5); c.send(b"ghi")
    r = c.response()
    ck.eq("body sent in 3 pieces 1.5 s apart: 200 and the whole body", (r.status, r.json().get("body_head") if r.status == 200 else r.body[:80]), (200, "abcdefghi"))
ck.done()
EOF

# Regression: an answer still being sent after the app had finished (the
# client reads its end slowly) ran on the send clock; once it was all sent,
# the connection was left with no clock at all and stayed open, instead of
# going back to --idle-timeout 4s.
pyrun slow-reader-idle "$LW_PORT" <<'EOF'
import socket, sys, time
from rawhttp import Check
ck = Check()
port = int(sys.argv[1])
n = 8 * 1024 * 1024
s = socket.socket()
# A small window and small segments keep the proxy's send buffer small, as on a real
# network: its last 256 KiB then take several sends after the app is done.
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
s.connect(("127.0.0.1", port))
s.sendall(b"GET /bytes?n=%d HTTP/1.1\r\nHost: t\r\n\r\n" % n)
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
head, body = buf.split(b"\r\n\r\n", 1)
got = len(body)
while got < n:
    # the last 1.5 MiB, long after the app is done: 32 KiB every 0.1 s
    slow = got > n - 1536 * 1024
    d = s.recv(min(32768 if slow else 65536, n - got))
    if not d:
        break
    got += len(d)
    if slow:
        time.sleep(0.1)
ck.eq("8 MiB answer, its end read slowly: all of it", (head.split(b"\r\n")[0], got), (b"HTTP/1.1 200 OK", n))
t0 = time.monotonic()
s.settimeout(10)
try:
    closed = s.recv(1) == b""
except socket.timeout:
    closed = False
except OSError:
    closed = True
idle = time.monotonic() - t0
ck.ok("then idle: closed by --idle-timeout 4s (within 6 s of the last byte)", closed and idle <= 6.0, "closed=%s after %.2fs" % (closed, idle))
ck.done()
EOF

# Regression: a client that stops reading for a while (2.5 s) holds the proxy back; the app
# is not silent, so --upstream-timeout 1s must not fire (it did, and cut the answer at about
# 4 MB). The app's silence is timed only while the proxy is reading it, as nginx's
# proxy_read_timeout is. A client that stops for good is still closed by --idle-timeout 4s.
pyrun paused-reader "$LW_PORT" <<'EOF'
import socket, sys, time
from rawhttp import Check
ck = Check()
port = int(sys.argv[1])

def download(n, pause):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /bytes?n=%d HTTP/1.1\r\nHost: t\r\n\r\n" % n)
    data = s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    got = len(body)
    time.sleep(pause)
    closed = False
    try:
        while got < n:
            d = s.recv(1 << 20)
            if not d:
                closed = True
                break
            got += len(d)
    except OSError:
        closed = True
    s.close()
    return head.split(b"\r\n")[0], got, closed

n = 64 << 20
status, got, closed = download(n, 2.5)
ck.eq("client pausing 2.5 s mid-answer, --upstream-timeout 1s: all %d bytes" % n, (status, got), (b"HTTP/1.1 200 OK", n))
status, got, closed = download(256 << 20, 6)
ck.ok("a client that stops reading for 6 s: closed by --idle-timeout 4s", closed and got < (256 << 20), "got %d bytes, closed=%s" % (got, closed))
ck.done()
EOF

# An app that does not even accept: the connect timeout answers 504.
ready="$PX_TMP/backlog.port"
"$PYTHON" "$UPSTREAM_PY" --full-backlog --ready-file "$ready" >/dev/null 2>&1 &
px_register_pid $!
for _ in $(seq 50); do [ -s "$ready" ] && break; sleep 0.1; done
LW_TARGET=127.0.0.1:$(cat "$ready") start_leaseway --connect-timeout 1s --upstream-timeout 10s
t=$(px_now)
code=$(curl -s -m 10 -o "$PX_TMP/ct.body" -w '%{http_code}' "$LW_URL/echo")
took=$(px_since "$t")
expect_eq "app that never accepts, --connect-timeout 1s: 504" "$code" 504
check "... after about 1 s (took ${took}s)" px_lt "$took" 2.5
check "... and not before 0.8 s (took ${took}s)" px_lt 0.8 "$took"

finish
