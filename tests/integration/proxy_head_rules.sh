#!/usr/bin/env bash
# Request and response heads at the edges an audit found (2026-11-23), each checked
# through the real binary against the test app:
#   - trailing whitespace after a field value is not part of the value (RFC 9112 §5,
#     RFC 9110 §5.5): Host, Content-Length, Transfer-Encoding with a trailing SP pass;
#   - the 64 KiB head limit counts the head's bytes on the wire, not only names and values;
#   - Connection options are matched in linear time (a 60 KB head naming one option
#     thousands of times costs milliseconds of CPU, not seconds);
#   - "_" spellings of the fields leaseway owns (Fly_Primary_Instance, X_Forwarded_For, ...)
#     never reach the app, where CGI-style apps would read them as the real ones;
#   - the asterisk-form target is for OPTIONS only (RFC 9112 §3.2.4);
#   - leaseway's own answers to HEAD carry no body (RFC 9110 §9.3.2);
#   - a method llhttp does not know is answered 501, not 400 (RFC 9110 §15.6.2);
#   - the leaseway_wrote cookie goes on the final answer, never on a 1xx;
#   - every answer carries Date (RFC 9110 §6.6.1), the app's when it sent one.
. "$(dirname "$0")/../lib/proxy.sh"

start_upstream app
start_leaseway --consistency-window 5s

pyrun heads "$LW_PORT" "$UPSTREAM_PORT" "$LW_PID" <<'EOF'
import sys, time, json, os, urllib.request
from rawhttp import Client, Check
ck = Check()
port, up, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

def count():
    return json.load(urllib.request.urlopen("http://127.0.0.1:%d/stats" % up))["requests"]

def cpu_s():
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def ask(raw, method="GET", timeout=10):
    c = Client(port, timeout=timeout)
    c.send(raw)
    return c, c.response(method)

