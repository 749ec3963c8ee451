/*
 * The proxy's shared structures: the process (struct proxy), its worker
 * threads (struct proxy_worker), client and upstream connections.
 *
 * Threads: one control thread (main: admin listener, Consul, health probes,
 * signals) and N workers, each with its own event_base and SO_REUSEPORT
 * listener. Workers never block and never talk to Consul; they read the
 * cluster snapshot (routing/route_snapshot.h) and are told to drain through
 * an eventfd.
 */
#ifndef LEASEWAY_PROXY_H
#define LEASEWAY_PROXY_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "proxy/proxy_config.h"
#include "proxy/proxy_litefs.h"
#include "proxy/proxy_metrics.h"
#include "routing/route.h"
#include "routing/route_snapshot.h"

struct evbuffer;
struct proxy_worker;

#define PROXY_RBUF_SIZE (64 * 1024)
#define PROXY_HEAD_MAX  (64 * 1024) /* request/response head limit: 431 above it */
#define PROXY_URL_MAX   (8 * 1024)  /* request-target limit: 414 above it */
/* a request head on the wire: the request line and 64 KiB of field lines (431 above it) */
#define PROXY_HEAD_WIRE_MAX  (PROXY_HEAD_MAX + PROXY_URL_MAX + 64)
#define PROXY_HOLD_BODY_MAX  (1024 * 1024)      /* a held or retryable write buffers this much body at most */
#define PROXY_MAX_PEERS      4                  /* peer proxies with a connection pool, per worker */
#define PROXY_HOLD_MAX       512                /* held requests per worker */
#define PROXY_HOLD_BYTES_MAX (64 * 1024 * 1024) /* their buffered bodies, per worker */
#define PROXY_HIGH_WATER     (256 * 1024)       /* stop reading the sender above this much queued */
#define PROXY_SEND_BATCH     256                /* sends per io_uring_enter(2) at the end of a loop pass */
#define PROXY_POOL_IDLE_MS   2000 /* pooled upstream connections: below Node's 5 s keepAliveTimeout */
#define PROXY_RETRY_MS       100  /* the app refused the connection: next try after this long */
/* route_decide() normalizes a path of any target the proxy lets through */
_Static_assert(PROXY_URL_MAX <= ROUTE_PATH_MAX, "PROXY_URL_MAX over ROUTE_PATH_MAX");

/*
 * Deadline lists: every entry of one list has the same timeout, so appending
 * keeps a list sorted and expiry only looks at the head. A connection is on
 * at most one list at a time.
 */
enum proxy_timer {
    TL_NONE = 0,
    TL_HEADER,   /* client: request head must arrive by then (408) */
    TL_IDLE,     /* client: keep-alive wait */
    TL_SEND,     /* client: response bytes not taken by the client */
    TL_CONNECT,  /* upstream: connect() must complete (504) */
    TL_UPSTREAM, /* upstream: silence while a response is due (504) */
    TL_POOL,     /* upstream: pooled, idle */
    TL_HOLD,     /* client: a write waiting for a primary (--hold-timeout) */
    TL_TXID,     /* client: a read waiting for replication to catch up (--txid-wait) */
    TL_LINGER,   /* client: answered early and closing; unread body bytes are drained first */
    TL_RETRY,    /* client: the app refused the connection; try again (within --connect-timeout) */
    TL_COUNT
};

struct tnode {
    struct tnode *prev, *next;
    int64_t deadline_ms;
    uint8_t list; /* enum proxy_timer */
};

struct tlist {
    struct tnode head; /* sentinel */
    int64_t timeout_ms;
};

/* Parsed header fields of one message, as offsets into an arena. */
struct head_field {
    uint32_t name_off, name_len;
    uint32_t val_off, val_len;
};

struct head {
    struct head *next_free;
    char *buf;
    size_t len, cap;
    struct head_field *f;
    size_t nf, capf;
    uint32_t url_off, url_len;
    uint32_t reason_off, reason_len;
    unsigned in_value : 1; /* the last span appended was a value */
    unsigned too_big : 1;
    unsigned conn_opts : 2; /* 0: not looked at yet, 1: Connection lists no option of its own, 2: it does */
};

enum client_state {
    CS_IDLE = 0, /* keep-alive: waiting for the first byte of a request */
    CS_HEAD,     /* reading a request head */
    CS_BODY,     /* head sent on; streaming the request body */
    CS_WAIT,     /* request complete; relaying the response */
    CS_TUNNEL,   /* upgraded (101): raw bytes both ways */
    CS_CLOSING,  /* flushing the last bytes, then close */
    CS_COUNT
};

