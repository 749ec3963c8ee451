#!/usr/bin/env bash
# Message bodies and their framing (RFC 9112 §6): HEAD (no body, the app's
# Content-Length kept), 204 and 304 (no body, no framing headers),
# Expect: 100-continue, chunked requests (extensions, trailers, split across
# packets) and chunked responses; the connection stays in sync after each.
. "$(dirname "$0")/../lib/proxy.sh"

start_upstream app
start_leaseway

# --- real curl ---------------------------------------------------------------
curl -sI -m 10 "$LW_URL/bytes?n=12345" >"$PX_TMP/head.h"
expect_match "curl -I: 200" "$(head -1 "$PX_TMP/head.h" | tr -d '\r')" '^HTTP/1\.1 200'
expect_eq "curl -I: the app's Content-Length passes" \
    "$(grep -i '^content-length:' "$PX_TMP/head.h" | tr -d '\r' | awk '{print $2}')" 12345

want=$("$PYTHON" "$UPSTREAM_PY" --sha 1000000)
got=$(curl -s -m 20 "$LW_URL/chunked?n=1000000&size=3000" | sha256sum | cut -d' ' -f1)
expect_eq "chunked response (1 MB in 3000-byte chunks) intact" "$got" "$want"

head -c 300000 /dev/urandom >"$PX_TMP/body.bin"
wantb=$(sha256sum <"$PX_TMP/body.bin" | cut -d' ' -f1)
curl -s -m 20 -o "$PX_TMP/te.json" -H 'Transfer-Encoding: chunked' --data-binary @"$PX_TMP/body.bin" "$LW_URL/echo"
expect_eq "curl chunked upload: app got the body" \
    "$(json_get "$PX_TMP/te.json" 'str(j["body_length"]) + " " + j["body_sha256"]')" "300000 $wantb"

start=$(px_now)
curl -sv -m 20 -o "$PX_TMP/100.json" -H 'Expect: 100-continue' --expect100-timeout 5 \
    --data-binary @"$PX_TMP/body.bin" "$LW_URL/100" 2>"$PX_TMP/100.err"
secs=$(px_since "$start")
check "Expect: 100-continue: curl got a 100 Continue" grep -q '^< HTTP/1.1 100' "$PX_TMP/100.err"
check "Expect: 100-continue: no wait for curl's 5 s expect timeout (took ${secs}s)" px_lt "$secs" 3
expect_eq "Expect: 100-continue: body arrived" "$(json_get "$PX_TMP/100.json" 'j["length"]')" 300000

# --- raw sockets ---------------------------------------------------------------
pyrun raw "$LW_PORT" <<'EOF'
import sys, time, hashlib
from rawhttp import Client, Check, get_headers
import upstream
ck = Check()
port = int(sys.argv[1])

def sync(c, label):
    c.send(b"GET /echo?sync HTTP/1.1\r\nHost: t\r\n\r\n")
    r = c.response()
    ck.ok("connection in sync after %s" % label, r.status == 200 and r.json()["path"] == "/echo?sync", "got %r %r" % (r, r.body[:80]))

with ck.step("HEAD"):
    # Headers only, the app's length kept; a GET pipelined behind it must parse.
    c = Client(port)
    c.send(b"HEAD /bytes?n=12345 HTTP/1.1\r\nHost: t\r\n\r\nGET /echo?after-head HTTP/1.1\r\nHost: t\r\n\r\n")
    r = c.response(method="HEAD")
    ck.eq("HEAD: 200", r.status, 200)
    ck.eq("HEAD: Content-Length of the GET", r.get("content-length"), "12345")
    r2 = c.response()
    ck.ok("HEAD: no body sent (next response parses)", r2.status == 200 and r2.json()["path"] == "/echo?after-head", "got %r" % r2.body[:80])
    c.send(b"HEAD /chunked?n=5000 HTTP/1.1\r\nHost: t\r\n\r\n")
    r = c.response(method="HEAD")
    ck.eq("HEAD of a chunked resource: 200", r.status, 200)
    sync(c, "HEAD of a chunked resource")

for st in (204, 304):
    with ck.step("%d" % st):
        # No body and no body framing (RFC 9110 §8.6, RFC 9112 §6.1).
        c = Client(port)
        c.send(("GET /status/%d HTTP/1.1\r\nHost: t\r\n\r\n" % st).encode())
        r = c.response()
        ck.eq("%d passes" % st, r.status, st)
        ck.eq("%d: no Transfer-Encoding" % st, r.get("transfer-encoding"), None)
        if st == 204:
            ck.ok("204: no Content-Length (RFC 9110 §8.6) or 0", r.get("content-length") in (None, "0"), "got %r" % r.get("content-length"))
        else:
            ck.eq("304: ETag passes", r.get("etag"), '"x"')
        sync(c, "%d" % st)

