/*
 * The prisma probe against real SQLite files made here with
 * _prisma_migrations exactly as Prisma creates it for SQLite: complete,
 * pending, half-applied, rolled back (and re-applied), missing table,
 * missing file, not a database, a locked database (must answer "locked" at
 * once), the migration_lock.toml that is not a migration, a missing dir.
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "health/health-int.h"
#include "proxy/proxy_log.h"

/* health/ logs through proxy/'s logger; naming it here also links it (lw_health comes
 * after lw_proxy on the link line). */
static void quiet_logs(void)
{
    proxy_log_setup("text", "warn");
}

/* Prisma's own DDL for the SQLite migrations table (schema-engine, sqlite flavour). */
static const char *const prisma_ddl =
    "CREATE TABLE \"_prisma_migrations\" (\n"
    "    \"id\"                    TEXT PRIMARY KEY NOT NULL,\n"
    "    \"checksum\"              TEXT NOT NULL,\n"
    "    \"finished_at\"           DATETIME,\n"
    "    \"migration_name\"        TEXT NOT NULL,\n"
    "    \"logs\"                  TEXT,\n"
    "    \"rolled_back_at\"        DATETIME,\n"
    "    \"started_at\"            DATETIME NOT NULL DEFAULT current_timestamp,\n"
    "    \"applied_steps_count\"   INTEGER UNSIGNED NOT NULL DEFAULT 0\n"
    ")";

static char root[256], dir[300], db[300];

static void mkmig(const char *name)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    cr_assert_eq(mkdir(p, 0755), 0, "%s: %s", p, strerror(errno));
    snprintf(p, sizeof(p), "%s/%s/migration.sql", dir, name);
    FILE *f = fopen(p, "w");
    cr_assert(f);
    fprintf(f, "-- %s\nSELECT 1;\n", name);
    fclose(f);
}

static void setup(void)
{
    quiet_logs();
    snprintf(root, sizeof(root), "/tmp/lw-prisma-XXXXXX");
    cr_assert(mkdtemp(root));
    snprintf(dir, sizeof(dir), "%s/migrations", root);
    snprintf(db, sizeof(db), "%s/data.db", root);
    cr_assert_eq(mkdir(dir, 0755), 0);
    mkmig("20240101000000_init");
    mkmig("20240215120000_add_note");
    /* Not migrations: Prisma's lock file, a stray file, a folder without migration.sql. */
    char p[512];
    snprintf(p, sizeof(p), "%s/migration_lock.toml", dir);
    FILE *f = fopen(p, "w");
    fputs("provider = \"sqlite\"\n", f);
    fclose(f);
    snprintf(p, sizeof(p), "%s/README", dir);
    f = fopen(p, "w");
    fclose(f);
    snprintf(p, sizeof(p), "%s/notes", dir);
    mkdir(p, 0755);
}

static void teardown(void)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
}

