#!/usr/bin/env bash
# leaseway against an ACL-enabled Consul dev agent (default deny):
#   * a least-privilege token, read from CONSUL_HTTP_TOKEN_FILE, is enough to
#     register, take the lease and become primary;
#   * the token file wins over CONSUL_HTTP_TOKEN (a bad token in the variable,
#     the good one in the file: still works);
#   * with no token at all leaseway logs a clear permission error, keeps
#     running and serving, and never claims to be primary.
# Bounded: 120 s.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"

CL=("$PY" "$DEMO/cluster.py")

watchdog 120 "cluster_acl timed out after 120 s"

[ -x "$LEASEWAY_BIN" ] || die "no leaseway binary at $LEASEWAY_BIN (build first)"
CONSUL=$(consul_bin) || die "no consul binary (run tests/setup.sh)"

FAILS=0
PASSES=0
ok() { PASSES=$((PASSES + 1)); printf 'ok   - %s\n' "$*"; }
bad() { FAILS=$((FAILS + 1)); printf 'FAIL - %s\n' "$*"; }
jget() { "$PY" -c 'import json,sys; j=json.loads(sys.argv[1]); v=eval(sys.argv[2]); print("" if v is None else v)' "$1" "$2" 2>/dev/null || true; }

DIR=$(mktmp cluster-acl)
ROOT_TOKEN=root-$$-$RANDOM
SERVICE=lwacl-$$
PREFIX=leaseway/acl-$$
LEASE_KEY=$PREFIX/primary
NODE=leaseway-acl-$$
HTTP=$(free_port)
CONSUL_ADDR=http://127.0.0.1:$HTTP
RT=(-H "X-Consul-Token: $ROOT_TOKEN")

