#!/usr/bin/env bash
# --migrate-command on a real Consul dev agent (SPEC §4): three candidates,
# each with a migrate command that appends "<instance> <time>" to one shared
# file and takes 1 s.
#
#   1. start together -> exactly one run, by the instance that holds the lease;
#      while it runs that primary's gate is closed ("migrate command ...
#      running"); afterwards every gate is open and the replicas never ran it
#   2. SIGTERM the primary -> the new primary runs it once more (2 lines), and
#      its gate opens only after that run
#   3. POST /handoff -> the next tenure runs it again (3 lines); nobody else does
#   4. a --migrate-command that fails keeps the new primary's gate closed with
#      the command's last output line as the reason, and is retried with backoff
# Bounded: 150 s.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"
CL=("$PY" "$DEMO/cluster.py")

watchdog 150 "health_migrate_once timed out"

[ -x "$LEASEWAY_BIN" ] || die "no leaseway binary at $LEASEWAY_BIN (build first)"
consul_bin >/dev/null || exit 77

FAILS=0
PASSES=0
ok() { PASSES=$((PASSES + 1)); printf 'ok   - %s\n' "$*"; }
bad() { FAILS=$((FAILS + 1)); printf 'FAIL - %s\n' "$*"; }
jget() { "$PY" -c 'import json,sys; j=json.loads(sys.argv[1]); v=eval(sys.argv[2]); print("" if v is None else v)' "$1" "$2" 2>/dev/null; }

DIR=$(mktmp migrate-once)
consul_dev_start "$DIR/consul" || die "consul did not start"
SERVICE=lwmig-$$
LEASE_KEY=leaseway/mig-$$/primary
RUNS=$DIR/runs.log
: >"$RUNS"

IPS=(127.0.0.2 127.0.0.3 127.0.0.4)
IDS=(m-1 m-2 m-3)
PUB=$(free_port) APP=$(free_port) ADM=$(free_port)
LW_PID=("" "" "")
SPECS=()
for i in 0 1 2; do SPECS+=("${IPS[$i]}:$ADM@${IPS[$i]}:$PUB"); done
idx_of() { local i; for i in 0 1 2; do [ "${IDS[$i]}" = "$1" ] && { echo "$i"; return 0; }; done; return 1; }
others() { local i; for i in 0 1 2; do [ "$i" = "$1" ] || echo "${SPECS[$i]}"; done; }

for i in 0 1 2; do
  "$PY" "$DEMO/app.py" --listen "${IPS[$i]}:$APP" --name "${IDS[$i]}" --db "$DIR/${IDS[$i]}.sqlite" \
    >>"$DIR/app-${IDS[$i]}.log" 2>&1 </dev/null &
  register_pid $!
done
for i in 0 1 2; do
  wait_for "curl -sf -m 1 http://${IPS[$i]}:$APP/healthz" 10 0.1 || die "demo app ${IDS[$i]} did not start"
done

# start_lw I [MIGRATE_COMMAND]
start_lw() {
  local i=$1 cmd=${2:-"echo ${IDS[$1]} \$(date +%s%N) >> $RUNS; echo migrating ${IDS[$1]}; sleep 1"}
  "$LEASEWAY_BIN" run --lease consul --lease-key "$LEASE_KEY" --instance "${IDS[$i]}" --region local \
    --listen "${IPS[$i]}:$PUB" --target "${IPS[$i]}:$APP" --admin "${IPS[$i]}:$ADM" \
    --advertise "http://${IPS[$i]}:$PUB" --consul-addr "$CONSUL_HTTP_ADDR" --service "$SERVICE" \
    --lease-ttl 10s --lock-delay 1s --drain-timeout 5s --migrate-command "$cmd" \
    >>"$DIR/lw-${IDS[$i]}.log" 2>&1 </dev/null &
  LW_PID[i]=$!
  register_pid "${LW_PID[$i]}"
}
show_logs() {
  show_tails 30 "$DIR"/lw-*.log
  echo "--- runs" >&2
  cat "$RUNS" >&2
}
# shellcheck disable=SC2154 # rc is assigned inside the trap
trap 'rc=$?; [ $rc -eq 0 ] || show_logs; (exit $rc); cleanup' EXIT

