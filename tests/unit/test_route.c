/*
 * SPEC §2, row by row, in order: passthrough, gate, always-primary, method,
 * read, write on the primary, write on a replica (forward / replay), write
 * with no primary (hold), forwarded requests (421 / gate), fencing, and the
 * glob language.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "routing/route.h"

static struct route_rules rules;

static void setup(void)
{
    const char *err = NULL;
    memset(&rules, 0, sizeof(rules));
    cr_assert_eq(route_rules_add_glob(&rules, false, "/healthz", &err), 0);
    cr_assert_eq(route_rules_add_glob(&rules, false, "/static/*", &err), 0);
    cr_assert_eq(route_rules_add_glob(&rules, true, "GET /auth/*/callback", &err), 0);
    cr_assert_eq(route_rules_add_glob(&rules, true, "/ws/primary", &err), 0);
}

static void teardown(void)
{
    route_rules_free(&rules);
}

static struct cluster_snapshot snap(enum route_role role, enum route_gate gate, bool known)
{
    struct cluster_snapshot s;
    memset(&s, 0, sizeof(s));
    s.role = role;
    s.gate = gate;
    s.primary_known = known;
    strcpy(s.primary_id, known ? "p1" : "");
    return s;
}

static struct route_decision decide(const char *method, const char *path, const struct cluster_snapshot *s,
                                    bool from_peer, bool recent_write)
{
    struct route_request r = {method, strlen(method), path, strlen(path), from_peer, recent_write, false};
    return route_decide(&rules, &r, s, 1000);
}

struct row {
    const char *name;
    const char *method, *path;
    enum route_role role;
    enum route_gate gate;
    bool known, from_peer, recent_write;
    enum route_writes writes;
    enum route_action want;
    bool want_write;
};

#define P      ROUTE_ROLE_PRIMARY
#define R      ROUTE_ROLE_REPLICA
#define U      ROUTE_ROLE_UNKNOWN
#define OPEN   ROUTE_GATE_OPEN
#define CLOSED ROUTE_GATE_CLOSED
#define DRAIN  ROUTE_GATE_DRAINING
#define FWD    ROUTE_WRITES_FORWARD
#define RPL    ROUTE_WRITES_REPLAY

