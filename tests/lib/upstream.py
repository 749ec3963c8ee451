#!/usr/bin/python3
"""A real upstream app for leaseway's integration tests (stdlib only).

One thread per connection, HTTP/1.1 keep-alive and pipelining, a strict
request parser of its own (so that what the proxy sends is seen exactly, and
a framing mistake by the proxy shows up as a 400 from the app), bodies
streamed in both directions so that gigabytes cost no memory.

Endpoints:
  /echo            JSON: method, path (with query), version, headers as
                   [name, value] pairs in the order and case received,
                   body_length, body_sha256, body_head (first 256 bytes,
                   latin-1), trailers, served_by, peer [ip, port]
  /bytes?n=N       N bytes of the test pattern, Content-Length framed
  /chunked?n=N&size=S  N bytes of the pattern in S-byte chunks
  /upload          reads any body; {"length", "sha256", "chunked"};
                   ?mb_delay_ms=D makes it a slow reader (D ms per MiB)
  /sse?n=5&ms=300  text/event-stream, one event every ms, each flushed
  /ws              WebSocket echo (RFC 6455): text, binary, ping, close
  /slow?ms=N       sleeps, then answers {"slept_ms": N}
  /status/NNN      answers NNN (no body for 1xx, 204 and 304)
  /hop             answers with hop-by-hop headers the proxy must strip
  /100             honours Expect: 100-continue before reading the body
  /drop            reads the request, closes without an answer
  /partial?n=N     promises N bytes, sends half, closes
  /raw/CASE        writes a canned (often broken) response, then closes:
                   garbage, cl_te, dup_cl, bad_chunk, no_length, trailers,
                   no_reason, early_hints
  /stats           {"requests": total, "paths": {path: count}} (not counted)
  /cookies         two Set-Cookie headers (they must not be merged)
  /trailers        a chunked "hello" with a trailer field, keep-alive
  /bighead?n=N     a response header of N bytes (X-Big)
  /early?status=S  answers S at once without reading the request body,
                   Connection: close, then drains the body (lingering close)

Every response carries X-Served-By: <name>.

Also a generator for the pattern, so tests can compute checksums:
  upstream.py --gen N     writes N pattern bytes to stdout
  upstream.py --sha N     prints the sha256 of N pattern bytes

Ready: prints "ready <port>" on stdout and writes the port to --ready-file.

  upstream.py --full-backlog --ready-file F
      listens with a full accept queue and never accepts: connecting to it
      hangs (SYNs dropped), for connect-timeout tests.
"""

import argparse
import base64
import hashlib
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse

MAX_LINE = 70000
MAX_HEADERS = 2000

# The byte pattern: a prime-sized pseudo-random block, repeated. The prime
# period means a lost, repeated or reordered piece changes the checksum.
PERIOD = 1048573
_BLOCK = hashlib.shake_128(b"leaseway test pattern").digest(PERIOD)
_DOUBLE = memoryview(_BLOCK + _BLOCK)


def pattern_chunks(n, size=1 << 20):
    """Yield memoryviews covering bytes [0, n) of the pattern."""
    pos = 0
    size = min(size, PERIOD)
    while pos < n:
        take = min(size, n - pos)
        off = pos % PERIOD
        yield _DOUBLE[off:off + take]
        pos += take


def pattern_sha(n):
    h = hashlib.sha256()
    for c in pattern_chunks(n):
        h.update(c)
    return h.hexdigest()


class BadRequest(Exception):
    pass


class Closed(Exception):
    pass


class Request:
    def __init__(self):
        self.method = ""
        self.target = ""
        self.version = ""
        self.headers = []  # [(name, value)] as received
        self.trailers = []
        self.chunked = False
        self.length = 0  # Content-Length when not chunked

    def get(self, name):
        name = name.lower()
        vals = [v for (k, v) in self.headers if k.lower() == name]
        return ", ".join(vals) if vals else None

    def has_token(self, name, token):
        v = self.get(name)
        if v is None:
            return False
        return token.lower() in [t.strip().lower() for t in v.split(",")]


