/*
 * fuzz_parsers: the small string parsers an operator's flags and Consul's lease value go
 * through: --migrations (health_probe_parse), probe and --upstream-health URLs
 * (health_http_parse_url), advertise URLs (consul_url_host_port, consul_url_template),
 * --consul-addr (consul_http_conf_init, consul_http_url), KV keys (consul_escape_key), the
 * lease value's encoding (consul_lease_value_encode, read back with its decoder), durations
 * and booleans (proxy_config_parse_*, consul_duration_ms), and the --passthrough /
 * --always-primary globs (route_rules_add_glob, route_glob_match).
 *
 * Input: "<first line>\n<second line>"; the first line is given to every parser, the
 * second is the path a glob is matched against and the ID put into a URL template.
 */
#include "fuzz.h"

#include "consul/consul-int.h"
#include "health/health-int.h"
#include "proxy/proxy_config.h"
#include "routing/route.h"

static void probe(const char *s)
{
    struct health_probe_spec spec;
    char err[512];
    if (health_probe_parse(s, &spec, err, sizeof(err)) == 0) {
        FUZZ_CHECK(spec.kind < HEALTH_PROBE_KIND_COUNT, "kind");
        FUZZ_CHECK(spec.kind != HEALTH_PROBE_PRISMA || (spec.db && spec.dir && *spec.db && *spec.dir),
                   "prisma");
        FUZZ_CHECK(spec.kind == HEALTH_PROBE_NONE || spec.kind == HEALTH_PROBE_PRISMA ||
                       (spec.arg && *spec.arg),
                   "argument");
    } else {
        FUZZ_CHECK(memchr(err, '\0', sizeof(err)) && err[0], "refused without a message");
    }
    health_probe_spec_free(&spec);
}

static void http_url(const char *s)
{
    char host[256], path[1024];
    int port = 0;
    const char *why = NULL;
    if (health_http_parse_url(s, host, sizeof(host), &port, path, sizeof(path), &why) == 0) {
        FUZZ_CHECK(host[0] && port >= 1 && port <= 65535, "host %s port %d", host, port);
        FUZZ_CHECK(path[0] == '/' && !strchr(path, '#'), "path %s", path);
    } else {
        FUZZ_CHECK(why != NULL, "refused without a reason");
    }
}

static void advertise(const char *s, const char *id)
{
    char host[256], out[ROUTE_URL_MAX];
    int port = 0;
    if (consul_url_host_port(s, host, sizeof(host), &port) == 0)
        FUZZ_CHECK(host[0] && port >= 1 && port <= 65535, "host %s port %d", host, port);
    if (consul_url_template(s, id, out, sizeof(out)) == 0)
        FUZZ_CHECK(memchr(out, '\0', sizeof(out)), "template output not terminated");
}

static void consul_addr(const char *s)
{
    struct consul_http_conf conf;
    const char *err = NULL;
    if (consul_http_conf_init(&conf, s, &err) == 0) {
        FUZZ_CHECK(conf.base_url &&
                       (!strncmp(conf.base_url, "http://", 7) || !strncmp(conf.base_url, "https://", 8)),
                   "base URL %s", conf.base_url ? conf.base_url : "(null)");
        char *url = consul_http_url(&conf, "/v1/kv/leaseway/primary", "index=5&wait=300000ms");
        free(url);
        consul_http_conf_free(&conf);
    } else {
        FUZZ_CHECK(err != NULL, "refused without a reason");
    }
    char *key = consul_escape_key(s);
    FUZZ_CHECK(key, "out of memory");
    for (const char *p = key; *p; p++)
        FUZZ_CHECK(*p > 0x20 && *p < 0x7f && *p != '?' && *p != '#', "escaped key keeps 0x%02x", *p);
    free(key);
}

/* What we write as the lease value reads back as what we wrote (IDs are printable). */
static void lease_round_trip(const char *host, const char *url)
{
    char *v = consul_lease_value_encode(host, url);
    if (!v)
        return; /* not UTF-8: jansson refuses the string */
    struct consul_lease_value lv;
    const char *err = NULL;
    if (consul_lease_value_decode(v, strlen(v), &lv, &err) == 0) {
        FUZZ_CHECK(!strcmp(lv.hostname, host), "hostname %s read back as %s", host, lv.hostname);
        FUZZ_CHECK(!strcmp(lv.advertise_url, url), "advertise-url read back differently");
    }
    free(v);
}

static void durations(const char *s)
{
    int64_t ms = -7;
    bool b;
    if (proxy_config_parse_duration(s, &ms) == 0)
        FUZZ_CHECK(ms >= 0, "duration %s = %lld", s, (long long)ms);
    (void)proxy_config_parse_bool(s, &b);
    FUZZ_CHECK(consul_duration_ms(s) >= -1, "consul duration");
}

/*
 * route_path_normalize: never longer, a path stays a path, and a second pass changes nothing
 * when no '%' is left (with one, it may: "%%32e" is "%2e" after one decoding, and no more).
 */
static void path_normalize(const char *path)
{
    static char buf[ROUTE_PATH_MAX], again[ROUTE_PATH_MAX], copy[ROUTE_PATH_MAX];
    size_t len = strlen(path), n, n2;
    const char *out = route_path_normalize(path, len, buf, sizeof(buf), &n);
    if (!out) {
        FUZZ_CHECK(len > sizeof(buf), "refused a path that fits");
        return;
    }
    FUZZ_CHECK(n <= len, "normalized path longer than the input");
    if (len && (path[0] == '/' || path[0] == '\\'))
        FUZZ_CHECK(n >= 1 && out[0] == '/', "a path lost its leading '/'");
    if (memchr(out, '%', n))
        return;
    memcpy(copy, out, n);
    const char *out2 = route_path_normalize(copy, n, again, sizeof(again), &n2);
    FUZZ_CHECK(out2 && n2 == n && memcmp(out2, copy, n) == 0, "not idempotent: %.*s", (int)n, copy);
}

static void globs(const char *spec, const char *path)
{
    path_normalize(path);
    struct route_rules rules = {0};
    const char *err = NULL;
    if (route_rules_add_glob(&rules, spec[0] & 1, spec, &err) == 0) {
        const struct route_glob *g = rules.n_passthrough ? &rules.passthrough[0] : &rules.always_primary[0];
        (void)route_glob_match(g->pattern, path, strlen(path));
        FUZZ_CHECK(route_glob_match(g->pattern, g->pattern, strlen(g->pattern)), "%s does not match itself",
                   g->pattern);
        struct cluster_snapshot snap = {
            .role = ROUTE_ROLE_REPLICA, .gate = ROUTE_GATE_OPEN, .primary_known = true};
        struct route_request req = {
            .method = "POST", .method_len = 4, .path = path, .path_len = strlen(path)};
        (void)route_decide(&rules, &req, &snap, 1);
    } else {
        FUZZ_CHECK(err != NULL, "refused without a reason");
    }
    route_rules_free(&rules);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    FUZZ_CHECK(s, "out of memory");
    memcpy(s, data, size);
    s[size] = '\0';
    char *nl = strchr(s, '\n');
    const char *second = "";
    if (nl) {
        *nl = '\0';
        second = nl + 1;
    }
    probe(s);
    http_url(s);
    advertise(s, second);
    consul_addr(s);
    lease_round_trip(s, second);
    durations(s);
    globs(s, second);
    free(s);
    return 0;
}
