/*
 * Gate evaluation: a pure function of the conditions, so the control thread
 * can recompute it after any probe result and publish only real changes.
 * Draining wins over everything; then the first unmet condition in
 * enum order names the reason ("migrations pending: ...").
 */
#include "health/health_gate.h"

#include <stdio.h>
#include <string.h>

/* The words an operator sees in /health, Leaseway-Gate bodies and the ready check. */
static const char *const blocked_words[HEALTH_COND_COUNT] = {
    "migrations pending",
    "migrate command has not succeeded yet",
    "app not started",
    "app not healthy",
};

const char *health_cond_str(enum health_cond c)
{
    static const char *const names[HEALTH_COND_COUNT] = {"migrations", "migrate_run", "app_started",
                                                         "app_healthy"};
    return (unsigned)c < HEALTH_COND_COUNT ? names[c] : "invalid";
}

bool health_gate_set(struct health_gate *g, enum health_cond c, bool needed, bool ok, const char *detail)
{
    if ((unsigned)c >= HEALTH_COND_COUNT)
        return false;
    if (!detail)
        detail = "";
    bool changed =
        g->cond[c].needed != needed || g->cond[c].ok != ok || strcmp(g->cond[c].detail, detail) != 0;
    g->cond[c].needed = needed;
    g->cond[c].ok = ok;
    snprintf(g->cond[c].detail, sizeof(g->cond[c].detail), "%s", detail);
    return changed;
}

enum route_gate health_gate_state(const struct health_gate *g, char *reason, size_t size)
{
    if (size)
        reason[0] = '\0';
    if (g->draining) {
        if (size)
            snprintf(reason, size, "shutting down");
        return ROUTE_GATE_DRAINING;
    }
    for (int c = 0; c < HEALTH_COND_COUNT; c++) {
        if (!g->cond[c].needed || g->cond[c].ok)
            continue;
        if (size) {
            if (g->cond[c].detail[0])
                snprintf(reason, size, "%s: %s", blocked_words[c], g->cond[c].detail);
            else
                snprintf(reason, size, "%s", blocked_words[c]);
        }
        return ROUTE_GATE_CLOSED;
    }
    return ROUTE_GATE_OPEN;
}

bool health_gate_may_lead(const struct health_gate *g)
{
    if (g->draining)
        return false;
    for (int c = 0; c < HEALTH_COND_COUNT; c++)
        if (g->cond[c].needed && !g->cond[c].ok)
            return c != HEALTH_COND_APP_HEALTHY;
    return true;
}

bool health_app_result(struct health_app_state *s, bool ok)
{
    if (ok) {
        s->fails = 0;
        s->oks++;
        if (!s->up && (!s->ever_up || s->oks >= HEALTH_APP_RISE))
            s->up = s->ever_up = true;
    } else {
        s->oks = 0;
        s->fails++;
        if (s->up && s->fails >= HEALTH_APP_FALL)
            s->up = false;
    }
    return s->up;
}
