#!/usr/bin/env python3
"""Client side of tests/bench/litefs_side_by_side.sh (stdlib only).

Each sub-command makes one measured exchange and prints one JSON object:

  req METHOD HOSTPORT PATH [--cookie V] [--body S] [--size N] [--timeout T]
        {code, ms, headers{lower: last value}, set_cookie[], body (<= 4 KiB), err}
        --size N sends N pattern bytes (Content-Length framed)
  ws HOSTPORT PATH     WebSocket handshake + one masked text frame
        {code, ms, echoed: bool, err}
  sse HOSTPORT PATH    {code, first_ms (first "data:" line), total_ms, events, err}
  replay HOSTPORT PATH BODY MAP   emulate Fly's edge for LiteFS's proxy: send,
        and when the answer carries fly-replay: instance=H, re-send the same
        request to MAP[H] (JSON {hostname: hostport}) once
        {code, ms, replayed_to, set_cookie[], body, first_code}
"""
import base64
import hashlib
import json
import os
import socket
import sys
import time

BUF = 65536


def parse_head(data):
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    hdrs, cookies = {}, []
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        k = k.strip().lower().decode("latin-1")
        v = v.strip().decode("latin-1")
        hdrs[k] = v
        if k == "set-cookie":
            cookies.append(v)
    return code, hdrs, cookies, rest


def read_response(s, deadline, method="GET"):
    """Read one response; returns (code, hdrs, cookies, body, first_byte_t)."""
    data = b""
    first = None
    while b"\r\n\r\n" not in data:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = s.recv(BUF)
        if not chunk:
            raise EOFError("closed before the response head (%d bytes)" % len(data))
        if first is None:
            first = time.monotonic()
        data += chunk
    code, hdrs, cookies, rest = parse_head(data)
    body = rest
    if method == "HEAD" or code in (204, 304) or 100 <= code < 200:
        return code, hdrs, cookies, b"", first
    if "content-length" in hdrs:
        n = int(hdrs["content-length"])
        while len(body) < n:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(BUF)
            if not chunk:
                break
            body += chunk
        return code, hdrs, cookies, body[:n], first
    if "chunked" in hdrs.get("transfer-encoding", "").lower():
        out, buf = b"", body
        while True:
            while b"\r\n" not in buf:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                c = s.recv(BUF)
                if not c:
                    return code, hdrs, cookies, out, first
                buf += c
            line, _, buf = buf.partition(b"\r\n")
            size = int(line.split(b";")[0], 16)
            while len(buf) < size + 2:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                c = s.recv(BUF)
                if not c:
                    return code, hdrs, cookies, out + buf, first
                buf += c
            if size == 0:
                return code, hdrs, cookies, out, first
            out += buf[:size]
            buf = buf[size + 2:]
    while True:  # close-delimited
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            c = s.recv(BUF)
        except socket.timeout:
            break
        if not c:
            break
        body += c
    return code, hdrs, cookies, body, first


def connect(hostport, timeout):
    host, port = hostport.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def pattern(n):
    block = hashlib.shake_128(b"litefs side by side").digest(1 << 16)
    reps = n // len(block) + 1
    return (block * reps)[:n]


def do_req(method, hostport, path, cookie=None, body=None, timeout=15.0):
    t0 = time.monotonic()
    res = {"code": None, "ms": None, "headers": {}, "set_cookie": [], "body": "", "err": None}
    try:
        s = connect(hostport, timeout)
        hdrs = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % hostport, "Connection: close"]
        if cookie:
            hdrs.append("Cookie: " + cookie)
        if body is not None:
            hdrs.append("Content-Type: application/json" if body[:1] == b"{" else "Content-Type: application/octet-stream")
            hdrs.append("Content-Length: %d" % len(body))
        s.sendall(("\r\n".join(hdrs) + "\r\n\r\n").encode())
        if body:
            view = memoryview(body)
            for i in range(0, len(body), 1 << 16):
                s.sendall(view[i:i + (1 << 16)])
        code, h, ck, b, _ = read_response(s, t0 + timeout, method)
        s.close()
        res.update(code=code, headers=h, set_cookie=ck, body=b[:4096].decode("utf-8", "replace"))
    except (OSError, EOFError, ValueError) as e:
        res["err"] = "%s: %s" % (type(e).__name__, e)
    res["ms"] = round((time.monotonic() - t0) * 1000, 1)
    return res


