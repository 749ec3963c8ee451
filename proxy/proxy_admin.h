/*
 * Admin listener: the status page (GET /), /status, /cluster, /health,
 * /metrics, POST /handoff (SPEC §6). Callbacks let the control thread supply
 * what only it knows.
 */
#ifndef LEASEWAY_PROXY_ADMIN_H
#define LEASEWAY_PROXY_ADMIN_H

#include <jansson.h>
#include <stdint.h>

#include "proxy/proxy.h"

struct evhttp;
struct evhttp_request;
struct consul_catalog;

struct proxy_admin {
    struct proxy *px;
    struct evhttp *http;
    struct consul_catalog *catalog; /* the cluster for /cluster (consul lease only); owned */
    uint64_t primary_changes;
    void *cb_arg;
    /* returns "ok: ..." on success, else the reason */
    const char *(*handoff_cb)(void *arg);
    void (*migrations_cb)(void *arg, json_int_t *applied, json_t *pending);
    uint64_t (*consul_errors_cb)(void *arg);
    /* why this instance cannot take the lease, or NULL (/status lease.error) */
    const char *(*lease_error_cb)(void *arg);
};

/* The status page (proxy_admin_page.c). */
extern const char proxy_admin_page[];

/*
 * Listen on addr (proxy_parse_addr() of --admin) on base (the control thread's loop). With the
 * consul lease it also creates the catalog watch behind /cluster, which runs only while the page
 * is open. Returns 0, or -1 with errno set and nothing to stop.
 */
__attribute__((warn_unused_result)) int proxy_admin_start(struct proxy_admin *a, struct event_base *base,
                                                          const struct sockaddr *addr, socklen_t len);
void proxy_admin_stop(struct proxy_admin *a);

#endif
