# shellcheck shell=bash
# Helpers for integration tests that drive the real leaseway binary in front
# of a real app (tests/lib/upstream.py). Source it from a test script:
#
#   . "$(dirname "$0")/../lib/proxy.sh"
#   start_upstream app                  # exports UPSTREAM_PORT, UPSTREAM_PID
#   start_leaseway --header-timeout 2s  # exports LW_PORT, LW_ADMIN, LW_PID, LW_URL, LW_ADMIN_URL, LW_LOG
#   check "GET works" [ "$(curl -s "$LW_URL/echo" | jq_get method)" = GET ]
#   finish                              # exit 0, or 1 if any check failed
#
# Everything started here is killed (by pid) when the script exits; the
# temporary directory is removed unless a check failed or KEEP_TMP=1.
# Each script also gets a watchdog (PX_DEADLINE seconds, default 110) so a
# hung proxy cannot hold a test forever.

PX_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# common.sh (free_port, register_pid, wait_for, mktmp, die; its own EXIT
# trap, which ours chains to) is used when it is there.
if [ -f "$PX_LIB_DIR/common.sh" ]; then
    # shellcheck source=/dev/null
    . "$PX_LIB_DIR/common.sh"
fi

: "${LEASEWAY_SRC:=$(cd "$PX_LIB_DIR/../.." && pwd)}"
: "${LEASEWAY_BIN:=$LEASEWAY_SRC/build/leaseway}"
: "${PYTHON:=/usr/bin/python3}"
[ -x "$PYTHON" ] || PYTHON=python3
export LEASEWAY_SRC LEASEWAY_BIN PYTHON
UPSTREAM_PY="$PX_LIB_DIR/upstream.py"
export PYTHONPATH="$PX_LIB_DIR${PYTHONPATH:+:$PYTHONPATH}"

PX_NAME=${PX_NAME_OVERRIDE:-$(basename "$0" .sh)}
PX_FAILS=0
PX_PASSES=0
PX_PIDS=()
PX_TMP=$(mktemp -d "${TMPDIR:-/tmp}/lw-$PX_NAME.XXXXXX")
export PX_TMP

px_log() { printf '[%s %s] %s\n' "$PX_NAME" "$(date +%H:%M:%S.%3N)" "$*" >&2; }
px_die() {
    px_log "FATAL: $*"
    PX_FAILS=$((PX_FAILS + 1))
    exit 1
}
px_skip() {
    px_log "SKIP: $*"
    exit 77
}

# check DESCRIPTION COMMAND...: run the command, record pass/fail, go on.
check() {
    local desc=$1
    shift
    if "$@"; then
        PX_PASSES=$((PX_PASSES + 1))
        printf 'ok   - %s\n' "$desc"
    else
        PX_FAILS=$((PX_FAILS + 1))
        printf 'FAIL - %s\n' "$desc"
    fi
}
# expect_eq DESCRIPTION ACTUAL EXPECTED
expect_eq() {
    if [ "$2" = "$3" ]; then
        PX_PASSES=$((PX_PASSES + 1))
        printf 'ok   - %s\n' "$1"
    else
        PX_FAILS=$((PX_FAILS + 1))
        printf 'FAIL - %s: got [%s], expected [%s]\n' "$1" "$2" "$3"
    fi
}
# expect_match DESCRIPTION ACTUAL ERE
expect_match() {
    if [[ $2 =~ $3 ]]; then
        PX_PASSES=$((PX_PASSES + 1))
        printf 'ok   - %s\n' "$1"
    else
        PX_FAILS=$((PX_FAILS + 1))
        printf 'FAIL - %s: got [%s], expected to match /%s/\n' "$1" "$2" "$3"
    fi
}
# warn_unless DESCRIPTION COMMAND...: a check on behaviour the SPEC leaves
# open; reported, never fails the test.
warn_unless() {
    local desc=$1
    shift
    if "$@"; then
        printf 'ok   - %s\n' "$desc"
    else
        printf 'WARN - %s (not required by SPEC)\n' "$desc"
    fi
}
# pyrun LABEL: run a python script from stdin; its lines "ok"/"FAIL" are
# counted like check's. The script exits non-zero when something failed.
pyrun() {
    local label=$1 out rc
    shift
    out=$("$PYTHON" - "$@" 2>&1)
    rc=$?
    printf '%s\n' "$out" | sed "s/^/    [$label] /"
    local nf np
    nf=$(printf '%s\n' "$out" | grep -c '^FAIL' || true)
    np=$(printf '%s\n' "$out" | grep -c '^ok' || true)
    PX_PASSES=$((PX_PASSES + np))
    if [ "$rc" -ne 0 ] && [ "$nf" -eq 0 ]; then
        nf=1
        printf 'FAIL - %s: python exited %d\n' "$label" "$rc"
    fi
    PX_FAILS=$((PX_FAILS + nf))
    return "$rc"
}

