#!/usr/bin/env bash
# GET /metrics is valid Prometheus exposition (`promtool check metrics`, from
# Debian's prometheus package, installed here if missing) and carries every
# metric of SPEC §6 plus leaseway_held_requests / leaseway_hold_limit:
#   1. static mode after mixed traffic (reads, 404s, a POST);
#   2. consul mode, a non-candidate replica with no primary: a write is held,
#      and leaseway_held_requests says 1 while it waits, 0 after.
. "$(dirname "$0")/../lib/proxy.sh"
. "$LEASEWAY_SRC/tests/lib/consul.sh"

if ! command -v promtool >/dev/null; then
    px_log "installing Debian's prometheus (for promtool)"
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }; } \
        >"$PX_TMP/apt.log" 2>&1 || true
    # the package starts a Prometheus server where services can start: not ours to keep
    pid=$(cat /run/prometheus/prometheus.pid 2>/dev/null || true)
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
fi
command -v promtool >/dev/null || px_die "promtool is needed: apt-get install prometheus ($(tail -3 "$PX_TMP/apt.log" 2>/dev/null))"

# metrics_check LABEL FILE: promtool accepts it (lint problems are failures too).
metrics_check() {
    local out rc=0
    out=$(promtool check metrics <"$2" 2>&1) || rc=$?
    check "$1: promtool check metrics accepts it${out:+ ($out)}" [ "$rc" = 0 ] && [ -z "$out" ]
}

# has_metric FILE NAME TYPE: a # TYPE line and at least one sample.
has_metric() {
    local file=$1 name=$2 type=$3 sample=$2
    [ "$type" = histogram ] && sample="${name}_count"
    grep -qx "# TYPE $name $type" "$file" && grep -qE "^$sample(\{[^}]*\})? [0-9.e+-]+$" "$file"
}

value_of() { # FILE SERIES (exact, labels included)
    awk -v s="$2" '$1 == s { print $2; exit }' "$1"
}

SPEC_METRICS="leaseway_requests_total:counter leaseway_request_duration_seconds:histogram
leaseway_is_primary:gauge leaseway_primary_changes_total:counter leaseway_gate_open:gauge
leaseway_consul_errors_total:counter leaseway_connections:gauge
leaseway_held_requests:gauge leaseway_hold_limit:gauge"

# --- 1. static mode -------------------------------------------------------------
start_upstream app
LW_WORKERS=2 start_leaseway
for i in 1 2 3 4 5; do curl -s -o /dev/null "$LW_URL/echo?i=$i"; done
curl -s -o /dev/null "$LW_URL/status/404"
curl -s -o /dev/null -X POST --data x "$LW_URL/echo"
curl -s -m 5 "$LW_ADMIN_URL/metrics" >"$PX_TMP/static.prom"
metrics_check "static mode" "$PX_TMP/static.prom"
for m in $SPEC_METRICS; do
    check "static mode: ${m%%:*} (${m##*:})" has_metric "$PX_TMP/static.prom" "${m%%:*}" "${m##*:}"
done
expect_eq "requests_total counts the 200 reads" \
    "$(value_of "$PX_TMP/static.prom" 'leaseway_requests_total{route="local",code="200"}')" 6
expect_eq "requests_total counts the 404" \
    "$(value_of "$PX_TMP/static.prom" 'leaseway_requests_total{route="local",code="404"}')" 1
expect_eq "histogram: +Inf bucket = count" \
    "$(value_of "$PX_TMP/static.prom" 'leaseway_request_duration_seconds_bucket{le="+Inf"}')" \
    "$(value_of "$PX_TMP/static.prom" 'leaseway_request_duration_seconds_count')"
expect_eq "is_primary 1 (static: self)" "$(value_of "$PX_TMP/static.prom" leaseway_is_primary)" 1
expect_eq "gate_open 1" "$(value_of "$PX_TMP/static.prom" leaseway_gate_open)" 1
expect_eq "hold_limit = 512 per worker x 2 workers" "$(value_of "$PX_TMP/static.prom" leaseway_hold_limit)" 1024
expect_eq "held_requests 0" "$(value_of "$PX_TMP/static.prom" leaseway_held_requests)" 0
# under load: +Inf and _count came from two reads of the workers' counters, and disagreed in a
# few scrapes in a hundred (the exposition format says they MUST be identical)
python3 - "$LW_URL" "$LW_ADMIN_URL" >"$PX_TMP/load.out" 2>&1 <<'PY'
import sys, socket, threading, time, urllib.parse, urllib.request
url, admin = sys.argv[1], sys.argv[2]
u = urllib.parse.urlsplit(url)
stop = False
def load():
    while not stop:
        s = socket.create_connection((u.hostname, u.port))
        f = s.makefile("rb")
        for _ in range(200):
            if stop:
                break
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            n = 0
            while True:
                line = f.readline()
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
                if line in (b"\r\n", b""):
                    break
            f.read(n)
        s.close()
