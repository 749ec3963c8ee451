/*
 * __txid cookies. The -pos file is read with open/pread/close each time:
 * LiteFS serves it from FUSE, so a cached descriptor could see a stale
 * page; these reads happen only after writes and for reads that carry a
 * newer TXID than the replica has, never on the plain read path.
 *
 * The reads run on one thread per process (the reader), never on a worker:
 * a hung LiteFS daemon makes them block for as long as it hangs, and a
 * worker that blocked would stop every connection it serves. Workers ask
 * the reader for a read and wait for it at most PROXY_LITEFS_WAIT_MS.
 */
#include "proxy/proxy_litefs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proxy/proxy.h"
#include "proxy/proxy_config.h"
#include "proxy/proxy_http.h"
#include "proxy/proxy_log.h"

struct litefs_reader {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t ask;    /* to the reader: asked > done, or stop */
    pthread_cond_t answer; /* to the workers: done moved on */
    uint64_t asked;        /* reads asked for, as a count: a read answers every ask made before it began */
    uint64_t done;         /* the ask count at the start of the last read that answered */
    int64_t busy_since;    /* proxy_now_ms() when the read under way began; 0 when none is */
    size_t reading;        /* the database the read under way is at */
    bool stalled;          /* a worker gave up on the read under way (and logged it) */
    bool stop;
    struct litefs_pos last;
    size_t n;
    char *path[PROXY_MAX_DBS]; /* the reader's own copies: it may outlive proxy_litefs_free() */
};

/* A reader still stuck in a read at exit: it keeps using its state, so that is left to it. */
static struct litefs_reader *abandoned;

static int reader_start(struct litefs_dbs *dbs);

int proxy_litefs_setup(struct litefs_dbs *dbs, const struct strlist *paths)
{
    memset(dbs, 0, sizeof(*dbs));
    if (paths->n > PROXY_MAX_DBS) {
        fprintf(stderr, "leaseway: --litefs-db: at most %d databases\n", PROXY_MAX_DBS);
        return -1;
    }
    for (size_t i = 0; i < paths->n; i++) {
        const char *p = paths->v[i];
        size_t len = strlen(p);
        if (len == 0 || p[0] != '/') {
            fprintf(
                stderr,
                "leaseway: --litefs-db \"%s\": expected the absolute path of a database on a LiteFS mount\n",
                p);
            goto fail;
        }
        struct litefs_db *db = &dbs->db[dbs->n++];
        if (!(db->pos_path = malloc(len + 5)))
            goto fail;
        snprintf(db->pos_path, len + 5, "%s-pos", p);
        const char *base = strrchr(p, '/') + 1;
        if (i == 0) {
            snprintf(db->cookie, sizeof(db->cookie), "__txid");
        } else {
            size_t n = (size_t)snprintf(db->cookie, sizeof(db->cookie), "__txid_");
            for (const char *c = base; *c && n + 1 < sizeof(db->cookie); c++)
                db->cookie[n++] =
                    (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ? *c
                                                                                                     : '_';
            db->cookie[n] = '\0';
        }
        for (size_t j = 0; j + 1 < dbs->n; j++) {
            if (strcmp(dbs->db[j].cookie, db->cookie) == 0) {
                fprintf(stderr,
                        "leaseway: --litefs-db \"%s\": its cookie would be %s, as another database's: "
                        "give the databases names that differ in letters or digits\n",
                        p, db->cookie);
                goto fail;
            }
        }
    }
    if (dbs->n && reader_start(dbs) < 0) {
        fprintf(stderr, "leaseway: --litefs-db: cannot start the thread that reads the positions: %s\n",
                strerror(errno));
        goto fail;
    }
    return 0;
fail:
    proxy_litefs_free(dbs);
    return -1;
}

static void reader_free(struct litefs_reader *r)
{
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->ask);
    pthread_cond_destroy(&r->answer);
    for (size_t i = 0; i < r->n; i++)
        free(r->path[i]);
    free(r);
}

void proxy_litefs_free(struct litefs_dbs *dbs)
{
    struct litefs_reader *r = dbs->reader;
    if (r) {
        pthread_mutex_lock(&r->mu);
        r->stop = true;
        pthread_cond_signal(&r->ask);
        bool busy = r->busy_since != 0;
        pthread_mutex_unlock(&r->mu);
        if (!busy) {
            pthread_join(r->thread, NULL);
            reader_free(r);
        } else {
            /* blocked in LiteFS's mount: the process's exit ends it, not a join */
            proxy_log_warn("LiteFS position read still under way at exit: not waiting for it", "path=\"%s\"",
                           r->path[r->reading]);
            pthread_detach(r->thread);
            abandoned = r;
        }
    }
    for (size_t i = 0; i < dbs->n; i++)
        free(dbs->db[i].pos_path);
    memset(dbs, 0, sizeof(*dbs));
}

