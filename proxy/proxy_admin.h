/*
 * Admin listener: /status, /health, /metrics, POST /handoff (SPEC §6).
 * Callbacks let the control thread supply what only it knows.
 */
#ifndef LEASEWAY_PROXY_ADMIN_H
#define LEASEWAY_PROXY_ADMIN_H

#include <jansson.h>
#include <stdint.h>

#include "proxy/proxy.h"

struct evhttp;
struct evhttp_request;

struct proxy_admin {
    struct proxy *px;
    struct evhttp *http;
    uint64_t primary_changes;
    void *cb_arg;
    /* returns "ok: ..." on success, else the reason */
    const char *(*handoff_cb)(void *arg);
    void (*migrations_cb)(void *arg, json_int_t *applied, json_t *pending);
    uint64_t (*consul_errors_cb)(void *arg);
    void (*page_cb)(void *arg, struct evhttp_request *req);
};

__attribute__((warn_unused_result)) int proxy_admin_start(struct proxy_admin *a, struct event_base *base,
                                                          const char *hostport);
void proxy_admin_stop(struct proxy_admin *a);

#endif
