#!/usr/bin/env bash
# Admin listener (SPEC §6) in static mode: /health is 200, /status has the
# documented JSON fields, /metrics is valid Prometheus text whose request
# counters and duration histogram move with traffic; /cluster gives
# host:port addresses.
. "$(dirname "$0")/../lib/proxy.sh"

start_upstream app
start_leaseway

expect_eq "GET /health: 200" "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$LW_ADMIN_URL/health")" 200
expect_eq "unknown admin path: 404" "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$LW_ADMIN_URL/nope")" 404
expect_eq "the admin listener does not proxy: /echo is 404" \
    "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$LW_ADMIN_URL/echo")" 404

curl -s -m 5 -D "$PX_TMP/status.h" -o "$PX_TMP/status.json" "$LW_ADMIN_URL/status"
pyrun status "$PX_TMP/status.json" "$PX_TMP/status.h" <<'EOF'
import sys, json
from rawhttp import Check
ck = Check()
raw = open(sys.argv[1]).read()
try:
    j = json.loads(raw)
except ValueError as e:
    ck.ok("/status is JSON", False, "%s: %r" % (e, raw[:300])); ck.done()
ck.ok("/status is JSON", True)
ck.warn("/status Content-Type is application/json", "application/json" in open(sys.argv[2]).read().lower())
ck.eq("instance", j.get("instance"), "i1")
ck.eq("region", j.get("region"), "r1")
ck.eq("role", j.get("role"), "primary")
p = j.get("primary") or {}
ck.eq("primary.id", p.get("id"), "i1")
ck.ok("primary.advertise is a URL", isinstance(p.get("advertise"), str) and p["advertise"].startswith("http"), "got %r" % p.get("advertise"))
ck.ok("primary.since present", p.get("since") not in (None, ""), "got %r" % p.get("since"))
lease = j.get("lease") or {}
ck.eq("lease.mode", lease.get("mode"), "static")
for k in ("key", "index", "candidate"):
    ck.warn("lease.%s present" % k, k in lease)
gate = j.get("gate") or {}
ck.eq("gate.state", gate.get("state"), "open")
ck.warn("gate.reason and gate.migrations present", "reason" in gate and "migrations" in gate, "gate %r" % gate)
ck.warn("consul key present (null or object)", "consul" in j)
ck.ok("version is a non-empty string", isinstance(j.get("version"), str) and j["version"] != "", "got %r" % j.get("version"))
ck.done()
EOF

pyrun metrics "$LW_PORT" "$LW_ADMIN" <<'EOF'
import sys, re, urllib.request, time
from rawhttp import Client, Check
ck = Check()
port, admin = int(sys.argv[1]), int(sys.argv[2])

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')

def scrape():
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=5) as r:
        ctype = r.headers.get("Content-Type", "")
        text = r.read().decode()
    samples, bad = [], []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = LINE.match(line)
        if not m:
            bad.append(line); continue
        labels = dict(LABEL.findall(m.group(3) or ""))
        try:
            samples.append((m.group(1), labels, float(m.group(4))))
        except ValueError:
            bad.append(line)
    return text, ctype, samples, bad

def value(samples, name, **want):
    vals = [v for (n, l, v) in samples if n == name and all(l.get(k) == w for k, w in want.items())]
    return sum(vals) if vals else None

text, ctype, s0, bad = scrape()
ck.ok("/metrics: every sample line parses", not bad, "bad lines: %r" % bad[:5])
ck.warn("/metrics Content-Type text/plain", ctype.startswith("text/plain"), "got %r" % ctype)
for name in ("leaseway_requests_total", "leaseway_request_duration_seconds", "leaseway_is_primary",
             "leaseway_primary_changes_total", "leaseway_gate_open", "leaseway_consul_errors_total", "leaseway_connections"):
    ck.ok("# TYPE for %s" % name, re.search(r"^# TYPE %s " % name, text, re.M) is not None)
ck.eq("leaseway_is_primary 1", value(s0, "leaseway_is_primary"), 1.0)
ck.eq("leaseway_gate_open 1", value(s0, "leaseway_gate_open"), 1.0)
ck.ok("histogram type", re.search(r"^# TYPE leaseway_request_duration_seconds histogram", text, re.M) is not None)

ok0 = value(s0, "leaseway_requests_total", route="local", code="200") or 0
nf0 = value(s0, "leaseway_requests_total", route="local", code="404") or 0
cnt0 = value(s0, "leaseway_request_duration_seconds_count") or 0
sum0 = value(s0, "leaseway_request_duration_seconds_sum") or 0
acc0 = value(s0, "leaseway_connections_accepted_total")
c = Client(port)
for i in range(5):
    c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n"); c.response()
