/*
 * Settings: defaults < YAML file < LEASEWAY_* environment < flags (SPEC §1).
 *
 * One table lists every option once; flag parsing, the environment, the YAML
 * file, --help and --check all walk it. Values are validated here so that a
 * bad setting stops start-up with a message naming where it came from.
 */
#include "proxy/proxy_config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "proxy/proxy_log.h"
#include "routing/route-t.h"
#include "routing/route.h"

enum opt_type { OPT_STR, OPT_BOOL, OPT_DUR, OPT_INT, OPT_LIST };

struct opt {
    const char *name;
    enum opt_type type;
    size_t off;
    const char *def; /* NULL: no default (or computed in finish()) */
    const char *metavar;
    const char *help;
    bool secret;
};

#define O(f) offsetof(struct proxy_config, f)

static const struct opt opts[] = {
    {"config", OPT_STR, O(config_file), NULL, "FILE",
     "YAML file with any of these settings (keys as the flags)", 0},
    {"listen", OPT_STR, O(listen), "0.0.0.0:8080", "ADDR", "public HTTP listener, host:port", 0},
    {"target", OPT_STR, O(target), NULL, "HOST:PORT", "local app (required)", 0},
    {"admin", OPT_STR, O(admin), "127.0.0.1:9901", "ADDR",
     "admin listener (status page, /status, /cluster, /health, /metrics, POST /handoff); \"off\" disables",
     0},
    {"instance", OPT_STR, O(instance), NULL, "ID",
     "this instance's ID (default: $FLY_MACHINE_ID, else hostname)", 0},
    {"region", OPT_STR, O(region), NULL, "REGION",
     "region shown in headers and status (default: $FLY_REGION)", 0},
    {"advertise", OPT_STR, O(advertise), NULL, "URL",
     "URL other proxies use to reach this one (default: http://<hostname>:<listen port>)", 0},
    {"workers", OPT_INT, O(workers), "0", "N", "event-loop threads sharing the listener (0: number of cores)",
     0},
    {"lease", OPT_STR, O(lease), NULL, "MODE",
     "lease backend: consul or static (default: consul if --lease-key is set)", 0},
    {"lease-key", OPT_STR, O(lease_key), NULL, "KEY", "Consul KV key of the primary lease", 0},
    {"candidate", OPT_BOOL, O(candidate), NULL, "BOOL",
     "may this instance become primary (default: true unless $PRIMARY_REGION differs from $FLY_REGION)", 0},
    {"lease-ttl", OPT_DUR, O(lease_ttl_ms), "10s", "DUR", "Consul session TTL", 0},
    {"lock-delay", OPT_DUR, O(lock_delay_ms), "1s", "DUR",
     "Consul session lock-delay, 1s to 60s (a renew keeps the fence open this long)", 0},
    {"static-primary", OPT_STR, O(static_primary), NULL, "ID=URL",
     "with --lease static: a fixed primary (default: self)", 0},
    {"peer-url-template", OPT_STR, O(peer_url_template), NULL, "TEMPLATE",
     "proxy URL for a primary named in a lease written by others, e.g. http://{id}.vm.app.internal:8080", 0},
    {"consul-addr", OPT_STR, O(consul_addr), NULL, "URL",
     "Consul HTTP API (default: $CONSUL_HTTP_ADDR, else http://127.0.0.1:8500)", 0},
    {"service", OPT_STR, O(service), NULL, "NAME",
     "Consul service name to register (default: $FLY_APP_NAME, else leaseway)", 0},
    {"register", OPT_BOOL, O(register_service), NULL, "BOOL",
     "register the service and its checks (default: true with the consul lease)", 0},
    {"writes", OPT_STR, O(writes), "forward", "MODE",
     "writes on a replica: forward (proxy to the primary) or replay (fly-replay; bodies over 1 MB forwarded)",
     0},
    {"passthrough", OPT_LIST, O(passthrough), NULL, "GLOB",
     "repeatable: always local, never gated, headers untouched", 0},
    {"always-primary", OPT_LIST, O(always_primary), NULL, "GLOB",
     "repeatable: always routed to the primary (GETs that write)", 0},
    {"hold-timeout", OPT_DUR, O(hold_timeout_ms), "5s", "DUR",
     "how long a write waits for a primary to appear", 0},
    {"consistency-window", OPT_DUR, O(consistency_window_ms), "0", "DUR",
     "after a write, that client's reads go to the primary this long (0: off)", 0},
    {"litefs-db", OPT_LIST, O(litefs_db), NULL, "PATH",
     "repeatable: database on a LiteFS mount for __txid read-your-writes", 0},
    {"txid-wait", OPT_DUR, O(txid_wait_ms), "5s", "DUR",
     "how long a replica read waits to catch up before going to the primary", 0},
    {"peer-secret-file", OPT_STR, O(peer_secret_file), NULL, "FILE",
     "shared secret authenticating forwarded requests between proxies", 0},
    {"migrations", OPT_STR, O(migrations), "none", "PROBE",
     "migration gate: none, prisma:<db>:<dir>, command:<cmd>, http:<url>", 0},
    {"migrate-command", OPT_STR, O(migrate_command), NULL, "CMD",
     "run by the lease holder before its gate opens", 0},
    {"upstream-health", OPT_STR, O(upstream_health), NULL, "PATH",
     "app health path, checked every second; the gate stays closed until it answers 2xx, then closes after 3 "
     "failed checks in a row and reopens after 2 good ones (HAProxy's fall 3, rise 2)",
     0},
    {"drain-timeout", OPT_DUR, O(drain_timeout_ms), "30s", "DUR", "graceful shutdown budget", 0},
    {"log-format", OPT_STR, O(log_format), "text", "FORMAT", "text (logfmt) or json", 0},
    {"log-level", OPT_STR, O(log_level), "info", "LEVEL", "debug, info, warn or error", 0},
    {"access-log", OPT_STR, O(access_log), "off", "WHERE",
     "one line per request (format of --log-format, query strings dropped): off, stderr, stdout or a file",
     0},
    {"header-timeout", OPT_DUR, O(header_timeout_ms), "10s", "DUR",
     "time allowed to receive a request's headers (408 after)", 0},
    {"idle-timeout", OPT_DUR, O(idle_timeout_ms), "60s", "DUR",
     "idle keep-alive connections are closed after this", 0},
    {"connect-timeout", OPT_DUR, O(connect_timeout_ms), "5s", "DUR",
     "connecting to the app or a peer (504 after); a bodyless request the app refuses is retried "
     "every 100 ms for this long (502 after)",
     0},
    {"upstream-timeout", OPT_DUR, O(upstream_timeout_ms), "60s", "DUR",
     "silence allowed while waiting on the app (504 after)", 0},
    {"max-connections", OPT_INT, O(max_connections), "100000", "N",
     "client connections per worker; more are refused", 0},
    {"io-uring", OPT_BOOL, O(io_uring), "true", "BOOL",
     "send what each event-loop pass completed in one io_uring system call (one send per socket where the "
     "kernel refuses io_uring, or with --no-io-uring)",
     0},
    {"check", OPT_BOOL, O(check), "false", "BOOL",
     "run every start-up check (target resolves, files readable, probes, Consul settings), print the "
     "configuration (secrets redacted) and exit; nothing is started",
     0},
};
#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