enum body_framing {
    BODY_NONE = 0,
    BODY_LENGTH,  /* Content-Length */
    BODY_CHUNKED, /* re-chunked from parser's body spans */
    BODY_EOF,     /* close-delimited (responses to HTTP/1.0 clients) */
};

struct upstream;

/* Where upstream connections go: the local app, or a peer leaseway (the primary). */
struct upstream_target {
    struct sockaddr_storage addr;
    socklen_t addr_len;       /* 0: unused slot */
    char name[ROUTE_URL_MAX]; /* host:port for the app; the advertise URL for a peer */
    char host[256];           /* a TLS peer's name: SNI and certificate check */
    bool peer;
    bool tls;
    struct upstream *pool; /* idle connections (LIFO) */
    size_t npool;
    /*
     * The app was seen closing kept-alive connections right after their response (without
     * "Connection: close"): a request that may not be sent twice goes on a new connection,
     * never one the app may close under it. Cleared once a pooled connection is reused, or
     * stays open for PROXY_POOL_IDLE_MS.
     */
    bool closes_conns;
    int64_t last_used_ms;
};

struct client {
    int fd;
    struct event ev; /* EV_READ|EV_WRITE|EV_ET|EV_PERSIST, added once */
    struct tnode timer;
    struct proxy_worker *w;
    struct client *prev, *next; /* worker's list of clients */
    llhttp_t parser;
    struct evbuffer *out; /* to the client; lazily allocated */
    struct head *head;    /* request head while it is being read */
    struct upstream *up;  /* bound for the current exchange */
    char *pending;        /* unparsed bytes after a paused message */
    size_t pending_len;
    struct evbuffer *body; /* a write's body buffered before dispatch (hold, retry) */
    size_t body_bytes;     /* of this request's body so far: payload only, not the chunk framing in body */
    uint64_t excluded;     /* hash of a primary that answered 421 or was unreachable */
    uint64_t sent_to;      /* hash of the primary the request was last forwarded to (0: none) */
    int64_t excluded_until_ms;
    int64_t hold_deadline_ms; /* a held write gives up then (set once, kept across retries) */
    int64_t retry_until_ms;   /* the app refused: connects are retried until then (0: not yet) */
    uint64_t *txid_want;      /* while waiting for LiteFS to catch up: the TXIDs the client saw */
    int64_t start_ns;         /* request start, for the latency histogram */
    char ip[46];              /* the client's address, for X-Forwarded-For */
    enum client_state state;
    enum route_action route;
    enum body_framing req_framing;
    enum body_framing resp_framing;
    int status; /* final status sent to the client (for metrics/log) */
    uint8_t http_minor;
    uint8_t head_scan;             /* enum head_scan over the raw request head, then its trailer section */
    uint8_t last_chunk;            /* the parser paused at the last chunk: scan the trailer section */
    uint32_t head_wire;            /* bytes of the head (or trailer section) on the wire so far */
    uint32_t trailer_len;          /* bytes of trailer fields seen (dropped; bounded like a head) */
    unsigned keepalive : 1;        /* client wants to keep the connection */
    unsigned head_req : 1;         /* request method is HEAD */
    unsigned upgrade_req : 1;      /* request asks for an upgrade */
    unsigned head_done : 1;        /* the head is parsed: fields from now on are trailers */
    unsigned req_done : 1;         /* whole request received and queued upstream */
    unsigned resp_started : 1;     /* a final response head was sent */
    unsigned resp_done : 1;        /* whole response queued to the client */
    unsigned parse_paused : 1;     /* parser paused after a message */
    unsigned read_blocked : 1;     /* stopped reading: backpressure or pause */
    unsigned close_after : 1;      /* close once out is flushed */
    unsigned close_after_resp : 1; /* close when this response is done */
    unsigned eof : 1;              /* client half-closed */
    unsigned dead : 1;             /* closed; freed at the end of the loop iteration */
    unsigned rdhup : 1;            /* the peer's FIN was signalled: read to EOF past a short read */
    unsigned deferred : 1;         /* body goes to c->body; not dispatched yet */
    unsigned retry_ok : 1;         /* the whole request is buffered: it can be sent again */
    unsigned was_held : 1;         /* waited for a primary (metrics route "held") */
    unsigned misdirects : 2;       /* 421s in a row from the same primary (sent_to) */
    unsigned from_peer : 1;        /* forwarded to us by another leaseway */
    unsigned is_write : 1;         /* routing says it writes */
    unsigned local_write : 1;      /* counted in metrics.local_writes until it is done */
    unsigned set_cookie : 1;       /* add the leaseway_wrote cookie to the response */
    unsigned recent_write : 1;     /* carries a fresh leaseway_wrote cookie */
    unsigned fresh_conn : 1;       /* retried after a stale pooled connection: use a new one */
    unsigned txid_checked : 1;     /* the __txid wait is over (caught up or given up) */
    unsigned give_up : 1;          /* a second 421 from one primary: only another may have it */
    unsigned expect_continue : 1;  /* Expect: 100-continue */
    unsigned continue_sent : 1;    /* we said 100 Continue ourselves (buffered body) */
    unsigned lingering : 1;        /* write side shut; reading and discarding until EOF (RFC 9112 §9.6) */
    unsigned flush_queued : 1;     /* in the worker's flush queue (sent at the end of the loop pass) */
};