c.send(b"GET /status/404 HTTP/1.1\r\nHost: t\r\n\r\n"); c.response()
c.send(b"GET /slow?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n"); c.response()
# The connection stays open: counters must move per request, not per connection.
time.sleep(0.2)
text, ctype, s1, bad = scrape()
ok1 = value(s1, "leaseway_requests_total", route="local", code="200") or 0
nf1 = value(s1, "leaseway_requests_total", route="local", code="404") or 0
ck.eq('requests_total{route="local",code="200"} grew by 6', ok1 - ok0, 6.0)
ck.eq('requests_total{route="local",code="404"} grew by 1', nf1 - nf0, 1.0)
cnt1 = value(s1, "leaseway_request_duration_seconds_count") or 0
sum1 = value(s1, "leaseway_request_duration_seconds_sum") or 0
ck.eq("duration histogram _count grew by 7", cnt1 - cnt0, 7.0)
ck.ok("duration histogram _sum grew by >= 0.3 s (a 300 ms request)", sum1 - sum0 >= 0.29, "grew %.3f" % (sum1 - sum0))
buckets = sorted(((float(l["le"].replace("+Inf", "inf")), v) for (n, l, v) in s1
                  if n == "leaseway_request_duration_seconds_bucket" and "le" in l and "route" not in l and "code" not in l))
if not buckets:  # labelled histogram: sum over labels per le
    agg = {}
    for (n, l, v) in s1:
        if n == "leaseway_request_duration_seconds_bucket" and "le" in l:
            k = float(l["le"].replace("+Inf", "inf")); agg[k] = agg.get(k, 0) + v
    buckets = sorted(agg.items())
ck.ok("histogram has a +Inf bucket equal to _count", buckets and buckets[-1][0] == float("inf") and buckets[-1][1] == cnt1, "buckets %r count %r" % (buckets[-3:], cnt1))
ck.ok("histogram buckets are cumulative", all(buckets[i][1] <= buckets[i + 1][1] for i in range(len(buckets) - 1)))
ck.eq("leaseway_connections_accepted_total grew by 1 (seven requests, one connection)",
      (value(s1, "leaseway_connections_accepted_total") or 0) - (acc0 or 0), 1.0)
conns = value(s1, "leaseway_connections")
ck.ok("leaseway_connections counts the open client connection (>= 1)", conns is not None and conns >= 1, "got %r" % conns)
ck.done()
EOF

