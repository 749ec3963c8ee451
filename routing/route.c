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

static bool globs_match(const struct route_glob *globs, size_t n, const struct route_request *req,
                        const char *path, size_t path_len)
{
    for (size_t i = 0; i < n; i++) {
        const struct route_glob *g = &globs[i];
        if (g->method[0] &&
            (strlen(g->method) != req->method_len || memcmp(g->method, req->method, req->method_len) != 0))
            continue;
        if (route_glob_match(g->pattern, path, path_len))
            return true;
    }
    return false;
}

static bool is_sep(char ch)
{
    return ch == '/' || ch == '\\';
}

static int hex_val(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* RFC 3986 §2.3 */
static bool is_unreserved(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
           ch == '.' || ch == '_' || ch == '~';
}

/* Nothing for route_path_normalize() to change in p[0, len) (which starts with a separator, has no '#')? */
static bool path_is_normal(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        switch (p[i]) {
        case '%':
        case '\\': return false;
        case '/':
            if (i + 1 < len && p[i + 1] == '/')
                return false;
            break;
        case '.':
            if (p[i - 1] == '/') { /* i > 0: p[0] is '/' */
                size_t j = i + 1 < len && p[i + 1] == '.' ? i + 2 : i + 1;
                if (j == len || p[j] == '/')
                    return false;
            }
            break;
        default: break;
        }
    }
    return true;
}

/*
 * b[0, o) starts with '/' and ends with a whole segment: drop it if it is ".", and it and the
 * one before if it is ".." (RFC 3986 §5.2.4 steps 2B-2D; ".." at the root stays at the root).
 * Returns the new length, which keeps the '/' that preceded what was dropped.
 */
static size_t resolve_dots(const char *b, size_t o)
{
    size_t s = o;
    while (b[s - 1] != '/')
        s--;
    if (o - s == 1 && b[s] == '.')
        return s;
    if (o - s == 2 && b[s] == '.' && b[s + 1] == '.') {
        if (s == 1)
            return 1;
        s--;
        while (b[s - 1] != '/')
            s--;
        return s;
    }
    return o;
}

const char *route_path_normalize(const char *path, size_t len, char *buf, size_t cap, size_t *out_len)
{
    const char *frag = memchr(path, '#', len);
    if (frag)
        len = (size_t)(frag - path);
    if (len == 0 || !is_sep(path[0]) || path_is_normal(path, len)) {
        *out_len = len;
        return path;
    }
    if (cap < len)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = path[i];
        if (ch == '\\') {
            ch = '/';
        } else if (ch == '%' && i + 2 < len && hex_val(path[i + 1]) >= 0 && hex_val(path[i + 2]) >= 0) {
            unsigned char dec = (unsigned char)(hex_val(path[i + 1]) << 4 | hex_val(path[i + 2]));
            if (is_unreserved(dec)) {
                ch = (char)dec;
                i += 2;
            }
        }
        if (ch == '/' && o > 0) {
            o = resolve_dots(buf, o);
            if (buf[o - 1] == '/')
                continue; /* merged */
        }
        buf[o++] = ch;
    }
    *out_len = resolve_dots(buf, o);
    return buf;
}

/*
 * "//host/path" (either '/' may be a '\\'): a network-path reference to a URL parser given a base, as in
 * new URL(req.url, "http://app") (host "host", path "/path"), and a path to one given the whole
 * URL. Sets the second reading's path ("/" when it has none).
 */
static bool network_path(const char *p, size_t len, const char **rest, size_t *rest_len)
{
    if (len < 2 || !is_sep(p[0]) || !is_sep(p[1]))
        return false;
    size_t i = 2;
    while (i < len && !is_sep(p[i]) && p[i] != '#')
        i++;
    if (i < len && is_sep(p[i])) {
        *rest = p + i;
        *rest_len = len - i;
    } else {
        *rest = "/";
        *rest_len = 1;
    }
    return true;
}

/*
 * Globs match the path the app acts on (route_path_normalize). A path with two readings
 * (network_path) is never passthrough, and is always-primary if either reading is.
 */
static void match_globs(const struct route_rules *rules, const struct route_request *req, bool *passthrough,
                        bool *always_primary)
{
    *passthrough = *always_primary = false;
    if (!rules->n_passthrough && !rules->n_always_primary)
        return;
    char buf[ROUTE_PATH_MAX];
    size_t len;
    const char *path = route_path_normalize(req->path, req->path_len, buf, sizeof(buf), &len);
    if (!path) {
        /* longer than the proxy lets through (414): not passthrough, and to the primary */
        *always_primary = rules->n_always_primary > 0;
        return;
    }
    const char *rest;
    size_t rest_len;
    bool two = network_path(req->path, req->path_len, &rest, &rest_len);
    *passthrough = !two && globs_match(rules->passthrough, rules->n_passthrough, req, path, len);
    if (*passthrough)
        return;
    *always_primary = globs_match(rules->always_primary, rules->n_always_primary, req, path, len);
    if (!*always_primary && two) {
        path = route_path_normalize(rest, rest_len, buf, sizeof(buf), &len);
        *always_primary = path && globs_match(rules->always_primary, rules->n_always_primary, req, path, len);
    }
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

    bool passthrough, always_primary;
    match_globs(rules, req, &passthrough, &always_primary);
    if (passthrough) {
        d.action = ROUTE_PASSTHROUGH;
        return d;
    }
    d.is_write = always_primary || !method_is_read(req->method, req->method_len);

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
