#!/usr/bin/env bash
# `leaseway run ... -- <app command>`: the LiteFS exec pattern (issue 5, SPEC §7).
#
#   - the app starts after --migrate-command succeeded (a failing one is retried first);
#     the gate stays closed until the app answers --upstream-health
#   - SIGTERM: gate draining, the request in flight completes, only then the app gets
#     SIGTERM; leaseway exits with the app's code (0 when the app dies of that signal)
#   - SIGINT is forwarded as SIGINT
#   - the app exits by itself -> leaseway drains and exits with the app's exit code
#   - an app that ignores SIGTERM is killed after --drain-timeout (exit 137)
#   - an app that cannot be started -> exit 127 (not found, also on PATH), 126 (not executable)
#   - leaseway SIGKILLed: the app gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and is
#     not left behind holding its port; so does a running --migrate-command
PX_DEADLINE=${PX_DEADLINE:-90}
. "$(dirname "$0")/../lib/proxy.sh"

T=$PX_TMP
# The app: /healthz, /slow?ms=N; records start and signals in $T/events; on a signal it
# exits with $EXIT_ON_SIGNAL after 200 ms, or ignores it with IGNORE=1, or dies of it with DIE=1.
cat >"$T/app.py" <<'PYEOF'
import http.server, os, signal, sys, threading, time
port, events = int(sys.argv[1]), sys.argv[2]
def note(what):
    with open(events, "a") as f:
        f.write("%.6f %s\n" % (time.time(), what))
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(int(self.path.split("ms=")[1]) / 1000)
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
def on_signal(sig, frame):
    note("signal " + signal.Signals(sig).name)
    if os.environ.get("IGNORE") == "1":
        return
    if os.environ.get("DIE") == "1":
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    threading.Timer(0.2, lambda: os._exit(int(os.environ.get("EXIT_ON_SIGNAL", "0")))).start()
signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
if os.environ.get("EXIT_AFTER"):
    threading.Timer(float(os.environ["EXIT_AFTER"]), lambda: (note("exit by itself"), os._exit(3))).start()
s = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
note("app started")
s.serve_forever()
PYEOF

# sup NAME [env...] -- leaseway flags: start a supervised leaseway; sets SUP_PID, SUP_PORT, SUP_ADMIN.
sup() {
    local name=$1
    shift
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    SUP_PORT=$(px_free_port)
    SUP_ADMIN=$(px_free_port)
    local app
    app=$(px_free_port)
    : >"$T/events.$name"
    env "${envs[@]}" "$LEASEWAY_BIN" run --listen "127.0.0.1:$SUP_PORT" --admin "127.0.0.1:$SUP_ADMIN" --workers 1 \
        --target "127.0.0.1:$app" --instance "$name" "$@" \
        -- "$PYTHON" "$T/app.py" "$app" "$T/events.$name" >"$T/leaseway.$name.log" 2>&1 &
    SUP_PID=$!
    px_register_pid "$SUP_PID"
}
# wait_exit PID SECONDS: sets EXIT (or "timeout")
wait_exit() {
    local i
    for ((i = 0; i < $2 * 20; i++)); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$1" 2>/dev/null; then
        EXIT=timeout
        kill -KILL "$1"
    fi
    wait "$1" 2>/dev/null
    local rc=$?
    [ "$EXIT" = timeout ] || EXIT=$rc
}
ev_time() { awk -v w="$2" '$0 ~ w { print $1; exit }' "$T/events.$1"; }

# --- 1. migrate command first, then the app; gate follows the app's health ----------------
EXIT=
sup one -- --upstream-health /healthz --drain-timeout 5s \
    --migrate-command "n=\$(grep -c migrate $T/events.one); echo \$(date +%s.%N) migrate >> $T/events.one; test \$n -ge 1"
px_wait_http "http://127.0.0.1:$SUP_ADMIN/health" 15 || px_die "gate never opened: $(tail -5 "$T/leaseway.one.log")"
order=$(awk '{print $2}' "$T/events.one" | tr '\n' ' ')
expect_eq "the app starts only after the migrate command succeeded (the first try failed)" "$order" "migrate migrate app "
expect_match "the gate waited for the app's health" "$(cat "$T/leaseway.one.log")" 'reason="app not healthy: GET /healthz'

# In-flight request, then SIGTERM: the request completes before the app hears anything.
curl -s -o "$T/slow.out" -w '%{http_code} %{time_total}' -m 10 "http://127.0.0.1:$SUP_PORT/slow?ms=1500" >"$T/slow.code" &
CURL=$!
sleep 0.4
kill -TERM "$SUP_PID"
sleep 0.2
expect_match "SIGTERM: /health says draining" "$(curl -s -m 1 "http://127.0.0.1:$SUP_ADMIN/health")" '^draining'
wait "$CURL"
done_at=$(date +%s.%N)
expect_match "SIGTERM: the request in flight completed" "$(cat "$T/slow.code")" '^200 '
wait_exit "$SUP_PID" 10
expect_eq "SIGTERM: leaseway exits with the app's code" "$EXIT" 0
sig_at=$(ev_time one "signal SIGTERM")
check "SIGTERM: the app got SIGTERM" [ -n "$sig_at" ]
check "SIGTERM: ... only after the in-flight request was done (drain first)" \
    awk -v a="$sig_at" -v b="$done_at" 'BEGIN { exit !(a + 0.05 >= b - 0.3) }'
log=$(cat "$T/leaseway.one.log")
expect_match "SIGTERM: log order drained -> stopping the app -> stopped" "$log" 'msg="drained".*msg="stopping the app".*msg="app stopped".*msg="stopped" exit_code=0'

