# shellcheck shell=bash
# tests/lib/litefs.sh — a LiteFS cluster on one machine, leased through the
# Consul dev agent, with the demo app's database on each node's mount.
#
#   . "$(dirname "${BASH_SOURCE[0]}")/../lib/litefs.sh"   # also sources consul.sh
#   consul_dev_start "$(mktmp consul)" || die "no consul"
#   trap 'litefs_cluster_stop; cleanup' EXIT               # unmounts FUSE before rm -rf
#   litefs_cluster_start "$(mktmp litefs)" 3 || die "no cluster"
#   litefs_leaseway_start 1 --litefs-db "$LFS_MOUNT_1/demo.db"
#
# Two implementations behind the same functions and variables:
#   real    — LiteFS v$LFS_VERSION (`litefs mount -config <dir>/nI/litefs.yml`),
#             binary from tests/setup.sh (cache bin/litefs) or $LEASEWAY_LITEFS_BIN;
#             needs /dev/fuse and fusermount3 (or fusermount).
#   standin — tests/lib/litefs_standin.py: the same Consul lease (session Name
#             litefs, TTL 10s, LockDelay 1s, {"hostname","advertise-url"}), the
#             same .primary and <db>-pos files on a plain directory, whole-file
#             replication; NOT LiteFS (no FUSE, no LiteFS proxy).
# LEASEWAY_LITEFS_IMPL=auto (default: real when usable, else standin) | real | standin.
# `litefs_impl` prints the choice, or fails (with the reason on stderr) when
# `real` was asked for and cannot run.
#
# Layout of node I (1..N), all on loopback, hostname = its own address:
#   LFS_HOST_I   127.0.0.<LFS_IP_BASE+I> (default base 20: 127.0.0.21, .22, …)
#                = lease.hostname = the id leaseway sees as the primary's
#   LFS_MOUNT_I  <dir>/nI/mnt (FUSE dir)     LFS_DATA_I <dir>/nI/data
#   LFS_HTTP_I   HOST:port of LiteFS's HTTP API (the 20202 analogue)
#   LFS_RELAY_I  HOST:port of a pausable TCP relay to LFS_HTTP_I; the node's
#                lease.advertise-url is http://LFS_RELAY_I, so replicas stream
#                through it: litefs_pause_replication / litefs_resume_replication
#                stall replication from that node without touching FUSE
#   APP_ADDR_I   HOST:APP_PORT of the app (deploy/demo-app/app.py --db
#                <mount>/demo.db; standin: tests/lib/litefs_app.py, same app);
#                with LFS_APP_LOOPBACK=1, 127.0.0.1:<its own port> instead
#                (for apps that bind 127.0.0.1 only, e.g. tests/lib/upstream.py)
#   LFS_PROXY_I  HOST:port of LiteFS's own proxy (real + LFS_WITH_PROXY=1)
#   LFS_PID_I, LFS_RELAY_PID_I, APP_PID_I
# Also: LFS_IMPL, LFS_N, LFS_DIR, LFS_KEY (litefs/<cluster>), LFS_CLUSTER,
#   LFS_DB (demo.db), APP_PORT, LFS_HTTP_PORT, LFS_PROXY_PORT, LW_PORT, LW_ADMIN_PORT.
# Same port on every address, so `--peer-url-template http://{id}:$LW_PORT`
# maps a LiteFS hostname to that node's leaseway.
#
# Knobs (environment, read by litefs_cluster_start):
#   LFS_CANDIDATES   node numbers with lease.candidate: true (default "1 2")
#   LFS_CLUSTER      cluster name, key litefs/<cluster> (default lw-<pid>-<rand>)
#   LFS_WITH_PROXY=1 add LiteFS's proxy: section (addr, target = the app,
#                    db = demo.db, passthrough = $LFS_PROXY_PASSTHROUGH words)
#   LFS_APP_CMD      app command for node I instead of the demo app; placeholders
#                    {host} {port} {name} {db} {mount} are substituted
#   LFS_APP_HEALTH   path answering 2xx when the app is up (default /healthz)
#   LFS_APP_LOOPBACK=1  apps on 127.0.0.1 with one port per node (see APP_ADDR_I)
#   LFS_TTL          lease.consul.ttl seconds (default 10, LiteFS's)
#
# LiteFS v0.5 config keys used (cmd/litefs/config.go): fuse.dir, data.dir,
# exit-on-error, http.addr, lease.type, lease.hostname, lease.advertise-url,
# lease.candidate, lease.promote, lease.consul.url, lease.consul.key,
# lease.consul.ttl, lease.consul.lock-delay, proxy.addr, proxy.target,
# proxy.db, proxy.passthrough, log.format. No exec: the apps are started here
# once the mount (and, on a replica, the replicated database) is there.

