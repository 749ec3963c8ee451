/*
 * `leaseway status`: the cluster as Consul's health endpoint sees it, one
 * row per registered instance (like `fly status`), or a JSON array with
 * --json. A one-shot command, so it uses a blocking libcurl easy handle and
 * the same CONSUL_* conventions as the agent.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "consul/consul-int.h"

struct row {
    char id[ROUTE_ID_MAX];
    char region[64];
    char address[300];
    char role[16];
    char gate[16];
    char check[16];
    char version[64];
    char node[128];
    json_t *checks; /* borrowed from the reply */
};

struct body {
    char *buf;
    size_t len;
    bool too_large;
    bool filtered; /* X-Consul-Results-Filtered-By-ACLs: true */
};

static size_t header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    static const char name[] = "X-Consul-Results-Filtered-By-ACLs:";
    struct body *b = userdata;
    size_t n = size * nmemb;

    if (n > sizeof(name) && strncasecmp(ptr, name, sizeof(name) - 1) == 0 &&
        memmem(ptr + sizeof(name) - 1, n - (sizeof(name) - 1), "true", 4) != NULL)
        b->filtered = true;
    return n;
}

static size_t collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct body *b = userdata;
    size_t n = size * nmemb;
    char *nb;

    if (b->len + n > CONSUL_BODY_MAX * 8) {
        b->too_large = true;
        return 0;
    }
    nb = realloc(b->buf, b->len + n + 1);
    if (nb == NULL)
        return 0;
    b->buf = nb;
    memcpy(b->buf + b->len, ptr, n);
    b->len += n;
    b->buf[b->len] = '\0';
    return n;
}

static void usage(FILE *f)
{
    fprintf(
        f, "Usage: leaseway status [--json] [--service NAME] [--consul-addr URL] [--lease-key KEY]\n"
           "\n"
           "Show every instance of the service registered in Consul: ID, REGION, ADDRESS,\n"
           "ROLE (primary/replica tag), GATE, CHECK (worst of its health checks), VERSION.\n"
           "\n"
           "  --json              print a JSON array instead of a table\n"
           "  --service NAME      Consul service name (default: $LEASEWAY_SERVICE, $FLY_APP_NAME, leaseway)\n"
           "  --consul-addr URL   Consul HTTP API (default: $LEASEWAY_CONSUL_ADDR, $CONSUL_HTTP_ADDR,\n"
           "                      http://127.0.0.1:8500); CONSUL_HTTP_TOKEN(_FILE), TLS and\n"
           "                      namespace variables apply as for `leaseway run`\n"
           "  --lease-key KEY     lease key (default: $LEASEWAY_LEASE_KEY): ROLE then comes from the\n"
           "                      lease holder, not from the (possibly stale) primary/replica tags\n"
           "  -h, --help          this help\n");
}