def do_ws(hostport, path, timeout=8.0):
    t0 = time.monotonic()
    res = {"code": None, "ms": None, "echoed": False, "err": None}
    try:
        s = connect(hostport, timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, hostport, key)).encode())
        data = b""
        while b"\r\n\r\n" not in data:
            s.settimeout(max(0.01, t0 + timeout - time.monotonic()))
            c = s.recv(BUF)
            if not c:
                raise EOFError("closed during the handshake")
            data += c
        code, h, _, rest = parse_head(data)
        res["code"] = code
        if code == 101:
            payload = b"hello litefs"
            mask = os.urandom(4)
            frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            s.sendall(frame)
            buf = rest
            while len(buf) < 2 + len(payload):
                s.settimeout(max(0.01, t0 + timeout - time.monotonic()))
                c = s.recv(BUF)
                if not c:
                    break
                buf += c
            res["echoed"] = buf[2:2 + len(payload)] == payload
        s.close()
    except (OSError, EOFError, ValueError) as e:
        res["err"] = "%s: %s" % (type(e).__name__, e)
    res["ms"] = round((time.monotonic() - t0) * 1000, 1)
    return res


def do_sse(hostport, path, timeout=10.0):
    t0 = time.monotonic()
    res = {"code": None, "first_ms": None, "total_ms": None, "events": 0, "err": None}
    try:
        s = connect(hostport, timeout)
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
                   % (path, hostport)).encode())
        data = b""
        while True:
            s.settimeout(max(0.01, t0 + timeout - time.monotonic()))
            c = s.recv(BUF)
            if not c:
                break
            data += c
            if res["code"] is None and b"\r\n\r\n" in data:
                res["code"] = parse_head(data)[0]
            body = data.partition(b"\r\n\r\n")[2]
            if res["first_ms"] is None and b"data:" in body:
                res["first_ms"] = round((time.monotonic() - t0) * 1000, 1)
        res["events"] = data.partition(b"\r\n\r\n")[2].count(b"data:")
        if res["code"] is None and data:
            res["code"] = parse_head(data)[0]
        s.close()
    except (OSError, EOFError, ValueError) as e:
        res["err"] = "%s: %s" % (type(e).__name__, e)
    res["total_ms"] = round((time.monotonic() - t0) * 1000, 1)
    return res


def main():
    a = sys.argv[1:]
    cmd = a.pop(0)
    opts = {}
    pos = []
    while a:
        x = a.pop(0)
        if x.startswith("--"):
            opts[x[2:]] = a.pop(0)
        else:
            pos.append(x)
    timeout = float(opts.get("timeout", 15))
    body = None
    if "body" in opts:
        body = opts["body"].encode()
    if "size" in opts:
        body = pattern(int(opts["size"]))
    if cmd == "req":
        out = do_req(pos[0], pos[1], pos[2], opts.get("cookie"), body, timeout)
        if body is not None and len(body) > 4096:
            out["sent_sha256"] = hashlib.sha256(body).hexdigest()
    elif cmd == "ws":
        out = do_ws(pos[0], pos[1], timeout)
    elif cmd == "sse":
        out = do_sse(pos[0], pos[1], timeout)
    elif cmd == "replay":
        mp = json.loads(pos[3])
        first = do_req("POST", pos[0], pos[1], None, pos[2].encode(), timeout)
        out = dict(first)
        out["first_code"] = first["code"]
        out["replayed_to"] = None
        fr = first["headers"].get("fly-replay", "")
        if fr.startswith("instance="):
            inst = fr.split("=", 1)[1].split(";")[0].strip()
            if inst in mp:
                second = do_req("POST", mp[inst], pos[1], None, pos[2].encode(), timeout)
                out = dict(second)
                out["first_code"] = first["code"]
                out["replayed_to"] = inst
                out["ms"] = round(first["ms"] + second["ms"], 1)
    else:
        sys.exit("unknown command " + cmd)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