health() { curl -s -m 1 "http://${IPS[$1]}:$ADM/health"; }
health_code() { curl -s -o /dev/null -m 1 -w '%{http_code}' "http://${IPS[$1]}:$ADM/health"; }
all_open() { local i; for i in "$@"; do [ "$(health_code "$i")" = 200 ] || return 1; done; }
runs() { grep -c . "$RUNS"; }
# gated_during_run I: in I's log, after its last "migrate command started", the gate was
# closed for the run and opened only after "migrate command succeeded".
gated_during_run() {
  awk '/msg="migrate command started"/ { s = NR; run = 0; ok = 0; open_before = 0 }
       s && /msg="gate changed" gate=closed reason="migrate command has not succeeded yet: running"/ { run = 1 }
       s && /msg="migrate command succeeded"/ { ok = NR }
       s && /msg="gate changed" gate=open/ { if (!ok) open_before = 1; else opened = NR }
       END { exit !(s && run && ok && opened > ok && !open_before) }' "$DIR/lw-${IDS[$1]}.log"
}
# wait_open I SECONDS
wait_open() { wait_for "[ \"\$(health_code $1)\" = 200 ]" "$2" 0.05; }
# primary_among I...: the instance the given ones agree is primary (by /status), within 15 s.
primary_among() {
  local i st p n ids
  for _ in $(seq 150); do
    p="" n=0 ids=""
    for i in "$@"; do
      st=$(curl -s -m 1 "http://${IPS[$i]}:$ADM/status") || st='{}'
      [ "$(jget "$st" 'j.get("role")')" = primary ] && { p=$i; n=$((n + 1)); }
      ids="$ids $(jget "$st" '(j.get("primary") or {}).get("id")')"
    done
    if [ "$n" = 1 ] && [ -z "$(tr ' ' '\n' <<<"$ids" | grep -v "^${IDS[$p]}\$" | grep .)" ]; then
      echo "$p"
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# --- 1. start together ----------------------------------------------------------------
for i in 0 1 2; do start_lw "$i"; done
out=$("${CL[@]}" wait-primary --timeout 15 "${SPECS[@]}" 2>&1) || die "no agreed primary: $out"
P=$(idx_of "$(jget "$out" 'j["primary"]')")
wait_open "$P" 10
if gated_during_run "$P"; then
  ok "start: primary ${IDS[$P]} gated while its migrate command ran, open only after it succeeded"
else
  bad "start: primary ${IDS[$P]}: gate not closed for the run / opened before it succeeded"
fi
if wait_for "all_open 0 1 2" 10 0.1; then ok "start: all three gates open"; else bad "start: not all gates open: $(health 0) | $(health 1) | $(health 2)"; fi
sleep 2 # replicas would have run it by now if they were going to
if [ "$(runs)" = 1 ] && [ "$(awk '{print $1}' "$RUNS")" = "${IDS[$P]}" ]; then
  ok "start: the migrate command ran exactly once, on the primary ${IDS[$P]}"
else
  bad "start: want one run by ${IDS[$P]}; runs: $(tr '\n' ';' <"$RUNS")"
fi
grep -q 'msg="migrate command output" line="migrating' "$DIR/lw-${IDS[$P]}.log" &&
  ok "start: the command's output is in the primary's log" || bad "start: no command output in the log"

# --- 2. failover -----------------------------------------------------------------------
OLD=$P
mapfile -t OTH < <(others "$OLD")
out=$("${CL[@]}" wait-primary --timeout 15 --kill "${LW_PID[$OLD]}" --sig TERM --not "${IDS[$OLD]}" --min 2 "${OTH[@]}" 2>&1) ||
  die "failover: no new primary: $out"
P=$(idx_of "$(jget "$out" 'j["primary"]')")
wait_open "$P" 10
if gated_during_run "$P"; then
  ok "failover: new primary ${IDS[$P]} (open as a replica before) closed its gate for the run, then opened"
else
  bad "failover: new primary ${IDS[$P]}: gate not closed for the run / opened before it succeeded"
fi
wait "${LW_PID[$OLD]}" 2>/dev/null
sleep 2
if [ "$(runs)" = 2 ] && [ "$(tail -n 1 "$RUNS" | awk '{print $1}')" = "${IDS[$P]}" ]; then
  ok "failover: ran once more, on the new primary ${IDS[$P]} (2 runs in all)"
else
  bad "failover: want 2 runs, the second by ${IDS[$P]}; runs: $(tr '\n' ';' <"$RUNS")"
fi
start_lw "$OLD"
wait_for "all_open 0 1 2" 15 0.1 || bad "restarted ${IDS[$OLD]}: not all gates open"
sleep 1
[ "$(runs)" = 2 ] && ok "restarted ${IDS[$OLD]} as a replica: no run" || bad "restart: runs: $(tr '\n' ';' <"$RUNS")"

# --- 3. planned handoff: a new tenure -------------------------------------------------
out=$("${CL[@]}" wait-primary --timeout 15 --handoff "${SPECS[@]}" 2>&1) || die "handoff: $out"
NEW=$(idx_of "$(jget "$out" 'j["primary"]')")
wait_open "$NEW" 10
wait_for "all_open 0 1 2" 10 0.1 || bad "handoff: not all gates open"
sleep 2
if [ "$(runs)" = 3 ] && [ "$(tail -n 1 "$RUNS" | awk '{print $1}')" = "${IDS[$NEW]}" ]; then
  ok "handoff: the next primary ${IDS[$NEW]} ran it once (3 runs in all)"
else
  bad "handoff: want 3 runs, the last by ${IDS[$NEW]}; runs: $(tr '\n' ';' <"$RUNS")"
fi

# --- 4. a failing migrate command keeps the gate closed and is retried --------------------
# Restart every replica with a command that fails, then hand the lease to one of them.
FAILLOG=$DIR/fail.log
for i in 0 1 2; do
  [ "$i" = "$NEW" ] && continue
  kill -TERM "${LW_PID[$i]}"
  wait "${LW_PID[$i]}" 2>/dev/null
  start_lw "$i" "echo try >> $FAILLOG; echo 'error: P3018 migration failed to apply'; exit 1"
done
wait_for "all_open 0 1 2" 15 0.1 || bad "restarted replicas: not all gates open"
kill -TERM "${LW_PID[$NEW]}"
mapfile -t OTHI < <(for i in 0 1 2; do [ "$i" = "$NEW" ] || echo "$i"; done)
F=$(primary_among "${OTHI[@]}") || die "failing: no new primary among ${OTHI[*]}"
sleep 4
h=$(health "$F")
if [[ $h == *"migrate command has not succeeded yet: failed (exit code 1: error: P3018 migration failed to apply), retry in "* ]]; then
  ok "failing command: ${IDS[$F]}'s gate stays closed with the command's last line: $h"
else
  bad "failing command: ${IDS[$F]} /health: $h"
fi
n=$(grep -c . "$FAILLOG")
# 1 s, 2 s, 4 s of backoff: 3 tries in the first ~4 s, not one per second or more
if [ "$n" -ge 2 ] && [ "$n" -le 4 ]; then ok "failing command: retried with backoff ($n tries in ~4 s)"; else bad "failing command: $n tries in ~4 s"; fi
[ "$(runs)" = 3 ] || bad "failing: the successful command ran again somewhere: $(tr '\n' ';' <"$RUNS")"

echo "health_migrate_once: $PASSES passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
