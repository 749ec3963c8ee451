#!/usr/bin/env bash
# Batched sends: what one event-loop pass completed goes out in one
# io_uring_enter(2) (proxy/proxy_uring.c), and the answers stay right.
#
# The burst: 24 keep-alive clients, each with a pooled app connection, write a
# request while leaseway is stopped (SIGSTOP); on SIGCONT one pass reads all 24
# and sends the 24 requests to the app in one system call, which
# leaseway_send_batch_size shows as one batch of 17..32 sends. The app answers
# each after a different delay, so answers come back one per pass and are not
# batched: the batch can only be the requests. Regression: requests without a
# body used to be sent to the app at once from their head, so a pass never
# held more than one of them.
#
# Then 3 MB answers that the clients do not read for a second: every byte must
# still arrive, in order. (What a batch does with a full socket, a short send or
# a reset peer is proven against real sockets in tests/unit/test_uring.c: it
# leaves those bytes to the usual send path.) Both again with --no-io-uring
# (one send per socket), which must answer the same and make no batch.
. "$(dirname "$0")/../lib/proxy.sh"

start_upstream app

burst() { # label
    pyrun "$1" "$LW_PORT" "$LW_ADMIN" "$LW_PID" "$1" <<'EOF'
import hashlib, os, signal, sys, time, urllib.request
from rawhttp import Client, Check, wait_stopped
import upstream
ck = Check()
port, admin, pid, label = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
batched = label == "io_uring"
N = 24

def metrics():
    t = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=5).read().decode()
    m = {}
    for line in t.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            m[k] = float(v)
    return m

def bucket(m, le):
    return m['leaseway_send_batch_size_bucket{le="%s"}' % le]

def stopped_burst(clients, request_for):
    """Writes each client's request while leaseway is stopped, so that one pass reads them all."""
    os.kill(pid, signal.SIGSTOP)
    try:
        # a worker still in epoll_wait could take the first requests
        if not wait_stopped(pid):
            raise AssertionError("leaseway did not stop within 5 s")
        for k, c in enumerate(clients):
            c.send(request_for(k))
    finally:
        os.kill(pid, signal.SIGCONT)

clients = [Client(port, timeout=30) for _ in range(N)]
# N requests held by the app at the same time need N app connections; they stay pooled for 2 s
for c in clients:
    c.send(b"GET /slow?ms=400 HTTP/1.1\r\nHost: t\r\n\r\n")
ck.ok("warm-up: %d concurrent requests answered" % N, all(c.response().status == 200 for c in clients))

before = metrics()
delays = [50 + 40 * k for k in range(N)]
stopped_burst(clients, lambda k: b"GET /slow?ms=%d HTTP/1.1\r\nHost: t\r\n\r\n" % delays[k])
got = [c.response().json()["slept_ms"] for c in clients]
ck.eq("the %d requests of one pass: each client gets its own answer" % N, got, delays)
after = metrics()
mid = (bucket(after, 32) - bucket(after, 16)) - (bucket(before, 32) - bucket(before, 16))
total = after["leaseway_send_batch_size_count"]
print("     batches of 17..32 sends during the burst: %d; batches since start: %d, sends in them: %d"
      % (mid, total, after["leaseway_send_batch_size_sum"]))
if batched:
    ck.ok("the %d requests went to the app in one io_uring_enter (a batch of 17..32 sends)" % N, mid >= 1,
          "no such batch: %r" % {k: v for k, v in after.items() if "batch" in k})
else:
    ck.eq("--no-io-uring: no batch at all", total, 0)

# Big answers nobody reads for a second: the batch meets full sockets.
n = 3_000_000
want = upstream.pattern_sha(n)
stopped_burst(clients, lambda k: b"GET /bytes?n=%d HTTP/1.1\r\nHost: t\r\n\r\n" % n)
time.sleep(1)
ok = 0
for c in clients:
    r = c.response()
    ok += r.status == 200 and hashlib.sha256(r.body).hexdigest() == want
ck.eq("%d unread 3 MB answers, then read: every byte arrives, in order" % N, ok, N)
# and the connections still work
stopped_burst(clients, lambda k: b"GET /echo?k=%d HTTP/1.1\r\nHost: t\r\n\r\n" % k)
paths = [c.response().json()["path"] for c in clients]
ck.eq("the same connections answer again, each its own", paths, ["/echo?k=%d" % k for k in range(N)])
ck.done()
EOF
}

start_leaseway --upstream-timeout 10s
check "the log does not say io_uring is unavailable (this kernel has it)" \
    sh -c "! grep -q 'io_uring unavailable' '$LW_LOG'"
burst io_uring
stop_leaseway TERM 10
expect_eq "exit code after SIGTERM (io_uring)" "$LW_EXIT" 0

start_leaseway --upstream-timeout 10s --no-io-uring
burst one-by-one
stop_leaseway TERM 10
expect_eq "exit code after SIGTERM (--no-io-uring)" "$LW_EXIT" 0

finish
