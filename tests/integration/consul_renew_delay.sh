#!/usr/bin/env bash
# A slow Consul must not fence the primary's writes while its session is alive.
#
# A renew keeps the fence open until (send time of the last good renew) + min(TTL,
# lock-delay) - 0.5 s, and renews go every third of that span (consul_fence_deadline(),
# consul_renew_every()). The next renew must therefore be timed from when the last one was
# *sent*: timed from its reply, a renew that takes D seconds pushes every later renew D
# seconds later, and the fence runs out before the next reply, on every cycle, although the
# session never lapses.
#
# Set-up: a real Consul dev agent; an HTTP relay (tests/lib/consul_delay.py) in front of it
# holds every renew reply for 1.0 s; one leaseway (--lease-ttl 6s --lock-delay 3s: a span of
# 2.5 s, a renew every 0.83 s) takes the lease through the relay; a write every 100 ms for
# 15 s. Not one of them may be held for the fence (route "held" in /metrics), and every one
# must be answered 200.
# Bounded: 90 s.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"

watchdog 90 "consul_renew_delay timed out after 90 s"
[ -x "$LEASEWAY_BIN" ] || die "no leaseway binary at $LEASEWAY_BIN (build first)"

FAILS=0
ok() { printf 'ok   - %s\n' "$*"; }
bad() {
  FAILS=$((FAILS + 1))
  printf 'FAIL - %s\n' "$*"
}

DIR=$(mktmp renew-delay)
consul_dev_start "$DIR/consul" || die "consul did not start"

RELAY=$(free_port)
"$PY" "$HERE/../lib/consul_delay.py" --listen "127.0.0.1:$RELAY" --upstream "127.0.0.1:$CONSUL_HTTP_PORT" \
  --path-prefix /v1/session/renew/ --delay 1.0 --ready "$DIR/relay.ready" >"$DIR/relay.log" 2>&1 </dev/null &
register_pid $!
wait_for "[ -s '$DIR/relay.ready' ]" 10 0.1 || die "the relay did not start"

APP=$(free_port) PUB=$(free_port) ADM=$(free_port)
"$PY" "$DEMO/app.py" --listen "127.0.0.1:$APP" --name rd-1 --db "$DIR/app.sqlite" --quiet \
  >"$DIR/app.log" 2>&1 </dev/null &
register_pid $!
wait_for "curl -sf -m 1 http://127.0.0.1:$APP/healthz" 10 0.1 || die "demo app did not start"

env -u CONSUL_HTTP_TOKEN -u CONSUL_HTTP_TOKEN_FILE -u CONSUL_HTTP_ADDR \
  "$LEASEWAY_BIN" run --lease consul --lease-key "leaseway/rd-$$/primary" --instance rd-1 --region local \
  --listen "127.0.0.1:$PUB" --target "127.0.0.1:$APP" --admin "127.0.0.1:$ADM" \
  --advertise "http://127.0.0.1:$PUB" --consul-addr "http://127.0.0.1:$RELAY" --service "rd-$$" \
  --lease-ttl 6s --lock-delay 3s --drain-timeout 2s >"$DIR/leaseway.log" 2>&1 </dev/null &
LW=$!
register_pid $LW
is_primary() { curl -sf -m 1 "http://127.0.0.1:$ADM/status" | grep -q '"role": *"primary"'; }
wait_for is_primary 20 0.1 || {
  tail -n 20 "$DIR/leaseway.log" >&2
  die "leaseway did not become primary through the relay"
}
ok "primary through the delaying relay"

# 150 writes, one every 100 ms; each must be answered 200 within 1 s.
codes=()
slow=0
for i in $(seq 1 150); do
  out=$(curl -s -m 5 -o /dev/null -w '%{http_code} %{time_total}' -X POST -d "id=rd-$i" \
    "http://127.0.0.1:$PUB/write") || out="000 5"
  codes+=("${out%% *}")
  awk -v t="${out#* }" 'BEGIN { exit !(t >= 1.0) }' && slow=$((slow + 1))
  sleep 0.1
done
held=$(grep -c '^held PUT /v1/session/renew/' "$DIR/relay.log" || true)
if [ "$held" -ge 3 ]; then ok "the relay held $held renew replies for 1.0 s"; else bad "the relay held only $held renews"; fi

non200=$(printf '%s\n' "${codes[@]}" | grep -vc '^200$' || true)
if [ "$non200" -eq 0 ]; then ok "150 writes answered 200"; else bad "$non200 of 150 writes were not answered 200"; fi
if [ "$slow" -eq 0 ]; then ok "no write took 1 s or more"; else bad "$slow writes took 1 s or more (held for the fence)"; fi

hold=$(curl -sf -m 2 "http://127.0.0.1:$ADM/metrics" | awk '/^leaseway_requests_total\{/ && /route="held"/ { n += $NF } END { print n + 0 }')
if [ "$hold" -eq 0 ]; then
  ok "no write was held for the fence (route=\"held\" count 0)"
else
  bad "$hold writes were held for the fence while the session was alive"
  grep -i "fence\|renew" "$DIR/leaseway.log" | tail -n 10 >&2 || true
fi

kill -TERM $LW
wait $LW 2>/dev/null || true
[ "$FAILS" -eq 0 ] || die "$FAILS checks failed (logs in $DIR)"
echo "PASS consul_renew_delay"
