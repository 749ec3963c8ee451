#!/usr/bin/env bash
# Basic proxying per SPEC §3: GET/POST/other methods reach the app intact;
# the app gets X-Forwarded-*, Fly-Primary-Instance, no hop-by-hop and no
# client-sent Leaseway-*/Fly-Primary-Instance; the client gets Fly-* headers
# and no hop-by-hop headers from the app; statuses and paths pass unchanged.
. "$(dirname "$0")/../lib/proxy.sh"

start_upstream app
start_leaseway

# --- curl GET: what the client sees and what the app received -------------
curl -s -m 10 -D "$PX_TMP/h1" -o "$PX_TMP/b1" "$LW_URL/echo?a=1&b=two" \
    -H 'X-Forwarded-For: 1.2.3.4' -H 'Fly-Primary-Instance: evil' \
    -H 'Leaseway-Forwarded-By: evil' -H 'Leaseway-Peer-Auth: evil' -H 'leaseway-anything: x' \
    -H 'X-Custom: keep me'
expect_match "GET: status 200" "$(head -1 "$PX_TMP/h1" | tr -d '\r')" '^HTTP/1\.1 200'
hdr() { grep -i "^$1:" "$2" | head -1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//'; }
expect_eq "response Fly-Primary-Instance" "$(hdr Fly-Primary-Instance "$PX_TMP/h1")" "i1"
expect_eq "response Fly-Instance" "$(hdr Fly-Instance "$PX_TMP/h1")" "i1"
expect_eq "response Fly-Region" "$(hdr Fly-Region "$PX_TMP/h1")" "r1"
expect_eq "app's own response header passes" "$(hdr X-Served-By "$PX_TMP/h1")" "app"
expect_eq "Fly-Instance appears once" "$(grep -ci '^Fly-Instance:' "$PX_TMP/h1")" "1"

pyrun app-view "$PX_TMP/b1" "$LW_PORT" <<'EOF'
import json, sys
from rawhttp import Check, get_headers
ck = Check()
j = json.load(open(sys.argv[1])); port = sys.argv[2]
H = j["headers"]
g = lambda n: get_headers(H, n)
ck.eq("app got method GET", j["method"], "GET")
ck.eq("app got path with query", j["path"], "/echo?a=1&b=two")
xff = ", ".join(g("x-forwarded-for"))
ck.ok("X-Forwarded-For appended: 1.2.3.4, 127.0.0.1", [p.strip() for p in xff.split(",")] == ["1.2.3.4", "127.0.0.1"], "got %r" % xff)
ck.eq("X-Forwarded-Proto", g("x-forwarded-proto"), ["http"])
ck.eq("X-Forwarded-Host is the client's Host", g("x-forwarded-host"), ["127.0.0.1:" + port])
ck.eq("app gets Fly-Primary-Instance: i1 (client's removed)", g("fly-primary-instance"), ["i1"])
ck.eq("client Leaseway-* removed", [k for k, v in H if k.lower().startswith("leaseway-")], [])
ck.eq("end-to-end header kept", g("x-custom"), ["keep me"])
ck.eq("no body", j["body_length"], 0)
ck.done()
EOF

# --- POST with a body, and other methods ------------------------------------
head -c 100000 /dev/urandom >"$PX_TMP/post.bin"
want=$(sha256sum <"$PX_TMP/post.bin" | cut -d' ' -f1)
curl -s -m 10 -o "$PX_TMP/b2" --data-binary @"$PX_TMP/post.bin" -H 'Content-Type: application/octet-stream' "$LW_URL/echo"
expect_eq "POST: app got method" "$(json_get "$PX_TMP/b2" 'j["method"]')" POST
expect_eq "POST: body length" "$(json_get "$PX_TMP/b2" 'j["body_length"]')" 100000
expect_eq "POST: body sha256" "$(json_get "$PX_TMP/b2" 'j["body_sha256"]')" "$want"
for m in PUT PATCH DELETE OPTIONS; do
    got=$(curl -s -m 10 -X "$m" --data-binary 'xyz' "$LW_URL/echo" | json_get - 'j["method"] + " " + str(j["body_length"])')
    expect_eq "$m reaches the app with its body" "$got" "$m 3"
done

# --- raw socket: hop-by-hop stripping, duplicates, exact paths --------------
pyrun raw "$LW_PORT" <<'EOF'
import sys
from rawhttp import Client, Check, get_headers
ck = Check()
port = int(sys.argv[1])

with ck.step("request hop-by-hop headers"):
    c = Client(port)
    c.send(b"GET /echo HTTP/1.1\r\n"
           b"Host: example.test\r\n"
           b"Connection: keep-alive, X-Hop-A\r\n"
           b"X-Hop-A: 1\r\n"
           b"Keep-Alive: timeout=5\r\n"
           b"Proxy-Connection: keep-alive\r\n"
           b"TE: trailers\r\n"
           b"Trailer: X-T\r\n"
           b"Upgrade: foo\r\n"
           b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
           b"X-Dup: a\r\n"
           b"X-Dup: b\r\n"
           b"X-End: 1\r\n\r\n")
    r = c.response()
    ck.eq("hop request: 200", r.status, 200)
    j = r.json()
    H = j["headers"]
    names = [k.lower() for k, v in H]
    for h in ["x-hop-a", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "proxy-authorization"]:
        ck.ok("request hop-by-hop %s stripped before the app%s" % (h, " (brief: Proxy-Authorization is hop-by-hop)" if h == "proxy-authorization" else ""), h not in names, "app got %r" % get_headers(H, h))
    conn = [t.strip().lower() for v in get_headers(H, "connection") for t in v.split(",")]
    ck.ok("app's Connection (if any) carries only the proxy's own tokens", set(conn) <= {"keep-alive", "close"}, "got %r" % conn)
    ck.eq("repeated header X-Dup kept in order", get_headers(H, "x-dup"), ["a", "b"])
    ck.eq("X-End kept", get_headers(H, "x-end"), ["1"])
    ck.eq("X-Forwarded-Host from Host", get_headers(H, "x-forwarded-host"), ["example.test"])
    ck.warn("Host passed unchanged to the app", get_headers(H, "host") == ["example.test"], "got %r" % get_headers(H, "host"))

with ck.step("Connection tokens: case and whitespace"):
    c = Client(port)
    c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: Keep-Alive ,  x-hop-b,X-HOP-C\r\n"
           b"X-Hop-B: 1\r\nx-hop-c: 1\r\nX-Stay: 1\r\n\r\n")
    H = c.response().json()["headers"]
    names = [k.lower() for k, v in H]
    ck.ok("headers named in Connection (any case, odd spacing) stripped", "x-hop-b" not in names and "x-hop-c" not in names, "app got %r" % [k for k in names if k.startswith("x-hop")])
    ck.eq("others kept", get_headers(H, "x-stay"), ["1"])

