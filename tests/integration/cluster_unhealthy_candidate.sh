#!/usr/bin/env bash
# A candidate whose app is not healthy (--upstream-health failing) does not take the lease; one
# whose gate is closed only for pending migrations does (the holder runs --migrate-command
# before its gate opens).
#
# The bug: healthy primary A, candidate B whose app is down (gate closed, "app not healthy").
# `POST /handoff` on A (or SIGTERM): B took the lease and kept it, so every write got 503 after
# --hold-timeout although A was healthy and back in the race after lock-delay + 1 s.
#
# Set-up: a real Consul dev agent; leaseway A, B, C on 127.0.0.2-4 (candidates, --upstream-health
# /stats, --hold-timeout 2s), each in front of an app of its own on 127.0.0.1 (upstream.py).
#   1. A primary; B starts with its app not running: gate closed "app not healthy", B stays out
#      of the race (lease state "sidelined" in its log), role replica
#   2. POST /handoff on A: B is never primary; A is primary again within 5 s; a write through A
#      answers 200
#   3. C starts with --migrations command:<marker exists> (pending) and --migrate-command
#      <create the marker>; SIGTERM A: C (gate closed for migrations only) takes the lease, B
#      never does; C runs the migrate command, its gate opens, a write through C lands in C's app
#   4. B's app starts: B's gate opens and B is back in the race (sidelined -> standby); SIGTERM
#      C: B takes the lease; a write through B answers 200
#   5. B's app stops while B is primary: its gate closes ("app not healthy") but B keeps the
#      lease (the documented choice: no release on a failing health check)
# Bounded: 150 s.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"

consul_test cluster_unhealthy_candidate 150
trap 'rc=$?; set +e; [ $rc -eq 0 ] || show_tails 30 "$DIR"/lw-*.log; (exit $rc); cleanup' EXIT

KEY=leaseway/uc-$$/primary SVC=uc-$$
PUB=$(free_port) ADM=$(free_port)
declare -A IP=([A]=127.0.0.2 [B]=127.0.0.3 [C]=127.0.0.4) APP=() LW=() APP_PID=()
for x in A B C; do APP[$x]=$(free_port); done