static int parse_hex16(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

static int read_position(const char *pos_path, uint64_t *txid)
{
    int fd = open(pos_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[64];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    if (n < 16)
        return -1;
    buf[n] = '\0';
    return parse_hex16(buf, txid);
}

static void *reader_main(void *arg)
{
    struct litefs_reader *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->stop && r->done == r->asked)
            pthread_cond_wait(&r->ask, &r->mu);
        if (r->stop)
            break;
        uint64_t gen = r->asked;
        int64_t began = proxy_now_ms();
        r->busy_since = began > 0 ? began : 1;
        struct litefs_pos p = {0};
        for (size_t i = 0; i < r->n; i++) {
            r->reading = i;
            pthread_mutex_unlock(&r->mu);
            p.ok[i] = read_position(r->path[i], &p.txid[i]) == 0;
            pthread_mutex_lock(&r->mu);
        }
        bool was_stalled = r->stalled;
        r->stalled = false;
        r->busy_since = 0;
        r->last = p;
        r->done = gen;
        pthread_cond_broadcast(&r->answer);
        if (was_stalled) {
            pthread_mutex_unlock(&r->mu);
            proxy_log_info("LiteFS position read answers again", "after_ms=%lld",
                           (long long)(proxy_now_ms() - began));
            pthread_mutex_lock(&r->mu);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static int reader_start(struct litefs_dbs *dbs)
{
    struct litefs_reader *r = calloc(1, sizeof(*r));
    if (!r)
        return -1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->ask, NULL);
    pthread_cond_init(&r->answer, &ca);
    pthread_condattr_destroy(&ca);
    for (size_t i = 0; i < dbs->n; i++) {
        if (!(r->path[i] = strdup(dbs->db[i].pos_path))) {
            reader_free(r);
            return -1;
        }
        r->n = i + 1;
    }
    /* signals are the control thread's business; a read in FUSE is not to be interrupted */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&r->thread, NULL, reader_main, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        reader_free(r);
        errno = rc;
        return -1;
    }
    dbs->reader = r;
    return 0;
}

/* A worker gives up on the read under way (r->mu held): say so once per read that hangs. */
static void give_up(struct litefs_reader *r, int64_t now)
{
    if (r->stalled || !r->busy_since)
        return;
    r->stalled = true;
    const char *path = r->path[r->reading];
    long long ms = (long long)(now - r->busy_since);
    pthread_mutex_unlock(&r->mu);
    proxy_log_warn("LiteFS position read does not answer",
                   "path=\"%s\" waited_ms=%lld effect=\"no __txid cookies, and reads carrying one go to the "
                   "primary after --txid-wait, until it answers\"",
                   path, ms);
    pthread_mutex_lock(&r->mu);
}

bool proxy_litefs_read(const struct litefs_dbs *dbs, struct litefs_pos *out)
{
    struct litefs_reader *r = dbs->reader;
    if (!r)
        return false;
    pthread_mutex_lock(&r->mu);
    int64_t now = proxy_now_ms();
    if (r->busy_since && now - r->busy_since >= PROXY_LITEFS_WAIT_MS) {
        give_up(r, now);
        pthread_mutex_unlock(&r->mu);
        return false;
    }
    uint64_t gen = ++r->asked;
    pthread_cond_signal(&r->ask);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += PROXY_LITEFS_WAIT_MS * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    while (r->done < gen && !r->stop)
        if (pthread_cond_timedwait(&r->answer, &r->mu, &until) == ETIMEDOUT)
            break;
    bool got = r->done >= gen;
    if (got)
        *out = r->last;
    else
        give_up(r, proxy_now_ms());
    pthread_mutex_unlock(&r->mu);
    return got;
}

void proxy_litefs_last(const struct litefs_dbs *dbs, struct litefs_pos *out, bool refresh)
{
    struct litefs_reader *r = dbs->reader;
    memset(out, 0, sizeof(*out));
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    *out = r->last;
    if (refresh) {
        r->asked++;
        pthread_cond_signal(&r->ask);
    }
    pthread_mutex_unlock(&r->mu);
}

bool proxy_litefs_reached(const struct litefs_dbs *dbs, const uint64_t *want, const struct litefs_pos *pos)
{
    for (size_t d = 0; d < dbs->n; d++)
        if (want[d] && (!pos->ok[d] || pos->txid[d] < want[d]))
            return false;
    return true;
}

/*
 * A browser sends every cookie of a name it holds (set for another Path or Domain), oldest
 * first, in one Cookie field or several: the newest valid TXID is the one to wait for.
 */
size_t proxy_litefs_wanted(const struct litefs_dbs *dbs, const struct head *h, uint64_t *want)
{
    size_t found = 0;
    for (size_t d = 0; d < dbs->n; d++) {
        want[d] = 0;
        size_t clen = strlen(dbs->db[d].cookie);
        for (size_t i = 0; i < h->nf; i++) {
            if (!proxy_head_name_is(h, i, "cookie"))
                continue;
            const char *v = head_val(h, i), *end = v + h->f[i].val_len;
            for (const char *p = v; p + clen + 17 <= end; p++) {
                uint64_t txid;
                const char *after = p + clen + 17;
                if ((p != v && p[-1] != ' ' && p[-1] != ';') || memcmp(p, dbs->db[d].cookie, clen) != 0 ||
                    p[clen] != '=' || (after < end && *after != ';' && *after != ' ') ||
                    parse_hex16(p + clen + 1, &txid) < 0)
                    continue;
                if (txid > want[d])
                    want[d] = txid;
            }
        }
        if (want[d])
            found++;
    }
    return found;
}

size_t proxy_litefs_cookies(const struct litefs_dbs *dbs, bool secure, char *buf, size_t size)
{
    size_t n = 0;
    struct litefs_pos pos;
    if (!proxy_litefs_read(dbs, &pos))
        return 0;
    for (size_t d = 0; d < dbs->n; d++) {
        uint64_t txid = pos.txid[d];
        if (!pos.ok[d])
            continue;
        /* as LiteFS: 5 minutes; unlike LiteFS: SameSite=Lax, and Secure over TLS (its issue #440) */
        int w = snprintf(buf + n, size - n,
                         "Set-Cookie: %s=%016llx; Path=/; Max-Age=300; HttpOnly; SameSite=Lax%s\r\n",
                         dbs->db[d].cookie, (unsigned long long)txid, secure ? "; Secure" : "");
        if (w < 0 || (size_t)w >= size - n)
            break;
        n += (size_t)w;
    }
    return n;
}
