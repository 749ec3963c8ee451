/*
 * The service's instances as Consul's health endpoint lists them
 * (GET /v1/health/service/<service>), for the admin status page.
 *
 * A blocking-query watch on the control thread's event loop that runs only
 * while someone is looking: consul_catalog_get() starts it, and it stops by
 * itself CONSUL_CATALOG_IDLE_MS after the last call. Readers get the last
 * reply at once and never wait for Consul.
 */
#ifndef LEASEWAY_CONSUL_CATALOG_H
#define LEASEWAY_CONSUL_CATALOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define CONSUL_CATALOG_IDLE_MS 30000 /* no reader for this long: stop watching */
#define CONSUL_CATALOG_WAIT_S  30    /* blocking-query wait */

struct event_base;
struct consul_catalog;

/* What the catalog knows now. */
struct consul_catalog_view {
    json_t *entries; /* new reference to the last reply (a JSON array), or NULL; caller decrefs */
    int64_t age_ms;  /* since that reply arrived; -1 when there is none */
    char error[256]; /* why the last request failed ("" when it did not) */
    bool watching;   /* a request is in flight or scheduled */
};

/*
 * addr: --consul-addr (CONSUL_* environment applied as for the lease). base must outlive the
 * catalog. Returns NULL (and logs why) on bad configuration or no memory; free with
 * consul_catalog_free(), which cancels any request in flight (no callback runs afterwards).
 */
struct consul_catalog *consul_catalog_new(struct event_base *base, const char *addr, const char *service);
void consul_catalog_free(struct consul_catalog *c);

/* Fill *view (never blocks) and note that someone is looking: (re)starts the watch if idle. */
void consul_catalog_get(struct consul_catalog *c, struct consul_catalog_view *view);

#endif