struct ssl_st;
struct ssl_ctx_st;

struct upstream {
    int fd;
    struct ssl_st *ssl; /* https:// peers */
    struct event ev;
    struct tnode timer;
    struct proxy_worker *w;
    struct client *c; /* bound client; NULL while pooled */
    struct upstream_target *target;
    struct upstream *pool_prev, *pool_next;
    llhttp_t parser;      /* responses */
    struct evbuffer *out; /* to the app */
    struct head *head;    /* response head while it is read */
    unsigned connecting : 1;
    unsigned refused : 1;     /* connect() failed with ECONNREFUSED: nothing listens there (yet) */
    unsigned handshaking : 1; /* TLS handshake under way */
    unsigned reused : 1;
    unsigned got_bytes : 1;    /* any response byte received for this exchange */
    unsigned wrote : 1;        /* any request byte of this exchange written to the socket */
    unsigned read_blocked : 1; /* backpressure from the client */
    unsigned timer_paused : 1; /* TL_UPSTREAM stopped while read-blocked by the client */
    unsigned final_seen : 1;   /* a non-1xx response head was seen */
    unsigned tunnel : 1;
    unsigned shut_wr : 1; /* the client's FIN was passed on (tunnel) */
    unsigned dead : 1;
    unsigned pooled : 1;
    unsigned rdhup : 1;        /* the app's FIN was signalled: never pooled again */
    unsigned discard : 1;      /* this response is not for the client (421, gate-closed from a peer) */
    unsigned flush_queued : 1; /* in the worker's flush queue (sent at the end of the loop pass) */
};

struct proxy;

/* An answer (c) or a whole request to the app (u) waiting for the end of the loop pass. */
struct flush_item {
    struct client *c;
    struct upstream *u;
};

struct proxy_worker {
    int id;
    pthread_t thread;
    struct proxy *px;
    struct event_base *base;
    int listen_fd;
    struct event listen_ev;
    int ctl_fd; /* eventfd: the control thread asks to drain or stop */
    struct event ctl_ev;
    struct event tick_ev;
    struct tlist tl[TL_COUNT];
    struct cluster_snapshot snap; /* private copy, refreshed per request */
    struct client *clients;
    size_t nclients;
    struct upstream_target app;                    /* the local app (--target) */
    struct upstream_target peers[PROXY_MAX_PEERS]; /* primaries we forward to */
    size_t nheld;
    size_t held_bytes;    /* bodies of the held requests */
    char peer_token[160]; /* Leaseway-Peer-Auth we send, regenerated each second */
    int64_t peer_token_sec;
    struct head *free_heads;
    struct flush_item *flushq; /* to send at the end of this loop pass (both NULL: closed since) */
    size_t nflushq, cap_flushq;
    struct proxy_uring *uring; /* sends a pass's flush queue in one system call; NULL: one by one */
    void **free_later;         /* deferred frees (STYLE rule 6) */
    size_t nfree_later, cap_free_later;
    struct event free_ev;
    struct event txid_ev; /* polls LiteFS positions while reads wait on them */
    bool draining;
    bool stopping;
    uint64_t heartbeat_ms; /* when the loop last ran its tick (coarse monotonic ms; atomic) */
    struct proxy_metrics metrics;
    char rbuf[PROXY_RBUF_SIZE];
};

struct proxy {
    struct proxy_config *cfg;
    struct route_rules rules;
    struct sockaddr_storage listen_addr;
    socklen_t listen_len;
    struct sockaddr_storage target_addr;
    socklen_t target_len;
    char target_hostport[256];
    struct litefs_dbs litefs;
    struct ssl_ctx_st *peer_tls; /* client context for https:// peers: verifies certificate and name */
    unsigned char *peer_secret;  /* --peer-secret-file contents; NULL: forwarded requests are trusted */
    size_t peer_secret_len;
    struct proxy_worker *workers;
    size_t nworkers;
    _Atomic int draining;
    _Atomic int stopping;
    _Atomic int refuse_held; /* the lease is given away: writes waiting for a primary get their 503 */
    int64_t started_ms;
};

