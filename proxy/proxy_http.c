/*
 * Message heads. llhttp hands header names and values over in pieces; they
 * are copied into one arena per message and referred to by offset. The
 * rewriting follows RFC 9110 §7.6.1: hop-by-hop fields (the fixed list and
 * every name the Connection field lists) never cross the proxy.
 */
#include "proxy/proxy_http.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int grow(struct head *h, size_t more)
{
    if (h->len + more > PROXY_HEAD_MAX) {
        h->too_big = 1;
        return -1;
    }
    if (h->len + more <= h->cap)
        return 0;
    size_t cap = h->cap ? h->cap : 1024;
    while (cap < h->len + more)
        cap *= 2;
    char *b = realloc(h->buf, cap);
    if (!b)
        return -1;
    h->buf = b;
    h->cap = cap;
    return 0;
}

int proxy_head_span(struct head *h, uint32_t *off, uint32_t *len, const char *at, size_t n)
{
    if (*len == 0)
        *off = (uint32_t)h->len;
    if (grow(h, n) < 0)
        return -1;
    memcpy(h->buf + h->len, at, n);
    h->len += n;
    *len += (uint32_t)n;
    return 0;
}

int proxy_head_field(struct head *h, const char *at, size_t len)
{
    if (h->nf == 0 || h->in_value) {
        if (h->nf == h->capf) {
            size_t capf = h->capf ? h->capf * 2 : 32;
            struct head_field *f = realloc(h->f, capf * sizeof(*f));
            if (!f)
                return -1;
            h->f = f;
            h->capf = capf;
        }
        memset(&h->f[h->nf++], 0, sizeof(h->f[0]));
        h->in_value = 0;
    }
    struct head_field *f = &h->f[h->nf - 1];
    return proxy_head_span(h, &f->name_off, &f->name_len, at, len);
}

int proxy_head_value(struct head *h, const char *at, size_t len)
{
    if (h->nf == 0)
        return -1;
    h->in_value = 1;
    struct head_field *f = &h->f[h->nf - 1];
    return proxy_head_span(h, &f->val_off, &f->val_len, at, len);
}

void proxy_head_reset(struct head *h)
{
    h->len = 0;
    h->nf = 0;
    h->url_off = h->url_len = 0;
    h->reason_off = h->reason_len = 0;
    h->in_value = 0;
    h->too_big = 0;
}

void proxy_head_free(struct head *h)
{
    if (!h)
        return;
    free(h->buf);
    free(h->f);
    free(h);
}

static bool eq_nocase(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    return alen == blen && strncasecmp(a, b, blen) == 0;
}

bool proxy_head_name_is(const struct head *h, size_t i, const char *name)
{
    return eq_nocase(head_name(h, i), h->f[i].name_len, name);
}

int proxy_head_find(const struct head *h, const char *name)
{
    for (size_t i = 0; i < h->nf; i++)
        if (proxy_head_name_is(h, i, name))
            return (int)i;
    return -1;
}

/* Does the comma-separated list in [v, v+len) contain token (case-insensitive)? */
static bool list_has(const char *v, size_t len, const char *token, size_t tlen)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < len && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tlen && strncasecmp(v + s, token, tlen) == 0)
            return true;
    }
    return false;
}

/* Is field i named by any Connection field of h? */
static bool named_by_connection(const struct head *h, size_t i)
{
    for (size_t k = 0; k < h->nf; k++)
        if (proxy_head_name_is(h, k, "connection") &&
            list_has(head_val(h, k), h->f[k].val_len, head_name(h, i), h->f[i].name_len))
            return true;
    return false;
}

/* RFC 9110 §7.6.1 plus the legacy names every proxy strips. */
static bool is_hop_by_hop(const char *n, size_t len)
{
    switch (len) {
    case 2: return strncasecmp(n, "te", 2) == 0;
    case 7: return strncasecmp(n, "trailer", 7) == 0 || strncasecmp(n, "upgrade", 7) == 0;
    case 10: return strncasecmp(n, "connection", 10) == 0 || strncasecmp(n, "keep-alive", 10) == 0;
    case 16: return strncasecmp(n, "proxy-connection", 16) == 0;
    case 17: return strncasecmp(n, "transfer-encoding", 17) == 0;
    default: return false;
    }
}