with ck.step("request target"):
    # The request target reaches the app byte for byte.
    c = Client(port)
    target = b"/echo/%2e%2e/a%2Fb/./c//d?q=%20x&r=a+b&s=%7E~"
    c.send(b"GET " + target + b" HTTP/1.1\r\nHost: example.test\r\n\r\n")
    r = c.response()
    ck.eq("odd path: 200", r.status, 200)
    ck.eq("request target not normalised", r.json()["path"], target.decode())

with ck.step("40 KiB header"):
    # A big (40 KiB) but legal header section passes whole (the limit is 64 KiB).
    c = Client(port)
    cookie = "c=" + "v" * 40000
    c.send(("GET /echo HTTP/1.1\r\nHost: example.test\r\nCookie: %s\r\n\r\n" % cookie).encode())
    r = c.response()
    ck.eq("40 KiB Cookie: 200", r.status, 200)
    ck.ok("40 KiB Cookie reaches the app intact", r.status == 200 and get_headers(r.json()["headers"], "cookie") == [cookie])

with ck.step("response hop-by-hop headers"):
    c = Client(port)
    c.send(b"GET /hop HTTP/1.1\r\nHost: example.test\r\n\r\n")
    r = c.response()
    ck.eq("/hop: 200", r.status, 200)
    ck.eq("/hop: body", r.body, b"hop\n")
    for h in ["x-foo", "proxy-connection", "trailer", "upgrade", "proxy-authenticate"]:
        ck.ok("response hop-by-hop %s stripped%s" % (h, " (brief: Proxy-Authenticate is hop-by-hop)" if h == "proxy-authenticate" else ""), r.get(h) is None, "client got %r" % r.get(h))
    ck.ok("app's Keep-Alive: timeout=5 stripped", "timeout=5" not in r.all("keep-alive"), "client got %r" % r.all("keep-alive"))
    conn = [t.strip().lower() for v in r.all("connection") for t in v.split(",")]
    ck.ok("client's Connection (if any) has only keep-alive/close", set(conn) <= {"keep-alive", "close"}, "got %r" % conn)
    ck.eq("end-to-end X-End kept", r.get("x-end"), "1")
    ck.eq("Fly-Instance on /hop", r.get("fly-instance"), "i1")

with ck.step("statuses"):
    c = Client(port)
    for st in (201, 404, 418, 500, 503):
        c.send(("GET /status/%d HTTP/1.1\r\nHost: example.test\r\n\r\n" % st).encode())
        r = c.response()
        ck.eq("app status %d passes" % st, (r.status, r.body), (st, b"status %d\n" % st))
    c.send(b"GET /echo HTTP/1.1\r\nHost: example.test\r\n\r\n")
    ck.eq("connection still usable", c.response().status, 200)
ck.done()
EOF

finish
