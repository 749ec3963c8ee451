#!/usr/bin/env python3
"""Helper clients for tests/bench/bench.sh (stdlib only).

  count HOST PORT PATH N CONC
      Send exactly N GET requests (HTTP/1.1, keep-alive) spread over CONC
      connections, one request in flight per connection. Every response must
      be 200 with the expected body length. Prints one line:
        ok=N fail=F reconnects=R seconds=T
      Exit status 0 only if all N succeeded. A reconnect (server closed the
      connection) is allowed but reported: it means keep-alive was not kept.

  idle HOST PORT PATH N PID [SETTLE_S]
      Warm the proxy (a few requests, connections closed), read VmRSS of PID,
      then open N connections, each sending one request and reading the full
      response, and keep them all open (idle keep-alive). After SETTLE_S
      seconds read VmRSS again and check how many sockets the server still
      holds open. Prints one line:
        conns=N ok=K alive=A rss_before_kb=B rss_after_kb=C
"""
import asyncio
import socket
import sys
import time

TIMEOUT = 30.0  # seconds for one connect or one request/response


def vmrss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Conn:
    def __init__(self, host, port, path):
        self.host, self.port = host, port
        self.req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    f"User-Agent: leaseway-bench\r\n\r\n").encode()
        self.r = self.w = None

    async def open(self):
        self.r, self.w = await asyncio.open_connection(self.host, self.port)
        self.w.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self):
        if self.w is not None:
            self.w.close()
        self.r = self.w = None

    async def request(self):
        """One request/response. Returns (status, keep_alive)."""
        self.w.write(self.req)
        head = await self.r.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        clen, chunked, close = None, False, lines[0].startswith("HTTP/1.0")
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            k, v = k.strip().lower(), v.strip().lower()
            if k == "content-length":
                clen = int(v)
            elif k == "transfer-encoding" and "chunked" in v:
                chunked = True
            elif k == "connection":
                close = "close" in v or (close and "keep-alive" not in v)
        if chunked:
            while True:
                size = int((await self.r.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.r.readexactly(size + 2)
                if size == 0:
                    break
        elif clen is not None:
            await self.r.readexactly(clen)
        else:
            await self.r.read()  # body until close
            close = True
        return status, not close


async def count(host, port, path, n, conc):
    left = [n]
    res = {"ok": 0, "fail": 0, "reconnects": 0}

    async def worker():
        c = Conn(host, port, path)
        opened = False
        while left[0] > 0:
            left[0] -= 1
            try:
                if c.w is None:
                    if opened:
                        res["reconnects"] += 1
                    await asyncio.wait_for(c.open(), TIMEOUT)
                    opened = True
                st, ka = await asyncio.wait_for(c.request(), TIMEOUT)
                res["ok" if st == 200 else "fail"] += 1
                if not ka:
                    c.close()
                if st != 200 and c.w is not None:
                    c.close()  # do not trust the stream after an error
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError,
                    asyncio.TimeoutError):
                res["fail"] += 1
                c.close()
                if res["fail"] >= 20:  # give up on a broken server
                    left[0] = 0
        c.close()

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(max(1, min(conc, n)))))
    dt = time.monotonic() - t0
    print(f"ok={res['ok']} fail={res['fail']} reconnects={res['reconnects']} "
          f"seconds={dt:.2f}", flush=True)
    return 0 if res["ok"] == n else 1


async def idle(host, port, path, n, pid, settle):
    # warm-up: lazy initialisation and upstream pools, then let it settle
    for _ in range(4):
        c = Conn(host, port, path)
        await asyncio.wait_for(c.open(), TIMEOUT)
        for _ in range(50):
            await asyncio.wait_for(c.request(), TIMEOUT)
        c.close()
    await asyncio.sleep(1.0)
    before = vmrss_kb(pid)

    sem = asyncio.Semaphore(128)  # bounded in-flight, so upstream conns stay few
    conns, ok = [], [0]

    async def one():
        c = Conn(host, port, path)
        async with sem:
            try:
                await asyncio.wait_for(c.open(), TIMEOUT)
                st, ka = await asyncio.wait_for(c.request(), TIMEOUT)
                if st == 200 and ka:
                    ok[0] += 1
                    conns.append(c)
                else:
                    c.close()
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError,
                    asyncio.TimeoutError):
                c.close()

    await asyncio.gather(*(one() for _ in range(n)))
    await asyncio.sleep(settle)
    after = vmrss_kb(pid)
    # a connection the server closed shows EOF (the loop kept reading it)
    alive = sum(1 for c in conns if not c.r.at_eof() and not c.w.is_closing())
    print(f"conns={n} ok={ok[0]} alive={alive} rss_before_kb={before} "
          f"rss_after_kb={after}", flush=True)
    for c in conns:
        c.close()
    return 0 if alive == n else 1


def main(argv):
    if len(argv) >= 6 and argv[1] == "count":
        return asyncio.run(count(argv[2], int(argv[3]), argv[4], int(argv[5]),
                                 int(argv[6]) if len(argv) > 6 else 4))
    if len(argv) >= 7 and argv[1] == "idle":
        return asyncio.run(idle(argv[2], int(argv[3]), argv[4], int(argv[5]),
                                int(argv[6]),
                                float(argv[7]) if len(argv) > 7 else 2.0))
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