_Static_assert(N_OPTS <= 64, "grow proxy_config.source");

static void err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("leaseway: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/*
 * Go's time.ParseDuration grammar without the sign: one or more "number unit" pairs, a number
 * being decimal digits with an optional fraction ("1.5", ".5", "5."), a unit one of ns, us, µs
 * (U+00B5 or U+03BC), ms, s, m, h; or "0" alone. Nothing strtod() would also read: no sign,
 * exponent, hex, "inf" or "nan". Counted in nanoseconds like Go (at most ~292 years), then
 * rounded to the nearest millisecond: a nonzero value under 0.5ms is PROXY_CONFIG_DUR_UNDER_1MS
 * rather than a silent 0, which for --consistency-window means off.
 */
int proxy_config_parse_duration(const char *s, int64_t *ms)
{
    static const struct {
        const char *name;
        uint64_t ns;
    } units[] = {{"ns", 1},       {"us", 1000},         {"\xc2\xb5s", 1000},   {"\xce\xbcs", 1000},
                 {"ms", 1000000}, {"s", 1000000000ull}, {"m", 60000000000ull}, {"h", 3600000000000ull}};
    if (!s || !*s)
        return -1;
    if (strcmp(s, "0") == 0) {
        *ms = 0;
        return 0;
    }
    uint64_t total = 0;
    const char *p = s;
    while (*p) {
        uint64_t whole = 0, frac = 0;
        double scale = 1;
        bool digits = false;
        for (; *p >= '0' && *p <= '9'; p++, digits = true) {
            if (whole > (UINT64_MAX - 9) / 10)
                return -1;
            whole = whole * 10 + (uint64_t)(*p - '0');
        }
        if (*p == '.') {
            /* digits past what 64 bits hold are dropped, as Go does */
            bool overflow = false;
            for (p++; *p >= '0' && *p <= '9'; p++, digits = true) {
                if (overflow || frac > (UINT64_MAX - 9) / 10 || scale > 1e18) {
                    overflow = true;
                    continue;
                }
                frac = frac * 10 + (uint64_t)(*p - '0');
                scale *= 10;
            }
        }
        if (!digits)
            return -1;
        size_t u = 0, ulen = 0;
        for (size_t k = 0; k < sizeof(units) / sizeof(units[0]); k++) {
            size_t n = strlen(units[k].name);
            if (strncmp(p, units[k].name, n) == 0 && n > ulen) {
                u = k;
                ulen = n;
            }
        }
        if (ulen == 0)
            return -1;
        p += ulen;
        uint64_t unit = units[u].ns;
        if (whole > (uint64_t)INT64_MAX / unit)
            return -1;
        uint64_t v = whole * unit + (uint64_t)((double)frac * ((double)unit / scale));
        if (v > (uint64_t)INT64_MAX || total > (uint64_t)INT64_MAX - v)
            return -1;
        total += v;
    }
    if (total > 0 && total < 500000)
        return PROXY_CONFIG_DUR_UNDER_1MS;
    *ms = (int64_t)((total + 500000) / 1000000);
    return 0;
}

int proxy_config_parse_port(const char *s)
{
    /* the whole string, digits only (no sign, space or "0x"), leading zeros allowed: "08080" */
    long port = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        port = port * 10 + (*s - '0');
        if (port > 65535)
            return -1;
    }
    return port >= 1 ? (int)port : -1;
}

int proxy_config_parse_bool(const char *s, bool *out)
{
    if (!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes") || !strcasecmp(s, "on")) {
        *out = true;
        return 0;
    }
    if (!strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no") || !strcasecmp(s, "off")) {
        *out = false;
        return 0;
    }
    return -1;
}