class Conn:
    def __init__(self, sock, addr, server):
        self.sock = sock
        self.addr = addr
        self.server = server
        self.rfile = sock.makefile("rb", buffering=256 * 1024)
        self.keep = True
        self.sent_continue = False

    # --- input ---------------------------------------------------------
    def readline(self):
        line = self.rfile.readline(MAX_LINE)
        if not line:
            raise Closed()
        if not line.endswith(b"\r\n"):
            if len(line) >= MAX_LINE:
                raise BadRequest("line too long")
            if line.endswith(b"\n"):
                raise BadRequest("bare LF")
            raise Closed()
        return line[:-2]

    def read_request(self):
        # RFC 9112 §2.2: ignore at least one empty line before a request.
        line = self.readline()
        if line == b"":
            line = self.readline()
        parts = line.split(b" ")
        if len(parts) != 3:
            raise BadRequest("bad request line %r" % line[:100])
        req = Request()
        req.method, req.target, req.version = (p.decode("latin-1") for p in parts)
        if req.version not in ("HTTP/1.1", "HTTP/1.0"):
            raise BadRequest("bad version")
        while True:
            line = self.readline()
            if line == b"":
                break
            if line[:1] in (b" ", b"\t"):
                raise BadRequest("obs-fold")
            if b"\r" in line or b"\0" in line:
                raise BadRequest("CR or NUL in header")
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip() or b" " in name:
                raise BadRequest("bad header line %r" % line[:100])
            req.headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
            if len(req.headers) > MAX_HEADERS:
                raise BadRequest("too many headers")
        te = req.get("transfer-encoding")
        cls = [v for (k, v) in req.headers if k.lower() == "content-length"]
        if te is not None:
            if cls:
                raise BadRequest("CL and TE")
            if te.strip().lower() != "chunked":
                raise BadRequest("unsupported TE %r" % te)
            req.chunked = True
        elif cls:
            if len(cls) > 1 or not cls[0].isdigit():
                raise BadRequest("bad Content-Length %r" % cls)
            req.length = int(cls[0])
        if req.version == "HTTP/1.1":
            if req.has_token("connection", "close"):
                self.keep = False
        elif not req.has_token("connection", "keep-alive"):
            self.keep = False
        return req

    def body_chunks(self, req):
        """Yield the request body in pieces; leaves the stream at the next request."""
        if req.has_token("expect", "100-continue") and not self.sent_continue:
            self.sent_continue = True
            self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        if req.chunked:
            while True:
                line = self.readline()
                size_s = line.split(b";", 1)[0]
                if not size_s or len(size_s) > 16 or any(c not in b"0123456789abcdefABCDEF" for c in size_s):
                    raise BadRequest("bad chunk size %r" % line[:40])
                size = int(size_s, 16)
                if size == 0:
                    break
                left = size
                while left:
                    data = self.rfile.read1(min(left, 1 << 20))
                    if not data:
                        raise Closed()
                    left -= len(data)
                    yield data
                if self.rfile.read(2) != b"\r\n":
                    raise BadRequest("chunk data not followed by CRLF")
            while True:
                line = self.readline()
                if line == b"":
                    break
                name, _, value = line.partition(b":")
                req.trailers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        else:
            left = req.length
            while left:
                data = self.rfile.read1(min(left, 1 << 20))
                if not data:
                    raise Closed()
                left -= len(data)
                yield data

    def drain(self, req):
        n = 0
        for c in self.body_chunks(req):
            n += len(c)
        return n

    # --- output --------------------------------------------------------
    def send(self, data):
        self.sock.sendall(data)

    def head(self, status, headers, reason=None):
        reason = reason or REASONS.get(status, "Status")
        out = ["HTTP/1.1 %d %s" % (status, reason)]
        for k, v in headers:
            out.append("%s: %s" % (k, v))
        out.append("X-Served-By: %s" % self.server.name)
        if not self.keep:
            out.append("Connection: close")
        self.send(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))

    def respond(self, req, status, body=b"", ctype="text/plain", headers=()):
        hdrs = list(headers)
        if status >= 200 and status not in (204, 304):
            hdrs = [("Content-Type", ctype), ("Content-Length", str(len(body)))] + hdrs
        self.head(status, hdrs)
        if req.method != "HEAD" and status not in (204, 304) and status >= 200:
            self.send(body)

    def json(self, req, obj, status=200):
        self.respond(req, status, (json.dumps(obj) + "\n").encode(), "application/json")


