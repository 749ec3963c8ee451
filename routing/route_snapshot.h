/*
 * The snapshot store: one writer (the control thread), many readers (workers).
 */
#ifndef LEASEWAY_ROUTE_SNAPSHOT_H
#define LEASEWAY_ROUTE_SNAPSHOT_H

#include "routing/route-t.h"

/* Publish a new snapshot; the store copies *snap and stamps its version. */
void route_snapshot_publish(const struct cluster_snapshot *snap);

/*
 * Refresh a reader's private copy. Cheap when nothing changed (one atomic
 * load); returns true when *local was updated.
 */
bool route_snapshot_refresh(struct cluster_snapshot *local);

/* A full copy of the newest snapshot (control thread, admin). */
void route_snapshot_get(struct cluster_snapshot *out);

#endif
