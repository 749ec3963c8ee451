#!/usr/bin/env bash
# Regression: an app that closes its connection after each response without saying
# "Connection: close" (any party MAY close at any time, RFC 9112 §9.3/§9.6). Leaseway answered
# 502 to requests the app never received: the FIN came in the same event as the response, yet
# the connection went back to the pool, the next request was queued on it, met the EOF, and a
# POST is never retried. Now a connection whose FIN was seen is not pooled; a request none of
# whose bytes were written is sent on a new connection whatever its method (it never reached
# the app); and once the app is seen closing kept-alive connections, a request that may not be
# sent twice goes on a new connection (its FIN may come just after the request was written).
# A request whose bytes were written still gets its 502 and, not being safe, is never sent
# twice (SPEC §2 step 9). Checks, on the real binary and a real app (one leaseway per part,
# so that what one part taught it about the app does not help the next):
#   (a) pipelined GET, POST (with a body), DELETE to an app whose FIN comes with each answer:
#       all 200, the app saw each once;
#   (b) then 200 POSTs (with bodies) from 8 keep-alive clients at once to an app whose FIN
#       comes a moment after each answer: all 200, never a 502, the app got each exactly once;
#   (c) a POST written to an app that reads it and closes without an answer: 502, and the
#       app saw it exactly once (no retry), on a pooled connection as on a new one;
#   (d) the FIN of a pooled connection comes in the same loop pass as a POST that was queued
#       on it (leaseway stopped meanwhile): the POST, not written yet, goes on a new
#       connection and gets the app's 200.
. "$(dirname "$0")/../lib/proxy.sh"

APP_PORT=$(px_free_port)
SEEN="$PX_TMP/seen.log"
# The app: every request is logged as "METHOD TARGET BODYLEN" once read whole.
#   /close...: 200 with keep-alive headers, its FIN in the same segment (TCP_CORK), then close
#   /late...:  200 with keep-alive headers, then close (the FIN comes when Python gets to it)
#   /mute...:  close without an answer
#   /hold...:  200, then close once the file $PX_TMP/release exists
#   anything else: 200, connection kept open
cat >"$PX_TMP/app.py" <<'EOF'
import os, socket, sys, threading, time
lock = threading.Lock()
log = open(sys.argv[2], "a", buffering=1)
release = sys.argv[3]
def serve(s):
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                if not d:
                    return
                buf += d
            i = buf.index(b"\r\n\r\n") + 4
            head, buf = buf[:i], buf[i:]
            cl = 0
            for line in head.split(b"\r\n")[1:]:
                if line.lower().startswith(b"content-length:"):
                    cl = int(line.split(b":", 1)[1])
            while len(buf) < cl:
                d = s.recv(65536)
                if not d:
                    return
                buf += d
            body, buf = buf[:cl], buf[cl:]
            method, target = head.split(b" ", 2)[:2]
            with lock:
                log.write("%s %s %d\n" % (method.decode(), target.decode(), len(body)))
            if target.startswith(b"/mute"):
                return
            out = b"app got " + method + b" " + target
            resp = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(out) + out)
            if target.startswith(b"/close"):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                s.sendall(resp)
                s.shutdown(socket.SHUT_WR)  # the FIN goes out with the answer's last segment
                return
            s.sendall(resp)
            if target.startswith(b"/late"):
                return
            if target.startswith(b"/hold"):
                while not os.path.exists(release):
                    time.sleep(0.01)
                s.close()
                with lock:
                    log.write("closed %s\n" % target.decode())
                return
    except OSError:
        pass
    finally:
        s.close()
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1])))
ls.listen(256)
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF
"$PYTHON" "$PX_TMP/app.py" "$APP_PORT" "$SEEN" "$PX_TMP/release" >"$PX_TMP/upstream-app.log" 2>&1 &
px_register_pid $!
wait_for "$PYTHON -c 'import socket; socket.create_connection((\"127.0.0.1\", $APP_PORT)).close()'" 10 \
    || px_die "the app did not start"
# new_leaseway: stop the one running, start another that knows nothing of the app yet.
new_leaseway() {
    stop_leaseway
    LW_TARGET=127.0.0.1:$APP_PORT start_leaseway --log-level debug
    : >"$SEEN"
}
# seen ERE: how many requests the app logged that match.
seen() { grep -cE "$1" "$SEEN" || true; }

# --- (a) pipelined GET, POST, DELETE; the app's FIN comes with each answer ---------------
new_leaseway
for try in 1 2 3; do
    : >"$SEEN"
    pyrun "pipeline-$try" "$LW_PORT" <<'EOF'
import sys
from rawhttp import Client, Check
ck = Check()
c = Client(int(sys.argv[1]), timeout=5)
c.send(b"GET /close/a HTTP/1.1\r\nHost: t\r\n\r\n"
       b"POST /close/b HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
       b"DELETE /close/c HTTP/1.1\r\nHost: t\r\n\r\n")
got = []
try:
    for _ in range(3):
        r = c.response()
        got.append((r.status, r.body.decode("latin-1")))
except Exception as e:  # noqa: BLE001 - what came back is the report
    got.append(type(e).__name__)