REASONS = {100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 204: "No Content",
           301: "Moved Permanently", 302: "Found", 304: "Not Modified", 400: "Bad Request",
           403: "Forbidden", 404: "Not Found", 409: "Conflict", 418: "I'm a teapot", 421: "Misdirected Request",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}


def qint(query, name, default):
    try:
        return int(query.get(name, [default])[0])
    except ValueError:
        return default


# --- handlers ------------------------------------------------------------

def h_echo(c, req, path, q):
    h = hashlib.sha256()
    n = 0
    head = b""
    for chunk in c.body_chunks(req):
        h.update(chunk)
        if len(head) < 256:
            head += bytes(chunk[:256 - len(head)])
        n += len(chunk)
    c.json(req, {"method": req.method, "path": req.target, "version": req.version,
                 "headers": [[k, v] for (k, v) in req.headers], "body_length": n,
                 "body_sha256": h.hexdigest(), "body_head": head.decode("latin-1"),
                 "chunked": req.chunked, "trailers": [[k, v] for (k, v) in req.trailers],
                 "served_by": c.server.name, "peer": [c.addr[0], c.addr[1]]})


def h_upload(c, req, path, q):
    h = hashlib.sha256()
    n = 0
    delay = qint(q, "mb_delay_ms", 0) / 1000.0  # a slow reader: pause per MiB read
    next_pause = 1 << 20
    for chunk in c.body_chunks(req):
        h.update(chunk)
        n += len(chunk)
        if delay and n >= next_pause:
            time.sleep(delay)
            next_pause += 1 << 20
    c.json(req, {"length": n, "sha256": h.hexdigest(), "chunked": req.chunked,
                 "served_by": c.server.name})


def h_100(c, req, path, q):
    expect = req.has_token("expect", "100-continue")
    h = hashlib.sha256()
    n = 0
    for chunk in c.body_chunks(req):  # sends 100 Continue first when asked
        h.update(chunk)
        n += len(chunk)
    c.json(req, {"expect_seen": expect, "continue_sent": c.sent_continue, "length": n,
                 "sha256": h.hexdigest(), "served_by": c.server.name})


def h_bytes(c, req, path, q):
    c.drain(req)
    n = qint(q, "n", 0)
    c.head(200, [("Content-Type", "application/octet-stream"), ("Content-Length", str(n))])
    if req.method != "HEAD":
        for chunk in pattern_chunks(n):
            c.send(chunk)


def h_chunked(c, req, path, q):
    c.drain(req)
    n = qint(q, "n", 0)
    size = max(1, qint(q, "size", 4096))
    if req.version == "HTTP/1.0":
        c.keep = False
        c.head(200, [("Content-Type", "application/octet-stream")])
        if req.method != "HEAD":
            for chunk in pattern_chunks(n):
                c.send(chunk)
        return
    c.head(200, [("Content-Type", "application/octet-stream"), ("Transfer-Encoding", "chunked")])
    if req.method == "HEAD":
        return
    for chunk in pattern_chunks(n, size):
        c.send(b"%x\r\n" % len(chunk) + bytes(chunk) + b"\r\n")
    c.send(b"0\r\n\r\n")


def h_sse(c, req, path, q):
    c.drain(req)
    n = qint(q, "n", 5)
    ms = qint(q, "ms", 300)
    c.head(200, [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                 ("Transfer-Encoding", "chunked")])
    for i in range(n):
        if i:
            time.sleep(ms / 1000.0)
        ev = ("id: %d\ndata: {\"i\": %d, \"t\": %.3f}\n\n" % (i, i, time.time())).encode()
        c.send(b"%x\r\n" % len(ev) + ev + b"\r\n")
    c.send(b"0\r\n\r\n")


def h_slow(c, req, path, q):
    c.drain(req)
    ms = qint(q, "ms", 1000)
    time.sleep(ms / 1000.0)
    c.json(req, {"slept_ms": ms, "served_by": c.server.name})


