#!/usr/bin/env bash
# Proves the cached Consul (tests/setup.sh) runs as a dev agent on loopback:
# KV PUT/GET, a KV lock held by a 1 s TTL session (session_ttl_min works),
# DNS answers, and a clean stop. And consul_dev_start's retry: a port that another process
# takes before the agent binds it (here, its DNS port, held by a UDP socket) ends that agent
# at once, and the harness starts it again with new ports rather than failing the test.
# Bounded: the whole test is killed after 90 s.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"

# Hard bound on the whole test (the watchdog's pid is killed at exit).
watchdog 90 "consul_dev timed out after 90 s"

step() { printf '  %s\n' "$*"; }

BIN=$(consul_bin) || die "no consul binary (run tests/setup.sh)"
ver=$("$BIN" version) || die "'$BIN version' failed"
echo "consul_dev: ${ver%%$'\n'*} at $BIN"

DIR=$(mktmp consul-dev)

# A DNS port taken between free_port and the agent's bind.
python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True); time.sleep(80)' >"$DIR/taken" &
register_pid $!
wait_for "[ -s '$DIR/taken' ]" 10 0.05 || die "no UDP port held"
taken=$(cat "$DIR/taken")
t0=$(date +%s)
if CONSUL_FIRST_DNS_PORT=$taken CONSUL_START_ATTEMPTS=1 consul_dev_start "$DIR/once" 2>"$DIR/once.err"; then
  die "consul_dev_start succeeded on a taken DNS port with one attempt"
fi
secs=$(($(date +%s) - t0))
grep -q 'address already in use' "$DIR/once.err" || die "one attempt on a taken port: no bind error shown"
[ "$secs" -lt 15 ] || die "one attempt on a taken port took ${secs} s to fail (the agent had exited at once)"
step "taken DNS port, one attempt: fails in ${secs} s with the bind error"
CONSUL_FIRST_DNS_PORT=$taken consul_dev_start "$DIR/retry" 2>"$DIR/retry.err" ||
  die "consul_dev_start did not recover from a taken DNS port: $(cat "$DIR/retry.err")"
grep -q 'again with new ports' "$DIR/retry.err" || die "no retry message: $(cat "$DIR/retry.err")"
[ "$CONSUL_DNS_PORT" != "$taken" ] || die "the retry kept the taken port"
step "taken DNS port: started again on new ports (dns $CONSUL_DNS_PORT)"
consul_dev_stop

consul_dev_start "$DIR" || die "consul dev agent did not start"
step "agent up: $CONSUL_HTTP_ADDR dns=$CONSUL_DNS_PORT pid=$CONSUL_PID"

# KV PUT / GET.
val="hello-$$-$RANDOM"
out=$(curl -sf -m 5 -X PUT --data-binary "$val" "$CONSUL_HTTP_ADDR/v1/kv/leaseway/test/key") ||
  die "KV PUT failed"
[ "$out" = true ] || die "KV PUT returned '$out', want true"
got=$(curl -sf -m 5 "$CONSUL_HTTP_ADDR/v1/kv/leaseway/test/key?raw") || die "KV GET failed"
[ "$got" = "$val" ] || die "KV GET returned '$got', want '$val'"
step "KV PUT/GET ok"

# Session with TTL 1s (rejected unless session_ttl_min <= 1s), then a KV lock.
resp=$(curl -s -m 5 -w '\n%{http_code}' -X PUT \
  -d '{"Name":"leaseway-test","TTL":"1s","LockDelay":"0s","Behavior":"delete"}' \
  "$CONSUL_HTTP_ADDR/v1/session/create") || die "session create: curl failed"
code=${resp##*$'\n'}
body=${resp%$'\n'*}
[ "$code" = 200 ] || die "session create with TTL 1s: HTTP $code: $body"
sid=$(printf '%s' "$body" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ID"])') ||
  die "session create: no ID in '$body'"
out=$(curl -sf -m 5 -X PUT -d "holder-1" "$CONSUL_HTTP_ADDR/v1/kv/leaseway/test/lock?acquire=$sid") ||
  die "lock acquire failed"
[ "$out" = true ] || die "lock acquire returned '$out', want true"
holder=$(curl -sf -m 5 "$CONSUL_HTTP_ADDR/v1/kv/leaseway/test/lock" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)[0].get("Session") or "")') ||
  die "lock GET failed"
[ "$holder" = "$sid" ] || die "lock held by '$holder', want session $sid"
step "session TTL=1s created ($sid), lock acquired"

# Without renewals the session expires (server timer is 2 x TTL) and, with
# Behavior=delete, the key goes away.
wait_for "[ \"\$(curl -s -o /dev/null -w '%{http_code}' $CONSUL_HTTP_ADDR/v1/kv/leaseway/test/lock)\" = 404 ]" 15 0.25 ||
  die "lock key still present 15 s after its 1 s TTL session should have expired"
step "session expired, lock key deleted"

# DNS.
ans=$(dig +short +time=2 +tries=2 @127.0.0.1 -p "$CONSUL_DNS_PORT" consul.service.consul A) ||
  die "dig failed"
[ "$ans" = 127.0.0.1 ] || die "DNS consul.service.consul answered '$ans', want 127.0.0.1"
step "DNS consul.service.consul -> $ans"

# Stop, and make sure nothing is left.
pid=$CONSUL_PID
consul_dev_stop
if kill -0 "$pid" 2>/dev/null; then die "consul (pid $pid) still running after consul_dev_stop"; fi
if pgrep -f -- "-node $CONSUL_NODE" >/dev/null; then die "a consul process for node $CONSUL_NODE is still running"; fi
curl -s -m 1 -o /dev/null "$CONSUL_HTTP_ADDR/v1/status/leader" && die "HTTP port still answering after stop"
step "agent stopped, no consul process left"

echo "consul_dev: 1 passed, 0 failed"
