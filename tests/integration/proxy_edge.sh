#!/usr/bin/env bash
# HTTP/1.1 semantics at the edges that a reverse proxy commonly gets wrong:
# no chunked framing towards an HTTP/1.0 client (RFC 9112 §7), repeated
# Set-Cookie kept apart (RFC 9110 §5.3), a large response header, an app
# that answers an upload early, "Connection: close" ending the pipeline,
# repeated X-Forwarded-For, no Fly-Region without --region, a hostname target,
# CONNECT refused (405 with Allow).
. "$(dirname "$0")/../lib/proxy.sh"

start_upstream app
start_leaseway

pyrun edge "$LW_PORT" "$UPSTREAM_PORT" <<'EOF'
import sys, time, json, hashlib, urllib.request
from rawhttp import Client, Check, get_headers
import upstream
ck = Check()
port, up = int(sys.argv[1]), int(sys.argv[2])

def stats(path):
    return json.load(urllib.request.urlopen("http://127.0.0.1:%d/stats" % up))["paths"].get(path, 0)

with ck.step("HTTP/1.0 client, chunked app response"):
    # RFC 9112 §7 / §6.1: chunked must not be sent to an HTTP/1.0 recipient.
    c = Client(port)
    c.send(b"GET /chunked?n=50000&size=1000 HTTP/1.0\r\nHost: t\r\n\r\n")
    r = c.response()
    ck.eq("HTTP/1.0 client: 200", r.status, 200)
    ck.eq("HTTP/1.0 client: no Transfer-Encoding in the answer", r.get("transfer-encoding"), None)
    ck.eq("HTTP/1.0 client: the body is the app's bytes", hashlib.sha256(r.body).hexdigest(), upstream.pattern_sha(50000))

with ck.step("Set-Cookie"):
    c = Client(port)
    c.send(b"GET /cookies HTTP/1.1\r\nHost: t\r\n\r\n")
    r = c.response()
    ck.eq("two Set-Cookie headers stay two header lines", r.all("set-cookie"), ["a=1; Path=/", "b=2; Path=/; HttpOnly"])

with ck.step("large response header"):
    c = Client(port)
    c.send(b"GET /bighead?n=40000 HTTP/1.1\r\nHost: t\r\n\r\n")
    r = c.response()
    ck.eq("a 40 KB response header passes", (r.status, len(r.get("x-big") or "")), (200, 40000))

with ck.step("oversized response header"):
    c = Client(port)
    c.send(b"GET /bighead?n=70000 HTTP/1.1\r\nHost: t\r\n\r\n")
    r = c.response()
    ck.warn("a 70 KB response header from the app: 502", r.status == 502, "got %d" % r.status)

