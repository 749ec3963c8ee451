/*
 * The Consul agent of one leaseway instance, on the control thread's event
 * loop (SPEC §5): it registers the service with its alive and ready TTL
 * checks and feeds them, watches the lease key with blocking queries, and,
 * as a candidate, holds a session bound to the alive check and contends
 * for the key. Whatever it learns is folded into one struct consul_state
 * and handed to the owner's callback whenever it changes.
 *
 * Steady-state requests per instance (10 s TTL, 1 s lock-delay): alive feed
 * 1/s (2.5/s while the agent takes over 400 ms to answer: consul_alive_next_ms())
 * + session renew every (min(TTL, lock-delay) - 0.5 s) / 3 (6/s; see
 * consul_fence_deadline()) + ready refresh every 10 s (0.1/s) + the
 * blocking query (one per change or per 5 min) ~ 7 requests/s.
 *
 * Role: primary only while the lease machine is HOLDING *and* our session is
 * on the key (the acquire that took it, or the latest watch result); everything else is replica
 * (or unknown before Consul ever answered). Writes are fenced separately by
 * fence_deadline_ms (see consul_fence_deadline()).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>

#include "consul/consul-int.h"

/* an alive reply later than this after its send cannot extend the chain */
#define T_ALIVE_MS     (CONSUL_ALIVE_TTL_MS - CONSUL_FENCE_MARGIN_MS)
#define T_SHORT_MS     5000
#define T_PLAIN_READ   10000
#define SHUTDOWN_MS    2000
#define SESSION_ID_MAX 64

/* What a request was for: used for logging once per change and for the error counter. */
enum op {
    OP_WATCH = 0,
    OP_REGISTER,
    OP_ALIVE,
    OP_READY,
    OP_SESSION,
    OP_ACQUIRE,
    OP_RENEW,
    OP_RELEASE,
    OP_DESTROY,
    OP_DEREGISTER,
    OP_GHOST, /* session info / destroy of a stale session of ours */
    OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
    "watch", "register", "alive-feed",      "ready-update", "session-create", "acquire",
    "renew", "release",  "session-destroy", "deregister",   "ghost-session",
};

struct consul_agent {
    struct event_base *base;
    struct consul_config cfg; /* strings owned */
    struct consul_http_conf conf;
    struct consul_http *http;
    consul_state_cb cb;
    void *cb_arg;

    char *key_path;     /* "/v1/kv/<escaped key>" */
    char *alive_id;     /* "leaseway:<id>:alive" */
    char *ready_id;     /* "leaseway:<id>:ready" */
    char *alive_id_esc; /* URL-escaped */
    char *ready_id_esc;
    char *instance_esc;
    char *lease_value; /* {"hostname","advertise-url"} written on acquire */
    char adv_host[256];
    int adv_port;

    enum consul_lease_state lease;
    unsigned unfit : 1; /* consul_agent_set_fit(false): out of the race (CONSUL_LEV_UNFIT) */
    uint32_t rnd;

    /* session */
    char session[SESSION_ID_MAX];         /* "" when none */
    int64_t ttl_ms;                       /* effective TTL (Consul may answer with a larger one) */
    int64_t renew_ok_sent_ms;             /* send time of the last successful renew or create */
    unsigned session_checks_fallback : 1; /* agent refused ServiceChecks: bind by Checks ids */

    /* alive chain: passes in flight do not wait for each other (consul_alive_next_ms()) */
    int64_t alive_ok_sent_ms;   /* send time of the last pass that reached the agent; -1 none */
    int64_t alive_last_sent_ms; /* send time of the latest pass sent; -1 none */
    struct alive_feed {
        struct consul_agent *agent;
        struct consul_http_req *req; /* NULL: free */
    } alive[CONSUL_ALIVE_IN_FLIGHT];

    /* watch */
    uint64_t watch_index;
    uint64_t watch_replies;    /* successful watch replies so far */
    uint64_t watch_replies_at; /* ... when we last wrote the key ourselves */
    unsigned watch_ok : 1;     /* Consul answered the watch at least once */
    unsigned following : 1;    /* stopped, and watching the key read-only (consul_agent_follow()) */
    struct consul_bucket bucket;
    bool key_exists;
    char holder_session[SESSION_ID_MAX];
    bool holder_valid; /* holder's value decoded */
    bool key_was_held; /* the key had a session at the previous watch reply */
    struct consul_lease_value holder;
    uint64_t modify_index;
    /*
     * The key holds our session but not our value (a plain PUT by hand or by a script): peers
     * follow the value, so it is written again (value_repair()). repair_index: the ModifyIndex
     * a repair was last sent for, so that one foreign value gets one repair, not a loop.
     */
    bool value_foreign;
    uint64_t repair_index;
    unsigned release_after_acquire : 1; /* a handoff waits for the acquire in flight (a repair) */
    char last_value_err[96];
    char ghost_checked[SESSION_ID_MAX]; /* last holder session examined as a possible ghost */
    unsigned ghost_done : 1;            /* destroyed one, or held the lease: never again */

    /* registration */
    unsigned registered : 1;
    unsigned alive_fed : 1; /* a pass succeeded since the last (re)registration */
    unsigned register_dirty : 1;
    unsigned ready_dirty : 1;
    enum route_role registered_role; /* Tags and Meta.gate of the latest registration sent */
    enum route_gate registered_gate;
    enum route_gate gate;
    char gate_reason[ROUTE_REASON_MAX];

    /* what we told the owner */
    bool reachable, known_leader;
    int64_t last_contact_ms;
    struct consul_state published;
    bool published_once;
    char primary_key[SESSION_ID_MAX + ROUTE_ID_MAX]; /* session + id of the current primary */
    int64_t primary_since_ms;
    uint64_t errors, primary_changes;

    /* requests in flight (at most one of each) */
    struct consul_http_req *req[OP_COUNT];
    unsigned attempts[OP_COUNT];
    char last_err[OP_COUNT][160];                                      /* log an error once per change */
    char lease_error[sizeof(((struct consul_state *)0)->lease_error)]; /* see struct consul_state */
    int64_t token_read_ms; /* CONSUL_HTTP_TOKEN_FILE last re-read after a 403 */

    struct event *ev_watch, *ev_watch_check, *ev_lease, *ev_renew, *ev_alive, *ev_ready, *ev_register;
    struct event *ev_deadline, *ev_done;
    struct event *ev_fence; /* the holder's fence runs out: publish role unknown */

    consul_done_cb done;
    void *done_arg;
    unsigned shutdown_step;
};

static void publish(struct consul_agent *a);
static void watch_start(struct consul_agent *a);
static void register_now(struct consul_agent *a);
static void ready_update(struct consul_agent *a);
static void session_create(struct consul_agent *a);
static void acquire_send(struct consul_agent *a);
static void renew_send(struct consul_agent *a);
static void shutdown_next(struct consul_agent *a);
static void alive_pass(struct consul_agent *a, int64_t sent_ms);
static void wrote_key(struct consul_agent *a);
static void on_alive_timer(evutil_socket_t fd, short what, void *arg);
static void alive_cancel(struct consul_agent *a);
static void value_repair(struct consul_agent *a);
static void handoff_release(struct consul_agent *a);

/* ---------------- small helpers ---------------- */

static uint32_t rnd(struct consul_agent *a)
{
    a->rnd ^= a->rnd << 13;
    a->rnd ^= a->rnd >> 17;
    a->rnd ^= a->rnd << 5;
    return a->rnd;
}

static void arm(struct event *ev, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(ev, &tv);
}

/*
 * Arm ev to fire ms after since_ms (a consul_now_ms() time in the past), at once if that is
 * gone. The renew cadence is timed from each renew's send: timed from its reply, a slow
 * Consul would push every renew later by its delay until the fence, which counts from the
 * send, ran out between renews although the session never lapsed.
 */
static void arm_from(struct event *ev, int64_t since_ms, int64_t ms)
{
    int64_t left = since_ms + ms - consul_now_ms();
    arm(ev, left > 0 ? left : 0);
}

static int64_t backoff(struct consul_agent *a, enum op op)
{
    int64_t d = consul_backoff_ms(a->attempts[op], rnd(a));
    if (a->attempts[op] < 16)
        a->attempts[op]++;
    return d;
}

static bool stopping(const struct consul_agent *a)
{
    return a->lease == CONSUL_LEASE_STOPPING || a->lease == CONSUL_LEASE_STOPPED;
}

/* The watch runs until the shutdown, and again once consul_agent_follow() asks for it. */
static bool watch_stopped(const struct consul_agent *a)
{
    return stopping(a) && !a->following;
}

static struct consul_http_req *send_req(struct consul_agent *a, enum op op, const char *method,
                                        const char *path, const char *query, const char *body,
                                        int64_t timeout_ms, consul_http_cb cb)
{
    struct consul_http_req *r = consul_http_request(a->http, method, path, query, body, timeout_ms, cb, a);

    if (r == NULL)
        consul_log("error", "msg=\"cannot start Consul request\" op=%s", op_names[op]);
    a->req[op] = r;
    return r;
}