static sqlite3 *open_db(bool with_table)
{
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    if (with_table)
        cr_assert_eq(sqlite3_exec(h, prisma_ddl, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(h));
    return h;
}

static void exec(sqlite3 *h, const char *sql)
{
    char *err = NULL;
    cr_assert_eq(sqlite3_exec(h, sql, NULL, NULL, &err), SQLITE_OK, "%s: %s", sql, err ? err : "");
}

/* A row the way `prisma migrate deploy` writes it. */
static void row(sqlite3 *h, const char *id, const char *name, bool finished, bool rolled_back)
{
    char sql[512];
    snprintf(
        sql, sizeof(sql),
        "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, logs, rolled_back_at, "
        "started_at, applied_steps_count) VALUES ('%s', 'c0ffee', %s, '%s', NULL, %s, current_timestamp, %d)",
        id, finished ? "current_timestamp" : "NULL", name, rolled_back ? "current_timestamp" : "NULL",
        finished ? 1 : 0);
    exec(h, sql);
}

static void check(struct health_migrations *m)
{
    memset(m, 0, sizeof(*m));
    cr_assert_eq(health_prisma_check(db, dir, m), 0, "%s", m->reason);
}

TestSuite(health_prisma, .init = setup, .fini = teardown);

Test(health_prisma, complete)
{
    sqlite3 *h = open_db(true);
    row(h, "a", "20240101000000_init", true, false);
    row(h, "b", "20240215120000_add_note", true, false);
    /* A row for a migration this build does not have (a newer primary ran it): ignored. */
    row(h, "c", "20250101000000_future", true, false);
    sqlite3_close(h);
    struct health_migrations m;
    check(&m);
    cr_assert(m.complete, "%s", m.reason);
    cr_assert_eq(m.applied, 2);
    cr_assert_eq(m.npending, 0);
    cr_assert_str_empty(m.reason);
    health_migrations_clear(&m);
}

Test(health_prisma, pending)
{
    sqlite3 *h = open_db(true);
    row(h, "a", "20240101000000_init", true, false);
    sqlite3_close(h);
    struct health_migrations m;
    check(&m);
    cr_assert_not(m.complete);
    cr_assert_eq(m.applied, 1);
    cr_assert_eq(m.npending, 1);
    cr_assert_str_eq(m.pending[0], "20240215120000_add_note");
    cr_assert_str_eq(m.reason, "1 of 2 pending: 20240215120000_add_note not applied");
    health_migrations_clear(&m);
}

Test(health_prisma, half_applied)
{
    sqlite3 *h = open_db(true);
    row(h, "a", "20240101000000_init", true, false);
    row(h, "b", "20240215120000_add_note", false, false);
    sqlite3_close(h);
    struct health_migrations m;
    check(&m);
    cr_assert_not(m.complete);
    cr_assert_eq(m.npending, 1);
    cr_assert(strstr(m.reason, "20240215120000_add_note started but not finished"), "%s", m.reason);
    health_migrations_clear(&m);
}

Test(health_prisma, rolled_back)
{
    sqlite3 *h = open_db(true);
    row(h, "a", "20240101000000_init", true, false);
    /* Failed, then marked rolled back with `prisma migrate resolve --rolled-back`. */
    row(h, "b", "20240215120000_add_note", false, true);
    struct health_migrations m;
    check(&m);
    cr_assert_not(m.complete);
    cr_assert(strstr(m.reason, "20240215120000_add_note rolled back"), "%s", m.reason);
    health_migrations_clear(&m);
    /* A finished row that was rolled back afterwards does not count either. */
    exec(h, "UPDATE _prisma_migrations SET finished_at = current_timestamp WHERE id = 'b'");
    check(&m);
    cr_assert_not(m.complete, "finished but rolled back must not count");
    health_migrations_clear(&m);
    /* Prisma re-applies it: a new row, finished. Complete. */
    row(h, "b2", "20240215120000_add_note", true, false);
    sqlite3_close(h);
    check(&m);
    cr_assert(m.complete, "%s", m.reason);
    cr_assert_eq(m.applied, 2);
    health_migrations_clear(&m);
}

Test(health_prisma, missing_table)
{
    sqlite3 *h = open_db(false);
    exec(h, "CREATE TABLE other (x)");
    sqlite3_close(h);
    struct health_migrations m;
    check(&m);
    cr_assert_not(m.complete);
    cr_assert_eq(m.npending, 2);
    cr_assert(strstr(m.reason, "no _prisma_migrations table"), "%s", m.reason);
    health_migrations_clear(&m);
}

Test(health_prisma, missing_file_is_not_created)
{
    struct health_migrations m;
    check(&m);
    cr_assert_not(m.complete);
    cr_assert_eq(m.npending, 2);
    cr_assert(strstr(m.reason, "No such file"), "%s", m.reason);
    cr_assert_neq(access(db, F_OK), 0, "the probe created the database");
    health_migrations_clear(&m);
}

Test(health_prisma, not_a_database)
{
    FILE *f = fopen(db, "w");
    fputs("this is not an SQLite file, just some text that is long enough to have a header\n", f);
    fclose(f);
    struct health_migrations m;
    check(&m);
    cr_assert_not(m.complete);
    cr_assert(strstr(m.reason, "cannot read"), "%s", m.reason);
    health_migrations_clear(&m);
    unlink(db);
    mkdir(db, 0755); /* a directory where the file should be */
    check(&m);
    cr_assert_not(m.complete);
    cr_assert(strstr(m.reason, "not a regular file"), "%s", m.reason);
    health_migrations_clear(&m);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

Test(health_prisma, locked_database_answers_at_once)
{
    sqlite3 *h = open_db(true);
    row(h, "a", "20240101000000_init", true, false);
    row(h, "b", "20240215120000_add_note", true, false);
    /* Another connection holds the write lock (rollback journal: readers are shut out). */
    exec(h, "PRAGMA journal_mode=DELETE");
    exec(h, "BEGIN EXCLUSIVE");
    exec(h, "UPDATE _prisma_migrations SET logs = 'x'");
    struct health_migrations m;
    int64_t t0 = now_ms();
    check(&m);
    int64_t took = now_ms() - t0;
    cr_assert_not(m.complete);
    cr_assert(strstr(m.reason, "locked"), "%s", m.reason);
    cr_assert_lt(took, 1000, "the probe waited %lld ms for the lock", (long long)took);
    health_migrations_clear(&m);
    exec(h, "COMMIT");
    check(&m);
    cr_assert(m.complete, "%s", m.reason);
    health_migrations_clear(&m);
    sqlite3_close(h);
}

Test(health_prisma, wal_writer_does_not_block_the_probe)
{
    sqlite3 *h = open_db(true);
    exec(h, "PRAGMA journal_mode=WAL");
    row(h, "a", "20240101000000_init", true, false);
    row(h, "b", "20240215120000_add_note", true, false);
    exec(h, "BEGIN IMMEDIATE");
    exec(h, "DELETE FROM _prisma_migrations WHERE id = 'b'"); /* not committed: invisible */
    struct health_migrations m;
    check(&m);
    cr_assert(m.complete, "%s", m.reason);
    health_migrations_clear(&m);
    exec(h, "ROLLBACK");
    sqlite3_close(h);
}

Test(health_prisma, probe_never_writes)
{
    sqlite3 *h = open_db(true);
    row(h, "a", "20240101000000_init", true, false);
    sqlite3_close(h);
    struct stat before, after;
    cr_assert_eq(stat(db, &before), 0);
    struct health_migrations m;
    check(&m);
    health_migrations_clear(&m);
    cr_assert_eq(stat(db, &after), 0);
    cr_assert_eq(before.st_size, after.st_size);
    cr_assert_eq(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
    cr_assert_eq(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
}

Test(health_prisma, empty_dir_is_complete)
{
    char p[512];
    snprintf(p, sizeof(p), "rm -rf '%s'/2024*", dir);
    cr_assert_eq(system(p), 0);
    struct health_migrations m;
    check(&m);
    cr_assert(m.complete, "%s", m.reason);
    health_migrations_clear(&m);
}

Test(health_prisma, missing_dir)
{
    snprintf(dir, sizeof(dir), "%s/nope", root);
    struct health_migrations m;
    memset(&m, 0, sizeof(m));
    cr_assert_eq(health_prisma_check(db, dir, &m), -1);
    cr_assert(strstr(m.reason, "migrations dir") && strstr(m.reason, "No such file"), "%s", m.reason);
    health_migrations_clear(&m);
}
