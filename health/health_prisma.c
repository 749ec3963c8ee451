/*
 * The prisma:<db>:<dir> probe: has every migration folder a finished row in
 * _prisma_migrations? This is what `prisma migrate deploy` leaves behind:
 * one row per attempt, finished_at set when the migration committed,
 * rolled_back_at set by `prisma migrate resolve --rolled-back` (a later
 * re-apply adds a new row). A folder counts as a migration when it holds a
 * migration.sql (migration_lock.toml and stray files do not).
 *
 * Read-only and brief: the file is opened with SQLITE_OPEN_READONLY (never
 * created), PRAGMA query_only, and a short busy timeout, so a database that
 * the app or a migration holds locked is reported as "locked" at once
 * instead of stalling the probe. Blocking file I/O: run on a helper thread.
 */
#include "health/health-int.h"

#include <dirent.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BUSY_TIMEOUT_MS 100 /* ride over a short write transaction, never wait for a long one */

const char *health_migration_state_str(enum health_migration_state s)
{
    static const char *const names[HEALTH_MIG_STATE_COUNT] = {
        "applied", "not applied", "started but not finished", "rolled back", "unknown"};
    return (unsigned)s < HEALTH_MIG_STATE_COUNT ? names[s] : "invalid";
}

void health_migrations_clear(struct health_migrations *m)
{
    for (size_t i = 0; i < m->npending; i++)
        free(m->pending[i]);
    free(m->pending);
    memset(m, 0, sizeof(*m));
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The migration folders of dir, sorted as Prisma applies them. Returns 0 or -1 (errno). */
static int list_migrations(const char *dir, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    size_t cap = 0;
    struct dirent *e;
    char path[4096];
    struct stat st;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (snprintf(path, sizeof(path), "%s/%s/migration.sql", dir, e->d_name) >= (int)sizeof(path))
            continue;
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = realloc(*out, cap * sizeof(**out));
            if (!grown)
                goto nomem;
            *out = grown;
        }
        if (!((*out)[*n] = strdup(e->d_name)))
            goto nomem;
        (*n)++;
    }
    closedir(d);
    if (*n)
        qsort(*out, *n, sizeof(**out), cmp_names);
    return 0;
nomem:
    closedir(d);
    for (size_t i = 0; i < *n; i++)
        free((*out)[i]);
    free(*out);
    *out = NULL;
    *n = 0;
    errno = ENOMEM;
    return -1;
}

struct row {
    char *name;
    bool finished, rolled_back;
};

/* Every row of _prisma_migrations. Returns SQLITE_OK or the error (message in why). */
static int read_rows(const char *db_path, struct row **rows, size_t *nrows, char *why, size_t wsize)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    *rows = NULL;
    *nrows = 0;
    int rc = sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    rc = sqlite3_exec(db, "PRAGMA query_only = 1", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    rc = sqlite3_prepare_v2(db,
                            "SELECT migration_name, finished_at IS NOT NULL, rolled_back_at IS NOT NULL "
                            "FROM _prisma_migrations",
                            -1, &st, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *name = sqlite3_column_text(st, 0);
        if (!name)
            continue;
        if (*nrows == cap) {
            cap = cap ? cap * 2 : 32;
            struct row *grown = realloc(*rows, cap * sizeof(**rows));
            if (!grown) {
                rc = SQLITE_NOMEM;
                goto fail;
            }
            *rows = grown;
        }
        struct row *r = &(*rows)[*nrows];
        if (!(r->name = strdup((const char *)name))) {
            rc = SQLITE_NOMEM;
            goto fail;
        }
        r->finished = sqlite3_column_int(st, 1);
        r->rolled_back = sqlite3_column_int(st, 2);
        (*nrows)++;
    }
    if (rc != SQLITE_DONE)
        goto fail;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return SQLITE_OK;

fail:;
    int primary = rc & 0xff;
    const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    int ext = db ? sqlite3_extended_errcode(db) : rc;
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
        snprintf(why, wsize, "database is locked");
    else if (ext == SQLITE_READONLY_ROLLBACK)
        /* a read-only reader may not roll a hot journal back: the app's next open does */
        snprintf(why, wsize, "%s has a hot journal (an interrupted write): waiting for the app to open it",
                 db_path);
    else if (ext == SQLITE_READONLY_CANTINIT || ext == SQLITE_READONLY_RECOVERY ||
             ext == SQLITE_READONLY_CANTLOCK)
        snprintf(why, wsize,
                 "%s is in WAL mode and leaseway cannot create its -shm file: make its directory writable",
                 db_path);
    else if (strstr(msg, "no such table"))
        snprintf(why, wsize, "no _prisma_migrations table in %s", db_path);
    else
        snprintf(why, wsize, "cannot read %s: %s", db_path, msg);
    if (st)
        sqlite3_finalize(st);
    sqlite3_close(db);
    for (size_t i = 0; i < *nrows; i++)
        free((*rows)[i].name);
    free(*rows);
    *rows = NULL;
    *nrows = 0;
    return rc == SQLITE_OK ? SQLITE_ERROR : rc;
}