# HEAD on the admin listener (RFC 9110 §9.3.2): GET's headers, Content-Length included, and no
# body; libevent 2.1 sent the body without a Content-Length, and a keep-alive client read it as
# the start of its next response. For each path, on one connection: GET, HEAD, then GET /health.
pyrun head "$LW_ADMIN" <<'EOF'
import sys
from rawhttp import Client, Check
ck = Check()
admin = int(sys.argv[1])
for path in ("/health", "/metrics", "/status", "/"):
    with ck.step("HEAD %s on a keep-alive connection" % path):
        c = Client(admin)
        c.send("GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path)
        get = c.response()
        c.send("HEAD %s HTTP/1.1\r\nHost: a\r\n\r\n" % path)
        head = c.response("HEAD")
        ck.eq("HEAD %s: 200" % path, head.status, 200)
        cl = head.get("content-length")
        if path == "/health":
            ck.eq("HEAD /health: the Content-Length of GET's body", cl, str(len(get.body)))
        else:  # times and counters change from one request to the next: a length, not 0
            ck.ok("HEAD %s: a Content-Length" % path, cl is not None and int(cl) > 0, "got %r" % cl)
        ck.eq("HEAD %s: GET's Content-Type" % path, head.get("content-type"), get.get("content-type"))
        c.send("GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
        nxt = c.response()
        ck.eq("GET /health after HEAD %s: 200" % path, nxt.status, 200)
        ck.ok("GET /health after HEAD %s: nothing left over on the connection" % path,
              not c.buf and not c.closed(0.3), "left %r" % c.buf[:80])
        c.close()
ck.done()
EOF

# POST /handoff moves the primary: a page open in the operator's browser must not be able to
# send it (CSRF). Requests that say they come from another site (Origin not this listener,
# Sec-Fetch-Site other than same-origin/none) get 403 before anything else; curl, leaseway
# handoff and the status page's own button are let through (here: 409, the lease is static).
hcode() { curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST "$@" "$LW_ADMIN_URL/handoff"; }
expect_eq "POST /handoff from another site's page (Origin): 403" "$(hcode -H 'Origin: http://evil.example')" 403
expect_eq "POST /handoff with Sec-Fetch-Site: cross-site: 403" "$(hcode -H 'Sec-Fetch-Site: cross-site')" 403
expect_eq "POST /handoff with Origin: null (sandboxed page): 403" "$(hcode -H 'Origin: null')" 403
expect_eq "POST /handoff from the status page (same Origin): 409 in static mode" \
    "$(hcode -H "Origin: $LW_ADMIN_URL" -H 'Sec-Fetch-Site: same-origin')" 409
expect_eq "POST /handoff from curl (no Origin): 409 in static mode" "$(hcode)" 409
# RFC 9110 §15.5.6: a 405 lists the methods that are allowed
allow() { curl -s -m 5 -o /dev/null -D - "$@" | tr -d '\r' | sed -n 's/^[Aa]llow: //p'; }
expect_eq "GET /handoff: 405 with Allow: POST" "$(allow "$LW_ADMIN_URL/handoff")" "POST"
expect_eq "PUT /metrics: 405 with Allow: GET, HEAD" "$(allow -X PUT "$LW_ADMIN_URL/metrics")" "GET, HEAD"
# the methods libevent does not let through by default got its 501 HTML page, without Allow
status_allow() { curl -s -m 5 -o /dev/null -D - "$@" | tr -d '\r' | sed -n 's/^HTTP\/1.1 \([0-9]*\).*/\1/p; s/^[Aa]llow: //p' | paste -sd' '; }
for m in OPTIONS PATCH TRACE; do
    expect_eq "$m /metrics: 405 with Allow: GET, HEAD" "$(status_allow -X "$m" "$LW_ADMIN_URL/metrics")" "405 GET, HEAD"
done
# RFC 9110 §15.6.2: a method nobody knows gets 501; 405 is for a known method the path does not allow
expect_eq "FROBNICATE /metrics: 501, no Allow" "$(status_allow -X FROBNICATE "$LW_ADMIN_URL/metrics")" "501"
expect_eq "FROBNICATE /handoff: 501, no Allow" "$(status_allow -X FROBNICATE "$LW_ADMIN_URL/handoff")" "501"
expect_eq "OPTIONS /handoff: 405 with Allow: POST" "$(status_allow -X OPTIONS "$LW_ADMIN_URL/handoff")" "405 POST"
# RFC 9110 §15.5.5: a path that does not exist is 404 whatever the method (405 claimed it allowed GET)
for m in POST PUT DELETE OPTIONS PATCH TRACE; do
    expect_eq "$m /no-such-path: 404, no Allow" "$(status_allow -X "$m" "$LW_ADMIN_URL/no-such-path")" "404"
done
expect_eq "POST /metrics/x: 404, no Allow" "$(status_allow -X POST "$LW_ADMIN_URL/metrics/x")" "404"
expect_eq "OPTIONS /health after: the listener still answers GET" \
    "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$LW_ADMIN_URL/health")" 200
# libevent does not read the body of a TRACE or an unknown method: after the 405 (501) the connection
# is closed, so a body is never answered as a request of its own
pyrun admin_405_body "$LW_ADMIN" <<'EOF'
import sys
from rawhttp import Client, Check
ck = Check()
admin = int(sys.argv[1])
inner = "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"
for m in ("TRACE", "FROBNICATE", "PATCH", "OPTIONS", "PUT"):
    with ck.step("%s /health with a body" % m):
        c = Client(admin)
        c.send("%s /health HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (m, len(inner), inner))
        r = c.response()
        want = 501 if m == "FROBNICATE" else 405
        ck.eq("%s /health with a body: %d" % (m, want), r.status, want)
        ck.ok("%s /health with a body: the body is not answered, the connection is closed" % m,
              not c.buf and c.closed(2.0), "left %r" % c.buf[:80])
        c.close()
for m in ("TRACE", "PUT"):
    with ck.step("%s /nope with a body" % m):
        c = Client(admin)
        c.send("%s /nope HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (m, len(inner), inner))
        r = c.response()
        ck.eq("%s /nope with a body: 404" % m, r.status, 404)
        ck.ok("%s /nope with a body: the body is not answered, the connection is closed" % m,
              not c.buf and c.closed(2.0), "left %r" % c.buf[:80])
        c.close()
ck.done()
EOF


# GET /cluster shows every address as host:port, as `leaseway status` and Consul's rows do,
# whatever the instance's source (here: a static replica, its fixed primary, and itself).
P1=$LW_PORT
LW_INSTANCE=i2 start_leaseway --static-primary "i1=http://127.0.0.1:$P1" --advertise "http://[::1]:8123/app"
addr() { curl -s -m 5 "$LW_ADMIN_URL/cluster" | "$PY" -c 'import json,sys; print(" ".join(sorted("%s=%s" % (i["id"], i["address"]) for i in json.load(sys.stdin)["instances"])))'; }
expect_eq "GET /cluster (static replica): both addresses are host:port" "$(addr)" "i1=127.0.0.1:$P1 i2=[::1]:8123"
finish
