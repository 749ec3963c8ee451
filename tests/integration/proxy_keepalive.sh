#!/usr/bin/env bash
# Persistent connections: curl reuses its connection through the proxy,
# pipelined requests are answered in order, "Connection: close" and HTTP/1.0
# close the connection, and an app that closes idle connections does not turn
# into 502s (the proxy must not reuse a connection the app already closed).
. "$(dirname "$0")/../lib/proxy.sh"

start_upstream app
start_leaseway

# --- curl, two URLs on one connection ---------------------------------------
curl -sv -m 10 -o /dev/null -o /dev/null -w '%{http_code}\n' "$LW_URL/echo?x=1" "$LW_URL/echo?x=2" \
    >"$PX_TMP/codes" 2>"$PX_TMP/curl.err"
expect_eq "both requests 200" "$(tr '\n' ' ' <"$PX_TMP/codes")" "200 200 "
check "curl re-used the connection" grep -qi 're-using existing connection' "$PX_TMP/curl.err"

pyrun pipeline "$LW_PORT" <<'EOF'
import sys, time
from rawhttp import Client, Check
ck = Check()
port = int(sys.argv[1])

# Upstream connection reuse (pooling) is expected of a proxy, not required.
c = Client(port)
peers = []
for i in range(3):
    c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
    r = c.response()
    peers.append(tuple(r.json()["peer"]))
ck.warn("proxy re-uses its upstream connection for sequential requests", len(set(peers)) == 1, "app saw peers %r" % peers)
c.close()

# Two requests in one write: two answers, in order, on a connection that stays open.
c = Client(port)
c.send(b"GET /echo?n=1 HTTP/1.1\r\nHost: t\r\n\r\nGET /echo?n=2 HTTP/1.1\r\nHost: t\r\n\r\n")
r1 = c.response(); r2 = c.response()
ck.eq("pipelined #1 answered first", (r1.status, r1.json()["path"]), (200, "/echo?n=1"))
ck.eq("pipelined #2 answered second", (r2.status, r2.json()["path"]), (200, "/echo?n=2"))
ck.ok("connection open after the pipeline", not c.closed(0.3))

# A slow request first: the fast one behind it must wait its turn.
c.send(b"GET /slow?ms=500 HTTP/1.1\r\nHost: t\r\n\r\nGET /echo?n=3 HTTP/1.1\r\nHost: t\r\n\r\n")
r1 = c.response(); r2 = c.response()
ck.ok("slow then fast: answers in request order", r1.status == 200 and "slept_ms" in r1.json() and r2.json()["path"] == "/echo?n=3", "got %r then %r" % (r1.body[:60], r2.body[:60]))

# A POST with a body between two GETs, all in one write; the last asks to close.
c.send(b"GET /echo?n=4 HTTP/1.1\r\nHost: t\r\n\r\n"
       b"POST /echo?n=5 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
       b"GET /echo?n=6 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
rs = [c.response() for _ in range(3)]
got = [(r.status, r.json()["path"], r.json()["body_length"]) for r in rs]
ck.eq("GET, POST+body, GET pipelined", got, [(200, "/echo?n=4", 0), (200, "/echo?n=5", 5), (200, "/echo?n=6", 0)])
ck.ok("closed after the request with Connection: close", c.closed(3))
ck.warn("Connection: close sent on the last answer", rs[2].has_token("connection", "close"), "got %r" % rs[2].get("connection"))
c.close()

# HTTP/1.0 without keep-alive: answer, then close.
c = Client(port)
c.send(b"GET /echo HTTP/1.0\r\nHost: t\r\n\r\n")
r = c.response()
ck.eq("HTTP/1.0 request: 200", r.status, 200)
ck.ok("HTTP/1.0 without keep-alive: connection closed", c.closed(3))
c.close()

# HTTP/1.0 asking for keep-alive may be kept open (not required).
c = Client(port)
c.send(b"GET /echo HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")
r = c.response()
ck.eq("HTTP/1.0 keep-alive request: 200", r.status, 200)
if r.has_token("connection", "keep-alive") and r.get("content-length") is not None:
    c.send(b"GET /echo HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")
    ck.eq("HTTP/1.0 keep-alive: second request on the same connection", c.response().status, 200)
else:
    ck.ok("HTTP/1.0 keep-alive declined: connection closed", c.closed(3))
c.close()

# Many sequential requests on one connection.
c = Client(port)
ok = 0
for i in range(200):
    c.send(("GET /echo?i=%d HTTP/1.1\r\nHost: t\r\n\r\n" % i).encode())
    r = c.response()
    ok += r.status == 200 and r.json()["path"] == "/echo?i=%d" % i
ck.eq("200 sequential keep-alive requests", ok, 200)
ck.done()
EOF

# --- an app that closes idle keep-alive connections after 1 s ----------------
start_upstream stale --idle-close 1
start_leaseway
pyrun stale-pool "$LW_PORT" <<'EOF'
import sys, time
from rawhttp import Client, Check
ck = Check()
port = int(sys.argv[1])
codes = []
for i in range(3):
    c = Client(port)
    c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
    codes.append(c.response().status)
    c.close()
    time.sleep(1.5)   # the app closes its side of the pooled connection meanwhile
codes2 = []
c = Client(port)
for i in range(3):
    c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
    codes2.append(c.response().status)
    time.sleep(1.5)
ck.eq("new client connections after the app closed idle ones: all 200", codes, [200, 200, 200])
ck.eq("same client connection after the app closed idle ones: all 200", codes2, [200, 200, 200])

# The app closes right after a complete answer (no "Connection: close", as
# Node does when its keepAliveTimeout fires): that connection must not be
# reused. With a pause the proxy has seen the FIN; with none it may race,
# and then only a retry of the idempotent GET on a fresh connection saves it.
for delay in (0.05, 0.2, 0.0):
    codes = []
    for i in range(15):
        c = Client(port)
        c.send(b"GET /raw/no_reason HTTP/1.1\r\nHost: t\r\n\r\n"); c.response()
        time.sleep(delay)
        c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
        codes.append(c.response().status)
        c.close()
    desc = "GET %d ms after the app closed its connection post-answer: 200 every time" % (delay * 1000)
    bad = [x for x in codes if x != 200]
    (ck.ok if delay else ck.warn)(desc, not bad, "%d of 15 were %r" % (len(bad), sorted(set(bad))))
ck.done()
EOF

finish