static void strlist_clear(struct strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int strlist_add(struct strlist *l, const char *s)
{
    char **grown = realloc(l->v, (l->n + 1) * sizeof(*l->v));
    if (!grown)
        return -1;
    l->v = grown;
    if (!(l->v[l->n] = strdup(s)))
        return -1;
    l->n++;
    return 0;
}

/*
 * Store one value. `where` names the origin for error messages ("--listen",
 * "LEASEWAY_LISTEN", "leaseway.yml:4"). A list value from a new source
 * replaces the list from a lower one; repeats within a source append.
 */
static int set_value(struct proxy_config *cfg, size_t i, const char *val, enum config_source src,
                     const char *where)
{
    const struct opt *o = &opts[i];
    void *field = (char *)cfg + o->off;
    switch (o->type) {
    case OPT_STR: {
        char **p = field;
        char *dup = strdup(val);
        if (!dup)
            return -1;
        free(*p);
        *p = dup;
        break;
    }
    case OPT_BOOL:
        if (proxy_config_parse_bool(val, field) < 0) {
            err("%s: expected true or false, got \"%s\"", where, val);
            return -1;
        }
        break;
    case OPT_DUR: {
        int rc = proxy_config_parse_duration(val, field);
        if (rc == PROXY_CONFIG_DUR_UNDER_1MS) {
            err("%s \"%s\": under 1ms, which would round to 0; durations are whole milliseconds", where, val);
            return -1;
        }
        if (rc < 0) {
            err("%s: expected a duration such as 500ms, 5s or 1m, got \"%s\"", where, val);
            return -1;
        }
        break;
    }
    case OPT_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (errno || end == val || *end || v < 0) {
            err("%s: expected a whole number >= 0, got \"%s\"", where, val);
            return -1;
        }
        *(int64_t *)field = v;
        break;
    }
    case OPT_LIST: {
        struct strlist *l = field;
        if (cfg->source[i] != src)
            strlist_clear(l);
        if (strlist_add(l, val) < 0)
            return -1;
        break;
    }
    }
    cfg->source[i] = src;
    return 0;
}

static int find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

static void env_name(const struct opt *o, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "LEASEWAY_");
    for (const char *p = o->name; *p && n + 1 < size; p++)
        buf[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    buf[n] = '\0';
}

/* Expand ${VAR} (and $VAR) from the environment, as litefs.yml does. */
static char *expand_env(const char *s)
{
    size_t cap = strlen(s) + 64, n = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (const char *p = s; *p;) {
        const char *val = NULL;
        size_t vlen = 0;
        /* ${NAME} (a name of any length), or $NAME up to its last letter, digit or _ */
        const char *name = NULL;
        size_t nlen = 0, skip = 0;
        if (p[0] == '$' && p[1] == '{') {
            const char *close = strchr(p + 2, '}');
            if (close) {
                name = p + 2;
                nlen = (size_t)(close - name);
                skip = nlen + 3;
            }
        } else if (p[0] == '$' && (isalpha((unsigned char)p[1]) || p[1] == '_')) {
            name = p + 1;
            while (isalnum((unsigned char)name[nlen]) || name[nlen] == '_')
                nlen++;
            skip = nlen + 1;
        }
        if (name) { /* a '$' before anything else stays */
            char *key = strndup(name, nlen);
            if (!key) {
                free(out);
                return NULL;
            }
            val = getenv(key);
            free(key);
            val = val ? val : "";
            vlen = strlen(val);
            p += skip;
        }
        if (!val) {
            val = p++;
            vlen = 1;
        }
        if (n + vlen + 1 > cap) {
            cap = (n + vlen + 1) * 2;
            char *grown = realloc(out, cap);
            if (!grown) {
                free(out);
                return NULL;
            }
            out = grown;
        }
        memcpy(out + n, val, vlen);
        n += vlen;
    }
    out[n] = '\0';
    return out;
}

static int check_opt(const struct proxy_config *cfg, size_t i, const char *what);
static void fmt_duration(int64_t ms, char *buf, size_t size);

/* A plain scalar that YAML reads as null: "key:", "key: ~", "key: null" (quoted, they are text). */
static bool yaml_null(const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    return ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (!*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL"));
}

/*
 * Store the file's value of key, or, when the environment or a flag overrides it, check it all
 * the same: the file must be valid without them.
 */
static int yaml_set(struct proxy_config *cfg, const char *path, const char *key, yaml_event_t *ev)
{
    char where[512], what[640];
    snprintf(where, sizeof(where), "%s:%zu", path, ev->start_mark.line + 1);
    int i = find_opt(key, strlen(key));
    if (i < 0 || strcmp(key, "config") == 0) {
        err("%s: unknown key \"%s\" (see leaseway run --help for the keys)", where, key);
        return -1;
    }
    if (yaml_null(ev)) {
        err("%s: %s: a value is required, got %s (quote it for the text itself)", where, key,
            *ev->data.scalar.value ? (const char *)ev->data.scalar.value : "nothing");
        return -1;
    }
    char *val = expand_env((const char *)ev->data.scalar.value);
    if (!val)
        return -1;
    snprintf(what, sizeof(what), "%s: %s", where, key);
    struct proxy_config scratch = {0};
    struct proxy_config *into = cfg->source[i] > SRC_FILE ? &scratch : cfg;
    int rc = set_value(into, (size_t)i, val, SRC_FILE, where);
    if (rc == 0)
        rc = check_opt(into, (size_t)i, what);
    proxy_config_free(&scratch);
    free(val);
    return rc;
}

static void yaml_syntax_error(const char *path, const yaml_parser_t *parser)
{
    if (parser->context)
        err("%s:%zu: %s (%s on line %zu)", path, parser->problem_mark.line + 1,
            parser->problem ? parser->problem : "bad YAML", parser->context, parser->context_mark.line + 1);
    else
        err("%s:%zu: %s", path, parser->problem_mark.line + 1,
            parser->problem ? parser->problem : "bad YAML");
}

/*
 * The whole file is parsed once for its syntax alone: libyaml hands out the events before the
 * one it cannot parse, so "hold-timeout: [5s" would otherwise be refused for its list (or an
 * earlier bad value reported) rather than for the syntax error.
 */
static int yaml_syntax_ok(const char *path, const char *text, size_t len)
{
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = 0, seqs = 0;
    char last[16] = "", addr_key[16] = ""; /* an address key whose value is a list: "listen: [::]:8080" */
    size_t addr_line = 0;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            if (*addr_key)
                err("%s:%zu: %s: quote an IPv6 address, e.g. %s: \"[::]:8080\" (unquoted, [...] is a YAML "
                    "list)",
                    path, addr_line, addr_key, addr_key);
            else
                yaml_syntax_error(path, &parser);
            rc = -1;
            break;
        }
        yaml_event_type_t t = ev.type;
        if (t == YAML_SCALAR_EVENT)
            snprintf(last, sizeof(last), "%s", (const char *)ev.data.scalar.value);
        else if (t == YAML_SEQUENCE_START_EVENT && seqs++ == 0 &&
                 (!strcmp(last, "listen") || !strcmp(last, "admin") || !strcmp(last, "target"))) {
            snprintf(addr_key, sizeof(addr_key), "%s", last);
            addr_line = ev.start_mark.line + 1;
        } else if (t == YAML_SEQUENCE_END_EVENT && --seqs == 0) {
            *addr_key = '\0';
        }
        yaml_event_delete(&ev);
        if (t == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&parser);
    return rc;
}