with ck.step("trailing whitespace after a value"):
    c, r = ask(b"GET /echo HTTP/1.1\r\nHost: t \r\n\r\n")
    ck.eq("Host with a trailing SP: 200", r.status, 200)
    ck.eq("the app sees the Host without it", [v for k, v in r.json()["headers"] if k.lower() == "host"], ["t"])
    c, r = ask(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5 \r\n\r\nhello")
    ck.eq("Content-Length with a trailing SP: 200, 5 body bytes", (r.status, r.status == 200 and r.json()["body_length"]), (200, 5))
    c, r = ask(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    ck.eq("Transfer-Encoding with a trailing SP: 200, 5 body bytes", (r.status, r.status == 200 and r.json()["body_length"]), (200, 5))
    c, r = ask(b"GET /raw/te_ows HTTP/1.1\r\nHost: t\r\n\r\n")
    ck.eq("the app's 'Transfer-Encoding: chunked ': relayed, not 502", (r.status, r.body), (200, b"hello"))

with ck.step("64 KiB head limit on the wire"):
    before = count()
    c, r = ask(b"GET /echo HTTP/1.1\r\nHost: t\r\n" + b"X-F: v\r\n" * 15000 + b"\r\n")
    ck.eq("15 000 'X-F: v' fields (120 KB on the wire): 431", r.status, 431)
    c, r = ask(b"GET /echo HTTP/1.1\r\nHost: t\r\n" + b"a:\r\n" * 60000 + b"\r\n")
    ck.eq("60 000 'a:' fields (240 KB on the wire): 431", r.status, 431)
    ck.eq("neither reached the app", count(), before)
    c, r = ask(b"GET /echo HTTP/1.1\r\nHost: t\r\n" + b"X-F: v\r\n" * 7500 + b"\r\n")
    # the test app has its own limit on the number of fields: it answers, with a 400 of its own
    ck.ok("7 500 of them (60 KB) reach the app", r.get("x-served-by") is not None, "%d %r" % (r.status, r.body[:80]))

with ck.step("Connection options in linear time"):
    head = b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: " + b"b," * 3000 + b"b\r\n" + b"c: x\r\n" * 9000 + b"\r\n"
    ck.ok("the head is under 64 KiB", len(head) < 65536, "%d bytes" % len(head))
    t0 = cpu_s()
    for i in range(4):
        c, r = ask(head, timeout=30)
        ck.ok("request %d reaches the app" % (i + 1), r.get("x-served-by") is not None, "%d %r" % (r.status, r.body[:80]))
    used = cpu_s() - t0
    # about 10 ms here; the quadratic match took 0.4-0.6 s of CPU per request
    ck.ok("4 such requests cost leaseway under 0.4 s of CPU", used < 0.4, "%.2f s" % used)
    c, r = ask(b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: X-Gone, keep-alive\r\nX-Gone: 1\r\nX-Kept: 2\r\n\r\n")
    names = [k.lower() for k, v in r.json()["headers"]]
    ck.eq("a field Connection names is still dropped, the others kept", ("x-gone" in names, "x-kept" in names), (False, True))

with ck.step("'_' spellings of leaseway's fields"):
    c, r = ask(b"GET /echo HTTP/1.1\r\nHost: t\r\nFly_Primary_Instance: evil\r\nX_Forwarded_For: 6.6.6.6\r\n"
               b"X_Forwarded_Proto: https\r\nx_forwarded_host: evil\r\nLeaseway_Forwarded_By: evil\r\nX_Other: 1\r\n\r\n")
    names = [k.lower() for k, v in r.json()["headers"]]
    ck.eq("none of them reaches the app", [n for n in names if n in ("fly_primary_instance", "x_forwarded_for",
          "x_forwarded_proto", "x_forwarded_host", "leaseway_forwarded_by")], [])
    ck.ok("another '_' field does", "x_other" in names, str(names))

with ck.step("asterisk-form"):
    before = count()
    c, r = ask(b"GET * HTTP/1.1\r\nHost: t\r\n\r\n")
    ck.eq("GET *: 400", r.status, 400)
    c, r = ask(b"DELETE * HTTP/1.1\r\nHost: t\r\n\r\n")
    ck.eq("DELETE *: 400", r.status, 400)
    ck.eq("neither reached the app", count(), before)
    c, r = ask(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n")
    ck.ok("OPTIONS * reaches the app", count() == before + 1, "status %d" % r.status)

with ck.step("HEAD answered by leaseway itself"):
    for raw, what in ((b"HEAD / HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n", "400 (two Host fields)"),
                      (b"HEAD /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", "414")):
        c, r = ask(raw, "HEAD")
        ck.eq("HEAD, %s: the status" % what, r.status, int(what[:3]))
        ck.ok("HEAD, %s: Content-Length as for GET, no body bytes" % what,
              r.get("content-length") not in (None, "0") and c.closed(3) and c.buf == b"", repr(c.buf[:80]))

with ck.step("unknown method"):
    before = count()
    c, r = ask(b"QUERY /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
    ck.eq("QUERY: 501 Not Implemented", r.status, 501)
    ck.ok("then the connection closes", c.closed(3))
    ck.eq("the app saw nothing", count(), before)

with ck.step("cookie and 1xx"):
    c, r = ask(b"POST /raw/early_hints HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
    ck.eq("the 103 is relayed", [s for s, h in r.interim], [103])
    ck.eq("the 103 has no Set-Cookie", [v for s, h in r.interim for k, v in h if k.lower() == "set-cookie"], [])
    ck.ok("the 200 has the leaseway_wrote cookie", (r.get("set-cookie") or "").startswith("leaseway_wrote="), str(r.headers))

with ck.step("Date"):
    c, r = ask(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
    ck.ok("an app answer without Date gets one", r.get("date") is not None and r.get("date").endswith(" GMT"), str(r.get("date")))
    c, r = ask(b"GET / HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n")
    ck.ok("leaseway's own 400 has Date", r.get("date") is not None and r.get("date").endswith(" GMT"), str(r.get("date")))
    ck.eq("only one Date", len(r.all("date")), 1)
ck.done()
EOF
finish
