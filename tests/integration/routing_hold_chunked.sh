#!/usr/bin/env bash
# Regression: a write's body is held up to 1 MiB (SPEC §2 step 8), counted in body bytes. A
# chunked body is re-encoded into the hold buffer with its chunk-size lines and CRLFs; those
# must not count, or a chunked write of exactly 1 MiB is refused (503 "bodies over 1 MiB are
# not held") where the same body with a Content-Length is held and delivered.
#  1. static lease: R names P primary, P's proxy is down; a chunked write of exactly 1 MiB (in
#     1 KiB chunks: 7 KiB of framing) is kept whole, waits, and reaches P's app intact once P
#     is up (not streamed into a refused connection: 502).
#  2. Consul, no primary known (B is no candidate, A starts 1 s later): exactly 1 MiB, with a
#     Content-Length and chunked, is held and delivered to A's app with the same sha256;
#     1 MiB + 1 byte chunked is refused at once, and no app sees it.
# Bounded: 120 s.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$here/../lib/consul.sh"
bin=${LEASEWAY_BIN:-$here/../../build/leaseway}
watchdog 120 "routing_hold_chunked timed out after 120 s"
d=$(mktmp)
fails=0
check() { if eval "$2"; then echo "ok   - $1"; else echo "FAIL - $1"; fails=$((fails + 1)); fi; }

# post HOST:PORT PATH N FRAMING: a POST of N bytes of the test pattern, chunked in 1 KiB chunks or
# with a Content-Length; prints "status sha256-at-the-app served-by elapsed-ms first-body-line"
cat >"$d/post.py" <<'PY'
import hashlib, http.client, json, os, sys, time
sys.path.insert(0, os.environ["UPSTREAM_DIR"])
import upstream as U
host, port = sys.argv[1].rsplit(":", 1)
path, n, framing = sys.argv[2], int(sys.argv[3]), sys.argv[4]
data = b"".join(U.pattern_chunks(n))
c = http.client.HTTPConnection(host, int(port), timeout=30)
t0 = time.monotonic()
c.putrequest("POST", path)
if framing == "chunked":
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    for i in range(0, n, 1024):
        part = data[i:i + 1024]
        c.send(b"%x\r\n%s\r\n" % (len(part), part))
    c.send(b"0\r\n\r\n")
else:
    c.putheader("Content-Length", str(n))
    c.endheaders(data)
r = c.getresponse()
body = r.read()
ms = int((time.monotonic() - t0) * 1000)
try:
    sha = json.loads(body).get("sha256", "-")
except ValueError:
    sha = "-"
line = body.decode("latin-1").splitlines()[0] if body else ""
print(r.status, sha, r.getheader("X-Served-By") or "-", ms, line)
PY
export UPSTREAM_DIR=$here/../lib
post() { python3 "$d/post.py" "$@" 2>&1 || echo "error"; }
field() { echo "$1" | cut -d' ' -f"$2"; }
MIB=1048576
SHA_MIB=$(python3 "$here/../lib/upstream.py" --sha $MIB)
uploads() { curl -s "http://127.0.0.1:$1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["paths"].get("/upload",0))'; }

# --- 1. static lease, the primary's proxy not up yet --------------------------------------
upp=$(free_port); upr=$(free_port); pp=$(free_port); pr=$(free_port)
python3 "$here/../lib/upstream.py" --port "$upp" --name p-app >/dev/null 2>&1 &
register_pid $!
python3 "$here/../lib/upstream.py" --port "$upr" --name r-app >/dev/null 2>&1 &
register_pid $!
"$bin" run --instance R --listen "127.0.0.1:$pr" --target "127.0.0.1:$upr" --admin off --workers 1 \
    --static-primary "P=http://127.0.0.1:$pp" --hold-timeout 10s >"$d/r.log" 2>&1 &
register_pid $!
for u in "$upp/stats" "$upr/stats" "$pr/stats"; do
    wait_for "curl -sf http://127.0.0.1:$u" 10 || die "127.0.0.1:$u did not come up"
done
( sleep 1; exec "$bin" run --instance P --listen "127.0.0.1:$pp" --target "127.0.0.1:$upp" --admin off \
    --workers 1 --static-primary "P=http://127.0.0.1:$pp" >"$d/p.log" 2>&1 ) &
register_pid $!
out=$(post "127.0.0.1:$pr" /upload $MIB chunked)
check "static: chunked write of exactly 1 MiB, P down at first: kept and delivered once P is up ($out)" \
    '[ "$(field "$out" 1)" = 200 ] && [ "$(field "$out" 2)" = "$SHA_MIB" ] && [ "$(field "$out" 3)" = p-app ]'

# --- 2. Consul, no primary known ------------------------------------------------------------
consul_dev_start "$d/consul" || die "consul did not start"
KEY=hold-chunked/$$/primary SVC=hold-chunked-$$
PUB=$(free_port) ADM=$(free_port) APPA=$(free_port) APPB=$(free_port)
for x in A:$APPA B:$APPB; do
    python3 "$here/../lib/upstream.py" --port "${x#*:}" --name "${x%%:*}-app" >/dev/null 2>&1 &
    register_pid $!
    wait_for "curl -sf http://127.0.0.1:${x#*:}/stats" 10 || die "app did not start"
done
start_lw() { # ID IP APP [flags]
    local id=$1 ip=$2 app=$3
    shift 3
    "$bin" run --instance "$id" --listen "$ip:$PUB" --target "127.0.0.1:$app" --admin "$ip:$ADM" --workers 1 \
        --advertise "http://$ip:$PUB" --consul-addr "$CONSUL_HTTP_ADDR" --service "$SVC" --lease-key "$KEY" \
        "$@" >>"$d/$id.log" 2>&1 &
    echo $! >"$d/$id.pid"
    register_pid $!
    wait_for "curl -sf http://$ip:$ADM/status" 10 || die "leaseway $id did not start"
}
start_lw B 127.0.0.3 "$APPB" --candidate=false --hold-timeout 8s
for framing in content-length chunked; do
    ( sleep 1; start_lw A 127.0.0.2 "$APPA" ) >/dev/null 2>&1 &
    starter=$!
    out=$(post "127.0.0.3:$PUB" /upload $MIB "$framing")
    check "consul: $framing write of exactly 1 MiB, no primary yet: held, then delivered to A ($out)" \
        '[ "$(field "$out" 1)" = 200 ] && [ "$(field "$out" 2)" = "$SHA_MIB" ] && [ "$(field "$out" 3)" = A-app ]'
    wait "$starter"
    kill_wait "$(cat "$d/A.pid")" 5 # A releases the lease: no primary again
    wait_for "curl -s http://127.0.0.3:$ADM/status | grep -q '\"primary\": null'" 10 || die "B still sees a primary"
done
before=$(( $(uploads "$APPA") + $(uploads "$APPB") ))
out=$(post "127.0.0.3:$PUB" /upload $((MIB + 1)) chunked)
check "consul: chunked write of 1 MiB + 1 byte, no primary: refused at once, not held ($out)" \
    '[ "$(field "$out" 1)" = 503 ] && [ "$(field "$out" 4)" -lt 5000 ] && echo "$out" | grep -q "not held"'
check "consul: no app saw the refused write" '[ $(( $(uploads "$APPA") + $(uploads "$APPB") )) = "$before" ]'

[ "$fails" -eq 0 ] || { show_tails 20 "$d/r.log" "$d/p.log" "$d/A.log" "$d/B.log"; die "$fails checks failed"; }
echo "PASS routing_hold_chunked"
