/*
 * The admin listener (SPEC §6) on the control thread: the status page (GET /),
 * /status, /cluster, /health, /metrics and POST /handoff. It is off the
 * request path, so libevent's evhttp is good enough here.
 *
 * Nothing here waits for Consul: /cluster answers from the catalog's last
 * reply (consul/consul_catalog.c), which a blocking query on this same loop
 * keeps fresh while someone is looking.
 */
#include "proxy/proxy_admin.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "consul/consul_catalog.h"
#include "proxy/proxy_log.h"
#include "routing/route_snapshot.h"

/*
 * Every admin response goes out here. A response to HEAD has the headers GET would have, its
 * Content-Length included, and no body (RFC 9110 §9.3.2): libevent 2.1's evhttp_send_reply()
 * writes the body after a HEAD's headers, without a Content-Length, and a keep-alive client
 * then reads that body as the start of its next response.
 */
static void reply(struct evhttp_request *req, int code, const char *type, struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", type);
    evhttp_add_header(h, "Cache-Control", "no-store");
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        char len[24];
        snprintf(len, sizeof(len), "%zu", body ? evbuffer_get_length(body) : (size_t)0);
        evhttp_add_header(h, "Content-Length", len);
        body = NULL;
    }
    evhttp_send_reply(req, code, NULL, body);
}

static void reply_text(struct evhttp_request *req, int code, const char *text)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add_printf(b, "%s\n", text);
    reply(req, code, "text/plain; charset=utf-8", b);
    evbuffer_free(b);
}

/*
 * 405 with the methods the path allows (RFC 9110 §15.5.6), and the connection closed: libevent
 * 2.1 does not read the body of a TRACE or of a method it does not know, so on a kept-alive
 * connection that body would be taken for the next request.
 */
static void reply_405(struct evhttp_request *req, const char *allow, const char *text)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    reply_text(req, 405, text);
}

/*
 * Why a state-changing request must be refused because a browser sent it from another
 * site's page (CSRF: the status page is meant to be opened in a browser), or NULL.
 * Browsers say where a request comes from (Sec-Fetch-Site, Origin); curl and
 * `leaseway handoff` send neither, and the status page's own button is same-origin.
 */
static const char *cross_site(struct evhttp_request *req)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *site = evhttp_find_header(in, "Sec-Fetch-Site");
    if (site && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0)
        return "refused: a cross-site request (Sec-Fetch-Site); use the status page or leaseway handoff";
    const char *origin = evhttp_find_header(in, "Origin");
    if (!origin)
        return NULL;
    const char *host = evhttp_find_header(in, "Host");
    size_t skip = !strncasecmp(origin, "http://", 7) ? 7 : !strncasecmp(origin, "https://", 8) ? 8 : 0;
    if (!host || !skip || strcasecmp(origin + skip, host) != 0)
        return "refused: Origin is not this admin listener; use the status page or leaseway handoff";
    return NULL;
}

