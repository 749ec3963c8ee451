#!/usr/bin/env bash
# deploy/local-cluster.sh — a three-instance leaseway cluster on this machine.
#
#   deploy/local-cluster.sh            start, print what to curl, stay in the
#                                      foreground until Ctrl-C (then stop all)
#   deploy/local-cluster.sh --detach   start and leave it running
#   deploy/local-cluster.sh --stop     stop a detached cluster
#   deploy/local-cluster.sh --status   is it running? who is primary?
#   deploy/local-cluster.sh --revive ID  restart one instance's leaseway (after
#                                      you killed it to watch a failover)
#   deploy/local-cluster.sh --smoke    start, run the printed curls, check the
#                                      answers, stop; exit 0 only if all passed
#   deploy/local-cluster.sh --litefs [--smoke]
#                                      the same with real LiteFS under the apps:
#                                      three LiteFS nodes (FUSE mounts, leased
#                                      through Consul), the demo app's database
#                                      on each mount, leaseway in watch mode in
#                                      front (runs tests/litefs-cluster.sh; in
#                                      the foreground only)
#
# What runs (Linux answers on all of 127.0.0.0/8 without any set-up):
#   Consul dev agent   127.0.0.1:8500 (HTTP), 8600 (DNS), ... (other free ports
#                      if those are taken)
#   app-1/2/3          127.0.0.2/3/4 — demo app :3000, leaseway :8080 public,
#                      :9901 admin (free ports if those are taken)
# Each demo app (deploy/demo-app/app.py) keeps its own SQLite file: without
# --litefs there is no LiteFS, so a write is stored only where it was served — with leaseway
# in front, on the primary.
#
# State (pids, logs, databases) lives in
#   ${LEASEWAY_CLUSTER_DIR:-${XDG_RUNTIME_DIR:-/tmp}/leaseway-cluster}
# (--smoke uses a fresh directory of its own next to it unless
# LEASEWAY_CLUSTER_DIR is set; removed on success).
#
# Environment: LEASEWAY_BIN (skip the cmake build and use this binary),
# LEASEWAY_CONSUL_BIN, LEASEWAY_SKIP_SETUP=1 (do not run tests/setup.sh),
# LEASEWAY_CLUSTER_DIR, PYTHON.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO="$ROOT/deploy/demo-app"
PY=${PYTHON:-python3}
[ -x /usr/bin/python3 ] && [ -z "${PYTHON:-}" ] && PY=/usr/bin/python3 # Debian's has sqlite3
SELF="$0"

IPS=(127.0.0.2 127.0.0.3 127.0.0.4)
IDS=(app-1 app-2 app-3)
SERVICE=demo
LEASE_KEY=leaseway/demo/primary
STATE_ROOT=${XDG_RUNTIME_DIR:-/tmp}
DEFAULT_STATE=$STATE_ROOT/leaseway-cluster
STATE=${LEASEWAY_CLUSTER_DIR:-$DEFAULT_STATE}

MODE=foreground
REVIVE=
LITEFS=0
usage() { sed -n '2,/^set -e/p' "$SELF" | sed -e '$d' -e 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --detach) MODE=detach ;;
    --stop) MODE=stop ;;
    --status) MODE=status ;;
    --smoke) MODE=smoke ;;
    --litefs) LITEFS=1 ;;
    --revive) MODE=revive; REVIVE=${2:?--revive needs an instance id (app-1, app-2, app-3)}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "local-cluster: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf 'local-cluster: %s\n' "$*" >&2; }
fatal() { say "ERROR: $*"; exit 1; }

if [ "$LITEFS" = 1 ]; then
  case $MODE in
    foreground) exec bash "$ROOT/tests/litefs-cluster.sh" ;;
    smoke) exec bash "$ROOT/tests/litefs-cluster.sh" --smoke ;;
    *) fatal "--litefs runs in the foreground (or with --smoke) only" ;;
  esac
fi
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# --- process bookkeeping ---------------------------------------------------
# Each process NAME has $STATE/pids/NAME.pid, NAME.marker (a string its command
# line must contain, so a recycled pid is never signalled) and NAME.cmd (its
# shell-quoted command line, for reference). Logs: $STATE/logs/NAME.log.