/* A flat mapping of option name -> scalar, or -> sequence of scalars for lists. */
static int load_yaml(struct proxy_config *cfg, const char *path)
{
    /* read whole, as it is parsed twice: a pipe (--config <(...), /dev/stdin) cannot be rewound */
    FILE *f = fopen(path, "r");
    if (!f) {
        err("--config %s: %s", path, strerror(errno));
        return -1;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    char chunk[8192];
    size_t got;
    while (mem && (got = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (fwrite(chunk, 1, got, mem) != got)
            break;
    bool read_error = ferror(f) != 0;
    int read_errno = errno;
    fclose(f);
    if (!mem || fclose(mem) != 0 || read_error) {
        err("--config %s: %s", path, read_error ? strerror(read_errno) : "out of memory");
        free(text);
        return -1;
    }
    if (yaml_syntax_ok(path, text, len) < 0) {
        free(text);
        return -1;
    }
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = -1, depth = 0;
    char key[128] = "";
    size_t key_line[N_OPTS] = {0}; /* where each key was first seen, for duplicates */
    bool in_seq = false, have_key = false;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            yaml_syntax_error(path, &parser);
            goto out;
        }
        yaml_event_type_t t = ev.type;
        int bad = 0;
        switch (t) {
        case YAML_MAPPING_START_EVENT:
            if (++depth > 1) {
                err("%s:%zu: \"%s\" takes a value, not a mapping", path, ev.start_mark.line + 1, key);
                bad = 1;
            }
            break;
        case YAML_MAPPING_END_EVENT: depth--; break;
        case YAML_SEQUENCE_START_EVENT: {
            int i = have_key ? find_opt(key, strlen(key)) : -1;
            bool addr =
                i >= 0 && (opts[i].off == O(listen) || opts[i].off == O(admin) || opts[i].off == O(target));
            if (have_key && !in_seq && addr) {
                /* listen: [::]:8080 reads as a list ("[::]") and then ":8080" */
                err("%s:%zu: %s: quote an IPv6 address, e.g. %s: \"[::]:8080\" (unquoted, [...] is a YAML "
                    "list)",
                    path, ev.start_mark.line + 1, key, key);
                bad = 1;
            } else if (in_seq && i >= 0 && opts[i].type == OPT_LIST) {
                err("%s:%zu: %s: each item is a string, not a list", path, ev.start_mark.line + 1, key);
                bad = 1;
            } else if (!have_key || in_seq || i < 0 || opts[i].type != OPT_LIST) {
                err("%s:%zu: a list is only allowed for passthrough, always-primary and litefs-db", path,
                    ev.start_mark.line + 1);
                bad = 1;
            }
            in_seq = true;
            break;
        }
        case YAML_SEQUENCE_END_EVENT:
            in_seq = false;
            have_key = false;
            break;
        case YAML_SCALAR_EVENT:
            if (depth != 1) {
                err("%s:%zu: expected a mapping of settings", path, ev.start_mark.line + 1);
                bad = 1;
            } else if (in_seq || have_key) {
                bad = yaml_set(cfg, path, key, &ev) < 0;
                if (!in_seq)
                    have_key = false;
            } else {
                snprintf(key, sizeof(key), "%s", (const char *)ev.data.scalar.value);
                have_key = true;
                /* nginx refuses a duplicated directive: the last one winning hides a mistake */
                int i = find_opt(key, strlen(key));
                if (i >= 0 && key_line[i]) {
                    err("%s:%zu: duplicate key \"%s\" (first on line %zu)", path, ev.start_mark.line + 1, key,
                        key_line[i]);
                    bad = 1;
                } else if (i >= 0) {
                    key_line[i] = ev.start_mark.line + 1;
                }
            }
            break;
        case YAML_ALIAS_EVENT:
            err("%s:%zu: YAML aliases are not supported", path, ev.start_mark.line + 1);
            bad = 1;
            break;
        default: break;
        }
        yaml_event_delete(&ev);
        if (bad)
            goto out;
        if (t == YAML_STREAM_END_EVENT)
            break;
    }
    rc = 0;
out:
    yaml_parser_delete(&parser);
    free(text);
    return rc;
}

static int load_env(struct proxy_config *cfg)
{
    char name[96];
    for (size_t i = 0; i < N_OPTS; i++) {
        /* LEASEWAY_CONFIG was read before (proxy_config_load()), only when --config was not given */
        if (opts[i].off == O(config_file))
            continue;
        env_name(&opts[i], name, sizeof(name));
        /* empty is unset, for every type: compose's LEASEWAY_TARGET=${APP_ADDR} with APP_ADDR unset */
        const char *v = getenv(name);
        if (!v || !*v)
            continue;
        if (opts[i].type == OPT_LIST) {
            /* comma-separated in the environment */
            char *copy = strdup(v), *save = NULL;
            if (!copy)
                return -1;
            for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                /* "/a/x , /b": blanks on both sides of a comma are not the item's */
                while (*tok == ' ' || *tok == '\t')
                    tok++;
                for (size_t len = strlen(tok); len && (tok[len - 1] == ' ' || tok[len - 1] == '\t'); len--)
                    tok[len - 1] = '\0';
                if (*tok && set_value(cfg, i, tok, SRC_ENV, name) < 0) {
                    free(copy);
                    return -1;
                }
            }
            free(copy);
        } else if (set_value(cfg, i, v, SRC_ENV, name) < 0) {
            return -1;
        }
    }
    return 0;
}