static const struct row table[] = {
    /* 1. passthrough wins over everything, even a closed gate and a write */
    {"passthrough, gate closed", "POST", "/healthz", R, CLOSED, true, false, false, FWD, ROUTE_PASSTHROUGH,
     false},
    {"passthrough glob", "GET", "/static/app.css", U, DRAIN, false, false, false, FWD, ROUTE_PASSTHROUGH,
     false},
    {"passthrough is anchored", "GET", "/x/healthz", P, OPEN, true, false, false, FWD, ROUTE_LOCAL, false},
    /* 2. gate closed: 503, before always-primary and method */
    {"gate closed read", "GET", "/", P, CLOSED, true, false, false, FWD, ROUTE_GATED, false},
    {"gate closed write", "POST", "/", R, CLOSED, true, false, false, FWD, ROUTE_GATED, true},
    /* draining: what is already on an open connection is still served; peers see it as closed */
    {"draining always-primary", "GET", "/auth/github/callback", R, DRAIN, true, false, false, FWD,
     ROUTE_FORWARD, true},
    {"draining primary, own client", "POST", "/", P, DRAIN, true, false, false, FWD, ROUTE_LOCAL, true},
    {"draining primary, peer's write", "POST", "/", P, DRAIN, true, true, false, FWD, ROUTE_GATED, true},
    /* 3. always-primary: a GET treated as a write */
    {"always-primary on replica", "GET", "/auth/github/callback", R, OPEN, true, false, false, FWD,
     ROUTE_FORWARD, true},
    {"always-primary method filter", "POST", "/auth/github/callback", R, OPEN, true, false, false, FWD,
     ROUTE_FORWARD, true},
    {"always-primary wrong method is a read", "HEAD", "/auth/github/callback", R, OPEN, true, false, false,
     FWD, ROUTE_LOCAL, false},
    {"always-primary on primary", "GET", "/ws/primary", P, OPEN, true, false, false, FWD, ROUTE_LOCAL, true},
    /* 4. methods */
    {"GET is a read", "GET", "/", R, OPEN, true, false, false, FWD, ROUTE_LOCAL, false},
    {"HEAD is a read", "HEAD", "/", R, OPEN, true, false, false, FWD, ROUTE_LOCAL, false},
    {"OPTIONS is a read", "OPTIONS", "/", R, OPEN, true, false, false, FWD, ROUTE_LOCAL, false},
    {"TRACE is a read", "TRACE", "/", R, OPEN, true, false, false, FWD, ROUTE_LOCAL, false},
    {"PUT is a write", "PUT", "/", R, OPEN, true, false, false, FWD, ROUTE_FORWARD, true},
    {"DELETE is a write", "DELETE", "/", R, OPEN, true, false, false, FWD, ROUTE_FORWARD, true},
    {"PATCH is a write", "PATCH", "/", R, OPEN, true, false, false, FWD, ROUTE_FORWARD, true},
    /* 5. reads: local, unless a fresh write cookie sends them to the primary */
    {"read with no primary known", "GET", "/", U, OPEN, false, false, false, FWD, ROUTE_LOCAL, false},
    {"read after a write, replica", "GET", "/", R, OPEN, true, false, true, FWD, ROUTE_FORWARD, false},
    {"read after a write, primary", "GET", "/", P, OPEN, true, false, true, FWD, ROUTE_LOCAL, false},
    {"read after a write, none known", "GET", "/", R, OPEN, false, false, true, FWD, ROUTE_LOCAL, false},
    /* 6. write on the primary */
    {"write on primary", "POST", "/", P, OPEN, true, false, false, FWD, ROUTE_LOCAL, true},
    /* 7. write on a replica with a known primary */
    {"write on replica, forward", "POST", "/", R, OPEN, true, false, false, FWD, ROUTE_FORWARD, true},
    {"write on replica, replay", "POST", "/", R, OPEN, true, false, false, RPL, ROUTE_REPLAY, true},
    /* 8. no primary known: hold */
    {"write, no primary", "POST", "/", R, OPEN, false, false, false, FWD, ROUTE_HOLD, true},
    {"write, role unknown", "POST", "/", U, OPEN, false, false, false, RPL, ROUTE_HOLD, true},
    /* 9. forwarded requests: only the primary's own app, never forwarded again */
    {"forwarded to primary", "POST", "/", P, OPEN, true, true, false, FWD, ROUTE_LOCAL, true},
    {"forwarded to a replica: 421", "POST", "/", R, OPEN, true, true, false, FWD, ROUTE_MISDIRECTED, true},
    {"forwarded, role unknown: 421", "POST", "/", U, OPEN, false, true, false, FWD, ROUTE_MISDIRECTED, true},
    {"forwarded to a gated primary: 503", "POST", "/", P, CLOSED, true, true, false, FWD, ROUTE_GATED, true},
    {"forwarded read after write", "GET", "/", P, OPEN, true, true, false, FWD, ROUTE_LOCAL, false},
};

TestSuite(route, .init = setup, .fini = teardown);

Test(route, spec_section_2_table)
{
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        const struct row *r = &table[i];
        struct cluster_snapshot s = snap(r->role, r->gate, r->known);
        rules.writes = r->writes;
        struct route_decision d = decide(r->method, r->path, &s, r->from_peer, r->recent_write);
        cr_expect_eq(d.action, r->want, "%s: got %s, want %s", r->name, route_action_str(d.action),
                     route_action_str(r->want));
        if (d.action != ROUTE_PASSTHROUGH)
            cr_expect_eq(d.is_write, r->want_write, "%s: is_write", r->name);
    }
}

Test(route, fenced_primary_holds_writes_but_serves_reads)
{
    struct cluster_snapshot s = snap(P, OPEN, true);
    s.fence_deadline_ms = 1000; /* now == 1000: the fence has just passed */
    cr_expect_eq(decide("POST", "/", &s, false, false).action, ROUTE_HOLD);
    cr_expect_eq(decide("GET", "/", &s, false, false).action, ROUTE_LOCAL);
    cr_expect_eq(decide("POST", "/", &s, true, false).action, ROUTE_MISDIRECTED);
    s.fence_deadline_ms = 1001;
    cr_expect_eq(decide("POST", "/", &s, false, false).action, ROUTE_LOCAL);
    s.fence_deadline_ms = 0; /* static lease: no fence */
    cr_expect_eq(decide("POST", "/", &s, false, false).action, ROUTE_LOCAL);
}