finish() {
    if [ "$PX_FAILS" -gt 0 ]; then
        px_log "$PX_FAILS check(s) failed, $PX_PASSES passed"
        exit 1
    fi
    px_log "all $PX_PASSES checks passed"
    exit 0
}

# With common.sh present its register_pid also kills the pid at exit.
px_register_pid() {
    PX_PIDS+=("$1")
    if declare -F register_pid >/dev/null; then register_pid "$1"; fi
}

px_cleanup() {
    local rc=$?
    trap - EXIT
    local p
    for p in "${PX_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in "${PX_PIDS[@]}"; do
        local i
        for i in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null
    done
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
        local f
        for f in "$PX_TMP"/leaseway*.log; do
            [ -f "$f" ] || continue
            px_log "--- tail of $f ---"
            tail -n 40 "$f" >&2
        done
        for f in "$PX_TMP"/upstream*.log; do
            [ -s "$f" ] || continue
            px_log "--- tail of $f ---"
            tail -n 10 "$f" >&2
        done
    fi
    if [ "${KEEP_TMP:-0}" = 1 ]; then
        px_log "kept $PX_TMP"
    else
        rm -rf "$PX_TMP"
    fi
    # common.sh's cleanup (or any earlier EXIT trap) runs too, seeing our status.
    if [ -n "$PX_PREV_EXIT_TRAP" ]; then
        (exit "$rc")
        eval "$PX_PREV_EXIT_TRAP"
    fi
    exit "$rc"
}
PX_PREV_EXIT_TRAP=$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")
trap px_cleanup EXIT
trap 'px_log "interrupted"; exit 1' INT TERM

# Watchdog: past the deadline, kill our children and ourselves.
px_watchdog() {
    local deadline=${PX_DEADLINE:-110} me=$$
    (
        for ((i = 0; i < deadline * 4; i++)); do
            sleep 0.25
            kill -0 "$me" 2>/dev/null || exit 0
        done
        echo "[$PX_NAME] TIMEOUT after ${deadline}s" >&2
        for c in $(ps -o pid= --ppid "$me"); do
            [ "$c" = "$BASHPID" ] || kill -TERM "$c" 2>/dev/null
        done
        kill -TERM "$me" 2>/dev/null
    ) &
    PX_WATCHDOG=$!
    disown "$PX_WATCHDOG" 2>/dev/null
    PX_PIDS+=("$PX_WATCHDOG")
}
px_watchdog

command -v curl >/dev/null || px_skip "curl not installed"
[ -x "$LEASEWAY_BIN" ] || px_die "leaseway binary not found at $LEASEWAY_BIN (build first)"

# px_free_port: print a TCP port that was free a moment ago (common.sh's
# free_port when present: it never hands out the same port twice in a test).
px_free_port() {
    if declare -F free_port >/dev/null; then
        free_port
    else
        "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
    fi
}

# px_wait_http URL [SECONDS] [CODE]: wait until URL answers CODE (default 200).
px_wait_http() {
    local url=$1 secs=${2:-10} want=${3:-200} i code
    for ((i = 0; i < secs * 10; i++)); do
        code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$url" 2>/dev/null)
        [ "$code" = "$want" ] && return 0
        sleep 0.1
    done
    return 1
}

# start_upstream NAME [upstream.py args]: a real app on a free port.
# Exports UPSTREAM_PORT and UPSTREAM_PID (the last one started).
start_upstream() {
    local name=${1:-app}
    shift
    local ready="$PX_TMP/upstream-$name.port"
    rm -f "$ready"
    "$PYTHON" "$UPSTREAM_PY" --name "$name" --port 0 --ready-file "$ready" "$@" \
        >"$PX_TMP/upstream-$name.log" 2>&1 &
    UPSTREAM_PID=$!
    px_register_pid "$UPSTREAM_PID"
    local i
    for ((i = 0; i < 100; i++)); do
        [ -s "$ready" ] && break
        kill -0 "$UPSTREAM_PID" 2>/dev/null || px_die "upstream $name died: $(tail -5 "$PX_TMP/upstream-$name.log")"
        sleep 0.05
    done
    [ -s "$ready" ] || px_die "upstream $name not ready"
    UPSTREAM_PORT=$(cat "$ready")
    export UPSTREAM_PORT UPSTREAM_PID
    px_log "upstream $name on 127.0.0.1:$UPSTREAM_PORT (pid $UPSTREAM_PID)"
}

