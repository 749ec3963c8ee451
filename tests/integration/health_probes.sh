#!/usr/bin/env bash
# The migration gate and app health against the real binary (SPEC §2 step 2, §4, §6):
#
#   prisma:  missing database -> half-applied -> complete (gate opens, /status
#            applied/pending follow) -> rolled back (closes again on the 10 s
#            re-check) -> re-applied (opens)
#   command: exit 1 -> exit 0 opens -> exit 1 closes; the last output line is the reason
#   http:    503 -> 200 opens -> 503 closes
#   --upstream-health: 503 -> 200 opens; a failed check or two (a blip) leave it open; three in a
#   row close it (HAProxy's fall 3); two good checks in a row reopen it (rise 2)
#   while closed: public requests get 503, Leaseway-Gate: closed, Retry-After: 1 and the
#   reason; passthrough paths are still served; /health is 503 with the reason
#   bad input: a database file that is not SQLite; a probe command that hangs is
#   killed at its 30 s timeout (with its children) while /health keeps answering;
#   bad probe configurations and a missing migrations dir stop start-up (exit != 0)
PX_DEADLINE=${PX_DEADLINE:-150}
. "$(dirname "$0")/../lib/proxy.sh"
command -v sqlite3 >/dev/null || px_skip "sqlite3 CLI not installed"

T=$PX_TMP
start_upstream app

# A tiny app whose answers are switched by files: /migrations <- http.ok, /healthz <- app.ok.
"$PYTHON" - "$T" >"$T/toggle.log" 2>&1 <<'PYEOF' &
import http.server, os, sys
T = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        name = {"/migrations": "http.ok", "/healthz": "app.ok"}.get(self.path.split("?")[0])
        ok = name is None or os.path.exists(os.path.join(T, name))
        body = b"ok\n" if ok else b"not yet\n"
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
open(os.path.join(T, "toggle.port.tmp"), "w").write(str(s.server_address[1]))
os.rename(os.path.join(T, "toggle.port.tmp"), os.path.join(T, "toggle.port"))
s.serve_forever()
PYEOF
px_register_pid $!
for _ in $(seq 100); do [ -s "$T/toggle.port" ] && break; sleep 0.05; done
TOGGLE=$(cat "$T/toggle.port") || px_die "toggle app did not start"

# --- the Prisma layout: two migrations, the lock file, a folder that is not a migration ---
MIG=$T/prisma/migrations
M1=20240101000000_init
M2=20240215120000_add_note
mkdir -p "$MIG/$M1" "$MIG/$M2" "$MIG/not_a_migration"
echo 'CREATE TABLE "Note" ("id" TEXT NOT NULL PRIMARY KEY);' >"$MIG/$M1/migration.sql"
echo 'ALTER TABLE "Note" ADD COLUMN "body" TEXT;' >"$MIG/$M2/migration.sql"
echo 'provider = "sqlite"' >"$MIG/migration_lock.toml"
DB=$T/prisma/data.db
PRISMA_DDL='CREATE TABLE "_prisma_migrations" (
    "id"                    TEXT PRIMARY KEY NOT NULL,
    "checksum"              TEXT NOT NULL,
    "finished_at"           DATETIME,
    "migration_name"        TEXT NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        DATETIME,
    "started_at"            DATETIME NOT NULL DEFAULT current_timestamp,
    "applied_steps_count"   INTEGER UNSIGNED NOT NULL DEFAULT 0
);'
sql() { sqlite3 -cmd '.timeout 2000' "$DB" "$@"; }

# lw NAME ARGS...: start a leaseway (not waiting for its gate); sets PORT_<NAME>, ADMIN_<NAME>, PID_<NAME>.
# Ports are picked free but may be taken by someone else before we bind: then try again.
lw() {
    local name=$1 port admin pid attempt
    shift
    for attempt in 1 2 3; do
        port=$(px_free_port)
        admin=$(px_free_port)
        [ "$port" = "$admin" ] && continue
        "$LEASEWAY_BIN" run --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" --workers 1 \
            --instance "$name" --drain-timeout 2s "$@" >"$T/leaseway.$name.log" 2>&1 &
        pid=$!
        px_register_pid "$pid"
        printf -v "PORT_$name" %s "$port"
        printf -v "ADMIN_$name" %s "$admin"
        printf -v "PID_$name" %s "$pid"
        for _ in $(seq 100); do
            curl -s -o /dev/null -m 1 "http://127.0.0.1:$admin/health" && return 0
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        if kill -0 "$pid" 2>/dev/null; then
            px_die "leaseway $name: no admin listener"
        fi
        grep -qi 'address already in use\|cannot listen' "$T/leaseway.$name.log" ||
            px_die "leaseway $name exited at start: $(tail -3 "$T/leaseway.$name.log")"
        px_log "leaseway $name: port taken (attempt $attempt), again"
    done
    px_die "leaseway $name: no free ports"
}
admin_of() { local v="ADMIN_$1"; echo "${!v}"; }
port_of() { local v="PORT_$1"; echo "${!v}"; }
health_code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$(admin_of "$1")/health"; }
health_body() { curl -s -m 2 "http://127.0.0.1:$(admin_of "$1")/health"; }
# wait_gate NAME CODE SECONDS
wait_gate() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        [ "$(health_code "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    return 1
}
status_json() { curl -s -m 2 "http://127.0.0.1:$(admin_of "$1")/status"; }

