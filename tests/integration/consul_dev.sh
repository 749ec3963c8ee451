#!/usr/bin/env bash
# Proves the cached Consul (tests/setup.sh) runs as a dev agent on loopback:
# KV PUT/GET, a KV lock held by a 1 s TTL session (session_ttl_min works),
# DNS answers, and a clean stop. Bounded: the whole test is killed after 60 s.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"

# Hard bound on the whole test (the watchdog's pid is killed at exit).
watchdog 60 "consul_dev timed out after 60 s"

step() { printf '  %s\n' "$*"; }

BIN=$(consul_bin) || die "no consul binary (run tests/setup.sh)"
ver=$("$BIN" version) || die "'$BIN version' failed"
echo "consul_dev: ${ver%%$'\n'*} at $BIN"

DIR=$(mktmp consul-dev)
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