def h_status(c, req, path, q):
    c.drain(req)
    try:
        status = int(path.rsplit("/", 1)[1])
    except ValueError:
        status = 400
    if status in (204, 304):
        c.respond(req, status, headers=[("ETag", '"x"')] if status == 304 else [])
    else:
        c.respond(req, status, ("status %d\n" % status).encode())


def h_hop(c, req, path, q):
    c.drain(req)
    body = b"hop\n"
    c.head(200, [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                 ("Connection", "X-Foo, keep-alive"), ("X-Foo", "1"), ("Keep-Alive", "timeout=5"),
                 ("Proxy-Connection", "x"), ("Trailer", "X-Bar"), ("Upgrade", "h2c"),
                 ("Proxy-Authenticate", 'Basic realm="x"'), ("X-End", "1")])
    if req.method != "HEAD":
        c.send(body)


def h_drop(c, req, path, q):
    c.drain(req)
    c.keep = False
    raise Closed()


def h_partial(c, req, path, q):
    c.drain(req)
    n = qint(q, "n", 100000)
    c.head(200, [("Content-Type", "application/octet-stream"), ("Content-Length", str(n))])
    for chunk in pattern_chunks(n // 2):
        c.send(chunk)
    c.keep = False
    raise Closed()


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC11B65").encode()).digest()).decode()


def h_ws(c, req, path, q):
    key = req.get("sec-websocket-key")
    if not key or not req.has_token("connection", "upgrade") or (req.get("upgrade") or "").lower() != "websocket":
        c.respond(req, 400, b"not a websocket handshake\n")
        return
    c.head(101, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                 ("Sec-WebSocket-Accept", ws_accept(key))], reason="Switching Protocols")
    rf = c.rfile

    def readn(n):
        data = rf.read(n)
        if len(data) != n:
            raise Closed()
        return data

    def frame(op, payload):
        n = len(payload)
        if n < 126:
            hdr = bytes([0x80 | op, n])
        elif n < 65536:
            hdr = bytes([0x80 | op, 126]) + n.to_bytes(2, "big")
        else:
            hdr = bytes([0x80 | op, 127]) + n.to_bytes(8, "big")
        c.send(hdr + payload)

    while True:
        b0, b1 = readn(2)
        op = b0 & 0x0F
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(readn(2), "big")
        elif n == 127:
            n = int.from_bytes(readn(8), "big")
        if not b1 & 0x80:
            frame(8, (1002).to_bytes(2, "big") + b"unmasked")
            raise Closed()
        mask = readn(4)
        data = bytearray(readn(n))
        for i in range(len(data)):
            data[i] ^= mask[i & 3]
        if op == 8:
            frame(8, bytes(data))
            raise Closed()
        if op == 9:
            frame(10, bytes(data))
        elif op in (1, 2, 0):
            frame(op if op else 2, bytes(data))


RAW = {
    "garbage": b"this is not HTTP\r\n\r\n",
    "cl_te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "dup_cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "bad_chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nxx\r\n0\r\n\r\n",
    "no_length": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello, close-delimited",
    "trailers": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
                b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    "no_reason": b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok",
    "early_hints": b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                   b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "te_ows": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n",
}


def h_raw(c, req, path, q):
    c.drain(req)
    c.keep = False
    c.send(RAW.get(path.rsplit("/", 1)[1], RAW["garbage"]))
    raise Closed()