static int load_flags(struct proxy_config *cfg, int argc, char **argv, bool config_only)
{
    for (int a = 0; a < argc; a++) {
        const char *arg = argv[a];
        if (strcmp(arg, "--") == 0) {
            if (!config_only) {
                cfg->app_argv = argv + a + 1;
                cfg->app_argc = argc - a - 1;
            }
            return 0;
        }
        if (strncmp(arg, "--", 2) != 0) {
            err("unexpected argument \"%s\" (flags start with --; the app command goes after --)", arg);
            return -1;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        int i = find_opt(name, nlen);
        bool negated = false;
        if (i < 0 && nlen > 3 && strncmp(name, "no-", 3) == 0) {
            i = find_opt(name + 3, nlen - 3);
            negated = i >= 0 && opts[i].type == OPT_BOOL && !eq;
            if (!negated)
                i = -1;
        }
        if (i < 0) {
            err("unknown flag --%.*s (see leaseway run --help)", (int)nlen, name);
            return -1;
        }
        const char *val;
        if (eq) {
            val = eq + 1;
        } else if (opts[i].type == OPT_BOOL) {
            val = negated ? "false" : "true";
            /* --help shows "--candidate BOOL": take a following true/false as its value */
            if (!negated && a + 1 < argc && (!strcmp(argv[a + 1], "true") || !strcmp(argv[a + 1], "false")))
                val = argv[++a];
        } else if (a + 1 < argc) {
            val = argv[++a];
        } else {
            err("--%s needs a value (%s)", opts[i].name, opts[i].metavar);
            return -1;
        }
        bool want = strcmp(opts[i].name, "config") == 0;
        if (want != config_only)
            continue;
        char where[96];
        snprintf(where, sizeof(where), "--%s", opts[i].name);
        if (set_value(cfg, (size_t)i, val, SRC_FLAG, where) < 0)
            return -1;
    }
    return 0;
}

static int dup_default(char **field, const char *v)
{
    if (*field)
        return 0;
    return (*field = strdup(v)) ? 0 : -1;
}

/* the port of "host:port" (proxy_config_parse_port()), or -1 */
static int port_of(const char *hostport)
{
    const char *c = strrchr(hostport, ':');
    return c ? proxy_config_parse_port(c + 1) : -1;
}

/*
 * Instance IDs and regions go into response headers, fly-replay, Consul and the log: like the
 * IDs leaseway accepts from Consul, visible ASCII without spaces, and under ROUTE_ID_MAX (128).
 */
static bool id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 127)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e || *s == ',' || *s == ';')
            return false;
    return true;
}

/*
 * --advertise travels in the lease value, which the other instances decode with
 * consul_lease_value_decode(): visible ASCII (JSON needs UTF-8, a header needs no control byte
 * or space) and under ROUTE_URL_MAX bytes, or they cannot find this primary's proxy.
 */