with ck.step("early answer to an upload"):
    # The app answers 413 before reading a 20 MB body (then drains it): the
    # client must get the 413, not a 502 or a reset.
    c = Client(port, timeout=20)
    n = 20 << 20
    c.send(b"POST /early?status=413 HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % n)
    sent = 0
    t0 = time.monotonic()
    import select
    try:
        for chunk in upstream.pattern_chunks(n, 65536):
            if select.select([c.sock], [], [], 0)[0]:
                break  # the answer is here: stop sending, as curl does
            c.send(chunk); sent += len(chunk)
    except OSError:
        pass
    try:
        r = c.response()
        ck.eq("early 413 from the app reaches the client", (r.status, r.body), (413, b"early answer\n"))
    except Exception as e:
        ck.ok("early 413 from the app reaches the client", False, "%s after %d bytes sent" % (e, sent))

with ck.step("CONNECT"):
    # A reverse proxy opens no tunnels: 405, and RFC 9110 §15.5.6 wants the Allow field with it.
    before = stats("example.com:443")
    c = Client(port)
    c.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    r = c.response()
    ck.eq("CONNECT: 405", r.status, 405)
    ck.eq("CONNECT: the 405 lists the allowed methods", r.get("allow"), "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
    ck.ok("CONNECT: then the connection closes", c.closed(3))
    ck.eq("CONNECT never reaches the app", stats("example.com:443") - before, 0)

with ck.step("Connection: close ends the pipeline"):
    before = stats("/echo")
    c = Client(port)
    c.send(b"GET /echo?first HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
           b"GET /echo?second HTTP/1.1\r\nHost: t\r\n\r\n")
    r = c.response()
    ck.eq("first request answered", (r.status, r.json()["path"]), (200, "/echo?first"))
    ck.ok("then the connection closes", c.closed(3))
    time.sleep(0.3)
    ck.eq("the request after Connection: close never reaches the app", stats("/echo") - before, 1)

with ck.step("X-Forwarded-For"):
    c = Client(port)
    c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2, 10.0.0.3\r\n\r\n")
    H = c.response().json()["headers"]
    xff = [p.strip() for v in get_headers(H, "x-forwarded-for") for p in v.split(",")]
    ck.eq("repeated X-Forwarded-For: all hops kept in order, the client appended", xff, ["10.0.0.1", "10.0.0.2", "10.0.0.3", "127.0.0.1"])

with ck.step("app response with trailers"):
    # A chunked answer with a trailer section, on a kept-alive app connection.
    c = Client(port)
    for i in range(3):
        c.send(b"GET /trailers HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.response()
        ck.eq("chunked answer with a trailer #%d: status and body" % i, (r.status, r.body), (200, b"hello"))
    c.send(b"GET /echo?after HTTP/1.1\r\nHost: t\r\n\r\n")
    ck.eq("after trailers: client connection still in sync", c.response().status, 200)

with ck.step("app status line without a reason phrase"):
    c = Client(port)
    c.send(b"GET /raw/no_reason HTTP/1.1\r\nHost: t\r\n\r\n")
    r = c.response()
    ck.eq("'HTTP/1.1 200 ' (empty reason): status and body", (r.status, r.body), (200, b"ok"))

with ck.step("absolute-form target"):
    # RFC 9112 §3.2.2: a server MUST accept the absolute-form.
    c = Client(port)
    c.send(b"GET http://t.example/echo?abs=1 HTTP/1.1\r\nHost: t.example\r\n\r\n")
    r = c.response()
    ck.eq("absolute-form request accepted", r.status, 200)
    if r.status == 200:
        ck.eq("... and sent to the app in origin-form", r.json()["path"], "/echo?abs=1")

    def app_view(target, host):
        c = Client(port)
        c.send(b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        r = c.response()
        if r.status != 200:
            return r.status, None, None, None
        j = r.json()
        hd = {}
        for k, v in j["headers"]:
            hd.setdefault(k.lower(), []).append(v)
        return r.status, j["path"], hd.get("host"), hd.get("x-forwarded-host")
    # RFC 9112 §3.2.2: the target's authority replaces Host, which the recipient must ignore
    ck.eq("absolute-form: Host is the target's authority, not the Host field",
          app_view(b"http://good.example/echo/x", b"evil.example"), (200, "/echo/x", ["good.example"], ["good.example"]))
    ck.eq("absolute-form with a port", app_view(b"http://good.example:8080/echo/p", b"good.example:8080"),
          (200, "/echo/p", ["good.example:8080"], ["good.example:8080"]))
    # an empty path is "/" (RFC 9110 §4.2.3); the test app answers 404 for "/" and counts it
    n0 = stats("/")
    got = [app_view(t, b"good.example")[0] for t in (b"http://good.example", b"http://good.example?q=1")]
    ck.eq("absolute-form with an empty path (and with only a query): the app is asked for /",
          (got, stats("/") - n0), ([404, 404], 2))
    # userinfo is not allowed in an http(s) URI (RFC 9110 §4.2.4)
    c = Client(port)
    c.send(b"GET http://user@good.example/echo HTTP/1.1\r\nHost: good.example\r\n\r\n")
    ck.eq("absolute-form with userinfo: 400", c.response().status, 400)

with ck.step("many headers"):
    c = Client(port)
    hdrs = b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(300))
    c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n" + hdrs + b"\r\n")
    r = c.response()
    ck.warn("300 small headers (well under 64 KiB) pass", r.status == 200 and len([1 for k, v in r.json()["headers"] if k.startswith("X-H")]) == 300, "got %d" % r.status)
ck.done()
EOF
stop_leaseway

# No --region: no Fly-Region header (SPEC §3 "when set"); a hostname target.
unset FLY_REGION LEASEWAY_REGION
PX_NO_REGION=1 LW_TARGET=localhost:$UPSTREAM_PORT start_leaseway
curl -s -m 5 -D "$PX_TMP/nr.h" -o /dev/null "$LW_URL/echo"
expect_match "--target localhost:PORT works" "$(head -1 "$PX_TMP/nr.h" | tr -d '\r')" '^HTTP/1\.1 200'
check "no Fly-Region header without --region" bash -c "! grep -qi '^Fly-Region:' '$PX_TMP/nr.h'"
expect_eq "Fly-Instance still set" "$(grep -i '^Fly-Instance:' "$PX_TMP/nr.h" | tr -d '\r' | awk '{print $2}')" i1

finish