static json_t *status_json(struct proxy_admin *a)
{
    struct proxy *px = a->px;
    struct proxy_config *cfg = px->cfg;
    struct cluster_snapshot s;
    route_snapshot_get(&s);

    json_t *root = json_object();
    json_object_set_new(root, "instance", json_string(cfg->instance));
    json_object_set_new(root, "region", cfg->region ? json_string(cfg->region) : json_null());
    json_object_set_new(root, "role", json_string(route_role_str(s.role)));
    if (s.primary_known) {
        json_object_set_new(root, "primary",
                            json_pack("{s:s, s:s, s:I}", "id", s.primary_id, "advertise", s.primary_url,
                                      "since", (json_int_t)s.primary_since_ms));
    } else {
        json_object_set_new(root, "primary", json_null());
    }
    json_t *lease = json_pack("{s:s, s:I, s:b}", "mode", cfg->lease, "index", (json_int_t)s.lease_index,
                              "candidate", cfg->candidate);
    json_object_set_new(lease, "key", cfg->lease_key ? json_string(cfg->lease_key) : json_null());
    const char *lease_error = a->lease_error_cb ? a->lease_error_cb(a->cb_arg) : NULL;
    json_object_set_new(lease, "error", lease_error && *lease_error ? json_string(lease_error) : json_null());
    json_object_set_new(root, "lease", lease);

    json_t *migrations = json_object();
    json_t *pending = json_array();
    json_int_t applied = 0;
    if (a->migrations_cb)
        a->migrations_cb(a->cb_arg, &applied, pending);
    json_object_set_new(migrations, "applied", json_integer(applied));
    json_object_set_new(migrations, "pending", pending);
    json_object_set_new(root, "gate",
                        json_pack("{s:s, s:s, s:o}", "state", route_gate_str(s.gate), "reason", s.gate_reason,
                                  "migrations", migrations));
    json_t *consul = json_object();
    bool uses_consul = strcmp(cfg->lease, "consul") == 0;
    json_object_set_new(consul, "enabled", json_boolean(uses_consul));
    json_object_set_new(consul, "reachable", uses_consul ? json_boolean(s.consul_reachable) : json_null());
    json_object_set_new(consul, "known_leader",
                        uses_consul ? json_boolean(s.consul_known_leader) : json_null());
    json_object_set_new(consul, "last_contact_ms",
                        uses_consul ? json_integer(s.consul_last_contact_ms) : json_null());
    json_object_set_new(root, "consul", consul);
    json_object_set_new(root, "version", json_string(LEASEWAY_VERSION));
    return root;
}

/* Reply with root (consumed) as indented JSON. */
static void reply_json(struct evhttp_request *req, json_t *root)
{
    char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    struct evbuffer *b = evbuffer_new();
    if (!text || !b) {
        free(text);
        if (b)
            evbuffer_free(b);
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add_printf(b, "%s\n", text);
    free(text);
    reply(req, 200, "application/json", b);
    evbuffer_free(b);
}

static void handle_status(struct evhttp_request *req, struct proxy_admin *a)
{
    reply_json(req, status_json(a));
}

static const char *str_of(const json_t *o, const char *key, const char *dflt)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

static int check_rank(const char *status)
{
    if (!strcmp(status, "passing"))
        return 0;
    if (!strcmp(status, "warning"))
        return 1;
    if (!strcmp(status, "maintenance"))
        return 2;
    return 3; /* critical or unknown */
}

/* This instance as a /cluster row, from the snapshot (used when Consul does not list it). */
static json_t *self_row(struct proxy_admin *a, const struct cluster_snapshot *s)
{
    struct proxy_config *cfg = a->px->cfg;
    char address[320];
    proxy_url_host_port(cfg->advertise, address, sizeof(address));
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:[], s:s, s:b, s:b}", "id", cfg->instance,
                     "region", cfg->region ? cfg->region : "", "address", address, "role",
                     route_role_str(s->role), "tag", "", "gate", route_gate_str(s->gate), "reason",
                     s->gate_reason, "check", "none", "checks", "version", LEASEWAY_VERSION, "self", 1,
                     "registered", 0);
}

/*
 * One /v1/health/service entry as a /cluster row. The role comes from the lease as this
 * instance sees it (the primary/replica tag lags: a dead primary keeps its tag until Consul
 * reaps it); the gate's reason is the output of the instance's ready check.
 */