/* Note reachability from any reply. */
static void saw(struct consul_agent *a, const struct consul_http_resp *r)
{
    a->reachable = r->status != 0;
    if (!a->reachable) { /* what Consul said last is no longer known to hold */
        a->known_leader = false;
        a->last_contact_ms = -1;
    }
    if (r->has_leader)
        a->known_leader = r->known_leader;
    if (r->last_contact_ms >= 0)
        a->last_contact_ms = r->last_contact_ms;
}

/* Count and log a failed request, once per distinct error per operation. */
static void fail(struct consul_agent *a, enum op op, const struct consul_http_resp *r, const char *why)
{
    char msg[160];

    a->errors++;
    if (why != NULL)
        snprintf(msg, sizeof(msg), "%s", why);
    else if (r->status == 0)
        snprintf(msg, sizeof(msg), "%s", r->error ? r->error : "no reply");
    else
        snprintf(msg, sizeof(msg), "HTTP %ld: %.100s", r->status, r->body);
    for (char *p = msg; *p; p++)
        if (*p == '"' || *p == '\n' || *p == '\r')
            *p = ' ';
    /*
     * Refused: the token file may have been rotated since. Read it again on every 403 (at
     * most once a second), not only on the first of a run of them: the new token may come
     * after every operation has already met the old one's refusal.
     */
    bool reloaded = false;
    if (r->status == 403 && a->conf.token_file) {
        int64_t now = consul_now_ms();
        if (a->token_read_ms == 0 || now - a->token_read_ms >= 1000) {
            a->token_read_ms = now;
            reloaded = consul_http_conf_reload_token(&a->conf);
            if (reloaded)
                consul_log("info", "msg=\"ACL token changed in CONSUL_HTTP_TOKEN_FILE: using it\" op=%s",
                           op_names[op]);
        }
    }
    if (strcmp(msg, a->last_err[op]) == 0)
        return;
    snprintf(a->last_err[op], sizeof(a->last_err[op]), "%s", msg);
    if (r->status == 403) {
        consul_log("error",
                   "msg=\"Consul refused the request: check the ACL token (CONSUL_HTTP_TOKEN / "
                   "CONSUL_HTTP_TOKEN_FILE)\" op=%s error=\"%s\" token_reloaded=%s",
                   op_names[op], msg, reloaded ? "true" : "false");
    } else {
        consul_log("warn", "msg=\"Consul request failed\" op=%s error=\"%s\"", op_names[op], msg);
    }
}

static void ok(struct consul_agent *a, enum op op)
{
    a->attempts[op] = 0;
    if (a->last_err[op][0]) {
        consul_log("info", "msg=\"Consul request works again\" op=%s", op_names[op]);
        a->last_err[op][0] = '\0';
    }
}

/* The agent no longer knows our check (it restarted, or reaped us). */
static bool agent_forgot(const struct consul_http_resp *r)
{
    return r->status == 404 ||
           (r->status == 500 && (strstr(r->body, "does not have associated TTL") ||
                                 strstr(r->body, "Unknown check") || strstr(r->body, "not found")));
}

/* ---------------- state & publication ---------------- */

static bool we_hold(const struct consul_agent *a)
{
    return a->lease == CONSUL_LEASE_HOLDING && a->session[0] && strcmp(a->holder_session, a->session) == 0;
}

/*
 * Watch-only mode with a lease written by someone else (LiteFS) that names this very
 * instance: the local app is the primary's, so writes are local. That writer fences itself;
 * we add no fence of our own (fence_deadline_ms 0).
 */
static bool watcher_is_named(const struct consul_agent *a)
{
    return !a->cfg.candidate && a->holder_session[0] && a->holder_valid &&
           strcmp(a->holder.hostname, a->cfg.instance) == 0;
}

static enum route_role current_role(const struct consul_agent *a)
{
    if (we_hold(a) || watcher_is_named(a))
        return ROUTE_ROLE_PRIMARY;
    return a->watch_ok ? ROUTE_ROLE_REPLICA : ROUTE_ROLE_UNKNOWN;
}

static int64_t fence_deadline(const struct consul_agent *a)
{
    if (watcher_is_named(a))
        return 0;
    if (!a->session[0])
        return 1;
    return consul_fence_deadline(a->renew_ok_sent_ms, a->ttl_ms, a->cfg.lock_delay_ms,
                                 a->cfg.register_service ? a->alive_ok_sent_ms : -1);
}

/* The tag the service should carry now. */
static enum route_role tag_role(const struct consul_agent *a)
{
    return current_role(a) == ROUTE_ROLE_PRIMARY ? ROUTE_ROLE_PRIMARY : ROUTE_ROLE_REPLICA;
}

/*
 * The latest registration sent (in flight or done) carries another tag or Meta.gate than
 * now: the role or the gate changed after it was built. Whatever the order in which the
 * lease view and the registration's reply come, one of publish() and register_done() sees it
 * and registers again.
 */
static bool registration_stale(const struct consul_agent *a)
{
    return a->cfg.register_service && !stopping(a) &&
           (a->registered_role != tag_role(a) || a->registered_gate != a->gate);
}

static void compute_state(struct consul_agent *a, struct consul_state *st)
{
    memset(st, 0, sizeof(*st));
    st->role = current_role(a);
    /*
     * A holder that can no longer prove its session alive (writes already fenced) may have lost
     * the lease to another instance without knowing it: it does not claim to be the primary
     * (Fly-Primary-Instance, is_primary) until Consul answers and the fence moves on again.
     */
    if (st->role == ROUTE_ROLE_PRIMARY && !watcher_is_named(a) && consul_now_ms() >= fence_deadline(a)) {
        st->role = ROUTE_ROLE_UNKNOWN;
        st->fenced = true;
    }
    if (st->role == ROUTE_ROLE_PRIMARY) {
        st->primary_known = true;
        snprintf(st->primary_id, sizeof(st->primary_id), "%s", a->cfg.instance);
        snprintf(st->primary_url, sizeof(st->primary_url), "%s", a->cfg.advertise);
        if (watcher_is_named(a) && a->holder.advertise_url[0] && a->cfg.advertise[0] == '\0')
            snprintf(st->primary_url, sizeof(st->primary_url), "%s", a->holder.advertise_url);
    } else if (a->holder_session[0] && a->holder_valid && strcmp(a->holder_session, a->session) != 0 &&
               !(a->cfg.candidate && strcmp(a->holder.hostname, a->cfg.instance) == 0)) {
        /*
         * (A key that names this candidate but not its current session is its own old tenure,
         * not yet seen to vanish: no primary is known, rather than forwarding writes to itself.)
         */
        st->primary_known = true;
        snprintf(st->primary_id, sizeof(st->primary_id), "%s", a->holder.hostname);
        if (strcmp(a->holder.hostname, a->cfg.instance) != 0 && a->cfg.peer_url_template != NULL) {
            if (consul_url_template(a->cfg.peer_url_template, a->holder.hostname, st->primary_url,
                                    sizeof(st->primary_url)) < 0)
                st->primary_url[0] = '\0';
        } else {
            snprintf(st->primary_url, sizeof(st->primary_url), "%s", a->holder.advertise_url);
        }
    }
    st->lease_index = a->modify_index;
    st->fence_deadline_ms = fence_deadline(a);
    st->reachable = a->reachable;
    st->known_leader = a->known_leader;
    st->last_contact_ms = a->last_contact_ms;
    snprintf(st->lease_error, sizeof(st->lease_error), "%s", a->lease_error);

    {
        char key[sizeof(a->primary_key)];
        snprintf(key, sizeof(key), "%s|%s", st->primary_known ? a->holder_session : "",
                 st->primary_known ? st->primary_id : "");
        if (strcmp(key, a->primary_key) != 0) {
            bool changed_id = st->primary_known && strcmp(st->primary_id, a->published.primary_id) != 0;
            snprintf(a->primary_key, sizeof(a->primary_key), "%s", key);
            a->primary_since_ms = st->primary_known ? consul_wall_ms() : 0;
            if (changed_id || (st->primary_known && !a->published.primary_known))
                a->primary_changes++;
        }
    }
    st->primary_since_ms = a->primary_since_ms;
}

static void publish(struct consul_agent *a)
{
    struct consul_state st;
    enum route_role old_role = a->published.role;

    compute_state(a, &st);
    if (st.role == ROUTE_ROLE_PRIMARY && st.fence_deadline_ms > 0)
        arm_from(a->ev_fence, st.fence_deadline_ms, 1); /* on_fence_timer(): publish it running out */
    else
        evtimer_del(a->ev_fence);
    /*
     * Tags follow the lease (not the fence); Consul DNS primary.<service> depends on it.
     * Checked before the "nothing changed" return: what the owner was told may already say
     * primary while the registration in Consul does not (register_done() checks it too).
     */
    if (a->registered && registration_stale(a))
        register_now(a);
    if (a->published_once && memcmp(&st, &a->published, sizeof(st)) == 0)
        return;

    if (!a->published_once || st.role != old_role || st.primary_known != a->published.primary_known ||
        strcmp(st.primary_id, a->published.primary_id) != 0)
        consul_log("info", "msg=\"lease view\" role=%s primary=%s primary_url=%s lease_state=%s index=%llu",
                   route_role_str(st.role), st.primary_known ? st.primary_id : "-",
                   st.primary_known ? st.primary_url : "-", consul_lease_state_str(a->lease),
                   (unsigned long long)st.lease_index);
    memcpy(&a->published, &st, sizeof(st));
    a->published_once = true;
    if (a->cb)
        a->cb(&st, a->cb_arg);
}

