"""Raw-socket HTTP/1.1 client pieces for leaseway's integration tests.

Used from the python snippets inside tests/integration/*.sh: open a socket,
write exact bytes, read back responses with their framing checked by hand
(Content-Length, chunked, close-delimited; no body for HEAD, 1xx, 204, 304),
and tell whether the server closed the connection.

    from rawhttp import Client, Check
    ck = Check()
    c = Client(port)
    c.send(b"GET /echo HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    r = c.response()
    ck.eq("status", r.status, 200)
    ck.done()   # exits 1 if any check failed
"""

import contextlib
import json
import os
import socket
import sys
import time


class Check:
    """Prints "ok - ..." / "FAIL - ..." lines and remembers failures."""

    def __init__(self):
        self.fails = 0

    def ok(self, desc, cond, detail=""):
        if cond:
            print("ok   - %s" % desc, flush=True)
        else:
            self.fails += 1
            print("FAIL - %s%s" % (desc, (": " + detail) if detail else ""), flush=True)
        return cond

    def eq(self, desc, got, want):
        return self.ok(desc, got == want, "got %r, expected %r" % (got, want))

    def warn(self, desc, cond, detail=""):
        if cond:
            print("ok   - %s" % desc, flush=True)
        else:
            print("WARN - %s%s (not required by SPEC)" % (desc, (": " + detail) if detail else ""), flush=True)
        return cond

    @contextlib.contextmanager
    def step(self, name):
        """A group of checks: an exception inside fails the step, not the script."""
        try:
            yield
        except Exception as e:  # noqa: BLE001 - report whatever broke, go on
            self.fails += 1
            print("FAIL - %s: aborted by %s: %s" % (name, type(e).__name__, e), flush=True)

    def done(self):
        sys.exit(1 if self.fails else 0)


class Response:
    def __init__(self):
        self.version = ""
        self.status = 0
        self.reason = ""
        self.headers = []  # [(name, value)]
        self.body = b""
        self.raw_head = b""
        self.interim = []  # 1xx responses seen before this one: [(status, headers)]
        self.t_head = 0.0  # time the head was complete
        self.t_done = 0.0

    def get(self, name):
        name = name.lower()
        vals = [v for (k, v) in self.headers if k.lower() == name]
        return ", ".join(vals) if vals else None

    def all(self, name):
        name = name.lower()
        return [v for (k, v) in self.headers if k.lower() == name]

    def has_token(self, name, token):
        v = self.get(name)
        return v is not None and token.lower() in [t.strip().lower() for t in v.split(",")]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%s %d %s, %d body bytes>" % (self.version, self.status, self.reason, len(self.body))


class ProtocolError(Exception):
    pass


class Client:
    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False

    def settimeout(self, t):
        self.sock.settimeout(t)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def send_slowly(self, data, delay):
        for i in range(len(data)):
            self.sock.sendall(data[i:i + 1])
            time.sleep(delay)

    def _fill(self):
        if self.eof:
            return False
        try:
            d = self.sock.recv(1 << 20)
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def _line(self):
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise ProtocolError("EOF while reading a line (have %r)" % self.buf[:200])
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise ProtocolError("EOF with %d of %d body bytes" % (len(self.buf), n))
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def head(self):
        """Read one response head (status line + headers)."""
        r = Response()
        start = len(self.buf)
        line = self._line()
        parts = line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ProtocolError("bad status line %r" % line[:200])
        r.version = parts[0].decode()
        r.status = int(parts[1])
        r.reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
        raw = [line]
        while True:
            line = self._line()
            raw.append(line)
            if line == b"":
                break
            k, _, v = line.partition(b":")
            r.headers.append((k.decode("latin-1"), v.strip().decode("latin-1")))
        r.raw_head = b"\r\n".join(raw) + b"\r\n"
        r.t_head = time.monotonic()
        del start
        return r

    def response(self, method="GET", on_chunk=None):
        """Read one final response (1xx heads are collected in .interim)."""
        interim = []
        while True:
            r = self.head()
            if 100 <= r.status < 200 and r.status != 101:
                interim.append((r.status, r.headers))
                continue
            break
        r.interim = interim
        te = r.get("transfer-encoding")
        cl = r.get("content-length")
        if method == "HEAD" or r.status in (204, 304) or r.status == 101:
            pass
        elif te is not None:
            if te.strip().lower() != "chunked":
                raise ProtocolError("unexpected Transfer-Encoding %r" % te)
            body = []
            while True:
                size_line = self._line()
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while self._line() != b"":
                        pass
                    break
                data = self._exact(size)
                if on_chunk:
                    on_chunk(data)
                body.append(data)
                if self._exact(2) != b"\r\n":
                    raise ProtocolError("chunk not followed by CRLF")
            r.body = b"".join(body)
        elif cl is not None:
            r.body = self._exact(int(cl))
        else:
            while self._fill():
                pass
            r.body, self.buf = self.buf, b""
        r.t_done = time.monotonic()
        return r

    def closed(self, timeout=2.0):
        """True if the peer closes (EOF or reset) within timeout with no more data."""
        if self.buf:
            return False
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        finally:
            self.sock.settimeout(old)
        if d:
            self.buf += d
            return False
        self.eof = True
        return True

    def close(self):
        self.sock.close()


def lw_port():
    return int(os.environ["LW_PORT"])


def up_port():
    return int(os.environ["UPSTREAM_PORT"])


def get_headers(pairs, name):
    name = name.lower()
    return [v for (k, v) in pairs if k.lower() == name]


def wait_stopped(pid, timeout=5.0):
    """After kill(pid, SIGSTOP), which returns before the threads stop: wait until every thread
    of pid is stopped (state t or T). False if they are not within timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        states = []
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/stat" % (pid, t)) as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
        if all(st in "tT" for st in states):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