static enum health_migration_state state_of(const char *name, const struct row *rows, size_t nrows)
{
    bool unfinished = false, rolled_back = false;
    for (size_t i = 0; i < nrows; i++) {
        if (strcmp(rows[i].name, name) != 0)
            continue;
        if (rows[i].rolled_back)
            rolled_back = true;
        else if (rows[i].finished)
            return HEALTH_MIG_APPLIED;
        else
            unfinished = true;
    }
    if (unfinished)
        return HEALTH_MIG_UNFINISHED;
    return rolled_back ? HEALTH_MIG_ROLLED_BACK : HEALTH_MIG_NOT_APPLIED;
}

int health_prisma_check(const char *db, const char *dir, struct health_migrations *m)
{
    char **names = NULL;
    size_t nnames = 0;
    struct row *rows = NULL;
    size_t nrows = 0;
    char why[ROUTE_REASON_MAX] = "";
    memset(m, 0, sizeof(*m));

    if (list_migrations(dir, &names, &nnames) < 0) {
        snprintf(m->reason, sizeof(m->reason), "migrations dir %s: %s", dir, strerror(errno));
        return -1;
    }
    struct stat st;
    bool readable = false;
    if (stat(db, &st) < 0)
        snprintf(why, sizeof(why), "database %s: %s", db, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        snprintf(why, sizeof(why), "database %s: not a regular file", db);
    else {
        int rc = read_rows(db, &rows, &nrows, why, sizeof(why));
        readable = rc == SQLITE_OK;
        m->locked = (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;
    }

    /* Everything not applied is pending; the first one not applied names the reason. */
    m->pending = nnames ? calloc(nnames, sizeof(*m->pending)) : NULL;
    if (nnames && !m->pending) {
        snprintf(m->reason, sizeof(m->reason), "out of memory");
        goto out;
    }
    const char *first = NULL;
    enum health_migration_state first_state = HEALTH_MIG_UNKNOWN;
    for (size_t i = 0; i < nnames; i++) {
        enum health_migration_state s = readable ? state_of(names[i], rows, nrows) : HEALTH_MIG_UNKNOWN;
        if (s == HEALTH_MIG_APPLIED) {
            m->applied++;
            continue;
        }
        if (!first) {
            first = names[i];
            first_state = s;
        }
        m->pending[m->npending++] = names[i];
        names[i] = NULL;
    }
    if (!readable && nnames == 0) {
        /* Nothing to apply: an empty migrations dir is complete whatever the database says. */
        m->complete = true;
    } else if (!readable) {
        snprintf(m->reason, sizeof(m->reason), "%s", why);
    } else if (first) {
        snprintf(m->reason, sizeof(m->reason), "%zu of %zu pending: %s %s", m->npending, nnames, first,
                 health_migration_state_str(first_state));
    } else {
        m->complete = true;
    }
out:
    for (size_t i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    for (size_t i = 0; i < nrows; i++)
        free(rows[i].name);
    free(rows);
    return 0;
}
