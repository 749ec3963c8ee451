#!/usr/bin/env bash
# A new primary whose own watch of the lease key answers late (SPEC §2 step 9, §5), on a real
# Consul dev agent:
#   lw-a: the primary; lw-b: the only other candidate, whose Consul traffic goes through a
#   relay (tests/lib/consul_delay.py) that holds back every reply to a GET of the lease key
#   (its blocking queries) for 1.5 s; lw-c: not a candidate, talks to Consul directly.
#   POST /handoff to lw-a: lw-b takes the key, but its watch shows that 1.5 s later. lw-c
#   sees lw-b as primary first and forwards writes to it at once. lw-b must take them as
#   the primary it is from the moment its acquire succeeded, not answer 421 until its own
#   watch catches up (after a second 421, the sender waits for yet another primary until
#   --hold-timeout: the writes failed with 503 after it).
# A write every 50 ms through lw-c, from 1 s before the handoff to 5 s after it: every one
# 200, none slower than 3 s.
# Bounded: 90 s.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"

consul_test late-watch 90
trap 'rc=$?; [ $rc -eq 0 ] || show_tails 25 "$DIR"/lw-*.log "$DIR/relay.log"; (exit $rc); cleanup' EXIT
KEY=leaseway/late-$$/primary

RELAY=$(free_port)
"$PY" "$HERE/../lib/consul_delay.py" --listen "127.0.0.1:$RELAY" --upstream "127.0.0.1:$CONSUL_HTTP_PORT" \
  --path-prefix "/v1/kv/$KEY" --method GET --delay 1.5 --ready "$DIR/relay.ready" >"$DIR/relay.log" 2>&1 </dev/null &
register_pid $!
wait_for "[ -s '$DIR/relay.ready' ]" 10 0.1 || die "the relay did not start"

IPS=(127.0.0.2 127.0.0.3 127.0.0.4)
IDS=(lw-a lw-b lw-c)
PUB=$(free_port) APP=$(free_port) ADM=$(free_port)
for i in 0 1 2; do
  "$PY" "$DEMO/app.py" --listen "${IPS[$i]}:$APP" --name "app-${IDS[$i]}" --db "$DIR/${IDS[$i]}.sqlite" --quiet \
    >>"$DIR/app-${IDS[$i]}.log" 2>&1 </dev/null &
  register_pid $!
done
for i in 0 1 2; do
  wait_for "curl -sf -m 1 http://${IPS[$i]}:$APP/healthz" 10 0.1 || die "demo app ${IDS[$i]} did not start"
done
start_lw() { # I CONSUL_URL [args...]
  local i=$1 consul=$2
  shift 2
  "$LEASEWAY_BIN" run --lease consul --lease-key "$KEY" --instance "${IDS[$i]}" --workers 1 \
    --listen "${IPS[$i]}:$PUB" --target "${IPS[$i]}:$APP" --admin "${IPS[$i]}:$ADM" \
    --advertise "http://${IPS[$i]}:$PUB" --consul-addr "$consul" --service "late-$$" \
    --lease-ttl 10s --lock-delay 1s --hold-timeout 5s "$@" >>"$DIR/lw-${IDS[$i]}.log" 2>&1 </dev/null &
  register_pid $!
}
role_of() { curl -s -m 1 "http://${IPS[$1]}:$ADM/status" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["role"])' 2>/dev/null; }
primary_seen_by() { curl -s -m 1 "http://${IPS[$1]}:$ADM/status" | "$PY" -c 'import json,sys; print((json.load(sys.stdin).get("primary") or {}).get("id"))' 2>/dev/null; }

start_lw 0 "$CONSUL_HTTP_ADDR"
wait_for "[ \"\$(role_of 0)\" = primary ]" 15 0.1 || die "lw-a did not become primary"
start_lw 1 "http://127.0.0.1:$RELAY"
start_lw 2 "$CONSUL_HTTP_ADDR" --candidate=false
wait_for "[ \"\$(primary_seen_by 1)\" = lw-a ] && [ \"\$(primary_seen_by 2)\" = lw-a ]" 15 0.1 ||
  die "lw-b and lw-c do not both see lw-a as primary"

"$PY" - "${IPS[2]}:$PUB" "$DIR/writes.out" <<'EOF' &
import http.client, sys, time
host, port = sys.argv[1].rsplit(":", 1)
out = open(sys.argv[2], "w")
end = time.time() + 7
i = 0
while time.time() < end:
    i += 1
    t0 = time.time()
    try:
        c = http.client.HTTPConnection(host, int(port), timeout=10)
        c.request("POST", "/write", body="id=late-%d" % i, headers={"Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse()
        r.read()
        code = r.status
        c.close()
    except Exception as e:
        code = repr(e)[:40].replace(" ", "_")
    out.write("%d %s %.0f\n" % (i, code, (time.time() - t0) * 1000))
    out.flush()
    time.sleep(0.05)
EOF
WRITER=$!
sleep 1
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST "http://${IPS[0]}:$ADM/handoff")
[ "$code" = 200 ] || bad "POST /handoff to lw-a answered $code"
wait "$WRITER"

if wait_for "[ \"\$(role_of 1)\" = primary ]" 10 0.1; then
  ok "lw-b (the only other candidate) took the lease"
else
  bad "lw-b did not become primary after the handoff"
fi
grep -q '^held GET' "$DIR/relay.log" && ok "the relay held lw-b's watch replies ($(grep -c '^held GET' "$DIR/relay.log"))" ||
  bad "the relay held none of lw-b's watch replies"
n=$(wc -l <"$DIR/writes.out")
non200=$(awk '$2 != 200' "$DIR/writes.out" | wc -l)
slow=$(awk '$3 >= 3000' "$DIR/writes.out" | wc -l)
served_b=$(curl -s -m 2 "http://${IPS[1]}:$APP/writes" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["count"])')
if [ "$non200" = 0 ]; then
  ok "$n writes through lw-c across the handoff: all 200 ($served_b landed on lw-b's app)"
else
  bad "$non200 of $n writes through lw-c were not answered 200: $(awk '$2 != 200' "$DIR/writes.out" | head -3 | tr '\n' ';')"
fi
if [ "$slow" = 0 ]; then
  ok "no write took 3 s or more (slowest $(sort -k3 -n "$DIR/writes.out" | tail -1 | awk '{print $3}') ms)"
else
  bad "$slow writes took 3 s or more (held waiting for another primary)"
fi
[ "${served_b:-0}" -gt 0 ] || bad "no write reached lw-b's app after the handoff"

echo "routing_late_watch: $PASSES passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