static json_t *consul_row(const json_t *entry, const struct cluster_snapshot *s, const char *self_id)
{
    const json_t *node = json_object_get(entry, "Node");
    const json_t *svc = json_object_get(entry, "Service");
    const json_t *meta = json_object_get(svc, "Meta");
    const json_t *tags = json_object_get(svc, "Tags");
    const json_t *checks_in = json_object_get(entry, "Checks");
    const char *id = str_of(svc, "ID", "?");
    const char *addr = str_of(svc, "Address", "");
    if (!addr[0])
        addr = str_of(node, "Address", "?");
    char address[320];
    snprintf(address, sizeof(address), strchr(addr, ':') ? "[%s]:%lld" : "%s:%lld", addr,
             (long long)json_integer_value(json_object_get(svc, "Port")));

    const char *tag = "";
    size_t i;
    const json_t *v;
    json_array_foreach(tags, i, v)
    {
        const char *t = json_string_value(v);
        if (t && (!strcmp(t, "primary") || (!strcmp(t, "replica") && strcmp(tag, "primary"))))
            tag = t;
    }
    const char *role = s->primary_known ? (!strcmp(id, s->primary_id) ? "primary" : "replica")
                       : tag[0]         ? tag
                                        : "unknown";

    json_t *checks = json_array();
    const char *worst = "none", *reason = "";
    int worst_rank = -1;
    char ready_suffix[ROUTE_ID_MAX + 16];
    snprintf(ready_suffix, sizeof(ready_suffix), ":%s:ready", id);
    json_array_foreach(checks_in, i, v)
    {
        const char *status = str_of(v, "Status", "critical");
        const char *check_id = str_of(v, "CheckID", "");
        json_array_append_new(checks, json_pack("{s:s, s:s, s:s, s:s}", "id", check_id, "name",
                                                str_of(v, "Name", check_id), "status", status, "output",
                                                str_of(v, "Output", "")));
        if (check_rank(status) > worst_rank) {
            worst_rank = check_rank(status);
            worst = status;
        }
        size_t cl = strlen(check_id), sl = strlen(ready_suffix);
        if (cl >= sl && !strcmp(check_id + cl - sl, ready_suffix))
            reason = str_of(v, "Output", "");
    }
    json_t *row = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:s, s:b, s:b}", "id", id,
                            "node", str_of(node, "Node", ""), "region", str_of(meta, "region", ""), "address",
                            address, "role", role, "tag", tag, "gate", str_of(meta, "gate", "unknown"),
                            "reason", reason, "check", worst, "checks", checks, "version",
                            str_of(meta, "version", ""), "self", !strcmp(id, self_id), "registered", 1);
    return row;
}

static int row_cmp(const void *x, const void *y)
{
    const json_t *a = *(json_t *const *)x, *b = *(json_t *const *)y;
    return strcmp(str_of(a, "id", ""), str_of(b, "id", ""));
}

/*
 * GET /cluster: every instance as this one knows it. With the consul lease, the service's
 * instances from Consul (last reply of the catalog watch); with a static lease, this instance
 * and its fixed primary.
 */