# --- the agent: ACLs on, default deny ------------------------------------
"$CONSUL" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -node "$NODE" \
  -http-port "$HTTP" -dns-port "$(free_port)" -server-port "$(free_port)" \
  -serf-lan-port "$(free_port)" -serf-wan-port "$(free_port)" \
  -grpc-port=-1 -hcl 'ports { grpc_tls = -1 }' -hcl 'session_ttl_min = "1s"' \
  -hcl 'disable_update_check = true' \
  -hcl "acl { enabled = true default_policy = \"deny\" enable_token_persistence = false
         tokens { initial_management = \"$ROOT_TOKEN\" agent = \"$ROOT_TOKEN\" } }" \
  >"$DIR/consul.log" 2>&1 </dev/null &
AGENT_PID=$!
register_pid "$AGENT_PID"
acl_ready() { [ "$(curl -s -m 2 -X PUT -d ok "${RT[@]}" "$CONSUL_ADDR/v1/kv/_ready")" = true ]; }
wait_for acl_ready 30 0.2 ||
  { tail -n 30 "$DIR/consul.log" >&2; die "ACL dev agent did not start"; }
code=$(curl -s -m 2 -o /dev/null -w '%{http_code}' -X PUT -d x "$CONSUL_ADDR/v1/kv/$LEASE_KEY")
[ "$code" = 403 ] || die "agent is not default-deny: anonymous KV PUT answered $code"
echo "ACL dev agent on $CONSUL_ADDR (default deny; anonymous KV PUT -> 403)"

# --- least-privilege tokens --------------------------------------------------
# make_token NAME RULES — create a policy and a token for it; print the secret.
make_token() {
  local body out
  printf '%s\n' "$2" >"$DIR/$1.hcl"
  body=$("$PY" -c 'import json,sys; print(json.dumps({"Name": sys.argv[1], "Rules": open(sys.argv[2]).read()}))' \
    "$1-$SERVICE" "$DIR/$1.hcl")
  curl -sf -m 5 -X PUT "${RT[@]}" -d "$body" "$CONSUL_ADDR/v1/acl/policy" >/dev/null || die "policy $1: create failed"
  out=$(curl -sf -m 5 -X PUT "${RT[@]}" -d "{\"Description\":\"leaseway test\",\"Policies\":[{\"Name\":\"$1-$SERVICE\"}]}" \
    "$CONSUL_ADDR/v1/acl/token") || die "token $1: create failed"
  jget "$out" 'j["SecretID"]'
}
# `leaseway run` needs exactly this (found by trying against Consul 1.22; node
# and agent read are not needed): key write under the lease prefix (watch,
# acquire, release), session write on its node (create, renew, destroy), and
# service write (register, feed the TTL checks, deregister).
RUN_RULES="key_prefix \"$PREFIX/\" { policy = \"write\" }
session \"$NODE\" { policy = \"write\" }
service \"$SERVICE\" { policy = \"write\" }"
# `leaseway status` reads the catalog: service read, plus node read (without
# it Consul silently filters every entry out).
STATUS_RULES="service \"$SERVICE\" { policy = \"read\" }
node_prefix \"\" { policy = \"read\" }"
umask 077
TOKEN=$(make_token leaseway-run "$RUN_RULES")
[ -n "$TOKEN" ] || die "no token for leaseway run"
printf '%s\n' "$TOKEN" >"$DIR/token"
STATUS_TOKEN=$(make_token leaseway-status "$STATUS_RULES")
printf '%s\n' "$STATUS_TOKEN" >"$DIR/status-token"
echo "least-privilege token for leaseway run in $DIR/token; policy:"
sed 's/^/    /' "$DIR/leaseway-run.hcl"

# --- instances ---------------------------------------------------------------
IPS=(127.0.0.2 127.0.0.3 127.0.0.4)
IDS=(acl-1 acl-2 acl-3)
PUB=$(free_port) APP=$(free_port) ADM=$(free_port)
for i in 0 1 2; do
  "$PY" "$DEMO/app.py" --listen "${IPS[$i]}:$APP" --name "${IDS[$i]}" --db "$DIR/${IDS[$i]}.sqlite" --quiet \
    >"$DIR/app-${IDS[$i]}.log" 2>&1 </dev/null &
  register_pid $!
done
for i in 0 1 2; do
  wait_for "curl -sf -m 1 http://${IPS[$i]}:$APP/healthz" 10 0.1 || die "demo app ${IDS[$i]} did not start"
done

LW_PID=("" "" "")
start_lw() { # index, then env assignments
  local i=$1
  shift
  env -u CONSUL_HTTP_TOKEN -u CONSUL_HTTP_TOKEN_FILE -u CONSUL_HTTP_ADDR "$@" \
    "$LEASEWAY_BIN" run --lease consul --lease-key "$LEASE_KEY" --instance "${IDS[$i]}" --region local \
    --listen "${IPS[$i]}:$PUB" --target "${IPS[$i]}:$APP" --admin "${IPS[$i]}:$ADM" \
    --advertise "http://${IPS[$i]}:$PUB" --consul-addr "$CONSUL_ADDR" --service "$SERVICE" \
    --lease-ttl 10s --lock-delay 1s --drain-timeout 2s \
    >>"$DIR/lw-${IDS[$i]}.log" 2>&1 </dev/null &
  LW_PID[i]=$!
  register_pid "${LW_PID[$i]}"
}
show_logs() { show_tails 20 "$DIR"/lw-*.log; }
rc=0
trap 'rc=$?; set +e; [ $rc -eq 0 ] || show_logs; (exit $rc); cleanup' EXIT
spec() { echo "${IPS[$1]}:$ADM@${IPS[$1]}:$PUB"; }

# 1. No token at all: starts first, so it would win the lease if ACLs let it.
start_lw 2
sleep 0.5
# 2. The token from CONSUL_HTTP_TOKEN_FILE.
start_lw 0 CONSUL_HTTP_TOKEN_FILE="$DIR/token"
if out=$("${CL[@]}" wait-primary --timeout 15 --min 1 --no-headers "$(spec 0)" 2>&1) &&
  [ "$(jget "$out" 'j["primary"]')" = acl-1 ]; then
  ok "token file: acl-1 became primary ($(jget "$out" 'j["ms"]') ms)"
else
  bad "token file: acl-1 did not become primary within 15 s: $out"
fi
holder=$(curl -s -m 2 "${RT[@]}" "$CONSUL_ADDR/v1/kv/$LEASE_KEY?raw") || holder=
if [ "$(jget "$holder" 'j["hostname"]')" = acl-1 ]; then
  ok "token file: the lease key names acl-1 ($holder)"
else
  bad "token file: lease key value '$holder', want hostname acl-1"
fi
out=$(curl -s -m 2 "${RT[@]}" "$CONSUL_ADDR/v1/catalog/service/$SERVICE")
if [ "$(jget "$out" '",".join(sorted(e["ServiceID"] + ":" + "+".join(e["ServiceTags"]) for e in j))')" = "acl-1:primary" ]; then
  ok "token file: acl-1 registered and tagged primary; the token-less acl-3 is not registered"
else
  bad "catalog: want only acl-1 tagged primary; got $(jget "$out" '[(e["ServiceID"], e["ServiceTags"]) for e in j]')"
fi
out=$("${CL[@]}" get "http://${IPS[0]}:$PUB/")
if [ "$(jget "$out" 'j["code"]')" = 200 ] && [ "$(jget "$out" 'j["headers"].get("fly-primary-instance")')" = acl-1 ]; then
  ok "token file: GET via acl-1: 200, Fly-Primary-Instance: acl-1"
else
  bad "token file: GET via acl-1: $out"
fi

# 3. A bad CONSUL_HTTP_TOKEN with the good file: the file wins.
start_lw 1 CONSUL_HTTP_TOKEN=00000000-0000-0000-0000-000000000000 CONSUL_HTTP_TOKEN_FILE="$DIR/token"
if "${CL[@]}" catalog --consul "$CONSUL_ADDR" --service "$SERVICE" --token "$ROOT_TOKEN" --want 2 --timeout 10 >/dev/null 2>&1 &&
  out=$("${CL[@]}" wait-status --timeout 10 --expr 'st["role"] == "replica" and (st["primary"] or {}).get("id") == "acl-1"' "$(spec 1)" 2>&1); then
  ok "token file wins over CONSUL_HTTP_TOKEN: acl-2 registered, replica of acl-1"
else
  bad "token file + bad CONSUL_HTTP_TOKEN: acl-2 not registered as a replica of acl-1: $out"
fi

# `leaseway status` with its own read-only token.
if out=$(env -u CONSUL_HTTP_TOKEN CONSUL_HTTP_TOKEN_FILE="$DIR/status-token" \
  "$LEASEWAY_BIN" status --json --consul-addr "$CONSUL_ADDR" --service "$SERVICE" 2>&1) &&
  [ "$(jget "$out" '" ".join(sorted(e["id"] + "=" + e["role"] for e in j))')" = "acl-1=primary acl-2=replica" ]; then
  ok "leaseway status with a read-only token (service + node read): acl-1 primary, acl-2 replica"
else
  bad "leaseway status --json with the read-only token: want acl-1=primary acl-2=replica; got: $out"
fi
out=$(env -u CONSUL_HTTP_TOKEN -u CONSUL_HTTP_TOKEN_FILE \
  "$LEASEWAY_BIN" status --consul-addr "$CONSUL_ADDR" --service "$SERVICE" 2>&1) && rc=0 || rc=$?
if [ "$rc" != 0 ] || grep -qE '403|[Pp]ermission denied|ACL' <<<"$out"; then
  ok "leaseway status without a token: exit $rc, says: $(head -n 2 <<<"$out" | cut -c1-160)"
else

  echo "WARN - leaseway status without a token exits 0 and does not mention ACLs (Consul filters the catalog to nothing for anonymous): $(head -n 3 <<<"$out")"
fi
rc=0

# 4. No token: a clear error, still running, not primary.
st=$(curl -s -m 2 "http://${IPS[2]}:$ADM/status") || st=
if kill -0 "${LW_PID[2]}" 2>/dev/null; then
  ok "no token: acl-3 is still running"
else
  bad "no token: acl-3 exited (crashed?)"
fi
if [ -n "$st" ] && [ "$(jget "$st" 'j["role"]')" != primary ]; then
  ok "no token: acl-3 /status role=$(jget "$st" 'j["role"]'), primary=$(jget "$st" '(j["primary"] or {}).get("id")')"
else
  bad "no token: acl-3 /status: want a role other than primary; got '$st'"
fi
if grep -qE '403|[Pp]ermission denied|ACL' "$DIR/lw-acl-3.log"; then
  ok "no token: acl-3 logs the permission error: $(grep -E '403|[Pp]ermission denied|ACL' "$DIR/lw-acl-3.log" | head -n 1 | cut -c1-200)"
else
  bad "no token: acl-3's log has no 403/ACL/permission denied line; it says: $(tail -n 5 "$DIR/lw-acl-3.log")"
fi
n=$(grep -ciE '403|permission denied' "$DIR/lw-acl-3.log" || true)
if [ "$n" -le 20 ]; then
  ok "no token: the error is not spammed ($n lines in the log so far)"
else
  bad "no token: $n permission-error lines in the log (issue 3: log a 403 once per change)"
fi
out=$("${CL[@]}" get "http://${IPS[2]}:$PUB/")
if [ "$(jget "$out" 'j["code"]')" = 200 ]; then
  ok "no token: acl-3 still serves reads (GET / 200, Fly-Primary-Instance: $(jget "$out" 'j["headers"].get("fly-primary-instance")'))"
else
  bad "no token: GET / via acl-3: $out"
fi

# 5. A token file rotated while leaseway runs (a Vault agent, an operator): the new token is
#    picked up, even after every operation has already met its 403 with the old one.
kill_wait "${LW_PID[2]}" 10
echo "11111111-1111-1111-1111-111111111111" >"$DIR/rotating"
start_lw 2 CONSUL_HTTP_TOKEN_FILE="$DIR/rotating"
sleep 6
cp "$DIR/token" "$DIR/rotating.new" && mv "$DIR/rotating.new" "$DIR/rotating"
if "${CL[@]}" catalog --consul "$CONSUL_ADDR" --service "$SERVICE" --token "$ROOT_TOKEN" --want 3 --timeout 15 >/dev/null 2>&1 &&
  out=$("${CL[@]}" wait-status --timeout 10 --expr 'st["role"] == "replica" and (st["primary"] or {}).get("id") == "acl-1"' "$(spec 2)" 2>&1); then
  ok "token file rotated 6 s after start: acl-3 picked up the new token, registered, replica of acl-1"
else
  bad "token file rotated 6 s after start: acl-3 not registered as a replica within 15 s: ${out:-not in the catalog}"
fi

echo "cluster_acl: $PASSES passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
