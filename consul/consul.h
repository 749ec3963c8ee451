/*
 * Consul, on the control thread's event loop: the primary lease (watch,
 * candidacy, fencing), the session, and service registration (SPEC §5).
 *
 * The proxy owns a struct consul_agent; consul/ reports what it learns
 * through one callback, and proxy/ turns that into the cluster snapshot that
 * workers read. consul/ never touches worker threads.
 */
#ifndef LEASEWAY_CONSUL_H
#define LEASEWAY_CONSUL_H

#include <stdbool.h>
#include <stdint.h>

#include "routing/route-t.h"

struct event_base;

/* Everything consul/ needs; strings are copied by consul_agent_new(). */
struct consul_config {
    const char *addr;      /* --consul-addr: http://, https://, unix:// (CONSUL_* env applied inside) */
    const char *lease_key; /* --lease-key */
    const char *instance;  /* --instance */
    const char *region;    /* --region ("" if unset) */
    const char *advertise; /* --advertise URL */
    const char *service;   /* --service */
    const char *peer_url_template; /* --peer-url-template, NULL if unset */
    const char *version;           /* leaseway's version, for Meta */
    bool candidate;                /* --candidate */
    bool register_service;         /* --register */
    int64_t lease_ttl_ms;          /* --lease-ttl */
    int64_t lock_delay_ms;         /* --lock-delay */
};

/* What consul/ knows now; a copy is passed to the callback on every change. */
struct consul_state {
    enum route_role role;
    bool primary_known;
    char primary_id[ROUTE_ID_MAX];
    char primary_url[ROUTE_URL_MAX];
    int64_t primary_since_ms;  /* wall clock */
    uint64_t lease_index;      /* ModifyIndex of the lease key */
    int64_t fence_deadline_ms; /* CLOCK_BOOTTIME ms; writes refused locally from then on (primary only) */
    /*
     * This instance holds the lease but its fence has run out (Consul unreachable or not
     * answering in time): role is unknown and no primary is known until Consul answers again.
     */
    bool fenced;
    bool reachable;
    bool known_leader;       /* false while Consul does not answer */
    int64_t last_contact_ms; /* X-Consul-LastContact; -1 unknown (also while Consul does not answer) */
    /*
     * Why this candidate cannot take the lease until an operator acts (Consul refuses its
     * --lease-ttl), with a hint; "" when nothing is known to stand in the way.
     */
    char lease_error[320];
};

typedef void (*consul_state_cb)(const struct consul_state *state, void *arg);
typedef void (*consul_done_cb)(void *arg);

struct consul_agent;

/*
 * Returns NULL (and logs why) on bad configuration. The caller frees with consul_agent_free().
 * cb runs on the loop from consul/ code: it may call consul_agent_set_gate()/handoff(), but must
 * not free the agent (free it from the done callback of consul_agent_shutdown(), or after the loop).
 */
struct consul_agent *consul_agent_new(struct event_base *base, const struct consul_config *cfg,
                                      consul_state_cb cb, void *arg);
/* Begin: register, create the session, watch and (if candidate) acquire. */
__attribute__((warn_unused_result)) int consul_agent_start(struct consul_agent *agent);
/* The gate changed: updates the ready check (passing only when open; output = reason) and Meta.gate. */
void consul_agent_set_gate(struct consul_agent *agent, enum route_gate gate, const char *reason);
/*
 * May this instance lead now? false (its app is not healthy, or it drains): a candidate keeps
 * its session but stays out of the race until true again (lease state "sidelined"); a holder
 * keeps the lease. Call it before consul_agent_start() and on every change. Default: true.
 */
void consul_agent_set_fit(struct consul_agent *agent, bool fit);
/* Give up the lease if held (POST /handoff): release; stay a candidate after lock-delay. */
void consul_agent_handoff(struct consul_agent *agent);
/* Shutdown: release the lease, destroy the session, deregister; then call done (at most ~2 s). */
void consul_agent_shutdown(struct consul_agent *agent, consul_done_cb done, void *arg);
/*
 * After the shutdown's done callback: watch the lease key again, read-only, until the agent is
 * freed, so that the state callback names the next primary (late writes can be forwarded to it).
 */
void consul_agent_follow(struct consul_agent *agent);
void consul_agent_free(struct consul_agent *agent);
/* Counters for /metrics and /status. */
uint64_t consul_agent_errors(const struct consul_agent *agent);
uint64_t consul_agent_primary_changes(const struct consul_agent *agent);
/* Debug: HTTP requests sent to Consul so far (steady state is ~1.3/s with a 10 s TTL). */
uint64_t consul_agent_requests(const struct consul_agent *agent);
/* Debug: the candidate's lease state ("standby", "holding", ...), for logs and /status. */
const char *consul_agent_lease_state(const struct consul_agent *agent);

/*
 * Where consul/'s log lines go. line is logfmt starting with msg="..." (never a token); level is
 * "debug", "info", "warn" or "error". Default (NULL): stderr. Set it once, before consul/ runs.
 */
typedef void (*consul_log_sink)(const char *level, const char *line);
void consul_log_set_sink(consul_log_sink sink);

/*
 * `leaseway status [--json] [--service NAME] [--consul-addr URL] [--lease-key KEY]`:
 * argv holds the arguments after "status" (argv[0] is the first option).
 * Prints the cluster from Consul's health endpoint; returns the process exit code (0, or 1
 * when Consul cannot be reached or answers with an error, 2 on bad usage).
 */
int consul_status_main(int argc, char **argv);

#endif
