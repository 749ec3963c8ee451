#!/usr/bin/env bash
# The prisma probe meets a locked database (SPEC §4: read-only, never locks the database):
# a fully migrated instance (gate open) whose app holds a write transaction for 12 s, across
# the probe's 10 s re-check, in rollback-journal mode (Prisma's SQLite default). A locked
# database says nothing about the migrations: the gate must stay open (every request 200,
# no "gate changed" to closed in the log). A database found locked on the very first check
# still keeps the gate closed ("database is locked") until it can be read. A hot journal (a
# write interrupted by a crash) keeps it closed with a reason that says so until the app opens
# the database.
. "$(dirname "$0")/../lib/proxy.sh"

D=$PX_TMP/db
mkdir -p "$D/mig/20250101000000_init" "$D/mig/20250102000000_two"
touch "$D/mig/20250101000000_init/migration.sql" "$D/mig/20250102000000_two/migration.sql"
"$PYTHON" - "$D/app.db" <<'EOF'
import sqlite3, sys, uuid
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA journal_mode=DELETE")
c.execute('CREATE TABLE "_prisma_migrations" ("id" TEXT PRIMARY KEY NOT NULL, "checksum" TEXT NOT NULL, '
          '"finished_at" DATETIME, "migration_name" TEXT NOT NULL, "logs" TEXT, "rolled_back_at" DATETIME, '
          '"started_at" DATETIME NOT NULL DEFAULT current_timestamp, "applied_steps_count" INTEGER NOT NULL DEFAULT 0)')
for n in ("20250101000000_init", "20250102000000_two"):
    c.execute("INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, applied_steps_count) "
              "VALUES (?, 'x', current_timestamp, ?, 1)", (str(uuid.uuid4()), n))
c.commit()
EOF
hold_lock() { # SECONDS READY_FILE: an exclusive write transaction, as a long import or VACUUM would hold
    "$PYTHON" - "$D/app.db" "$1" "$2" <<'EOF' &
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN EXCLUSIVE")
c.execute("CREATE TABLE IF NOT EXISTS t(x)")
c.execute("INSERT INTO t VALUES (1)")
open(sys.argv[3], "w").write("locked\n")
time.sleep(float(sys.argv[2]))
c.execute("COMMIT")
EOF
    LOCKER=$!
    wait_for "[ -s '$2' ]" 5 0.05 || px_die "the database could not be locked"
}

start_upstream app
start_leaseway --migrations "prisma:$D/app.db:$D/mig"
check "migrated database: gate open" [ "$(curl -s -o /dev/null -w '%{http_code}' "$LW_ADMIN_URL/health")" = 200 ]
hold_lock 12 "$PX_TMP/locked1"
codes=""
for _ in $(seq 1 26); do
    codes="$codes $(curl -s -o /dev/null -m 2 -w '%{http_code}' "$LW_URL/echo")"
    sleep 0.5
done
wait "$LOCKER"
px_log "codes while the app held the database locked:$codes"
check "locked across a re-check: every request 200" bash -c '! grep -qv "^200$" < <(tr " " "\n" <<<"$1" | grep .)' _ "$codes"
check "locked across a re-check: the gate never closed after it opened" \
    awk '/gate changed/ && /gate=open/ { open = 1 } open && /gate changed/ && /gate=closed/ { bad = 1 } END { exit !(open && !bad) }' "$LW_LOG"
stop_leaseway

# locked at the very first look: nothing known yet, so the gate stays closed until it can read
hold_lock 4 "$PX_TMP/locked2"
LW_PORT=$(px_free_port) LW_ADMIN=$(px_free_port)
"$LEASEWAY_BIN" run --listen "127.0.0.1:$LW_PORT" --admin "127.0.0.1:$LW_ADMIN" --workers 1 --instance i1 \
    --target "127.0.0.1:$UPSTREAM_PORT" --migrations "prisma:$D/app.db:$D/mig" >"$PX_TMP/lw2.log" 2>&1 &
LW_PID=$!
px_register_pid "$LW_PID"
wait_for "curl -s -m 1 http://127.0.0.1:$LW_ADMIN/health | grep -q 'database is locked'" 5 0.1
check "locked at the first check: gate closed with reason 'database is locked'" \
    curl -s -m 1 "http://127.0.0.1:$LW_ADMIN/health" -o "$PX_TMP/h2"
check "  ... and the reason says so" grep -q 'database is locked' "$PX_TMP/h2"
wait "$LOCKER"
check "locked at the first check: the gate opens once the database can be read" \
    wait_for "[ \"\$(curl -s -o /dev/null -m 1 -w '%{http_code}' http://127.0.0.1:$LW_ADMIN/health)\" = 200 ]" 5 0.1
stop_leaseway

# a hot journal (a write interrupted by a crash): a read-only reader may not roll it back, so the
# gate stays closed with a reason that says so, until the app opens the database (which does)
"$PYTHON" - "$D/app.db" <<'EOF'
import os, sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA cache_size=10")
c.execute("BEGIN")
c.execute("CREATE TABLE filler(x)")
for i in range(2000):
    c.execute("INSERT INTO filler VALUES (?)", ("x" * 1000,))
os._exit(0)  # gone mid-transaction: app.db-journal stays behind, hot
EOF
check "a hot journal is left behind" test -s "$D/app.db-journal"
LW_PORT=$(px_free_port) LW_ADMIN=$(px_free_port)
"$LEASEWAY_BIN" run --listen "127.0.0.1:$LW_PORT" --admin "127.0.0.1:$LW_ADMIN" --workers 1 --instance i1 \
    --target "127.0.0.1:$UPSTREAM_PORT" --migrations "prisma:$D/app.db:$D/mig" >"$PX_TMP/lw3.log" 2>&1 &
LW_PID=$!
px_register_pid "$LW_PID"
wait_for "curl -s -m 1 http://127.0.0.1:$LW_ADMIN/health | grep -q 'hot journal'" 5 0.1
check "hot journal: the gate stays closed, and the reason names the hot journal" \
    bash -c "curl -s -m 1 http://127.0.0.1:$LW_ADMIN/health | grep -q 'hot journal (an interrupted write)'"
"$PYTHON" -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM _prisma_migrations").fetchone()' "$D/app.db"
check "hot journal: once the app opens the database (rolling it back), the gate opens" \
    wait_for "[ \"\$(curl -s -o /dev/null -m 1 -w '%{http_code}' http://127.0.0.1:$LW_ADMIN/health)\" = 200 ]" 5 0.1
stop_leaseway

finish
