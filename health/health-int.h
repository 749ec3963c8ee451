/*
 * health/ internals shared by its files and its unit tests: child
 * processes, one-shot HTTP checks, the Prisma check and the migration probe.
 * Everything here runs on the control thread's event loop except
 * health_prisma_check(), which the probe runs on a helper thread.
 */
#ifndef LEASEWAY_HEALTH_INT_H
#define LEASEWAY_HEALTH_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "health/health.h"
#include "health/health_gate.h"
#include "routing/route-t.h"

struct event;
struct event_base;
struct evhttp_connection;
struct evdns_base;

#define HEALTH_LINE_MAX 1024 /* longer output lines are logged in pieces */

/* ---- health_proc.c: a child process on the event loop ---------------------------------- */

/* One line of the child's stdout+stderr (capture mode), without its newline. */
typedef void (*health_proc_line_cb)(void *arg, const char *line);
/*
 * The child is gone and reaped. status is waitpid()'s; timed_out says we killed it at the
 * deadline. The callback may free the proc: health_proc touches nothing after calling it.
 */
typedef void (*health_proc_exit_cb)(void *arg, int status, bool timed_out);

struct health_proc_opts {
    const char *shell_cmd; /* run as /bin/sh -c shell_cmd, or */
    char *const *argv;     /* run argv[0] found on PATH (NULL-terminated) */
    bool capture;          /* stdout+stderr to on_line, stdin /dev/null; else inherited */
    int64_t timeout_ms;    /* SIGKILL to the process group after this long (0: never) */
    health_proc_line_cb on_line;
    health_proc_exit_cb on_exit;
    void *arg;
};

struct health_proc {
    struct event_base *base;
    pid_t pid;
    int pidfd;             /* readable when the child exits; -1: poll with a timer */
    struct event *exit_ev; /* on pidfd, or the poll timer */
    int out_fd;            /* capture pipe, -1 when not capturing or closed */
    struct event *out_ev;
    struct event *timeout_ev;
    char line[HEALTH_LINE_MAX];
    size_t line_len;
    struct health_proc_opts o;
    bool timed_out;
};

/*
 * Start a child in its own process group (so a timeout kills the whole `sh -c` tree and a
 * terminal's ^C reaches only leaseway, which decides when the child is told). Returns NULL
 * and sets errno on failure. The caller owns the proc and frees it with health_proc_free(),
 * at the earliest from the exit callback.
 */
__attribute__((warn_unused_result)) struct health_proc *health_proc_spawn(struct event_base *base,
                                                                          const struct health_proc_opts *o);
/* Send sig to the child itself (not its group). */
void health_proc_signal(struct health_proc *p, int sig);
/* SIGKILL the process group, reap it (briefly blocking), free. NULL is fine. */
void health_proc_free(struct health_proc *p);
/* "exit code 3", "killed by SIGKILL", "timed out after 30 s" */
void health_proc_describe(int status, bool timed_out, int64_t timeout_ms, char *buf, size_t size);

/* ---- health_http.c: a one-shot GET, 2xx or not ----------------------------------------- */

/* status: the HTTP status, or 0 with err set ("connection refused", "timed out", ...). */
typedef void (*health_http_cb)(void *arg, int status, const char *err);

struct health_http {
    struct event_base *base;
    struct evdns_base *dns; /* only for names that are not numeric addresses */
    struct evhttp_connection *conn;
    char host[256];
    char hostport[300]; /* the Host header */
    char path[1024];
    int port;
    int64_t timeout_ms;
    health_http_cb cb;
    void *arg;
    bool busy;
    const char *err; /* set by the error callback of the request in flight */
};

/* Split http://host[:port]/path. Returns 0, or -1 with *why set (https is refused: no TLS here). */
__attribute__((warn_unused_result)) int health_http_parse_url(const char *url, char *host, size_t hsize,
                                                              int *port, char *path, size_t psize,
                                                              const char **why);