static bool valid_value(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)v[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

void proxy_http_request_facts(const struct head *h, int http_minor, struct req_facts *facts)
{
    memset(facts, 0, sizeof(*facts));
    const char *url = h->buf + h->url_off;
    const char *q = memchr(url, '?', h->url_len);
    facts->path = url;
    facts->path_len = q ? (size_t)(q - url) : h->url_len;

    for (size_t i = 0; i < h->nf; i++) {
        const char *n = head_name(h, i), *v = head_val(h, i);
        size_t nl = h->f[i].name_len, vl = h->f[i].val_len;
        /* obs-fold reaches us as CR/LF inside a value (llhttp 8.1 accepts it): RFC 9112 §5.2 */
        if (!valid_value(v, vl)) {
            facts->bad = "invalid character in a header value (obs-fold, CR, LF or NUL)";
            return;
        }
        if (eq_nocase(n, nl, "host")) {
            facts->host_count++;
        } else if (eq_nocase(n, nl, "transfer-encoding")) {
            /* Only "chunked" alone is framing we forward; anything else is refused (RFC 9112 §6.1). */
            if (facts->has_te || !eq_nocase(v, vl, "chunked")) {
                facts->bad = "unsupported Transfer-Encoding";
                return;
            }
            facts->has_te = true;
        } else if (eq_nocase(n, nl, "content-length")) {
            if (vl == 0 || facts->has_cl) {
                facts->bad = "invalid Content-Length";
                return;
            }
            for (size_t k = 0; k < vl; k++) {
                if (v[k] < '0' || v[k] > '9') {
                    facts->bad = "invalid Content-Length";
                    return;
                }
            }
            facts->has_cl = true;
        } else if (eq_nocase(n, nl, "connection")) {
            if (list_has(v, vl, "upgrade", 7))
                facts->connection_upgrade = true;
        } else if (eq_nocase(n, nl, "expect")) {
            if (eq_nocase(v, vl, "100-continue"))
                facts->expect_continue = true;
        }
    }
    if (facts->host_count > 1) {
        facts->bad = "more than one Host header";
    } else if (facts->host_count == 0 && http_minor >= 1) {
        facts->bad = "missing Host header";
    } else if (facts->has_te && facts->has_cl) {
        facts->bad = "both Content-Length and Transfer-Encoding";
    } else if (facts->has_te && http_minor == 0) {
        facts->bad = "Transfer-Encoding in an HTTP/1.0 request";
    }
}

static void add_field(struct evbuffer *out, const struct head *h, size_t i)
{
    evbuffer_add(out, head_name(h, i), h->f[i].name_len);
    evbuffer_add(out, ": ", 2);
    evbuffer_add(out, head_val(h, i), h->f[i].val_len);
    evbuffer_add(out, "\r\n", 2);
}

static bool starts_nocase(const char *s, size_t len, const char *prefix)
{
    size_t pl = strlen(prefix);
    return len >= pl && strncasecmp(s, prefix, pl) == 0;
}

int proxy_http_write_request(struct evbuffer *out, const struct head *h, const struct req_rewrite *rw)
{
    char line[512];
    evbuffer_add(out, rw->method, rw->method_len);
    evbuffer_add(out, " ", 1);
    evbuffer_add(out, h->buf + h->url_off, h->url_len);
    evbuffer_add(out, " HTTP/1.1\r\n", 11);

    const char *xff = NULL;
    size_t xff_len = 0;
    bool have_host = false, have_proto = false, have_fhost = false;
    int upgrade_i = -1, host_i = -1;
    for (size_t i = 0; i < h->nf; i++) {
        const char *n = head_name(h, i);
        size_t nl = h->f[i].name_len;
        if (is_hop_by_hop(n, nl)) {
            if (eq_nocase(n, nl, "upgrade"))
                upgrade_i = (int)i;
            continue;
        }
        if (named_by_connection(h, i))
            continue;
        if (!rw->passthrough) {
            if (starts_nocase(n, nl, "leaseway-") || eq_nocase(n, nl, "fly-primary-instance"))
                continue;
            if (eq_nocase(n, nl, "x-forwarded-for")) {
                /* several fields are one comma list (RFC 9110 §5.3); keep the last, nginx does too */
                xff = head_val(h, i);
                xff_len = h->f[i].val_len;
                continue;
            }
            have_proto |= eq_nocase(n, nl, "x-forwarded-proto");
        }
        if (eq_nocase(n, nl, "host")) {
            have_host = true;
            host_i = (int)i;
        }
        have_fhost |= eq_nocase(n, nl, "x-forwarded-host");
        add_field(out, h, i);
    }
    if (!have_host && rw->host_fallback)
        evbuffer_add_printf(out, "Host: %s\r\n", rw->host_fallback);
    if (!rw->passthrough) {
        if (xff)
            evbuffer_add_printf(out, "X-Forwarded-For: %.*s, %s\r\n", (int)xff_len, xff, rw->client_ip);
        else
            evbuffer_add_printf(out, "X-Forwarded-For: %s\r\n", rw->client_ip);
        /* Behind Fly's edge the previous hop already says https: keep what it said. */
        if (!have_proto)
            evbuffer_add(out, "X-Forwarded-Proto: http\r\n", 25);
        if (!have_fhost && host_i >= 0) {
            evbuffer_add(out, "X-Forwarded-Host: ", 18);
            evbuffer_add(out, head_val(h, (size_t)host_i), h->f[host_i].val_len);
            evbuffer_add(out, "\r\n", 2);
        }
        if (rw->primary_id) {
            int n = snprintf(line, sizeof(line), "Fly-Primary-Instance: %s\r\n", rw->primary_id);
            evbuffer_add(out, line, (size_t)n);
        }
    }
    if (rw->upgrade && upgrade_i >= 0) {
        evbuffer_add(out, "Connection: upgrade\r\n", 21);
        add_field(out, h, (size_t)upgrade_i);
    }
    if (rw->chunked)
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    return evbuffer_add(out, "\r\n", 2);
}

static void add_our_headers(struct evbuffer *out, const struct resp_rewrite *rw)
{
    char line[512];
    int n;
    if (rw->primary_id) {
        n = snprintf(line, sizeof(line), "Fly-Primary-Instance: %s\r\n", rw->primary_id);
        evbuffer_add(out, line, (size_t)n);
    }
    n = snprintf(line, sizeof(line), "Fly-Instance: %s\r\n", rw->instance);
    evbuffer_add(out, line, (size_t)n);
    if (rw->region && *rw->region) {
        n = snprintf(line, sizeof(line), "Fly-Region: %s\r\n", rw->region);
        evbuffer_add(out, line, (size_t)n);
    }
}

static void add_connection(struct evbuffer *out, const struct resp_rewrite *rw)
{
    if (rw->upgrade)
        return;
    if (!rw->keepalive)
        evbuffer_add(out, "Connection: close\r\n", 19);
    else if (rw->client_minor == 0)
        evbuffer_add(out, "Connection: keep-alive\r\n", 24);
}

int proxy_http_write_response(struct evbuffer *out, const struct head *h, const struct resp_rewrite *rw)
{
    char line[64];
    int n = snprintf(line, sizeof(line), "HTTP/1.1 %03d ", rw->status);
    evbuffer_add(out, line, (size_t)n);
    if (h->reason_len)
        evbuffer_add(out, h->buf + h->reason_off, h->reason_len);
    else
        evbuffer_add(out, proxy_http_reason(rw->status), strlen(proxy_http_reason(rw->status)));
    evbuffer_add(out, "\r\n", 2);

    int upgrade_i = -1;
    for (size_t i = 0; i < h->nf; i++) {
        const char *nm = head_name(h, i);
        size_t nl = h->f[i].name_len;
        if (is_hop_by_hop(nm, nl)) {
            if (eq_nocase(nm, nl, "upgrade"))
                upgrade_i = (int)i;
            continue;
        }
        if (named_by_connection(h, i))
            continue;
        /* framing is ours to decide; a CL survives only where the body keeps its length */
        if (eq_nocase(nm, nl, "content-length") && rw->framing != BODY_LENGTH && rw->framing != BODY_NONE)
            continue;
        if (!rw->passthrough && (eq_nocase(nm, nl, "fly-primary-instance") || eq_nocase(nm, nl, "fly-instance") ||
                                 eq_nocase(nm, nl, "fly-region")))
            continue;
        add_field(out, h, i);
    }
    if (!rw->passthrough)
        add_our_headers(out, rw);
    if (rw->upgrade) {
        evbuffer_add(out, "Connection: upgrade\r\n", 21);
        if (upgrade_i >= 0)
            add_field(out, h, (size_t)upgrade_i);
    }
    if (rw->framing == BODY_CHUNKED)
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    add_connection(out, rw);
    return evbuffer_add(out, "\r\n", 2);
}

void proxy_http_write_local(struct evbuffer *out, int status, const char *reason_line, const char *extra_headers,
                            const struct resp_rewrite *rw)
{
    size_t blen = reason_line ? strlen(reason_line) + 1 : 0;
    evbuffer_add_printf(out, "HTTP/1.1 %03d %s\r\n", status, proxy_http_reason(status));
    if (blen)
        evbuffer_add(out, "Content-Type: text/plain; charset=utf-8\r\n", 41);
    evbuffer_add_printf(out, "Content-Length: %zu\r\n", blen);
    if (extra_headers)
        evbuffer_add(out, extra_headers, strlen(extra_headers));
    add_our_headers(out, rw);
    add_connection(out, rw);
    evbuffer_add(out, "\r\n", 2);
    if (blen) {
        evbuffer_add(out, reason_line, blen - 1);
        evbuffer_add(out, "\n", 1);
    }
}

const char *proxy_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 421: return "Misdirected Request";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}
