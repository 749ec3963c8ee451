/*
 * The gate (SPEC §4): an instance takes traffic only when every configured
 * condition holds, and never again once it drains.
 */
#ifndef LEASEWAY_HEALTH_GATE_H
#define LEASEWAY_HEALTH_GATE_H

#include <stdbool.h>
#include <stddef.h>

#include "routing/route-t.h"

struct health_gate {
    bool need_migrations; /* --migrations is not none */
    bool migrations_done;
    bool need_app_health; /* --upstream-health is set */
    bool app_healthy;
    bool need_migrate_run; /* primary with --migrate-command: its run must have succeeded */
    bool migrate_run_done;
    bool draining;
    char detail[ROUTE_REASON_MAX]; /* the probe's own words for the current blocker */
};

/* The gate's state and a one-line reason (empty when open). */
enum route_gate health_gate_state(const struct health_gate *g, char *reason, size_t size);

#endif