static bool advertise_ok(const char *s)
{
    if (strncmp(s, "http://", 7) && strncmp(s, "https://", 8))
        return false;
    size_t n = strlen(s);
    if (n >= ROUTE_URL_MAX)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

/*
 * A request-target as leaseway sends it (GET <path> HTTP/1.1): visible ASCII, no space. A space, CR,
 * LF or other control byte would split the request line or add header lines; anything else is
 * percent-encoded by whoever writes the value.
 */
static bool target_ok(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

/* s for a message, control bytes, '"' and '\\' escaped: a bad value cannot drive the terminal */
static const char *shown(const char *s, char *buf, size_t size)
{
    size_t n = 0;
    for (; *s && n + 5 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\r' || c == '\n' || c == '\t' || c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = c == '\r' ? 'r' : c == '\n' ? 'n' : c == '\t' ? 't' : (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            n += (size_t)snprintf(buf + n, size - n, "\\x%02x", c);
        } else {
            buf[n++] = (char)c;
        }
    }
    buf[n] = '\0';
    return buf;
}

/*
 * The checks of one option's value on its own (cross-field ones are in finish()), for the
 * effective value and for a file's value that the environment or a flag overrides. `what`
 * starts the message: "--writes" or "leaseway.yml:4: writes". Returns 0 or -1 after err().
 */
static int check_opt(const struct proxy_config *cfg, size_t i, const char *what)
{
    const void *field = (const char *)cfg + opts[i].off;
    const char *s = opts[i].type == OPT_STR ? *(char *const *)field : NULL;
    int64_t n = opts[i].type == OPT_DUR || opts[i].type == OPT_INT ? *(const int64_t *)field : 0;
    switch (opts[i].off) {
    case O(instance):
        if (s && !id_ok(s)) {
            err("%s \"%s\": expected 1 to 127 visible ASCII characters, without spaces, ',' or ';'", what, s);
            return -1;
        }
        break;
    case O(region):
        if (s && *s && !id_ok(s)) {
            err("%s \"%s\": expected up to 127 visible ASCII characters, without spaces, ',' or ';'", what,
                s);
            return -1;
        }
        break;
    case O(target):
        if (s && strstr(s, "://")) {
            err("%s \"%s\": expected host:port without a scheme, e.g. 127.0.0.1:3000", what, s);
            return -1;
        }
        if (s && port_of(s) < 0) {
            err("%s \"%s\": expected host:port, the port from 1 to 65535", what, s);
            return -1;
        }
        break;
    case O(listen):
        if (s && strstr(s, "://")) {
            err("%s \"%s\": expected host:port without a scheme, e.g. 0.0.0.0:8080", what, s);
            return -1;
        }
        if (s && port_of(s) < 0) {
            err("%s \"%s\": expected host:port, the port from 1 to 65535 (host empty: every interface)", what,
                s);
            return -1;
        }
        break;
    case O(admin):
        if (s && strstr(s, "://")) {
            err("%s \"%s\": expected host:port without a scheme, e.g. 127.0.0.1:9901, or off", what, s);
            return -1;
        }
        if (s && strcmp(s, "off") != 0 && port_of(s) < 0) {
            err("%s \"%s\": expected host:port, the port from 1 to 65535 (host empty: every interface), or "
                "off",
                what, s);
            return -1;
        }
        break;
    case O(workers):
        if (n > 256) {
            err("%s %lld: at most 256", what, (long long)n);
            return -1;
        }
        break;
    case O(lease):
        if (s && strcmp(s, "consul") && strcmp(s, "static")) {
            err("%s \"%s\": expected consul or static", what, s);
            return -1;
        }
        break;
    case O(writes):
        if (s && strcmp(s, "forward") && strcmp(s, "replay")) {
            err("%s \"%s\": expected forward or replay", what, s);
            return -1;
        }
        break;
    case O(log_format):
        if (s && strcmp(s, "text") && strcmp(s, "json")) {
            err("%s \"%s\": expected text or json", what, s);
            return -1;
        }
        break;
    case O(log_level):
        if (s && strcmp(s, "debug") && strcmp(s, "info") && strcmp(s, "warn") && strcmp(s, "error")) {
            err("%s \"%s\": expected debug, info, warn or error", what, s);
            return -1;
        }
        break;
    case O(access_log):
        if (s && !*s) {
            err("%s \"\": expected off, stderr, stdout or a file path", what);
            return -1;
        }
        break;
    case O(advertise):
        if (s && !advertise_ok(s)) {
            err("%s \"%s\": expected an http:// or https:// URL of visible ASCII characters (no spaces), "
                "under "
                "%d bytes",
                what, s, ROUTE_URL_MAX);
            return -1;
        }
        break;
    case O(upstream_health):
        if (s && *s && (s[0] != '/' || !target_ok(s))) {
            char b[1024];
            err("%s \"%s\": expected a path starting with /, of visible ASCII without spaces (percent-encode "
                "the rest), e.g. /healthz",
                what, shown(s, b, sizeof(b)));
            return -1;
        }
        break;
    case O(migrations):
        if (s && !strncmp(s, "http:", 5) && !target_ok(s + 5 + strspn(s + 5, " "))) {
            char b[1024];
            err("%s \"%s\": expected an http: URL of visible ASCII without spaces (percent-encode the rest)",
                what, shown(s, b, sizeof(b)));
            return -1;
        }
        break;
    case O(passthrough):
    case O(always_primary): {
        /* as the routing rules will take them (setup_rules()), but here the origin is known */
        const struct strlist *l = field;
        for (size_t k = 0; k < l->n; k++) {
            struct route_rules rules = {0};
            const char *why = NULL;
            int rc = route_rules_add_glob(&rules, opts[i].off == O(always_primary), l->v[k], &why);
            route_rules_free(&rules);
            if (rc < 0) {
                char b[1024];
                err("%s \"%s\": %s", what, shown(l->v[k], b, sizeof(b)), why ? why : "bad glob");
                return -1;
            }
        }
        break;
    }
    case O(header_timeout_ms):
    case O(idle_timeout_ms):
    case O(connect_timeout_ms):
    case O(upstream_timeout_ms):
        if (n <= 0) {
            err("%s %lld: must be greater than 0, a duration such as 500ms, 5s or 1m", what, (long long)n);
            return -1;
        }
        break;
    case O(lease_ttl_ms):
    case O(lock_delay_ms): {
        /* the Consul client checks these too, but only once it starts, and in a log line */
        int ttl = opts[i].off == O(lease_ttl_ms);
        if (n < 1000 || n > (ttl ? 86400000 : 60000)) {
            char d[32];
            fmt_duration(n, d, sizeof(d));
            err("%s %s: must be between 1s and %s%s", what, d, ttl ? "24h" : "60s",
                ttl ? " (and at least Consul's session_ttl_min, 10s by default)" : "");
            return -1;
        }
        break;
    }
    case O(max_connections):
        if (n < 1) {
            err("%s %lld: must be at least 1", what, (long long)n);
            return -1;
        }
        break;
    }
    return 0;
}

/* Computed defaults and cross-field validation. */
static int finish(struct proxy_config *cfg)
{
    char host[256] = "localhost";
    if (gethostname(host, sizeof(host) - 1) < 0)
        snprintf(host, sizeof(host), "localhost");
    const char *fly_machine = getenv("FLY_MACHINE_ID");
    const char *fly_region = getenv("FLY_REGION");
    const char *primary_region = getenv("PRIMARY_REGION");

    if (dup_default(&cfg->instance, fly_machine && *fly_machine ? fly_machine : host) < 0)
        return -1;
    if (!cfg->region && fly_region && dup_default(&cfg->region, fly_region) < 0)
        return -1;
    if (!cfg->advertise) {
        char url[512];
        snprintf(url, sizeof(url), "http://%s:%d", host, port_of(cfg->listen));
        if (dup_default(&cfg->advertise, url) < 0)
            return -1;
    }
    const char *env_consul = getenv("CONSUL_HTTP_ADDR");
    if (dup_default(&cfg->consul_addr, env_consul && *env_consul ? env_consul : "http://127.0.0.1:8500") < 0)
        return -1;
    const char *app = getenv("FLY_APP_NAME");
    if (dup_default(&cfg->service, app && *app ? app : "leaseway") < 0)
        return -1;
    if (dup_default(&cfg->lease, cfg->lease_key ? "consul" : "static") < 0)
        return -1;
    size_t i_cand = (size_t)find_opt("candidate", 9);
    if (cfg->source[i_cand] == SRC_DEFAULT)
        cfg->candidate =
            !(primary_region && *primary_region && fly_region && strcmp(primary_region, fly_region));
    size_t i_reg = (size_t)find_opt("register", 8);
    if (cfg->source[i_reg] == SRC_DEFAULT)
        cfg->register_service = strcmp(cfg->lease, "consul") == 0;
    if (cfg->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = n > 0 ? n : 1;
    }

    if (!cfg->target || !*cfg->target) {
        err("--target is required: the local app's host:port, e.g. --target 127.0.0.1:3000");
        return -1;
    }
    for (size_t i = 0; i < N_OPTS; i++) {
        /* named as given: the variable, else the flag (a bad file value failed in yaml_set(), with file:line)
         */
        char what[96];
        if (cfg->source[i] == SRC_ENV)
            env_name(&opts[i], what, sizeof(what));
        else
            snprintf(what, sizeof(what), "--%s", opts[i].name);
        if (check_opt(cfg, i, what) < 0)
            return -1;
    }
    if (!strcmp(cfg->lease, "consul") && (!cfg->lease_key || !*cfg->lease_key)) {
        err("--lease consul needs --lease-key (the Consul KV key of the primary lease)");
        return -1;
    }
    /* what the other lease mode would silently ignore */
    bool consul = strcmp(cfg->lease, "consul") == 0;
    if (!consul && cfg->source[i_reg] != SRC_DEFAULT && cfg->register_service) {
        err("--register needs --lease consul (with --lease static there is no Consul to register in)");
        return -1;
    }
    if (!consul && cfg->lease_key) {
        err("--lease-key applies only with --lease consul (this instance has --lease %s)", cfg->lease);
        return -1;
    }
    if (consul && cfg->static_primary) {
        err("--static-primary applies only with --lease static (with --lease consul, Consul says who is "
            "primary)");
        return -1;
    }
    return 0;
}

int proxy_config_load(struct proxy_config *cfg, int argc, char **argv)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < N_OPTS; i++)
        if (opts[i].def && set_value(cfg, i, opts[i].def, SRC_DEFAULT, "default") < 0)
            return -1;
    /* The file's name can come from a flag or the environment; find it first. */
    if (load_flags(cfg, argc, argv, true) < 0)
        return -1;
    const char *env_file = getenv("LEASEWAY_CONFIG");
    if (!cfg->config_file && env_file && *env_file && !(cfg->config_file = strdup(env_file)))
        return -1;
    if (load_env(cfg) < 0 || load_flags(cfg, argc, argv, false) < 0)
        return -1;
    if (cfg->config_file && load_yaml(cfg, cfg->config_file) < 0)
        return -1;
    return finish(cfg);
}

