/*
 * SPEC §2, in order: passthrough, gate, always-primary, method, then where
 * a read or a write goes given the role. Everything here is a pure function
 * of its arguments so that the table test in tests/unit can pin the order.
 */
#include "routing/route.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

const char *route_action_str(enum route_action action)
{
    static const char *const names[ROUTE_ACTION_COUNT] = {
        "local", "passthrough", "gated", "forwarded", "replayed", "held", "misdirected",
    };
    return (unsigned)action < ROUTE_ACTION_COUNT ? names[action] : "invalid";
}

/* Anchored glob with '*' only; iterative with one backtrack point (linear in practice). */
bool route_glob_match(const char *p, const char *s, size_t len)
{
    const char *star = NULL;
    size_t si = 0, star_si = 0;
    while (si < len) {
        if (*p == '*') {
            star = p++;
            star_si = si;
        } else if (*p != '\0' && *p == s[si]) {
            p++;
            si++;
        } else if (star) {
            p = star + 1;
            si = ++star_si;
        } else {
            return false;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

int route_rules_add_glob(struct route_rules *rules, bool always_primary, const char *spec, const char **err)
{
    struct route_glob g = {{0}, NULL};
    const char *path = spec;
    const char *sp = strchr(spec, ' ');
    if (sp) {
        size_t mlen = (size_t)(sp - spec);
        if (mlen == 0 || mlen >= sizeof(g.method)) {
            *err = "method before the path is empty or too long";
            return -1;
        }
        for (size_t i = 0; i < mlen; i++) {
            if (spec[i] < 'A' || spec[i] > 'Z') {
                *err = "method must be upper-case letters, e.g. \"POST /path/*\"";
                return -1;
            }
        }
        memcpy(g.method, spec, mlen);
        path = sp + 1;
        while (*path == ' ')
            path++;
    }
    if (path[0] != '/' && path[0] != '*') {
        *err = "glob must start with '/' or '*' (optionally after a method)";
        return -1;
    }
    struct route_glob **arr = always_primary ? &rules->always_primary : &rules->passthrough;
    size_t *n = always_primary ? &rules->n_always_primary : &rules->n_passthrough;
    struct route_glob *grown = realloc(*arr, (*n + 1) * sizeof(**arr));
    if (!grown) {
        *err = "out of memory";
        return -1;
    }
    *arr = grown;
    g.pattern = strdup(path);
    if (!g.pattern) {
        *err = "out of memory";
        return -1;
    }
    (*arr)[(*n)++] = g;
    return 0;
}

void route_rules_free(struct route_rules *rules)
{
    for (size_t i = 0; i < rules->n_passthrough; i++)
        free(rules->passthrough[i].pattern);
    for (size_t i = 0; i < rules->n_always_primary; i++)
        free(rules->always_primary[i].pattern);
    free(rules->passthrough);
    free(rules->always_primary);
    memset(rules, 0, sizeof(*rules));
}

static bool globs_match(const struct route_glob *globs, size_t n, const struct route_request *req)
{
    for (size_t i = 0; i < n; i++) {
        const struct route_glob *g = &globs[i];
        if (g->method[0] &&
            (strlen(g->method) != req->method_len || memcmp(g->method, req->method, req->method_len) != 0))
            continue;
        if (route_glob_match(g->pattern, req->path, req->path_len))
            return true;
    }
    return false;
}

static bool method_is_read(const char *m, size_t len)
{
    switch (len) {
    case 3: return memcmp(m, "GET", 3) == 0;
    case 4: return memcmp(m, "HEAD", 4) == 0;
    case 5: return memcmp(m, "TRACE", 5) == 0;
    case 7: return memcmp(m, "OPTIONS", 7) == 0;
    default: return false;
    }
}

int64_t route_fence_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* May this instance apply a write now? Primary, and not fenced. */
static bool can_write_locally(const struct cluster_snapshot *snap, int64_t now_ms)
{
    if (snap->role != ROUTE_ROLE_PRIMARY)
        return false;
    return snap->fence_deadline_ms == 0 || now_ms < snap->fence_deadline_ms;
}

struct route_decision route_decide(const struct route_rules *rules, const struct route_request *req,
                                   const struct cluster_snapshot *snap, int64_t now_ms)
{
    struct route_decision d = {ROUTE_LOCAL, false};

    if (globs_match(rules->passthrough, rules->n_passthrough, req)) {
        d.action = ROUTE_PASSTHROUGH;
        return d;
    }
    d.is_write = globs_match(rules->always_primary, rules->n_always_primary, req) ||
                 !method_is_read(req->method, req->method_len);

    /* A forwarded request is only ever for the primary's own app (one hop). */
    if (req->from_peer) {
        if (snap->role != ROUTE_ROLE_PRIMARY)
            d.action = ROUTE_MISDIRECTED;
        else if (snap->gate != ROUTE_GATE_OPEN)
            d.action = ROUTE_GATED;
        else if (!can_write_locally(snap, now_ms))
            d.action = ROUTE_MISDIRECTED;
        else
            d.action = ROUTE_LOCAL;
        return d;
    }
    /*
     * Closed: 503. Draining: requests already on an open connection are still served (and the
     * connection closed after), as nginx and HAProxy do on a graceful stop; new connections are
     * no longer accepted. Peers see draining as closed (above) and hold for the next primary.
     */
    if (snap->gate == ROUTE_GATE_CLOSED) {
        d.action = ROUTE_GATED;
        return d;
    }
    if (!d.is_write && !req->recent_write) {
        d.action = ROUTE_LOCAL;
        return d;
    }
    if (can_write_locally(snap, now_ms)) {
        d.action = ROUTE_LOCAL;
        return d;
    }
    if (!d.is_write) {
        /* Read-your-writes: a fresh writer reads from the primary when one is known. */
        d.action = (snap->primary_known && snap->role == ROUTE_ROLE_REPLICA) ? ROUTE_FORWARD : ROUTE_LOCAL;
        return d;
    }
    if (snap->role == ROUTE_ROLE_REPLICA && snap->primary_known) {
        bool replay = rules->writes == ROUTE_WRITES_REPLAY &&
                      !(req->body_over_replay_max && snap->primary_addr_len > 0);
        d.action = replay ? ROUTE_REPLAY : ROUTE_FORWARD;
    } else {
        d.action = ROUTE_HOLD;
    }
    return d;
}
