#!/usr/bin/env python3
"""`prisma migrate deploy`, reduced to what the rolling-deploy test needs.

    migrate.py DB MIGRATIONS_DIR [--sleep S] [--log FILE --name ID]

Applies, in name order, every folder of MIGRATIONS_DIR holding a migration.sql
that has no finished, not rolled-back row in _prisma_migrations, the way Prisma
records it: a row when the migration starts (finished_at NULL), the SQL, then
finished_at and applied_steps_count. --sleep makes the run take that long (a
realistic migration is not instant: the new primary's gate stays closed meanwhile).
--log appends "<name> <applied migrations>" to FILE for the test to count runs.
"""

import argparse
import hashlib
import os
import sqlite3
import sys
import time
import uuid

DDL = """CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    TEXT PRIMARY KEY NOT NULL,
    "checksum"              TEXT NOT NULL,
    "finished_at"           DATETIME,
    "migration_name"        TEXT NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        DATETIME,
    "started_at"            DATETIME NOT NULL DEFAULT current_timestamp,
    "applied_steps_count"   INTEGER UNSIGNED NOT NULL DEFAULT 0
)"""


def main():
    p = argparse.ArgumentParser()
    p.add_argument("db")
    p.add_argument("dir")
    p.add_argument("--sleep", type=float, default=0)
    p.add_argument("--log")
    p.add_argument("--name", default="?")
    a = p.parse_args()
    db = sqlite3.connect(a.db, isolation_level=None, timeout=10)
    db.execute("PRAGMA busy_timeout=10000")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(DDL)
    names = sorted(n for n in os.listdir(a.dir) if os.path.isfile(os.path.join(a.dir, n, "migration.sql")))
    done = {r[0] for r in db.execute(
        "SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL")}
    todo = [n for n in names if n not in done]
    print("%d migrations found, %d to apply" % (len(names), len(todo)), flush=True)
    if a.sleep:
        time.sleep(a.sleep)
    for n in todo:
        sql = open(os.path.join(a.dir, n, "migration.sql")).read()
        rid = str(uuid.uuid4())
        db.execute("INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at) "
                   "VALUES (?, ?, ?, current_timestamp)", (rid, hashlib.sha256(sql.encode()).hexdigest(), n))
        db.execute("BEGIN IMMEDIATE")
        for stmt in (s.strip() for s in sql.split(";")):
            if stmt:
                db.execute(stmt)
        db.execute("UPDATE _prisma_migrations SET finished_at = current_timestamp, applied_steps_count = 1 "
                   "WHERE id = ?", (rid,))
        db.execute("COMMIT")
        print("Applied migration " + n, flush=True)
    if a.log:
        with open(a.log, "a") as f:
            f.write("%s %s\n" % (a.name, ",".join(todo) or "-"))
    print("All migrations have been successfully applied.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