static json_t *cluster_json(struct proxy_admin *a)
{
    struct proxy_config *cfg = a->px->cfg;
    struct cluster_snapshot s;
    route_snapshot_get(&s);
    json_t *root = json_object();
    json_t *rows = json_array();
    bool have_self = false;

    json_object_set_new(root, "service", json_string(cfg->service));
    json_object_set_new(root, "self", json_string(cfg->instance));
    json_object_set_new(root, "primary", s.primary_known ? json_string(s.primary_id) : json_null());
    if (a->catalog) {
        struct consul_catalog_view view;
        consul_catalog_get(a->catalog, &view);
        json_object_set_new(root, "source", json_string("consul"));
        json_object_set_new(root, "age_ms", view.age_ms >= 0 ? json_integer(view.age_ms) : json_null());
        json_object_set_new(root, "error", view.error[0] ? json_string(view.error) : json_null());
        size_t i, n = json_array_size(view.entries);
        json_t **sorted = calloc(n ? n : 1, sizeof(*sorted));
        for (i = 0; sorted && i < n; i++)
            sorted[i] = consul_row(json_array_get(view.entries, i), &s, cfg->instance);
        if (sorted) {
            qsort(sorted, n, sizeof(*sorted), row_cmp);
            for (i = 0; i < n; i++) {
                if (!sorted[i])
                    continue;
                if (json_is_true(json_object_get(sorted[i], "self"))) {
                    /* our own gate is fresher here than in Consul */
                    have_self = true;
                    json_object_set_new(sorted[i], "gate", json_string(route_gate_str(s.gate)));
                    json_object_set_new(sorted[i], "reason", json_string(s.gate_reason));
                }
                json_array_append_new(rows, sorted[i]);
            }
        }
        free(sorted);
        json_decref(view.entries);
    } else {
        json_object_set_new(root, "source", json_string("static"));
        json_object_set_new(root, "age_ms", json_integer(0));
        json_object_set_new(root, "error", json_null());
        char address[320];
        proxy_url_host_port(s.primary_url, address, sizeof(address));
        if (s.primary_known && strcmp(s.primary_id, cfg->instance) != 0)
            json_array_append_new(rows, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:[], s:s, s:b, "
                                                  "s:b}",
                                                  "id", s.primary_id, "region", "", "address", address,
                                                  "role", "primary", "tag", "", "gate", "unknown", "reason",
                                                  "fixed by --static-primary", "check", "none", "checks",
                                                  "version", "", "self", 0, "registered", 0));
    }
    if (!have_self)
        json_array_append_new(rows, self_row(a, &s));
    json_object_set_new(root, "instances", rows);
    return root;
}

static void handle_cluster(struct evhttp_request *req, struct proxy_admin *a)
{
    reply_json(req, cluster_json(a));
}

static void handle_page(struct evhttp_request *req)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add_reference(b, proxy_admin_page, strlen(proxy_admin_page), NULL, NULL);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    /* everything is inline; nothing may be loaded from elsewhere, and no one may frame the handoff button */
    evhttp_add_header(h, "Content-Security-Policy",
                      "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                      "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
                      "frame-ancestors 'none'");
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    reply(req, 200, "text/html; charset=utf-8", b);
    evbuffer_free(b);
}

static void handle_health(struct evhttp_request *req)
{
    struct cluster_snapshot s;
    route_snapshot_get(&s);
    if (s.gate == ROUTE_GATE_OPEN) {
        reply_text(req, 200, "ok");
        return;
    }
    char line[ROUTE_REASON_MAX + 32];
    snprintf(line, sizeof(line), "%s: %s", route_gate_str(s.gate), s.gate_reason);
    reply_text(req, 503, line);
}

/* A Prometheus label value: backslash, double quote and newline escaped. */
static void label_value(struct evbuffer *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            evbuffer_add_printf(b, "\\%c", *v);
        else if (*v == '\n')
            evbuffer_add(b, "\\n", 2);
        else
            evbuffer_add(b, v, 1);
    }
}

static void metric_header(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A counter of struct proxy_metrics (at offset `off`) summed over the workers. */
static uint64_t worker_sum(const struct proxy *px, size_t off)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < px->nworkers; i++)
        sum += proxy_metrics_read((const uint64_t *)((const char *)&px->workers[i].metrics + off));
    return sum;
}

/*
 * The _bucket lines of a histogram whose per-bucket counters are the n uint64_t at `off` in
 * struct proxy_metrics, summed over the workers and made cumulative; the last is +Inf.
 * Returns the total count.
 */
static uint64_t histogram_buckets(struct evbuffer *b, const struct proxy *px, const char *name, size_t off,
                                  int n, const char le[][16])
{
    uint64_t cum = 0;
    for (int k = 0; k < n; k++) {
        cum += worker_sum(px, off + (size_t)k * sizeof(uint64_t));
        evbuffer_add_printf(b, "%s_bucket{le=\"%s\"} %llu\n", name, k == n - 1 ? "+Inf" : le[k],
                            (unsigned long long)cum);
    }
    return cum;
}

