#!/usr/bin/env bash
# Failures of the app (SPEC §3): unreachable → 502 (a request without a body
# after its refused connects were retried for --connect-timeout, one with a body
# at once; proxy_connect_retry.sh has the retry itself); an app that hangs up,
# answers garbage or frames its response ambiguously → 502 (RFC 9112 §6.3:
# a proxy MUST NOT pass on a response with invalid Content-Length); a body
# cut short closes the client connection; clients that vanish mid-request
# do not hurt the proxy; an app that resets the connection while the body is
# still coming gets a 502 that says so. Error answers: one-line body, Connection: close,
# connection closed, Fly-Instance still set.
. "$(dirname "$0")/../lib/proxy.sh"

# --- app down ------------------------------------------------------------------
dead=$(px_free_port)
LW_TARGET=127.0.0.1:$dead start_leaseway --connect-timeout 2s
pyrun app-down "$LW_PORT" <<'EOF'
import sys, time
from rawhttp import Client, Check
ck = Check()
port = int(sys.argv[1])
c = Client(port)
t0 = time.monotonic()
c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
r = c.response()
took = time.monotonic() - t0
ck.eq("app down: 502", r.status, 502)
ck.ok("app down, GET: 502 once refused connects were retried for --connect-timeout (2 s)",
      1.8 < took < 3.5, "%.2fs" % took)
ck.ok("502: one-line body", r.body.count(b"\n") <= 1 and len(r.body.strip()) > 0, "got %r" % r.body[:200])
ck.ok("502: Connection: close", r.has_token("connection", "close"), "got %r" % r.get("connection"))
ck.eq("502: Fly-Instance", r.get("fly-instance"), "i1")
ck.eq("502: Fly-Primary-Instance", r.get("fly-primary-instance"), "i1")
ck.ok("502: connection closed", c.closed(2))

c = Client(port)
t0 = time.monotonic()
c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000)
r = c.response()
ck.eq("app down, POST with a body: 502", r.status, 502)
ck.ok("app down, POST with a body: answered at once (its body is not kept for a retry)",
      time.monotonic() - t0 < 1.5, "%.2fs" % (time.monotonic() - t0))
ck.ok("app down, POST: connection closed", c.closed(2))
ck.done()
EOF
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$LW_URL/")
expect_eq "curl sees 502 with the app down" "$code" 502
stop_leaseway

# --- app resets the connection while the request body is still coming ---------------------
rst=$(px_free_port)
LW_TARGET=127.0.0.1:$rst start_leaseway
pyrun app-reset-mid-body "$LW_PORT" "$rst" <<'EOF'
import socket, struct, sys, threading
from rawhttp import Client, Check
ck = Check()
port, rst = int(sys.argv[1]), int(sys.argv[2])
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", rst))
ls.listen(4)
def app():  # reads part of the request, then resets the connection (SO_LINGER 0), answering nothing
    s, _ = ls.accept()
    got = 0
    while got < 65536:
        d = s.recv(65536)
        if not d:
            break
        got += len(d)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
threading.Thread(target=app, daemon=True).start()
c = Client(port, timeout=10)
head = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 8000000\r\n\r\n"
try:
    c.send(head + b"x" * 8000000)
except OSError:
    pass  # the proxy may close before the whole body is in: its answer is still to be read
r = c.response()
ck.eq("app resets mid-body: 502", r.status, 502)
ck.ok("app resets mid-body: the reason says the app closed the connection, not that it refused it",
      b"closed the connection" in r.body and b"refused" not in r.body, "got %r" % r.body[:200])
ck.done()
EOF
stop_leaseway

# --- app misbehaving -------------------------------------------------------------------
start_upstream app
start_leaseway
pyrun app-broken "$LW_PORT" "$UPSTREAM_PORT" <<'EOF'
import sys, time, json, urllib.request
from rawhttp import Client, Check, ProtocolError
ck = Check()
port, up = int(sys.argv[1]), int(sys.argv[2])