[ -n "${_LEASEWAY_LITEFS_SH:-}" ] && return 0
_LEASEWAY_LITEFS_SH=1

# shellcheck source-path=SCRIPTDIR
# shellcheck source=consul.sh
. "$(dirname "${BASH_SOURCE[0]}")/consul.sh"

LFS_VERSION=0.5.6 # keep in sync with tests/setup.sh (LITEFS_VERSION)
LFS_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${LEASEWAY_SRC:=$(cd "$LFS_LIB_DIR/../.." && pwd)}"
: "${LEASEWAY_BIN:=$LEASEWAY_SRC/build/leaseway}"
LFS_PY=/usr/bin/python3
[ -x "$LFS_PY" ] || LFS_PY=python3
LFS_STANDIN="$LFS_LIB_DIR/litefs_standin.py"
LFS_DEMO_APP="$LEASEWAY_SRC/deploy/demo-app/app.py"
LFS_STANDIN_APP="$LFS_LIB_DIR/litefs_app.py"
LFS_N=0

_lfs_log() { printf '[litefs %s] %s\n' "$(date +%H:%M:%S.%3N)" "$*" >&2; }
_lfs_get() { local v="$1_$2"; printf '%s' "${!v:-}"; }
_lfs_set() { printf -v "$1_$2" '%s' "$3"; export "${1}_$2"; }

# litefs_test_setup NAME — how every litefs_* test starts: the leaseway binary
# is there; IMPL is chosen (exit 77 when LEASEWAY_LITEFS_IMPL=real cannot run);
# ok/bad count into PASSES/FAILS; jget reads JSON; DIR is a fresh temp dir; the
# EXIT trap resumes replication paused from node 1 (PAUSED=1) and a LiteFS stopped
# with SIGSTOP (its pid in STOPPED), shows the nodes'
# logs on failure and stops the cluster; a Consul dev agent is up.
litefs_test_setup() {
  [ -x "$LEASEWAY_BIN" ] || die "no leaseway binary at $LEASEWAY_BIN (build first)"
  IMPL=$(litefs_impl) || { echo "SKIP: LEASEWAY_LITEFS_IMPL=real but LiteFS cannot run here" >&2; exit 77; }
  FAILS=0 PASSES=0 PAUSED=0 STOPPED=
  ok() { PASSES=$((PASSES + 1)); printf 'ok   - %s\n' "$*"; }
  bad() { FAILS=$((FAILS + 1)); printf 'FAIL - %s\n' "$*"; }
  jget() { "$LFS_PY" -c 'import json,sys; j=json.loads(sys.argv[1]); v=eval(sys.argv[2]); print("" if v is None else v)' "$1" "$2" 2>/dev/null || true; }
  DIR=$(mktmp "$1")
  trap 'rc=$?; set +e; [ "$PAUSED" = 1 ] && litefs_resume_replication 1; [ -n "$STOPPED" ] && kill -CONT "$STOPPED"; [ $rc -eq 0 ] || show_tails 12 "$DIR"/n*/*.log; litefs_cluster_stop; (exit $rc); cleanup' EXIT
  consul_dev_start "$DIR/consul" || die "consul dev agent did not start"
}