static void handle_metrics(struct evhttp_request *req, struct proxy_admin *a)
{
    struct proxy *px = a->px;
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    struct cluster_snapshot s;
    route_snapshot_get(&s);

    metric_header(b, "leaseway_requests_total", "counter", "Requests answered, by route and status code.");
    for (int r = 0; r < ROUTE_ACTION_COUNT; r++) {
        for (int code = 0; code < METRICS_CODES; code++) {
            uint64_t sum = 0;
            for (size_t i = 0; i < px->nworkers; i++)
                sum += proxy_metrics_read(&px->workers[i].metrics.requests[r][code]);
            if (sum)
                evbuffer_add_printf(b, "leaseway_requests_total{route=\"%s\",code=\"%d\"} %llu\n",
                                    route_action_str((enum route_action)r), code + 100,
                                    (unsigned long long)sum);
        }
    }
    metric_header(b, "leaseway_request_duration_seconds", "histogram",
                  "Time from the first byte of a request to the end of its response.");
    char le[METRICS_BUCKETS][16];
    for (int k = 0; k < METRICS_BUCKETS; k++)
        snprintf(le[k], sizeof(le[k]), "%g", proxy_metrics_bounds[k]);
    /*
     * _count is the +Inf bucket itself: a second read of the workers' counters disagreed with
     * the first under load, and the exposition format says they MUST be identical. _sum is read
     * just before the buckets (a worker adds to its bucket first), so it never counts a request
     * the buckets do not have.
     */
    uint64_t sum_us = 0;
    for (size_t i = 0; i < px->nworkers; i++)
        sum_us += proxy_metrics_read(&px->workers[i].metrics.duration_sum_us);
    uint64_t count = histogram_buckets(b, px, "leaseway_request_duration_seconds",
                                       offsetof(struct proxy_metrics, bucket), METRICS_BUCKETS, le);
    evbuffer_add_printf(b, "leaseway_request_duration_seconds_sum %.6f\n", (double)sum_us / 1e6);
    evbuffer_add_printf(b, "leaseway_request_duration_seconds_count %llu\n", (unsigned long long)count);

    metric_header(b, "leaseway_connections", "gauge", "Open client connections.");
    evbuffer_add_printf(b, "leaseway_connections %llu\n",
                        (unsigned long long)worker_sum(px, offsetof(struct proxy_metrics, connections)));
    metric_header(b, "leaseway_connections_accepted_total", "counter", "Client connections accepted.");
    evbuffer_add_printf(b, "leaseway_connections_accepted_total %llu\n",
                        (unsigned long long)worker_sum(px, offsetof(struct proxy_metrics, accepted)));
    metric_header(b, "leaseway_upstream_connects_total", "counter",
                  "Connections opened to the app or peers.");
    evbuffer_add_printf(
        b, "leaseway_upstream_connects_total %llu\n",
        (unsigned long long)worker_sum(px, offsetof(struct proxy_metrics, upstream_connects)));
    metric_header(b, "leaseway_upstream_errors_total", "counter",
                  "Failed connections or exchanges with the app.");
    evbuffer_add_printf(b, "leaseway_upstream_errors_total %llu\n",
                        (unsigned long long)worker_sum(px, offsetof(struct proxy_metrics, upstream_errors)));
    metric_header(b, "leaseway_send_batch_size", "histogram",
                  "Sends made per io_uring system call at the end of an event-loop pass.");
    char ble[METRICS_BATCH_BUCKETS][16];
    for (int k = 0; k < METRICS_BATCH_BUCKETS; k++)
        snprintf(ble[k], sizeof(ble[k]), "%d", 2 << k);
    uint64_t batches =
        histogram_buckets(b, px, "leaseway_send_batch_size", offsetof(struct proxy_metrics, batch_bucket),
                          METRICS_BATCH_BUCKETS, ble);
    evbuffer_add_printf(b, "leaseway_send_batch_size_sum %llu\n",
                        (unsigned long long)worker_sum(px, offsetof(struct proxy_metrics, batch_sends)));
    evbuffer_add_printf(b, "leaseway_send_batch_size_count %llu\n", (unsigned long long)batches);
    metric_header(b, "leaseway_is_primary", "gauge", "1 while this instance holds the primary lease.");
    evbuffer_add_printf(b, "leaseway_is_primary %d\n", s.role == ROUTE_ROLE_PRIMARY);
    metric_header(b, "leaseway_gate_open", "gauge", "1 while the gate is open.");
    evbuffer_add_printf(b, "leaseway_gate_open %d\n", s.gate == ROUTE_GATE_OPEN);
    metric_header(b, "leaseway_primary_changes_total", "counter", "Times the primary changed.");
    evbuffer_add_printf(b, "leaseway_primary_changes_total %llu\n", (unsigned long long)a->primary_changes);
    metric_header(b, "leaseway_consul_errors_total", "counter", "Failed Consul requests.");
    evbuffer_add_printf(b, "leaseway_consul_errors_total %llu\n",
                        (unsigned long long)(a->consul_errors_cb ? a->consul_errors_cb(a->cb_arg) : 0));
    if (!strcmp(px->cfg->lease, "consul")) {
        metric_header(b, "leaseway_consul_reachable", "gauge",
                      "1 while the last Consul request got an answer.");
        evbuffer_add_printf(b, "leaseway_consul_reachable %d\n", s.consul_reachable);
    }

    /* read racily, like the counters: a size_t load is atomic on every target we build for */
    uint64_t held = 0;
    for (size_t i = 0; i < px->nworkers; i++)
        held += __atomic_load_n(&px->workers[i].nheld, __ATOMIC_RELAXED);
    metric_header(b, "leaseway_held_requests", "gauge",
                  "Writes waiting for a primary to appear (--hold-timeout).");
    evbuffer_add_printf(b, "leaseway_held_requests %llu\n", (unsigned long long)held);
    metric_header(b, "leaseway_hold_limit", "gauge",
                  "Writes that may wait for a primary at once (all workers); more are answered 503.");
    evbuffer_add_printf(b, "leaseway_hold_limit %llu\n", (unsigned long long)PROXY_HOLD_MAX * px->nworkers);

    struct proxy_config *cfg = px->cfg;
    metric_header(b, "leaseway_info", "gauge", "Always 1; labels say which leaseway this is.");
    evbuffer_add_printf(b, "leaseway_info{version=\"");
    label_value(b, LEASEWAY_VERSION);
    evbuffer_add_printf(b, "\",instance=\"");
    label_value(b, cfg->instance);
    evbuffer_add_printf(b, "\",region=\"");
    label_value(b, cfg->region ? cfg->region : "");
    evbuffer_add_printf(b, "\",lease=\"");
    label_value(b, cfg->lease);
    evbuffer_add_printf(b, "\"} 1\n");
    metric_header(b, "leaseway_start_time_seconds", "gauge",
                  "When this process started, in seconds since the epoch.");
    evbuffer_add_printf(b, "leaseway_start_time_seconds %.3f\n", (double)px->started_ms / 1000.0);
    reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", b);
    evbuffer_free(b);
}

