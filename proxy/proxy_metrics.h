/*
 * Per-worker request counters and a latency histogram. Each worker writes
 * only its own struct (relaxed atomic stores, no contention); the admin
 * thread sums them when /metrics is scraped.
 */
#ifndef LEASEWAY_PROXY_METRICS_H
#define LEASEWAY_PROXY_METRICS_H

#include <stdint.h>

#include "routing/route.h"

#define METRICS_BUCKETS       14
#define METRICS_CODES         500 /* status 100..599 */
#define METRICS_BATCH_BUCKETS 8   /* send batch sizes: <=2, 4, 8, ... 128, more */

struct proxy_metrics {
    uint64_t requests[ROUTE_ACTION_COUNT][METRICS_CODES];
    uint64_t bucket[METRICS_BUCKETS]; /* cumulative at render time, per-bucket here */
    uint64_t duration_sum_us;         /* the count is the buckets' total */
    uint64_t connections;             /* open client connections (gauge) */
    uint64_t idle;         /* of which idle between requests (gauge): draining waits for the others */
    uint64_t local_writes; /* writes routed to the local app as the primary's, not done yet (gauge) */
    uint64_t accepted;     /* client connections accepted (counter) */
    uint64_t upstream_connects;
    uint64_t upstream_errors;
    uint64_t batch_bucket[METRICS_BATCH_BUCKETS]; /* io_uring send batches by size, per-bucket */
    uint64_t batch_sends;                         /* sends in them */
};

extern const double proxy_metrics_bounds[METRICS_BUCKETS]; /* seconds; the last is +Inf */

/* Worker side: one finished request. */
void proxy_metrics_request(struct proxy_metrics *m, enum route_action route, int status, int64_t dur_ns);

/* Worker side: one io_uring_enter(2) that made `sends` sends. Bucket k holds sizes up to 2^(k+1). */
void proxy_metrics_batch(struct proxy_metrics *m, size_t sends);

static inline void proxy_metrics_add(uint64_t *counter, int64_t delta)
{
    __atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + (uint64_t)delta, __ATOMIC_RELAXED);
}

static inline uint64_t proxy_metrics_read(const uint64_t *counter)
{
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

#endif
