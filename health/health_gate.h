/*
 * The gate (SPEC §4): an instance takes traffic only when every configured
 * condition holds, and never again once it drains.
 *
 * A pure value: the control thread owns one, health/ sets conditions as
 * probes report, and health_gate_state() turns it into the state and the
 * one-line reason that the snapshot, /health and the Consul ready check show.
 */
#ifndef LEASEWAY_HEALTH_GATE_H
#define LEASEWAY_HEALTH_GATE_H

#include <stdbool.h>
#include <stddef.h>

#include "routing/route-t.h"

/* What the gate waits for, in the order a reason reports them. */
enum health_cond {
    HEALTH_COND_MIGRATIONS = 0, /* --migrations probe says complete */
    HEALTH_COND_MIGRATE_RUN,    /* primary: --migrate-command succeeded in this tenure */
    HEALTH_COND_APP_STARTED,    /* `-- app command`: the supervised app was started */
    HEALTH_COND_APP_HEALTHY,    /* --upstream-health answers 2xx */
    HEALTH_COND_COUNT
};

struct health_gate {
    struct {
        bool needed;                   /* configured and relevant now */
        bool ok;                       /* holds */
        char detail[ROUTE_REASON_MAX]; /* why not, in the probe's words ("" if nothing to add) */
    } cond[HEALTH_COND_COUNT];
    bool draining; /* SIGTERM: closed for good */
};

const char *health_cond_str(enum health_cond c);

/* Set one condition; detail may be NULL. Returns true if anything changed. */
bool health_gate_set(struct health_gate *g, enum health_cond c, bool needed, bool ok, const char *detail);

/* The gate's state and a one-line reason (empty when open). */
enum route_gate health_gate_state(const struct health_gate *g, char *reason, size_t size);

/*
 * May this instance take the lease now? Not while it drains, nor while the app's health is
 * what keeps its gate closed (HEALTH_COND_APP_HEALTHY is the first unmet condition). Pending
 * migrations (or a migrate command not run yet, an app not started yet) do not count: the
 * lease holder runs --migrate-command before its gate opens, and the app starts once the lease
 * is settled, so requiring them would leave the lease with nobody.
 */
bool health_gate_may_lead(const struct health_gate *g);

/*
 * --upstream-health results to the app_healthy condition, with HAProxy's hysteresis (fall 3,
 * rise 2): the first 2xx opens it at once (start-up); once open, HEALTH_APP_FALL failed checks in
 * a row close it, so that one slow or failed answer does not take the instance out; once closed
 * again, HEALTH_APP_RISE good checks in a row reopen it. Returns whether the app counts as healthy.
 */
#define HEALTH_APP_FALL 3
#define HEALTH_APP_RISE 2
struct health_app_state {
    bool up, ever_up;
    int oks, fails; /* in a row */
};
bool health_app_result(struct health_app_state *s, bool ok);

#endif