ts = [threading.Thread(target=load, daemon=True) for _ in range(4)]
[t.start() for t in ts]
bad = n = 0
t0 = time.time()
while time.time() - t0 < 5:
    m = {l.split()[0]: l.split()[1] for l in urllib.request.urlopen(admin + "/metrics").read().decode().splitlines()
         if l and not l.startswith("#")}
    n += 1
    if m['leaseway_request_duration_seconds_bucket{le="+Inf"}'] != m["leaseway_request_duration_seconds_count"]:
        bad += 1
stop = True
print(f"{bad} of {n} scrapes")
PY
expect_match "under load: +Inf bucket = _count in every scrape" "$(cat "$PX_TMP/load.out")" "^0 of [0-9]+ scrapes$"
check "leaseway_info carries the version" grep -qE '^leaseway_info\{version="[0-9]' "$PX_TMP/static.prom"
check "served as text/plain; version=0.0.4" \
    bash -c "curl -s -m 5 -D - -o /dev/null '$LW_ADMIN_URL/metrics' | grep -qi '^content-type: text/plain; version=0.0.4'"
stop_leaseway

# --- 2. consul mode: a held write ----------------------------------------------------
consul_dev_start "$PX_TMP/consul" || px_die "consul dev agent did not start"
start_leaseway --lease consul --lease-key "ops/metrics/$$" --consul-addr "$CONSUL_HTTP_ADDR" \
    --service "ops-metrics-$$" --candidate=false --hold-timeout 4s
curl -s -m 10 -o "$PX_TMP/held.body" -w '%{http_code}' -X POST --data x "$LW_URL/echo" >"$PX_TMP/held.code" &
held_curl=$!
wait_for "[ \"\$(curl -s -m 2 '$LW_ADMIN_URL/metrics' | awk '\$1 == \"leaseway_held_requests\" { print \$2 }')\" = 1 ]" 3 0.1
curl -s -m 5 "$LW_ADMIN_URL/metrics" >"$PX_TMP/consul.prom"
metrics_check "consul mode, a write held" "$PX_TMP/consul.prom"
# (no request has finished yet: leaseway_requests_total has its TYPE but no series until one does)
check "consul mode: leaseway_requests_total declared" grep -qx '# TYPE leaseway_requests_total counter' "$PX_TMP/consul.prom"
for m in $SPEC_METRICS leaseway_consul_reachable:gauge; do
    [ "${m%%:*}" = leaseway_requests_total ] && continue
    check "consul mode: ${m%%:*} (${m##*:})" has_metric "$PX_TMP/consul.prom" "${m%%:*}" "${m##*:}"
done
expect_eq "held_requests 1 while the write waits for a primary" \
    "$(value_of "$PX_TMP/consul.prom" leaseway_held_requests)" 1
expect_eq "is_primary 0 (not a candidate)" "$(value_of "$PX_TMP/consul.prom" leaseway_is_primary)" 0
expect_eq "consul_reachable 1" "$(value_of "$PX_TMP/consul.prom" leaseway_consul_reachable)" 1
wait "$held_curl" || true
expect_eq "the held write is answered 503 after --hold-timeout" "$(cat "$PX_TMP/held.code")" 503
curl -s -m 5 "$LW_ADMIN_URL/metrics" >"$PX_TMP/consul2.prom"
metrics_check "consul mode, after the hold" "$PX_TMP/consul2.prom"
expect_eq "held_requests back to 0" "$(value_of "$PX_TMP/consul2.prom" leaseway_held_requests)" 0
check "the held write is counted under route=\"held\"" \
    grep -qE '^leaseway_requests_total\{route="held",code="503"\} 1$' "$PX_TMP/consul2.prom"
stop_leaseway
finish
