/*
 * The cluster for the status page: a blocking query on
 * /v1/health/service/<service>?stale on the control thread's loop, through
 * the same libcurl-multi client as the lease (consul_http.c).
 *
 * It costs Consul nothing while nobody looks: the watch starts on the first
 * consul_catalog_get() and stops after CONSUL_CATALOG_IDLE_MS without one.
 * `stale` lets any server answer (usually < 50 ms behind), which is plenty
 * for a page and keeps working while the cluster has no leader. Requests are
 * rate-limited by the same token bucket as the lease watch, and failures back
 * off as the agent's requests do; the last good reply is kept meanwhile
 * (Fabio's lesson in CONSUL.md: keep the last known state).
 */
#include "consul/consul_catalog.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "consul/consul-int.h"

struct consul_catalog {
    struct consul_http_conf conf;
    struct consul_http *http;
    struct consul_http_req *req; /* in flight, or NULL */
    struct event *timer;         /* next request */
    char *path;                  /* /v1/health/service/<escaped service> */
    json_t *entries;             /* last good reply */
    uint64_t index;              /* blocking-query index (0: plain read) */
    int64_t got_ms;              /* consul_now_ms() of the last good reply; -1 none */
    int64_t wanted_ms;           /* consul_now_ms() of the last reader */
    unsigned attempt;            /* consecutive failures */
    uint32_t rnd;
    struct consul_bucket bucket;
    char error[256];
};

static uint32_t next_rnd(struct consul_catalog *c)
{
    c->rnd ^= c->rnd << 13;
    c->rnd ^= c->rnd >> 17;
    c->rnd ^= c->rnd << 5;
    return c->rnd;
}

static void arm(struct consul_catalog *c, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(c->timer, &tv);
}

static void fetch_done(const struct consul_http_resp *r, void *arg)
{
    struct consul_catalog *c = arg;
    json_error_t jerr;
    json_t *root;

    c->req = NULL;
    if (r->status != 200) {
        if (r->status == 0)
            snprintf(c->error, sizeof(c->error), "cannot reach Consul: %s", r->error ? r->error : "?");
        else
            snprintf(c->error, sizeof(c->error), "Consul answered HTTP %ld%s", r->status,
                     r->status == 403 ? " (check CONSUL_HTTP_TOKEN / CONSUL_HTTP_TOKEN_FILE)" : "");
        if (r->status == 403)
            consul_http_conf_reload_token(&c->conf);
        c->index = 0;
        arm(c, consul_backoff_ms(c->attempt++, next_rnd(c)));
        return;
    }
    root = json_loadb(r->body, r->body_len, 0, &jerr);
    if (!json_is_array(root)) {
        json_decref(root);
        snprintf(c->error, sizeof(c->error), "Consul sent a malformed reply: %s", jerr.text);
        c->index = 0;
        arm(c, consul_backoff_ms(c->attempt++, next_rnd(c)));
        return;
    }
    json_decref(c->entries);
    c->entries = root;
    c->got_ms = consul_now_ms();
    c->error[0] = '\0';
    c->attempt = 0;
    c->index = consul_index_next(c->index, r->has_index, r->index);
    arm(c, 0);
}

/* The timer: one more request, unless nobody has looked for a while. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct consul_catalog *c = arg;
    int64_t now = consul_now_ms(), wait;
    char query[96];

    (void)fd;
    (void)what;
    if (c->req != NULL || now - c->wanted_ms > CONSUL_CATALOG_IDLE_MS)
        return; /* idle: the next reader starts it again */
    if ((wait = consul_bucket_take(&c->bucket, now)) > 0) {
        arm(c, wait);
        return;
    }
    if (c->index > 0)
        snprintf(query, sizeof(query), "stale&index=%llu&wait=%ds", (unsigned long long)c->index,
                 CONSUL_CATALOG_WAIT_S);
    else
        snprintf(query, sizeof(query), "stale");
    /* Consul adds up to wait/16 of jitter: allow for it and a little more */
    c->req = consul_http_request(c->http, "GET", c->path, query, NULL,
                                 (int64_t)CONSUL_CATALOG_WAIT_S * 1000 * 17 / 16 + 5000, fetch_done, c);
    if (c->req == NULL) {
        snprintf(c->error, sizeof(c->error), "cannot start a Consul request");
        arm(c, consul_backoff_ms(c->attempt++, next_rnd(c)));
    }
}

struct consul_catalog *consul_catalog_new(struct event_base *base, const char *addr, const char *service)
{
    struct consul_catalog *c = calloc(1, sizeof(*c));
    const char *err = NULL;
    char *esc;

    if (c == NULL)
        return NULL;
    if (consul_http_conf_init(&c->conf, addr, &err) < 0) {
        consul_log("error", "msg=\"status page: bad Consul client configuration\" error=\"%s\"", err);
        free(c);
        return NULL;
    }
    c->got_ms = -1;
    c->wanted_ms = consul_now_ms();
    c->rnd = (uint32_t)consul_now_ms() ^ ((uint32_t)getpid() << 8) ^ 0x85ebca6bu;
    if (c->rnd == 0)
        c->rnd = 1;
    consul_bucket_init(&c->bucket, consul_now_ms());
    esc = curl_easy_escape(NULL, service && service[0] ? service : "leaseway", 0);
    if (esc == NULL || asprintf(&c->path, "/v1/health/service/%s", esc) < 0)
        c->path = NULL;
    curl_free(esc);
    c->http = consul_http_new(base, &c->conf);
    c->timer = evtimer_new(base, on_timer, c);
    if (c->path == NULL || c->http == NULL || c->timer == NULL) {
        consul_catalog_free(c);
        return NULL;
    }
    return c;
}

void consul_catalog_free(struct consul_catalog *c)
{
    if (c == NULL)
        return;
    consul_http_free(c->http); /* cancels c->req without calling back */
    if (c->timer)
        event_free(c->timer);
    json_decref(c->entries);
    free(c->path);
    consul_http_conf_free(&c->conf);
    free(c);
}

void consul_catalog_get(struct consul_catalog *c, struct consul_catalog_view *view)
{
    int64_t now = consul_now_ms();

    c->wanted_ms = now;
    if (c->req == NULL && !evtimer_pending(c->timer, NULL))
        arm(c, 0);
    view->entries = c->entries ? json_incref(c->entries) : NULL;
    view->age_ms = c->got_ms < 0 ? -1 : now - c->got_ms;
    snprintf(view->error, sizeof(view->error), "%s", c->error);
    view->watching = true;
}