static void on_fence_timer(evutil_socket_t fd, short what, void *arg)
{
    publish(arg);
}

/* ---------------- the lease machine ---------------- */

static void clear_session(struct consul_agent *a)
{
    a->session[0] = '\0';
    consul_http_cancel(a->req[OP_RENEW]);
    a->req[OP_RENEW] = NULL;
    consul_http_cancel(a->req[OP_ACQUIRE]);
    a->req[OP_ACQUIRE] = NULL;
    evtimer_del(a->ev_renew);
}

static void lease_event(struct consul_agent *a, enum consul_lease_event ev)
{
    enum consul_lease_state from = a->lease, to = consul_lease_next(from, ev);

    if (to == from)
        return;
    consul_log("info", "msg=\"lease state\" from=%s to=%s event=%s", consul_lease_state_str(from),
               consul_lease_state_str(to), consul_lease_event_str(ev));
    a->lease = to;
    /*
     * Logged here, not in the acquire reply: the watch may show our session on the key before
     * that reply arrives (KEY_OURS), and that is the acquisition too.
     */
    if (to == CONSUL_LEASE_HOLDING)
        consul_log("info", "msg=\"lease acquired\" key=%s session=%s via=%s", a->cfg.lease_key, a->session,
                   consul_lease_event_str(ev));
    switch (to) {
    case CONSUL_LEASE_CREATING:
        clear_session(a);
        evtimer_del(a->ev_lease);
        session_create(a);
        break;
    case CONSUL_LEASE_ACQUIRING:
        if (a->unfit)
            lease_event(a, CONSUL_LEV_UNFIT); /* a session just created, a key seen free: not now */
        else
            acquire_send(a);
        break;
    case CONSUL_LEASE_STANDBY:
        if (!a->session[0]) {
            lease_event(a, CONSUL_LEV_SESSION_LOST);
        } else if (a->holder_session[0] && strcmp(a->holder_session, a->session) == 0) {
            lease_event(a, CONSUL_LEV_KEY_OURS);
        } else if (a->unfit) {
            lease_event(a, CONSUL_LEV_UNFIT);
        } else if (!a->holder_session[0] && a->watch_ok && !evtimer_pending(a->ev_lease, NULL)) {
            lease_event(a, CONSUL_LEV_KEY_FREE);
        }
        break;
    default: break;
    }
    publish(a);
}

static void ghost_destroy_done(const struct consul_http_resp *r, void *arg)
{
    struct consul_agent *a = arg;

    a->req[OP_GHOST] = NULL;
    saw(a, r);
    if (r->status != 200)
        fail(a, OP_GHOST, r, NULL);
}

static void ghost_info_done(const struct consul_http_resp *r, void *arg)
{
    struct consul_agent *a = arg;
    json_t *root = NULL, *s, *v;
    json_error_t jerr;
    bool ours = false;
    size_t i;
    char path[128];

    a->req[OP_GHOST] = NULL;
    saw(a, r);
    if (stopping(a))
        return;
    if (r->status != 200) {
        fail(a, OP_GHOST, r, NULL);
        return;
    }
    root = json_loadb(r->body, r->body_len, 0, &jerr);
    s = json_is_array(root) ? json_array_get(root, 0) : NULL;
    if (json_is_object(s) && json_is_string(json_object_get(s, "Name")) &&
        strcmp(json_string_value(json_object_get(s, "Name")), "leaseway") == 0) {
        json_array_foreach(json_object_get(s, "ServiceChecks"), i, v)
        {
            json_t *id = json_object_get(v, "ID");
            if (json_is_string(id) && strcmp(json_string_value(id), a->alive_id) == 0)
                ours = true;
        }
        json_array_foreach(json_object_get(s, "Checks"), i, v)
        {
            if (json_is_string(v) && strcmp(json_string_value(v), a->alive_id) == 0)
                ours = true;
        }
    }
    json_decref(root);
    /* still the holder, still not our current session? */
    if (!ours || strcmp(a->holder_session, a->ghost_checked) != 0 ||
        strcmp(a->ghost_checked, a->session) == 0)
        return;
    consul_log(
        "warn",
        "msg=\"the lease is held by a stale session of this instance (a previous run): destroying it\" "
        "session=%s",
        a->ghost_checked);
    snprintf(path, sizeof(path), "/v1/session/destroy/%s", a->ghost_checked);
    a->ghost_done = 1; /* once per process: two live processes with one instance id must not fight */
    send_req(a, OP_GHOST, "PUT", path, NULL, NULL, T_SHORT_MS, ghost_destroy_done);
}

/*
 * The key names this instance but is held by a session that is not our current one: a
 * previous run of this instance (crash + quick restart) left it, and since the new run feeds
 * the same alive check, it would live on until its TTL ran out (up to 2 x TTL) with nobody
 * primary. Destroy it, but only after checking it is really ours (a leaseway session bound
 * to our alive check): a LiteFS on this host may hold the key under the same hostname.
 * Only before we first hold the lease, and at most once per process.
 */
static void check_ghost(struct consul_agent *a)
{
    char path[128];

    if (we_hold(a))
        a->ghost_done = 1;
    if (a->ghost_done || !a->cfg.candidate || !a->cfg.register_service || !a->holder_session[0] ||
        !a->holder_valid || strcmp(a->holder.hostname, a->cfg.instance) != 0 ||
        strcmp(a->holder_session, a->session) == 0 || strcmp(a->holder_session, a->ghost_checked) == 0 ||
        a->req[OP_GHOST])
        return;
    snprintf(a->ghost_checked, sizeof(a->ghost_checked), "%s", a->holder_session);
    snprintf(path, sizeof(path), "/v1/session/info/%s", a->ghost_checked);
    send_req(a, OP_GHOST, "GET", path, NULL, NULL, T_SHORT_MS, ghost_info_done);
}

/* Tell the lease machine what the watch saw. */
static void lease_saw_key(struct consul_agent *a)
{
    if (a->lease == CONSUL_LEASE_INIT || a->lease == CONSUL_LEASE_WATCH_ONLY || stopping(a))
        return;
    bool was_held = a->key_was_held;
    a->key_was_held = a->holder_session[0] != '\0';
    if (!a->holder_session[0]) {
        /*
         * While an acquire retry (lock-delay) is pending, the timer decides; but a key that was
         * held at our last look has just been freed: try now (a release sets no lock-delay, and
         * if an invalidation did, Consul says false and the retry timer takes over again).
         */
        if (was_held && a->lease == CONSUL_LEASE_STANDBY)
            evtimer_del(a->ev_lease);
        if (!evtimer_pending(a->ev_lease, NULL) || a->lease == CONSUL_LEASE_HOLDING)
            lease_event(a, CONSUL_LEV_KEY_FREE);
    } else if (a->session[0] && strcmp(a->holder_session, a->session) == 0) {
        lease_event(a, CONSUL_LEV_KEY_OURS);
        value_repair(a);
    } else {
        lease_event(a, CONSUL_LEV_KEY_OTHER);
    }
}

static void on_lease_timer(evutil_socket_t fd, short what, void *arg)
{
    struct consul_agent *a = arg;

    switch (a->lease) {
    case CONSUL_LEASE_CREATING: session_create(a); break;
    case CONSUL_LEASE_ACQUIRING: acquire_send(a); break;
    case CONSUL_LEASE_STANDBY:
        /* acquire said false: try again unless the watch shows another holder */
        if (!a->holder_session[0] || !a->watch_ok)
            lease_event(a, CONSUL_LEV_RETRY);
        break;
    case CONSUL_LEASE_HANDOFF: lease_event(a, CONSUL_LEV_RETRY); break;
    case CONSUL_LEASE_HOLDING: value_repair(a); break; /* a repair failed: try again */
    default: break;
    }
}

/* ---------------- session ---------------- */

/*
 * Consul refused the session's TTL (`Invalid Session TTL '<ns>', must be between [10s=24h0m0s]`,
 * the range being session_ttl_min..session_ttl_max): no session, so this candidate can never
 * hold the lease while --lease-ttl stays below the minimum. Say so at error level, with the
 * range Consul gave, once per distinct message, and keep it for /status (lease.error). The
 * caller keeps retrying: an operator may lower session_ttl_min without restarting us.
 */