ck.eq("pipelined GET, POST, DELETE to an app that closes after each answer: all answered by the app", got,
      [(200, "app got GET /close/a"), (200, "app got POST /close/b"), (200, "app got DELETE /close/c")])
ck.ok("client connection still open after them", not c.closed(0.3))
ck.done()
EOF
    expect_eq "(a) pipeline $try: the app received GET, POST (5 body bytes), DELETE, each once" \
        "$(tr '\n' ',' <"$SEEN")" "GET /close/a 0,POST /close/b 5,DELETE /close/c 0,"
done

# --- (b) 200 POSTs from 8 keep-alive clients at once; the app's FIN comes a moment later ----
# Same leaseway: (a) showed it that this app closes its connections. Before it knows, a POST
# that lands on a pooled connection the app closes a moment after it was written may still get
# a 502 (so do nginx and Go's http.Transport: for all a proxy can tell, it reached the app).
: >"$SEEN"
pyrun concurrent "$LW_PORT" <<'EOF'
import collections, sys, threading
from rawhttp import Client, Check
ck = Check()
port = int(sys.argv[1])
res = collections.Counter()
lock = threading.Lock()
def client(k):
    c = None
    for i in range(25):
        body = b"x" * (i + 1)
        st = "none"
        try:
            if c is None:
                c = Client(port, timeout=5)
            c.send(b"POST /late/%d/%d HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (k, i, len(body)) + body)
            r = c.response("POST")
            st = str(r.status)
            if r.has_token("connection", "close"):
                c.close()
                c = None
        except Exception as e:  # noqa: BLE001 - count it, go on
            st = type(e).__name__
            c = None
        with lock:
            res[st] += 1
ts = [threading.Thread(target=client, args=(k,)) for k in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
ck.eq("200 concurrent POSTs from 8 keep-alive clients: all 200 (%r)" % dict(res), dict(res), {"200": 200})
ck.eq("... never a 502", res.get("502", 0), 0)
ck.done()
EOF
expect_eq "(b) the app received 200 POSTs" "$(seen '^POST /late/')" 200
expect_eq "(b) ... none twice" "$(sort "$SEEN" | uniq -d | wc -l)" 0

# --- (c) a POST that reached the app, which closed without an answer -------------------
new_leaseway
pyrun mute "$LW_PORT" <<'EOF'
import sys
from rawhttp import Client, Check
ck = Check()
port = int(sys.argv[1])
# on a pooled connection: a GET leaves one open to the app, the POST goes on it
c = Client(port, timeout=10)
c.send(b"GET /keep HTTP/1.1\r\nHost: t\r\n\r\n")
ck.eq("GET /keep: 200", c.response().status, 200)
c.send(b"POST /mute/pooled HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
ck.eq("POST written to a pooled connection, app closes without an answer: 502", c.response("POST").status, 502)
c.close()
# and on a new connection (the pool is empty now: that one was closed)
c = Client(port, timeout=10)
c.send(b"POST /mute/new HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
ck.eq("POST written to a new connection, app closes without an answer: 502", c.response("POST").status, 502)
c.close()
ck.done()
EOF
sleep 0.3 # a retry, if any, would have reached the app by now
expect_eq "(c) the app got the GET on the connection then reused" "$(seen '^GET /keep ')" 1
expect_eq "(c) the app saw the POST on the pooled connection exactly once" "$(seen '^POST /mute/pooled ')" 1
expect_eq "(c) the app saw the POST on the new connection exactly once" "$(seen '^POST /mute/new ')" 1

# --- (d) a pooled connection's FIN and a POST queued on it in the same loop pass -----------
new_leaseway
rm -f "$PX_TMP/release"
pyrun same-pass "$LW_PORT" "$LW_PID" "$PX_TMP/release" "$SEEN" <<'EOF'
import os, signal, sys, time
from rawhttp import Client, Check, wait_stopped
ck = Check()
port, pid, release, seen = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
c = Client(port, timeout=10)
c.send(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
ck.eq("GET /hold: 200 (its connection to the app is pooled)", c.response().status, 200)
os.kill(pid, signal.SIGSTOP)
try:
    ck.ok("leaseway stopped", wait_stopped(pid))
    # the POST first, then the app's FIN: leaseway takes them in that order in one pass
    c.send(b"POST /after-hold HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
    time.sleep(0.1)
    open(release, "w").close()
    for _ in range(200):
        if "closed /hold" in open(seen).read():
            break
        time.sleep(0.01)
    ck.ok("the app closed the pooled connection while leaseway was stopped", "closed /hold" in open(seen).read())
    time.sleep(0.1)
finally:
    os.kill(pid, signal.SIGCONT)
r = c.response("POST")
ck.eq("the POST queued on the closed connection is answered by the app", (r.status, r.body), (200, b"app got POST /after-hold"))
ck.done()
EOF
expect_eq "(d) the app received the POST once" "$(seen '^POST /after-hold 5$')" 1
check "(d) it went on a new connection because none of it had been written" \
    grep -q 'upstream closed before the request was sent' "$LW_LOG"

check "leaseway still running" kill -0 "$LW_PID"
check "no leaseway logged a crash" bash -c "! cat '$PX_TMP'/leaseway.*.log | grep -qiE 'assert|segfault|sanitizer'"
finish