# closed_answers NAME REASON_ERE: the public side while the gate is closed.
closed_answers() {
    local name=$1 want=$2 hdrs body
    hdrs=$(curl -s -m 2 -D - -o "$T/body.$name" "http://127.0.0.1:$(port_of "$name")/echo")
    body=$(cat "$T/body.$name")
    expect_match "$name: closed gate answers 503" "$hdrs" '^HTTP/1.1 503'
    expect_match "$name: Leaseway-Gate: closed" "$hdrs" $'[Ll]easeway-[Gg]ate: closed\r'
    expect_match "$name: Retry-After: 1" "$hdrs" $'[Rr]etry-[Aa]fter: 1\r'
    expect_match "$name: body gives the reason" "$body" "$want"
    expect_match "$name: /health 503 with the reason" "$(health_body "$name")" "^closed: .*$want"
}

# ---------------------------------------------------------------------------------------
lw P --target "127.0.0.1:$UPSTREAM_PORT" --migrations "prisma:$DB:$MIG" --passthrough '/status/*'
lw C --target "127.0.0.1:$UPSTREAM_PORT" \
    --migrations "command:if test -f $T/cmd.ok; then echo fine; else echo 'waiting: 1 migration pending'; exit 1; fi"
lw H --target "127.0.0.1:$UPSTREAM_PORT" --migrations "http:http://127.0.0.1:$TOGGLE/migrations"
lw U --target "127.0.0.1:$TOGGLE" --upstream-health /healthz
lw G --target "127.0.0.1:$UPSTREAM_PORT" --migrations "command:echo \$\$ >> $T/hung.pids; exec sleep 300"
printf 'SQLite format 2, or rather not a database at all: %0200d\n' 0 >"$T/garbage.db"
lw B --target "127.0.0.1:$UPSTREAM_PORT" --migrations "prisma:$T/garbage.db:$MIG"
T_HUNG=$(date +%s)
sleep 1.5

# --- closed at start, each with its own reason ------------------------------------------
closed_answers P "migrations pending: database $DB: No such file or directory"
code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$PORT_P/status/204")
expect_eq "P: passthrough path served while the gate is closed" "$code" 204
st=$(status_json P)
expect_eq "P: /status gate.state closed" "$(json_get - 'j["gate"]["state"]' <<<"$st")" closed
expect_eq "P: /status migrations before any: applied 0, both pending" \
    "$(json_get - 'j["gate"]["migrations"]' <<<"$st")" "{\"applied\": 0, \"pending\": [\"$M1\", \"$M2\"]}"
[ ! -e "$DB" ] || check "P: the probe must not create the database" false
closed_answers C "migrations pending: probe command exit code 1: waiting: 1 migration pending"
closed_answers H "migrations pending: probe http://127.0.0.1:$TOGGLE/migrations answered 503"
closed_answers U "app not healthy: GET /healthz answered 503"
closed_answers B "migrations pending: cannot read $T/garbage.db: file is not a database"

# --- prisma: half-applied keeps it closed, finished opens it ---------------------------
sql "$PRISMA_DDL
INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, started_at, applied_steps_count)
  VALUES ('a1', 'c1', current_timestamp, '$M1', current_timestamp, 1);
INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, started_at, applied_steps_count)
  VALUES ('b1', 'c2', NULL, '$M2', current_timestamp, 0);"
sleep 1.5
closed_answers P "migrations pending: 1 of 2 pending: $M2 started but not finished"
expect_eq "P: /status migrations half-applied: applied 1, pending the second" \
    "$(status_json P | json_get - 'j["gate"]["migrations"]')" "{\"applied\": 1, \"pending\": [\"$M2\"]}"
sql "UPDATE _prisma_migrations SET finished_at = current_timestamp, applied_steps_count = 1 WHERE id = 'b1';"
check "P: finished migration opens the gate within 2 s" wait_gate P 200 2
expect_eq "P: public request served once open" \
    "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$PORT_P/echo")" 200
expect_eq "P: /status migrations complete" \
    "$(status_json P | json_get - 'j["gate"]["migrations"]')" "{\"applied\": 2, \"pending\": []}"