Test(route, replay_forwards_bodies_fly_cannot_replay)
{
    /* Fly's edge cannot replay a body over 1 MB: once the primary's proxy is resolved, it is forwarded */
    struct cluster_snapshot s = snap(R, OPEN, true);
    struct route_request big = {"POST", 4, "/upload", 7, false, false, true};
    struct route_request small = {"POST", 4, "/upload", 7, false, false, false};
    rules.writes = ROUTE_WRITES_REPLAY;
    cr_expect_eq(route_decide(&rules, &big, &s, 1000).action, ROUTE_REPLAY, "no address for the primary yet");
    s.primary_addr_len = 16; /* resolved */
    cr_expect_eq(route_decide(&rules, &big, &s, 1000).action, ROUTE_FORWARD);
    cr_expect_eq(route_decide(&rules, &small, &s, 1000).action, ROUTE_REPLAY);
    rules.writes = ROUTE_WRITES_FORWARD;
    cr_expect_eq(route_decide(&rules, &small, &s, 1000).action, ROUTE_FORWARD);
    /* no primary known: held as any write (a body over 1 MiB is refused by the proxy, not here) */
    s = snap(R, OPEN, false);
    rules.writes = ROUTE_WRITES_REPLAY;
    cr_expect_eq(route_decide(&rules, &big, &s, 1000).action, ROUTE_HOLD);
}

Test(route, glob_matching)
{
    cr_expect(route_glob_match("/a/*", "/a/b/c", 6));
    cr_expect(route_glob_match("/a/*", "/a/", 3));
    cr_expect(!route_glob_match("/a/*", "/a", 2));
    cr_expect(route_glob_match("*", "", 0));
    cr_expect(route_glob_match("/*/x/*", "/1/x/2", 6));
    cr_expect(!route_glob_match("/*/x/*", "/1/y/2", 6));
    cr_expect(route_glob_match("/a*b*c", "/aXXbYYc", 8));
    cr_expect(!route_glob_match("/a*b*c", "/aXXbYYcd", 9));
    cr_expect(route_glob_match("/exact", "/exact", 6));
    cr_expect(!route_glob_match("/exact", "/exactly", 8));
}

Test(route, bad_globs_are_rejected)
{
    struct route_rules r;
    const char *err = NULL;
    memset(&r, 0, sizeof(r));
    cr_expect_eq(route_rules_add_glob(&r, false, "relative/path", &err), -1);
    cr_expect_not_null(err);
    cr_expect_eq(route_rules_add_glob(&r, false, "post /x", &err), -1);
    cr_expect_eq(route_rules_add_glob(&r, false, "VERYLONGMETHODNAME /x", &err), -1);
    cr_expect_eq(route_rules_add_glob(&r, false, "DELETE /x/*", &err), 0);
    cr_expect_str_eq(r.passthrough[0].method, "DELETE");
    cr_expect_str_eq(r.passthrough[0].pattern, "/x/*");
    route_rules_free(&r);
}

