/*
 * The --migrations probe (SPEC §4): none, prisma:<db>:<dir>,
 * command:<shell command>, http:<url>. It runs every second until it passes,
 * then every 10 s so that a later failure closes the gate again; one run at
 * a time, each bounded by HEALTH_PROBE_TIMEOUT_MS.
 *
 * Nothing here blocks the control thread: the Prisma check (file and SQLite
 * I/O, possibly on a FUSE mount) runs on a short-lived helper thread that
 * hands its result back through an eventfd; commands are child processes
 * read on the loop; HTTP is libevent's non-blocking client.
 */
#include "health/health-int.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proxy/proxy_log.h"

const char *health_probe_kind_str(enum health_probe_kind k)
{
    static const char *const names[HEALTH_PROBE_KIND_COUNT] = {"none", "prisma", "command", "http"};
    return (unsigned)k < HEALTH_PROBE_KIND_COUNT ? names[k] : "invalid";
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void health_probe_spec_free(struct health_probe_spec *spec)
{
    free(spec->db);
    free(spec->dir);
    free(spec->arg);
    memset(spec, 0, sizeof(*spec));
}

int health_probe_parse(const char *text, struct health_probe_spec *spec, char *err, size_t esize)
{
    memset(spec, 0, sizeof(*spec));
    if (!text || !*text || !strcmp(text, "none"))
        return 0;
    const char *colon = strchr(text, ':');
    size_t klen = colon ? (size_t)(colon - text) : strlen(text);
    const char *rest = colon ? colon + 1 : "";
    if (klen == 6 && !strncmp(text, "prisma", 6)) {
        const char *sep = strchr(rest, ':');
        if (!sep || sep == rest || !sep[1]) {
            snprintf(err, esize, "--migrations \"%s\": expected prisma:<sqlite file>:<migrations dir>", text);
            return -1;
        }
        spec->kind = HEALTH_PROBE_PRISMA;
        spec->db = strndup(rest, (size_t)(sep - rest));
        spec->dir = strdup(sep + 1);
        if (!spec->db || !spec->dir)
            goto nomem;
        return 0;
    }
    if ((klen == 7 && !strncmp(text, "command", 7)) || (klen == 4 && !strncmp(text, "http", 4))) {
        bool http = klen == 4;
        while (*rest == ' ')
            rest++;
        if (!*rest) {
            snprintf(err, esize, "--migrations \"%s\": expected %s", text,
                     http ? "http:<url>, e.g. http:http://127.0.0.1:3000/migrations"
                          : "command:<shell command>, e.g. command:npx prisma migrate status");
            return -1;
        }
        if (http) {
            char host[256], path[1024];
            int port;
            const char *why = NULL;
            if (health_http_parse_url(rest, host, sizeof(host), &port, path, sizeof(path), &why) < 0) {
                snprintf(err, esize, "--migrations \"%s\": %s", text, why);
                return -1;
            }
        }
        spec->kind = http ? HEALTH_PROBE_HTTP : HEALTH_PROBE_COMMAND;
        if (!(spec->arg = strdup(rest)))
            goto nomem;
        return 0;
    }
    snprintf(err, esize,
             "--migrations \"%s\": unknown probe \"%.*s\" (want none, prisma:<db>:<dir>, "
             "command:<cmd> or http:<url>)",
             text, (int)klen, text);
    return -1;
nomem:
    health_probe_spec_free(spec);
    snprintf(err, esize, "out of memory");
    return -1;
}

/* ---- results --------------------------------------------------------------------------- */

static void schedule(struct health_probe *p, bool passed)
{
    if (p->stopped)
        return;
    int64_t ms = passed ? HEALTH_PROBE_SLOW_MS : HEALTH_PROBE_FAST_MS;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(p->tick, &tv);
}

static void report(struct health_probe *p, bool complete, const char *reason)
{
    p->running = false;
    p->have_result = true;
    if (!p->stopped)
        health_set(p->h, HEALTH_COND_MIGRATIONS, true, complete, complete ? NULL : reason);
    schedule(p, complete);
}

/* ---- prisma: helper thread -------------------------------------------------------------- */

static void *prisma_thread(void *arg)
{
    struct prisma_job *job = arg;
    if (health_prisma_check(job->db, job->dir, &job->result) < 0 && !job->result.reason[0])
        snprintf(job->result.reason, sizeof(job->result.reason), "cannot list %s", job->dir);
    uint64_t one = 1;
    /* The loop owns job again once it reads this. */
    while (write(job->done_fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
    return NULL;
}

static void prisma_done(evutil_socket_t fd, short what, void *arg)
{
    struct health_probe *p = arg;
    (void)what;
    uint64_t n;
    if (read(fd, &n, sizeof(n)) < 0 || !p->job)
        return;
    struct prisma_job *job = p->job;
    p->job = NULL;
    free(job->db);
    free(job->dir);
    /*
     * A locked database (the app's long write, another instance's migration) says nothing
     * about the migrations: a complete result stands, re-checked at the fast pace, for up to
     * HEALTH_PROBE_LOCKED_KEEP_MS. Before any complete result, "database is locked" is the
     * reason the gate stays closed.
     */
    if (job->result.locked && p->last.complete) {
        int64_t now = mono_ms();
        if (!p->locked_since_ms) {
            p->locked_since_ms = now;
            proxy_log_info("migrations probe: database locked, keeping the last result", "db=\"%s\"",
                           p->spec.db);
        }
        if (now - p->locked_since_ms < HEALTH_PROBE_LOCKED_KEEP_MS) {
            health_migrations_clear(&job->result);
            free(job);
            p->running = false;
            schedule(p, false);
            return;
        }
    }
    p->locked_since_ms = 0;
    health_migrations_clear(&p->last);
    p->last = job->result;
    free(job);
    report(p, p->last.complete, p->last.reason);
}

static void run_prisma(struct health_probe *p)
{
    struct prisma_job *job = calloc(1, sizeof(*job));
    pthread_t t;
    pthread_attr_t attr;
    if (!job)
        goto fail;
    job->db = strdup(p->spec.db);
    job->dir = strdup(p->spec.dir);
    job->done_fd = event_get_fd(p->done_ev);
    if (!job->db || !job->dir || pthread_attr_init(&attr))
        goto fail;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    p->job = job;
    int rc = pthread_create(&t, &attr, prisma_thread, job);
    pthread_attr_destroy(&attr);
    if (rc == 0)
        return;
    p->job = NULL;
fail:
    if (job) {
        free(job->db);
        free(job->dir);
        free(job);
    }
    report(p, false, "cannot start the probe thread");
}

/* ---- command ------------------------------------------------------------------------- */

static void command_line(void *arg, const char *line)
{
    struct health_probe *p = arg;
    /* The last line is the likely reason; every line is there at debug level. */
    snprintf(p->out_line, sizeof(p->out_line), "%s", line);
    proxy_log_scrub(p->out_line); /* it may become the gate's reason, shown to clients */
    char q[PROXY_LOG_QUOTE_MAX];
    proxy_log_debug("migrations probe output", "line=\"%s\"", proxy_log_quote(q, sizeof(q), line));
}

static void command_exit(void *arg, int status, bool timed_out)
{
    struct health_probe *p = arg;
    health_proc_free(p->proc);
    p->proc = NULL;
    bool ok = !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    char how[64], reason[ROUTE_REASON_MAX];
    health_proc_describe(status, timed_out, HEALTH_PROBE_TIMEOUT_MS, how, sizeof(how));
    if (p->out_line[0])
        snprintf(reason, sizeof(reason), "probe command %.40s: %.100s", how, p->out_line);
    else
        snprintf(reason, sizeof(reason), "probe command %s", how);
    char q[PROXY_LOG_QUOTE_MAX];
    if (timed_out)
        proxy_log_warn("migrations probe command timed out", "command=\"%s\" timeout_ms=%d",
                       proxy_log_quote(q, sizeof(q), p->spec.arg), HEALTH_PROBE_TIMEOUT_MS);
    report(p, ok, reason);
}

static void run_command(struct health_probe *p)
{
    p->out_line[0] = '\0';
    struct health_proc_opts o = {
        .shell_cmd = p->spec.arg,
        .capture = true,
        .timeout_ms = HEALTH_PROBE_TIMEOUT_MS,
        .on_line = command_line,
        .on_exit = command_exit,
        .arg = p,
    };
    p->proc = health_proc_spawn(p->h->base, &o);
    if (!p->proc) {
        char why[ROUTE_REASON_MAX];
        snprintf(why, sizeof(why), "cannot run the probe command: %s", strerror(errno));
        report(p, false, why);
    }
}

/* ---- http ---------------------------------------------------------------------------- */

static void http_done(void *arg, int status, const char *err)
{
    struct health_probe *p = arg;
    char reason[ROUTE_REASON_MAX];
    if (status)
        snprintf(reason, sizeof(reason), "probe %s answered %d", p->spec.arg, status);
    else
        snprintf(reason, sizeof(reason), "probe %s: %s", p->spec.arg, err);
    report(p, status >= 200 && status < 300, reason);
}

/* ---- scheduling ---------------------------------------------------------------------- */

static void tick(evutil_socket_t fd, short what, void *arg)
{
    struct health_probe *p = arg;
    (void)fd;
    (void)what;
    if (p->stopped)
        return;
    if (p->running) {
        /* A prisma thread stuck in I/O cannot be cancelled: count it as a failure and look
         * again later; its result still lands when it finishes. */
        if (p->job && mono_ms() - p->run_started_ms > HEALTH_PROBE_TIMEOUT_MS)
            health_set(p->h, HEALTH_COND_MIGRATIONS, true, false,
                       "prisma probe stuck (database not answering)");
        schedule(p, false);
        return;
    }
    p->running = true;
    p->run_started_ms = mono_ms();
    switch (p->spec.kind) {
    case HEALTH_PROBE_PRISMA: run_prisma(p); break;
    case HEALTH_PROBE_COMMAND: run_command(p); break;
    case HEALTH_PROBE_HTTP:
        if (health_http_get(&p->http) < 0 && p->running && !p->http.busy)
            report(p, false, "cannot start the probe request");
        break;
    default: report(p, true, NULL); break;
    }
}

struct health_probe *health_probe_new(struct health *h, const struct health_probe_spec *spec, char *err,
                                      size_t esize)
{
    struct health_probe *p = calloc(1, sizeof(*p));
    if (!p)
        goto nomem;
    p->h = h;
    p->spec.kind = spec->kind;
    if ((spec->db && !(p->spec.db = strdup(spec->db))) || (spec->dir && !(p->spec.dir = strdup(spec->dir))) ||
        (spec->arg && !(p->spec.arg = strdup(spec->arg))))
        goto nomem;
    if (spec->kind == HEALTH_PROBE_PRISMA) {
        /* The migrations come with the app: a missing dir is a deployment mistake, not a state
         * to wait out. (The database may legitimately appear later, e.g. on a LiteFS mount.) */
        struct stat st;
        if (stat(spec->dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
            snprintf(err, esize, "--migrations prisma: migrations dir %s: %s", spec->dir,
                     stat(spec->dir, &st) < 0 ? strerror(errno) : "not a directory");
            goto fail;
        }
        int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (efd < 0)
            goto nomem;
        p->done_ev = event_new(h->base, efd, EV_READ | EV_PERSIST, prisma_done, p);
        if (!p->done_ev) {
            close(efd);
            goto nomem;
        }
    } else if (spec->kind == HEALTH_PROBE_HTTP) {
        const char *why = NULL;
        if (health_http_init(&p->http, h->base, spec->arg, HEALTH_HTTP_TIMEOUT_MS, http_done, p, &why) < 0) {
            snprintf(err, esize, "--migrations http:%s: %s", spec->arg, why);
            goto fail;
        }
        p->http_ready = true;
    }
    p->tick = evtimer_new(h->base, tick, p);
    if (!p->tick)
        goto nomem;
    return p;
nomem:
    snprintf(err, esize, "out of memory");
fail:
    health_probe_free(p);
    return NULL;
}

int health_probe_start(struct health_probe *p)
{
    if (p->done_ev && event_add(p->done_ev, NULL) < 0)
        return -1;
    health_probe_run_now(p);
    return 0;
}

void health_probe_run_now(struct health_probe *p)
{
    if (p->stopped || p->running)
        return;
    struct timeval now = {0, 0};
    evtimer_add(p->tick, &now);
}

void health_probe_stop(struct health_probe *p)
{
    if (!p)
        return;
    p->stopped = true;
    if (p->tick)
        evtimer_del(p->tick);
}

void health_probe_free(struct health_probe *p)
{
    if (!p)
        return;
    health_probe_stop(p);
    if (p->tick)
        event_free(p->tick);
    health_proc_free(p->proc);
    if (p->http_ready)
        health_http_cleanup(&p->http);
    if (p->done_ev) {
        if (p->job) {
            /* The helper thread still owns the job and writes to the eventfd: leave both to it
             * (we are exiting; this only happens when the database hangs). */
            event_del(p->done_ev);
        } else {
            close(event_get_fd(p->done_ev));
        }
        event_free(p->done_ev);
    }
    health_migrations_clear(&p->last);
    health_probe_spec_free(&p->spec);
    free(p);
}
