/*
 * consul/ internals shared by its files and by the unit tests: the HTTP
 * client on the event loop, pure decoding of Consul's JSON, and the pure
 * rules (blocking-query index, backoff, token bucket, fencing, lease state
 * machine). Nothing here is for proxy/: its interface is consul/consul.h.
 */
#ifndef LEASEWAY_CONSUL_INT_H
#define LEASEWAY_CONSUL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consul/consul.h"

#define CONSUL_BODY_MAX         (1024 * 1024) /* replies larger than this are refused */
#define CONSUL_ALIVE_TTL_MS     3000          /* alive TTL check (SPEC §5) */
#define CONSUL_ALIVE_EVERY_MS   1000          /* alive feed period */
#define CONSUL_ALIVE_RESEND_MS  400           /* ... this soon after the last while one is unanswered */
#define CONSUL_ALIVE_IN_FLIGHT  8             /* alive feeds in flight at most */
#define CONSUL_READY_TTL_MS     30000         /* ready TTL check */
#define CONSUL_READY_EVERY_MS   10000         /* periodic ready refresh */
#define CONSUL_FENCE_MARGIN_MS  500           /* safety margin subtracted from the fence */
#define CONSUL_WATCH_WAIT_MS    (5 * 60 * 1000)
#define CONSUL_BACKOFF_BASE_MS  200
#define CONSUL_BACKOFF_CAP_MS   5000
#define CONSUL_BUCKET_BURST     2
#define CONSUL_BUCKET_REFILL_MS 500 /* one watch token per 500 ms beyond the burst */

/* ---- logging (logfmt on stderr for now; never pass the token) ---- */

__attribute__((format(printf, 2, 3))) void consul_log(const char *level, const char *fmt, ...);

/* ---- time ---- */

int64_t consul_now_ms(void);  /* CLOCK_BOOTTIME (counts suspend: the fence relies on it) */
int64_t consul_wall_ms(void); /* CLOCK_REALTIME */

/* ---- the HTTP client ---- */

/* Where and how to reach Consul, from consul_config.addr and CONSUL_* (CONSUL.md "Client conventions"). */
struct consul_http_conf {
    char *base_url;      /* scheme://host:port[/prefix], no trailing '/'; "http://localhost" for unix:// */
    char *unix_path;     /* unix:// socket path, or NULL */
    char *token;         /* X-Consul-Token, or NULL */
    char *token_file;    /* CONSUL_HTTP_TOKEN_FILE, re-read on 403 */
    char *userpwd;       /* CONSUL_HTTP_AUTH "user:pass", or NULL */
    char *cacert;        /* CONSUL_CACERT */
    char *capath;        /* CONSUL_CAPATH */
    char *client_cert;   /* CONSUL_CLIENT_CERT */
    char *client_key;    /* CONSUL_CLIENT_KEY */
    char *connect_to;    /* CURLOPT_CONNECT_TO entry when CONSUL_TLS_SERVER_NAME is set */
    char *ns;            /* CONSUL_NAMESPACE */
    char *partition;     /* CONSUL_PARTITION */
    unsigned verify : 1; /* CONSUL_HTTP_SSL_VERIFY (default true) */
};

/*
 * Build *conf from addr (NULL or "" = $CONSUL_HTTP_ADDR, else http://127.0.0.1:8500) and the
 * environment. On failure *err is a constant string and *conf holds nothing to free.
 */
__attribute__((warn_unused_result)) int consul_http_conf_init(struct consul_http_conf *conf, const char *addr,
                                                              const char **err);
void consul_http_conf_free(struct consul_http_conf *conf);
/* Re-read the token file (if any); true when the token changed. */
bool consul_http_conf_reload_token(struct consul_http_conf *conf);

/* A finished request. Everything is valid only during the callback. */
struct consul_http_resp {
    long status;       /* HTTP status, 0 when no response (transport error) */
    const char *error; /* transport error text (constant or curl's), NULL if status != 0 */
    const char *body;  /* NUL-terminated, never NULL */
    size_t body_len;
    bool has_index;
    uint64_t index; /* X-Consul-Index */
    bool has_leader;
    bool known_leader;       /* X-Consul-KnownLeader */
    int64_t last_contact_ms; /* X-Consul-LastContact, -1 if absent */
    int64_t sent_ms;         /* consul_now_ms() before the request was handed to libcurl */
};

/* Error causes, compared by pointer. */
extern const char consul_err_body_too_large[];
extern const char consul_err_timeout[];

typedef void (*consul_http_cb)(const struct consul_http_resp *resp, void *arg);

struct consul_http;
struct consul_http_req;
struct event_base;