static void session_ttl_refused(struct consul_agent *a, const struct consul_http_resp *r)
{
    char ttl[32], lo[32] = "", hi[32] = "", msg[sizeof(a->lease_error)];
    const char *range = strstr(r->body, "must be between [");

    consul_duration_fmt(a->cfg.lease_ttl_ms, ttl, sizeof(ttl));
    if (range == NULL || sscanf(range, "must be between [%31[^=]=%31[^]]]", lo, hi) != 2)
        snprintf(msg, sizeof(msg),
                 "Consul refuses --lease-ttl %s (session TTL out of its range: %.80s): set --lease-ttl "
                 "within Consul's session_ttl_min (10s by default) and 24h, or lower session_ttl_min",
                 ttl, r->body);
    else
        snprintf(msg, sizeof(msg),
                 "Consul refuses --lease-ttl %s: a session TTL must be between %s and %s (Consul's "
                 "session_ttl_min and maximum); set --lease-ttl to at least %s, or lower session_ttl_min "
                 "in Consul's configuration",
                 ttl, lo, hi, lo);
    for (char *p = msg; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = ' ';
    a->errors++;
    if (strcmp(msg, a->lease_error) == 0)
        return;
    snprintf(a->lease_error, sizeof(a->lease_error), "%s", msg);
    snprintf(a->last_err[OP_SESSION], sizeof(a->last_err[OP_SESSION]), "%.150s", r->body);
    consul_log(
        "error",
        "msg=\"no session: this instance cannot become primary until this is fixed\" op=%s error=\"%s\"",
        op_names[OP_SESSION], msg);
}

static void session_done(const struct consul_http_resp *r, void *arg)
{
    struct consul_agent *a = arg;
    const char *err = NULL;
    char id[SESSION_ID_MAX];

    a->req[OP_SESSION] = NULL;
    saw(a, r);
    if (a->lease != CONSUL_LEASE_CREATING)
        return;
    if (r->status == 200 && consul_session_id_decode(r->body, r->body_len, id, sizeof(id), &err) == 0) {
        ok(a, OP_SESSION);
        a->lease_error[0] = '\0';
        snprintf(a->session, sizeof(a->session), "%s", id);
        a->ttl_ms = a->cfg.lease_ttl_ms;
        a->renew_ok_sent_ms = r->sent_ms;
        arm_from(a->ev_renew, r->sent_ms, consul_renew_every(a->ttl_ms, a->cfg.lock_delay_ms));
        consul_log("info", "msg=\"session created\" session=%s ttl_ms=%lld lock_delay_ms=%lld", id,
                   (long long)a->ttl_ms, (long long)a->cfg.lock_delay_ms);
        lease_event(a, CONSUL_LEV_SESSION_OK);
        return;
    }
    if (r->status == 500 && strstr(r->body, "Invalid Session TTL")) {
        session_ttl_refused(a, r);
        arm(a->ev_lease, backoff(a, OP_SESSION));
        publish(a);
        return;
    }
    fail(a, OP_SESSION, r, err);
    if ((r->status == 400 || r->status == 500) && strstr(r->body, "ServiceChecks") &&
        !a->session_checks_fallback) {
        a->session_checks_fallback = 1;
        consul_log("warn", "msg=\"agent refuses ServiceChecks in session create; binding by check id\"");
    } else if (r->status == 500 && strstr(r->body, "Missing check")) {
        a->registered = 0; /* the alive check is gone: register (and feed) again first */
        a->alive_fed = 0;
        register_now(a);
    } else if (r->status == 500 && strstr(r->body, "critical state")) {
        a->alive_fed = 0; /* not synced yet: wait for the next successful feed */
    }
    arm(a->ev_lease, backoff(a, OP_SESSION));
}

static void session_create(struct consul_agent *a)
{
    char ttl[32], delay[32];
    json_t *o;
    char *body;

    if (a->lease != CONSUL_LEASE_CREATING || a->req[OP_SESSION] || evtimer_pending(a->ev_lease, NULL))
        return;
    if (a->cfg.register_service && (!a->registered || !a->alive_fed))
        return; /* alive_done() calls us: the alive check must exist and be passing first */
    consul_duration_fmt(a->cfg.lease_ttl_ms, ttl, sizeof(ttl));
    consul_duration_fmt(a->cfg.lock_delay_ms, delay, sizeof(delay));
    o = json_pack("{s:s, s:s, s:s, s:s}", "Name", "leaseway", "TTL", ttl, "LockDelay", delay, "Behavior",
                  "delete");
    if (o == NULL)
        return;
    if (a->cfg.register_service) {
        if (a->session_checks_fallback) {
            json_object_set_new(o, "Checks", json_pack("[s, s]", "serfHealth", a->alive_id));
        } else {
            json_object_set_new(o, "NodeChecks", json_pack("[s]", "serfHealth"));
            json_object_set_new(o, "ServiceChecks", json_pack("[{s:s}]", "ID", a->alive_id));
        }
    }
    body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (body == NULL)
        return;
    if (send_req(a, OP_SESSION, "PUT", "/v1/session/create", NULL, body, T_SHORT_MS, session_done) == NULL)
        arm(a->ev_lease, backoff(a, OP_SESSION));
    free(body);
}

static void renew_done(const struct consul_http_resp *r, void *arg)
{
    struct consul_agent *a = arg;
    const char *err = NULL;
    int64_t ttl;

    a->req[OP_RENEW] = NULL;
    saw(a, r);
    if (!a->session[0] || stopping(a))
        return;
    if (r->status == 200) {
        ok(a, OP_RENEW);
        a->renew_ok_sent_ms = r->sent_ms;
        if (consul_renew_ttl_decode(r->body, r->body_len, &ttl, &err) == 0 && ttl > a->ttl_ms) {
            consul_log("info", "msg=\"Consul raised the session TTL\" ttl_ms=%lld", (long long)ttl);
            a->ttl_ms = ttl;
        }
        arm_from(a->ev_renew, r->sent_ms, consul_renew_every(a->ttl_ms, a->cfg.lock_delay_ms));
        publish(a);
        return;
    }
    if (r->status == 404) {
        consul_log("warn", "msg=\"session gone (renew 404): lease lost\" session=%s", a->session);
        a->errors++;
        clear_session(a);
        lease_event(a, CONSUL_LEV_SESSION_LOST);
        return;
    }
    fail(a, OP_RENEW, r, NULL);
    {
        int64_t d = backoff(a, OP_RENEW);
        arm(a->ev_renew, d < 1000 ? d : 1000); /* the fence runs out meanwhile: retry soon */
    }
}

static void renew_send(struct consul_agent *a)
{
    char path[128];

    if (!a->session[0] || a->req[OP_RENEW] || stopping(a))
        return;
    snprintf(path, sizeof(path), "/v1/session/renew/%s", a->session);
    if (send_req(a, OP_RENEW, "PUT", path, NULL, NULL, T_SHORT_MS, renew_done) == NULL)
        arm(a->ev_renew, 1000);
}

static void on_renew_timer(evutil_socket_t fd, short what, void *arg)
{
    renew_send(arg);
}

/* ---------------- acquire ---------------- */

/*
 * What every ?acquire= reply (an acquire, a value repair) does first. False when there is
 * nothing more to do with it: a shutdown or a handoff was waiting for it.
 */
static bool acquire_reply_open(struct consul_agent *a, const struct consul_http_resp *r)
{
    a->req[OP_ACQUIRE] = NULL;
    saw(a, r);
    if (a->lease == CONSUL_LEASE_STOPPING) {
        shutdown_next(a); /* the release waited for this one */
        return false;
    }
    if (stopping(a))
        return false;
    if (a->release_after_acquire) {
        a->release_after_acquire = 0;
        handoff_release(a);
        return false;
    }
    return true;
}

static void acquire_done(const struct consul_http_resp *r, void *arg)
{
    struct consul_agent *a = arg;
    bool got;

    if (!acquire_reply_open(a, r))
        return;
    if (r->status == 200 && consul_bool_decode(r->body, r->body_len, &got) == 0) {
        ok(a, OP_ACQUIRE);
        if (a->lease != CONSUL_LEASE_ACQUIRING) {
            value_repair(a); /* KEY_OURS came first, maybe with a foreign value it skipped for us */
            return;          /* handoff meanwhile: STANDBY after it sees our session and goes HOLDING again */
        }
        if (got) {
            /* the servers found the session valid as they took the key: as good as a renew */
            if (r->sent_ms > a->renew_ok_sent_ms)
                a->renew_ok_sent_ms = r->sent_ms;
            /*
             * The key is ours now (a raft write): act as primary at once rather than at our
             * watch's next reply. Peers whose watch answered first forward writes to us meanwhile,
             * and a 421 to those would send them to wait for yet another primary.
             */
            snprintf(a->holder_session, sizeof(a->holder_session), "%s", a->session);
            snprintf(a->holder.hostname, sizeof(a->holder.hostname), "%s", a->cfg.instance);
            snprintf(a->holder.advertise_url, sizeof(a->holder.advertise_url), "%s", a->cfg.advertise);
            a->holder_valid = true;
            a->key_exists = true;
            a->key_was_held = true;
            wrote_key(a);
            lease_event(a, CONSUL_LEV_ACQUIRED);
            value_repair(a);
        } else {
            /* held by another session, or lock-delay after an invalidation: retry after lock-delay */
            arm(a->ev_lease, a->cfg.lock_delay_ms + (int64_t)(rnd(a) % 100));
            lease_event(a, CONSUL_LEV_NOT_ACQUIRED);
        }
        return;
    }
    if (r->status == 500 && strcasestr(r->body, "invalid session")) {
        consul_log("warn", "msg=\"session invalid on acquire: creating a new one\" session=%s", a->session);
        a->errors++;
        clear_session(a);
        lease_event(a, CONSUL_LEV_SESSION_LOST);
        return;
    }
    fail(a, OP_ACQUIRE, r, NULL);
    if (a->lease == CONSUL_LEASE_ACQUIRING)
        arm(a->ev_lease, backoff(a, OP_ACQUIRE));
}

static void acquire_send(struct consul_agent *a)
{
    char query[128];

    if (a->lease != CONSUL_LEASE_ACQUIRING || a->req[OP_ACQUIRE])
        return;
    if (!a->session[0]) {
        lease_event(a, CONSUL_LEV_SESSION_LOST);
        return;
    }
    evtimer_del(a->ev_lease);
    snprintf(query, sizeof(query), "acquire=%s", a->session);
    if (send_req(a, OP_ACQUIRE, "PUT", a->key_path, query, a->lease_value, T_SHORT_MS, acquire_done) == NULL)
        arm(a->ev_lease, backoff(a, OP_ACQUIRE));
}

static void repair_done(const struct consul_http_resp *r, void *arg)
{
    struct consul_agent *a = arg;
    bool got;

    if (!acquire_reply_open(a, r))
        return;
    if (r->status == 200 && consul_bool_decode(r->body, r->body_len, &got) == 0) {
        ok(a, OP_ACQUIRE);
        if (got) {
            if (r->sent_ms > a->renew_ok_sent_ms)
                a->renew_ok_sent_ms = r->sent_ms;
            wrote_key(a);
        }
        /* false: our session no longer holds the key; the watch says who does */
        return;
    }
    if (r->status == 500 && strcasestr(r->body, "invalid session")) {
        consul_log("warn", "msg=\"session invalid on value repair: creating a new one\" session=%s",
                   a->session);
        a->errors++;
        clear_session(a);
        lease_event(a, CONSUL_LEV_SESSION_LOST);
        return;
    }
    fail(a, OP_ACQUIRE, r, NULL);
    a->repair_index = 0; /* on_lease_timer() tries again */
    if (a->lease == CONSUL_LEASE_HOLDING)
        arm(a->ev_lease, backoff(a, OP_ACQUIRE));
}

/*
 * The watch showed our session on the key with a value that is not ours: the holder is
 * primary (the session decides), but peers route to whatever the value names. Write ours
 * again with ?acquire=<our session>, which for the holder only rewrites the value (and keeps
 * LockIndex, so the tenure's fencing token is unchanged). Once per foreign ModifyIndex.
 */
static void value_repair(struct consul_agent *a)
{
    char query[128];

    if (!a->value_foreign || !we_hold(a) || a->req[OP_ACQUIRE] || a->repair_index == a->modify_index ||
        stopping(a))
        return;
    evtimer_del(a->ev_lease);
    a->repair_index = a->modify_index;
    snprintf(query, sizeof(query), "acquire=%s", a->session);
    if (send_req(a, OP_ACQUIRE, "PUT", a->key_path, query, a->lease_value, T_SHORT_MS, repair_done) == NULL) {
        a->repair_index = 0;
        arm(a->ev_lease, backoff(a, OP_ACQUIRE));
    }
}

/* ---------------- the watch ---------------- */

/* A value from the key, for a quoted logfmt field: quotes, backslashes and controls blanked. */
static const char *value_for_log(const char *v)
{
    static char buf[128];
    size_t i;

    if (v == NULL)
        return "(null)";
    for (i = 0; v[i] && i < sizeof(buf) - 1; i++)
        buf[i] = (v[i] == '"' || v[i] == '\\' || (unsigned char)v[i] < 0x20) ? ' ' : v[i];
    buf[i] = '\0';
    return buf;
}

static void apply_kv(struct consul_agent *a, const struct consul_kv *kv)
{
    const char *err = NULL;

    a->key_exists = kv->exists;
    a->modify_index = kv->exists ? kv->modify_index : 0;
    snprintf(a->holder_session, sizeof(a->holder_session), "%s", kv->exists ? kv->session : "");
    a->holder_valid = false;
    {
        bool foreign = a->session[0] && strcmp(a->holder_session, a->session) == 0 &&
                       (kv->value == NULL || kv->value_len != strlen(a->lease_value) ||
                        memcmp(kv->value, a->lease_value, kv->value_len) != 0);
        if (foreign && !a->value_foreign)
            consul_log("warn",
                       "msg=\"lease value is not ours although our session holds the key (written by hand?): "
                       "writing ours again\" key=%s session=%s value=\"%.120s\"",
                       a->cfg.lease_key, a->session, value_for_log(kv->value));
        if (!foreign && a->value_foreign)
            consul_log("info", "msg=\"lease value is ours again\" key=%s", a->cfg.lease_key);
        a->value_foreign = foreign;
    }
    if (a->holder_session[0]) {
        if (consul_lease_value_decode(kv->value, kv->value_len, &a->holder, &err) == 0) {
            a->holder_valid = true;
            a->last_value_err[0] = '\0';
        } else if (strcmp(err, a->last_value_err) != 0) {
            snprintf(a->last_value_err, sizeof(a->last_value_err), "%s", err);
            consul_log("warn", "msg=\"lease value unusable: primary unknown\" key=%s error=\"%s\"",
                       a->cfg.lease_key, err);
        }
    }
}

static void watch_done(const struct consul_http_resp *r, void *arg)
{
    struct consul_agent *a = arg;
    struct consul_kv kv = {0};
    const char *err = NULL;
    uint64_t next;

    a->req[OP_WATCH] = NULL;
    saw(a, r);
    if (watch_stopped(a))
        return;
    if (r->status == 200 || r->status == 404) {
        if (r->status == 200 && consul_kv_decode(r->body, r->body_len, &kv, &err) < 0) {
            fail(a, OP_WATCH, r, err);
            a->watch_index = 0;
            arm(a->ev_watch, backoff(a, OP_WATCH));
            publish(a);
            return;
        }
        ok(a, OP_WATCH);
        next = consul_index_next(a->watch_index, r->has_index, r->index);
        if (a->watch_index != 0 && next == 0)
            consul_log("info", "msg=\"Consul index went backwards: re-reading\" was=%llu now=%llu",
                       (unsigned long long)a->watch_index, (unsigned long long)r->index);
        a->watch_index = next;
        a->watch_ok = 1;
        a->watch_replies++;
        apply_kv(a, &kv);
        consul_kv_clear(&kv);
        if (!a->following) {
            lease_saw_key(a);
            check_ghost(a);
        }
        publish(a);
        watch_start(a);
        return;
    }
    fail(a, OP_WATCH, r, NULL);
    /*
     * After an error the agent may be a new one (restarted dev agent, restored snapshot) whose
     * index is below ours: blocking on our index would hang until it catches up. Re-read.
     */
    a->watch_index = 0;
    publish(a); /* reachable may have changed; the last known primary stays */
    arm(a->ev_watch, backoff(a, OP_WATCH));
}

static void watch_start(struct consul_agent *a)
{
    char query[96];
    int64_t wait, timeout;

    if (a->req[OP_WATCH] || watch_stopped(a))
        return;
    wait = consul_bucket_take(&a->bucket, consul_now_ms());
    if (wait > 0) {
        arm(a->ev_watch, wait);
        return;
    }
    if (a->watch_index == 0) { /* a plain read: never block on 0 */
        query[0] = '\0';
        timeout = T_PLAIN_READ;
    } else {
        snprintf(query, sizeof(query), "index=%llu&wait=%dms", (unsigned long long)a->watch_index,
                 CONSUL_WATCH_WAIT_MS);
        /* Consul adds up to wait/16 of jitter */
        timeout = CONSUL_WATCH_WAIT_MS + CONSUL_WATCH_WAIT_MS / 16 + 5000;
    }
    if (send_req(a, OP_WATCH, "GET", a->key_path, query, NULL, timeout, watch_done) == NULL)
        arm(a->ev_watch, backoff(a, OP_WATCH));
}

static void on_watch_timer(evutil_socket_t fd, short what, void *arg)
{
    watch_start(arg);
}

/*
 * We changed the key ourselves, so the blocking query must return. If it has not within
 * 2 s, it is blocked on an index this Consul will not reach soon (the agent restarted and
 * its index went backwards while our query was queued): drop it and re-read.
 */
static void on_watch_check(evutil_socket_t fd, short what, void *arg)
{
    struct consul_agent *a = arg;

    if (stopping(a) || a->watch_replies != a->watch_replies_at || a->req[OP_WATCH] == NULL)
        return;
    consul_log("warn", "msg=\"blocking query did not see our own write: re-reading the key\" index=%llu",
               (unsigned long long)a->watch_index);
    consul_http_cancel(a->req[OP_WATCH]);
    a->req[OP_WATCH] = NULL;
    a->watch_index = 0;
    watch_start(a);
}

static void wrote_key(struct consul_agent *a)
{
    a->watch_replies_at = a->watch_replies;
    arm(a->ev_watch_check, 2000);
}

/* ---------------- service registration and checks ---------------- */

static const char *ready_status(const struct consul_agent *a)
{
    return (a->gate == ROUTE_GATE_OPEN && !stopping(a)) ? "passing" : "critical";
}

static void register_done(const struct consul_http_resp *r, void *arg)
{
    struct consul_agent *a = arg;

    a->req[OP_REGISTER] = NULL;
    saw(a, r);
    if (a->lease == CONSUL_LEASE_STOPPING) {
        shutdown_next(a); /* the deregistration waited for this one */
        return;
    }
    if (stopping(a))
        return;
    if (r->status == 200) {
        ok(a, OP_REGISTER);
        if (!a->registered)
            consul_log("info", "msg=\"service registered\" service=%s id=%s tag=%s", a->cfg.service,
                       a->cfg.instance, a->registered_role == ROUTE_ROLE_PRIMARY ? "primary" : "replica");
        if (!a->registered)
            a->alive_fed = 0;
        a->registered = 1;
        /*
         * Re-registering a check keeps the status the agent has for it (critical after a
         * crash), so registration is not a pass: feed at once, create the session after that.
         */
        if (!a->alive_fed)
            on_alive_timer(-1, 0, a);
        a->ready_dirty = 1;
        ready_update(a); /* sets the output (the gate's reason) */
        /*
         * The role (the lease view came first: a watch-only instance the lease names) or the
         * gate may have changed while this registration was in flight; publish() skipped the
         * tag sync then (not registered yet), and will not run it again if nothing else changes.
         */
        if (a->register_dirty || registration_stale(a)) {
            a->register_dirty = 0;
            register_now(a);
        }
        publish(a);
        return;
    }
    fail(a, OP_REGISTER, r, NULL);
    arm(a->ev_register, backoff(a, OP_REGISTER));
}

static void register_now(struct consul_agent *a)
{
    char ttl_alive[32], ttl_ready[32];
    json_t *o;
    char *body;

    if (!a->cfg.register_service || stopping(a))
        return;
    if (a->req[OP_REGISTER] || evtimer_pending(a->ev_register, NULL)) {
        a->register_dirty = 1;
        return;
    }
    a->registered_role = tag_role(a);
    a->registered_gate = a->gate;
    consul_duration_fmt(CONSUL_ALIVE_TTL_MS, ttl_alive, sizeof(ttl_alive));
    consul_duration_fmt(CONSUL_READY_TTL_MS, ttl_ready, sizeof(ttl_ready));
    /*
     * DeregisterCriticalServiceAfter only on `alive`: `ready` is critical for as long as the
     * gate is closed (a long migration), which must not get the service reaped.
     */
    o = json_pack("{s:s, s:s, s:[s], s:s, s:i, s:{s:s, s:s, s:s}, s:[{s:s, s:s, s:s, s:s, s:s}, "
                  "{s:s, s:s, s:s, s:s, s:s}]}",
                  "ID", a->cfg.instance, "Name", a->cfg.service, "Tags",
                  a->registered_role == ROUTE_ROLE_PRIMARY ? "primary" : "replica", "Address", a->adv_host,
                  "Port", a->adv_port, "Meta", "region", a->cfg.region, "version", a->cfg.version, "gate",
                  route_gate_str(a->gate), "Checks", "CheckID", a->alive_id, "Name", "leaseway alive", "TTL",
                  ttl_alive, "Status", "passing", "DeregisterCriticalServiceAfter", "1m", "CheckID",
                  a->ready_id, "Name", "leaseway ready", "TTL", ttl_ready, "Status", ready_status(a), "Notes",
                  "passing only while the gate is open; output = the gate's reason");
    if (o == NULL) {
        consul_log("error", "msg=\"cannot build the service registration\"");
        return;
    }
    body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (body == NULL)
        return;
    if (send_req(a, OP_REGISTER, "PUT", "/v1/agent/service/register", NULL, body, T_SHORT_MS,
                 register_done) == NULL)
        arm(a->ev_register, backoff(a, OP_REGISTER));
    free(body);
}

static void on_register_timer(evutil_socket_t fd, short what, void *arg)
{
    register_now(arg);
}

static void destroy_done(const struct consul_http_resp *r, void *arg)
{
    struct consul_agent *a = arg;

    a->req[OP_DESTROY] = NULL;
    saw(a, r);
    if (r->status != 200)
        fail(a, OP_DESTROY, r, NULL);
}

/*
 * Our session can no longer be proven alive (the alive check may have gone
 * critical): fence at once, destroy it (idempotent; it may be gone already)
 * and start over with a new one. If it still held the key, Consul deletes the
 * key and applies the lock-delay, which is exactly the safe outcome.
 */
static void give_up_session(struct consul_agent *a, const char *why)
{
    char path[128];

    if (!a->session[0])
        return;
    consul_log("warn", "msg=\"giving up the session\" reason=\"%s\" session=%s", why, a->session);
    snprintf(path, sizeof(path), "/v1/session/destroy/%s", a->session);
    consul_http_cancel(a->req[OP_DESTROY]);
    send_req(a, OP_DESTROY, "PUT", path, NULL, NULL, T_SHORT_MS, destroy_done);
    clear_session(a);
    if (a->lease != CONSUL_LEASE_HANDOFF)
        lease_event(a, CONSUL_LEV_SESSION_LOST);
    publish(a);
    /* a broken alive chain is often a restarted agent, whose index may be below ours: re-read now */
    if (a->req[OP_WATCH]) {
        consul_http_cancel(a->req[OP_WATCH]);
        a->req[OP_WATCH] = NULL;
    }
    a->watch_index = 0;
    watch_start(a);
}

/*
 * A pass reached the agent (a feed, or a registration with Status passing):
 * it extends the fence only if the check cannot have gone critical since the
 * previous one, i.e. this reply came back less than alive TTL - margin after
 * the latest successful send before it (consul_alive_chain_ok()). Otherwise
 * (a stall: SIGSTOP, a long pause, a stalled or restarted agent) Consul may
 * already have invalidated the session, and a renew cannot prove otherwise
 * (the agent syncs check state to the servers asynchronously), so the
 * session is given up.
 */
static void alive_pass(struct consul_agent *a, int64_t sent_ms)
{
    bool broken = !consul_alive_chain_ok(a->alive_ok_sent_ms, consul_now_ms());

    if (sent_ms > a->alive_ok_sent_ms)
        a->alive_ok_sent_ms = sent_ms;
    if (broken && a->session[0])
        give_up_session(a, "alive check chain broken (process or agent stalled)");
}

/* A check update failed: decide whether the agent has forgotten us. */
static void check_failed(struct consul_agent *a, enum op op, const struct consul_http_resp *r)
{
    fail(a, op, r, NULL);
    if (agent_forgot(r) && a->registered) {
        consul_log("warn", "msg=\"agent lost our service (restart?): registering again\" op=%s",
                   op_names[op]);
        a->registered = 0;
        a->alive_fed = 0;
        give_up_session(a, "the agent lost our alive check");
        register_now(a);
    }
}

static unsigned alive_in_flight(const struct consul_agent *a)
{
    unsigned n = 0;

    for (size_t i = 0; i < CONSUL_ALIVE_IN_FLIGHT; i++)
        n += a->alive[i].req != NULL;
    return n;
}

static void alive_cancel(struct consul_agent *a)
{
    for (size_t i = 0; i < CONSUL_ALIVE_IN_FLIGHT; i++) {
        consul_http_cancel(a->alive[i].req);
        a->alive[i].req = NULL;
    }
}

/* Arm the feed's timer for the next pass: 1 s after the last, sooner while one is unanswered. */
static void alive_schedule(struct consul_agent *a)
{
    if (stopping(a))
        return;
    if (!a->registered || a->alive_last_sent_ms < 0) {
        arm(a->ev_alive, CONSUL_ALIVE_RESEND_MS); /* register_done() feeds at once */
        return;
    }
    arm_from(a->ev_alive, consul_alive_next_ms(a->alive_last_sent_ms, alive_in_flight(a)), 0);
}

static void alive_done(const struct consul_http_resp *r, void *arg)
{
    struct alive_feed *f = arg;
    struct consul_agent *a = f->agent;

    f->req = NULL;
    saw(a, r);
    if (stopping(a))
        return;
    if (r->status == 200) {
        ok(a, OP_ALIVE);
        alive_pass(a, r->sent_ms);
        if (!a->alive_fed) {
            a->alive_fed = 1;
            session_create(a);
        }
    } else {
        check_failed(a, OP_ALIVE, r);
    }
    alive_schedule(a);
    publish(a);
}

/* Send a pass now (also called by register_done()), whatever else is in flight. */
static void on_alive_timer(evutil_socket_t fd, short what, void *arg)
{
    struct consul_agent *a = arg;
    struct alive_feed *f = NULL;
    char path[512];

    if (stopping(a))
        return;
    for (size_t i = 0; i < CONSUL_ALIVE_IN_FLIGHT && f == NULL; i++)
        if (a->alive[i].req == NULL)
            f = &a->alive[i];
    if (a->registered && f == NULL) {
        arm(a->ev_alive, CONSUL_ALIVE_RESEND_MS); /* cannot happen: the timeout frees slots first */
        return;
    }
    if (a->registered) {
        snprintf(path, sizeof(path), "/v1/agent/check/pass/%s", a->alive_id_esc);
        a->alive_last_sent_ms = consul_now_ms(); /* at or before the request's own sent_ms */
        f->req = consul_http_request(a->http, "PUT", path, NULL, NULL, T_ALIVE_MS, alive_done, f);
        if (f->req == NULL)
            consul_log("error", "msg=\"cannot start Consul request\" op=%s", op_names[OP_ALIVE]);
    }
    alive_schedule(a);
}

static void ready_done(const struct consul_http_resp *r, void *arg)
{
    struct consul_agent *a = arg;

    a->req[OP_READY] = NULL;
    saw(a, r);
    if (a->lease == CONSUL_LEASE_STOPPING) {
        shutdown_next(a);
        return;
    }
    if (stopping(a))
        return;
    if (r->status == 200) {
        ok(a, OP_READY);
        if (a->ready_dirty)
            ready_update(a);
        return;
    }
    check_failed(a, OP_READY, r);
}

static void ready_update(struct consul_agent *a)
{
    char path[512];
    json_t *o;
    char *body;

    if (!a->cfg.register_service || !a->registered)
        return;
    if (a->req[OP_READY]) {
        a->ready_dirty = 1;
        return;
    }
    a->ready_dirty = 0;
    o = json_pack("{s:s, s:s}", "Status", ready_status(a), "Output",
                  stopping(a) ? "draining: shutting down" : a->gate_reason);
    body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (body == NULL)
        return;
    snprintf(path, sizeof(path), "/v1/agent/check/update/%s", a->ready_id_esc);
    send_req(a, OP_READY, "PUT", path, NULL, body, stopping(a) ? 700 : T_SHORT_MS, ready_done);
    free(body);
}

static void on_ready_timer(evutil_socket_t fd, short what, void *arg)
{
    ready_update(arg);
}

/* ---------------- shutdown ---------------- */

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    struct consul_agent *a = arg;
    consul_done_cb done = a->done;

    a->done = NULL;
    if (done)
        done(a->done_arg); /* may free the agent: touch nothing after */
}

