#!/usr/bin/env bash
# Streaming (SPEC §3): Server-Sent Events flush as they arrive, and a
# WebSocket upgrade is tunnelled both ways (RFC 6455 handshake, masked
# client frames of all three length forms, ping/pong, close).
. "$(dirname "$0")/../lib/proxy.sh"

start_upstream app
start_leaseway

pyrun sse "$LW_PORT" <<'EOF'
import sys, time, subprocess
from rawhttp import Client, Check
ck = Check()
port = int(sys.argv[1])

# Raw client: note when each event's bytes arrive.
c = Client(port)
t0 = time.monotonic()
arrivals = []
buf = b""
def on_chunk(d):
    global buf
    buf += d
    while b"\n\n" in buf:
        ev, buf = buf.split(b"\n\n", 1)
        arrivals.append(time.monotonic() - t0)
c.send(b"GET /sse?n=5&ms=300 HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n")
r = c.response(on_chunk=on_chunk)
t_end = time.monotonic() - t0
ck.eq("SSE: 200 text/event-stream", (r.status, r.get("content-type")), (200, "text/event-stream"))
if r.get("transfer-encoding") is None:  # close-delimited: events were parsed from the body at the end
    ck.ok("SSE: response is chunked (or events arrive as they are sent)", False, "not chunked; body arrived at once")
ck.eq("SSE: 5 events", len(arrivals), 5)
print("     arrivals: %s, end %.2fs" % (["%.2f" % a for a in arrivals], t_end))
if arrivals:
    ck.ok("SSE: first event within 0.8 s", arrivals[0] < 0.8, "%.2fs" % arrivals[0])
    ck.ok("SSE: first event well before the stream ends (> 0.6 s of 1.2 s)", t_end - arrivals[0] > 0.6, "first %.2fs, end %.2fs" % (arrivals[0], t_end))
    late = [i for i, a in enumerate(arrivals) if abs(a - 0.3 * i) > 0.4]
    ck.ok("SSE: every event arrives within 400 ms of being sent", not late, "late: %r" % late)
c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
ck.eq("SSE: connection reusable after the stream", c.response().status, 200)

# Real curl -N: the first line comes out long before curl finishes.
t0 = time.monotonic()
p = subprocess.Popen(["curl", "-sN", "-m", "10", "http://127.0.0.1:%d/sse?n=4&ms=400" % port], stdout=subprocess.PIPE)
first = None
for line in p.stdout:
    if first is None and line.startswith(b"data:"):
        first = time.monotonic() - t0
p.wait()
end = time.monotonic() - t0
ck.ok("curl -N: first event printed before the stream ends", first is not None and end - first > 0.6, "first %r end %.2f" % (first, end))
ck.done()
EOF

pyrun websocket "$LW_PORT" <<'EOF'
import sys, os, time, base64, hashlib, struct
from rawhttp import Client, Check
ck = Check()
port = int(sys.argv[1])

def accept(key):
    return base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC11B65").encode()).digest()).decode()

def frame(op, payload, fin=True):
    mask = os.urandom(4)
    n = len(payload)
    b0 = (0x80 if fin else 0) | op
    if n < 126: hdr = bytes([b0, 0x80 | n])
    elif n < 65536: hdr = bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    else: hdr = bytes([b0, 0x80 | 127]) + struct.pack(">Q", n)
    return hdr + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))

def read_frame(c):
    hdr = c._exact(2)
    op, n = hdr[0] & 0x0F, hdr[1] & 0x7F
    if hdr[1] & 0x80:
        raise Exception("server frame is masked")
    if n == 126: n = struct.unpack(">H", c._exact(2))[0]
    elif n == 127: n = struct.unpack(">Q", c._exact(8))[0]
    return op, c._exact(n)

def handshake(c, extra=b""):
    key = base64.b64encode(os.urandom(16)).decode()
    c.send(("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nOrigin: http://t\r\n\r\n" % key).encode() + extra)
    r = c.head()
    return r, key

