#!/usr/bin/env bash
# Rolling deploy of a schema change behind a real load balancer (issue 5).
#
# HAProxy in front of three leaseway instances (Consul lease, all candidates), each
# supervising its app (`-- app.py`) and health-checked on its admin /health
# (`option httpchk`, the Patroni pattern). All apps share one SQLite file (a stand-in
# for LiteFS replication). A steady read+write load runs through HAProxy while the
# instances are replaced one by one with v2, whose new migration adds a column:
#
#   1. the two replicas -> v2: they start gated (migration pending: the v1 primary
#      does not have it) and take no traffic
#   2. POST /handoff on the v1 primary: a v2 candidate takes the lease, runs the
#      migrate command (its gate closed meanwhile; writes wait for it), opens; the
#      other v2 sees the migration and opens; the old v1 keeps serving as a replica
#   3. the old primary -> v2
#
# Required: zero failed client requests, no request served by a v2 app before its
# migration was applied (app.py reports any as a violation), the migration ran exactly
# once, every acknowledged write is in the database exactly once. Prints FIGURE lines
# (requests, failures, longest stall, p99) for tests/bench/RESULTS.md. Bounded: 240 s.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"
D=$HERE/deploy

watchdog 240 "deploy_rolling timed out"

[ -x "$LEASEWAY_BIN" ] || die "no leaseway binary at $LEASEWAY_BIN (build first)"
command -v haproxy >/dev/null || { echo "SKIP: haproxy not installed (tests/setup.sh)"; exit 77; }
command -v sqlite3 >/dev/null || { echo "SKIP: sqlite3 not installed (tests/setup.sh)"; exit 77; }
consul_bin >/dev/null || exit 77

FAILS=0
PASSES=0
ok() { PASSES=$((PASSES + 1)); printf 'ok   - %s\n' "$*"; }
bad() { FAILS=$((FAILS + 1)); printf 'FAIL - %s\n' "$*"; }
step() { printf '# %s %s\n' "$(date +%H:%M:%S.%3N)" "$*"; }
jget() { "$PY" -c 'import json,sys; j=json.loads(sys.argv[1]); v=eval(sys.argv[2]); print("" if v is None else v)' "$1" "$2" 2>/dev/null; }
figure() { printf 'FIGURE %s=%s\n' "$1" "$2"; }

DIR=$(mktmp deploy-rolling)
consul_dev_start "$DIR/consul" || die "consul did not start"
SERVICE=lwdeploy-$$
LEASE_KEY=leaseway/deploy-$$/primary
DB=$DIR/shared.sqlite
VIOL=$DIR/violations
RUNS=$DIR/migrate-runs
: >"$VIOL"
: >"$RUNS"

# The two releases: v2 adds a migration.
for v in v1 v2; do mkdir -p "$DIR/$v/migrations/20240101000000_init"; done
echo 'CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL, served_by TEXT NOT NULL);' |
  tee "$DIR/v1/migrations/20240101000000_init/migration.sql" >"$DIR/v2/migrations/20240101000000_init/migration.sql"
mkdir -p "$DIR/v2/migrations/20240301000000_add_tag"
echo 'ALTER TABLE notes ADD COLUMN tag TEXT;' >"$DIR/v2/migrations/20240301000000_add_tag/migration.sql"
for v in v1 v2; do echo 'provider = "sqlite"' >"$DIR/$v/migrations/migration_lock.toml"; done

IPS=(127.0.0.2 127.0.0.3 127.0.0.4)
IDS=(d-1 d-2 d-3)
PUB=$(free_port) APP=$(free_port) ADM=$(free_port) HAP=$(free_port) HSTAT=$(free_port)
LW_PID=("" "" "")
VER=("" "" "")