static void shutdown_finish(struct consul_agent *a)
{
    if (a->lease == CONSUL_LEASE_STOPPED)
        return;
    evtimer_del(a->ev_deadline);
    for (int op = 0; op < OP_COUNT; op++) {
        consul_http_cancel(a->req[op]);
        a->req[op] = NULL;
    }
    alive_cancel(a);
    if (a->session[0] && strcmp(a->holder_session, a->session) == 0)
        a->holder_session[0] = '\0'; /* released (or about to vanish with the session) */
    a->session[0] = '\0';
    lease_event(a, CONSUL_LEV_STOPPED);
    consul_log("info", "msg=\"Consul shutdown done\" requests_sent=%llu",
               (unsigned long long)consul_http_sent(a->http));
    event_active(a->ev_done, EV_TIMEOUT, 0);
}

static void shutdown_step_done(const struct consul_http_resp *r, void *arg)
{
    struct consul_agent *a = arg;
    enum op op = a->shutdown_step == 1 ? OP_RELEASE : a->shutdown_step == 2 ? OP_DESTROY : OP_DEREGISTER;

    a->req[op] = NULL;
    if (r->status == 200 || (op == OP_DEREGISTER && r->status == 404))
        consul_log("info", "msg=\"%s done\"%s", op_names[op],
                   op == OP_RELEASE ? " (standbys take over now)" : "");
    else
        fail(a, op, r, NULL);
    shutdown_next(a);
}

