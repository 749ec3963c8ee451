/*
 * The admin listener (SPEC §6) on the control thread: /status, /health,
 * /metrics and POST /handoff. It is off the request path, so libevent's
 * evhttp is good enough here.
 */
#include "proxy/proxy_admin.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy_log.h"
#include "routing/route_snapshot.h"

static void reply(struct evhttp_request *req, int code, const char *type, struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", type);
    evhttp_add_header(h, "Cache-Control", "no-store");
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

static void handle_status(struct evhttp_request *req, struct proxy_admin *a)
{
    json_t *root = status_json(a);
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

static void metric_header(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
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
    uint64_t cum = 0, count = 0, sum_us = 0;
    for (size_t i = 0; i < px->nworkers; i++) {
        count += proxy_metrics_read(&px->workers[i].metrics.duration_count);
        sum_us += proxy_metrics_read(&px->workers[i].metrics.duration_sum_us);
    }
    for (int k = 0; k < METRICS_BUCKETS; k++) {
        for (size_t i = 0; i < px->nworkers; i++)
            cum += proxy_metrics_read(&px->workers[i].metrics.bucket[k]);
        if (k == METRICS_BUCKETS - 1)
            evbuffer_add_printf(b, "leaseway_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                                (unsigned long long)cum);
        else
            evbuffer_add_printf(b, "leaseway_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                                proxy_metrics_bounds[k], (unsigned long long)cum);
    }
    evbuffer_add_printf(b, "leaseway_request_duration_seconds_sum %.6f\n", (double)sum_us / 1e6);
    evbuffer_add_printf(b, "leaseway_request_duration_seconds_count %llu\n", (unsigned long long)count);

    uint64_t conns = 0, upconn = 0, uperr = 0;
    for (size_t i = 0; i < px->nworkers; i++) {
        conns += proxy_metrics_read(&px->workers[i].metrics.connections);
        upconn += proxy_metrics_read(&px->workers[i].metrics.upstream_connects);
        uperr += proxy_metrics_read(&px->workers[i].metrics.upstream_errors);
    }
    metric_header(b, "leaseway_connections", "gauge", "Open client connections.");
    evbuffer_add_printf(b, "leaseway_connections %llu\n", (unsigned long long)conns);
    metric_header(b, "leaseway_upstream_connects_total", "counter",
                  "Connections opened to the app or peers.");
    evbuffer_add_printf(b, "leaseway_upstream_connects_total %llu\n", (unsigned long long)upconn);
    metric_header(b, "leaseway_upstream_errors_total", "counter",
                  "Failed connections or exchanges with the app.");
    evbuffer_add_printf(b, "leaseway_upstream_errors_total %llu\n", (unsigned long long)uperr);
    metric_header(b, "leaseway_is_primary", "gauge", "1 while this instance holds the primary lease.");
    evbuffer_add_printf(b, "leaseway_is_primary %d\n", s.role == ROUTE_ROLE_PRIMARY);
    metric_header(b, "leaseway_gate_open", "gauge", "1 while the gate is open.");
    evbuffer_add_printf(b, "leaseway_gate_open %d\n", s.gate == ROUTE_GATE_OPEN);
    metric_header(b, "leaseway_primary_changes_total", "counter", "Times the primary changed.");
    evbuffer_add_printf(b, "leaseway_primary_changes_total %llu\n", (unsigned long long)a->primary_changes);
    metric_header(b, "leaseway_consul_errors_total", "counter", "Failed Consul requests.");
    evbuffer_add_printf(b, "leaseway_consul_errors_total %llu\n",
                        (unsigned long long)(a->consul_errors_cb ? a->consul_errors_cb(a->cb_arg) : 0));
    reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", b);
    evbuffer_free(b);
}

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

    if (!strcmp(path, "/handoff")) {
        if (cmd != EVHTTP_REQ_POST) {
            reply_text(req, 405, "use POST /handoff");
            return;
        }
        const char *msg = a->handoff_cb ? a->handoff_cb(a->cb_arg) : "handoff needs the consul lease";
        reply_text(req, a->handoff_cb && !strncmp(msg, "ok", 2) ? 200 : 409, msg);
        return;
    }
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        reply_text(req, 405, "method not allowed");
        return;
    }
    if (!strcmp(path, "/status"))
        handle_status(req, a);
    else if (!strcmp(path, "/health"))
        handle_health(req);
    else if (!strcmp(path, "/metrics"))
        handle_metrics(req, a);
    else if (!strcmp(path, "/") && a->page_cb)
        a->page_cb(a->cb_arg, req);
    else
        reply_text(req, 404, "not found: try /status, /health, /metrics or POST /handoff");
}

int proxy_admin_start(struct proxy_admin *a, struct event_base *base, const char *hostport)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (!colon || (size_t)(colon - hostport) >= sizeof(host))
        return -1;
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    a->http = evhttp_new(base);
    if (!a->http)
        return -1;
    evhttp_set_gencb(a->http, handle, a);
    evhttp_set_timeout(a->http, 10);
    if (!evhttp_bind_socket_with_handle(a->http, host, (ev_uint16_t)atoi(colon + 1))) {
        evhttp_free(a->http);
        a->http = NULL;
        return -1;
    }
    return 0;
}

void proxy_admin_stop(struct proxy_admin *a)
{
    if (a->http)
        evhttp_free(a->http);
    a->http = NULL;
}
