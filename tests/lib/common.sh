# shellcheck shell=bash
# tests/lib/common.sh — small helpers for leaseway's shell tests. Source it:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
#
# Sourcing installs `trap cleanup EXIT` (and turns INT/TERM into an exit so the
# trap runs). A test that needs its own EXIT trap must call `cleanup` from it.
#
# Per-test state (handed-out ports, registered pids, temp dirs) lives in files
# under ${TMPDIR:-/tmp}/leaseway-state.<pid of the test shell>, so helpers also
# work when called inside $( ... ).

[ -n "${_LEASEWAY_COMMON_SH:-}" ] && return 0
_LEASEWAY_COMMON_SH=1

_LW_STATE="${TMPDIR:-/tmp}/leaseway-state.$$"

# Where things are, for every test (ctest sets LEASEWAY_SRC and LEASEWAY_BIN; by hand they default
# to this checkout and its build/): the binary, Debian's python3, the demo app.
: "${LEASEWAY_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${LEASEWAY_BIN:=$LEASEWAY_SRC/build/leaseway}"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
DEMO=$LEASEWAY_SRC/deploy/demo-app

_lw_state() { mkdir -p "$_LW_STATE" && printf '%s/%s' "$_LW_STATE" "$1"; }

# die MSG... — print "FAIL: MSG" to stderr and exit 1 (the EXIT trap cleans up).
die() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}

# free_port — print a TCP port on 127.0.0.1 that the kernel reports free (bind
# to port 0) and that is also free for UDP. Never hands out the same port twice
# within one test, even when several are picked before any is bound.
free_port() {
  local used port tries=0
  used=$(_lw_state ports)
  touch "$used"
  while [ $tries -lt 50 ]; do
    tries=$((tries + 1))
    port=$(python3 -c '
import socket
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.bind(("127.0.0.1", 0))
p = t.getsockname()[1]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("127.0.0.1", p))
print(p)
' 2>/dev/null) || continue
    grep -qx "$port" "$used" && continue
    echo "$port" >>"$used"
    echo "$port"
    return 0
  done
  echo "free_port: no free port found" >&2
  return 1
}

# wait_for CMD TIMEOUT_S [INTERVAL_S] — eval CMD (a string) until it succeeds;
# returns 0 as soon as it does, 1 after TIMEOUT_S seconds (default 10).
#   wait_for 'curl -sf http://127.0.0.1:8080/health' 5
wait_for() {
  local cmd=$1 timeout=${2:-10} interval=${3:-0.2} deadline
  deadline=$(($(date +%s%N) / 1000000 + ${timeout%.*} * 1000))
  while :; do
    if eval "$cmd" >/dev/null 2>&1; then return 0; fi
    [ $(($(date +%s%N) / 1000000)) -ge "$deadline" ] && return 1
    sleep "$interval"
  done
}

# register_pid PID... — kill PID at exit (SIGTERM, then SIGKILL after 5 s).
register_pid() {
  local f
  f=$(_lw_state pids)
  printf '%s\n' "$@" >>"$f"
}

# mktmp [NAME] — make and print a temp dir under ${TMPDIR:-/tmp}, removed at
# exit unless LEASEWAY_KEEP_TMP=1 (then its path is printed on failure).
mktmp() {
  local d f
  d=$(mktemp -d "${TMPDIR:-/tmp}/leaseway-${1:-test}.XXXXXX") || return 1
  f=$(_lw_state tmpdirs)
  echo "$d" >>"$f"
  echo "$d"
}

# kill_wait PID [TIMEOUT_S] — SIGTERM, wait up to TIMEOUT_S (default 5), then
# SIGKILL. Reaps PID if it is a child of this shell.
kill_wait() {
  local pid=$1 timeout=${2:-5}
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" 2>/dev/null || true
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_for "! kill -0 $pid" "$timeout" 0.1; then
    kill -KILL "$pid" 2>/dev/null || true
    wait_for "! kill -0 $pid" 2 0.05 || true
  fi
  wait "$pid" 2>/dev/null || true
  return 0
}

# cleanup — kill registered pids, remove temp dirs and per-test state.
# Installed as the EXIT trap; safe to call more than once.
cleanup() {
  local rc=$? pid d
  if [ -f "$_LW_STATE/pids" ]; then
    while read -r pid; do
      [ -n "$pid" ] && kill_wait "$pid" 5
    done <"$_LW_STATE/pids"
  fi
  if [ -f "$_LW_STATE/tmpdirs" ]; then
    while read -r d; do
      [ -n "$d" ] || continue
      if [ "${LEASEWAY_KEEP_TMP:-0}" = 1 ]; then
        if [ "$rc" -ne 0 ]; then echo "kept: $d" >&2; fi
      else
        rm -rf "$d"
      fi
    done <"$_LW_STATE/tmpdirs"
  fi
  rm -rf "$_LW_STATE"
  return "$rc"
}

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# watchdog SECONDS MESSAGE — end this test (TERM to it and to its foreground command, so
# its EXIT trap runs and cleans up) if it is still running after SECONDS. Call once, early.
watchdog() {
  local secs=$1 msg=$2 me=$$
  (
    trap 'kill "$s" 2>/dev/null; exit 0' TERM
    sleep "$secs" &
    s=$!
    wait "$s"
    echo "FAIL: $msg" >&2
    kill -TERM "$me" 2>/dev/null
    # The test shell runs its TERM trap only once its foreground command ends:
    # end that command (any child of the test shell but this watchdog).
    for c in $(pgrep -P "$me"); do [ "$c" = "$BASHPID" ] || kill -TERM "$c" 2>/dev/null; done
    exit 0
  ) &
  register_pid $!
}

# show_tails N FILE... — the last N lines of each file that exists, on stderr (for a failed
# test's EXIT trap).
show_tails() {
  local n=$1 f
  shift
  for f in "$@"; do
    [ -f "$f" ] || continue
    echo "--- tail of $f" >&2
    tail -n "$n" "$f" >&2 || true
  done
}

# use_private_leaseway — run a private copy of $LEASEWAY_BIN, which other builds may relink
# while a long test runs; points LEASEWAY_BIN at the copy and says where it came from.
use_private_leaseway() {
  [ -x "$LEASEWAY_BIN" ] || die "no leaseway binary at $LEASEWAY_BIN (build first)"
  local dir
  dir=$(mktmp bin)
  cp "$LEASEWAY_BIN" "$dir/leaseway" || die "cannot copy $LEASEWAY_BIN"
  echo "leaseway: $LEASEWAY_BIN ($(date -u -r "$LEASEWAY_BIN" '+%H:%M:%S UTC'), $("$dir/leaseway" version 2>/dev/null | head -n 1)), repo HEAD $(git -C "$LEASEWAY_SRC" rev-parse --short HEAD 2>/dev/null || echo '?')"
  LEASEWAY_BIN=$dir/leaseway
}