/* route_path_normalize: what the app acts on (WHATWG URL, RFC 3986 §5.2.4), globs match that */
static const struct {
    const char *in, *want;
} norm_table[] = {
    /* nothing to do: returned as is (see path_normalize_copies_only_when_needed) */
    {"/", "/"},
    {"/build/app.js", "/build/app.js"},
    {"/a/.b/..c/c../.../x.", "/a/.b/..c/c../.../x."},
    {"*", "*"},
    {"", ""},
    /* dot-segments */
    {"/build/../write", "/write"},
    {"/build/./x", "/build/x"},
    {"/a/b/../../c", "/c"},
    {"/../../x", "/x"},
    {"/..", "/"},
    {"/.", "/"},
    {"/a/..", "/"},
    {"/a/.", "/a/"},
    {"/a/b/..", "/a/"},
    {"/a/b/../", "/a/"},
    {"/a/./b/./", "/a/b/"},
    /* percent-encoded unreserved characters are decoded, any case; nothing else is */
    {"/build/%2e%2e/write", "/write"},
    {"/build/%2E%2E/write", "/write"},
    {"/build/.%2e/write", "/write"},
    {"/build/%2e./write", "/write"},
    {"/build/%2e/x", "/build/x"},
    {"/%61uth/x%7e%5f%2d%30", "/auth/x~_-0"},
    {"/build/..%2fwrite", "/build/..%2fwrite"},
    {"/build/%2e%2e%2Fwrite", "/build/..%2Fwrite"},
    {"/a%20b/%25/%", "/a%20b/%25/%"},
    {"/a/%2", "/a/%2"},
    {"/a/%zz/%2e", "/a/%zz/"},
    {"/%252e%252e/x", "/%252e%252e/x"}, /* decoded once only */
    {"/%%32e/x", "/%2e/x"},
    /* backslash is a separator */
    {"/build\\..\\write", "/write"},
    {"/build/..\\write", "/write"},
    {"\\build\\x", "/build/x"},
    /* slashes merged (nginx merge_slashes), before dot-segments */
    {"/build//..//write", "/write"},
    {"//a///b//", "/a/b/"},
    {"/a/.//../b", "/b"},
    /* a fragment ends the path */
    {"/write#/../build/x", "/write"},
    {"/build/../x#y", "/x"},
    {"#", ""},
    /* not a path: left alone */
    {"*/../x", "*/../x"},
};

Test(route, path_normalize)
{
    char buf[ROUTE_PATH_MAX];
    for (size_t i = 0; i < sizeof(norm_table) / sizeof(norm_table[0]); i++) {
        const char *in = norm_table[i].in, *want = norm_table[i].want;
        size_t len = 12345;
        const char *got = route_path_normalize(in, strlen(in), buf, sizeof(buf), &len);
        cr_assert_not_null(got, "%s", in);
        cr_expect(len == strlen(want) && memcmp(got, want, len) == 0, "%s: got \"%.*s\", want \"%s\"", in,
                  (int)len, got, want);
        /* without a '%' left (one decoding only: "%%32e" is "%2e"), a second pass changes nothing */
        if (memchr(got, '%', len))
            continue;
        char again_buf[ROUTE_PATH_MAX];
        char copy[ROUTE_PATH_MAX];
        memcpy(copy, got, len);
        size_t len2;
        const char *again = route_path_normalize(copy, len, again_buf, sizeof(again_buf), &len2);
        cr_expect(len2 == len && memcmp(again, copy, len) == 0, "%s: normalizing \"%.*s\" again changed it",
                  in, (int)len, got);
        cr_expect(again == copy, "%s: \"%.*s\" copied again", in, (int)len, got);
    }
}

Test(route, path_normalize_copies_only_when_needed)
{
    char buf[16];
    size_t len;
    const char *plain = "/build/app.js?v=1";
    cr_expect_eq(route_path_normalize(plain, 13, buf, sizeof(buf), &len), plain, "no copy for a plain path");
    cr_expect_eq(len, 13);
    const char *frag = "/write#x";
    cr_expect_eq(route_path_normalize(frag, 8, buf, sizeof(buf), &len), frag, "a fragment only shortens it");
    cr_expect_eq(len, 6);
    cr_expect_eq(route_path_normalize("/a/../b", 7, buf, sizeof(buf), &len), buf);
    cr_expect_eq(len, 2);
    /* no room: NULL, and never a write past cap */
    cr_expect_null(route_path_normalize("/aaaaaaaaaaaaaaaaaaaa/../b", 26, buf, sizeof(buf), &len));
    char big[ROUTE_PATH_MAX];
    memset(big, 'a', sizeof(big));
    big[0] = '/';
    memcpy(big + sizeof(big) - 3, "/..", 3);
    char out[ROUTE_PATH_MAX];
    cr_expect_eq(route_path_normalize(big, sizeof(big), out, sizeof(out), &len), out, "8 KiB fits");
    cr_expect_eq(len, 1);
}

