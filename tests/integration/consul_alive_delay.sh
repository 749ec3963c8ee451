#!/usr/bin/env bash
# A slow local agent must not cost the primary its lease while the alive check keeps passing.
#
# The session is bound to the `alive` TTL check (3 s), fed with a pass every second. A pass
# extends the fence only if its reply came back less than 2.5 s after the previous successful
# pass was sent (otherwise the check may have gone critical in between, and the session is
# given up: "alive check chain broken"). When each feed waited for the previous one's reply,
# a reply 1 s or more late made the next feed wait for the next tick, 2 s after the last, and
# every reply then "broke" the chain: a new session every few seconds, writes held meanwhile,
# although Consul showed the check passing the whole time. Feeds no longer wait for each
# other, and go closer together while one is unanswered.
#
# Set-up: a real Consul dev agent; an HTTP relay (tests/lib/consul_delay.py) in front of it
# holds every alive-feed reply (PUT /v1/agent/check/pass/...) for 1.2 s; one leaseway takes
# the lease through the relay; a write every 100 ms for 15 s. The session must stay the same
# one (no "giving up the session", one "session created", the key held by it throughout),
# the check must stay passing in Consul, and no write may be held or fail.
# Bounded: 90 s.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"

consul_test alive-delay 90
KEY="leaseway/ad-$$/primary"

RELAY=$(free_port)
"$PY" "$HERE/../lib/consul_delay.py" --listen "127.0.0.1:$RELAY" --upstream "127.0.0.1:$CONSUL_HTTP_PORT" \
  --path-prefix /v1/agent/check/pass/ --delay 1.2 --ready "$DIR/relay.ready" >"$DIR/relay.log" 2>&1 </dev/null &
register_pid $!
wait_for "[ -s '$DIR/relay.ready' ]" 10 0.1 || die "the relay did not start"

APP=$(free_port) PUB=$(free_port) ADM=$(free_port)
"$PY" "$DEMO/app.py" --listen "127.0.0.1:$APP" --name ad-1 --db "$DIR/app.sqlite" --quiet \
  >"$DIR/app.log" 2>&1 </dev/null &
register_pid $!
wait_for "curl -sf -m 1 http://127.0.0.1:$APP/healthz" 10 0.1 || die "demo app did not start"

env -u CONSUL_HTTP_TOKEN -u CONSUL_HTTP_TOKEN_FILE -u CONSUL_HTTP_ADDR \
  "$LEASEWAY_BIN" run --lease consul --lease-key "$KEY" --instance ad-1 --region local \
  --listen "127.0.0.1:$PUB" --target "127.0.0.1:$APP" --admin "127.0.0.1:$ADM" \
  --advertise "http://127.0.0.1:$PUB" --consul-addr "http://127.0.0.1:$RELAY" --service "ad-$$" \
  --lease-ttl 10s --lock-delay 1s --drain-timeout 2s >"$DIR/leaseway.log" 2>&1 </dev/null &
LW=$!
register_pid $LW
is_primary() { curl -sf -m 1 "http://127.0.0.1:$ADM/status" | grep -q '"role": *"primary"'; }
wait_for is_primary 20 0.1 || {
  tail -n 20 "$DIR/leaseway.log" >&2
  die "leaseway did not become primary through the relay"
}
ok "primary through the delaying relay"
holder() {
  curl -sf -m 2 "$CONSUL_HTTP_ADDR/v1/kv/$KEY" |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0].get("Session") or "")' 2>/dev/null || true
}
alive_status() {
  curl -sf -m 2 "$CONSUL_HTTP_ADDR/v1/agent/checks" |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("leaseway:ad-1:alive", {}).get("Status", "none"))' \
      2>/dev/null || echo none
}
SID=$(holder)
[ -n "$SID" ] || die "no session holds $KEY"

# For 15 s, a write every 100 ms; each must be answered 200 within 1 s. Every 10th, look at
# who holds the key and at the check in Consul.
codes=()
slow=0
moved=0
critical=0
looks=0
i=0
end=$(($(date +%s) + 15))
while [ "$(date +%s)" -lt "$end" ]; do
  i=$((i + 1))
  out=$(curl -s -m 2 -o /dev/null -w '%{http_code} %{time_total}' -X POST -d "id=ad-$i" \
    "http://127.0.0.1:$PUB/write") || out="000 2"
  codes+=("${out%% *}")
  awk -v t="${out#* }" 'BEGIN { exit !(t >= 1.0) }' && slow=$((slow + 1))
  if [ $((i % 10)) -eq 0 ]; then
    looks=$((looks + 1))
    [ "$(holder)" = "$SID" ] || moved=$((moved + 1))
    [ "$(alive_status)" = passing ] || critical=$((critical + 1))
  fi
  sleep 0.1
done
held=$(grep -c '^held PUT /v1/agent/check/pass/' "$DIR/relay.log" || true)
if [ "$held" -ge 10 ]; then ok "the relay held $held alive-feed replies for 1.2 s"; else bad "the relay held only $held alive feeds"; fi

gaveup=$(grep -c 'giving up the session' "$DIR/leaseway.log" || true)
created=$(grep -c 'session created' "$DIR/leaseway.log" || true)
if [ "$gaveup" -eq 0 ] && [ "$created" -eq 1 ]; then
  ok "one session all along (no \"giving up the session\", 1 \"session created\")"
else
  bad "$gaveup \"giving up the session\", $created \"session created\" (want 0 and 1)"
  grep 'giving up\|session created\|lease acquired' "$DIR/leaseway.log" | head -n 10 >&2 || true
fi
if [ "$moved" -eq 0 ]; then ok "the key stayed with session $SID"; else bad "the key was not held by $SID at $moved of $looks looks"; fi
if [ "$critical" -eq 0 ]; then ok "the alive check stayed passing in Consul"; else bad "the alive check was not passing at $critical of $looks looks"; fi

non200=$(printf '%s\n' "${codes[@]}" | grep -vc '^200$' || true)
if [ "$non200" -eq 0 ] && [ "$i" -ge 50 ]; then ok "$i writes answered 200"; else bad "$non200 of $i writes were not answered 200"; fi
if [ "$slow" -eq 0 ]; then ok "no write took 1 s or more"; else bad "$slow writes took 1 s or more (held)"; fi
hold=$(curl -sf -m 2 "http://127.0.0.1:$ADM/metrics" | awk '/^leaseway_requests_total\{/ && /route="held"/ { n += $NF } END { print n + 0 }')
if [ "$hold" -eq 0 ]; then ok "no write was held (route=\"held\" count 0)"; else bad "$hold writes were held"; fi

kill -TERM $LW
wait $LW 2>/dev/null || true
[ "$FAILS" -eq 0 ] || die "$FAILS checks failed (logs in $DIR)"
echo "PASS consul_alive_delay"