def h_trailers(c, req, path, q):
    c.drain(req)
    c.head(200, [("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked"), ("Trailer", "X-T")])
    if req.method != "HEAD":
        c.send(b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")


def h_cookies(c, req, path, q):
    c.drain(req)
    c.respond(req, 200, b"cookies\n", headers=[("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/; HttpOnly")])


def h_bighead(c, req, path, q):
    c.drain(req)
    c.respond(req, 200, b"big\n", headers=[("X-Big", "b" * qint(q, "n", 40000))])


def h_early(c, req, path, q):
    status = qint(q, "status", 413)
    c.keep = False
    c.respond(req, status, b"early answer\n")
    # A polite app: stop sending, then read (and drop) what the client still
    # sends, so that closing does not reset the connection under the answer.
    c.sock.shutdown(socket.SHUT_WR)
    c.sock.settimeout(5)
    try:
        while c.rfile.read1(1 << 20):
            pass
    except OSError:
        pass
    raise Closed()


def h_stats(c, req, path, q):
    c.drain(req)
    c.json(req, {"requests": c.server.count, "paths": c.server.paths})


ROUTES = {"/stats": h_stats, "/trailers": h_trailers, "/cookies": h_cookies, "/bighead": h_bighead, "/early": h_early, "/echo": h_echo, "/upload": h_upload, "/100": h_100, "/bytes": h_bytes,
          "/chunked": h_chunked, "/sse": h_sse, "/slow": h_slow, "/hop": h_hop, "/ws": h_ws,
          "/drop": h_drop, "/partial": h_partial}


def dispatch(c, req):
    u = urllib.parse.urlsplit(req.target)
    path = u.path
    q = urllib.parse.parse_qs(u.query)
    fn = ROUTES.get(path)
    if path != "/stats":
        with c.server.lock:
            c.server.count += 1
            c.server.paths[path] = c.server.paths.get(path, 0) + 1
    if fn is None and path.startswith("/raw/"):
        fn = h_raw
    if fn is None and path.startswith("/status/"):
        fn = h_status
    if fn is None and path.startswith("/echo"):
        fn = h_echo  # /echo/anything keeps the raw path for encoding tests
    if fn is None:
        c.drain(req)
        c.respond(req, 404, b"no such endpoint\n")
        return
    fn(c, req, path, q)


def serve_conn(sock, addr, server):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c = Conn(sock, addr, server)
    try:
        while c.keep:
            sock.settimeout(server.idle_close)
            try:
                req = c.read_request()
            except socket.timeout:
                break
            sock.settimeout(None)
            c.sent_continue = False
            dispatch(c, req)
    except BadRequest as e:
        try:
            c.keep = False
            msg = ("upstream: %s\n" % e).encode()
            c.head(400, [("Content-Type", "text/plain"), ("Content-Length", str(len(msg)))])
            c.send(msg)
        except OSError:
            pass
        sys.stderr.write("upstream %s: 400 %s\n" % (server.name, e))
    except (Closed, OSError):
        pass
    finally:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


class Server:
    def __init__(self, name, port, idle_close):
        self.name = name
        self.idle_close = idle_close
        self.count = 0
        self.paths = {}
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]

    def run(self):
        while True:
            s, addr = self.sock.accept()
            t = threading.Thread(target=serve_conn, args=(s, addr, self), daemon=True)
            t.start()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (see --ready-file)")
    ap.add_argument("--name", default="app")
    ap.add_argument("--ready-file", help="write the port here once listening")
    ap.add_argument("--idle-close", type=float, default=30.0,
                    help="close keep-alive connections idle this many seconds")
    ap.add_argument("--gen", type=int, metavar="N", help="write N pattern bytes to stdout and exit")
    ap.add_argument("--sha", type=int, metavar="N", help="print sha256 of N pattern bytes and exit")
    ap.add_argument("--full-backlog", action="store_true", help="a port whose connects hang")
    a = ap.parse_args()
    if a.full_backlog:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", a.port))
        lsock.listen(0)
        port = lsock.getsockname()[1]
        filler = socket.create_connection(("127.0.0.1", port))  # fills the queue
        if a.ready_file:
            with open(a.ready_file + ".tmp", "w") as f:
                f.write("%d\n" % port)
            os.rename(a.ready_file + ".tmp", a.ready_file)
        print("ready %d" % port, flush=True)
        while True:
            time.sleep(3600)
        return
    if a.gen is not None:
        out = sys.stdout.buffer
        try:
            for c in pattern_chunks(a.gen):
                out.write(c)
            out.flush()
        except BrokenPipeError:
            sys.exit(1)
        return
    if a.sha is not None:
        print(pattern_sha(a.sha))
        return
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    srv = Server(a.name, a.port, a.idle_close)
    if a.ready_file:
        tmp = a.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % srv.port)
        os.rename(tmp, a.ready_file)
    print("ready %d" % srv.port, flush=True)
    srv.run()


if __name__ == "__main__":
    main()