/* release → destroy session → deregister, strictly in this order (destroy before release would set a
 * lock-delay). */
static void shutdown_next(struct consul_agent *a)
{
    char path[512], query[128];

    if (a->lease != CONSUL_LEASE_STOPPING || a->req[OP_RELEASE] || a->req[OP_DESTROY] ||
        a->req[OP_DEREGISTER])
        return;
    for (;;) {
        a->shutdown_step++;
        switch (a->shutdown_step) {
        case 1:
            if (a->req[OP_ACQUIRE]) {
                a->shutdown_step--; /* acquire_done() comes back here */
                return;
            }
            if (!a->session[0])
                continue;
            snprintf(query, sizeof(query), "release=%s", a->session);
            if (send_req(a, OP_RELEASE, "PUT", a->key_path, query, a->lease_value, 1000, shutdown_step_done))
                return;
            continue;
        case 2:
            if (!a->session[0])
                continue;
            snprintf(path, sizeof(path), "/v1/session/destroy/%s", a->session);
            if (send_req(a, OP_DESTROY, "PUT", path, NULL, NULL, 700, shutdown_step_done))
                return;
            continue;
        case 3:
            if (!a->cfg.register_service)
                continue;
            if (a->req[OP_READY] || a->req[OP_REGISTER]) {
                a->shutdown_step--; /* let "critical: draining" land first; ready_done() comes back here */
                return;
            }
            snprintf(path, sizeof(path), "/v1/agent/service/deregister/%s", a->instance_esc);
            if (send_req(a, OP_DEREGISTER, "PUT", path, NULL, NULL, 700, shutdown_step_done))
                return;
            continue;
        default: shutdown_finish(a); return;
        }
    }
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct consul_agent *a = arg;

    consul_log("warn", "msg=\"Consul shutdown did not finish in time; giving up\" step=%u", a->shutdown_step);
    shutdown_finish(a);
}