# litefs_bin — path of the LiteFS binary, or fail.
litefs_bin() {
  local bin=${LEASEWAY_LITEFS_BIN:-${LEASEWAY_CACHE:-$HOME/.cache/leaseway}/bin/litefs}
  [ -x "$bin" ] || { echo "litefs_bin: no LiteFS binary at $bin (tests/setup.sh builds it when the Go module proxy serves github.com/superfly/litefs)" >&2; return 1; }
  echo "$bin"
}

_lfs_fusermount() {
  command -v fusermount3 2>/dev/null || command -v fusermount 2>/dev/null
}

# litefs_real_ok — can real LiteFS run here? (binary, /dev/fuse, fusermount)
litefs_real_ok() {
  litefs_bin >/dev/null || return 1
  [ -c /dev/fuse ] || { echo "litefs: /dev/fuse missing" >&2; return 1; }
  _lfs_fusermount >/dev/null || { echo "litefs: fusermount3 missing (apt-get install fuse3)" >&2; return 1; }
}

# litefs_impl — print "real" or "standin" (see LEASEWAY_LITEFS_IMPL above).
litefs_impl() {
  case ${LEASEWAY_LITEFS_IMPL:-auto} in
    real) litefs_real_ok && echo real ;;
    standin) echo standin ;;
    auto) if litefs_real_ok 2>/dev/null; then echo real; else echo standin; fi ;;
    *) echo "litefs_impl: LEASEWAY_LITEFS_IMPL must be auto, real or standin" >&2; return 1 ;;
  esac
}

# litefs_primary — hostname in the lease key, empty when nobody holds it.
litefs_primary() {
  curl -sf -m 2 "$CONSUL_HTTP_ADDR/v1/kv/$LFS_KEY" 2>/dev/null | "$LFS_PY" -c '
import base64, json, sys
try:
    e = json.load(sys.stdin)[0]
    print(json.loads(base64.b64decode(e["Value"]))["hostname"] if e.get("Session") else "")
except Exception:
    print("")'
}

# litefs_lease_json — the raw KV entry of the lease (for assertions).
litefs_lease_json() { curl -sf -m 2 "$CONSUL_HTTP_ADDR/v1/kv/$LFS_KEY"; }

# litefs_wait_primary [HOST] [TIMEOUT_S] — until HOST (or anyone) holds the lease.
litefs_wait_primary() {
  local want=${1:-} timeout=${2:-20}
  if [ -n "$want" ]; then
    wait_for "[ \"\$(litefs_primary)\" = '$want' ]" "$timeout" 0.1
  else
    wait_for '[ -n "$(litefs_primary)" ]' "$timeout" 0.1
  fi
}

# litefs_node_of HOST — the node number whose hostname is HOST.
litefs_node_of() {
  local i
  for ((i = 1; i <= LFS_N; i++)); do
    [ "$(_lfs_get LFS_HOST "$i")" = "$1" ] && { echo "$i"; return 0; }
  done
  return 1
}

# litefs_pos I [DB] — TXID (16 hex) in node I's <db>-pos, empty if none.
litefs_pos() {
  local f
  f="$(_lfs_get LFS_MOUNT "$1")/${2:-$LFS_DB}-pos"
  [ -r "$f" ] || return 0
  timeout 2 cut -d/ -f1 "$f" 2>/dev/null || true
}