static const char *str_of(json_t *o, const char *key, const char *dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

static int check_rank(const char *status)
{
    if (strcmp(status, "passing") == 0)
        return 0;
    if (strcmp(status, "warning") == 0)
        return 1;
    if (strcmp(status, "maintenance") == 0)
        return 2;
    return 3; /* critical or unknown */
}

/*
 * Length of the longest prefix of s that fits in max bytes and ends between two characters:
 * the reply's strings are UTF-8 (jansson checked them) and must stay so, or json_pack() refuses
 * the row and --json loses an instance.
 */
static size_t utf8_prefix(const char *s, size_t max)
{
    if (strlen(s) <= max)
        return strlen(s);
    while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
        max--; /* s[max], the first byte left out, continues a character: leave all of it out */
    return max;
}

/* s into a column of size bytes, cut between characters. */
static void copy_col(char *col, size_t size, const char *s)
{
    size_t n = utf8_prefix(s, size - 1);
    memcpy(col, s, n);
    col[n] = '\0';
}

static void fill_row(json_t *entry, struct row *r)
{
    json_t *node = json_object_get(entry, "Node");
    json_t *svc = json_object_get(entry, "Service");
    json_t *meta = json_object_get(svc, "Meta");
    json_t *tags = json_object_get(svc, "Tags");
    json_t *v;
    size_t i;
    const char *addr = str_of(svc, "Address", "");
    json_int_t port = json_integer_value(json_object_get(svc, "Port"));
    int worst = -1;
    char port_s[24];
    bool v6;

    memset(r, 0, sizeof(*r));
    copy_col(r->id, sizeof(r->id), str_of(svc, "ID", "?"));
    copy_col(r->region, sizeof(r->region), str_of(meta, "region", ""));
    copy_col(r->gate, sizeof(r->gate), str_of(meta, "gate", "-"));
    copy_col(r->version, sizeof(r->version), str_of(meta, "version", "-"));
    copy_col(r->node, sizeof(r->node), str_of(node, "Node", ""));
    if (addr[0] == '\0')
        addr = str_of(node, "Address", "?");
    v6 = strchr(addr, ':') != NULL;
    snprintf(port_s, sizeof(port_s), "%lld", (long long)port);
    /* room for the address between "[", "]:" and the port */
    snprintf(r->address, sizeof(r->address), v6 ? "[%.*s]:%s" : "%.*s:%s",
             (int)utf8_prefix(addr, sizeof(r->address) - 1 - strlen(port_s) - (v6 ? 3 : 1)), addr, port_s);
    snprintf(r->role, sizeof(r->role), "-");
    json_array_foreach(tags, i, v)
    {
        if (json_is_string(v) &&
            (strcmp(json_string_value(v), "primary") == 0 ||
             (strcmp(json_string_value(v), "replica") == 0 && strcmp(r->role, "primary") != 0)))
            snprintf(r->role, sizeof(r->role), "%s", json_string_value(v));
    }
    r->checks = json_object_get(entry, "Checks");
    json_array_foreach(r->checks, i, v)
    {
        int rank = check_rank(str_of(v, "Status", "critical"));
        if (rank > worst) {
            worst = rank;
            copy_col(r->check, sizeof(r->check), str_of(v, "Status", "critical"));
        }
    }
    if (worst < 0)
        snprintf(r->check, sizeof(r->check), "-");
}

static int row_cmp(const void *x, const void *y)
{
    const struct row *a = x, *b = y;
    int pa = strcmp(a->role, "primary") == 0, pb = strcmp(b->role, "primary") == 0;

    if (pa != pb)
        return pb - pa;
    return strcmp(a->id, b->id);
}

static const char *dash(const char *s)
{
    return s[0] ? s : "-";
}

static void print_table(struct row *rows, size_t n, const char *service)
{
    int w[7] = {2, 6, 7, 4, 4, 5, 7};
    const char *hdr[7] = {"ID", "REGION", "ADDRESS", "ROLE", "GATE", "CHECK", "VERSION"};

    for (size_t i = 0; i < n; i++) {
        const char *c[7] = {rows[i].id,   dash(rows[i].region), rows[i].address, rows[i].role,
                            rows[i].gate, rows[i].check,        rows[i].version};
        for (int k = 0; k < 7; k++)
            if ((int)strlen(c[k]) > w[k])
                w[k] = (int)strlen(c[k]);
    }
    printf("Service: %s (%zu instance%s)\n\n", service, n, n == 1 ? "" : "s");
    printf("%-*s  %-*s  %-*s  %-*s  %-*s  %-*s  %s\n", w[0], hdr[0], w[1], hdr[1], w[2], hdr[2], w[3], hdr[3],
           w[4], hdr[4], w[5], hdr[5], hdr[6]);
    for (size_t i = 0; i < n; i++)
        printf("%-*s  %-*s  %-*s  %-*s  %-*s  %-*s  %s\n", w[0], rows[i].id, w[1], dash(rows[i].region), w[2],
               rows[i].address, w[3], rows[i].role, w[4], rows[i].gate, w[5], rows[i].check, rows[i].version);
}

static int print_json(struct row *rows, size_t n)
{
    json_t *arr = json_array();
    char *s;

    for (size_t i = 0; i < n; i++) {
        json_t *checks = json_array();
        json_t *v;
        size_t k;
        json_array_foreach(rows[i].checks, k, v)
        {
            json_array_append_new(checks,
                                  json_pack("{s:s, s:s, s:s}", "id", str_of(v, "CheckID", ""), "status",
                                            str_of(v, "Status", ""), "output", str_of(v, "Output", "")));
        }
        json_array_append_new(arr,
                              json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "id", rows[i].id,
                                        "region", rows[i].region, "address", rows[i].address, "role",
                                        rows[i].role, "gate", rows[i].gate, "check", rows[i].check, "version",
                                        rows[i].version, "node", rows[i].node, "checks", checks));
    }
    s = json_dumps(arr, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(arr);
    if (s == NULL)
        return -1;
    printf("%s\n", s);
    free(s);
    return 0;
}

/* GET path into *b; 0 on HTTP 200, else -1 after printing why (404 allowed when ok404). */
static int fetch(const struct consul_http_conf *conf, const char *path, struct body *b, bool ok404,
                 long *status)
{
    struct curl_slist *headers = NULL, *connect_to = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    char *url = consul_http_url(conf, path, NULL);
    CURL *e = curl_easy_init();
    int rc = -1;
    CURLcode cc;

    *status = 0;
    if (url == NULL || e == NULL || consul_http_easy_conf(e, conf, false, &headers, &connect_to) < 0) {
        fprintf(stderr, "leaseway status: out of memory\n");
        goto out;
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, b);
    cc = curl_easy_perform(e);
    if (cc != CURLE_OK) {
        fprintf(stderr, "leaseway status: cannot reach Consul at %s: %s\n",
                conf->unix_path ? conf->unix_path : conf->base_url,
                b->too_large ? "reply too large"
                : errbuf[0]  ? errbuf
                             : curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
    if (*status != 200 && !(ok404 && *status == 404)) {
        fprintf(stderr, "leaseway status: Consul answered HTTP %ld%s: %.200s\n", *status,
                *status == 403 ? " (check CONSUL_HTTP_TOKEN / CONSUL_HTTP_TOKEN_FILE)" : "",
                b->buf ? b->buf : "");
        goto out;
    }
    rc = 0;
out:
    if (e)
        curl_easy_cleanup(e);
    curl_slist_free_all(headers);
    curl_slist_free_all(connect_to);
    free(url);
    return rc;
}

/* The lease holder's hostname into holder ("" when nobody holds it); -1 on error. */
static int lease_holder(const struct consul_http_conf *conf, const char *key, char *holder, size_t size)
{
    struct body b = {0};
    struct consul_kv kv = {0};
    struct consul_lease_value lv;
    const char *err = NULL;
    char *esc = consul_escape_key(key), *path = NULL;
    long status;
    int rc = -1;

    holder[0] = '\0';
    if (esc == NULL || asprintf(&path, "/v1/kv/%s", esc) < 0) {
        path = NULL;
        goto out;
    }
    if (fetch(conf, path, &b, true, &status) < 0)
        goto out;
    if (status == 200 && consul_kv_decode(b.buf ? b.buf : "", b.len, &kv, &err) < 0) {
        fprintf(stderr, "leaseway status: lease key %s: %s\n", key, err);
        goto out;
    }
    if (kv.exists && kv.session[0] && consul_lease_value_decode(kv.value, kv.value_len, &lv, &err) == 0)
        snprintf(holder, size, "%s", lv.hostname);
    rc = 0;
out:
    consul_kv_clear(&kv);
    free(b.buf);
    free(esc);
    free(path);
    return rc;
}

int consul_status_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"service", required_argument, NULL, 's'},
        {"consul-addr", required_argument, NULL, 'a'},
        {"lease-key", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *service = getenv("LEASEWAY_SERVICE");
    const char *addr = getenv("LEASEWAY_CONSUL_ADDR");
    const char *lease_key = getenv("LEASEWAY_LEASE_KEY");
    bool as_json = false;
    struct consul_http_conf conf;
    struct body body = {0};
    const char *err = NULL;
    char *esc = NULL, *path = NULL;
    char holder[ROUTE_ID_MAX] = "";
    struct row *rows = NULL;
    json_t *root = NULL;
    long status = 0;
    int c, rc = 1;
    char *args[64];

    /* argv holds what follows "status"; getopt wants a program name in front */
    if (argc + 1 > (int)(sizeof(args) / sizeof(args[0]))) {
        fprintf(stderr, "leaseway status: too many arguments\n");
        return 2;
    }
    args[0] = "leaseway status";
    if (argc > 0)
        memcpy(args + 1, argv, (size_t)argc * sizeof(*argv));
    argv = args;
    argc++;
    if (service == NULL || service[0] == '\0')
        service = getenv("FLY_APP_NAME");
    if (service == NULL || service[0] == '\0')
        service = "leaseway";
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': as_json = true; break;
        case 's': service = optarg; break;
        case 'a': addr = optarg; break;
        case 'k': lease_key = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "leaseway status: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (consul_http_conf_init(&conf, addr, &err) < 0) {
        fprintf(stderr, "leaseway status: bad Consul client configuration: %s\n", err);
        return 1;
    }
    esc = curl_easy_escape(NULL, service, 0);
    if (esc == NULL || asprintf(&path, "/v1/health/service/%s", esc) < 0) {
        path = NULL;
        goto out;
    }
    if (fetch(&conf, path, &body, false, &status) < 0)
        goto out;
    if (lease_key && lease_key[0] && lease_holder(&conf, lease_key, holder, sizeof(holder)) < 0)
        goto out;
    {
        json_error_t jerr;
        size_t n, i;
        json_t *v;

        root = json_loadb(body.buf ? body.buf : "", body.len, 0, &jerr);
        if (!json_is_array(root)) {
            fprintf(stderr, "leaseway status: Consul sent a malformed reply (%s)\n", jerr.text);
            goto out;
        }
        n = json_array_size(root);
        rows = calloc(n ? n : 1, sizeof(*rows));
        if (rows == NULL)
            goto out;
        json_array_foreach(root, i, v)
        {
            fill_row(v, &rows[i]);
            /* the lease is the truth; a dead primary keeps its tag until Consul reaps it */
            if (lease_key && lease_key[0])
                snprintf(rows[i].role, sizeof(rows[i].role), "%s",
                         strcmp(rows[i].id, holder) == 0 ? "primary" : "replica");
        }
        qsort(rows, n, sizeof(*rows), row_cmp);
        if (body.filtered)
            fprintf(stderr, "leaseway status: Consul's ACLs hid some results from this token "
                            "(set CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE)\n");
        if (as_json) {
            if (print_json(rows, n) < 0)
                goto out;
        } else if (n == 0) {
            printf("Service: %s (no instances registered in Consul)\n", service);
        } else {
            print_table(rows, n, service);
            if (lease_key && lease_key[0] && holder[0] == '\0')
                printf("\nNo instance holds the lease %s.\n", lease_key);
        }
    }
    rc = 0;
out:
    free(rows);
    json_decref(root);
    curl_free(esc);
    free(path);
    free(body.buf);
    consul_http_conf_free(&conf);
    return rc;
}
