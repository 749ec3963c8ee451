#!/usr/bin/env bash
# The service's Tags (and Meta.gate) converge to the current role whatever the order in which
# the first registration and the lease view complete (SPEC §5: Tags "updated on change";
# primary.<service>.service.consul resolves to the primary).
#
# The bug: a watch-only instance (--candidate=false, the LiteFS deployment) started while a
# LiteFS-shaped lease already names it saw itself primary while its first registration (Tags
# ["replica"]) was still in flight; the tag sync skipped it (not registered yet), and when the
# registration came back nothing had changed in the published state, so nothing registered
# again: Tags stayed ["replica"] for good (3-4 starts in 5 on a quiet machine).
#
# Set-up: a real Consul dev agent; an HTTP relay (tests/lib/consul_delay.py) in front of it
# holds every reply to /v1/agent/service/register for 1.5 s, so the lease view always comes
# first (the race made certain).
#   1. watch-only n1, lease held by a "LiteFS" session of its own naming n1: /status primary,
#      then within 10 s Tags ["primary"] (agent API), the catalog agrees, and
#      primary.<service>.service.consul resolves to n1's address (DNS)
#   2. n1's Meta.gate is "open" (no gate condition: no gate change re-registers it, which
#      used to hide the bug)
#   3. the lease moves to another hostname: n1's Tags turn ["replica"], DNS has no primary
#   4. candidate c1 behind the same relay, --upstream-health: its gate opens while its first
#      registration is held, it takes the lease while the next one is; it ends up with Tags
#      ["primary"] and Meta.gate "open"
# Bounded: 120 s.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"

consul_test consul_tags_converge 120
trap 'rc=$?; set +e; [ $rc -eq 0 ] || show_tails 25 "$DIR"/lw-*.log "$DIR/relay.log"; (exit $rc); cleanup' EXIT

RELAY=$(free_port)
"$PY" "$HERE/../lib/consul_delay.py" --listen "127.0.0.1:$RELAY" --upstream "127.0.0.1:$CONSUL_HTTP_PORT" \
  --path-prefix /v1/agent/service/register --delay 1.5 --ready "$DIR/relay.ready" >"$DIR/relay.log" 2>&1 </dev/null &
register_pid $!
wait_for "[ -s '$DIR/relay.ready' ]" 10 0.1 || die "the relay did not start"

APP=$(free_port) PUB=$(free_port) ADM=$(free_port)
"$PY" "$HERE/../lib/upstream.py" --port "$APP" --name app >"$DIR/app.log" 2>&1 </dev/null &
register_pid $!
wait_for "curl -sf -m 1 http://127.0.0.1:$APP/stats" 10 0.1 || die "app did not start"

SVC=tags-$$ KEY=leaseway/tags-$$/primary

# agent_field ID EXPR — EXPR of /v1/agent/service/ID (s = the service), "" when absent
agent_field() {
  curl -s -m 2 "$CONSUL_HTTP_ADDR/v1/agent/service/$1" |
    "$PY" -c 'import json,sys
try:
    s = json.load(sys.stdin)
    print(eval(sys.argv[1]))
except Exception:
    print("")' "$2" 2>/dev/null || true
}
tags() { agent_field "$1" '",".join(s["Tags"])'; }
catalog_tags() {
  curl -s -m 2 "$CONSUL_HTTP_ADDR/v1/catalog/service/$SVC-$2" |
    "$PY" -c 'import json,sys; print(",".join(",".join(e["ServiceTags"]) for e in json.load(sys.stdin) if e["ServiceID"] == sys.argv[1]))' "$1" 2>/dev/null || true
}
dns_primary() { dig +short +time=1 +tries=1 @127.0.0.1 -p "$CONSUL_DNS_PORT" "primary.$1.service.consul" 2>/dev/null | tr '\n' ' '; }
role() { curl -s -m 2 "http://$1:$ADM/status" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["role"])' 2>/dev/null || true; }
session() {
  curl -s -X PUT -d '{"Name":"litefs","TTL":"30s","Behavior":"delete","LockDelay":"1s"}' \
    "$CONSUL_HTTP_ADDR/v1/session/create" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["ID"])'
}

# --- 1-3. watch-only, lease written by "LiteFS" naming it -----------------
LSESS=$(session)
[ "$(curl -s -X PUT -d '{"hostname":"n1","advertise-url":"http://127.0.0.2:20202"}' \
  "$CONSUL_HTTP_ADDR/v1/kv/$KEY/w?acquire=$LSESS")" = true ] || die "could not take the key as LiteFS"
