/*
 * `leaseway run`: the control thread. It owns the configuration, the gate,
 * the lease (static, or consul/ on this thread's event loop) and the admin
 * listener, composes the cluster snapshot from them and publishes it to the
 * workers. Shutdown (SPEC §7): close the gate, stop accepting, let in-flight
 * requests (and a running --migrate-command) finish within --drain-timeout,
 * release the lease, stop the supervised app if any, exit 0 (or with the
 * app's code). health/ owns the gate's conditions and the app.
 */
#include "proxy/proxy_control.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "consul/consul.h"
#include "health/health.h"
#include "proxy/proxy_admin.h"
#include "proxy/proxy_log.h"
#include "routing/route_snapshot.h"

enum control_phase {
    PHASE_RUNNING = 0, /* serving */
    PHASE_DRAINING,    /* gate closed, workers finishing in-flight requests */
    PHASE_RELEASING,   /* workers done or out of time; giving up the lease */
    PHASE_DONE,        /* leave the loop */
    PHASE_COUNT
};

/*
 * TERM and INT stop gracefully (SPEC §7), and so does QUIT, nginx's graceful stop. HUP,
 * USR1 and USR2 (nginx: reload, reopen logs, upgrade) would otherwise kill the process
 * without a drain or a lease release: they are logged and ignored.
 */
static const int handled_signals[] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2};
#define N_HANDLED_SIGNALS (sizeof(handled_signals) / sizeof(handled_signals[0]))

struct control {
    struct proxy px;
    struct proxy_config cfg;
    struct event_base *base;
    struct proxy_admin admin;
    struct health *health;
    struct consul_agent *consul;
    struct consul_state lease;                           /* last word from consul/ (or the static lease) */
    struct event *sigs[N_HANDLED_SIGNALS], *drain_check; /* one per handled_signals[] */
    struct event *resolved;                              /* a lookup of the primary's URL finished */
    struct event *watchdog;                              /* checks that every worker's loop runs */
    int stuck_worker;                                    /* -1, or a worker that has not run for long */
    enum control_phase phase;
    int stop_sig;  /* the signal that started the shutdown: forwarded to the app */
    int exit_code; /* the app's, when it exited by itself */
    int64_t drain_deadline_ms;
    int64_t released_ms; /* the lease was given away (0: not yet); the stop waits for the reads */
    bool stop_now;       /* a second SIGINT: stop once the lease is given away */
    bool stopped;        /* stop_all() ran */
    bool drained;        /* "drained" logged */
    enum route_gate last_gate;
    char last_gate_reason[ROUTE_REASON_MAX];
    char last_primary[ROUTE_ID_MAX];       /* "" while no primary is known */
    char last_named_primary[ROUTE_ID_MAX]; /* the last primary known, kept through gaps */
};

/* A worker whose loop has not run its tick for this long is stuck (see watchdog()). */
#define WORKER_STUCK_MS 5000

static const char *phase_str(enum control_phase p)
{
    static const char *const names[PHASE_COUNT] = {"running", "draining", "releasing", "done"};
    return (unsigned)p < PHASE_COUNT ? names[p] : "invalid";
}

