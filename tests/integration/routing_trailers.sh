#!/usr/bin/env bash
# Regression: trailer fields of a chunked write that leaseway buffers (forwarded to the
# primary, so it can be held or retried) must not become header fields of the request the
# primary's app sees (RFC 9110 §6.5.1: a recipient must not merge trailers into the header
# section). The head sent on is the one the client sent; trailers are dropped, as on the
# local route. A trailer named Host or Content-Length changes nothing.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/static_pair.sh
. "$here/../lib/static_pair.sh"
static_pair_start
python3 - "$p2" "$p1" <<'PY' || { tail -n 20 "$d/r.log" "$d/p.log"; die "see above"; }
import json, socket, sys
fails = 0
def send(port, trailers):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\n0\r\n" + trailers + b"\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    n = int([l.split(b":", 1)[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
    while len(body) < n:
        body += s.recv(65536)
    s.close()
    status = int(head.split()[1])
    return status, json.loads(body) if status == 200 else {"answer": body.decode("latin-1").strip()}
for name, port in (("forwarded by a replica", int(sys.argv[1])), ("sent to the primary", int(sys.argv[2]))):
    status, j = send(port, b"X-Checksum: abc\r\nHost: evil.example\r\nContent-Length: 3\r\n")
    if status != 200:
        fails += 1
        print("FAIL - chunked write with trailers, %s: %d %s" % (name, status, j["answer"]))
        continue
    hdrs = {}
    for k, v in j["headers"]:
        hdrs.setdefault(k.lower(), []).append(v)
    problems = []
    if j["served_by"] != "P-app": problems.append("served by %s" % j["served_by"])
    if j["body_length"] != 5: problems.append("body length %d" % j["body_length"])
    if "x-checksum" in hdrs: problems.append("the trailer X-Checksum reached the app as a header")
    if hdrs.get("host") != ["t"]: problems.append("Host fields at the app: %r" % hdrs.get("host"))
    if hdrs.get("x-forwarded-host") != ["t"]: problems.append("X-Forwarded-Host: %r" % hdrs.get("x-forwarded-host"))
    if "content-length" in hdrs: problems.append("a Content-Length (from the trailer) reached the app")
    if problems:
        fails += 1
        print("FAIL - chunked write with trailers, %s: %s" % (name, "; ".join(problems)))
    else:
        print("ok   - chunked write with trailers, %s: body intact, trailers not merged into the head" % name)
# trailers are bounded like a head: 431 and a closed connection past 64 KiB
for name, port in (("forwarded by a replica", int(sys.argv[1])), ("sent to the primary", int(sys.argv[2]))):
    status, j = send(port, b"X-Big: " + b"a" * 70000 + b"\r\n")
    if status == 431:
        print("ok   - 70 KB of trailers, %s: 431" % name)
    else:
        fails += 1
        print("FAIL - 70 KB of trailers, %s: %d, not 431" % (name, status))
sys.exit(1 if fails else 0)
PY