void consul_agent_shutdown(struct consul_agent *a, consul_done_cb done, void *arg)
{
    a->done = done;
    a->done_arg = arg;
    if (stopping(a)) {
        if (a->lease == CONSUL_LEASE_STOPPED)
            event_active(a->ev_done, EV_TIMEOUT, 0);
        return;
    }
    /*
     * Stop everything periodic and in flight, except a registration and an acquire: Consul
     * may already be applying them (closing our end does not stop it), so the steps below
     * wait for them rather than have one land after the deregistration or the release.
     */
    for (int op = 0; op < OP_COUNT; op++) {
        if (op == OP_REGISTER || op == OP_ACQUIRE)
            continue;
        consul_http_cancel(a->req[op]);
        a->req[op] = NULL;
    }
    alive_cancel(a);
    evtimer_del(a->ev_watch);
    evtimer_del(a->ev_watch_check);
    evtimer_del(a->ev_lease);
    evtimer_del(a->ev_renew);
    evtimer_del(a->ev_alive);
    evtimer_del(a->ev_ready);
    evtimer_del(a->ev_register);
    evtimer_del(a->ev_fence);
    lease_event(a, CONSUL_LEV_SHUTDOWN); /* publishes role replica: writes stop before ?release= */
    arm(a->ev_deadline, SHUTDOWN_MS);
    a->shutdown_step = 0;
    if (a->cfg.register_service && a->registered)
        ready_update(a); /* critical, "draining"; runs alongside the release */
    shutdown_next(a);
}

/* ---------------- public API ---------------- */

/*
 * After the shutdown, the key is watched again, read-only, so that what is published names the
 * next primary: a write that reaches this instance while it drains (on a client's open
 * connection) is forwarded there rather than refused. Nothing is written to Consul any more.
 */
void consul_agent_follow(struct consul_agent *a)
{
    if (a->lease != CONSUL_LEASE_STOPPED || a->following)
        return;
    a->following = 1;
    consul_log("info", "msg=\"watching the lease key until the stop, to forward late writes\" key=%s",
               a->cfg.lease_key);
    watch_start(a);
}

void consul_agent_set_gate(struct consul_agent *a, enum route_gate gate, const char *reason)
{
    bool gate_changed = gate != a->gate;

    if (!gate_changed && strcmp(reason ? reason : "", a->gate_reason) == 0)
        return;
    a->gate = gate;
    snprintf(a->gate_reason, sizeof(a->gate_reason), "%s", reason ? reason : "");
    if (stopping(a))
        return;
    if (gate_changed && a->lease != CONSUL_LEASE_INIT)
        register_now(a); /* Meta.gate (queued if one is in flight); a ready update follows it */
    else
        ready_update(a);
}

void consul_agent_set_fit(struct consul_agent *a, bool fit)
{
    if (fit == !a->unfit)
        return;
    a->unfit = !fit;
    if (a->cfg.candidate)
        consul_log(
            "info", "msg=\"%s\" lease_state=%s",
            fit ? "this instance may lead again: contending for the lease"
                : "this instance may not lead now (app not healthy, or draining): not contending for the "
                  "lease",
            consul_lease_state_str(a->lease));
    if (a->lease == CONSUL_LEASE_INIT || stopping(a))
        return;
    lease_event(a, fit ? CONSUL_LEV_FIT : CONSUL_LEV_UNFIT);
}

static void handoff_release_done(const struct consul_http_resp *r, void *arg)
{
    struct consul_agent *a = arg;

    a->req[OP_RELEASE] = NULL;
    saw(a, r);
    if (r->status == 200) {
        consul_log("info", "msg=\"lease released for handoff\" key=%s body=%.8s", a->cfg.lease_key, r->body);
        wrote_key(a);
    } else {
        fail(a, OP_RELEASE, r, NULL);
    }
}

void consul_agent_handoff(struct consul_agent *a)
{
    if (a->lease != CONSUL_LEASE_HOLDING || !a->session[0]) {
        consul_log("info",
                   "msg=\"handoff requested but this instance does not hold the lease\" lease_state=%s",
                   consul_lease_state_str(a->lease));
        return;
    }
    consul_log("info", "msg=\"handing off the lease\" key=%s", a->cfg.lease_key);
    evtimer_del(a->ev_lease);
    arm(a->ev_lease, a->cfg.lock_delay_ms + 1000);
    lease_event(a, CONSUL_LEV_HANDOFF); /* role drops (published) before the release is sent */
    if (a->req[OP_ACQUIRE]) {
        /* an acquire in flight (a value repair) could land after the release and take the key back */
        a->release_after_acquire = 1;
        return;
    }
    handoff_release(a);
}

