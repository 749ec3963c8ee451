/*
 * Types shared by proxy/, consul/, health/ and routing/.
 *
 * The control thread (consul/ + health/) publishes an immutable, versioned
 * cluster snapshot; proxy workers copy the newest one when its version
 * changes (one atomic load per request, no lock on the hot path) and hand
 * it with the request facts to route_decide().
 */
#ifndef LEASEWAY_ROUTE_T_H
#define LEASEWAY_ROUTE_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define ROUTE_ID_MAX     128
#define ROUTE_URL_MAX    256
#define ROUTE_REASON_MAX 160

/* Who holds the write path. */
enum route_role {
    ROUTE_ROLE_UNKNOWN = 0, /* no lease information yet (or Consul never answered) */
    ROUTE_ROLE_PRIMARY,     /* this instance holds the lease */
    ROUTE_ROLE_REPLICA,     /* another instance holds it, or none does */
    ROUTE_ROLE_COUNT
};

/* Whether this instance takes traffic. */
enum route_gate {
    ROUTE_GATE_CLOSED = 0, /* migrations pending or app not healthy */
    ROUTE_GATE_OPEN,       /* every configured condition holds */
    ROUTE_GATE_DRAINING,   /* shutting down: finish in-flight, take nothing new */
    ROUTE_GATE_COUNT
};

struct cluster_snapshot {
    uint64_t version; /* strictly increasing per publication */
    enum route_role role;
    enum route_gate gate;
    char gate_reason[ROUTE_REASON_MAX];
    bool primary_known;
    char primary_id[ROUTE_ID_MAX];   /* "" while unknown */
    char primary_url[ROUTE_URL_MAX]; /* advertised URL of the primary's proxy */
    /* the primary's proxy, resolved by the control thread (workers never resolve names) */
    struct sockaddr_storage primary_addr;
    socklen_t primary_addr_len; /* 0: not resolved */
    bool primary_tls;           /* https:// */
    int64_t primary_since_ms;   /* wall clock, ms */
    uint64_t lease_index;       /* ModifyIndex of the lease key (0: none) */
    /*
     * Fencing (SPEC §5): a primary may accept a write locally only while
     * route_fence_now_ms() (CLOCK_BOOTTIME) < fence_deadline_ms. 0 means no fence (static lease).
     */
    int64_t fence_deadline_ms;
    bool consul_reachable;
    bool consul_known_leader;
    int64_t consul_last_contact_ms;
};

const char *route_role_str(enum route_role role);
const char *route_gate_str(enum route_gate gate);

#endif