# launch NAME MARKER CMD... — start CMD in its own session (Ctrl-C in the
# terminal reaches only this script, which then stops everything in order).
launch() {
  local name=$1 marker=$2
  shift 2
  mkdir -p "$STATE/pids" "$STATE/logs"
  printf '%q ' "$@" >"$STATE/pids/$name.cmd"
  printf '%s\n' "$marker" >"$STATE/pids/$name.marker"
  (exec setsid "$@") </dev/null >>"$STATE/logs/$name.log" 2>&1 &
  echo $! >"$STATE/pids/$name.pid"
}

# alive_pid NAME — print the pid of NAME if it is running (and is still ours).
alive_pid() {
  local f=$STATE/pids/$1 pid marker
  [ -f "$f.pid" ] || return 1
  pid=$(cat "$f.pid")
  marker=$(cat "$f.marker" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker" || return 1
  echo "$pid"
}

# stop_group TIMEOUT_S NAME... — SIGTERM them all, wait, SIGKILL leftovers.
stop_group() {
  local timeout=$1 n pid pids=() deadline
  shift
  for n in "$@"; do
    if pid=$(alive_pid "$n"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  deadline=$(($(now_ms) + timeout * 1000))
  while [ "$(now_ms)" -lt "$deadline" ]; do
    local left=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
    [ $left = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      say "pid $pid did not stop within ${timeout} s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}

all_names() { echo consul "${IDS[@]/#/app-db-}" "${IDS[@]/#/leaseway-}"; }
any_alive() {
  local n
  for n in $(all_names); do alive_pid "$n" >/dev/null && return 0; done
  return 1
}

# stop_all — leaseways first (they release the lease and deregister while
# Consul is still there), then the apps, then Consul.
stop_all() {
  stop_group 15 "${IDS[@]/#/leaseway-}"
  stop_group 5 "${IDS[@]/#/app-db-}"
  stop_group 10 consul
  rm -f "$STATE"/pids/*.pid
}

# --- ports -----------------------------------------------------------------
# pick_port PREFERRED PROTO HOST... — PREFERRED if it can be bound on every
# HOST (tcp, or tcp+udp with PROTO=both), else a free port that can.
pick_port() {
  "$PY" - "$@" <<'EOF'
import socket, sys
pref, proto, hosts = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
kinds = [socket.SOCK_STREAM] + ([socket.SOCK_DGRAM] if proto == "both" else [])
def ok(port):
    socks = []
    try:
        for h in hosts:
            for k in kinds:
                s = socket.socket(socket.AF_INET, k)
                socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((h, port))
                if k == socket.SOCK_STREAM:
                    s.listen(1)
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()
if ok(pref):
    print(pref); sys.exit(0)
for _ in range(200):
    s = socket.socket(); s.bind((hosts[0], 0)); p = s.getsockname()[1]; s.close()
    if ok(p):
        print(p); sys.exit(0)
sys.exit("no free port")
EOF
}

# --- build -----------------------------------------------------------------
prepare() {
  if [ "${LEASEWAY_SKIP_SETUP:-0}" != 1 ]; then
    say "tests/setup.sh (packages, Consul build: minutes the first time, then instant)"
    bash "$ROOT/tests/setup.sh" >"$STATE/logs/setup.log" 2>&1 ||
      { tail -n 20 "$STATE/logs/setup.log" >&2; fatal "tests/setup.sh failed (log: $STATE/logs/setup.log)"; }
  fi
  CONSUL=${LEASEWAY_CONSUL_BIN:-${LEASEWAY_CACHE:-$HOME/.cache/leaseway}/bin/consul}
  [ -x "$CONSUL" ] || fatal "no Consul binary at $CONSUL (run: bash tests/setup.sh)"

  if [ -n "${LEASEWAY_BIN:-}" ]; then
    BIN=$LEASEWAY_BIN
  else
    BIN=$ROOT/build/leaseway
    say "building leaseway (cmake, build/)"
    if ! { [ -f "$ROOT/build/CMakeCache.txt" ] || cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo; } \
      >"$STATE/logs/build.log" 2>&1 ||
      ! cmake --build "$ROOT/build" -j "${JOBS:-2}" --target leaseway >>"$STATE/logs/build.log" 2>&1; then
      tail -n 30 "$STATE/logs/build.log" >&2
      fatal "build failed (log: $STATE/logs/build.log)"
    fi
  fi
  [ -x "$BIN" ] || fatal "no leaseway binary at $BIN"
}

# --- start -----------------------------------------------------------------
write_env() { # the addresses, for --stop/--status/--revive and for humans
  {
    printf 'CONSUL_ADDR=%q\n' "$CONSUL_ADDR"
    printf 'CONSUL_DNS_PORT=%q\n' "$DNS_PORT"
    printf 'PUBLIC_PORT=%q\nAPP_PORT=%q\nADMIN_PORT=%q\n' "$PUBLIC_PORT" "$APP_PORT" "$ADMIN_PORT"
    printf 'BIN=%q\n' "$BIN"
  } >"$STATE/cluster.env"
}

# SPECS: the instances as cluster.py names them, ADMIN@PUBLIC.
set_specs() { local i; SPECS=(); for i in 0 1 2; do SPECS+=("${IPS[$i]}:$ADMIN_PORT@${IPS[$i]}:$PUBLIC_PORT"); done; }

leaseway_cmd() { # index — sets LW_CMD
  local i=$1 ip=${IPS[$1]}
  LW_CMD=("$BIN" run --lease consul --lease-key "$LEASE_KEY" --instance "${IDS[$i]}" --region local
    --listen "$ip:$PUBLIC_PORT" --target "$ip:$APP_PORT" --admin "$ip:$ADMIN_PORT"
    --advertise "http://$ip:$PUBLIC_PORT" --consul-addr "$CONSUL_ADDR" --service "$SERVICE"
    --lease-ttl 10s --lock-delay 1s --drain-timeout 5s)
}

start_leaseway() { # index
  leaseway_cmd "$1"
  launch "leaseway-${IDS[$1]}" "--admin ${IPS[$1]}:$ADMIN_PORT" "${LW_CMD[@]}"
}

start_all() {
  local i http dns server lan wan node
  http=$(pick_port 8500 tcp 127.0.0.1)
  dns=$(pick_port 8600 both 127.0.0.1)
  server=$(pick_port 8300 tcp 127.0.0.1)
  lan=$(pick_port 8301 both 127.0.0.1)
  wan=$(pick_port 8302 both 127.0.0.1)
  PUBLIC_PORT=$(pick_port 8080 tcp "${IPS[@]}")
  APP_PORT=$(pick_port 3000 tcp "${IPS[@]}")
  ADMIN_PORT=$(pick_port 9901 tcp "${IPS[@]}")
  if [ "$ADMIN_PORT" = "$PUBLIC_PORT" ] || [ "$APP_PORT" = "$PUBLIC_PORT" ] || [ "$APP_PORT" = "$ADMIN_PORT" ]; then
    fatal "port picking collided ($PUBLIC_PORT/$APP_PORT/$ADMIN_PORT); try again"
  fi
  CONSUL_ADDR=http://127.0.0.1:$http
  DNS_PORT=$dns
  node="leaseway-local-$(basename "$STATE")"
  write_env
  set_specs

  say "Consul dev agent on $CONSUL_ADDR (log: $STATE/logs/consul.log)"
  launch consul "-node $node" "$CONSUL" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -node "$node" \
    -http-port "$http" -dns-port "$dns" -server-port "$server" -serf-lan-port "$lan" -serf-wan-port "$wan" \
    -grpc-port=-1 -hcl 'ports { grpc_tls = -1 }' -hcl 'session_ttl_min = "1s"' -hcl 'disable_update_check = true'
  local deadline=$(($(now_ms) + 30000))
  until [ "$(curl -s -m 2 -X PUT -d ok "$CONSUL_ADDR/v1/kv/_leaseway/ready" 2>/dev/null)" = true ]; do
    alive_pid consul >/dev/null || { tail -n 20 "$STATE/logs/consul.log" >&2; fatal "Consul exited"; }
    [ "$(now_ms)" -lt "$deadline" ] || { tail -n 20 "$STATE/logs/consul.log" >&2; fatal "Consul not ready after 30 s"; }
    sleep 0.2
  done
  curl -s -m 2 -X DELETE "$CONSUL_ADDR/v1/kv/_leaseway/ready" >/dev/null || true

  for i in 0 1 2; do
    launch "app-db-${IDS[$i]}" "--db $STATE/${IDS[$i]}.sqlite" "$PY" "$DEMO/app.py" \
      --listen "${IPS[$i]}:$APP_PORT" --name "${IDS[$i]}" --db "$STATE/${IDS[$i]}.sqlite"
  done
  for i in 0 1 2; do
    deadline=$(($(now_ms) + 10000))
    until curl -sf -m 1 -o /dev/null "http://${IPS[$i]}:$APP_PORT/healthz"; do
      alive_pid "app-db-${IDS[$i]}" >/dev/null ||
        { tail -n 20 "$STATE/logs/app-db-${IDS[$i]}.log" >&2; fatal "demo app ${IDS[$i]} exited"; }
      [ "$(now_ms)" -lt "$deadline" ] || fatal "demo app ${IDS[$i]} not answering after 10 s"
      sleep 0.1
    done
  done
  say "demo apps up on ${IPS[*]} port $APP_PORT"

  for i in 0 1 2; do start_leaseway "$i"; done
  say "leaseway x3 started; waiting for exactly one primary"
  local out rc=1 deadline=$(($(now_ms) + 30000)) alive
  while [ "$(now_ms)" -lt "$deadline" ]; do
    out=$("$PY" "$DEMO/cluster.py" wait-primary --timeout 2 "${SPECS[@]}" 2>&1) && { rc=0; break; }
    alive=0
    for i in 0 1 2; do alive_pid "leaseway-${IDS[$i]}" >/dev/null && alive=1; done
    [ $alive = 1 ] || break
  done
  if [ $rc -ne 0 ]; then
    for i in 0 1 2; do
      if ! alive_pid "leaseway-${IDS[$i]}" >/dev/null; then say "leaseway ${IDS[$i]} exited:"; fi
      echo "--- tail of $STATE/logs/leaseway-${IDS[$i]}.log" >&2
      tail -n 15 "$STATE/logs/leaseway-${IDS[$i]}.log" >&2
    done
    say "$out"
    return 1
  fi
  PRIMARY=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["primary"])' "$out")
  say "primary elected: $PRIMARY"
}

load_env() {
  [ -f "$STATE/cluster.env" ] || fatal "no cluster state in $STATE (start one first)"
  # shellcheck disable=SC1091
  . "$STATE/cluster.env"
  set_specs
}

index_of() { local i; for i in 0 1 2; do [ "${IDS[$i]}" = "$1" ] && { echo "$i"; return 0; }; done; return 1; }

# how to call this script again for this cluster
self_cmd() {
  if [ "$STATE" = "$DEFAULT_STATE" ]; then echo "$SELF"; else echo "LEASEWAY_CLUSTER_DIR=$STATE $SELF"; fi
}

print_howto() {
  local p r pi ri
  p=${PRIMARY:-app-1}
  pi=$(index_of "$p") || pi=0
  ri=$(((pi + 1) % 3))
  r=${IDS[$ri]}
  cat <<EOF

leaseway local cluster is up.   Consul: $CONSUL_ADDR  (UI: $CONSUL_ADDR/ui/)

  instance  public                     admin                      demo app
EOF
  local i role
  for i in 0 1 2; do
    role=replica
    [ "${IDS[$i]}" = "$p" ] && role=PRIMARY
    printf '  %-8s  %-25s  %-25s  %-25s %s\n' "${IDS[$i]}" "http://${IPS[$i]}:$PUBLIC_PORT" \
      "http://${IPS[$i]}:$ADMIN_PORT" "http://${IPS[$i]}:$APP_PORT" "$role"
  done
  cat <<EOF

Try (the primary is $p now):
  curl -i http://${IPS[$ri]}:$PUBLIC_PORT/                  # a read on replica $r, served there; see Fly-Primary-Instance
  curl -i -X POST http://${IPS[$ri]}:$PUBLIC_PORT/write     # a write on replica $r: lands on the primary (served_by)
  curl -X POST -d 'id=order-42' http://${IPS[$ri]}:$PUBLIC_PORT/write   # again with the same id: 409 duplicate
  curl http://${IPS[$pi]}:$APP_PORT/writes                 # the primary's own SQLite has the rows (no LiteFS here)
  open http://${IPS[0]}:$ADMIN_PORT/ in a browser          # the status page: every instance, role, gate; refreshes itself
  curl http://${IPS[0]}:$ADMIN_PORT/status                 # one instance's view (role, primary, lease, consul)
  $BIN status --consul-addr $CONSUL_ADDR --service $SERVICE
  dig @127.0.0.1 -p $DNS_PORT +short primary.$SERVICE.service.consul
  curl -X POST http://${IPS[$pi]}:$ADMIN_PORT/handoff           # planned handover: another instance takes the lease
  kill \$(cat $STATE/pids/leaseway-$p.pid)        # unplanned: stop the primary's proxy, watch the failover
  $(self_cmd) --revive $p                      # ... and bring it back (as a replica)

Logs: $STATE/logs/   (leaseway-app-N.log, app-db-app-N.log, consul.log)
EOF
}

# --- smoke -----------------------------------------------------------------
SMOKE_FAILS=0
SMOKE_PASSES=0
ok() { SMOKE_PASSES=$((SMOKE_PASSES + 1)); printf 'ok   - %s\n' "$*"; }
bad() { SMOKE_FAILS=$((SMOKE_FAILS + 1)); printf 'FAIL - %s\n' "$*"; }

# jget JSON EXPR — evaluate a python expression on the parsed JSON (as j).
jget() { "$PY" -c 'import json,sys; j=json.loads(sys.argv[1]); v=eval(sys.argv[2]); print("" if v is None else v)' "$1" "$2" 2>/dev/null || true; }
http() { "$PY" "$DEMO/cluster.py" "$@"; }

smoke() {
  local p pi i r out code hp hi sb id ids=() n
  p=$PRIMARY
  pi=$(index_of "$p")

  # 1. reads: every instance serves GET / from its own app and names the primary.
  for i in 0 1 2; do
    out=$(http get "http://${IPS[$i]}:$PUBLIC_PORT/")
    code=$(jget "$out" 'j["code"]')
    hp=$(jget "$out" 'j["headers"].get("fly-primary-instance")')
    hi=$(jget "$out" 'j["headers"].get("fly-instance")')
    sb=$(jget "$out" 'j["body"]["served_by"]')
    if [ "$code" = 200 ] && [ "$hp" = "$p" ] && [ "$hi" = "${IDS[$i]}" ] && [ "$sb" = "${IDS[$i]}" ] &&
      [ "$(jget "$out" 'j["body"]["primary"]')" = "$p" ]; then
      ok "GET / on ${IDS[$i]}: 200, served locally, Fly-Primary-Instance: $p, Fly-Instance: ${IDS[$i]}"
    else
      bad "GET / on ${IDS[$i]}: want 200 served_by=${IDS[$i]} Fly-Primary-Instance=$p Fly-Instance=${IDS[$i]}; got $out"
    fi
  done

  # 2. writes: on the primary and on each replica, all land in the primary's app.
  n=0
  for i in "$pi" $(((pi + 1) % 3)) $(((pi + 2) % 3)); do
    n=$((n + 1))
    id="smoke-$n-$$-$RANDOM"
    out=$(http post "http://${IPS[$i]}:$PUBLIC_PORT/write" "{\"id\":\"$id\"}")
    code=$(jget "$out" 'j["code"]')
    sb=$(jget "$out" 'j["body"]["served_by"]')
    hp=$(jget "$out" 'j["headers"].get("fly-primary-instance")')
    if [ "$code" = 200 ] && [ "$sb" = "$p" ] && [ "$hp" = "$p" ]; then
      ok "POST /write on ${IDS[$i]}$([ "$i" = "$pi" ] || echo ' (replica)'): 200, served_by the primary $p"
      ids+=("$id")
    elif [ "$i" != "$pi" ] && [ "$code" = 503 ]; then
      bad "POST /write on replica ${IDS[$i]}: 503 — write forwarding to the primary is not there (issue 4?): $out"
    else
      bad "POST /write on ${IDS[$i]}: want 200 served_by=$p; got $out"
    fi
  done

  # 3. a duplicate id through a replica: the primary's app answers 409.
  if [ ${#ids[@]} -gt 0 ]; then
    r=$(((pi + 1) % 3))
    out=$(http post "http://${IPS[$r]}:$PUBLIC_PORT/write" "{\"id\":\"${ids[0]}\"}")
    if [ "$(jget "$out" 'j["code"]')" = 409 ] && [ "$(jget "$out" 'j["body"]["duplicate"]')" = True ]; then
      ok "POST /write with an id already stored, via ${IDS[$r]}: 409 duplicate"
    else
      bad "duplicate POST via ${IDS[$r]}: want 409 {duplicate: true}; got $out"
    fi
  fi

  # 4. where did the writes go? Only into the primary's database.
  for i in 0 1 2; do
    out=$(http get "http://${IPS[$i]}:$APP_PORT/writes")
    n=$(jget "$out" 'j["body"]["count"]')
    if [ "$i" = "$pi" ]; then
      if [ "$n" = "${#ids[@]}" ] && [ "$(jget "$out" '",".join(sorted(w["id"] for w in j["body"]["writes"]))')" = "$(printf '%s\n' "${ids[@]}" | sort | paste -sd,)" ]; then
        ok "the primary's app DB holds exactly the ${#ids[@]} acknowledged writes"
      else
        bad "primary ${IDS[$i]} app DB: want ids ${ids[*]}; got $out"
      fi
    elif [ "$n" = 0 ]; then
      ok "replica ${IDS[$i]}'s app DB holds no writes"
    else
      bad "replica ${IDS[$i]}'s app DB holds writes: $out"
    fi
  done

  # 5. admin /status and leaseway status (from Consul).
  out=$(curl -s -m 2 "http://${IPS[0]}:$ADMIN_PORT/status") || out=
  if [ "$(jget "$out" 'j["instance"]')" = "${IDS[0]}" ] && [ "$(jget "$out" 'j["primary"]["id"]')" = "$p" ] &&
    [ "$(jget "$out" 'j["consul"]["reachable"]')" = True ]; then
    ok "admin /status on ${IDS[0]}: instance, primary $p, consul reachable"
  else
    bad "admin /status on ${IDS[0]}: want instance=${IDS[0]} primary.id=$p consul.reachable=true; got $out"
  fi
  if out=$("$BIN" status --json --consul-addr "$CONSUL_ADDR" --service "$SERVICE" 2>&1); then
    local roles
    roles=$(jget "$out" '" ".join(sorted("%s=%s/%s" % (e["id"], e["role"], e.get("check")) for e in j))')
    local want
    want=$(for i in 0 1 2; do
      if [ "$i" = "$pi" ]; then echo "${IDS[$i]}=primary/passing"; else echo "${IDS[$i]}=replica/passing"; fi
    done | paste -sd' ')
    if [ "$roles" = "$want" ]; then
      ok "leaseway status --json: $roles"
    else
      bad "leaseway status --json: want $want; got ${roles:-$out}"
    fi
  else
    bad "leaseway status --json exited non-zero: $out"
  fi
  if out=$("$BIN" status --consul-addr "$CONSUL_ADDR" --service "$SERVICE" 2>&1) &&
    [ "$(printf '%s\n' "$out" | grep -cE "^(${IDS[0]}|${IDS[1]}|${IDS[2]}) ")" = 3 ]; then
    ok "leaseway status: a table with the 3 instances"
  else
    bad "leaseway status: want a row per instance; got: $out"
  fi

  # 6. Consul DNS names the primary.
  if command -v dig >/dev/null 2>&1; then
    out=$(dig +short +time=2 +tries=2 @127.0.0.1 -p "$DNS_PORT" "primary.$SERVICE.service.consul" A 2>&1) || true
    if [ "$out" = "${IPS[$pi]}" ]; then
      ok "DNS primary.$SERVICE.service.consul -> $out ($p)"
    else
      bad "DNS primary.$SERVICE.service.consul: want ${IPS[$pi]} ($p); got '$out'"
    fi
  fi

  # 7. planned handover: /handoff on the primary, another takes over.
  local t0 np
  t0=$(now_ms)
  code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST "http://${IPS[$pi]}:$ADMIN_PORT/handoff") || code=000
  if [ "$code" = 200 ] || [ "$code" = 202 ] || [ "$code" = 204 ]; then
    ok "POST /handoff on $p: $code"
  else
    bad "POST /handoff on $p: HTTP $code"
  fi
  if out=$("$PY" "$DEMO/cluster.py" wait-primary --timeout 10 --not "$p" --t0-ms "$t0" "${SPECS[@]}" 2>&1); then
    np=$(jget "$out" 'j["primary"]')
    ok "after handoff: $np is primary, all three agree ($(jget "$out" 'j["ms"]') ms)"
    id="smoke-after-handoff-$$"
    out=$(http post "http://${IPS[$pi]}:$PUBLIC_PORT/write" "{\"id\":\"$id\"}")
    if [ "$(jget "$out" 'j["code"]')" = 200 ] && [ "$(jget "$out" 'j["body"]["served_by"]')" = "$np" ]; then
      ok "POST /write on the old primary $p now lands on $np"
    else
      bad "POST /write on the old primary $p after handoff: want 200 served_by=$np; got $out"
    fi
  else
    bad "after handoff: no other primary within 10 s: $out"
  fi
}

# --- modes -----------------------------------------------------------------
case $MODE in
  stop)
    [ -d "$STATE/pids" ] || { say "nothing to stop ($STATE)"; exit 0; }
    any_alive || { say "not running"; rm -f "$STATE"/pids/*.pid; exit 0; }
    stop_all
    say "stopped (logs kept in $STATE/logs)"
    exit 0
    ;;
  status)
    any_alive || { say "not running ($STATE)"; exit 1; }
    load_env
    for n in $(all_names); do
      if pid=$(alive_pid "$n"); then printf '  %-18s pid %s\n' "$n" "$pid"; else printf '  %-18s not running\n' "$n"; fi
    done
    "$PY" "$DEMO/cluster.py" status "${SPECS[@]}" | sed 's/^/  /'
    exit 0
    ;;
  revive)
    load_env
    i=$(index_of "$REVIVE") || fatal "unknown instance $REVIVE (app-1, app-2, app-3)"
    alive_pid consul >/dev/null || fatal "the cluster is not running (start it first)"
    alive_pid "leaseway-$REVIVE" >/dev/null && fatal "leaseway $REVIVE is already running"
    start_leaseway "$i"
    say "leaseway $REVIVE started again (log: $STATE/logs/leaseway-$REVIVE.log)"
    exit 0
    ;;
esac

# foreground, detach, smoke: start a cluster.
if [ "$MODE" = smoke ]; then
  if [ -n "${LEASEWAY_CLUSTER_DIR:-}" ]; then
    any_alive && fatal "a cluster is already running from $STATE"
  else
    mkdir -p "$STATE_ROOT"
    STATE=$(mktemp -d "$STATE_ROOT/leaseway-cluster-smoke.XXXXXX")
  fi
else
  if [ -d "$STATE/pids" ] && any_alive; then
    fatal "a cluster is already running from $STATE: $SELF --stop first (or --status)"
  fi
  rm -rf "$STATE"
fi
mkdir -p "$STATE/pids" "$STATE/logs"

on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$MODE" != detach ] || [ "$rc" -ne 0 ]; then
    say "stopping the cluster"
    stop_all
  fi
  if [ "$MODE" = smoke ]; then
    if [ "$rc" -eq 0 ]; then rm -rf "$STATE"; else say "logs kept in $STATE/logs"; fi
  fi
  exit "$rc"
}
trap on_exit EXIT
if [ "$MODE" = foreground ]; then trap 'exit 0' INT; else trap 'exit 130' INT; fi
trap 'exit 143' TERM

prepare
start_all || exit 1

case $MODE in
  detach)
    print_howto
    echo "Running in the background. Stop it with: $(self_cmd) --stop"
    exit 0
    ;;
  smoke)
    print_howto >&2
    T0=$(now_ms)
    smoke
    echo "local-cluster smoke: $SMOKE_PASSES passed, $SMOKE_FAILS failed ($(($(now_ms) - T0)) ms of checks)"
    [ "$SMOKE_FAILS" -eq 0 ]
    exit $?
    ;;
esac

print_howto
echo "Press Ctrl-C to stop everything."
# Stay here; report processes that exit (killing a leaseway to watch a
# failover is part of the demo, so that is not a reason to stop).
declare -A reported=()
while :; do
  for n in $(all_names); do
    if alive_pid "$n" >/dev/null; then
      reported[$n]=
    elif [ -z "${reported[$n]:-}" ]; then
      reported[$n]=1
      say "$n is not running (log: $STATE/logs/$n.log)"
    fi
  done
  sleep 1 &
  wait $! || true
done