/* Returns 0, or -1 with *why set on a bad URL. h is zeroed first; free with health_http_cleanup(). */
__attribute__((warn_unused_result)) int health_http_init(struct health_http *h, struct event_base *base,
                                                         const char *url, int64_t timeout_ms,
                                                         health_http_cb cb, void *arg, const char **why);
/* Start one GET unless one is in flight. Returns 0, or -1 (busy, or out of memory). */
__attribute__((warn_unused_result)) int health_http_get(struct health_http *h);
void health_http_cleanup(struct health_http *h);

/* ---- health_prisma.c: are Prisma's migrations applied? (blocking; helper thread) ------- */

/* Where one migration folder stands in _prisma_migrations. */
enum health_migration_state {
    HEALTH_MIG_APPLIED = 0, /* a row with finished_at set and rolled_back_at null */
    HEALTH_MIG_NOT_APPLIED, /* no row */
    HEALTH_MIG_UNFINISHED,  /* started, finished_at null: failed or running */
    HEALTH_MIG_ROLLED_BACK, /* only rolled-back rows */
    HEALTH_MIG_UNKNOWN,     /* the table could not be read */
    HEALTH_MIG_STATE_COUNT
};
const char *health_migration_state_str(enum health_migration_state s);

struct health_migrations {
    bool complete;
    char reason[ROUTE_REASON_MAX]; /* why not complete ("" when complete) */
    size_t applied;
    char **pending; /* names of folders not applied, sorted; owned */
    size_t npending;
    bool locked; /* not complete only because the database was locked: it says nothing new */
};

/*
 * Compare the migration folders in dir (each folder holding a migration.sql; Prisma's
 * layout) with the rows of _prisma_migrations in the SQLite file db, opened read-only with
 * a short busy timeout: a locked database is reported, never waited for. Returns 0 with *m
 * filled (complete or not), or -1 when dir cannot be listed (m->reason says why). Either
 * way the caller frees *m with health_migrations_clear().
 */
__attribute__((warn_unused_result)) int health_prisma_check(const char *db, const char *dir,
                                                            struct health_migrations *m);
void health_migrations_clear(struct health_migrations *m);

/* ---- health_probe.c: the --migrations probe ----------------------------------------- */

enum health_probe_kind {
    HEALTH_PROBE_NONE = 0, /* none: no migration condition */
    HEALTH_PROBE_PRISMA,   /* prisma:<db>:<dir> */
    HEALTH_PROBE_COMMAND,  /* command:<shell command>, exit 0 = complete */
    HEALTH_PROBE_HTTP,     /* http:<url>, 2xx = complete */
    HEALTH_PROBE_KIND_COUNT
};
const char *health_probe_kind_str(enum health_probe_kind k);

struct health_probe_spec {
    enum health_probe_kind kind;
    char *db;  /* prisma */
    char *dir; /* prisma */
    char *arg; /* command or URL */
};

/* Parse --migrations. Returns 0, or -1 with a message for the operator in err. */
__attribute__((warn_unused_result)) int health_probe_parse(const char *text, struct health_probe_spec *spec,
                                                           char *err, size_t esize);
void health_probe_spec_free(struct health_probe_spec *spec);

struct health;

/* A prisma run on its helper thread; shared with it only through done_fd. */
struct prisma_job {
    char *db, *dir;
    struct health_migrations result;
    int done_fd; /* eventfd the thread signals when result is filled */
    int64_t started_ms;
};

struct health_probe {
    struct health *h;
    struct health_probe_spec spec;
    struct event *tick;     /* next run */
    struct event *done_ev;  /* prisma: the helper thread finished */
    struct prisma_job *job; /* prisma run in flight */
    struct health_proc *proc;
    struct health_http http;
    bool http_ready;
    bool running;
    bool have_result;
    bool stopped;
    int64_t run_started_ms;
    char out_line[ROUTE_REASON_MAX]; /* command: its last output line, the likely reason */
    struct health_migrations last;   /* last prisma result, for /status */
    int64_t locked_since_ms;         /* prisma: first of the locked results in a row after a complete one */
};