# --- 2. SIGINT is forwarded as SIGINT; the app's own exit code is kept ----------------------
sup two EXIT_ON_SIGNAL=5 -- --drain-timeout 5s
px_wait_http "http://127.0.0.1:$SUP_PORT/healthz" 10 || px_die "two: app not reachable"
kill -INT "$SUP_PID"
wait_exit "$SUP_PID" 10
expect_eq "SIGINT: leaseway exits with the app's code" "$EXIT" 5
check "SIGINT: forwarded as SIGINT" grep -q "signal SIGINT" "$T/events.two"

# --- 3. the app dies of the forwarded signal: a clean stop, exit 0 -----------------------
sup three DIE=1 -- --drain-timeout 5s
px_wait_http "http://127.0.0.1:$SUP_PORT/healthz" 10 || px_die "three: app not reachable"
kill -TERM "$SUP_PID"
wait_exit "$SUP_PID" 10
expect_eq "app killed by the SIGTERM we forwarded: exit 0" "$EXIT" 0

# --- 4. the app exits by itself ----------------------------------------------------------
sup four EXIT_AFTER=1.5 -- --drain-timeout 5s
px_wait_http "http://127.0.0.1:$SUP_PORT/healthz" 10 || px_die "four: app not reachable"
wait_exit "$SUP_PID" 10
expect_eq "app exits by itself with 3: leaseway drains and exits 3" "$EXIT" 3
expect_match "app exit: logged, then shut down" "$(cat "$T/leaseway.four.log")" 'app exited by itself.*cause=app-exited.*stopped" exit_code=3'

# --- 5. an app that ignores SIGTERM is killed at --drain-timeout ----------------------------
sup five IGNORE=1 -- --drain-timeout 1s
px_wait_http "http://127.0.0.1:$SUP_PORT/healthz" 10 || px_die "five: app not reachable"
t0=$(date +%s%N)
kill -TERM "$SUP_PID"
wait_exit "$SUP_PID" 10
ms=$((($(date +%s%N) - t0) / 1000000))
expect_eq "app ignoring SIGTERM: SIGKILLed, leaseway exits 137" "$EXIT" 137
check "... after about --drain-timeout 1s (${ms} ms)" [ "$ms" -ge 900 ] && [ "$ms" -lt 4000 ]

# --- 6. the app cannot be started ----------------------------------------------------------
"$LEASEWAY_BIN" run --listen "127.0.0.1:$(px_free_port)" --admin off --workers 1 --target 127.0.0.1:1 \
    -- /nonexistent/app >"$T/leaseway.six.log" 2>&1 &
P6=$!
wait_exit "$P6" 10
expect_eq "app not found: exit 127" "$EXIT" 127
check "app not found: logged" grep -q 'cannot start the app' "$T/leaseway.six.log"
# Looked up on PATH by leaseway itself (the command is exec'd by a `leaseway __child` step).
"$LEASEWAY_BIN" run --listen "127.0.0.1:$(px_free_port)" --admin off --workers 1 --target 127.0.0.1:1 \
    -- no-such-command-on-path >"$T/leaseway.six-b.log" 2>&1 &
P6=$!
wait_exit "$P6" 10
expect_eq "app not on PATH: exit 127" "$EXIT" 127
printf 'echo hi\n' >"$T/not-executable"
chmod 644 "$T/not-executable"
"$LEASEWAY_BIN" run --listen "127.0.0.1:$(px_free_port)" --admin off --workers 1 --target 127.0.0.1:1 \
    -- "$T/not-executable" >"$T/leaseway.six-c.log" 2>&1 &
P6=$!
wait_exit "$P6" 10
expect_eq "app not executable: exit 126" "$EXIT" 126
expect_match "... logged with the reason" "$(cat "$T/leaseway.six-c.log")" 'cannot start the app.*Permission denied'

# --- 7. leaseway dies without stopping the app (SIGKILL, the OOM killer) ---------------------
sup seven -- --drain-timeout 5s
px_wait_http "http://127.0.0.1:$SUP_PORT/healthz" 10 || px_die "seven: app not reachable"
app_pid=$(pgrep -P "$SUP_PID" | head -1)
check "the app is leaseway's child" [ -n "$app_pid" ]
expect_match "... and runs the app's command (the __child step exec'd it)" \
    "$(tr '\0' ' ' <"/proc/$app_pid/cmdline")" "app.py"
kill -KILL "$SUP_PID"
EXIT=
wait_exit "$app_pid" 5
check "leaseway SIGKILLed: the app is gone within 5 s" [ "$EXIT" != timeout ]
check "... told by SIGTERM (PR_SET_PDEATHSIG), so it could shut down cleanly" grep -q "signal SIGTERM" "$T/events.seven"

# A --migrate-command still running when leaseway is SIGKILLed is stopped the same way.
sup eight -- --drain-timeout 5s --migrate-command "echo \$\$ > $T/migrate.pid; exec sleep 60"
for ((i = 0; i < 100; i++)); do [ -s "$T/migrate.pid" ] && break; sleep 0.05; done
mig_pid=$(cat "$T/migrate.pid" 2>/dev/null)
check "the migrate command is running" kill -0 "${mig_pid:-none}"
kill -KILL "$SUP_PID"
EXIT=
wait_exit "$mig_pid" 5
check "leaseway SIGKILLed: the migrate command is gone within 5 s" [ "$EXIT" != timeout ]

finish