# --- the others open -------------------------------------------------------------------
touch "$T/cmd.ok" "$T/http.ok" "$T/app.ok"
check "C: exit 0 opens the gate within 2 s" wait_gate C 200 2
check "H: 200 opens the gate within 2 s" wait_gate H 200 2
check "U: app healthy opens the gate within 2 s" wait_gate U 200 2
expect_eq "U: public request served once open" \
    "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$PORT_U/anything")" 200

# --- a blip is not a fall: one or two failed checks in a row keep the gate open (fall 3) ------
rm -f "$T/app.ok"
blip_closed=0
for _ in $(seq 14); do # 1.4 s: at most two checks (one a second)
    [ "$(health_code U)" = 200 ] || blip_closed=1
    sleep 0.1
done
touch "$T/app.ok"
check "U: a check or two failing in a row (a blip) leaves the gate open" [ "$blip_closed" = 0 ]
check "U: ... and the failed check was logged as such" \
    grep -q 'msg="app check failed, still counted healthy".*fails=1' "$T/leaseway.U.log"
sleep 1.2 # a good check resets the count

# --- and close again on a later failure ------------------------------------------------
sql "UPDATE _prisma_migrations SET rolled_back_at = current_timestamp WHERE id = 'b1';"
rm -f "$T/cmd.ok" "$T/http.ok" "$T/app.ok"
check "U: unhealthy app closes the gate after three failed checks, within 4 s" wait_gate U 503 4
touch "$T/app.ok"
check "U: healthy again reopens it after two good checks in a row, within 3 s" wait_gate U 200 3
check "U: ... the first good check was logged, not yet reopening it" \
    grep -q 'msg="app check passed, not healthy yet".*oks=1' "$T/leaseway.U.log"
check "P: rolled-back migration closes the gate on the 10 s re-check" wait_gate P 503 12
check "C: failing command closes the gate on the 10 s re-check" wait_gate C 503 12
check "H: 503 closes the gate on the 10 s re-check" wait_gate H 503 12
expect_match "P: reason names the rolled-back migration" "$(health_body P)" "$M2 rolled back"
# Prisma re-applies a rolled-back migration with a new row.
sql "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, started_at, applied_steps_count)
  VALUES ('b2', 'c2', current_timestamp, '$M2', current_timestamp, 1);"
check "P: re-applied migration opens the gate again" wait_gate P 200 2

# --- a probe command that hangs is killed at its timeout --------------------------------
t0=$(date +%s%N)
expect_eq "G: /health answers at once while the probe command hangs" "$(health_code G)" 503
ms=$((($(date +%s%N) - t0) / 1000000))
check "G: ... within 500 ms (took ${ms} ms)" [ "$ms" -lt 500 ]
first=$(head -n 1 "$T/hung.pids")
check "G: the hung command is running before its timeout" kill -0 "$first"
left=$((T_HUNG + 33 - $(date +%s)))
[ "$left" -gt 0 ] && sleep "$left"
gone=0
for _ in $(seq 50); do
    if [ ! -e "/proc/$first" ] || grep -q '^State:.*Z' "/proc/$first/status" 2>/dev/null; then
        gone=1
        break
    fi
    sleep 0.1
done
check "G: the hung probe command was killed at its 30 s timeout" [ "$gone" = 1 ]
check "G: the timeout is logged" grep -q 'migrations probe command timed out' "$T/leaseway.G.log"
expect_match "G: reason says it timed out" "$(health_body G)" "timed out after 30 s"
check "G: probe runs again after the timeout" [ "$(wc -l <"$T/hung.pids")" -ge 2 ]

# --- bad configuration stops start-up ------------------------------------------------------
bad() {
    local desc=$1 want=$2 out rc
    shift 2
    out=$("$LEASEWAY_BIN" run --listen 127.0.0.1:1 --admin off --target 127.0.0.1:1 "$@" 2>&1 </dev/null)
    rc=$?
    check "start-up refused: $desc (exit $rc)" [ "$rc" -ne 0 ]
    expect_match "start-up refused: $desc: message" "$out" "$want"
}
bad "missing migrations dir" "migrations dir $T/nope: No such file or directory" \
    --migrations "prisma:$DB:$T/nope"
bad "prisma without a dir" "expected prisma:<sqlite file>:<migrations dir>" --migrations "prisma:$DB"
bad "unknown probe kind" 'unknown probe "flyway"' --migrations "flyway:/x"
bad "empty command" "expected command:<shell command>" --migrations "command:"
bad "https probe" "https is not supported" --migrations "http:https://example.com/m"
bad "upstream-health not a path" "expected a path starting with /" --upstream-health healthz
# pasted into the request line as they are: a space, CR or LF would split it or add header lines
bad "upstream-health with a space" "visible ASCII without spaces" --upstream-health "/health check"
bad "upstream-health with CR LF" "visible ASCII without spaces" --upstream-health $'/h HTTP/1.1\r\nX-Injected: 1'
bad "http probe URL with a space" "visible ASCII without spaces" --migrations "http:http://127.0.0.1:1/m x"

finish
