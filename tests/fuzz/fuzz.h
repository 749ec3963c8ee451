/*
 * Shared by the fuzz targets: the libFuzzer entry point's prototype, a check that aborts with
 * a message (libFuzzer then keeps the input as a crash), and a strict re-parse of the bytes
 * leaseway wrote, so that a target can check the invariants of a rewritten message as the
 * next hop would see it. Header-only: each target is one .c file.
 */
#ifndef LEASEWAY_FUZZ_H
#define LEASEWAY_FUZZ_H

#include <event2/buffer.h>
#include <llhttp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/proxy_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                                                \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "fuzz invariant failed (%s:%d): %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fputc('\n', stderr);                                                                             \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

/* Add a piece of body to out as leaseway passes it on: one chunk of its own when chunked. */
static inline void fuzz_forward_body(struct evbuffer *out, bool chunked, const char *at, size_t len)
{
    if (chunked) {
        char sz[24];
        evbuffer_add(out, sz, proxy_http_chunk_header(sz, len));
        evbuffer_add(out, at, len);
        evbuffer_add(out, "\r\n", 2);
    } else {
        evbuffer_add(out, at, len);
    }
}

/*
 * A fresh parser with llhttp's defaults (strict: no lenient flag), as the app or the client
 * behind leaseway would use. Heads are collected with proxy_head_* into r->h; on_head runs
 * once per head, bodies are decoded into r->body.
 */
struct reparse;
typedef void (*reparse_head_cb)(struct reparse *r);

struct reparse {
    llhttp_t p;
    llhttp_settings_t s;
    struct head *h;
    struct evbuffer *body; /* the decoded body of the message being parsed */
    reparse_head_cb on_head;
    void *arg;
    int heads;      /* heads seen (interim responses included) */
    int messages;   /* messages complete */
    bool head_resp; /* responses answer a HEAD request: no body */
    bool failed;    /* a span did not fit the head arena */
};

static inline struct reparse *rp_of(llhttp_t *p)
{
    return p->data;
}

static inline int rp_begin(llhttp_t *p)
{
    struct reparse *r = rp_of(p);
    proxy_head_reset(r->h);
    evbuffer_drain(r->body, evbuffer_get_length(r->body));
    return 0;
}

static inline int rp_span(struct reparse *r, int rc)
{
    if (rc < 0)
        r->failed = true;
    return rc < 0 ? HPE_USER : 0;
}

static inline int rp_url(llhttp_t *p, const char *at, size_t n)
{
    struct head *h = rp_of(p)->h;
    return rp_span(rp_of(p), proxy_head_span(h, &h->url_off, &h->url_len, at, n));
}

static inline int rp_status(llhttp_t *p, const char *at, size_t n)
{
    struct head *h = rp_of(p)->h;
    return rp_span(rp_of(p), proxy_head_span(h, &h->reason_off, &h->reason_len, at, n));
}

static inline int rp_field(llhttp_t *p, const char *at, size_t n)
{
    return rp_span(rp_of(p), proxy_head_field(rp_of(p)->h, at, n));
}

static inline int rp_value(llhttp_t *p, const char *at, size_t n)
{
    return rp_span(rp_of(p), proxy_head_value(rp_of(p)->h, at, n));
}

static inline int rp_headers_complete(llhttp_t *p)
{
    struct reparse *r = rp_of(p);
    r->heads++;
    if (r->on_head)
        r->on_head(r);
    if (p->type != HTTP_RESPONSE)
        return 0;
    /* a response to HEAD, a 1xx, 204 or 304 has no body whatever its framing says (RFC 9112 §6.3) */
    int st = p->status_code;
    return (r->head_resp && st >= 200) || (st >= 100 && st < 200 && st != 101) || st == 204 || st == 304 ? 1
                                                                                                         : 0;
}

static inline int rp_body(llhttp_t *p, const char *at, size_t n)
{
    evbuffer_add(rp_of(p)->body, at, n);
    return 0;
}

static inline int rp_message_complete(llhttp_t *p)
{
    struct reparse *r = rp_of(p);
    r->messages++;
    /* interim responses (1xx but 101) are followed by the final one */
    if (p->type == HTTP_RESPONSE && p->status_code >= 100 && p->status_code < 200 && p->status_code != 101)
        return 0;
    /* stop after one message; an upgrade stops by itself (HPE_PAUSED_UPGRADE) */
    return llhttp_get_upgrade(p) ? 0 : HPE_PAUSED;
}

static inline void reparse_init(struct reparse *r, llhttp_type_t type, reparse_head_cb on_head, void *arg)
{
    memset(r, 0, sizeof(*r));
    llhttp_settings_init(&r->s);
    r->s.on_message_begin = rp_begin;
    r->s.on_url = rp_url;
    r->s.on_status = rp_status;
    r->s.on_header_field = rp_field;
    r->s.on_header_value = rp_value;
    r->s.on_headers_complete = rp_headers_complete;
    r->s.on_body = rp_body;
    r->s.on_message_complete = rp_message_complete;
    llhttp_init(&r->p, type, &r->s);
    r->p.data = r;
    r->h = calloc(1, sizeof(*r->h));
    r->body = evbuffer_new();
    r->on_head = on_head;
    r->arg = arg;
    FUZZ_CHECK(r->h && r->body, "out of memory");
}

static inline void reparse_free(struct reparse *r)
{
    proxy_head_free(r->h);
    evbuffer_free(r->body);
}

/* Number of fields called name in h. */
static inline int fuzz_count(const struct head *h, const char *name)
{
    int n = 0;
    for (size_t i = 0; i < h->nf; i++)
        n += proxy_head_name_is(h, i, name);
    return n;
}

/* Is field i's value exactly s? */
static inline bool fuzz_val_is(const struct head *h, size_t i, const char *s)
{
    return h->f[i].val_len == strlen(s) && memcmp(head_val(h, i), s, h->f[i].val_len) == 0;
}

/* No CR, LF, NUL or other control byte but HTAB in any name or value (RFC 9110 §5.5). */
static inline void fuzz_check_field_bytes(const struct head *h)
{
    for (size_t i = 0; i < h->nf; i++) {
        for (uint32_t k = 0; k < h->f[i].val_len; k++) {
            unsigned char ch = (unsigned char)head_val(h, i)[k];
            FUZZ_CHECK((ch >= 0x20 && ch != 0x7f) || ch == '\t', "control byte 0x%02x in the value of %.*s",
                       ch, (int)h->f[i].name_len, head_name(h, i));
        }
        FUZZ_CHECK(h->f[i].name_len > 0, "empty field name");
    }
}

/* Do the evbuffer's bytes equal [p, p + n)? */
static inline bool fuzz_buf_eq(struct evbuffer *b, const char *p, size_t n)
{
    if (evbuffer_get_length(b) != n)
        return false;
    return n == 0 || memcmp(evbuffer_pullup(b, -1), p, n) == 0;
}

#endif
