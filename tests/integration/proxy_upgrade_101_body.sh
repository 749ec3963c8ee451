#!/usr/bin/env bash
# Regression: a 101 has no body (RFC 9112 §6.3: a 1xx ends with its head), whatever its
# Content-Length or Transfer-Encoding says: every byte after the 101's head belongs to the new
# protocol and must reach the client as the app sent it. llhttp reads a body for a 101 that
# announces one, and leaseway used to decode it (chunked) before the tunnel started, or frame
# it like the connection's previous response. Found by tests/fuzz/fuzz_response
# (corpus/fuzz_response/regress-101-with-body).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib/common.sh"
bin=${LEASEWAY_BIN:-$here/../../build/leaseway}
d=$(mktmp)
up=$(free_port); lw=$(free_port)
python3 - "$up" >"$d/app.log" 2>&1 <<'PY' &
# The app. GET /chunked: a chunked 200. GET /ws: a 101 announcing a chunked body (/ws-cl: a
# Content-Length of 5), then tunnel bytes that look like chunks, then an echo.
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
def serve(c):
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                return
            buf += d
        head, _, buf = buf.partition(b"\r\n\r\n")
        path = head.split(b" ")[1]
        if path == b"/chunked":
            c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
            continue
        frame = b"Content-Length: 5" if path == b"/ws-cl" else b"Transfer-Encoding: chunked"
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: foo\r\n" + frame +
                  b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        c.settimeout(5)
        try:
            while True:
                d = buf or c.recv(65536)
                buf = b""
                if not d:
                    break
                c.sendall(b"echo:" + d)
        except OSError:
            pass
        c.close()
        return
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
register_pid $!
"$bin" run --instance i1 --listen "127.0.0.1:$lw" --target "127.0.0.1:$up" --admin off --workers 1 >"$d/lw.log" 2>&1 &
register_pid $!
wait_for "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", $lw)).close(); socket.create_connection((\"127.0.0.1\", $up)).close()'" 10 \
    || die "leaseway or the app did not come up"
python3 - "$lw" <<'PY' || { tail -n 20 "$d/lw.log" "$d/app.log"; die "see above"; }
import socket, sys, time
port, fails = int(sys.argv[1]), 0
def read_until(c, data, want, deadline=5):
    end = time.monotonic() + deadline
    while want not in data and time.monotonic() < end:
        try:
            d = c.recv(65536)
        except socket.timeout:
            break
        if not d:
            break
        data += d
    return data
def run(path, first):
    c = socket.create_connection(("127.0.0.1", port), timeout=2)
    data = b""
    if first:  # a chunked response first on the same connection
        c.sendall(b"GET /chunked HTTP/1.1\r\nHost: t\r\n\r\n")
        data = read_until(c, data, b"0\r\n\r\n")
        data = b""
    c.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n")
    data = read_until(c, data, b"0\r\n\r\n")
    head, _, tunnel = data.partition(b"\r\n\r\n")
    c.sendall(b"ping")
    tunnel = read_until(c, tunnel, b"echo:ping")
    c.close()
    return head.split(b"\r\n")[0], tunnel
for path, first in ((b"/ws", False), (b"/ws", True), (b"/ws-cl", True)):
    status, tunnel = run(path, first)
    want = b"5\r\nhello\r\n0\r\n\r\necho:ping"
    what = "%s%s" % (path.decode(), " after a chunked response" if first else "")
    if status.startswith(b"HTTP/1.1 101") and tunnel == want:
        print("ok   - %s: the bytes after the 101 reach the client as the app sent them" % what)
    else:
        fails += 1
        print("FAIL - %s: %r, tunnel %r (want %r)" % (what, status, tunnel, want))
sys.exit(1 if fails else 0)
PY
