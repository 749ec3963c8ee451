/*
 * `leaseway run ... -- <app command>`: supervise the app, LiteFS `exec`
 * style, so one container needs one entrypoint. The app starts once the
 * lease is settled (role known) and, on a primary with --migrate-command,
 * after that command succeeded: it never sees a schema older than its code.
 * On SIGTERM the control thread drains and releases the lease first, then
 * forwards the signal here; if the app exits by itself, leaseway drains and
 * exits with the app's code.
 */
#include "health/health-int.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "proxy/proxy_log.h"

static int exit_code_of(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1;
}

static void child_exited(void *arg, int status, bool timed_out)
{
    struct health *h = arg;
    struct health_child *c = &h->child;
    (void)timed_out;
    char how[64];
    health_proc_describe(status, false, 0, how, sizeof(how));
    int pid = (int)c->pid;
    health_proc_free(c->proc);
    c->proc = NULL;
    c->exited = true;
    c->exit_code = exit_code_of(status);
    if (c->kill)
        evtimer_del(c->kill);
    if (c->stopping) {
        /* Dying of the very signal we forwarded is the clean stop we asked for. */
        if (WIFSIGNALED(status) && WTERMSIG(status) == c->stop_sig)
            c->exit_code = 0;
        proxy_log_info("app stopped", "pid=%d result=\"%s\" exit_code=%d", pid, how, c->exit_code);
        if (c->stop_done) {
            health_done_cb done = c->stop_done;
            c->stop_done = NULL;
            done(c->stop_arg);
        }
        return;
    }
    proxy_log_warn("app exited by itself: shutting down", "pid=%d result=\"%s\"", pid, how);
    char detail[ROUTE_REASON_MAX];
    snprintf(detail, sizeof(detail), "app exited (%s)", how);
    health_set(h, HEALTH_COND_APP_STARTED, true, false, detail);
    if (h->app_exit)
        h->app_exit(h->arg, c->exit_code);
}

void health_child_maybe_start(struct health *h)
{
    struct health_child *c = &h->child;
    if (!h->app_argv || c->started || h->draining)
        return;
    if (h->role == ROUTE_ROLE_UNKNOWN) {
        health_set(h, HEALTH_COND_APP_STARTED, true, false, "waiting for the lease");
        return;
    }
    if (h->migrate_command && h->role == ROUTE_ROLE_PRIMARY &&
        !(h->mig.tenure > 0 && h->mig.done_tenure == h->mig.tenure)) {
        health_set(h, HEALTH_COND_APP_STARTED, true, false, "waiting for the migrate command");
        return;
    }
    struct health_proc_opts o = {.argv = h->app_argv, .capture = false, .on_exit = child_exited, .arg = h};
    c->started = true;
    c->proc = health_proc_spawn(h->base, &o);
    if (!c->proc) {
        int e = errno;
        char detail[ROUTE_REASON_MAX], q[PROXY_LOG_QUOTE_MAX];
        snprintf(detail, sizeof(detail), "cannot start %s: %s", h->app_argv[0], strerror(e));
        proxy_log_error("cannot start the app", "command=\"%s\" error=\"%s\"",
                        proxy_log_quote(q, sizeof(q), h->app_argv[0]), strerror(e));
        c->exited = true;
        c->exit_code = e == ENOENT ? 127 : 126; /* what a shell would say */
        health_set(h, HEALTH_COND_APP_STARTED, true, false, detail);
        if (h->app_exit)
            h->app_exit(h->arg, c->exit_code);
        return;
    }
    c->pid = c->proc->pid;
    char q[PROXY_LOG_QUOTE_MAX];
    proxy_log_info("app started", "command=\"%s\" pid=%d role=%s",
                   proxy_log_quote(q, sizeof(q), h->app_argv[0]), (int)c->pid, route_role_str(h->role));
    health_set(h, HEALTH_COND_APP_STARTED, true, true, NULL);
}

static void kill_app(evutil_socket_t fd, short what, void *arg)
{
    struct health *h = arg;
    (void)fd;
    (void)what;
    if (!h->child.proc)
        return;
    proxy_log_warn("app did not stop in time: killing it", "pid=%d timeout_ms=%lld", (int)h->child.proc->pid,
                   (long long)h->app_stop_timeout_ms);
    kill(-h->child.proc->pid, SIGKILL);
    kill(h->child.proc->pid, SIGKILL);
}

bool health_app_running(const struct health *h)
{
    return h->child.proc != NULL;
}

void health_stop_app(struct health *h, int sig, health_done_cb done, void *arg)
{
    struct health_child *c = &h->child;
    if (!c->proc || c->stopping) {
        if (!c->proc && done)
            done(arg);
        return;
    }
    c->stopping = true;
    c->stop_sig = sig;
    c->stop_done = done;
    c->stop_arg = arg;
    if (!c->kill)
        c->kill = evtimer_new(h->base, kill_app, h);
    struct timeval tv = {h->app_stop_timeout_ms / 1000, (h->app_stop_timeout_ms % 1000) * 1000};
    if (c->kill)
        evtimer_add(c->kill, &tv);
    proxy_log_info("stopping the app", "pid=%d signal=%s timeout_ms=%lld", (int)c->proc->pid,
                   sig == SIGINT ? "SIGINT" : "SIGTERM", (long long)h->app_stop_timeout_ms);
    health_proc_signal(c->proc, sig);
}

int health_app_exit_code(const struct health *h)
{
    return h->child.exited ? h->child.exit_code : 0;
}

void health_child_cleanup(struct health *h)
{
    struct health_child *c = &h->child;
    if (c->proc) {
        proxy_log_warn("killing the app", "pid=%d", (int)c->proc->pid);
        health_proc_free(c->proc);
        c->proc = NULL;
    }
    if (c->kill)
        event_free(c->kill);
    c->kill = NULL;
}