# start_lw I VERSION
start_lw() {
  local i=$1 v=$2
  VER[i]=$v
  "$LEASEWAY_BIN" run --lease consul --lease-key "$LEASE_KEY" --instance "${IDS[$i]}" --region local \
    --listen "${IPS[$i]}:$PUB" --target "${IPS[$i]}:$APP" --admin "${IPS[$i]}:$ADM" \
    --advertise "http://${IPS[$i]}:$PUB" --consul-addr "$CONSUL_HTTP_ADDR" --service "$SERVICE" \
    --lease-ttl 10s --lock-delay 1s --drain-timeout 10s --hold-timeout 8s --workers 1 \
    --migrations "prisma:$DB:$DIR/$v/migrations" \
    --migrate-command "$PY $D/migrate.py $DB $DIR/$v/migrations --sleep 1 --log $RUNS --name ${IDS[$i]}" \
    --upstream-health /healthz \
    -- "$PY" "$D/app.py" --listen "${IPS[$i]}:$APP" --name "${IDS[$i]}-$v" --version "$v" --db "$DB" \
    --violations "$VIOL" >>"$DIR/lw-${IDS[$i]}.log" 2>&1 </dev/null &
  LW_PID[i]=$!
  register_pid "${LW_PID[$i]}"
}
stop_lw() {
  local i=$1
  kill -TERM "${LW_PID[$i]}"
  for _ in $(seq 300); do kill -0 "${LW_PID[$i]}" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "${LW_PID[$i]}" 2>/dev/null; then
    bad "${IDS[$i]} did not exit within 15 s of SIGTERM"
    kill -KILL "${LW_PID[$i]}"
  fi
  wait "${LW_PID[$i]}" 2>/dev/null
  local rc=$?
  [ "$rc" = 0 ] || bad "${IDS[$i]} exited $rc after SIGTERM (want 0)"
}
# replace I VERSION: stop I; once the load balancer has taken it out (as a deploy tool
# waits for deregistration), start the new version on the same address.
replace() {
  stop_lw "$1"
  wait_for "[ \"\$(hap_state $1)\" = DOWN ]" 5 0.05 || bad "HAProxy still has ${IDS[$1]} $(hap_state "$1") after it stopped"
  start_lw "$1" "$2"
}
show_logs() {
  local i
  for i in 0 1 2; do
    echo "--- tail of leaseway ${IDS[$i]} log" >&2
    grep -v component=consul "$DIR/lw-${IDS[$i]}.log" | tail -n 25 >&2 || true
  done
  tail -n 20 "$DIR/haproxy.log" >&2 2>/dev/null || true
}
# shellcheck disable=SC2154 # rc is assigned inside the trap
trap 'rc=$?; [ $rc -eq 0 ] || show_logs; (exit $rc); cleanup' EXIT

status() { curl -s -m 1 "http://${IPS[$1]}:$ADM/status"; }
health() { curl -s -m 1 "http://${IPS[$1]}:$ADM/health"; }
is_open() { [ "$(health "$1")" = ok ]; }
all_open() { local i; for i in 0 1 2; do is_open "$i" || return 1; done; }
primary_idx() {
  local i
  for i in 0 1 2; do [ "$(jget "$(status "$i")" 'j.get("role")')" = primary ] && { echo "$i"; return 0; }; done
  return 1
}
# up_in_haproxy I: HAProxy's own view of the server
hap_state() { curl -s -m 1 "http://127.0.0.1:$HSTAT/stats;csv" | awk -F, -v s="${IDS[$1]}" '$1 == "be" && $2 == s { print $18 }'; }

# --- v1 cluster ---------------------------------------------------------------------------
step "starting three v1 instances"
for i in 0 1 2; do start_lw "$i" v1; done
wait_for all_open 30 0.1 || die "v1 cluster: not all gates open: $(health 0) | $(health 1) | $(health 2)"
P=$(primary_idx) || die "no primary"
ok "v1 cluster up: primary ${IDS[$P]}, migration applied once ($(cat "$RUNS" | tr '\n' ';'))"

cat >"$DIR/haproxy.cfg" <<EOF2
global
    maxconn 2000
    log stdout format raw local0
defaults
    mode http
    log global
    option httplog
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout queue 10s
    # A gated or draining leaseway answers 503 before any app saw the request; a
    # closed listener refuses the connection: both are safe to send elsewhere.
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response 503
    option http-buffer-request
    option http-server-close
frontend fe
    bind 127.0.0.1:$HAP
    default_backend be
backend be
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server inter 200 fastinter 100 downinter 200 fall 1 rise 1
    server ${IDS[0]} ${IPS[0]}:$PUB check addr ${IPS[0]} port $ADM
    server ${IDS[1]} ${IPS[1]}:$PUB check addr ${IPS[1]} port $ADM
    server ${IDS[2]} ${IPS[2]}:$PUB check addr ${IPS[2]} port $ADM
frontend stats
    bind 127.0.0.1:$HSTAT
    stats enable
    stats uri /stats
EOF2
haproxy -db -f "$DIR/haproxy.cfg" >"$DIR/haproxy.log" 2>&1 </dev/null &
register_pid $!
wait_for "[ \"\$(hap_state 0)\$(hap_state 1)\$(hap_state 2)\" = UPUPUP ]" 10 0.1 || die "haproxy: servers not UP: $(hap_state 0) $(hap_state 1) $(hap_state 2)"
ok "HAProxy on 127.0.0.1:$HAP sees all three UP"

# --- load ----------------------------------------------------------------------------------
STOP=$DIR/stop-load
"$PY" "$D/load.py" "http://127.0.0.1:$HAP" --threads 4 --stop-file "$STOP" --out "$DIR/load.json" \
  >"$DIR/load.log" 2>&1 &
LOAD=$!
register_pid "$LOAD"
sleep 2

# --- 1. replicas to v2 ------------------------------------------------------------------------
for i in 0 1 2; do
  [ "$i" = "$P" ] && continue
  step "replacing replica ${IDS[$i]} with v2"
  replace "$i" v2
  if wait_for "[[ \"\$(health $i)\" == *'20240301000000_add_tag not applied'* ]]" 15 0.1; then
    ok "${IDS[$i]} v2 is up and gated: $(health "$i")"
  else
    bad "${IDS[$i]} v2: want the gate closed on the pending migration; /health: $(health "$i")"
  fi
  wait_for "[ \"\$(hap_state $i)\" = DOWN ]" 5 0.1 || bad "HAProxy has ${IDS[$i]} $(hap_state "$i") while gated"
  sleep 2
