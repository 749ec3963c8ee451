#!/usr/bin/env bash
# What a --migrate-command prints (SPEC §4: its output goes to the log), on the
# real binary with a static lease (this instance is the primary):
#   1. a command that prints 2 million lines without pause: the control thread
#      still answers /health within 1 s while it runs (the alive check, signals
#      and the admin listener share that thread), the log gets at most about
#      50 of its lines a second plus a count of the rest, the gate opens once
#      it is done, and SIGTERM is acted on at once
#   2. a command that fails with a database URL in its last line: /health, the
#      public 503 body and /status show the line with the credentials replaced
#      by <redacted>, never the password
. "$(dirname "$0")/../lib/proxy.sh"

start_upstream app

# start_gated NAME MIGRATE_COMMAND: leaseway whose gate starts closed (start_leaseway waits for 200)
start_gated() {
    LW_PORT=$(px_free_port)
    LW_ADMIN=$(px_free_port)
    LW_LOG="$PX_TMP/leaseway.$1.log"
    "$LEASEWAY_BIN" run --listen "127.0.0.1:$LW_PORT" --admin "127.0.0.1:$LW_ADMIN" --workers 1 \
        --instance i1 --target "127.0.0.1:$UPSTREAM_PORT" --migrate-command "$2" >"$LW_LOG" 2>&1 &
    LW_PID=$!
    px_register_pid "$LW_PID"
    LW_URL="http://127.0.0.1:$LW_PORT"
    LW_ADMIN_URL="http://127.0.0.1:$LW_ADMIN"
    wait_for "curl -s -o /dev/null -m 1 $LW_ADMIN_URL/health" 10 0.1 || px_die "leaseway ($1) did not start"
}

# --- 1. a command that prints without pause --------------------------------------------------
N=2000000
start_gated chatty "yes 'applying migration row' | head -n $N; sleep 2"
slow=0 answered=0
for _ in 1 2 3 4 5 6; do
    t0=$(px_now)
    code=$(curl -s -o /dev/null -m 3 -w '%{http_code}' "$LW_ADMIN_URL/health")
    [ "$code" = 503 ] && answered=$((answered + 1))
    px_lt "$(px_since "$t0")" 1 || slow=$((slow + 1))
    sleep 0.2
done
check "chatty migrate command: /health answered 503 (gate closed) 6 times of 6 while it ran" [ "$answered" = 6 ]
check "chatty migrate command: /health never took 1 s or more" [ "$slow" = 0 ]
check "chatty migrate command: the gate opens once it is done" \
    wait_for "[ \"\$(curl -s -o /dev/null -m 1 -w '%{http_code}' $LW_ADMIN_URL/health)\" = 200 ]" 60 0.2
logged=$(grep -c 'migrate command output"* line=' "$LW_LOG")
check "chatty migrate command: some of its lines are logged, not all $N ($logged)" \
    [ "$logged" -gt 0 -a "$logged" -lt 5000 ]
check "chatty migrate command: the lines left out are counted in the log" \
    grep -q 'migrate command output not logged.*lines=' "$LW_LOG"
t0=$(px_now)
kill -TERM "$LW_PID"
check "chatty migrate command: SIGTERM afterwards exits within 5 s" wait_for "! kill -0 $LW_PID 2>/dev/null" 5 0.1
px_log "exit after $(px_since "$t0") s"

# --- 2. a failing command whose output holds a credential --------------------------------------
start_gated failing "echo 'Error: P1000: authentication failed for postgres://admin:hunter2@10.0.0.5:5432/app'; exit 1"
check "failing migrate command: /health says it failed" \
    wait_for "curl -s -m 1 $LW_ADMIN_URL/health | grep -q 'failed'" 10 0.1
health=$(curl -s -m 2 "$LW_ADMIN_URL/health")
public=$(curl -s -m 2 -X POST "$LW_URL/echo")
status=$(curl -s -m 2 "$LW_ADMIN_URL/status")
px_log "health: $health"
px_log "public: $public"
for what in health public status; do
    check "failing migrate command: $what shows the last line without the password" \
        bash -c '! grep -q hunter2 <<<"$1" && grep -q "postgres://<redacted>@10.0.0.5" <<<"$1"' _ "${!what}"
done
check "failing migrate command: the log has no password either" bash -c "! grep -q hunter2 '$LW_LOG'"
stop_leaseway

finish