_lfs_write_config() { # I
  local i=$1 cand=false c host
  host=$(_lfs_get LFS_HOST "$i")
  for c in $LFS_CANDIDATES; do [ "$c" = "$i" ] && cand=true; done
  {
    echo "# generated by tests/lib/litefs.sh for LiteFS v$LFS_VERSION"
    echo "fuse:"
    echo "  dir: \"$(_lfs_get LFS_MOUNT "$i")\""
    echo "data:"
    echo "  dir: \"$(_lfs_get LFS_DATA "$i")\""
    echo "exit-on-error: false"
    echo "http:"
    echo "  addr: \"$(_lfs_get LFS_HTTP "$i")\""
    echo "lease:"
    echo "  type: \"consul\""
    echo "  hostname: \"$host\""
    echo "  advertise-url: \"http://$(_lfs_get LFS_RELAY "$i")\""
    echo "  candidate: $cand"
    echo "  promote: false"
    echo "  consul:"
    echo "    url: \"$CONSUL_HTTP_ADDR\""
    echo "    key: \"$LFS_KEY\""
    echo "    ttl: \"${LFS_TTL:-10}s\""
    echo "    lock-delay: \"1s\""
    if [ "${LFS_WITH_PROXY:-0}" = 1 ]; then
      echo "proxy:"
      echo "  addr: \"$(_lfs_get LFS_PROXY "$i")\""
      echo "  target: \"$(_lfs_get APP_ADDR "$i")\""
      echo "  db: \"$LFS_DB\""
      if [ -n "${LFS_PROXY_PASSTHROUGH:-}" ]; then
        echo "  passthrough:"
        for c in $LFS_PROXY_PASSTHROUGH; do echo "    - \"$c\""; done
      else
        echo "  passthrough: []"
      fi
    fi
    echo "log:"
    echo "  format: \"text\""
  } >"$LFS_DIR/n$i/litefs.yml"
  _lfs_set LFS_CANDIDATE "$i" "$cand"
}

# litefs_relay_start I — the pausable relay in front of node I's HTTP API.
litefs_relay_start() {
  local i=$1 pid ready
  ready="$LFS_DIR/n$i/relay.ready"
  rm -f "$ready"
  "$LFS_PY" "$LFS_STANDIN" relay --listen "$(_lfs_get LFS_RELAY "$i")" \
    --target "$(_lfs_get LFS_HTTP "$i")" --ready-file "$ready" \
    >>"$LFS_DIR/n$i/relay.log" 2>&1 </dev/null &
  pid=$!
  register_pid "$pid"
  _lfs_set LFS_RELAY_PID "$i" "$pid"
  wait_for "[ -e '$ready' ]" 10 0.05
}

# litefs_node_start I — start LiteFS (or the stand-in) on node I; waits for the
# mount (real) and for the node to be up (HTTP API answers).
litefs_node_start() {
  local i=$1 pid mnt host http
  mnt=$(_lfs_get LFS_MOUNT "$i")
  host=$(_lfs_get LFS_HOST "$i")
  http=$(_lfs_get LFS_HTTP "$i")
  mkdir -p "$mnt" "$(_lfs_get LFS_DATA "$i")"
  if [ "$LFS_IMPL" = real ]; then
    _lfs_write_config "$i"
    "$(litefs_bin)" mount -config "$LFS_DIR/n$i/litefs.yml" >>"$LFS_DIR/n$i/litefs.log" 2>&1 </dev/null &
    pid=$!
  else
    local cand=false c
    for c in $LFS_CANDIDATES; do [ "$c" = "$i" ] && cand=true; done
    _lfs_set LFS_CANDIDATE "$i" "$cand"
    "$LFS_PY" "$LFS_STANDIN" node --hostname "$host" --http "$http" \
      --advertise-url "http://$(_lfs_get LFS_RELAY "$i")" --mount "$mnt" \
      --data "$(_lfs_get LFS_DATA "$i")" --consul "$CONSUL_HTTP_ADDR" --key "$LFS_KEY" \
      --candidate "$cand" --db "$LFS_DB" --ttl "${LFS_TTL:-10}" --lock-delay 1 \
      >>"$LFS_DIR/n$i/litefs.log" 2>&1 </dev/null &
    pid=$!
  fi
  register_pid "$pid"
  _lfs_set LFS_PID "$i" "$pid"
  if [ "$LFS_IMPL" = real ]; then
    wait_for "mountpoint -q '$mnt'" 20 0.1 || { _lfs_log "node $i: $mnt not mounted"; tail -n 20 "$LFS_DIR/n$i/litefs.log" >&2; return 1; }
  fi
  # Any HTTP answer from the API (404 included) means it is listening.
  wait_for "curl -s -o /dev/null -m 1 http://$http/" 20 0.1 ||
    { _lfs_log "node $i: HTTP API $http not up"; tail -n 20 "$LFS_DIR/n$i/litefs.log" >&2; return 1; }
}

