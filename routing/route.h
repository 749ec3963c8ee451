/*
 * Routing decisions (SPEC §2): request facts + cluster snapshot -> action.
 * Pure: no I/O, no allocation after route_rules_add_glob() at start-up.
 */
#ifndef LEASEWAY_ROUTE_H
#define LEASEWAY_ROUTE_H

#include "routing/route-t.h"

enum route_action {
    ROUTE_LOCAL = 0,   /* serve from the local app, headers stamped */
    ROUTE_PASSTHROUGH, /* local app, never gated, headers untouched */
    ROUTE_GATED,       /* 503 + Leaseway-Gate */
    ROUTE_FORWARD,     /* stream to the primary's proxy */
    ROUTE_REPLAY,      /* 409 + fly-replay */
    ROUTE_HOLD,        /* write with no usable primary: wait for one */
    ROUTE_MISDIRECTED, /* forwarded to us but we are not primary: 421 */
    ROUTE_ACTION_COUNT
};

/*
 * Fly's edge cannot replay a request whose body is over 1 MB. In replay mode such a write is
 * forwarded to the primary's proxy instead, when its address is known (SPEC §2 step 7).
 */
#define ROUTE_REPLAY_BODY_MAX 1000000

enum route_writes {
    ROUTE_WRITES_FORWARD = 0,
    ROUTE_WRITES_REPLAY,
};

struct route_glob {
    char method[16]; /* "" = any method */
    char *pattern;   /* owned; '*' matches any run of characters */
};

struct route_rules {
    struct route_glob *passthrough;
    size_t n_passthrough;
    struct route_glob *always_primary;
    size_t n_always_primary;
    enum route_writes writes;
};

struct route_request {
    const char *method; /* "GET", ... */
    size_t method_len;
    const char *path; /* path only, without the query */
    size_t path_len;
    bool from_peer;    /* forwarded by another leaseway (authenticated) */
    bool recent_write; /* carries a fresh leaseway_wrote cookie */
    /* declares a body over ROUTE_REPLAY_BODY_MAX, which Fly's edge cannot replay */
    bool body_over_replay_max;
};

struct route_decision {
    enum route_action action;
    bool is_write; /* method or always-primary says it writes */
};

/* Parse "GET /path/<glob>" or "/path/<glob>" into rules; returns 0, or -1 with *err set. */
__attribute__((warn_unused_result)) int route_rules_add_glob(struct route_rules *rules, bool always_primary,
                                                             const char *spec, const char **err);
void route_rules_free(struct route_rules *rules);

bool route_glob_match(const char *pattern, const char *s, size_t len);

/* The longest path route_decide() normalizes; the proxy answers 414 above this much target. */
#define ROUTE_PATH_MAX (8 * 1024)

/*
 * The path routing globs are matched against (SPEC §2): the one the app acts on. Apps parse the
 * request-target as a WHATWG URL (Node, Deno, Remix, Hono, Next, ...), and nginx matches its
 * locations on a normalized URI, so the raw path is not it: "/build/../write" is "/write".
 *   - the path ends at a '#' (a fragment to a URL parser; the query is cut off by the caller);
 *   - '\' is '/' (WHATWG URL, for http and https);
 *   - %XX of an unreserved character is decoded (RFC 3986 §2.3, §6.2.2.2: "%2e" is ".",
 *     "%61" is "a"); no other: "%2f" stays, it is not a separator to a URL parser either;
 *   - runs of '/' are one '/' (nginx merge_slashes);
 *   - "." and ".." segments are resolved (RFC 3986 §5.2.4), never above the root.
 * Only a path that starts with '/' (or '\') is normalized; "*" and the like are left as they are.
 * Returns `path` itself when nothing changes but the length (no copy: the common case), else
 * `buf` holding the normalized path; *out_len is its length. The result is never longer than
 * the input: cap >= len always suffices. NULL when it does not fit in cap.
 */
const char *route_path_normalize(const char *path, size_t len, char *buf, size_t cap, size_t *out_len);

/* The fence's clock: CLOCK_BOOTTIME in ms, as consul/ times the fence deadline (it counts the time a
 * suspended machine slept; CLOCK_MONOTONIC does not). */
int64_t route_fence_now_ms(void);

/* now_ms is route_fence_now_ms(), compared with the snapshot's fence. */
struct route_decision route_decide(const struct route_rules *rules, const struct route_request *req,
                                   const struct cluster_snapshot *snap, int64_t now_ms);

const char *route_action_str(enum route_action action);

#endif
