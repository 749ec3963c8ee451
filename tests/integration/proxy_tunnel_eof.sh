#!/usr/bin/env bash
# Regression: an upgrade request whose tunnel bytes and FIN (half-close) come from the client
# before the app's 101 is in. The bytes must reach the app after the 101, then the FIN: not
# the FIN first (the app saw an empty tunnel, or the tunnel hung with the bytes never sent),
# and the app's answer must still reach the client. The same once the tunnel is up.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib/common.sh"
bin=${LEASEWAY_BIN:-$here/../../build/leaseway}
d=$(mktmp)
up=$(free_port); lw=$(free_port)
python3 - "$up" >"$d/app.log" 2>&1 <<'PY' &
# the app: answers 101 after 0.3 s, reads the tunnel to EOF, says how much it got, closes
import socket, sys, threading, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
def serve(c):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = c.recv(65536)
        if not d:
            return
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    time.sleep(0.3)
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n")
    got = rest
    c.settimeout(5)
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            got += d
        c.sendall(b"app got %r then EOF" % got)
    except OSError as e:
        c.sendall(b"app: %r" % e)
    c.close()
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
def run(early):
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    req = b"GET /t HTTP/1.1\r\nHost: t\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n"
    if early:
        c.sendall(req + b"hello")
        c.shutdown(socket.SHUT_WR)
    else:
        c.sendall(req)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            d = c.recv(65536)
            if not d:
                break
            data += d
        if not early:
            c.sendall(b"hello")
            c.shutdown(socket.SHUT_WR)
        while True:
            d = c.recv(65536)
            if not d:
                break
            data += d
    except OSError as e:
        data += b" <%r>" % e
    return data
for early, name in ((True, "before the 101"), (False, "after the 101")):
    data = run(early)
    want = b"app got b'hello' then EOF"
    if data.startswith(b"HTTP/1.1 101") and data.endswith(want):
        print("ok   - tunnel bytes and FIN sent %s: the app got them in order, the client its answer" % name)
    else:
        fails += 1
        print("FAIL - tunnel bytes and FIN sent %s: client got %r" % (name, data[-200:]))
sys.exit(1 if fails else 0)
PY