static void handoff_release(struct consul_agent *a)
{
    char query[128];

    if (!a->session[0] || a->lease != CONSUL_LEASE_HANDOFF)
        return;
    snprintf(query, sizeof(query), "release=%s", a->session);
    consul_http_cancel(a->req[OP_RELEASE]);
    send_req(a, OP_RELEASE, "PUT", a->key_path, query, a->lease_value, T_SHORT_MS, handoff_release_done);
}

uint64_t consul_agent_errors(const struct consul_agent *a)
{
    return a->errors;
}

uint64_t consul_agent_primary_changes(const struct consul_agent *a)
{
    return a->primary_changes;
}

uint64_t consul_agent_requests(const struct consul_agent *a)
{
    return consul_http_sent(a->http);
}

const char *consul_agent_lease_state(const struct consul_agent *a)
{
    return consul_lease_state_str(a->lease);
}

static char *escape_id(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0), *out;

    if (e == NULL)
        return NULL;
    out = strdup(e);
    curl_free(e);
    return out;
}

static char *xasprintf(const char *fmt, const char *s)
{
    char *out = NULL;

    if (asprintf(&out, fmt, s) < 0)
        return NULL;
    return out;
}

struct consul_agent *consul_agent_new(struct event_base *base, const struct consul_config *cfg,
                                      consul_state_cb cb, void *arg)
{
    struct consul_agent *a;
    const char *err = NULL;
    char *key_esc = NULL;

    if (cfg->lease_key == NULL || cfg->lease_key[0] == '\0' || cfg->lease_key[0] == '/') {
        consul_log("error", "msg=\"--lease-key must be set and must not start with '/'\"");
        return NULL;
    }
    if (cfg->instance == NULL || cfg->instance[0] == '\0' || strlen(cfg->instance) >= ROUTE_ID_MAX) {
        consul_log("error", "msg=\"--instance must be set (at most %d bytes)\"", ROUTE_ID_MAX - 1);
        return NULL;
    }
    if (cfg->candidate && (cfg->lease_ttl_ms < 1000 || cfg->lease_ttl_ms > 86400000)) {
        consul_log("error",
                   "msg=\"--lease-ttl must be between 1s and 24h (and at least Consul's session_ttl_min, "
                   "10s by default)\"");
        return NULL;
    }
    if (cfg->lock_delay_ms < CONSUL_LOCK_DELAY_MIN_MS || cfg->lock_delay_ms > 60000) {
        consul_log("error", "msg=\"--lock-delay must be between 1s and 60s\"");
        return NULL;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->base = base;
    a->cb = cb;
    a->cb_arg = arg;
    a->cfg = *cfg;
    a->cfg.addr = NULL;
    a->cfg.lease_key = strdup(cfg->lease_key);
    a->cfg.instance = strdup(cfg->instance);
    a->cfg.region = strdup(cfg->region ? cfg->region : "");
    a->cfg.advertise = strdup(cfg->advertise ? cfg->advertise : "");
    a->cfg.service = strdup(cfg->service && cfg->service[0] ? cfg->service : "leaseway");
    a->cfg.peer_url_template =
        cfg->peer_url_template && cfg->peer_url_template[0] ? strdup(cfg->peer_url_template) : NULL;
    a->cfg.version = strdup(cfg->version ? cfg->version : "");
    a->alive_ok_sent_ms = -1;
    a->alive_last_sent_ms = -1;
    for (size_t i = 0; i < CONSUL_ALIVE_IN_FLIGHT; i++)
        a->alive[i].agent = a;
    a->last_contact_ms = -1;
    a->gate = ROUTE_GATE_CLOSED;
    snprintf(a->gate_reason, sizeof(a->gate_reason), "starting");
    a->rnd = (uint32_t)consul_now_ms() ^ ((uint32_t)getpid() << 16) ^ 0x9e3779b9u;
    if (a->rnd == 0)
        a->rnd = 1;
    if (!a->cfg.lease_key || !a->cfg.instance || !a->cfg.region || !a->cfg.advertise || !a->cfg.service ||
        !a->cfg.version)
        goto fail;
    if (cfg->register_service &&
        consul_url_host_port(a->cfg.advertise, a->adv_host, sizeof(a->adv_host), &a->adv_port) < 0) {
        consul_log("error",
                   "msg=\"--advertise must be an http(s) URL with a host to register the service\" "
                   "advertise=%s",
                   a->cfg.advertise);
        goto fail;
    }
    if (consul_http_conf_init(&a->conf, cfg->addr, &err) < 0) {
        consul_log("error", "msg=\"bad Consul client configuration\" error=\"%s\"", err);
        goto fail;
    }
    key_esc = consul_escape_key(a->cfg.lease_key);
    a->key_path = key_esc ? xasprintf("/v1/kv/%s", key_esc) : NULL;
    free(key_esc);
    a->alive_id = xasprintf("leaseway:%s:alive", a->cfg.instance);
    a->ready_id = xasprintf("leaseway:%s:ready", a->cfg.instance);
    a->alive_id_esc = a->alive_id ? escape_id(a->alive_id) : NULL;
    a->ready_id_esc = a->ready_id ? escape_id(a->ready_id) : NULL;
    a->instance_esc = escape_id(a->cfg.instance);
    a->lease_value = consul_lease_value_encode(a->cfg.instance, a->cfg.advertise);
    if (!a->key_path || !a->alive_id || !a->ready_id || !a->alive_id_esc || !a->ready_id_esc ||
        !a->instance_esc || !a->lease_value)
        goto fail;
    a->http = consul_http_new(base, &a->conf);
    if (a->http == NULL)
        goto fail;
    a->ev_watch = evtimer_new(base, on_watch_timer, a);
    a->ev_watch_check = evtimer_new(base, on_watch_check, a);
    a->ev_lease = evtimer_new(base, on_lease_timer, a);
    a->ev_renew = evtimer_new(base, on_renew_timer, a);
    a->ev_alive = evtimer_new(base, on_alive_timer, a);
    a->ev_ready = event_new(base, -1, EV_PERSIST, on_ready_timer, a);
    a->ev_register = evtimer_new(base, on_register_timer, a);
    a->ev_deadline = evtimer_new(base, on_deadline, a);
    a->ev_done = evtimer_new(base, on_done, a);
    a->ev_fence = evtimer_new(base, on_fence_timer, a);
    if (!a->ev_watch || !a->ev_watch_check || !a->ev_lease || !a->ev_renew || !a->ev_alive || !a->ev_ready ||
        !a->ev_register || !a->ev_deadline || !a->ev_done || !a->ev_fence)
        goto fail;
    consul_bucket_init(&a->bucket, consul_now_ms());
    return a;
fail:
    consul_agent_free(a);
    return NULL;
}

int consul_agent_start(struct consul_agent *a)
{
    if (a->lease != CONSUL_LEASE_INIT)
        return -1;
    consul_log("info",
               "msg=\"Consul agent starting\" consul=%s key=%s instance=%s candidate=%s register=%s "
               "ttl_ms=%lld lock_delay_ms=%lld token=%s",
               a->conf.base_url, a->cfg.lease_key, a->cfg.instance, a->cfg.candidate ? "true" : "false",
               a->cfg.register_service ? "true" : "false", (long long)a->cfg.lease_ttl_ms,
               (long long)a->cfg.lock_delay_ms, a->conf.token ? "set" : "none");
    if (a->cfg.register_service) {
        register_now(a);
        arm(a->ev_alive, CONSUL_ALIVE_EVERY_MS);
        arm(a->ev_ready, CONSUL_READY_EVERY_MS);
    }
    watch_start(a);
    lease_event(a, a->cfg.candidate ? CONSUL_LEV_START : CONSUL_LEV_START_WATCH);
    publish(a);
    return 0;
}

void consul_agent_free(struct consul_agent *a)
{
    if (a == NULL)
        return;
    consul_http_free(a->http); /* cancels everything in flight: no callback runs afterwards */
    if (a->ev_watch)
        event_free(a->ev_watch);
    if (a->ev_watch_check)
        event_free(a->ev_watch_check);
    if (a->ev_lease)
        event_free(a->ev_lease);
    if (a->ev_renew)
        event_free(a->ev_renew);
    if (a->ev_alive)
        event_free(a->ev_alive);
    if (a->ev_ready)
        event_free(a->ev_ready);
    if (a->ev_register)
        event_free(a->ev_register);
    if (a->ev_deadline)
        event_free(a->ev_deadline);
    if (a->ev_done)
        event_free(a->ev_done);
    if (a->ev_fence)
        event_free(a->ev_fence);
    consul_http_conf_free(&a->conf);
    free((char *)a->cfg.lease_key);
    free((char *)a->cfg.instance);
    free((char *)a->cfg.region);
    free((char *)a->cfg.advertise);
    free((char *)a->cfg.service);
    free((char *)a->cfg.peer_url_template);
    free((char *)a->cfg.version);
    free(a->key_path);
    free(a->alive_id);
    free(a->ready_id);
    free(a->alive_id_esc);
    free(a->ready_id_esc);
    free(a->instance_esc);
    free(a->lease_value);
    free(a);
}
