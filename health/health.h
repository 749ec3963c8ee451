/*
 * health/: everything that decides whether this instance takes traffic
 * (SPEC §4) and the app it may supervise, on the control thread's loop.
 *
 *   --migrations probe   none | prisma:<db>:<dir> | command:<cmd> | http:<url>
 *   --migrate-command    once per lease tenure, on the primary, before its gate opens
 *   --upstream-health    GET <target><path> every second; 2xx = healthy
 *   -- <app command>     started once the lease (and the primary's migrate command)
 *                        is settled; stopped after the lease is released
 *
 * The control thread owns a struct health, tells it the role on every lease
 * change, asks it for the gate when it composes the snapshot, and is called
 * back when the gate may have changed or the app exited by itself.
 */
#ifndef LEASEWAY_HEALTH_H
#define LEASEWAY_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "routing/route-t.h"

struct event_base;
struct health;

struct health_config {
    const char *migrations;      /* --migrations ("none" or NULL: no probe) */
    const char *migrate_command; /* --migrate-command, NULL if unset */
    const char *upstream_health; /* --upstream-health path, NULL if unset */
    const char *target;          /* --target host:port, for --upstream-health */
    char **app_argv;             /* the words after --, NULL if none */
    int app_argc;
    int64_t app_stop_timeout_ms; /* how long the app gets after SIGTERM before SIGKILL */
};

/*
 * Children (the app, --migrate-command, command: probes) outlive nothing: each is started
 * through `<leaseway binary> __child`, which asks the kernel for SIGTERM when leaseway dies
 * (PR_SET_PDEATHSIG) and then execs the command. A SIGKILLed or crashed leaseway (the OOM
 * killer) so never leaves an app holding the port its restart needs. `leaseway run` calls
 * health_proc_use_shim() with its own path at start; without it (unit tests) children are
 * spawned directly.
 */
void health_proc_use_shim(const char *leaseway_path);
/* main() of `leaseway __child <parent pid> <path> <argv0> [args...]`: never returns on success. */
int health_proc_shim_main(int argc, char **argv);

/* The gate may have changed: recompute and publish. */
typedef void (*health_changed_cb)(void *arg);
/* The supervised app exited by itself with this exit code (128+n for signal n). */
typedef void (*health_app_exit_cb)(void *arg, int exit_code);
typedef void (*health_done_cb)(void *arg);

/*
 * Validate cfg (probe syntax, migrations dir present, URLs) and set up; nothing runs until
 * health_start(). Returns NULL with a message for the operator in err on bad configuration.
 * Strings are copied. Free with health_free().
 */
__attribute__((warn_unused_result)) struct health *
health_new(struct event_base *base, const struct health_config *cfg, health_changed_cb changed,
           health_app_exit_cb app_exit, void *arg, char *err, size_t esize);
/* Start the probes. Returns 0 or -1 (out of memory). */
__attribute__((warn_unused_result)) int health_start(struct health *h);
/* The lease role now (call on every change, and once with the static lease). */
void health_set_role(struct health *h, enum route_role role);
/* The gate: state and one-line reason. */
enum route_gate health_state(const struct health *h, char *reason, size_t size);
/* May this instance take the lease now (health_gate_may_lead())? */
bool health_may_lead(const struct health *h);
/* Shutdown: the gate reads draining from now on; probes stop, no new migrate run. */
void health_drain(struct health *h);
/* A --migrate-command run is in flight (shutdown lets it finish within the drain budget). */
bool health_busy(const struct health *h);
/*
 * Before the lease is given away: kill a migrate command still running (its process group)
 * and reap it, so that it never runs beside the next primary's.
 */
void health_stop_migrate(struct health *h);
/* For /status: applied count and each pending migration name (prisma probe only). */
void health_migrations(const struct health *h, size_t *applied, void (*each)(void *arg, const char *name),
                       void *arg);
/* Is there a supervised app that is running? */
bool health_app_running(const struct health *h);
/*
 * Stop the supervised app: forward sig (SIGTERM or SIGINT), then SIGKILL its process group
 * after app_stop_timeout_ms. done runs once it is gone (before this returns if there is
 * none). Afterwards health_app_exit_code() tells what leaseway should exit with.
 */
void health_stop_app(struct health *h, int sig, health_done_cb done, void *arg);
/*
 * Exit code once the app is gone: its exit code, 128+n if signal n killed it, except 0 when
 * the signal we forwarded ended it (the stop we asked for). 0 if there was no app.
 */
int health_app_exit_code(const struct health *h);
/* Kills whatever still runs (probe, migrate command, app), frees. NULL is fine. */
void health_free(struct health *h);

#endif
