#!/usr/bin/env bash
# leaseway_primary_changes_total counts each failover once on every instance that sees it.
#
# A failover passes through "no primary": the old holder's session ends, Consul deletes the
# key, and for the lock-delay nobody holds it. That gap is not a change of primary: only a new
# primary, different from the last one this instance knew, counts (the flapping alert in
# docs/operations.md, increase(...[10m]) > 3, relies on one count per failover).
#
# Set-up: a real Consul dev agent, three leaseway candidates (--lock-delay 1s) in front of
# three demo apps on 127.0.0.2-4.
#   1. start: every instance has counted exactly 1 (the first primary it learnt)
#   2. SIGKILL the primary: each survivor's counter moves by exactly 1
#   3. the new primary's session destroyed by hand: each instance's counter moves by 1 if
#      another instance took the lease, by 0 if the same one took it back
# Bounded: 120 s.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"

consul_test primary-changes 120
export PYTHONDONTWRITEBYTECODE=1
CL=("$PY" "$DEMO/cluster.py")
jget() { "$PY" -c 'import json,sys; j=json.loads(sys.argv[1]); v=eval(sys.argv[2]); print("" if v is None else v)' "$1" "$2" 2>/dev/null || true; }
LEASE_KEY=leaseway/pc-$$/primary

IPS=(127.0.0.2 127.0.0.3 127.0.0.4)
IDS=(pc-1 pc-2 pc-3)
PUB=$(free_port) APP=$(free_port) ADM=$(free_port)
LW_PID=("" "" "")
SPECS=()
for i in 0 1 2; do SPECS+=("${IPS[$i]}:$ADM@${IPS[$i]}:$PUB"); done
idx_of() {
  local i
  for i in 0 1 2; do [ "${IDS[$i]}" = "$1" ] && { echo "$i"; return 0; }; done
  return 1
}
trap 'rc=$?; set +e; [ $rc -eq 0 ] || show_tails 25 "$DIR"/lw-*.log; (exit $rc); cleanup' EXIT

for i in 0 1 2; do
  "$PY" "$DEMO/app.py" --listen "${IPS[$i]}:$APP" --name "${IDS[$i]}" --db "$DIR/${IDS[$i]}.sqlite" --quiet \
    >"$DIR/app-${IDS[$i]}.log" 2>&1 </dev/null &
  register_pid $!
done
for i in 0 1 2; do
  wait_for "curl -sf -m 1 http://${IPS[$i]}:$APP/healthz" 10 0.1 || die "demo app ${IDS[$i]} did not start"
done
for i in 0 1 2; do
  env -u CONSUL_HTTP_TOKEN -u CONSUL_HTTP_TOKEN_FILE -u CONSUL_HTTP_ADDR \
    "$LEASEWAY_BIN" run --lease consul --lease-key "$LEASE_KEY" --instance "${IDS[$i]}" --region local \
    --listen "${IPS[$i]}:$PUB" --target "${IPS[$i]}:$APP" --admin "${IPS[$i]}:$ADM" \
    --advertise "http://${IPS[$i]}:$PUB" --consul-addr "$CONSUL_HTTP_ADDR" --service "pc-$$" \
    --lease-ttl 10s --lock-delay 1s --drain-timeout 2s >"$DIR/lw-${IDS[$i]}.log" 2>&1 </dev/null &
  LW_PID[i]=$!
  register_pid "${LW_PID[$i]}"
done

changes() {
  curl -sf -m 2 "http://${IPS[$1]}:$ADM/metrics" | awk '/^leaseway_primary_changes_total / { print $2 }'
}
# the session that holds the lease key now ("" if none)
holder_session() {
  curl -sf -m 2 "$CONSUL_HTTP_ADDR/v1/kv/$LEASE_KEY" |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0].get("Session") or "")' 2>/dev/null || true
}

# --- 1. start ---------------------------------------------------------------
out=$("${CL[@]}" wait-primary --timeout 20 "${SPECS[@]}") || die "no agreed primary after start: $out"
P=$(idx_of "$(jget "$out" 'j["primary"]')")
sleep 1 # let every instance settle
for i in 0 1 2; do
  c=$(changes "$i")
  if [ "$c" = 1 ]; then ok "start: ${IDS[$i]} counted 1 change (the first primary, ${IDS[$P]})"; else
    bad "start: ${IDS[$i]} counted '$c' changes, want 1"
  fi
done

# --- 2. SIGKILL of the primary --------------------------------------------------
SURV=()
OTH=()
declare -A BEFORE
for i in 0 1 2; do
  [ "$i" = "$P" ] && continue
  SURV+=("$i")
  OTH+=("${SPECS[$i]}")
  BEFORE[$i]=$(changes "$i")
done
out=$("${CL[@]}" wait-primary --timeout 20 --kill "${LW_PID[$P]}" --sig KILL --not "${IDS[$P]}" --min 2 \
  "${OTH[@]}") || die "no new primary after SIGKILL of ${IDS[$P]}: $out"
Q=$(idx_of "$(jget "$out" 'j["primary"]')")
sleep 1
for i in "${SURV[@]}"; do
  c=$(changes "$i")
  if [ "$c" = $((BEFORE[$i] + 1)) ]; then
    ok "SIGKILL ${IDS[$P]} -> ${IDS[$Q]}: ${IDS[$i]}'s counter moved by 1 (${BEFORE[$i]} -> $c)"
  else
    bad "SIGKILL ${IDS[$P]} -> ${IDS[$Q]}: ${IDS[$i]}'s counter went ${BEFORE[$i]} -> $c, want +1"
  fi
done

# --- 3. the new primary's session destroyed by hand -------------------------
SID=$(holder_session)
[ -n "$SID" ] || die "no session holds $LEASE_KEY"
for i in "${SURV[@]}"; do BEFORE[$i]=$(changes "$i"); done
curl -sf -m 2 -X PUT "$CONSUL_HTTP_ADDR/v1/session/destroy/$SID" >/dev/null || die "session destroy failed"
wait_for "s=\$(holder_session); [ -n \"\$s\" ] && [ \"\$s\" != '$SID' ]" 20 0.1 ||
  die "nobody took the lease after its session $SID was destroyed"
out=$("${CL[@]}" wait-primary --timeout 10 --min 2 "${OTH[@]}") || die "no agreed primary after the destroy: $out"
R=$(idx_of "$(jget "$out" 'j["primary"]')")
want=1
[ "$R" = "$Q" ] && want=0
sleep 1
for i in "${SURV[@]}"; do
  c=$(changes "$i")
  if [ "$c" = $((BEFORE[$i] + want)) ]; then
    ok "session of ${IDS[$Q]} destroyed -> ${IDS[$R]}: ${IDS[$i]}'s counter moved by $want (${BEFORE[$i]} -> $c)"
  else
    bad "session of ${IDS[$Q]} destroyed -> ${IDS[$R]}: ${IDS[$i]}'s counter went ${BEFORE[$i]} -> $c, want +$want"
  fi
done

[ "$FAILS" -eq 0 ] || die "$FAILS checks failed (logs in $DIR)"
echo "PASS cluster_primary_changes"