# litefs_node_stop I [SIGNAL] — stop node I's LiteFS (default TERM: LiteFS
# releases the lease), wait up to 15 s, then unmount its FUSE dir. KILL leaves
# the session to expire (up to 2 x TTL).
litefs_node_stop() {
  local i=$1 sig=${2:-TERM} pid
  pid=$(_lfs_get LFS_PID "$i")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -"$sig" "$pid" 2>/dev/null || true
    wait_for "! kill -0 $pid" 15 0.1 || kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  _lfs_unmount "$(_lfs_get LFS_MOUNT "$i")"
}

_lfs_unmount() {
  local mnt=$1 fm
  [ -n "$mnt" ] || return 0
  if mountpoint -q "$mnt" 2>/dev/null || grep -qs " $mnt fuse" /proc/mounts; then
    fm=$(_lfs_fusermount) || fm=
    { [ -n "$fm" ] && "$fm" -u "$mnt" 2>/dev/null; } || umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
  fi
}

# litefs_app_start I — start node I's app on its mount; on a replica waits
# (up to 20 s) for the replicated database first.
litefs_app_start() {
  local i=$1 host mnt db pid cmd name addr port
  host=$(_lfs_get LFS_HOST "$i")
  addr=$(_lfs_get APP_ADDR "$i")
  port=${addr##*:}
  mnt=$(_lfs_get LFS_MOUNT "$i")
  db="$mnt/$LFS_DB"
  name="app-n$i"
  if [ "$(litefs_primary)" != "$host" ]; then
    wait_for "[ -s '$db' ]" 20 0.1 || { _lfs_log "node $i: $db never replicated"; return 1; }
  fi
  if [ -n "${LFS_APP_CMD:-}" ]; then
    cmd=${LFS_APP_CMD//\{host\}/${addr%:*}}
    cmd=${cmd//\{port\}/$port}
    cmd=${cmd//\{name\}/$name}
    cmd=${cmd//\{db\}/$db}
    cmd=${cmd//\{mount\}/$mnt}
    bash -c "exec $cmd" >>"$LFS_DIR/n$i/app.log" 2>&1 </dev/null &
  elif [ "$LFS_IMPL" = real ]; then
    "$LFS_PY" "$LFS_DEMO_APP" --quiet --listen "$addr" --name "$name" --db "$db" \
      >>"$LFS_DIR/n$i/app.log" 2>&1 </dev/null &
  else
    LITEFS_COMMIT_URL="http://$(_lfs_get LFS_HTTP "$i")/commit?db=$LFS_DB" \
      "$LFS_PY" "$LFS_STANDIN_APP" --quiet --listen "$addr" --name "$name" --db "$db" \
      >>"$LFS_DIR/n$i/app.log" 2>&1 </dev/null &
  fi
  pid=$!
  register_pid "$pid"
  _lfs_set APP_PID "$i" "$pid"
  wait_for "curl -sf -o /dev/null -m 1 http://$addr${LFS_APP_HEALTH:-/healthz}" 20 0.1 ||
    { _lfs_log "node $i: app not up"; tail -n 20 "$LFS_DIR/n$i/app.log" >&2; return 1; }
}

litefs_app_stop() {
  local pid
  pid=$(_lfs_get APP_PID "$1")
  [ -n "$pid" ] && kill_wait "$pid" 5
  return 0
}

# litefs_pause_replication I / litefs_resume_replication I — hold / release
# every byte through node I's relay (its advertise-url): replicas streaming
# from node I stall; nothing local to any node blocks.
litefs_pause_replication() { kill -USR1 "$(_lfs_get LFS_RELAY_PID "$1")"; }
litefs_resume_replication() { kill -USR2 "$(_lfs_get LFS_RELAY_PID "$1")"; }

# litefs_handoff I [J] — move the lease from node I (the primary) to node J.
# Prints the HTTP status. Real LiteFS v0.5.6: POST /promote on node J's HTTP
# API (what `litefs promote` does: J, a connected candidate, asks the primary
# over the replication stream to hand off; the primary's own POST /handoff
# wants J's internal node ID). The stand-in: POST /handoff on node I, which
# releases the lease for any other candidate.
litefs_handoff() {
  local url code
  if [ "$LFS_IMPL" = real ]; then
    [ -n "${2:-}" ] || { echo "litefs_handoff: real LiteFS needs the target node J" >&2; echo 000; return 0; }
    url="http://$(_lfs_get LFS_HTTP "$2")/promote"
  else
    url="http://$(_lfs_get LFS_HTTP "$1")/handoff"
  fi
  code=$(curl -s -o /dev/null -w '%{http_code}' -m 10 -X POST "$url") || code=000
  echo "$code"
}

# litefs_cluster_start DIR N — N nodes; node 1 is started first and becomes
# the primary (it must be a candidate), then the others; then the apps.
litefs_cluster_start() {
  local dir=${1:?litefs_cluster_start DIR N} n=${2:-3} i host base
  [ -n "${CONSUL_HTTP_ADDR:-}" ] || { echo "litefs_cluster_start: start Consul first (consul_dev_start)" >&2; return 1; }
  LFS_IMPL=$(litefs_impl) || return 1
  export LFS_IMPL LFS_N=$n LFS_DIR=$dir LFS_DB=${LFS_DB:-demo.db}
  : "${LFS_CANDIDATES:=1 2}"
  : "${LFS_CLUSTER:=lw-$$-$RANDOM}"
  export LFS_CANDIDATES LFS_CLUSTER LFS_KEY="litefs/$LFS_CLUSTER"
  base=${LFS_IP_BASE:-20}
  LFS_HTTP_PORT=$(free_port) && LFS_RELAY_PORT=$(free_port) && APP_PORT=$(free_port) &&
    LFS_PROXY_PORT=$(free_port) && LW_PORT=$(free_port) && LW_ADMIN_PORT=$(free_port) || return 1
  export LFS_HTTP_PORT LFS_RELAY_PORT APP_PORT LFS_PROXY_PORT LW_PORT LW_ADMIN_PORT
  for ((i = 1; i <= n; i++)); do
    host="127.0.0.$((base + i))"
    mkdir -p "$dir/n$i"
    _lfs_set LFS_HOST "$i" "$host"
    _lfs_set LFS_MOUNT "$i" "$dir/n$i/mnt"
    _lfs_set LFS_DATA "$i" "$dir/n$i/data"
    _lfs_set LFS_HTTP "$i" "$host:$LFS_HTTP_PORT"
    _lfs_set LFS_RELAY "$i" "$host:$LFS_RELAY_PORT"
    _lfs_set LFS_PROXY "$i" "$host:$LFS_PROXY_PORT"
    if [ "${LFS_APP_LOOPBACK:-0}" = 1 ]; then
      _lfs_set APP_ADDR "$i" "127.0.0.1:$(free_port)" || return 1
    else
      _lfs_set APP_ADDR "$i" "$host:$APP_PORT"
    fi
  done
  _lfs_log "impl=$LFS_IMPL nodes=$n key=$LFS_KEY candidates=[$LFS_CANDIDATES] dir=$dir"
  for ((i = 1; i <= n; i++)); do
    litefs_relay_start "$i" || return 1
    litefs_node_start "$i" || return 1
    if [ "$i" = 1 ]; then
      litefs_wait_primary "$LFS_HOST_1" 30 || { _lfs_log "node 1 did not take the lease"; tail -n 20 "$dir/n1/litefs.log" >&2; return 1; }
      litefs_app_start 1 || return 1
    fi
  done
  for ((i = 2; i <= n; i++)); do litefs_app_start "$i" || return 1; done
  _lfs_log "cluster up: primary $(litefs_primary)"
}

# litefs_cluster_stop — apps, nodes (TERM), relays; unmount every FUSE dir.
# Safe to call twice and before litefs_cluster_start finished.
litefs_cluster_stop() {
  local i pid
  [ "${LFS_N:-0}" -gt 0 ] || return 0
  for ((i = 1; i <= LFS_N; i++)); do
    for pid in $(_lfs_get LW_PID "$i") $(_lfs_get APP_PID "$i"); do kill -TERM "$pid" 2>/dev/null || true; done
  done
  for ((i = 1; i <= LFS_N; i++)); do
    for pid in $(_lfs_get LW_PID "$i") $(_lfs_get APP_PID "$i"); do kill_wait "$pid" 5; done
  done
  for ((i = 1; i <= LFS_N; i++)); do
    pid=$(_lfs_get LFS_PID "$i")
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  for ((i = 1; i <= LFS_N; i++)); do
    litefs_node_stop "$i"
    pid=$(_lfs_get LFS_RELAY_PID "$i")
    [ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null && kill_wait "$pid" 3
  done
  LFS_N=0
  return 0
}

# litefs_leaseway_start I [ARGS...] — leaseway in WATCH mode on the LiteFS
# lease in front of node I's app: --candidate=false, --instance = the node's
# hostname, listening on LFS_HOST_I:LW_PORT, peers by
# --peer-url-template http://{id}:LW_PORT. Exports LW_ADDR_I, LW_ADMIN_I,
# LW_PID_I, LW_LOG_I; waits until /status answers.
litefs_leaseway_start() {
  local i=$1 host pid log
  shift
  host=$(_lfs_get LFS_HOST "$i")
  log="$LFS_DIR/n$i/leaseway.log"
  "$LEASEWAY_BIN" run --lease consul --lease-key "$LFS_KEY" --candidate=false \
    --peer-url-template "http://{id}:$LW_PORT" --instance "$host" \
    --listen "$host:$LW_PORT" --target "$(_lfs_get APP_ADDR "$i")" --admin "$host:$LW_ADMIN_PORT" \
    --advertise "http://$host:$LW_PORT" --consul-addr "$CONSUL_HTTP_ADDR" \
    --service "lw-$LFS_CLUSTER" --workers "${LFS_LW_WORKERS:-1}" "$@" \
    >>"$log" 2>&1 </dev/null &
  pid=$!
  register_pid "$pid"
  _lfs_set LW_PID "$i" "$pid"
  _lfs_set LW_ADDR "$i" "$host:$LW_PORT"
  _lfs_set LW_ADMIN "$i" "$host:$LW_ADMIN_PORT"
  _lfs_set LW_LOG "$i" "$log"
  wait_for "curl -s -o /dev/null -m 1 http://$host:$LW_ADMIN_PORT/status" 15 0.1 ||
    { _lfs_log "leaseway $i did not start"; tail -n 20 "$log" >&2; return 1; }
}

litefs_leaseway_stop() {
  local pid
  pid=$(_lfs_get LW_PID "$1")
  [ -n "$pid" ] && kill_wait "$pid" 10
  return 0
}

# litefs_lw_primary I — the primary id node I's leaseway reports (/status).
litefs_lw_primary() {
  curl -sf -m 2 "http://$(_lfs_get LW_ADMIN "$1")/status" 2>/dev/null | "$LFS_PY" -c '
import json, sys
try:
    p = json.load(sys.stdin).get("primary") or {}
    print(p.get("id") or "")
except Exception:
    print("")'
}
