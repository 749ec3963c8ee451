/*
 * --migrate-command (SPEC §4): run once each time this instance acquires
 * the lease, before its gate opens. A tenure starts whenever the role turns
 * primary; a run counts only for the tenure it was started in, so a run that
 * outlives a lost lease finishes (killing a migration half way is worse) but
 * does not open the gate of a later tenure. One run at a time; a failure
 * keeps the gate closed and is retried after 1 s, 2 s, 4 s ... up to 30 s.
 * Never on a replica.
 */
#include "health/health-int.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "proxy/proxy_log.h"

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool done_now(const struct health *h)
{
    return h->mig.tenure > 0 && h->mig.done_tenure == h->mig.tenure;
}

/* The MIGRATE_RUN condition from the role and this tenure's progress. */
static void update_cond(struct health *h)
{
    const char *failure = h->mig.failure[0] ? h->mig.failure : NULL;
    switch (h->role) {
    case ROUTE_ROLE_PRIMARY:
        if (done_now(h))
            health_set(h, HEALTH_COND_MIGRATE_RUN, true, true, NULL);
        else if (h->mig.proc)
            health_set(h, HEALTH_COND_MIGRATE_RUN, true, false, "running");
        else
            health_set(h, HEALTH_COND_MIGRATE_RUN, true, false, failure ? failure : "not run yet");
        break;
    case ROUTE_ROLE_REPLICA: health_set(h, HEALTH_COND_MIGRATE_RUN, false, true, NULL); break;
    default: health_set(h, HEALTH_COND_MIGRATE_RUN, true, false, "waiting for the lease"); break;
    }
}

static void maybe_run(struct health *h);

/*
 * A migration that prints a line per row must not flood the log (a slow log pipe would also
 * slow the control thread): at most HEALTH_MIGRATE_LOG_LINES lines a second are logged, and
 * how many were left out is logged once the second is over or the command has ended.
 */
#define HEALTH_MIGRATE_LOG_LINES 50

static void log_unlogged(struct health_migrate *m)
{
    if (m->unlogged)
        proxy_log_warn("migrate command output not logged", "lines=%llu limit_per_s=%d",
                       (unsigned long long)m->unlogged, HEALTH_MIGRATE_LOG_LINES);
    m->unlogged = 0;
}

static void run_line(void *arg, const char *line)
{
    struct health *h = arg;
    struct health_migrate *m = &h->mig;
    /* the last line may become the gate's reason, shown on /health and in 503 bodies */
    snprintf(m->last_line, sizeof(m->last_line), "%s", line);
    proxy_log_scrub(m->last_line);
    int64_t sec = mono_ms() / 1000;
    if (sec != m->log_sec) {
        log_unlogged(m);
        m->log_sec = sec;
        m->log_n = 0;
    }
    if (m->log_n < HEALTH_MIGRATE_LOG_LINES) {
        m->log_n++;
        char q[PROXY_LOG_QUOTE_MAX];
        proxy_log_info("migrate command output", "line=\"%s\"", proxy_log_quote(q, sizeof(q), line));
    } else {
        m->unlogged++;
    }
}

static void run_exited(void *arg, int status, bool timed_out)
{
    struct health *h = arg;
    struct health_migrate *m = &h->mig;
    health_proc_free(m->proc);
    m->proc = NULL;
    log_unlogged(m);
    long long took = (long long)(mono_ms() - m->started_ms);
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    bool current = m->run_tenure == m->tenure && h->role == ROUTE_ROLE_PRIMARY;
    char how[64];
    health_proc_describe(status, timed_out, 0, how, sizeof(how));

    if (ok && current) {
        m->done_tenure = m->tenure;
        m->failure[0] = '\0';
        m->backoff_ms = HEALTH_MIGRATE_BACKOFF_MIN_MS;
        proxy_log_info("migrate command succeeded", "duration_ms=%lld tenure=%llu", took,
                       (unsigned long long)m->tenure);
        /* Look at the migrations now rather than at the next tick: the gate opens sooner. */
        if (h->probe)
            health_probe_run_now(h->probe);
    } else if (ok) {
        proxy_log_warn("migrate command finished after the lease was lost: not counted for a later tenure",
                       "duration_ms=%lld", took);
    } else {
        char q[PROXY_LOG_QUOTE_MAX];
        proxy_log_error("migrate command failed", "result=\"%s\" duration_ms=%lld last_line=\"%s\"", how,
                        took, proxy_log_quote(q, sizeof(q), m->last_line));
        if (current && !h->draining) {
            snprintf(m->failure, sizeof(m->failure), "failed (%.32s%s%.80s), retry in %lld s", how,
                     m->last_line[0] ? ": " : "", m->last_line, (long long)(m->backoff_ms / 1000));
            struct timeval tv = {m->backoff_ms / 1000, (m->backoff_ms % 1000) * 1000};
            if (evtimer_add(m->retry, &tv) == 0)
                m->waiting = true;
            m->backoff_ms *= 2;
            if (m->backoff_ms > HEALTH_MIGRATE_BACKOFF_MAX_MS)
                m->backoff_ms = HEALTH_MIGRATE_BACKOFF_MAX_MS;
        }
    }
    update_cond(h);
    maybe_run(h); /* a new tenure may have begun while this run was going */
    health_child_maybe_start(h);
}

