#!/usr/bin/env bash
# A lease value edited by hand is repaired by the holder.
#
# An operator (or a script) does a plain `PUT /v1/kv/<key>` naming another instance while the
# holder's session keeps the key. The holder stays primary (its session is on the key), but
# every other instance follows the value: before the fix n2 and n3 routed writes to the
# instance the value named, which is not the primary (held, then 503). The holder now sees
# its session with a value that is not its own and re-sends ?acquire=<session> with its
# value (idempotent for the holder).
#
# Set-up: a real Consul dev agent, three leaseway candidates in front of three demo apps on
# 127.0.0.2-4.
#   1. a primary is agreed
#   2. plain PUT of a value naming another instance (session untouched)
#   3. within 5 s the value names the holder again, under the same session
#   4. a write through every instance answers 200 and lands in the primary's app
#   5. the holder logged the repair once (warn)
# Bounded: 90 s.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"

watchdog 90 "consul_value_repair timed out after 90 s"
[ -x "$LEASEWAY_BIN" ] || die "no leaseway binary at $LEASEWAY_BIN (build first)"

export PYTHONDONTWRITEBYTECODE=1
CL=("$PY" "$DEMO/cluster.py")
FAILS=0
ok() { printf 'ok   - %s\n' "$*"; }
bad() {
  FAILS=$((FAILS + 1))
  printf 'FAIL - %s\n' "$*"
}
jget() { "$PY" -c 'import json,sys; j=json.loads(sys.argv[1]); v=eval(sys.argv[2]); print("" if v is None else v)' "$1" "$2" 2>/dev/null || true; }

DIR=$(mktmp value-repair)
consul_dev_start "$DIR/consul" || die "consul did not start"
LEASE_KEY=leaseway/vr-$$/primary

IPS=(127.0.0.2 127.0.0.3 127.0.0.4)
IDS=(vr-1 vr-2 vr-3)
PUB=$(free_port) APP=$(free_port) ADM=$(free_port)
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
    --advertise "http://${IPS[$i]}:$PUB" --consul-addr "$CONSUL_HTTP_ADDR" --service "vr-$$" \
    --lease-ttl 10s --lock-delay 1s --drain-timeout 2s >"$DIR/lw-${IDS[$i]}.log" 2>&1 </dev/null &
  register_pid $!
done

# "<session> <hostname>" of the lease key now
kv_view() {
  curl -sf -m 2 "$CONSUL_HTTP_ADDR/v1/kv/$LEASE_KEY" | "$PY" -c '
import base64, json, sys
e = json.load(sys.stdin)[0]
try:
    h = json.loads(base64.b64decode(e.get("Value") or "")).get("hostname", "")
except ValueError:
    h = "?"
print(e.get("Session") or "-", h or "-")' 2>/dev/null || true
}

# --- 1. a primary ------------------------------------------------------------
out=$("${CL[@]}" wait-primary --timeout 20 "${SPECS[@]}") || die "no agreed primary after start: $out"
P=$(idx_of "$(jget "$out" 'j["primary"]')")
O=$(((P + 1) % 3))
read -r SID HOST <<<"$(kv_view)"
[ "$HOST" = "${IDS[$P]}" ] || die "the lease value names '$HOST', the agreed primary is ${IDS[$P]}"
ok "primary ${IDS[$P]} holds $LEASE_KEY with session $SID"

# --- 2. a plain PUT names another instance --------------------------------------
r=$(curl -sf -m 2 -X PUT -d "{\"hostname\":\"${IDS[$O]}\",\"advertise-url\":\"http://${IPS[$O]}:$PUB\"}" \
  "$CONSUL_HTTP_ADDR/v1/kv/$LEASE_KEY") || die "plain PUT failed"
[ "$r" = true ] || die "plain PUT answered '$r'"
T0=$(date +%s.%N)

# --- 3. repaired -----------------------------------------------------------------
if wait_for "[ \"\$(kv_view)\" = '$SID ${IDS[$P]}' ]" 5 0.05; then
  ok "the value names ${IDS[$P]} again under session $SID after $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s"
else
  bad "the value was not repaired within 5 s: key is '$(kv_view)', want '$SID ${IDS[$P]}'"
fi

# --- 4. writes through every instance land on the primary ------------------------
out=$("${CL[@]}" wait-primary --timeout 5 "${SPECS[@]}") || bad "instances do not agree on a primary: $out"
for i in 0 1 2; do
  r=$("${CL[@]}" post "http://${IPS[$i]}:$PUB/write" "{\"id\":\"w-${IDS[$i]}\"}")
  code=$(jget "$r" 'j["code"]')
  by=$(jget "$r" 'j["body"]["served_by"]')
  if [ "$code" = 200 ] && [ "$by" = "${IDS[$P]}" ]; then
    ok "POST /write via ${IDS[$i]}: 200, served by the primary ${IDS[$P]}"
  else
    bad "POST /write via ${IDS[$i]}: code '$code' served_by '$by', want 200 by ${IDS[$P]} ($r)"
  fi
done
n=$(curl -sf -m 2 "http://${IPS[$P]}:$APP/writes" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["count"])')
if [ "$n" = 3 ]; then ok "the primary's app has the 3 writes"; else bad "the primary's app has '$n' writes, want 3"; fi

# --- 5. logged once --------------------------------------------------------------
n=$(grep -c 'lease value is not ours' "$DIR/lw-${IDS[$P]}.log" || true)
if [ "$n" = 1 ]; then ok "the holder logged the repair once"; else bad "the holder logged the repair $n times, want 1"; fi
grep -q 'level=warn msg="lease value is not ours' "$DIR/lw-${IDS[$P]}.log" || bad "the repair line is not at warn level: $(grep 'lease value is not ours' "$DIR/lw-${IDS[$P]}.log")"

[ "$FAILS" -eq 0 ] || die "$FAILS checks failed (logs in $DIR)"
echo "PASS consul_value_repair"