/* What the admin listener may be asked, known or not (it answers only GET, HEAD and POST). */
#define KNOWN_METHODS                                                                                        \
    (EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |               \
     EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH)

static void handle(struct evhttp_request *req, void *arg)
{
    struct proxy_admin *a = arg;
    const char *uri = evhttp_request_get_uri(req);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    char path[256];
    size_t n = strcspn(uri, "?");
    if (n >= sizeof(path))
        n = sizeof(path) - 1;
    memcpy(path, uri, n);
    path[n] = '\0';

    if (!(cmd & KNOWN_METHODS)) {
        /* RFC 9110 §15.6.2: 501 for a method the server does not know; 405 (below) for a known one */
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        reply_text(req, 501, "unknown method: this listener answers GET, HEAD and POST");
        return;
    }
    if (!strcmp(path, "/handoff")) {
        if (cmd != EVHTTP_REQ_POST) {
            reply_405(req, "POST", "use POST /handoff");
            return;
        }
        const char *refused = cross_site(req);
        if (refused) {
            reply_text(req, 403, refused);
            return;
        }
        const char *msg = a->handoff_cb ? a->handoff_cb(a->cb_arg) : "handoff needs the consul lease";
        reply_text(req, a->handoff_cb && !strncmp(msg, "ok", 2) ? 200 : 409, msg);
        return;
    }
    /* the path first: one that does not exist is 404 whatever the method (RFC 9110 §15.5.5) */
    enum {
        P_STATUS,
        P_HEALTH,
        P_METRICS,
        P_CLUSTER,
        P_PAGE,
        P_NONE
    } p = !strcmp(path, "/status")                             ? P_STATUS
          : !strcmp(path, "/health")                           ? P_HEALTH
          : !strcmp(path, "/metrics")                          ? P_METRICS
          : !strcmp(path, "/cluster")                          ? P_CLUSTER
          : !strcmp(path, "/") || !strcmp(path, "/index.html") ? P_PAGE
                                                               : P_NONE;
    bool get = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
    if (p == P_NONE) {
        if (!get) /* as for a 405: the body of a TRACE is not read, so it must not be read as a request */
            evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        reply_text(req, 404,
                   "not found: try / (status page), /status, /cluster, /health, /metrics or POST /handoff");
        return;
    }
    if (!get) {
        reply_405(req, "GET, HEAD", "method not allowed");
        return;
    }
    switch (p) {
    case P_STATUS: handle_status(req, a); break;
    case P_HEALTH: handle_health(req); break;
    case P_METRICS: handle_metrics(req, a); break;
    case P_CLUSTER: handle_cluster(req, a); break;
    case P_PAGE: handle_page(req); break;
    case P_NONE: break;
    }
}