/* Monotonic time. */
int64_t proxy_now_ms(void);
int64_t proxy_now_ns(void);
struct evbuffer;
/* Socket I/O on the hot path: recv(2) and send(2)/sendmsg(2) as direct system calls. */
ssize_t proxy_sock_recv(int fd, void *buf, size_t len);
int proxy_sock_send(struct evbuffer *b, int fd);

/* proxy_worker.c */
/* 0 when --listen is free, or -1 with errno (EADDRINUSE: another process holds it) */
__attribute__((warn_unused_result)) int proxy_listen_probe(const struct proxy *px);
__attribute__((warn_unused_result)) int proxy_workers_start(struct proxy *px);
void proxy_workers_drain(struct proxy *px);  /* stop accepting, finish in-flight */
void proxy_workers_stop(struct proxy *px);   /* close everything now */
void proxy_workers_notify(struct proxy *px); /* a new snapshot: held requests may go on */
/*
 * Wait for the stopped workers and free them. A worker that has not ended within
 * PROXY_JOIN_TIMEOUT_MS (stuck in a system call that never returns, e.g. a write to an
 * --access-log pipe that nobody reads) is logged and left, with everything it uses: -1. Otherwise 0.
 */
#define PROXY_JOIN_TIMEOUT_MS 5000
int proxy_workers_join(struct proxy *px);
/*
 * The watchdog: the first worker whose loop has not run its tick for limit_ms (a thread
 * stuck in a system call: it serves nobody), with that time in *age_ms; -1 if none.
 */
int proxy_workers_stuck(struct proxy *px, int64_t limit_ms, int64_t *age_ms);
void proxy_timer_set(struct proxy_worker *w, struct tnode *t, enum proxy_timer list);
/* The same with an explicit deadline, kept in order (for deadlines earlier than now + timeout). */
void proxy_timer_set_at(struct proxy_worker *w, struct tnode *t, enum proxy_timer list, int64_t deadline_ms);
void proxy_timer_clear(struct tnode *t);
void proxy_free_later(struct proxy_worker *w, void *p);
void proxy_conn_flush_queued(struct proxy_worker *w);
/*
 * "host:port" (IPv6 as "[::1]:port") to the first address it resolves to. passive: for a
 * listener, where an empty host (":8080") means every IPv4 interface; otherwise an empty host is
 * the loopback. The port must pass proxy_config_parse_port(). Returns 0, or -1 when the port is
 * bad or the host does not resolve.
 */
__attribute__((warn_unused_result)) int proxy_parse_addr(const char *hostport, bool passive,
                                                         struct sockaddr_storage *ss, socklen_t *len);

/* proxy_conn.c */
void proxy_client_accept(struct proxy_worker *w, int fd, const struct sockaddr_storage *peer);
void proxy_client_close(struct client *c);
void proxy_upstream_close(struct upstream *u);
void proxy_timer_expired(struct tnode *t);
void proxy_conn_init_settings(void);
void proxy_conn_retry_held(struct proxy_worker *w);  /* snapshot changed or tick: re-route held writes */
void proxy_conn_refuse_held(struct proxy_worker *w); /* stopping: held writes get their 503 */
void proxy_conn_txid_poll(struct proxy_worker *w);   /* reads waiting for LiteFS: caught up yet? */

/*
 * proxy_peer_addr.c (control thread). proxy_resolve_url: 0 and the address, or -1 while a
 * name is still being looked up (or could not be); never blocks. When a lookup finishes,
 * proxy_resolve_fd() is readable: call proxy_resolve_ack() and resolve again.
 */
__attribute__((warn_unused_result)) int proxy_resolve_url(const char *url, struct sockaddr_storage *addr,
                                                          socklen_t *len, bool *tls);
int proxy_resolve_fd(void);
void proxy_resolve_ack(void);
/* An http(s) URL's authority as host:port ([host]:port for IPv6, default port filled in) into
 * out; anything else is copied as it is. */
void proxy_url_host_port(const char *url, char *out, size_t size);
__attribute__((warn_unused_result)) int proxy_load_peer_secret(struct proxy *px, const char *path);
/* The TLS client context for https:// peers. */
__attribute__((warn_unused_result)) int proxy_peer_tls_setup(struct proxy *px);
void proxy_peer_tls_free(struct proxy *px);

/* proxy_peer.c: Leaseway-Peer-Auth */
/* Write the token for (now, instance) into buf; returns its length (0 without a secret). */
size_t proxy_peer_token(const struct proxy *px, const char *instance, int64_t now_s, char *buf, size_t size);
/* 0 if token is valid for forwarded_by within the replay window, -1 otherwise. */
int proxy_peer_verify(const struct proxy *px, const char *forwarded_by, size_t fb_len, const char *token,
                      size_t token_len, int64_t now_s);

#endif