/* The client borrows base and conf (both must outlive it). NULL on failure. */
struct consul_http *consul_http_new(struct event_base *base, struct consul_http_conf *conf);
/* Cancels every request in flight (no callbacks) and cleans up libcurl before the base goes. */
void consul_http_free(struct consul_http *http);
/*
 * Start a request: method "GET"/"PUT", path "/v1/..." (already escaped), query without '?'
 * (may be NULL; ns/partition are appended), body may be NULL. cb runs once from the event
 * loop, never from inside this call and never from inside a libcurl callback. Returns NULL
 * (and no callback) only when the request could not be created.
 */
struct consul_http_req *consul_http_request(struct consul_http *http, const char *method, const char *path,
                                            const char *query, const char *body, int64_t timeout_ms,
                                            consul_http_cb cb, void *arg);
/* Forget a request: its callback will not run. Safe from any callback of this client. */
void consul_http_cancel(struct consul_http_req *req);
uint64_t consul_http_sent(const struct consul_http *http); /* requests handed to libcurl */

/* Full URL for path + query (+ ns/partition). Caller frees; NULL if too long. */
char *consul_http_url(const struct consul_http_conf *conf, const char *path, const char *query);
/*
 * Apply conf (token header, TLS, unix socket, auth) to a CURL easy handle. The caller owns
 * *headers and *connect_to (curl_slist_free_all) after the transfer, also on failure.
 */
struct curl_slist;
__attribute__((warn_unused_result)) int consul_http_easy_conf(void *easy, const struct consul_http_conf *conf,
                                                              bool has_body, struct curl_slist **headers,
                                                              struct curl_slist **connect_to);

/* Percent-encode a KV key (keeps '/' and unreserved characters). Caller frees. */
char *consul_escape_key(const char *key);

/* ---- JSON decoding (pure) ---- */

/* Decode standard base64 (padding required, whitespace refused). Caller frees *out (NUL-terminated). */
__attribute__((warn_unused_result)) int consul_b64_decode(const char *in, size_t len, char **out,
                                                          size_t *out_len);

/* One KV entry as leaseway needs it. */
struct consul_kv {
    bool exists; /* false: 404 / empty array */
    uint64_t modify_index;
    uint64_t lock_index;
    char session[64]; /* "" when no session holds the key */
    char *value;      /* decoded Value (NUL-terminated), NULL if null; owned */
    size_t value_len;
};
/* Decode `[{...}]` from GET /v1/kv/<key>. 0, or -1 with *err (constant). Free with consul_kv_clear(). */
__attribute__((warn_unused_result)) int consul_kv_decode(const char *body, size_t len, struct consul_kv *kv,
                                                         const char **err);
void consul_kv_clear(struct consul_kv *kv);

/* The lease value {"hostname","advertise-url"}. */
struct consul_lease_value {
    char hostname[ROUTE_ID_MAX];
    char advertise_url[ROUTE_URL_MAX];
};
__attribute__((warn_unused_result)) int
consul_lease_value_decode(const char *value, size_t len, struct consul_lease_value *lv, const char **err);
/* The lease value to write on acquire. Caller frees; NULL when a string is not UTF-8 (or no memory). */
char *consul_lease_value_encode(const char *hostname, const char *advertise_url);

/* {"ID": "..."} from /v1/session/create. */
__attribute__((warn_unused_result)) int consul_session_id_decode(const char *body, size_t len, char *id,
                                                                 size_t idsz, const char **err);
/* TTL (ms) from a /v1/session/renew reply `[{"TTL":"10s",...}]`; -1 with *err when unusable. */
__attribute__((warn_unused_result)) int consul_renew_ttl_decode(const char *body, size_t len, int64_t *ttl_ms,
                                                                const char **err);
/* Body "true"/"false" of acquire/release. -1 when neither. */
__attribute__((warn_unused_result)) int consul_bool_decode(const char *body, size_t len, bool *out);

/* Go duration ("1.5s", "10s", "5m", "300ms", "1h2m") to ms; -1 on error. */
int64_t consul_duration_ms(const char *s);
/* ms to a Go duration ("10s", "1500ms"). */
void consul_duration_fmt(int64_t ms, char *buf, size_t size);

/* Host and port of an http(s) URL (advertise). 0, or -1 when it is not a URL. */
__attribute__((warn_unused_result)) int consul_url_host_port(const char *url, char *host, size_t hostsz,
                                                             int *port);
/* Replace every "{id}" in tmpl with id; 0, or -1 when it does not fit. */
__attribute__((warn_unused_result)) int consul_url_template(const char *tmpl, const char *id, char *out,
                                                            size_t size);

/* ---- pure rules ---- */

/*
 * Blocking-query index after a reply (CONSUL.md): no header → 0 (plain re-read); went backwards
 * → 0 (reset, re-read); 0 → 1 (never block on 0). A request with index 0 is a plain read.
 */
uint64_t consul_index_next(uint64_t prev, bool has_index, uint64_t index);

/* Delay before retry number `attempt` (0-based): jittered in [d/2, d], d = min(cap, base·2^attempt). */
int64_t consul_backoff_ms(unsigned attempt, uint32_t rnd);

