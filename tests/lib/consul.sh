# shellcheck shell=bash
# tests/lib/consul.sh — run throwaway Consul dev agents on loopback for tests.
#
#   . "$(dirname "${BASH_SOURCE[0]}")/../lib/consul.sh"
#   consul_dev_start "$(mktmp consul)" || die "consul did not start"
#   curl -s "$CONSUL_HTTP_ADDR/v1/kv/foo"
#   consul_dev_stop
#
# The binary comes from tests/setup.sh (cache outside the repo); set
# LEASEWAY_CONSUL_BIN to use another one.

[ -n "${_LEASEWAY_CONSUL_SH:-}" ] && return 0
_LEASEWAY_CONSUL_SH=1

# shellcheck source-path=SCRIPTDIR
# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# consul_bin — print the path of the Consul binary; fails if setup.sh was not run.
consul_bin() {
  local bin=${LEASEWAY_CONSUL_BIN:-${LEASEWAY_CACHE:-$HOME/.cache/leaseway}/bin/consul}
  if [ ! -x "$bin" ]; then
    echo "consul_bin: no Consul binary at $bin — run: bash tests/setup.sh" >&2
    return 1
  fi
  echo "$bin"
}

# consul_dev_start DIR [EXTRA_AGENT_ARGS...]
# Start `consul agent -dev` on 127.0.0.1 with fresh free ports, no gRPC
# listeners, session_ttl_min = 1s (CONSUL_SESSION_TTL_MIN=DURATION for another, or set it empty
# for Consul's default, 10s) and no update check. Logs to DIR/consul.log,
# pid in DIR/consul.pid (also registered for kill at exit). Waits up to
# CONSUL_START_TIMEOUT (default 30) s for a leader and a working KV PUT.
# Exports CONSUL_HTTP_ADDR, CONSUL_HTTP_PORT, CONSUL_DNS_PORT, CONSUL_PID,
# CONSUL_NODE, CONSUL_DIR. free_port's ports can be taken by another process before the
# agent binds them: an agent that exits with "address already in use" is started again
# with new ports, up to CONSUL_START_ATTEMPTS (default 3) times in all (the first
# attempt's DNS port can be forced with CONSUL_FIRST_DNS_PORT, for the test of that).
# On failure: prints the log tail, stops the agent, returns 1.
consul_dev_start() {
  local dir=${1:?consul_dev_start DIR [args...]}
  shift
  local bin http dns server serf_lan serf_wan node pid ttl_min=() attempt attempts=${CONSUL_START_ATTEMPTS:-3}
  [ -z "${CONSUL_SESSION_TTL_MIN-1s}" ] || ttl_min=(-hcl "session_ttl_min = \"${CONSUL_SESSION_TTL_MIN-1s}\"")
  bin=$(consul_bin) || return 1
  mkdir -p "$dir" || return 1
  for ((attempt = 1; attempt <= attempts; attempt++)); do
    http=$(free_port) && dns=$(free_port) && server=$(free_port) &&
      serf_lan=$(free_port) && serf_wan=$(free_port) || return 1
    [ "$attempt" = 1 ] && [ -n "${CONSUL_FIRST_DNS_PORT:-}" ] && dns=$CONSUL_FIRST_DNS_PORT
    node="leaseway-test-$$-${RANDOM}"

    "$bin" agent -dev \
      -bind 127.0.0.1 -client 127.0.0.1 -node "$node" \
      -http-port "$http" -dns-port "$dns" -server-port "$server" \
      -serf-lan-port "$serf_lan" -serf-wan-port "$serf_wan" \
      -grpc-port=-1 -hcl 'ports { grpc_tls = -1 }' \
      "${ttl_min[@]}" \
      -hcl 'disable_update_check = true' \
      "$@" >"$dir/consul.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/consul.pid"
    register_pid "$pid"

    export CONSUL_HTTP_ADDR="http://127.0.0.1:$http" CONSUL_HTTP_PORT=$http \
      CONSUL_DNS_PORT=$dns CONSUL_PID=$pid CONSUL_NODE=$node CONSUL_DIR=$dir

    # (an agent that exits ends the wait at once)
    if wait_for "_consul_ready $pid || ! kill -0 $pid 2>/dev/null" "${CONSUL_START_TIMEOUT:-30}" 0.2 &&
      kill -0 "$pid" 2>/dev/null; then
      curl -sf -m 2 -X DELETE "$CONSUL_HTTP_ADDR/v1/kv/_leaseway/ready" >/dev/null || true
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null && [ "$attempt" -lt "$attempts" ] &&
      grep -q 'address already in use' "$dir/consul.log"; then
      echo "consul_dev_start: agent (pid $pid) exited: $(grep -o 'listen [a-z]* [0-9.:]*: bind: address already in use' "$dir/consul.log" | head -n 1); again with new ports" >&2
      wait "$pid" 2>/dev/null || true
      mv "$dir/consul.log" "$dir/consul.log.$attempt"
      continue
    fi
    break
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "consul_dev_start: agent (pid $pid) not ready after ${CONSUL_START_TIMEOUT:-30} s" >&2
  else
    echo "consul_dev_start: agent (pid $pid) exited" >&2
  fi
  echo "--- tail of $dir/consul.log ---" >&2
  tail -n 30 "$dir/consul.log" >&2
  consul_dev_stop "$dir"
  return 1
}

# _consul_ready PID — agent alive, has a leader, and a KV PUT succeeds.
_consul_ready() {
  local out
  kill -0 "$1" 2>/dev/null || return 1
  out=$(curl -sf -m 2 "$CONSUL_HTTP_ADDR/v1/status/leader") || return 1
  [ -n "$out" ] && [ "$out" != '""' ] || return 1
  out=$(curl -sf -m 2 -X PUT -d ok "$CONSUL_HTTP_ADDR/v1/kv/_leaseway/ready") || return 1
  [ "$out" = true ]
}

# consul_dev_stop [DIR] — stop the agent started in DIR (default: $CONSUL_PID):
# SIGTERM, wait up to 10 s, then SIGKILL.
consul_dev_stop() {
  local pid
  if [ -n "${1:-}" ]; then
    pid=$(cat "$1/consul.pid" 2>/dev/null) || pid=
  else
    pid=${CONSUL_PID:-}
  fi
  [ -n "$pid" ] || return 0
  kill_wait "$pid" 10
}

# consul_test NAME SECONDS — the opening of a test script on a real Consul dev agent: a
# watchdog of SECONDS, the leaseway binary and Consul checked (exit 77, "skipped", without
# Consul), the check counters of ok/bad below (FAILS, PASSES), a temp dir in DIR and a dev
# agent started in $DIR/consul (CONSUL_HTTP_ADDR etc., as consul_dev_start).
consul_test() {
  local name=${1:?consul_test NAME SECONDS} secs=${2:?consul_test NAME SECONDS}
  watchdog "$secs" "$name timed out after $secs s"
  [ -x "$LEASEWAY_BIN" ] || die "no leaseway binary at $LEASEWAY_BIN (build first)"
  consul_bin >/dev/null || exit 77
  FAILS=0
  PASSES=0
  DIR=$(mktmp "$name")
  consul_dev_start "$DIR/consul" || die "consul did not start"
}

# ok MESSAGE / bad MESSAGE — one check's result, counted in PASSES / FAILS.
ok() {
  PASSES=$((PASSES + 1))
  printf 'ok   - %s\n' "$*"
}
bad() {
  FAILS=$((FAILS + 1))
  printf 'FAIL - %s\n' "$*"
}