void proxy_config_free(struct proxy_config *cfg)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        void *field = (char *)cfg + opts[i].off;
        if (opts[i].type == OPT_STR) {
            free(*(char **)field);
            *(char **)field = NULL;
        } else if (opts[i].type == OPT_LIST) {
            strlist_clear(field);
        }
    }
}

static void fmt_duration(int64_t ms, char *buf, size_t size)
{
    if (ms == 0)
        snprintf(buf, size, "0");
    else if (ms % 60000 == 0)
        snprintf(buf, size, "%lldm", (long long)(ms / 60000));
    else if (ms % 1000 == 0)
        snprintf(buf, size, "%llds", (long long)(ms / 1000));
    else
        snprintf(buf, size, "%lldms", (long long)ms);
}

void proxy_config_usage(FILE *out)
{
    char env[96];
    fprintf(out, "Usage: leaseway run [--config FILE] [FLAGS] [-- APP COMMAND...]\n\n"
                 "Every flag also reads LEASEWAY_<FLAG> from the environment (empty counts as unset)\n"
                 "and <flag> from the YAML file; precedence is flag > environment > file > default.\n"
                 "Booleans take --flag, --flag=true|false or --no-flag; durations take Go style\n"
                 "500ms, 5s, 1m.\n\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt *o = &opts[i];
        env_name(o, env, sizeof(env));
        fprintf(out, "  --%s %s\n      %s\n      env %s", o->name, o->metavar, o->help, env);
        if (o->def)
            fprintf(out, ", default %s", o->def);
        fputc('\n', out);
    }
    fprintf(out,
            "\nConsul client environment (as for the consul CLI; used by run and status):\n"
            "  CONSUL_HTTP_ADDR\n      default for --consul-addr: http://, https:// or unix://PATH\n"
            "  CONSUL_HTTP_TOKEN\n      ACL token, sent as X-Consul-Token; never printed or logged\n"
            "  CONSUL_HTTP_TOKEN_FILE\n      file holding the token; wins over CONSUL_HTTP_TOKEN; re-read on "
            "403\n"
            "  CONSUL_HTTP_AUTH\n      user:pass for HTTP basic authentication\n"
            "  CONSUL_HTTP_SSL\n      true: use https with an http:// or bare address\n"
            "  CONSUL_HTTP_SSL_VERIFY\n      false: do not verify Consul's certificate (testing only)\n"
            "  CONSUL_CACERT\n      CA certificate file that signed Consul's certificate\n"
            "  CONSUL_CAPATH\n      directory of CA certificates\n"
            "  CONSUL_CLIENT_CERT\n      client certificate for mutual TLS (with CONSUL_CLIENT_KEY)\n"
            "  CONSUL_CLIENT_KEY\n      its private key\n"
            "  CONSUL_TLS_SERVER_NAME\n      name to send (SNI) and verify instead of the address's host\n"
            "  CONSUL_NAMESPACE\n      Consul Enterprise namespace (?ns=)\n"
            "  CONSUL_PARTITION\n      Consul Enterprise admin partition (?partition=)\n"
            "\nFly.io environment (defaults only; flags, LEASEWAY_* and the file win):\n"
            "  FLY_MACHINE_ID\n      default --instance\n"
            "  FLY_REGION\n      default --region\n"
            "  PRIMARY_REGION\n      with FLY_REGION: default --candidate (true only in the primary region)\n"
            "  FLY_APP_NAME\n      default --service\n"
            "\nExamples:\n"
            "  leaseway run --target 127.0.0.1:3000\n"
            "      a plain reverse proxy; this instance is the primary\n"
            "  leaseway run --lease-key epic/primary --target 127.0.0.1:3001 \\\n"
            "      --migrations prisma:/litefs/sqlite.db:/app/prisma/migrations\n"
            "      hold the lease in Consul; gate traffic until Prisma's migrations are applied\n"
            "  leaseway run --config /etc/leaseway.yml --check\n"
            "      validate a configuration and print the effective settings\n"
            "\nAdmin listener: GET / (status page), /status, /cluster, /health, /metrics; POST /handoff.\n");
}