int proxy_admin_start(struct proxy_admin *a, struct event_base *base, const struct sockaddr *addr,
                      socklen_t len)
{
    struct evconnlistener *l = evconnlistener_new_bind(
        base, NULL, NULL, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, addr,
        (int)len);
    if (!l)
        return -1; /* errno is the bind's or listen's: kept for the caller's message */
    if (!(a->http = evhttp_new(base)))
        goto out_listener;
    if (!evhttp_bind_listener(a->http, l)) /* on success a->http owns l */
        goto out_http;
    evhttp_set_gencb(a->http, handle, a);
    /*
     * Every method reaches handle(), which answers 405 with Allow (RFC 9110 §15.5.6) like for
     * PUT, or 501 for a method nobody knows: libevent lets through only GET, POST, HEAD, PUT and
     * DELETE and answers the others (OPTIONS, PATCH, TRACE, and methods it does not know, which
     * 2.1 types as 1 << 15) with its own 501 HTML page.
     */
    evhttp_set_allowed_methods(a->http, 0xffff);
    evhttp_set_timeout(a->http, 10);
    struct proxy_config *cfg = a->px->cfg;
    /* without it the page shows this instance only; the proxy itself does not need it */
    if (!strcmp(cfg->lease, "consul") &&
        !(a->catalog = consul_catalog_new(base, cfg->consul_addr, cfg->service)))
        proxy_log_warn("status page: cannot watch the service in Consul; showing this instance only",
                       "service=%s", cfg->service);
    return 0;

out_http:
    evhttp_free(a->http);
    a->http = NULL;
out_listener:
    evconnlistener_free(l);
    errno = ENOMEM;
    return -1;
}

void proxy_admin_stop(struct proxy_admin *a)
{
    if (a->http)
        evhttp_free(a->http);
    a->http = NULL;
    consul_catalog_free(a->catalog);
    a->catalog = NULL;
}
