/*
 * Gate evaluation: a pure function of the conditions, so the control thread
 * can recompute it after any probe result and publish only real changes.
 * Draining wins over everything; then migrations, then the app's health.
 */
#include "health/health_gate.h"

#include <stdio.h>

enum route_gate health_gate_state(const struct health_gate *g, char *reason, size_t size)
{
    const char *why = NULL;
    enum route_gate state = ROUTE_GATE_CLOSED;
    if (g->draining) {
        state = ROUTE_GATE_DRAINING;
        why = "shutting down";
    } else if (g->need_migrations && !g->migrations_done) {
        why = "migrations pending";
    } else if (g->need_migrate_run && !g->migrate_run_done) {
        why = "migrate command has not succeeded yet";
    } else if (g->need_app_health && !g->app_healthy) {
        why = "app not healthy";
    } else {
        state = ROUTE_GATE_OPEN;
    }
    if (size) {
        if (!why)
            reason[0] = '\0';
        else if (g->detail[0] && state == ROUTE_GATE_CLOSED)
            snprintf(reason, size, "%s: %s", why, g->detail);
        else
            snprintf(reason, size, "%s", why);
    }
    return state;
}