def one(path, method="GET", body=b""):
    c = Client(port)
    hdr = b"Content-Length: %d\r\n" % len(body) if body else b""
    c.send(b"%s %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (method.encode(), path.encode(), hdr) + body)
    try:
        r = c.response()
    except (ProtocolError, OSError) as e:
        r = e
    return c, r

for path, why in [("/drop", "app closes without answering"), ("/raw/garbage", "app answers garbage"),
                  ("/raw/cl_te", "app answers with CL and TE"), ("/raw/dup_cl", "app answers with two Content-Lengths")]:
    c, r = one(path)
    ck.eq("%s: 502" % why, getattr(r, "status", r), 502)
    ck.ok("%s: connection closed" % why, c.closed(2))

before = json.load(urllib.request.urlopen("http://127.0.0.1:%d/stats" % up))["paths"].get("/drop", 0)
c, r = one("/drop", "POST", b"a=1")
after = json.load(urllib.request.urlopen("http://127.0.0.1:%d/stats" % up))["paths"].get("/drop", 0)
ck.eq("POST the app hung up on: 502", getattr(r, "status", r), 502)
ck.eq("POST the app hung up on is not retried", after - before, 1)

c, r = one("/raw/no_length")
ck.eq("close-delimited app response reaches the client", (getattr(r, "status", r), getattr(r, "body", b"")), (200, b"hello, close-delimited"))

c, r = one("/raw/early_hints")
ck.eq("103 Early Hints then 200: final answer passes", (getattr(r, "status", r), getattr(r, "body", b"")), (200, b"ok"))
ck.warn("103 Early Hints forwarded", getattr(r, "interim", None) and r.interim[0][0] == 103, "interim %r" % getattr(r, "interim", None))

# Truncated bodies: the client must see the connection end, never a "complete" response.
for path, why in [("/partial?n=200000", "app sends half its Content-Length"), ("/raw/bad_chunk", "app sends a bad chunk size")]:
    c = Client(port, timeout=5)
    t0 = time.monotonic()
    c.send(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode())
    try:
        r = c.response()
        ok = r.status == 502  # answering 502 is fine if nothing was sent yet
        detail = "got a complete %r" % r
    except ProtocolError as e:
        ok, detail = True, ""
    except OSError as e:
        ok, detail = False, "no EOF within 5 s: %r" % e
    ck.ok("%s: client connection ends without a complete response" % why, ok and time.monotonic() - t0 < 4, detail)
ck.done()
EOF

rc=0
curl -s -m 10 -o /dev/null "$LW_URL/partial?n=5000000" || rc=$?
expect_eq "curl reports a truncated transfer (exit 18) for a body cut short" "$rc" 18

# --- clients that vanish -----------------------------------------------------------
pyrun client-aborts "$LW_PORT" <<'EOF'
import sys, time, socket, struct
from rawhttp import Client, Check
ck = Check()
port = int(sys.argv[1])
# Half a request body, then gone.
c = Client(port); c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 300000); c.close()
# Gone while the app is still thinking.
c = Client(port); c.send(b"GET /slow?ms=500 HTTP/1.1\r\nHost: t\r\n\r\n"); time.sleep(0.1); c.close()
# Reset in the middle of a large download.
c = Client(port); c.send(b"GET /bytes?n=100000000 HTTP/1.1\r\nHost: t\r\n\r\n"); c.sock.recv(100000)
c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); c.close()
# Half-closed after a complete request: the answer must still come (RFC 9112 §9.6 allows it).
c = Client(port); c.send(b"GET /echo?halfclose HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
c.sock.shutdown(socket.SHUT_WR)
try:
    r = c.response()
    ck.warn("half-closed client still gets its answer", r.status == 200)
except Exception as e:
    ck.warn("half-closed client still gets its answer", False, repr(e))
time.sleep(1)
c = Client(port); c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
ck.eq("proxy serves normally after clients vanished", c.response().status, 200)
ck.done()
EOF
check "leaseway still running" kill -0 "$LW_PID"

finish