/* the globs of deploy/fly-leaseway.yml and SPEC's example, against what the app acts on */
Test(route, globs_match_the_normalized_path)
{
    struct cluster_snapshot s = snap(R, OPEN, true);
    /* passthrough "/static/<any>": a write that leaves /static/ is a write */
    cr_expect_eq(decide("POST", "/static/../write", &s, false, false).action, ROUTE_FORWARD);
    cr_expect_eq(decide("POST", "/static/%2e%2e/write", &s, false, false).action, ROUTE_FORWARD);
    cr_expect_eq(decide("POST", "/static//..//write", &s, false, false).action, ROUTE_FORWARD);
    cr_expect_eq(decide("POST", "/static/..\\write", &s, false, false).action, ROUTE_FORWARD);
    cr_expect_eq(decide("POST", "/static\\..\\write", &s, false, false).action, ROUTE_FORWARD);
    cr_expect_eq(decide("POST", "/static/./x", &s, false, false).action, ROUTE_PASSTHROUGH);
    cr_expect_eq(decide("POST", "/write/../static/x", &s, false, false).action, ROUTE_PASSTHROUGH);
    cr_expect_eq(decide("GET", "/healthz/.", &s, false, false).action, ROUTE_LOCAL,
                 "/healthz/ is not /healthz");
    cr_expect_eq(decide("GET", "/x/../healthz", &s, false, false).action, ROUTE_PASSTHROUGH);
    cr_expect_eq(decide("POST", "/static/..%2fwrite", &s, false, false).action, ROUTE_PASSTHROUGH,
                 "%%2f is not a separator");
    cr_expect_eq(decide("POST", "/write#/../static/x", &s, false, false).action, ROUTE_FORWARD);
    /* always-primary "GET /auth/<any>/callback" */
    cr_expect_eq(decide("GET", "/x/../auth/gh/callback", &s, false, false).action, ROUTE_FORWARD);
    cr_expect_eq(decide("GET", "/auth/gh/./callback", &s, false, false).action, ROUTE_FORWARD);
    cr_expect_eq(decide("GET", "/%61uth/gh/callback", &s, false, false).action, ROUTE_FORWARD);
    cr_expect_eq(decide("GET", "/auth\\gh\\callback", &s, false, false).action, ROUTE_FORWARD);
    cr_expect_eq(decide("GET", "/auth/gh/callback/..", &s, false, false).action, ROUTE_LOCAL);
}

/* "//host/path" is a host and a path to new URL(req.url, base): both readings count */
Test(route, network_path_has_two_readings)
{
    struct cluster_snapshot s = snap(R, OPEN, true);
    cr_expect_eq(decide("POST", "//static/write", &s, false, false).action, ROUTE_FORWARD,
                 "never passthrough");
    cr_expect_eq(decide("GET", "//static/x", &s, false, false).action, ROUTE_LOCAL);
    cr_expect_eq(decide("GET", "\\\\static/x", &s, false, false).action, ROUTE_LOCAL);
    cr_expect_eq(decide("GET", "//x/auth/gh/callback", &s, false, false).action, ROUTE_FORWARD);
    cr_expect_eq(decide("GET", "/\\x\\auth\\gh\\callback", &s, false, false).action, ROUTE_FORWARD);
    cr_expect_eq(decide("GET", "//auth/gh/callback", &s, false, false).action, ROUTE_FORWARD);
    cr_expect_eq(decide("GET", "//x/y/auth/gh/callback", &s, false, false).action, ROUTE_LOCAL);
    cr_expect_eq(decide("GET", "//x#/auth/gh/callback", &s, false, false).action, ROUTE_LOCAL);
}

/* a path longer than ROUTE_PATH_MAX that needs normalizing: not passthrough, always-primary */
Test(route, overlong_path_goes_to_the_primary)
{
    struct cluster_snapshot s = snap(R, OPEN, true);
    static char path[ROUTE_PATH_MAX + 16];
    memset(path, 'a', sizeof(path) - 1);
    memcpy(path, "/static/", 8);
    memcpy(path + sizeof(path) - 5, "/../", 4);
    cr_expect_eq(decide("POST", path, &s, false, false).action, ROUTE_FORWARD);
    cr_expect_eq(decide("GET", path, &s, false, false).action, ROUTE_FORWARD);
    path[sizeof(path) - 4] = 'a'; /* no dot-segment left: matched as it is */
    cr_expect_eq(decide("POST", path, &s, false, false).action, ROUTE_PASSTHROUGH);
}