start_app() {
  "$PY" "$HERE/../lib/upstream.py" --port "${APP[$1]}" --name "$1-app" >>"$DIR/app-$1.log" 2>&1 </dev/null &
  APP_PID[$1]=$!
  register_pid "${APP_PID[$1]}"
  wait_for "curl -sf -m 1 http://127.0.0.1:${APP[$1]}/stats" 10 0.1 || die "app $1 did not start"
}
start_lw() { # ID [flags]
  local id=$1
  shift
  env -u CONSUL_HTTP_TOKEN -u CONSUL_HTTP_TOKEN_FILE -u CONSUL_HTTP_ADDR \
    "$LEASEWAY_BIN" run --instance "$id" --listen "${IP[$id]}:$PUB" --target "127.0.0.1:${APP[$id]}" \
    --admin "${IP[$id]}:$ADM" --workers 1 --advertise "http://${IP[$id]}:$PUB" --consul-addr "$CONSUL_HTTP_ADDR" \
    --service "$SVC" --lease-key "$KEY" --lease-ttl 10s --lock-delay 1s --hold-timeout 2s --drain-timeout 2s \
    --upstream-health /stats "$@" >>"$DIR/lw-$id.log" 2>&1 </dev/null &
  LW[$id]=$!
  register_pid "${LW[$id]}"
  wait_for "curl -sf -m 1 http://${IP[$id]}:$ADM/status >/dev/null" 10 0.1 || die "leaseway $id did not start"
}
status() { curl -s -m 2 "http://${IP[$1]}:$ADM/status" | "$PY" -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2" 2>/dev/null || true; }
role() { status "$1" 'j["role"]'; }
write() { curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST -d x "http://${IP[$1]}:$PUB/upload" || true; }
uploads() { curl -s -m 2 "http://127.0.0.1:${APP[$1]}/stats" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["paths"].get("/upload", 0))' 2>/dev/null || echo 0; }
# watch_not_primary ID SECONDS UNTIL — sample ID's role every 0.1 s until UNTIL holds (at most
# SECONDS); fails if ID was ever primary meanwhile. Sets WAITED to whether UNTIL came true.
watch_not_primary() {
  local id=$1 n=$(($2 * 10)) until=$3 seen=0
  WAITED=0
  while [ "$n" -gt 0 ]; do
    [ "$(role "$id")" = primary ] && seen=1
    if eval "$until"; then
      WAITED=1
      break
    fi
    sleep 0.1
    n=$((n - 1))
  done
  [ "$seen" -eq 0 ]
}

# --- 1. A primary; B unhealthy stays out ------------------------------------
start_app A
start_app C
start_lw A
wait_for '[ "$(role A)" = primary ]' 15 0.1 || die "A did not become primary"
ok "A is primary"
start_lw B
if wait_for 'status B "j[\"gate\"][\"reason\"]" | grep -q "app not healthy"' 10 0.1; then
  ok "B's gate is closed: $(status B 'j["gate"]["reason"]')"
else
  bad "B's gate: $(status B 'j["gate"]')"
fi
if wait_for 'grep -q "to=sidelined" "$DIR/lw-B.log"' 10 0.1; then
  ok "B stays out of the race (lease state sidelined)"
else
  bad "B did not step aside: $(grep 'lease state' "$DIR/lw-B.log" | tail -n 3 | tr '\n' ' ')"
fi
[ "$(role B)" = replica ] && ok "B is a replica" || bad "B's role is $(role B)"

# --- 2. handoff: A takes the lease back ------------------------------------
IDX0=$(status A 'j["lease"]["index"]')
curl -s -m 2 -X POST "http://${IP[A]}:$ADM/handoff" >/dev/null
if watch_not_primary B 8 '[ "$(role A)" = primary ] && [ "$(status A "j[\"lease\"][\"index\"]")" != "$IDX0" ]' &&
  [ "$WAITED" -eq 1 ]; then
  ok "after the handoff A is primary again, B never was"
else
  bad "after the handoff: A=$(role A) B=$(role B) (B primary at some point, or A not back within 8 s)"
fi
code=$(write A)
[ "$code" = 200 ] && ok "a write through A answers 200" || bad "a write through A answers $code"

# --- 3. C: gate closed for pending migrations only; SIGTERM A ---------------
start_lw C --migrations "command:test -f $DIR/c-migrated" --migrate-command "touch $DIR/c-migrated"
if wait_for 'status C "j[\"gate\"][\"reason\"]" | grep -q "migrations pending"' 10 0.1; then
  ok "C's gate is closed: $(status C 'j["gate"]["reason"]')"
else
  bad "C's gate: $(status C 'j["gate"]')"
fi
wait_for '[ "$(role C)" = replica ]' 10 0.1 || bad "C is not a replica: $(role C)"
kill -TERM "${LW[A]}"
if watch_not_primary B 8 '[ "$(role C)" = primary ]' && [ "$WAITED" -eq 1 ]; then
  ok "SIGTERM A: C (migrations pending) took the lease, B did not"
else
  bad "SIGTERM A: B=$(role B) C=$(role C)"
fi
kill_wait "${LW[A]}" 10
if wait_for '[ "$(status C "j[\"gate\"][\"state\"]")" = open ]' 15 0.1; then
  ok "C ran its migrate command; its gate is open"
else
  bad "C's gate: $(status C 'j["gate"]')"
fi
before=$(uploads C)
code=$(write C)
after=$(uploads C)
if [ "$code" = 200 ] && [ "$after" -gt "$before" ]; then ok "a write through C lands in C's app"; else bad "a write through C: $code (C's app uploads $before -> $after)"; fi

# --- 4. B's app comes up: B is back in the race -----------------------------
start_app B
if wait_for '[ "$(status B "j[\"gate\"][\"state\"]")" = open ] && grep -q "from=sidelined to=standby" "$DIR/lw-B.log"' 10 0.1; then
  ok "B's app is healthy: gate open, B back in the race"
else
  bad "B's gate: $(status B 'j["gate"]'); $(grep 'lease state' "$DIR/lw-B.log" | tail -n 2 | tr '\n' ' ')"
fi
kill -TERM "${LW[C]}"
if wait_for '[ "$(role B)" = primary ]' 8 0.1; then
  ok "SIGTERM C: B took the lease"
else
  bad "SIGTERM C: B is $(role B)"
fi
kill_wait "${LW[C]}" 10
code=$(write B)
[ "$code" = 200 ] && ok "a write through B answers 200" || bad "a write through B answers $code"

# --- 5. the primary's app fails: it keeps the lease -------------------------
kill_wait "${APP_PID[B]}" 5
if wait_for 'status B "j[\"gate\"][\"reason\"]" | grep -q "app not healthy"' 15 0.1; then
  ok "B's app is down: its gate closed"
else
  bad "B's gate: $(status B 'j["gate"]')"
fi
sleep 2
[ "$(role B)" = primary ] && ok "B keeps the lease while its app is down" || bad "B's role is $(role B)"

if [ "$FAILS" -eq 0 ]; then
  echo "PASS cluster_unhealthy_candidate ($PASSES checks)"
  exit 0
fi
echo "FAIL cluster_unhealthy_candidate: $FAILS failed, $PASSES passed"
exit 1
