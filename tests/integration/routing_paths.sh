#!/usr/bin/env bash
# Regression: routing globs (--passthrough, --always-primary) are matched against the path the
# app will act on, not the raw request-target. Apps built on WHATWG URL (Remix, Hono, Next, ...)
# resolve dot-segments (RFC 3986 §5.2.4), also percent-encoded ones ("%2e%2e"), and read '\' as
# '/'; nginx matches its locations on the normalized URI. So on a replica with
# --passthrough '/build/*' (deploy/fly-leaseway.yml), "POST /build/../write" is a write to
# /write and must reach the PRIMARY's app, not the replica's (which would apply it locally,
# past the gate); "GET /x/../auth/gh/callback" is the always-primary 'GET /auth/*/callback'.
# The request-target itself is forwarded as received (the app does its own resolution).
# Static lease pair (tests/lib/static_pair.sh): R forwards writes to P. Bounded: 60 s.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/static_pair.sh
. "$here/../lib/static_pair.sh"
watchdog 60 "routing_paths timed out after 60 s"
static_pair_start --passthrough '/build/*' --always-primary 'GET /auth/*/callback'
python3 - "$p2" "$up1" "$up2" <<'PY' || { tail -n 20 "$d/r.log" "$d/p.log"; die "see above"; }
import http.client, json, sys
rport, papp, rapp = (int(a) for a in sys.argv[1:4])
fails = 0

def send(method, target):
    """The target goes on the wire byte for byte (http.client does not resolve or re-encode)."""
    c = http.client.HTTPConnection("127.0.0.1", rport, timeout=10)
    c.putrequest(method, target, skip_accept_encoding=True)
    body = b"x" if method == "POST" else b""
    if body:
        c.putheader("Content-Length", str(len(body)))
    c.endheaders(body)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status, r.getheader("X-Served-By")

def seen(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/stats")
    j = json.loads(c.getresponse().read())
    c.close()
    return j["paths"].get(path, 0)

def expect(method, target, app_path, want, why, key=None):
    """key: the path upstream.py files the target under (its urlsplit), when not the target."""
    global fails
    key = key or target
    p0, r0 = seen(papp, key), seen(rapp, key)
    status, by = send(method, target)
    p1, r1 = seen(papp, key), seen(rapp, key)
    # the app that served it saw the request-target exactly as sent
    exact = (p1 - p0, r1 - r0) == ((1, 0) if want == "P-app" else (0, 1))
    msg = "%s %s (the app acts on %s %s) via the replica: %s" % (method, target, method, app_path, why)
    if by == want and exact:
        print("ok   - " + msg)
    else:
        fails += 1
        print("FAIL - %s: want %s, got %s (status %s; P-app saw the raw target %d time(s), R-app %d)"
              % (msg, want, by, status, p1 - p0, r1 - r0))

# controls: the globs work on plain paths
expect("POST", "/write", "/write", "P-app", "a write goes to the primary")
expect("GET", "/build/app.js", "/build/app.js", "R-app", "passthrough stays local")
expect("POST", "/build/upload", "/build/upload", "R-app", "passthrough covers writes too")
expect("GET", "/auth/gh/callback", "/auth/gh/callback", "P-app", "always-primary")
# dot-segments and their encodings: a write outside /build/* is not passthrough
expect("POST", "/build/../write", "/write", "P-app", "'..' leaves /build/")
expect("POST", "/build/%2e%2e/write", "/write", "P-app", "'%2e%2e' is '..'")
expect("POST", "/build/%2E%2e/write", "/write", "P-app", "'%2E%2e' is '..'")
expect("POST", "/build/.%2E/write", "/write", "P-app", "'.%2E' is '..'")
expect("POST", "/build//..//write", "/write", "P-app", "slashes merged, then '..'")
expect("POST", "/build\\..\\write", "/write", "P-app", "'\\' is '/' in a WHATWG URL")
expect("POST", "/build/..\\write", "/write", "P-app", "'..\\' is '../'")
expect("POST", "/build/sub/../../write", "/write", "P-app", "two levels up")
expect("POST", "/build/../../../write", "/write", "P-app", "never above the root")
expect("POST", "/build/..", "/", "P-app", "a trailing '..'")
# always-primary behind dot-segments
expect("GET", "/x/../auth/gh/callback", "/auth/gh/callback", "P-app", "'..' into always-primary")
expect("GET", "/x/%2e%2e/auth/gh/callback", "/auth/gh/callback", "P-app", "'%2e%2e' into always-primary")
expect("GET", "/auth/./gh/callback", "/auth/gh/callback", "P-app", "'.' inside always-primary")
expect("GET", "/auth\\gh\\callback", "/auth/gh/callback", "P-app", "'\\' inside always-primary")
expect("GET", "/%61uth/gh/callback", "/auth/gh/callback", "P-app", "'%61' is 'a' (unreserved, RFC 3986 §6.2.2.2)")
# what stays local: resolution that ends inside /build/, and an encoded slash (not a separator)
expect("POST", "/build/./up.js", "/build/up.js", "R-app", "'.' stays inside /build/")
expect("POST", "/write/../build/up.js", "/build/up.js", "R-app", "'..' into /build/")
expect("GET", "/build/a/../app.js", "/build/app.js", "R-app", "a read inside /build/")
expect("POST", "/build/..%2fwrite", "/build/..%2fwrite", "R-app", "'%2f' is not a separator")
# a fragment ends the path for a URL parser; llhttp lets '#' through
expect("POST", "/write#/../build/x", "/write", "P-app", "'#' ends the path", key="/write")
# "//build/write" is host "build", path "/write" to new URL(req.url, base): never passthrough
expect("POST", "//build/write", "/write", "P-app", "two readings: not passthrough", key="/write")
expect("GET", "//x/auth/gh/callback", "/auth/gh/callback", "P-app", "two readings: always-primary",
       key="/auth/gh/callback")
sys.exit(1 if fails else 0)
PY
echo "PASS routing_paths"