with ck.step("Expect: 100-continue"):
    # Headers first, 100 Continue, then the body.
    c = Client(port)
    c.send(b"POST /100 HTTP/1.1\r\nHost: t\r\nContent-Length: 50000\r\nExpect: 100-continue\r\n\r\n")
    c.settimeout(3)
    try:
        r = c.head()
        ck.eq("Expect: 100 Continue arrives before the body is sent", r.status, 100)
    except Exception as e:
        ck.ok("Expect: 100 Continue arrives before the body is sent", False, repr(e))
    c.settimeout(10)
    c.send(b"x" * 50000)
    r = c.response()
    ck.eq("Expect: final answer 200", r.status, 200)
    ck.eq("Expect: app got the whole body", r.json()["length"], 50000)
    sync(c, "Expect: 100-continue")

with ck.step("chunked request"):
    # Extensions (with and without values, quoted), upper-case hex, leading zeros, a trailer.
    c = Client(port)
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;ext=1\r\nhello\r\n000A;a;b\r\n world!!!!\r\n1;q=\"x y\"\r\n.\r\n0\r\nX-Trailer: t\r\n\r\n")
    r = c.response()
    ck.eq("chunked request: 200", r.status, 200)
    j = r.json()
    ck.eq("chunked request: app got the decoded body", (j["body_length"], j["body_head"]), (16, "hello world!!!!."))
    sync(c, "a chunked request with a trailer")

with ck.step("chunk extension list"):
    # RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
    c = Client(port)
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b;c\r\nhello\r\n0\r\n\r\n")
    r = c.response()
    ck.warn("valid chunk extensions ';a=b;c' accepted (llhttp 8.1 rejects them)", r.status == 200, "got %d %r" % (r.status, r.body[:80]))

with ck.step("chunked request in 3-byte writes"):
    c = Client(port)
    msg = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" +
           b"".join(b"%x\r\n%s\r\n" % (n, b"ab" * (n // 2)) for n in (2, 16, 30, 4)) + b"0\r\n\r\n")
    for i in range(0, len(msg), 3):
        c.send(msg[i:i+3]); time.sleep(0.003)
    r = c.response()
    ck.eq("chunked request in 3-byte writes: body", (r.status, r.json()["body_length"]), (200, 52))

with ck.step("Content-Length bodies"):
    c = Client(port)
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhel")
    time.sleep(0.2)
    c.send(b"lo worl"); r = c.response()
    ck.eq("Content-Length body in two writes", (r.status, r.json()["body_head"]), (200, "hello worl"))
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
    r = c.response()
    ck.eq("Content-Length: 0", (r.status, r.json()["body_length"]), (200, 0))
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\n\r\n")
    r = c.response()
    ck.eq("POST with neither CL nor TE has an empty body (RFC 9112 §6.3)", (r.status, r.json()["body_length"]), (200, 0))
    c.send(b"GET /echo?getbody HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET /echo?next HTTP/1.1\r\nHost: t\r\n\r\n")
    r = c.response(); r2 = c.response()
    ck.eq("GET with a Content-Length body: the app gets the body", (r.status, r.json()["body_head"]), (200, "hello"))
    ck.eq("... and the request behind it separately", (r2.status, r2.json()["path"]), (200, "/echo?next"))

with ck.step("header names and codings are case-insensitive"):
    c = Client(port)
    c.send(b"POST /echo HTTP/1.1\r\nhost: t\r\nCONTENT-LENGTH: 5\r\n\r\nhello")
    r = c.response()
    ck.eq("CONTENT-LENGTH in capitals", (r.status, r.json()["body_head"]), (200, "hello"))
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\ntransfer-encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    r = c.response()
    ck.eq("transfer-encoding: CHUNKED", (r.status, r.json()["body_head"]), (200, "hello"))
    c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: CLOSE\r\n\r\n")
    ck.eq("Connection: CLOSE answered", c.response().status, 200)
    ck.ok("Connection: CLOSE closes", c.closed(3))

with ck.step("chunk extensions"):
    # RFC 9112 §7.1.1: allowed, and a recipient ignores those it does not know; the body is re-chunked.
    # (llhttp 8.1 refuses only an unquoted value followed by another extension, and BWS: see below.)
    c = Client(port)
    c.send(b'POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n'
           b'5;a=b\r\nhello\r\n6;ext;q="x y"\r\n world\r\n0;last\r\n\r\n')
    r = c.response()
    ck.eq("chunk extensions (name=value, bare name, quoted value) accepted", (r.status, r.json()["body_head"] if r.status == 200 else r.body[:80]), (200, "hello world"))
    sync(c, "chunk extensions")

with ck.step("chunked responses"):
    c = Client(port)
    c.send(b"GET /chunked?n=70000&size=777 HTTP/1.1\r\nHost: t\r\n\r\n")
    r = c.response()
    ck.eq("chunked response: exact bytes", hashlib.sha256(r.body).hexdigest(), upstream.pattern_sha(70000))
    c.send(b"GET /chunked?n=0 HTTP/1.1\r\nHost: t\r\n\r\n")
    r = c.response()
    ck.eq("empty chunked response", (r.status, r.body), (200, b""))
    sync(c, "chunked responses")
ck.done()
EOF

finish
