/*
 * struct health: the gate's conditions and what feeds them, on the control
 * thread. The migration probe, --upstream-health, --migrate-command and the
 * supervised app each own one condition of the gate (health_gate.h); this
 * file creates them from the configuration, passes role changes on, and
 * calls the control thread back whenever a condition changes.
 */
#include "health/health-int.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy_log.h"

#define APP_HEALTH_INTERVAL_MS 1000
#define APP_HEALTH_TIMEOUT_MS  5000

void health_set(struct health *h, enum health_cond c, bool needed, bool ok, const char *detail)
{
    if (health_gate_set(&h->gate, c, needed, ok, detail) && h->changed)
        h->changed(h->arg);
}

/* ---- --upstream-health ----------------------------------------------------------------- */

static void app_health_done(void *arg, int status, const char *err)
{
    struct health *h = arg;
    char detail[ROUTE_REASON_MAX];
    bool ok = status >= 200 && status < 300;
    if (status)
        snprintf(detail, sizeof(detail), "GET %s answered %d", h->upstream_health, status);
    else
        snprintf(detail, sizeof(detail), "GET %s: %s", h->upstream_health, err);
    bool was_up = h->app.up;
    bool up = health_app_result(&h->app, ok);
    const char *now = ok ? "" : detail;
    if (strcmp(now, h->app_last) != 0 || up != was_up) {
        char q[PROXY_LOG_QUOTE_MAX];
        if (ok)
            proxy_log_info(up ? "app healthy" : "app check passed, not healthy yet",
                           "path=%s status=%d oks=%d", h->upstream_health, status, h->app.oks);
        else
            proxy_log_warn(up ? "app check failed, still counted healthy" : "app not healthy",
                           "path=%s detail=\"%s\" fails=%d", h->upstream_health,
                           proxy_log_quote(q, sizeof(q), detail), h->app.fails);
        snprintf(h->app_last, sizeof(h->app_last), "%s", now);
    }
    if (!h->draining)
        health_set(h, HEALTH_COND_APP_HEALTHY, true, up, up ? NULL : detail);
}

static void app_health_tick(evutil_socket_t fd, short what, void *arg)
{
    struct health *h = arg;
    (void)fd;
    (void)what;
    if (h->draining)
        return;
    /* One check at a time: a slow app is reported by the check's own timeout. */
    if (!h->app_http.busy && health_http_get(&h->app_http) < 0 && !h->app_http.busy)
        health_set(h, HEALTH_COND_APP_HEALTHY, true, false, "cannot start the health request");
    struct timeval tv = {APP_HEALTH_INTERVAL_MS / 1000, (APP_HEALTH_INTERVAL_MS % 1000) * 1000};
    evtimer_add(h->app_tick, &tv);
}