# start_leaseway [extra flags]: leaseway in static mode in front of
# 127.0.0.1:$UPSTREAM_PORT (or LW_TARGET, or a --target among the flags).
# LW_WORKERS (1), LW_INSTANCE (i1), LW_REGION (r1) or PX_NO_REGION=1 adjust it.
# Waits for GET /health on the admin listener to answer 200.
PX_LW_N=0
start_leaseway() {
    local target=${LW_TARGET:-127.0.0.1:${UPSTREAM_PORT:-1}} a has_target=0
    for a in "$@"; do
        case $a in --target | --target=*) has_target=1 ;; esac
    done
    local attempt
    for attempt in 1 2 3; do
        PX_LW_N=$((PX_LW_N + 1))
        LW_PORT=$(px_free_port)
        LW_ADMIN=$(px_free_port)
        [ "$LW_PORT" = "$LW_ADMIN" ] && continue
        LW_LOG="$PX_TMP/leaseway.$PX_LW_N.log"
        local args=(run --listen "127.0.0.1:$LW_PORT" --admin "127.0.0.1:$LW_ADMIN"
            --workers "${LW_WORKERS:-1}" --instance "${LW_INSTANCE:-i1}")
        # PX_NO_REGION=1: no --region at all (tests of "Fly-Region when set").
        [ "${PX_NO_REGION:-0}" = 1 ] || args+=(--region "${LW_REGION:-r1}")
        [ "$has_target" = 1 ] || args+=(--target "$target")
        args+=("$@")
        px_log "starting: leaseway ${args[*]}"
        "$LEASEWAY_BIN" "${args[@]}" >"$LW_LOG" 2>&1 &
        LW_PID=$!
        px_register_pid "$LW_PID"
        LW_URL="http://127.0.0.1:$LW_PORT"
        LW_ADMIN_URL="http://127.0.0.1:$LW_ADMIN"
        export LW_PORT LW_ADMIN LW_PID LW_URL LW_ADMIN_URL LW_LOG
        local i
        for ((i = 0; i < 100; i++)); do
            if ! kill -0 "$LW_PID" 2>/dev/null; then
                break
            fi
            if [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$LW_ADMIN_URL/health" 2>/dev/null)" = 200 ]; then
                px_log "leaseway pid $LW_PID on $LW_URL, admin $LW_ADMIN_URL"
                return 0
            fi
            sleep 0.1
        done
        if kill -0 "$LW_PID" 2>/dev/null; then
            px_log "leaseway did not become healthy in 10s; log tail:"
            tail -n 30 "$LW_LOG" >&2
            px_die "leaseway not healthy"
        fi
        wait "$LW_PID" 2>/dev/null
        local rc=$?
        if grep -qi 'address already in use' "$LW_LOG"; then
            px_log "port race (attempt $attempt), retrying"
            continue
        fi
        px_log "leaseway exited with $rc during start; log tail:"
        tail -n 30 "$LW_LOG" >&2
        px_die "leaseway failed to start"
    done
    px_die "leaseway failed to start (ports)"
}

# stop_leaseway [SIGNAL] [SECONDS]: signal leaseway (default TERM), wait for
# it to exit (default 10 s). Sets LW_EXIT to its exit status, or to
# "timeout" after killing it with SIGKILL.
stop_leaseway() {
    local sig=${1:-TERM} secs=${2:-10} i
    [ -n "$LW_PID" ] || return 0
    kill -"$sig" "$LW_PID" 2>/dev/null
    for ((i = 0; i < secs * 20; i++)); do
        kill -0 "$LW_PID" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$LW_PID" 2>/dev/null; then
        kill -KILL "$LW_PID" 2>/dev/null
        wait "$LW_PID" 2>/dev/null
        LW_EXIT=timeout
    else
        wait "$LW_PID" 2>/dev/null
        LW_EXIT=$?
    fi
    export LW_EXIT
    LW_PID=
}

# lw_vmhwm [PID]: peak resident set size of leaseway in KiB.
lw_vmhwm() {
    awk '/^VmHWM:/ {print $2}' "/proc/${1:-$LW_PID}/status" 2>/dev/null
}

# json_get JSONFILE_OR_- PYTHON_EXPR: evaluate an expression on the parsed
# JSON (bound to j), print the result (strings bare, others as JSON).
json_get() {
    local src=$1 expr=$2
    "$PYTHON" -c '
import json, sys
src, expr = sys.argv[1], sys.argv[2]
j = json.load(sys.stdin if src == "-" else open(src))
v = eval(expr, {"j": j})
print(v if isinstance(v, str) else json.dumps(v))
' "$src" "$expr"
}

# px_now: a timestamp in seconds; px_since START: seconds elapsed since it.
px_now() { date +%s.%N; }
px_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
# px_lt A B: true when number A < number B.
px_lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