static void maybe_run(struct health *h)
{
    struct health_migrate *m = &h->mig;
    if (h->draining || h->role != ROUTE_ROLE_PRIMARY || done_now(h) || m->proc || m->waiting)
        return;
    struct health_proc_opts o = {
        .shell_cmd = h->migrate_command,
        .capture = true,
        .on_line = run_line,
        .on_exit = run_exited,
        .arg = h,
    };
    m->last_line[0] = '\0';
    m->run_tenure = m->tenure;
    m->started_ms = mono_ms();
    m->proc = health_proc_spawn(h->base, &o);
    if (!m->proc) {
        snprintf(m->failure, sizeof(m->failure), "cannot start: %s", strerror(errno));
        char q[PROXY_LOG_QUOTE_MAX];
        proxy_log_error("migrate command failed", "result=\"%s\"", proxy_log_quote(q, sizeof(q), m->failure));
        struct timeval tv = {m->backoff_ms / 1000, (m->backoff_ms % 1000) * 1000};
        if (evtimer_add(m->retry, &tv) == 0)
            m->waiting = true;
        update_cond(h);
        return;
    }
    char q[PROXY_LOG_QUOTE_MAX];
    proxy_log_info("migrate command started", "command=\"%s\" tenure=%llu pid=%d",
                   proxy_log_quote(q, sizeof(q), h->migrate_command), (unsigned long long)m->tenure,
                   (int)m->proc->pid);
    update_cond(h);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct health *h = arg;
    (void)fd;
    (void)what;
    h->mig.waiting = false;
    maybe_run(h);
}

int health_migrate_init(struct health *h)
{
    h->mig.retry = evtimer_new(h->base, on_retry, h);
    return h->mig.retry ? 0 : -1;
}

void health_migrate_role(struct health *h, enum route_role old_role, enum route_role role)
{
    struct health_migrate *m = &h->mig;
    if (!h->migrate_command)
        return;
    if (role == ROUTE_ROLE_PRIMARY && old_role != ROUTE_ROLE_PRIMARY) {
        m->tenure++;
        m->failure[0] = '\0';
        m->backoff_ms = HEALTH_MIGRATE_BACKOFF_MIN_MS;
        if (m->waiting) {
            evtimer_del(m->retry);
            m->waiting = false;
        }
    } else if (role != ROUTE_ROLE_PRIMARY && old_role == ROUTE_ROLE_PRIMARY) {
        if (m->waiting) {
            evtimer_del(m->retry);
            m->waiting = false;
        }
        if (m->proc)
            proxy_log_warn("lease lost while the migrate command runs: letting it finish", "pid=%d",
                           (int)m->proc->pid);
    }
    update_cond(h);
    maybe_run(h);
}

void health_stop_migrate(struct health *h)
{
    if (!h || !h->mig.proc)
        return;
    proxy_log_warn("stopping the migrate command before the lease is released", "pid=%d",
                   (int)h->mig.proc->pid);
    health_proc_free(h->mig.proc); /* SIGKILL to its process group, reaped */
    h->mig.proc = NULL;
    log_unlogged(&h->mig);
    update_cond(h);
}

void health_migrate_cleanup(struct health *h)
{
    if (h->mig.proc) {
        proxy_log_warn("stopping the migrate command", "pid=%d", (int)h->mig.proc->pid);
        health_proc_free(h->mig.proc);
        h->mig.proc = NULL;
    }
    if (h->mig.retry)
        event_free(h->mig.retry);
    h->mig.retry = NULL;
}