/* ---- lifecycle ------------------------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

struct health *health_new(struct event_base *base, const struct health_config *cfg, health_changed_cb changed,
                          health_app_exit_cb app_exit, void *arg, char *err, size_t esize)
{
    struct health_probe_spec spec;
    if (health_probe_parse(cfg->migrations, &spec, err, esize) < 0)
        return NULL;
    struct health *h = calloc(1, sizeof(*h));
    if (!h)
        goto nomem;
    h->base = base;
    h->changed = changed;
    h->app_exit = app_exit;
    h->arg = arg;
    h->role = ROUTE_ROLE_UNKNOWN;
    h->app_stop_timeout_ms = cfg->app_stop_timeout_ms > 0 ? cfg->app_stop_timeout_ms : 30000;
    h->mig.backoff_ms = HEALTH_MIGRATE_BACKOFF_MIN_MS;
    snprintf(h->app_last, sizeof(h->app_last), "not checked yet"); /* so the first result is logged */
    if (cfg->migrate_command && !*cfg->migrate_command) {
        snprintf(err, esize, "--migrate-command: empty command");
        goto fail;
    }
    if ((cfg->migrate_command && !(h->migrate_command = dup_or_null(cfg->migrate_command))) ||
        (cfg->target && !(h->target = dup_or_null(cfg->target))))
        goto nomem;
    if (cfg->upstream_health && *cfg->upstream_health) {
        if (cfg->upstream_health[0] != '/') {
            snprintf(err, esize, "--upstream-health \"%s\": expected a path starting with /, e.g. /healthz",
                     cfg->upstream_health);
            goto fail;
        }
        if (!(h->upstream_health = strdup(cfg->upstream_health)))
            goto nomem;
        char url[1536];
        const char *why = NULL;
        snprintf(url, sizeof(url), "http://%s%s", h->target ? h->target : "", h->upstream_health);
        if (health_http_init(&h->app_http, base, url, APP_HEALTH_TIMEOUT_MS, app_health_done, h, &why) < 0) {
            snprintf(err, esize, "--upstream-health: %s (%s)", why, url);
            goto fail;
        }
        h->app_http_ready = true;
        if (!(h->app_tick = evtimer_new(base, app_health_tick, h)))
            goto nomem;
    }
    if (cfg->app_argv) {
        if (cfg->app_argc < 1 || !cfg->app_argv[0] || !*cfg->app_argv[0]) {
            snprintf(err, esize, "no app command after --");
            goto fail;
        }
        if (!(h->app_argv = calloc((size_t)cfg->app_argc + 1, sizeof(char *))))
            goto nomem;
        for (int i = 0; i < cfg->app_argc; i++)
            if (!(h->app_argv[i] = strdup(cfg->app_argv[i])))
                goto nomem;
    }
    if (spec.kind != HEALTH_PROBE_NONE && !(h->probe = health_probe_new(h, &spec, err, esize)))
        goto fail;
    if (h->migrate_command && health_migrate_init(h) < 0)
        goto nomem;
    health_probe_spec_free(&spec);
    /* Conditions that are needed but not yet known start closed, so the first publication
     * never shows an open gate that a probe then has to take back. */
    if (h->probe)
        health_gate_set(&h->gate, HEALTH_COND_MIGRATIONS, true, false, "not checked yet");
    if (h->migrate_command)
        health_gate_set(&h->gate, HEALTH_COND_MIGRATE_RUN, true, false, "waiting for the lease");
    if (h->app_argv)
        health_gate_set(&h->gate, HEALTH_COND_APP_STARTED, true, false, "waiting for the lease");
    if (h->app_tick)
        health_gate_set(&h->gate, HEALTH_COND_APP_HEALTHY, true, false, "not checked yet");
    return h;
nomem:
    snprintf(err, esize, "out of memory");
fail:
    health_probe_spec_free(&spec);
    health_free(h);
    return NULL;
}

int health_start(struct health *h)
{
    h->started = true;
    if (h->probe && health_probe_start(h->probe) < 0)
        return -1;
    if (h->app_tick) {
        struct timeval now = {0, 0};
        if (evtimer_add(h->app_tick, &now) < 0)
            return -1;
    }
    /* A role given before the start (the static lease) is applied now, as a change from
     * unknown, so that it opens a tenure like any acquisition. */
    enum route_role role = h->role;
    h->role = ROUTE_ROLE_UNKNOWN;
    health_set_role(h, role);
    return 0;
}

void health_set_role(struct health *h, enum route_role role)
{
    enum route_role old = h->role;
    h->role = role;
    if (!h->started)
        return;
    health_migrate_role(h, old, role);
    health_child_maybe_start(h);
}

enum route_gate health_state(const struct health *h, char *reason, size_t size)
{
    return health_gate_state(&h->gate, reason, size);
}

bool health_may_lead(const struct health *h)
{
    return health_gate_may_lead(&h->gate);
}

void health_drain(struct health *h)
{
    h->draining = true;
    h->gate.draining = true;
    health_probe_stop(h->probe);
    if (h->app_tick)
        evtimer_del(h->app_tick);
    if (h->mig.retry)
        evtimer_del(h->mig.retry);
    h->mig.waiting = false;
}

bool health_busy(const struct health *h)
{
    return h->mig.proc != NULL;
}

void health_migrations(const struct health *h, size_t *applied, void (*each)(void *arg, const char *name),
                       void *arg)
{
    *applied = 0;
    if (!h->probe || h->probe->spec.kind != HEALTH_PROBE_PRISMA)
        return;
    *applied = h->probe->last.applied;
    for (size_t i = 0; i < h->probe->last.npending; i++)
        each(arg, h->probe->last.pending[i]);
}

void health_free(struct health *h)
{
    if (!h)
        return;
    health_probe_free(h->probe);
    if (h->app_tick)
        event_free(h->app_tick);
    if (h->app_http_ready)
        health_http_cleanup(&h->app_http);
    health_migrate_cleanup(h);
    health_child_cleanup(h);
    if (h->app_argv) {
        for (char **a = h->app_argv; *a; a++)
            free(*a);
        free(h->app_argv);
    }
    free(h->migrate_command);
    free(h->upstream_health);
    free(h->target);
    free(h);
}