#define HEALTH_PROBE_FAST_MS    1000  /* until the probe passes */
#define HEALTH_PROBE_SLOW_MS    10000 /* afterwards: a later failure closes the gate again */
#define HEALTH_PROBE_TIMEOUT_MS 30000 /* command killed, prisma/http run given up */
/* a database locked (by the app, or another instance's migration) keeps a complete result this long */
#define HEALTH_PROBE_LOCKED_KEEP_MS 120000
#define HEALTH_HTTP_TIMEOUT_MS      10000

/* ---- health_migrate.c: --migrate-command, once per lease tenure ------------------------ */

#define HEALTH_MIGRATE_BACKOFF_MIN_MS 1000
#define HEALTH_MIGRATE_BACKOFF_MAX_MS 30000

struct health_migrate {
    struct health_proc *proc; /* the run in flight, NULL if none: never two at once */
    uint64_t tenure;          /* +1 each time this instance becomes primary */
    uint64_t done_tenure;     /* the tenure whose run succeeded (0: none yet) */
    uint64_t run_tenure;      /* the tenure the run in flight was started for */
    int64_t backoff_ms;       /* wait before the next attempt after a failure */
    struct event *retry;      /* backoff timer */
    bool waiting;             /* retry timer armed */
    int64_t started_ms;
    char last_line[ROUTE_REASON_MAX]; /* last output line (credentials scrubbed): a failure's likely cause */
    char failure[ROUTE_REASON_MAX];   /* the last failure in this tenure, for the gate's reason */
    int64_t log_sec;                  /* output lines are logged at most HEALTH_MIGRATE_LOG_LINES a second: */
    int log_n;                        /* lines logged in that second */
    uint64_t unlogged;                /* lines over the limit, reported in one line */
};

__attribute__((warn_unused_result)) int health_migrate_init(struct health *h);
void health_migrate_role(struct health *h, enum route_role old_role, enum route_role role);
void health_migrate_cleanup(struct health *h);

/* ---- health_child.c: the supervised app (`-- app command`) ---------------------------- */

struct health_child {
    struct health_proc *proc;
    pid_t pid;          /* for logs, also after it is reaped */
    bool started;       /* spawned (once per leaseway run) */
    bool exited;        /* reaped */
    bool stopping;      /* we sent SIGTERM: its exit is the one we asked for */
    int exit_code;      /* leaseway's exit code when it is gone */
    struct event *kill; /* SIGKILL at the stop deadline */
    int stop_sig;       /* the signal we forwarded */
    health_done_cb stop_done;
    void *stop_arg;
};

void health_child_maybe_start(struct health *h);
void health_child_cleanup(struct health *h);

/* ---- health.c: the owner of all of the above ---------------------------------------- */

struct health {
    struct event_base *base;
    char *migrate_command;
    char *upstream_health;
    char *target;
    char **app_argv; /* copied, NULL-terminated; NULL if no app */
    int64_t app_stop_timeout_ms;
    health_changed_cb changed;
    health_app_exit_cb app_exit;
    void *arg;
    struct health_gate gate;
    enum route_role role;
    bool started;
    bool draining;
    struct health_probe *probe;  /* NULL with --migrations none */
    struct health_http app_http; /* --upstream-health */
    bool app_http_ready;
    struct event *app_tick;
    char app_last[ROUTE_REASON_MAX]; /* last app health result, logged on change */
    struct health_app_state app;     /* fall/rise counts of --upstream-health */
    struct health_migrate mig;
    struct health_child child;
};

/* A condition changed: tell the control thread (it republishes if the gate changed). */
void health_set(struct health *h, enum health_cond c, bool needed, bool ok, const char *detail);

/* health_probe.c */
__attribute__((warn_unused_result)) struct health_probe *
health_probe_new(struct health *h, const struct health_probe_spec *spec, char *err, size_t esize);
__attribute__((warn_unused_result)) int health_probe_start(struct health_probe *p);
void health_probe_run_now(struct health_probe *p);
void health_probe_stop(struct health_probe *p);
void health_probe_free(struct health_probe *p);

#endif