env -u CONSUL_HTTP_TOKEN -u CONSUL_HTTP_TOKEN_FILE -u CONSUL_HTTP_ADDR \
  "$LEASEWAY_BIN" run --instance n1 --listen "127.0.0.2:$PUB" --target "127.0.0.1:$APP" --admin "127.0.0.2:$ADM" \
  --workers 1 --advertise "http://127.0.0.2:$PUB" --consul-addr "http://127.0.0.1:$RELAY" --service "$SVC-w" \
  --lease-key "$KEY/w" --candidate=false --peer-url-template "http://{id}.invalid:$PUB" \
  >"$DIR/lw-n1.log" 2>&1 </dev/null &
register_pid $!
if wait_for '[ "$(role 127.0.0.2)" = primary ]' 10 0.05; then
  ok "n1 sees itself primary (the lease names it)"
else
  bad "n1 is not primary: role=$(role 127.0.0.2)"
fi
# the first registration is still held by the relay now: the view came first
if wait_for '[ "$(tags n1)" = primary ]' 10 0.2; then
  ok "n1's Tags turned [\"primary\"] ($(grep -c '^held PUT /v1/agent/service/register' "$DIR/relay.log" || true) registrations held 1.5 s each)"
else
  bad "n1's Tags stay [\"$(tags n1)\"] while /status says role=$(role 127.0.0.2)"
fi
t=$(catalog_tags n1 w)
if [ "$t" = primary ]; then ok "the catalog tags n1 primary"; else bad "the catalog tags n1 '$t'"; fi
if wait_for '[ "$(dns_primary "$SVC-w")" = "127.0.0.2 " ]' 5 0.2; then
  ok "primary.$SVC-w.service.consul resolves to 127.0.0.2"
else
  bad "primary.$SVC-w.service.consul resolves to '$(dns_primary "$SVC-w")'"
fi
if wait_for '[ "$(agent_field n1 "s[\"Meta\"][\"gate\"]")" = open ]' 10 0.2; then
  ok "n1's Meta.gate is open"
else
  bad "n1's Meta.gate is '$(agent_field n1 's["Meta"]["gate"]')'"
fi

# the lease moves to another host: n1 is a replica, and its tag follows
curl -s -X PUT "$CONSUL_HTTP_ADDR/v1/kv/$KEY/w?release=$LSESS" >/dev/null
LSESS2=$(session)
[ "$(curl -s -X PUT -d '{"hostname":"n2","advertise-url":"http://127.0.0.3:20202"}' \
  "$CONSUL_HTTP_ADDR/v1/kv/$KEY/w?acquire=$LSESS2")" = true ] || die "could not take the key as LiteFS on n2"
if wait_for '[ "$(role 127.0.0.2)" = replica ] && [ "$(tags n1)" = replica ]' 10 0.2; then
  ok "the lease moved away: n1 replica, Tags [\"replica\"]"
else
  bad "the lease moved away: n1 role=$(role 127.0.0.2) Tags=$(tags n1)"
fi
if wait_for '[ -z "$(dns_primary "$SVC-w")" ]' 5 0.2; then
  ok "primary.$SVC-w.service.consul resolves to nothing"
else
  bad "primary.$SVC-w.service.consul still resolves to '$(dns_primary "$SVC-w")'"
fi

# --- 4. a candidate that takes the lease while its registrations are held -------
env -u CONSUL_HTTP_TOKEN -u CONSUL_HTTP_TOKEN_FILE -u CONSUL_HTTP_ADDR \
  "$LEASEWAY_BIN" run --instance c1 --listen "127.0.0.3:$PUB" --target "127.0.0.1:$APP" --admin "127.0.0.3:$ADM" \
  --workers 1 --advertise "http://127.0.0.3:$PUB" --consul-addr "http://127.0.0.1:$RELAY" --service "$SVC-c" \
  --lease-key "$KEY/c" --lease-ttl 10s --lock-delay 1s --upstream-health /stats >"$DIR/lw-c1.log" 2>&1 </dev/null &
register_pid $!
if wait_for '[ "$(role 127.0.0.3)" = primary ]' 20 0.05; then
  ok "c1 took the lease"
else
  bad "c1 is not primary: role=$(role 127.0.0.3)"
fi
if wait_for '[ "$(tags c1)" = primary ] && [ "$(agent_field c1 "s[\"Meta\"][\"gate\"]")" = open ]' 10 0.2; then
  ok "c1's Tags [\"primary\"], Meta.gate open"
else
  bad "c1's Tags=[\"$(tags c1)\"] Meta.gate=$(agent_field c1 's["Meta"]["gate"]') while role=$(role 127.0.0.3)"
fi
if wait_for '[ "$(dns_primary "$SVC-c")" = "127.0.0.3 " ]' 5 0.2; then
  ok "primary.$SVC-c.service.consul resolves to 127.0.0.3"
else
  bad "primary.$SVC-c.service.consul resolves to '$(dns_primary "$SVC-c")'"
fi

if [ "$FAILS" -eq 0 ]; then
  echo "PASS consul_tags_converge ($PASSES checks)"
  exit 0
fi
echo "FAIL consul_tags_converge: $FAILS failed, $PASSES passed"
exit 1
