#!/usr/bin/env bash
# The migration gate on real replication (issue 6, item 4).
#
# Three LiteFS nodes (tests/lib/litefs.sh: real LiteFS when it can run here,
# else the stand-in; the run says which), node 1 the only candidate, the demo
# app's database demo.db on each node's mount. Every leaseway runs
#   --migrations prisma:<its own mount>/demo.db:<the new image's migrations dir>
# where the new image has two migrations and the database has only the first.
#   1. the primary's migration is delayed: every gate stays closed (503,
#      Leaseway-Gate, /health 503 naming the missing migration);
#   2. replication from the primary is paused, then the primary "migrates"
#      (the second row of _prisma_migrations, written through its FUSE mount):
#      the primary's gate opens; the replicas' gates stay closed while their
#      copy lacks the migration, and reads there get 503, never the old schema;
#   3. replication resumes: the replicas' gates open once the row has arrived
#      (their -pos equals the primary's), and they serve reads locally.
# Bounded: LITEFS_GATE_DEADLINE (default 120 s).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/litefs.sh
. "$HERE/../lib/litefs.sh"

DEADLINE=${LITEFS_GATE_DEADLINE:-120}
HOLD=${LITEFS_GATE_HOLD:-4} # seconds the replicas must stay closed while replication is paused
watchdog "$DEADLINE" "litefs_migrate_gate timed out after $DEADLINE s"

litefs_test_setup litefs-gate
export LFS_CANDIDATES="1"
litefs_cluster_start "$DIR" 3 || die "LiteFS cluster did not start"
echo "# LiteFS implementation: $IMPL; lease key $LFS_KEY"

M1=20250101000000_init
M2=20250102000000_add_notes
MIG="$DIR/image-v2/migrations" # the new image: both migrations
mkdir -p "$MIG/$M1" "$MIG/$M2"
echo 'CREATE TABLE "Note" ("id" TEXT PRIMARY KEY);' >"$MIG/$M1/migration.sql"
echo 'ALTER TABLE "Note" ADD COLUMN "body" TEXT;' >"$MIG/$M2/migration.sql"
echo 'provider = "sqlite"' >"$MIG/migration_lock.toml"

# migrate NAME — what `prisma migrate deploy` leaves in the database for one
# migration, written on the primary through its LiteFS mount (LiteFS only
# accepts writes there and replicates them as one transaction).
migrate() {
  "$LFS_PY" - "$LFS_MOUNT_1/$LFS_DB" "$1" <<'EOF'
import sqlite3, sys, uuid
c = sqlite3.connect(sys.argv[1], timeout=5)
c.execute('CREATE TABLE IF NOT EXISTS "_prisma_migrations" ("id" TEXT PRIMARY KEY NOT NULL, '
          '"checksum" TEXT NOT NULL, "finished_at" DATETIME, "migration_name" TEXT NOT NULL, "logs" TEXT, '
          '"rolled_back_at" DATETIME, "started_at" DATETIME NOT NULL DEFAULT current_timestamp, '
          '"applied_steps_count" INTEGER NOT NULL DEFAULT 0)')
c.execute("INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, applied_steps_count) "
          "VALUES (?, 'x', current_timestamp, ?, 1)", (str(uuid.uuid4()), sys.argv[2]))
c.commit()
c.close()
EOF
  if [ "$IMPL" = standin ]; then # it replicates on POST /commit, as tests/lib/litefs_app.py calls it
    curl -sf -o /dev/null -m 5 -X POST "http://$LFS_HTTP_1/commit?db=$LFS_DB" || die "stand-in commit failed"
  fi
}

migrate "$M1"
P0=$(litefs_pos 1)
wait_for "[ \"\$(litefs_pos 2)\" = '$P0' ] && [ \"\$(litefs_pos 3)\" = '$P0' ]" 15 0.05 ||
  die "the first migration did not replicate (n1=$P0 n2=$(litefs_pos 2) n3=$(litefs_pos 3))"
echo "# the database has $M1 everywhere (pos $P0); the image has $M1 and $M2"

for i in 1 2 3; do
  litefs_leaseway_start "$i" --migrations "prisma:$(_lfs_get LFS_MOUNT "$i")/$LFS_DB:$MIG" || die "leaseway $i did not start"