with ck.step("WebSocket echo"):
    c = Client(port)
    r, key = handshake(c)
    ck.eq("WS: 101 Switching Protocols", r.status, 101)
    ck.eq("WS: Upgrade: websocket", (r.get("upgrade") or "").lower(), "websocket")
    ck.ok("WS: Connection: Upgrade", r.has_token("connection", "upgrade"), "got %r" % r.get("connection"))
    ck.eq("WS: Sec-WebSocket-Accept", r.get("sec-websocket-accept"), accept(key))
    ck.warn("WS: Fly-Instance on the 101", r.get("fly-instance") == "i1", "got %r" % r.get("fly-instance"))

    c.send(frame(1, b"hello"))
    ck.eq("WS: text frame echoed", read_frame(c), (1, b"hello"))
    p300 = os.urandom(300)
    c.send(frame(2, p300))
    ck.eq("WS: 300-byte binary frame (16-bit length) echoed", read_frame(c), (2, p300))
    big = os.urandom(200000)
    c.send(frame(2, big))
    op, got = read_frame(c)
    ck.ok("WS: 200 kB binary frame (64-bit length) echoed", op == 2 and got == big, "op %d len %d" % (op, len(got)))
    c.send(frame(9, b"pi"))
    ck.eq("WS: ping answered with pong", read_frame(c), (10, b"pi"))
    # Two frames in one write, and one frame split over two writes.
    c.send(frame(1, b"one") + frame(1, b"two"))
    ck.eq("WS: two frames in one write", [read_frame(c), read_frame(c)], [(1, b"one"), (1, b"two")])
    f = frame(1, b"split-frame")
    c.send(f[:5]); time.sleep(0.2); c.send(f[5:])
    ck.eq("WS: a frame split over two writes", read_frame(c), (1, b"split-frame"))
    c.send(frame(8, struct.pack(">H", 1000) + b"bye"))
    ck.eq("WS: close echoed", read_frame(c), (8, struct.pack(">H", 1000) + b"bye"))
    ck.ok("WS: TCP connection closed after the close handshake", c.closed(3))
    c.close()

# A client that sends its first frame right behind the handshake, in one write.
with ck.step("WebSocket: frame sent with the handshake"):
    c = Client(port)
    r, key = handshake(c, extra=frame(1, b"eager"))
    ck.eq("WS eager: 101", r.status, 101)
    try:
        ck.eq("WS eager: frame sent with the handshake is delivered", read_frame(c), (1, b"eager"))
    except Exception as e:
        ck.ok("WS eager: frame sent with the handshake is delivered", False, repr(e))
    c.close()

# An upgrade request the app declines (plain 200): the connection stays HTTP.
with ck.step("declined upgrade"):
    c = Client(port)
    c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    r = c.response()
    ck.eq("declined upgrade: the app's 200 passes", r.status, 200)
    if not c.closed(0.2):
        c.send(b"GET /echo?after HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.response()
        ck.eq("declined upgrade: next request on the connection works", (r.status, r.json()["path"]), (200, "/echo?after"))
    else:
        ck.ok("declined upgrade: proxy closed the connection (acceptable)", True)

# An upgrade request with a body that arrives after its head (curl --http2 on http:// sends
# Upgrade: h2c with the body of a POST): the body must reach the app, and the answer the client.
with ck.step("upgrade request, body after the head"):
    for framing in (b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n"):
        c = Client(port, timeout=10)
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n" + framing + b"\r\n")
        time.sleep(0.3)
        c.send(b"hello" if b"Content-Length" in framing else b"5\r\nhello\r\n0\r\n\r\n")
        try:
            r = c.response()
            ck.eq("upgrade with a late body (%s): the app read the body" % framing.split(b":")[0].decode(),
                  (r.status, r.json()["body_length"], r.json()["body_head"]), (200, 5, "hello"))
        except Exception as e:
            ck.ok("upgrade with a late body (%s): answered" % framing.split(b":")[0].decode(), False, repr(e))
        c.close()
ck.done()
EOF

finish
