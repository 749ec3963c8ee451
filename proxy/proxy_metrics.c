/*
 * Request accounting on the worker's hot path: two relaxed stores, no lock.
 */
#include "proxy/proxy_metrics.h"

const double proxy_metrics_bounds[METRICS_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 1e300,
};

void proxy_metrics_request(struct proxy_metrics *m, enum route_action route, int status, int64_t dur_ns)
{
    if (status >= 100 && status < 600 && (unsigned)route < ROUTE_ACTION_COUNT)
        proxy_metrics_add(&m->requests[route][status - 100], 1);
    double s = (double)dur_ns / 1e9;
    int b = 0;
    while (b < METRICS_BUCKETS - 1 && s > proxy_metrics_bounds[b])
        b++;
    proxy_metrics_add(&m->bucket[b], 1);
    proxy_metrics_add(&m->duration_sum_us, dur_ns / 1000);
}

void proxy_metrics_batch(struct proxy_metrics *m, size_t sends)
{
    int b = 0;
    while (b < METRICS_BATCH_BUCKETS - 1 && sends > ((size_t)2 << b))
        b++;
    proxy_metrics_add(&m->batch_bucket[b], 1);
    proxy_metrics_add(&m->batch_sends, (int64_t)sends);
}