static void set_phase(struct control *ctl, enum control_phase p)
{
    proxy_log_debug("control phase", "from=%s to=%s", phase_str(ctl->phase), phase_str(p));
    ctl->phase = p;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Compose and publish the snapshot; log what changed. */
static void publish(struct control *ctl)
{
    struct cluster_snapshot s;
    memset(&s, 0, sizeof(s));
    s.gate = health_state(ctl->health, s.gate_reason, sizeof(s.gate_reason));
    if (ctl->stuck_worker >= 0 && s.gate == ROUTE_GATE_OPEN) {
        s.gate = ROUTE_GATE_CLOSED;
        snprintf(s.gate_reason, sizeof(s.gate_reason),
                 "worker %d stuck: its loop has not run for %d s or more (blocked in a system call?)",
                 ctl->stuck_worker, WORKER_STUCK_MS / 1000);
    }
    s.role = ctl->lease.role;
    s.primary_known = ctl->lease.primary_known;
    snprintf(s.primary_id, sizeof(s.primary_id), "%s", ctl->lease.primary_id);
    snprintf(s.primary_url, sizeof(s.primary_url), "%s", ctl->lease.primary_url);
    s.primary_since_ms = ctl->lease.primary_since_ms;
    s.lease_index = ctl->lease.lease_index;
    s.fence_deadline_ms = ctl->lease.fence_deadline_ms;
    s.consul_reachable = ctl->lease.reachable;
    s.consul_known_leader = ctl->lease.known_leader;
    s.consul_last_contact_ms = ctl->lease.last_contact_ms;
    if (s.primary_known && s.role != ROUTE_ROLE_PRIMARY && s.primary_url[0] &&
        proxy_resolve_url(s.primary_url, &s.primary_addr, &s.primary_addr_len, &s.primary_tls) < 0)
        s.primary_addr_len = 0;
    route_snapshot_publish(&s);
    proxy_workers_notify(&ctl->px);

    if (s.gate != ctl->last_gate || strcmp(s.gate_reason, ctl->last_gate_reason) != 0) {
        char q[PROXY_LOG_QUOTE_MAX];
        proxy_log_info("gate changed", "gate=%s reason=\"%s\"", route_gate_str(s.gate),
                       proxy_log_quote(q, sizeof(q), s.gate_reason));
        ctl->last_gate = s.gate;
        snprintf(ctl->last_gate_reason, sizeof(ctl->last_gate_reason), "%s", s.gate_reason);
        if (ctl->consul)
            consul_agent_set_gate(ctl->consul, s.gate, s.gate_reason);
    }
    /* a candidate whose app is not healthy (or that drains) stays out of the race for the lease */
    if (ctl->consul)
        consul_agent_set_fit(ctl->consul, health_may_lead(ctl->health));
    const char *now_primary = s.primary_known ? s.primary_id : "";
    if (strcmp(now_primary, ctl->last_primary) != 0) {
        char q_now[PROXY_LOG_QUOTE_MAX / 4], q_prev[PROXY_LOG_QUOTE_MAX / 4]; /* IDs: under 128 bytes */
        proxy_log_info("primary changed", "primary=\"%s\" previous=\"%s\" role=%s",
                       proxy_log_quote(q_now, sizeof(q_now), now_primary),
                       proxy_log_quote(q_prev, sizeof(q_prev), ctl->last_primary), route_role_str(s.role));
        snprintf(ctl->last_primary, sizeof(ctl->last_primary), "%s", now_primary);
    }
    /*
     * A failover passes through "no primary" (the key is free for the lock-delay): counting
     * that gap too would count each failover twice. Only a new primary counts.
     */
    if (now_primary[0] && strcmp(now_primary, ctl->last_named_primary) != 0) {
        snprintf(ctl->last_named_primary, sizeof(ctl->last_named_primary), "%s", now_primary);
        ctl->admin.primary_changes++;
    }
}

static void lease_changed(const struct consul_state *st, void *arg)
{
    struct control *ctl = arg;
    ctl->lease = *st;
    /*
     * A fenced holder reports role unknown, but its tenure has not ended: health/ must not
     * close the gate for the migrate command ("waiting for the lease"), nor run it again when
     * the fence moves on. (Writes stay fenced in routing/ meanwhile.)
     */
    health_set_role(ctl->health, st->fenced ? ROUTE_ROLE_PRIMARY : st->role);
    publish(ctl);
}

static void health_changed(void *arg)
{
    publish(arg);
}

/* --lease static: self, or the --static-primary ID=URL. */
static int static_lease(struct control *ctl)
{
    struct consul_state *l = &ctl->lease;
    memset(l, 0, sizeof(*l));
    l->primary_known = true;
    l->primary_since_ms = wall_ms();
    const char *sp = ctl->cfg.static_primary;
    if (!sp || !*sp || !strcmp(sp, "self")) {
        l->role = ROUTE_ROLE_PRIMARY;
        snprintf(l->primary_id, sizeof(l->primary_id), "%s", ctl->cfg.instance);
        snprintf(l->primary_url, sizeof(l->primary_url), "%s", ctl->cfg.advertise);
        return 0;
    }
    const char *eq = strchr(sp, '=');
    if (!eq || eq == sp || (strncmp(eq + 1, "http://", 7) && strncmp(eq + 1, "https://", 8))) {
        fprintf(stderr,
                "leaseway: --static-primary \"%s\": expected ID=URL, e.g. app-1=http://10.0.0.1:8080\n", sp);
        return -1;
    }
    snprintf(l->primary_id, sizeof(l->primary_id), "%.*s", (int)(eq - sp), sp);
    snprintf(l->primary_url, sizeof(l->primary_url), "%s", eq + 1);
    l->role = strcmp(l->primary_id, ctl->cfg.instance) == 0 ? ROUTE_ROLE_PRIMARY : ROUTE_ROLE_REPLICA;
    return 0;
}

static const char *handoff(void *arg)
{
    struct control *ctl = arg;
    if (!ctl->consul)
        return "handoff needs the consul lease (--lease consul)";
    if (ctl->lease.role != ROUTE_ROLE_PRIMARY)
        return "this instance is not the primary";
    consul_agent_handoff(ctl->consul);
    return "ok: releasing the lease";
}

static uint64_t consul_errors(void *arg)
{
    struct control *ctl = arg;
    return ctl->consul ? consul_agent_errors(ctl->consul) : 0;
}

static const char *lease_error(void *arg)
{
    struct control *ctl = arg;
    return ctl->consul && ctl->lease.lease_error[0] ? ctl->lease.lease_error : NULL;
}

static void finish(struct control *ctl)
{
    set_phase(ctl, PHASE_DONE);
    event_base_loopexit(ctl->base, NULL);
}

static void app_stopped(void *arg)
{
    finish(arg);
}

/* Close what is left of the connections, stop the app (if supervised), then leave. */
static void stop_all(struct control *ctl)
{
    if (ctl->stopped)
        return;
    ctl->stopped = true;
    event_del(ctl->drain_check);
    proxy_workers_stop(&ctl->px);
    health_stop_app(ctl->health, ctl->stop_sig ? ctl->stop_sig : SIGTERM, app_stopped, ctl);
}

/*
 * The lease is given away. Peers learn it from their watch within milliseconds; until then
 * they may still send a write on a pooled connection to us, which we now answer 421 (they
 * retry at the new primary). Closing those connections at once would instead race with such
 * a write and fail it. So: a short grace (clients' idle keep-alive connections get it too)
 * before the stop, which drain_check() makes once no request is left (or the drain is out
 * of time).
 */
#define RELEASE_GRACE_MS 300

static void consul_released(void *arg)
{
    struct control *ctl = arg;
    ctl->released_ms = proxy_now_ms();
    /* a write that still comes (on a client's open connection) waits for the next primary */
    if (ctl->consul)
        consul_agent_follow(ctl->consul);
}

/* No write in flight here (or out of time): give the lease away; the reads drain on. */
static void release(struct control *ctl)
{
    if (ctl->phase >= PHASE_RELEASING)
        return;
    set_phase(ctl, PHASE_RELEASING);
    health_stop_migrate(ctl->health); /* out of drain time: it must not outlive our lease */
    if (ctl->consul)
        consul_agent_shutdown(ctl->consul, consul_released, ctl);
    else
        consul_released(ctl);
}

/* No request in flight (idle keep-alive connections do not count: see the workers' drain). */
static bool workers_idle(struct control *ctl)
{
    for (size_t i = 0; i < ctl->px.nworkers; i++) {
        const struct proxy_metrics *m = &ctl->px.workers[i].metrics;
        if (proxy_metrics_read(&m->connections) > proxy_metrics_read(&m->idle))
            return false;
    }
    return true;
}

/* No write on its way to this primary's app. */
static bool no_local_writes(struct control *ctl)
{
    for (size_t i = 0; i < ctl->px.nworkers; i++)
        if (proxy_metrics_read(&ctl->px.workers[i].metrics.local_writes))
            return false;
    return true;
}

/*
 * Every 50 ms while stopping. The lease waits only for the writes this primary's app is
 * taking (and a migrate command): a long read (an event stream, a download) must not keep
 * the cluster's writes waiting, so it goes on after the release, within --drain-timeout.
 * Then the stop, once nothing is in flight, the drain is out of time, or a second SIGINT.
 */
static void drain_check(evutil_socket_t fd, short what, void *arg)
{
    struct control *ctl = arg;
    (void)fd;
    (void)what;
    int64_t now = proxy_now_ms();
    bool late = now >= ctl->drain_deadline_ms;
    if (ctl->phase == PHASE_DRAINING) {
        bool idle = workers_idle(ctl) && !health_busy(ctl->health);
        if (!late && !(no_local_writes(ctl) && !health_busy(ctl->health)))
            return;
        if (idle) {
            proxy_log_info("drained", "%s", "");
            ctl->drained = true;
        } else if (!late && ctl->consul)
            proxy_log_info("lease released before the drain ended",
                           "reason=\"no write in flight; reads go on\"");
        release(ctl);
        return;
    }
    if (ctl->phase != PHASE_RELEASING || !ctl->released_ms || now < ctl->released_ms + RELEASE_GRACE_MS)
        return;
    bool idle = workers_idle(ctl);
    if (!idle && !ctl->consul) {
        /*
         * Without a Consul agent following the lease key (consul_released()), a write waiting
         * for a primary here would wait in vain: 503 it now, and any that comes later, at each
         * check. With one, it waits for the next primary and is forwarded there (or gets its
         * 503 at --hold-timeout, or at the stop).
         */
        atomic_store(&ctl->px.refuse_held, 1);
        proxy_workers_notify(&ctl->px);
    }
    if (!idle && !late && !ctl->stop_now)
        return;
    if (!idle)
        proxy_log_warn("drain timeout: closing remaining connections",
                       "drain_timeout_ms=%lld migrate_running=%d", (long long)ctl->cfg.drain_timeout_ms,
                       health_busy(ctl->health));
    else if (!ctl->drained)
        proxy_log_info("drained", "%s", "");
    stop_all(ctl);
}

/* Close the gate and drain; drain_check() releases the lease when done. */
static void shut_down(struct control *ctl, const char *why)
{
    proxy_log_info("shutting down", "cause=%s drain_timeout_ms=%lld", why,
                   (long long)ctl->cfg.drain_timeout_ms);
    set_phase(ctl, PHASE_DRAINING);
    health_drain(ctl->health);
    publish(ctl);
    atomic_store(&ctl->px.draining, 1);
    proxy_workers_drain(&ctl->px);
    ctl->drain_deadline_ms = proxy_now_ms() + ctl->cfg.drain_timeout_ms;
    struct timeval tv = {0, 50 * 1000};
    event_add(ctl->drain_check, &tv);
}

/*
 * A worker stuck in a system call (a write to an --access-log pipe nobody reads) serves none of the
 * connections it owns. Like HAProxy's watchdog, notice it; unlike it, do not abort (the
 * call may yet return, and an abort would drop every other worker's requests): close the
 * gate, so that /health and the Consul ready check send traffic elsewhere, until it runs.
 */
static void watchdog(evutil_socket_t fd, short what, void *arg)
{
    struct control *ctl = arg;
    (void)fd;
    (void)what;
    int64_t age = 0;
    if (ctl->phase != PHASE_RUNNING)
        return; /* draining: the gate is closed anyway, and stopped workers tick no more */
    int stuck = proxy_workers_stuck(&ctl->px, WORKER_STUCK_MS, &age);
    if (stuck == ctl->stuck_worker)
        return;
    if (stuck >= 0)
        proxy_log_error("worker stuck", "worker=%d since_ms=%lld", stuck, (long long)age);
    else
        proxy_log_info("worker runs again", "worker=%d", ctl->stuck_worker);
    ctl->stuck_worker = stuck;
    publish(ctl);
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGQUIT: return "SIGQUIT";
    case SIGHUP: return "SIGHUP";
    case SIGUSR1: return "SIGUSR1";
    default: return "SIGUSR2";
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct control *ctl = arg;
    (void)what;
    if (sig == SIGHUP || sig == SIGUSR1 || sig == SIGUSR2) {
        proxy_log_warn(
            "signal ignored",
            "signal=%s reason=\"leaseway has no reload: restart leaseway to apply configuration changes\"",
            signal_name((int)sig));
        return;
    }
    if (ctl->phase != PHASE_RUNNING) {
        if (sig == SIGINT) {
            proxy_log_warn("second interrupt: stopping now", "%s", "");
            ctl->stop_now = true;
            release(ctl);
        }
        return;
    }
    ctl->stop_sig = sig == SIGQUIT ? SIGTERM : (int)sig; /* the app is stopped, not made to dump core */
    shut_down(ctl, signal_name((int)sig));
}

/* The primary's name was looked up (proxy_peer_addr.c): publish its address. */
static void on_resolved(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    proxy_resolve_ack();
    publish(arg);
}

/* The supervised app exited by itself: leaseway follows it out, with its code. */
static void app_exited(void *arg, int exit_code)
{
    struct control *ctl = arg;
    ctl->exit_code = exit_code;
    if (ctl->phase == PHASE_RUNNING)
        shut_down(ctl, "app-exited");
}

static void add_pending(void *arg, const char *name)
{
    json_array_append_new(arg, json_string(name));
}

static void migrations(void *arg, json_int_t *applied, json_t *pending)
{
    struct control *ctl = arg;
    size_t n = 0;
    health_migrations(ctl->health, &n, add_pending, pending);
    *applied = (json_int_t)n;
}

/* health/ from the configuration; prints why and returns -1 when it is wrong. */
static int setup_health(struct control *ctl)
{
    struct proxy_config *cfg = &ctl->cfg;
    struct health_config hc = {
        .migrations = cfg->migrations,
        .migrate_command = cfg->migrate_command,
        .upstream_health = cfg->upstream_health,
        .target = cfg->target,
        .app_argv = cfg->app_argv,
        .app_argc = cfg->app_argc,
        .app_stop_timeout_ms = cfg->drain_timeout_ms,
    };
    char err[512];
    ctl->health = health_new(ctl->base, &hc, health_changed, app_exited, ctl, err, sizeof(err));
    if (!ctl->health) {
        fprintf(stderr, "leaseway: %s\n", err);
        return -1;
    }
    health_set_role(ctl->health, ctl->lease.role);
    return 0;
}

/* The agent, made (its settings checked) but not started: no request goes out yet. */
static struct consul_agent *make_consul(struct control *ctl)
{
    struct proxy_config *cfg = &ctl->cfg;
    struct consul_config cc = {
        .addr = cfg->consul_addr,
        .lease_key = cfg->lease_key,
        .instance = cfg->instance,
        .region = cfg->region ? cfg->region : "",
        .advertise = cfg->advertise,
        .service = cfg->service,
        .peer_url_template = cfg->peer_url_template,
        .version = LEASEWAY_VERSION,
        .candidate = cfg->candidate,
        .register_service = cfg->register_service,
        .lease_ttl_ms = cfg->lease_ttl_ms,
        .lock_delay_ms = cfg->lock_delay_ms,
    };
    return consul_agent_new(ctl->base, &cc, lease_changed, ctl);
}

static struct consul_agent *start_consul(struct control *ctl)
{
    struct consul_agent *agent = make_consul(ctl);
    if (!agent)
        return NULL;
    consul_agent_set_gate(agent, ctl->last_gate, ctl->last_gate_reason);
    consul_agent_set_fit(agent, health_may_lead(ctl->health));
    if (consul_agent_start(agent) < 0) {
        consul_agent_free(agent);
        return NULL;
    }
    return agent;
}

static int setup_rules(struct control *ctl)
{
    const char *err = NULL;
    for (size_t i = 0; i < ctl->cfg.passthrough.n; i++) {
        if (route_rules_add_glob(&ctl->px.rules, false, ctl->cfg.passthrough.v[i], &err) < 0) {
            fprintf(stderr, "leaseway: --passthrough \"%s\": %s\n", ctl->cfg.passthrough.v[i], err);
            return -1;
        }
    }
    for (size_t i = 0; i < ctl->cfg.always_primary.n; i++) {
        if (route_rules_add_glob(&ctl->px.rules, true, ctl->cfg.always_primary.v[i], &err) < 0) {
            fprintf(stderr, "leaseway: --always-primary \"%s\": %s\n", ctl->cfg.always_primary.v[i], err);
            return -1;
        }
    }
    ctl->px.rules.writes =
        strcmp(ctl->cfg.writes, "replay") == 0 ? ROUTE_WRITES_REPLAY : ROUTE_WRITES_FORWARD;
    return 0;
}

int proxy_run(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            break;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            proxy_config_usage(stdout);
            return 0;
        }
    }
    /*
     * An ignored SIGCHLD survives exec: the kernel would then reap our children itself and
     * their exit codes (a failed migration's) would be lost. Children are ours to wait for.
     */
    signal(SIGCHLD, SIG_DFL);
    struct control *ctl = calloc(1, sizeof(*ctl));
    int rc = 1;
    if (!ctl)
        return 1;
    ctl->last_gate = ROUTE_GATE_COUNT;
    ctl->stuck_worker = -1;
    if (proxy_config_load(&ctl->cfg, argc, argv) < 0)
        goto out_cfg;
    /* --check goes through every start-up check below, then stops before anything starts */
    proxy_log_setup(ctl->cfg.log_format, ctl->cfg.log_level);
    if (ctl->cfg.check ? proxy_log_access_check(ctl->cfg.access_log) < 0
                       : proxy_log_access_open(ctl->cfg.access_log) < 0)
        goto out_cfg;
    ctl->px.cfg = &ctl->cfg;
    ctl->px.nworkers = (size_t)ctl->cfg.workers;
    ctl->px.started_ms = wall_ms();
    ctl->admin.px = &ctl->px;
    ctl->admin.cb_arg = ctl;
    ctl->admin.handoff_cb = handoff;
    ctl->admin.consul_errors_cb = consul_errors;
    ctl->admin.lease_error_cb = lease_error;
    ctl->admin.migrations_cb = migrations;
    snprintf(ctl->px.target_hostport, sizeof(ctl->px.target_hostport), "%s", ctl->cfg.target);
    if (proxy_parse_addr(ctl->cfg.listen, true, &ctl->px.listen_addr, &ctl->px.listen_len) < 0) {
        fprintf(stderr, "leaseway: --listen \"%s\": not an address I can listen on\n", ctl->cfg.listen);
        goto out_cfg;
    }
    if (proxy_parse_addr(ctl->cfg.target, false, &ctl->px.target_addr, &ctl->px.target_len) < 0) {
        fprintf(stderr, "leaseway: --target \"%s\": cannot resolve\n", ctl->cfg.target);
        goto out_cfg;
    }
    struct sockaddr_storage admin_addr;
    socklen_t admin_len = 0;
    bool admin = strcmp(ctl->cfg.admin, "off") != 0;
    if (admin && proxy_parse_addr(ctl->cfg.admin, true, &admin_addr, &admin_len) < 0) {
        fprintf(stderr, "leaseway: --admin \"%s\": not an address I can listen on\n", ctl->cfg.admin);
        goto out_cfg;
    }
    if (ctl->cfg.peer_secret_file && proxy_load_peer_secret(&ctl->px, ctl->cfg.peer_secret_file) < 0)
        goto out_rules;
    if (proxy_litefs_setup(&ctl->px.litefs, &ctl->cfg.litefs_db) < 0)
        goto out_rules;
    if (proxy_peer_tls_setup(&ctl->px) < 0)
        goto out_rules;
    if (setup_rules(ctl) < 0)
        goto out_rules;
    if (!strcmp(ctl->cfg.lease, "static") && static_lease(ctl) < 0)
        goto out_rules;
    if (!strcmp(ctl->cfg.lease, "consul")) {
        ctl->lease.role = ROUTE_ROLE_UNKNOWN;
        ctl->lease.reachable = false;
    }

    signal(SIGPIPE, SIG_IGN);
    struct event_config *ec = event_config_new();
    if (!ec)
        goto out_rules;
    event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
    ctl->base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (!ctl->base)
        goto out_rules;
    if (setup_health(ctl) < 0)
        goto out_base;
    if (ctl->cfg.check) {
        if (!strcmp(ctl->cfg.lease, "consul")) {
            /* the Consul client settings and the lease's are checked when the agent is made */
            struct consul_agent *agent = make_consul(ctl);
            if (!agent)
                goto out_base;
            consul_agent_free(agent);
        }
        proxy_config_print(&ctl->cfg);
        rc = 0;
        goto out_base;
    }
    publish(ctl);

    if (proxy_listen_probe(&ctl->px) < 0) {
        fprintf(stderr, "leaseway: cannot listen on --listen %s: %s\n", ctl->cfg.listen, strerror(errno));
        goto out_base;
    }
    if (proxy_workers_start(&ctl->px) < 0) {
        fprintf(stderr, "leaseway: cannot start workers on %s: %s\n", ctl->cfg.listen, strerror(errno));
        goto out_base;
    }
    if (admin && proxy_admin_start(&ctl->admin, ctl->base, (struct sockaddr *)&admin_addr, admin_len) < 0) {
        fprintf(stderr, "leaseway: cannot listen on --admin %s: %s\n", ctl->cfg.admin, strerror(errno));
        proxy_workers_stop(&ctl->px);
        (void)proxy_workers_join(&ctl->px);
        goto out_base;
    }
    if (!strcmp(ctl->cfg.lease, "consul") && !(ctl->consul = start_consul(ctl))) {
        proxy_admin_stop(&ctl->admin);
        proxy_workers_stop(&ctl->px);
        (void)proxy_workers_join(&ctl->px);
        goto out_base;
    }
    bool sigs_ok = true;
    for (size_t i = 0; i < N_HANDLED_SIGNALS; i++) {
        ctl->sigs[i] = evsignal_new(ctl->base, handled_signals[i], on_signal, ctl);
        sigs_ok = sigs_ok && ctl->sigs[i] && evsignal_add(ctl->sigs[i], NULL) == 0;
    }
    ctl->drain_check = event_new(ctl->base, -1, EV_PERSIST, drain_check, ctl);
    ctl->watchdog = event_new(ctl->base, -1, EV_PERSIST, watchdog, ctl);
    int rfd = proxy_resolve_fd();
    ctl->resolved = rfd >= 0 ? event_new(ctl->base, rfd, EV_READ | EV_PERSIST, on_resolved, ctl) : NULL;
    struct timeval second = {1, 0};
    if (!sigs_ok || !ctl->drain_check || !ctl->resolved || event_add(ctl->resolved, NULL) < 0 ||
        !ctl->watchdog || event_add(ctl->watchdog, &second) < 0) {
        fprintf(stderr, "leaseway: cannot set up signal handling\n");
        release(ctl);
    } else if (health_start(ctl->health) < 0) {
        fprintf(stderr, "leaseway: cannot start the health probes\n");
        ctl->exit_code = 1;
        release(ctl);
    }
    proxy_log_info("listening", "listen=%s target=%s admin=%s workers=%zu instance=%s lease=%s version=%s",
                   ctl->cfg.listen, ctl->cfg.target, ctl->cfg.admin, ctl->px.nworkers, ctl->cfg.instance,
                   ctl->cfg.lease, LEASEWAY_VERSION);

    event_base_dispatch(ctl->base);

    proxy_workers_stop(&ctl->px);
    if (proxy_workers_join(&ctl->px) < 0) {
        /* the lease is released and the app stopped: leave without the stuck worker */
        proxy_log_error("stopped", "exit_code=1 reason=\"%s\"", "a worker did not stop");
        _exit(1);
    }
    proxy_admin_stop(&ctl->admin);
    if (ctl->consul)
        consul_agent_free(ctl->consul);
    rc = ctl->exit_code ? ctl->exit_code : health_app_exit_code(ctl->health);
    proxy_log_info("stopped", "exit_code=%d", rc);
    for (size_t i = 0; i < N_HANDLED_SIGNALS; i++) {
        if (ctl->sigs[i])
            event_free(ctl->sigs[i]);
        /*
         * Freeing the event put the default action back: a second SIGTERM in the last milliseconds
         * (a supervisor repeating itself) would kill us, exit 143 after "stopped exit_code=0".
         * We are leaving with rc: from now on the handled signals change nothing.
         */
        signal(handled_signals[i], SIG_IGN);
    }
    if (ctl->drain_check)
        event_free(ctl->drain_check);
    if (ctl->watchdog)
        event_free(ctl->watchdog);
    if (ctl->resolved)
        event_free(ctl->resolved);
out_base:
    health_free(ctl->health);
    event_base_free(ctl->base);
out_rules:
    route_rules_free(&ctl->px.rules);
    free(ctl->px.peer_secret);
    proxy_litefs_free(&ctl->px.litefs);
    proxy_peer_tls_free(&ctl->px);
out_cfg:
    proxy_log_access_close();
    proxy_config_free(&ctl->cfg);
    free(ctl);
    return rc;
}
