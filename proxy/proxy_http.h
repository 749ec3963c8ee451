/*
 * HTTP/1.1 message heads: span accumulation from llhttp, validation that
 * llhttp 8.1 leaves to us, and the rewriting of heads in both directions
 * (SPEC §3). No I/O here; proxy_conn.c drives it.
 */
#ifndef LEASEWAY_PROXY_HTTP_H
#define LEASEWAY_PROXY_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/proxy.h"

struct evbuffer;

/* Append a span from an llhttp callback. Returns 0, or -1 if the head grew past max. */
__attribute__((warn_unused_result)) int proxy_head_field(struct head *h, const char *at, size_t len);
__attribute__((warn_unused_result)) int proxy_head_value(struct head *h, const char *at, size_t len);
__attribute__((warn_unused_result)) int proxy_head_span(struct head *h, uint32_t *off, uint32_t *len,
                                                        const char *at, size_t n);
void proxy_head_reset(struct head *h);
void proxy_head_free(struct head *h);

static inline const char *head_name(const struct head *h, size_t i)
{
    return h->buf + h->f[i].name_off;
}
static inline const char *head_val(const struct head *h, size_t i)
{
    return h->buf + h->f[i].val_off;
}
bool proxy_head_name_is(const struct head *h, size_t i, const char *name);
/* Is ch a tchar (RFC 9110 §5.6.2), a byte of a token: a method, a field name? */
bool proxy_http_tchar(unsigned char ch);
/* Index of the first field called name, or -1. */
int proxy_head_find(const struct head *h, const char *name);

/*
 * absolute-form (RFC 9112 §3.2.2): turn an http(s):// request target into origin-form (an
 * empty path becomes "/") and give every Host field the target's authority, which a
 * recipient must use instead; an HTTP/1.0 head without Host gets one (an HTTP/1.1 head without
 * Host stays without, for the 400 that RFC 9112 §3.2 requires). NULL when done (or the target
 * is not absolute-form), else why the target is refused (400).
 */
const char *proxy_http_absolute_form(struct head *h, int http_minor);

/* The options of a head's Connection fields other than close, keep-alive and upgrade, each once. */
#define PROXY_CONN_OPTIONS_MAX 32
struct conn_options {
    size_t n;
    uint32_t off[PROXY_CONN_OPTIONS_MAX]; /* into the head arena */
    uint32_t len[PROXY_CONN_OPTIONS_MAX];
};

/* Fills o; false if there are more than PROXY_CONN_OPTIONS_MAX (o then holds the first ones). */
bool proxy_http_conn_options(const struct head *h, struct conn_options *o);

/* Facts about a request head that the routing and rewriting need. */
struct req_facts {
    int host_count;
    bool has_te;
    bool has_cl;
    bool connection_upgrade; /* Connection lists "upgrade" */
    bool expect_continue;
    const char *path; /* into the head arena: the URL up to '?' */
    size_t path_len;
    const char *bad; /* NULL, or why the head is rejected (400) */
};

/*
 * Validate a request head (RFC 9112 §3.2, §5.2, §6.1) and extract facts. Drops the trailing
 * whitespace of every value (RFC 9110 §5.5) and notes in h whether Connection lists options.
 */
void proxy_http_request_facts(struct head *h, int http_minor, struct req_facts *facts);

/*
 * Validate a response head from the app (RFC 9112 §4, §5): a status of at least 100, field
 * names are tokens, values and the reason phrase hold no control character but HTAB. llhttp
 * 8.1 lets "HTTP/1.1 004", an empty field name and control bytes in the reason phrase
 * through. NULL, or why it is refused (502). Drops the trailing whitespace of every value
 * and notes in h whether Connection lists options, as proxy_http_request_facts() does.
 */
const char *proxy_http_response_bad(struct head *h, int status);

/* Transfer-Encoding, if any, is "chunked" alone: the only coding leaseway can undo and redo. */
bool proxy_http_response_coding_ok(const struct head *h);

/* What the rewritten request head needs besides the parsed head. */
struct req_rewrite {
    const char *method;
    size_t method_len;
    const char *client_ip;
    const char *primary_id;    /* NULL while unknown */
    const char *host_fallback; /* Host for HTTP/1.0 requests that have none */
    bool chunked;              /* body is re-chunked */
    bool upgrade;              /* pass Connection: upgrade + Upgrade */
    bool passthrough;          /* only hop-by-hop handling, nothing added or removed */
    bool from_peer;            /* forwarded by another leaseway: X-Forwarded-* are already right */
    bool drop_expect;          /* the body is already here: no Expect: 100-continue for the app */
    const char *forwarded_by;  /* to a peer: our instance ID (Leaseway-Forwarded-By) */
    const char *peer_token;    /* to a peer: Leaseway-Peer-Auth, NULL without a secret */
};

/* Write the upstream request head to out. Returns 0 or -1 (allocation). */
__attribute__((warn_unused_result)) int proxy_http_write_request(struct evbuffer *out, const struct head *h,
                                                                 const struct req_rewrite *rw);

struct resp_rewrite {
    int status;
    int client_minor;          /* client's HTTP/1.x minor version */
    enum body_framing framing; /* how the body goes to the client */
    bool keepalive;            /* keep the client connection */
    bool upgrade;              /* 101: pass Connection: upgrade + Upgrade */
    bool passthrough;
    const char *primary_id; /* NULL while unknown */
    const char *instance;
    const char *region; /* NULL or "" if unset */
    int64_t cookie_ms;  /* > 0: Set-Cookie leaseway_wrote=<ms> (after a write) */
    const char *extra;  /* more header lines, each ending in CRLF (e.g. __txid cookies) */
    int64_t cookie_max_age_s;
    bool no_body; /* a local answer to HEAD: the head only */
};

__attribute__((warn_unused_result)) int proxy_http_write_response(struct evbuffer *out, const struct head *h,
                                                                  const struct resp_rewrite *rw);

/* A response made by leaseway itself: status line, Date, our headers, a one-line body (none if rw->no_body).
 */
void proxy_http_write_local(struct evbuffer *out, int status, const char *reason_line,
                            const char *extra_headers, const struct resp_rewrite *rw);

const char *proxy_http_reason(int status);

/*
 * Line-level checks on the raw bytes of a request head that llhttp 8.1 lets
 * through: a bare LF as line end and obs-fold (a line starting with SP or
 * HTAB), RFC 9112 §2.2 and §5.2. Feed the head's bytes in order, starting
 * with *state = HEAD_SCAN_START; bytes after the head's end are ignored.
 */
enum head_scan { HEAD_SCAN_START = 0, HEAD_SCAN_CR, HEAD_SCAN_LINE, HEAD_SCAN_LINE_CR, HEAD_SCAN_DONE };
enum head_scan_result { HEAD_SCAN_OK = 0, HEAD_SCAN_BARE_LF, HEAD_SCAN_OBS_FOLD };
enum head_scan_result proxy_http_scan_head(uint8_t *state, const char *p, size_t n);
/* The same; *used: how many of the n bytes belong to the head (all of them until its end). */
enum head_scan_result proxy_http_scan_head_used(uint8_t *state, const char *p, size_t n, size_t *used);

/* Write "<hex len>\r\n" into buf (at least 20 bytes); returns its length. */
size_t proxy_http_chunk_header(char *buf, size_t len);

#endif