/* Token bucket rate-limiting the watch loop. */
struct consul_bucket {
    int64_t tokens_milli; /* tokens × 1000 */
    int64_t last_ms;
};
void consul_bucket_init(struct consul_bucket *b, int64_t now_ms);
/* Take a token: 0 when taken, else the ms to wait before trying again (nothing taken). */
int64_t consul_bucket_take(struct consul_bucket *b, int64_t now_ms);

/*
 * Fence deadline (consul_now_ms(), CLOCK_BOOTTIME ms) for a lease holder: the earliest moment at which
 * another instance could hold the key, minus a margin. Inputs are request *send* times of the last successful
 * renew (or session create) and alive feed; alive_sent_ms < 0 when there is no alive check
 * (--register=false). The argument is written out in consul_rules.c.
 */
int64_t consul_fence_deadline(int64_t renew_sent_ms, int64_t ttl_ms, int64_t lock_delay_ms,
                              int64_t alive_sent_ms);
/*
 * How long after a renew's send the next one goes: a third of the span that renew keeps the
 * fence open (min(TTL, lock-delay) - margin), so that two renews may be late or lost before it
 * closes; at least 100 ms.
 */
int64_t consul_renew_every(int64_t ttl_ms, int64_t lock_delay_ms);
#define CONSUL_LOCK_DELAY_MIN_MS 1000 /* below it the fence would leave a renew no time */

/*
 * The alive feed (SPEC §5). consul_alive_next_ms: when the next pass is due, given the send time
 * of the latest one and how many are unanswered (feeds do not wait for each other's replies).
 * consul_alive_chain_ok: may the check have stayed passing up to reply_ms, a pass's successful
 * reply, given prev_ok_sent_ms, the latest send time among the passes that succeeded before it
 * (-1: none)? The argument is written out in consul_rules.c.
 */
int64_t consul_alive_next_ms(int64_t last_sent_ms, unsigned in_flight);
bool consul_alive_chain_ok(int64_t prev_ok_sent_ms, int64_t reply_ms);

/* The candidate's lease state machine; every transition goes through consul_lease_next(). */
enum consul_lease_state {
    CONSUL_LEASE_INIT = 0,   /* created, not started */
    CONSUL_LEASE_WATCH_ONLY, /* not a candidate: watch the key, never acquire */
    CONSUL_LEASE_CREATING,   /* no session: waiting for registration, creating one, or backing off */
    CONSUL_LEASE_ACQUIRING,  /* PUT ?acquire in flight (or retrying after an error) */
    CONSUL_LEASE_STANDBY,    /* session, no lease: held by another, or lock-delay; waiting */
    CONSUL_LEASE_HOLDING,    /* acquire said true; primary once the watch shows our session */
    CONSUL_LEASE_HANDOFF,    /* released on request: no acquire until lock-delay + 1 s or another holds */
    CONSUL_LEASE_SIDELINED,  /* session, no lease, not contending: unfit to lead (app not healthy) */
    CONSUL_LEASE_STOPPING,   /* shutdown sequence running */
    CONSUL_LEASE_STOPPED,    /* shutdown done */
    CONSUL_LEASE_COUNT
};

enum consul_lease_event {
    CONSUL_LEV_START = 0,    /* start as a candidate */
    CONSUL_LEV_START_WATCH,  /* start as a watcher */
    CONSUL_LEV_SESSION_OK,   /* session created */
    CONSUL_LEV_SESSION_LOST, /* renew 404, acquire 500 "invalid session", or no session */
    CONSUL_LEV_ACQUIRED,     /* acquire → true */
    CONSUL_LEV_NOT_ACQUIRED, /* acquire → false */
    CONSUL_LEV_KEY_FREE,     /* the watch: nobody holds the key (and no retry is pending) */
    CONSUL_LEV_KEY_OTHER,    /* the watch: another session holds it */
    CONSUL_LEV_KEY_OURS,     /* the watch: our session holds it */
    CONSUL_LEV_RETRY,        /* a retry or handoff timer fired */
    CONSUL_LEV_HANDOFF,      /* consul_agent_handoff() */
    CONSUL_LEV_UNFIT,        /* consul_agent_set_fit(false): stop contending (a holder keeps the lease) */
    CONSUL_LEV_FIT,          /* consul_agent_set_fit(true): contend again */
    CONSUL_LEV_SHUTDOWN,     /* consul_agent_shutdown() */
    CONSUL_LEV_STOPPED,      /* shutdown sequence finished */
    CONSUL_LEV_COUNT
};

enum consul_lease_state consul_lease_next(enum consul_lease_state state, enum consul_lease_event ev);
const char *consul_lease_state_str(enum consul_lease_state state);
const char *consul_lease_event_str(enum consul_lease_event ev);

#endif
