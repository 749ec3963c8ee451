/*
 * Snapshot store. The writer copies the new snapshot under a mutex and then
 * bumps an atomic version; a reader compares that version with its private
 * copy's and only takes the mutex when it changed. Role and primary changes
 * happen a few times a day, requests thousands of times a second: the hot
 * path is one relaxed-acquire load.
 */
#include "routing/route_snapshot.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

static pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cluster_snapshot store;
static _Atomic uint64_t store_version;

void route_snapshot_publish(const struct cluster_snapshot *snap)
{
    pthread_mutex_lock(&store_lock);
    uint64_t v = atomic_load_explicit(&store_version, memory_order_relaxed) + 1;
    store = *snap;
    store.version = v;
    atomic_store_explicit(&store_version, v, memory_order_release);
    pthread_mutex_unlock(&store_lock);
}

bool route_snapshot_refresh(struct cluster_snapshot *local)
{
    if (atomic_load_explicit(&store_version, memory_order_acquire) == local->version)
        return false;
    pthread_mutex_lock(&store_lock);
    *local = store;
    pthread_mutex_unlock(&store_lock);
    return true;
}

void route_snapshot_get(struct cluster_snapshot *out)
{
    pthread_mutex_lock(&store_lock);
    *out = store;
    pthread_mutex_unlock(&store_lock);
}

const char *route_role_str(enum route_role role)
{
    static const char *const names[ROUTE_ROLE_COUNT] = {"unknown", "primary", "replica"};
    return (unsigned)role < ROUTE_ROLE_COUNT ? names[role] : "invalid";
}

const char *route_gate_str(enum route_gate gate)
{
    static const char *const names[ROUTE_GATE_COUNT] = {"closed", "open", "draining"};
    return (unsigned)gate < ROUTE_GATE_COUNT ? names[gate] : "invalid";
}