done
wait_for "[ \"\$(litefs_lw_primary 3)\" = $LFS_HOST_1 ] && [ \"\$(litefs_lw_primary 2)\" = $LFS_HOST_1 ]" 10 0.05 ||
  die "leaseways do not see the LiteFS primary"

health() { curl -s -o "$DIR/health.body" -w '%{http_code}' -m 3 "http://$(_lfs_get LW_ADMIN "$1")/health" || echo 000; }
# get I — GET /writes via leaseway I: sets CODE, GATE (Leaseway-Gate header), SB (served_by)
get() {
  local out
  out=$(curl -s -m 5 -D "$DIR/get.hdrs" -o "$DIR/get.body" -w '%{http_code}' "http://$(_lfs_get LW_ADDR "$1")/writes") || out=000
  CODE=$out
  GATE=$(grep -i '^leaseway-gate:' "$DIR/get.hdrs" | cut -d: -f2- | tr -d ' \r' || true)
  SB=$("$LFS_PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("served_by",""))' "$DIR/get.body" 2>/dev/null || true)
}

# --- 1. the primary's migration is delayed: every gate stays closed -----------
sleep 2.5 # more than two probe rounds (1 s each while closed)
for i in 1 2 3; do
  h=$(health "$i")
  get "$i"
  if [ "$h" = 503 ] && grep -q "$M2" "$DIR/health.body" && [ "$CODE" = 503 ] && [ -n "$GATE" ]; then
    ok "delayed migration: node $i gate closed (/health 503 naming $M2; GET 503, Leaseway-Gate: $GATE)"
  else
    bad "delayed migration: node $i /health $h ($(head -c 200 "$DIR/health.body")), GET $CODE gate '$GATE'"
  fi
done

# --- 2. replication paused, the primary migrates ------------------------------
litefs_pause_replication 1
PAUSED=1
migrate "$M2"
P1=$(litefs_pos 1)
t0=$(date +%s%N)
if wait_for "[ \"\$(health 1)\" = 200 ]" 5 0.05; then
  ok "the primary's gate opens $((($(date +%s%N) - t0) / 1000000)) ms after its migration (pos $P1)"
else
  bad "the primary's gate did not open within 5 s of its migration: $(head -c 200 "$DIR/health.body")"
fi
get 1
[ "$CODE" = 200 ] && [ "$SB" = app-n1 ] && ok "GET via the primary's leaseway: 200 from app-n1" ||
  bad "GET via the primary's leaseway: $CODE served_by '$SB'"

closed_ok=1 seen=0
end=$((SECONDS + HOLD))
while [ $SECONDS -lt $end ]; do
  for i in 2 3; do
    h=$(health "$i")
    get "$i"
    seen=$((seen + 1))
    if [ "$h" != 503 ] || [ "$CODE" != 503 ]; then
      closed_ok=0
      bad "replica $i opened before the migration replicated: /health $h, GET $CODE (pos $(litefs_pos "$i") < $P1)"
      break 2
    fi
  done
  sleep 0.2
done
p2=$(litefs_pos 2) p3=$(litefs_pos 3)
if [ "$closed_ok" = 1 ] && [ "$p2" != "$P1" ] && [ "$p3" != "$P1" ]; then
  ok "replication paused ${HOLD}s: replicas stay closed ($seen checks, 503), their copies behind (pos $p2, $p3 < $P1)"
elif [ "$closed_ok" = 1 ]; then
  bad "replication was not held back (pos n2=$p2 n3=$p3, primary $P1): the check proves nothing"
fi

# --- 3. replication resumes: the replicas open -------------------------------
t0=$(date +%s%N)
litefs_resume_replication 1
PAUSED=0
for i in 2 3; do
  if wait_for "[ \"\$(health $i)\" = 200 ]" 10 0.05; then
    ok "replica $i's gate opens $((($(date +%s%N) - t0) / 1000000)) ms after replication resumed (pos $(litefs_pos "$i") = $P1)"
  else
    bad "replica $i's gate still closed 10 s after replication resumed: pos $(litefs_pos "$i"), $(head -c 200 "$DIR/health.body")"
  fi
  get "$i"
  [ "$CODE" = 200 ] && [ "$SB" = "app-n$i" ] && ok "GET via replica $i's leaseway: 200 from its own app" ||
    bad "GET via replica $i's leaseway: $CODE served_by '$SB'"
done

echo "$PASSES passed, $FAILS failed"
[ "$FAILS" = 0 ]