done
is_open "$P" || bad "the v1 primary closed its gate"

# --- 2. hand the lease to a v2 candidate --------------------------------------------------------
step "handoff from the v1 primary ${IDS[$P]}"
OLD=$P
for _ in 1 2 3; do
  curl -s -m 2 -X POST "http://${IPS[$OLD]}:$ADM/handoff" >/dev/null
  if wait_for "P=\$(primary_idx) && [ \"\${VER[\$P]}\" = v2 ]" 10 0.1; then break; fi
  step "the lease went back to ${IDS[$OLD]}: again"
done
P=$(primary_idx)
if [ "${VER[$P]}" = v2 ]; then ok "v2 instance ${IDS[$P]} holds the lease"; else die "no v2 primary after 3 handoffs"; fi
if wait_for all_open 20 0.1; then
  ok "all gates open: the v2 primary migrated, the other v2 saw it, the old v1 still serves"
else
  bad "after the handoff: $(health 0) | $(health 1) | $(health 2)"
fi
sleep 2

# --- 3. the old primary to v2 --------------------------------------------------------------------
step "replacing the old primary ${IDS[$OLD]} with v2"
replace "$OLD" v2
wait_for "is_open $OLD" 20 0.1 && ok "${IDS[$OLD]} v2 open" || bad "${IDS[$OLD]} v2: $(health "$OLD")"
wait_for "[ \"\$(hap_state 0)\$(hap_state 1)\$(hap_state 2)\" = UPUPUP ]" 5 0.1 || bad "haproxy: not all UP at the end"
sleep 3
touch "$STOP"
wait "$LOAD"

# --- verdict -----------------------------------------------------------------------------------
R=$(cat "$DIR/load.json")
reqs=$(jget "$R" 'j["requests"]')
fails=$(jget "$R" 'j["failures"]')
figure deploy_requests "$reqs"
figure deploy_reads "$(jget "$R" 'j["reads"]')"
figure deploy_writes "$(jget "$R" 'j["writes"]')"
figure deploy_failures "$fails"
figure deploy_longest_stall_ms "$(jget "$R" 'j["longest_stall_ms"]')"
figure deploy_latency_p99_ms "$(jget "$R" 'j["latency_ms"]["p99"]')"
figure deploy_latency_max_ms "$(jget "$R" 'j["latency_ms"]["max"]')"
figure deploy_duration_s "$(jget "$R" 'j["duration_s"]')"
echo "slowest requests: $(jget "$R" 'j["slow_samples"][:5]')"
awk '$5 ~ /^[0-9-]+\/[0-9-]+\/[0-9-]+\/[0-9-]+\/[0-9]+$/ { split($5, t, "/"); if (t[5] > 2000) print "slow at HAProxy: " $0 }' \
  "$DIR/haproxy.log" | head -5
echo "reads served by version: $(jget "$R" 'j["versions"]')"
if [ "$fails" = 0 ] && [ "$reqs" -gt 100 ]; then
  ok "zero failed client requests out of $reqs"
else
  bad "$fails of $reqs client requests failed; first ones: $(jget "$R" 'j["failure_samples"][:8]')"
  echo "--- HAProxy log lines of failed requests (server, retries in the termination/retry fields):"
  grep -E '" (5[0-9][0-9]|4[0-9][0-9]) ' "$DIR/haproxy.log" | grep -v ' 409 ' | head -10
fi
if [ -s "$VIOL" ]; then bad "v2 apps served before their migration: $(head -5 "$VIOL")"; else ok "no request reached a v2 app before its migration"; fi
applied=$(grep -c 'add_tag' "$RUNS")
[ "$applied" = 1 ] && ok "the v2 migration was applied exactly once ($(tr '\n' ';' <"$RUNS"))" || bad "v2 migration applied $applied times: $(tr '\n' ';' <"$RUNS")"
"$PY" - "$DB" "$DIR/load.json" <<'PYEOF' && ok "every acknowledged write is in the database exactly once" || bad "acknowledged writes missing or duplicated"
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
ids = {r[0] for r in db.execute("SELECT id FROM notes")}
w = json.load(open(sys.argv[2]))["written"]
missing = [x for x in w if x not in ids]
print("writes acknowledged: %d, in the database: %d, missing: %d" % (len(w), len(ids), len(missing)))
sys.exit(1 if missing or len(set(w)) != len(w) else 0)
PYEOF
n2=$(jget "$R" 'j["versions"].get("v2", 0)')
[ "${n2:-0}" -gt 0 ] && ok "v2 apps served $n2 reads after their migration" || bad "no read was served by v2"

echo "deploy_rolling: $PASSES passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