/* The UTF-8 sequence at s: its length (1 to 4) and code point, or 0 when it is not one. */
static size_t utf8_decode(const unsigned char *s, uint32_t *cp)
{
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t n = s[0] < 0x80                   ? 1
               : s[0] >= 0xc0 && s[0] < 0xe0 ? 2
               : s[0] >= 0xe0 && s[0] < 0xf0 ? 3
               : s[0] >= 0xf0 && s[0] < 0xf8 ? 4
                                             : 0;
    uint32_t c = n == 1 ? s[0] : n == 2 ? s[0] & 0x1fu : n == 3 ? s[0] & 0x0fu : s[0] & 0x07u;
    if (n == 0)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (s[i] & 0x3fu);
    }
    if (c < min[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0; /* overlong, out of range, or a surrogate */
    *cp = c;
    return n;
}

/*
 * raw as a YAML double-quoted scalar that reads back as raw: what YAML 1.1 does not allow as
 * it is (control characters, C1 controls, line separators, bytes that are not UTF-8) is
 * escaped, so --check prints valid YAML and never drives the terminal. A byte that is not
 * UTF-8 can only be shown as the character of the same number (\xHH).
 */
static void print_yaml_str(const char *raw)
{
    char buf[2048];
    snprintf(buf, sizeof(buf), "%s", raw);
    proxy_log_scrub(buf); /* an address may carry user:pass@ */
    putchar('"');
    for (const unsigned char *s = (const unsigned char *)buf; *s;) {
        uint32_t c;
        size_t n = utf8_decode(s, &c);
        if (n == 0) {
            printf("\\x%02x", *s++);
            continue;
        }
        if (c == '"' || c == '\\')
            printf("\\%c", (char)c);
        else if (c == '\t' || (c >= 0x20 && c < 0x7f) ||
                 (c >= 0xa0 && c <= 0xd7ff && c != 0x2028 && c != 0x2029) ||
                 (c >= 0xe000 && c <= 0xfffd && c != 0xfeff) || c >= 0x10000)
            fwrite(s, 1, n, stdout);
        else if (c < 0x100)
            printf("\\x%02x", (unsigned)c);
        else
            printf("\\u%04x", (unsigned)c);
        s += n;
    }
    putchar('"');
}

void proxy_config_print(const struct proxy_config *cfg)
{
    static const char *const src_names[] = {"default", "file", "env", "flag"};
    char buf[64];
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt *o = &opts[i];
        if (!strcmp(o->name, "check") || !strcmp(o->name, "config"))
            continue;
        const void *field = (const char *)cfg + o->off;
        printf("%s: ", o->name);
        switch (o->type) {
        case OPT_STR: {
            const char *v = *(char *const *)field;
            if (!v)
                printf("null");
            else if (o->secret)
                printf("\"<redacted>\"");
            else
                print_yaml_str(v);
            break;
        }
        case OPT_BOOL: printf("%s", *(const bool *)field ? "true" : "false"); break;
        case OPT_DUR:
            fmt_duration(*(const int64_t *)field, buf, sizeof(buf));
            printf("%s", buf);
            break;
        case OPT_INT: printf("%lld", (long long)*(const int64_t *)field); break;
        case OPT_LIST: {
            const struct strlist *l = field;
            printf("[");
            for (size_t k = 0; k < l->n; k++) {
                if (k)
                    printf(", ");
                print_yaml_str(l->v[k]);
            }
            printf("]");
            break;
        }
        }
        printf("  # %s\n", src_names[cfg->source[i]]);
    }
    /* the Consul client environment: whether it is set, never the token itself */
    static const char *const consul_env[] = {
        "CONSUL_HTTP_ADDR",   "CONSUL_HTTP_TOKEN",      "CONSUL_HTTP_TOKEN_FILE", "CONSUL_HTTP_AUTH",
        "CONSUL_HTTP_SSL",    "CONSUL_HTTP_SSL_VERIFY", "CONSUL_CACERT",          "CONSUL_CAPATH",
        "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY",      "CONSUL_TLS_SERVER_NAME", "CONSUL_NAMESPACE",
        "CONSUL_PARTITION"};
    for (size_t i = 0; i < sizeof(consul_env) / sizeof(consul_env[0]); i++) {
        const char *v = getenv(consul_env[i]);
        if (!v || !*v)
            continue;
        bool secret =
            !strcmp(consul_env[i], "CONSUL_HTTP_TOKEN") || !strcmp(consul_env[i], "CONSUL_HTTP_AUTH");
        printf("# env %s: ", consul_env[i]);
        if (secret)
            printf("\"<redacted>\"\n");
        else {
            print_yaml_str(v);
            putchar('\n');
        }
    }
}
