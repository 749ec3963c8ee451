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
#include <time.h>

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
    if (n == 0)
        return 0;
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
    h->conn_opts = 0;
}

void proxy_head_free(struct head *h)
{
    if (!h)
        return;
    free(h->buf);
    free(h->f);
    free(h);
}

const char *proxy_http_absolute_form(struct head *h, int http_minor)
{
    const char *url = h->buf + h->url_off;
    if (h->url_len == 0 || url[0] == '/' || url[0] == '*')
        return NULL; /* origin-form (or OPTIONS *): the usual case, no comparison needed */
    size_t skip = h->url_len >= 7 && !strncasecmp(url, "http://", 7)    ? 7
                  : h->url_len >= 8 && !strncasecmp(url, "https://", 8) ? 8
                                                                        : 0;
    if (!skip)
        return NULL;
    size_t end = skip;
    while (end < h->url_len && url[end] != '/' && url[end] != '?')
        end++;
    if (end == skip)
        return "absolute-form target without a host";
    if (memchr(url + skip, '@', end - skip))
        return "userinfo in the request target"; /* not in http(s) URIs, RFC 9110 §4.2.4 */
    uint32_t auth_off = h->url_off + (uint32_t)skip, auth_len = (uint32_t)(end - skip);
    if (end < h->url_len && url[end] == '/') {
        h->url_off += (uint32_t)end;
        h->url_len -= (uint32_t)end;
    } else {
        /* an empty path is "/" (RFC 9110 §4.2.3): "/" and the query, appended to the arena */
        char target[PROXY_URL_MAX + 1]; /* url_len <= PROXY_URL_MAX (414 above it) */
        size_t rlen = h->url_len - end;
        if (rlen >= PROXY_URL_MAX)
            return "request target longer than 8 KiB";
        target[0] = '/';
        memcpy(target + 1, url + end, rlen);
        uint32_t off = 0, len = 0;
        if (proxy_head_span(h, &off, &len, target, 1 + rlen) < 0)
            return "request head larger than 64 KiB";
        h->url_off = off;
        h->url_len = len;
    }
    bool host = false;
    for (size_t i = 0; i < h->nf; i++) {
        if (proxy_head_name_is(h, i, "host")) {
            h->f[i].val_off = auth_off;
            h->f[i].val_len = auth_len;
            host = true;
        }
    }
    /* an HTTP/1.0 request may have no Host: the authority is the only host there is (RFC 9112 §3.2.2) */
    if (!host && http_minor == 0) {
        h->in_value = 1; /* a new field, not more of the last name */
        if (proxy_head_field(h, "Host", 4) < 0)
            return "request head larger than 64 KiB";
        h->f[h->nf - 1].val_off = auth_off;
        h->f[h->nf - 1].val_len = auth_len;
    }
    return NULL;
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

/*
 * The next item of the comma-separated list [v, v+len) from *i on, without its blanks: its
 * bounds in *s and *e (*s == *e for an empty one). False at the end of the list.
 */
static bool list_next(const char *v, size_t len, size_t *i, size_t *s, size_t *e)
{
    while (*i < len && (v[*i] == ' ' || v[*i] == '\t' || v[*i] == ','))
        (*i)++;
    if (*i >= len)
        return false;
    *s = *i;
    while (*i < len && v[*i] != ',')
        (*i)++;
    *e = *i;
    while (*e > *s && (v[*e - 1] == ' ' || v[*e - 1] == '\t'))
        (*e)--;
    return true;
}

/* Does the comma-separated list in [v, v+len) contain token (case-insensitive)? */
static bool list_has(const char *v, size_t len, const char *token, size_t tlen)
{
    size_t i = 0, s, e;
    while (list_next(v, len, &i, &s, &e))
        if (e - s == tlen && strncasecmp(v + s, token, tlen) == 0)
            return true;
    return false;
}

/*
 * The options a head's Connection fields list besides the ones every client sends (close,
 * keep-alive, upgrade), each once: they are rare, so the common case costs one pass over the
 * names and no list walk per field. Collected once per head, so that dropping the fields
 * they name is linear in the head (a head naming "b" thousands of times would otherwise be
 * matched field by field against the whole list). More than PROXY_CONN_OPTIONS_MAX distinct
 * ones is refused (400 from a client, 502 from the app).
 */
static bool conn_options_add(struct conn_options *o, const char *base, const char *v, size_t len)
{
    size_t i = 0, s, e;
    while (list_next(v, len, &i, &s, &e)) {
        if (e == s || eq_nocase(v + s, e - s, "close") || eq_nocase(v + s, e - s, "keep-alive") ||
            eq_nocase(v + s, e - s, "upgrade"))
            continue;
        bool seen = false;
        for (size_t k = 0; k < o->n && !seen; k++)
            seen = o->len[k] == e - s && strncasecmp(base + o->off[k], v + s, e - s) == 0;
        if (seen)
            continue;
        if (o->n == PROXY_CONN_OPTIONS_MAX)
            return false;
        o->off[o->n] = (uint32_t)(v + s - base);
        o->len[o->n++] = (uint32_t)(e - s);
    }
    return true;
}

bool proxy_http_conn_options(const struct head *h, struct conn_options *o)
{
    o->n = 0;
    if (h->conn_opts == 1) /* the validation of the head found none: the usual case */
        return true;
    for (size_t k = 0; k < h->nf; k++)
        if (h->f[k].name_len == 10 && proxy_head_name_is(h, k, "connection") &&
            !conn_options_add(o, h->buf, head_val(h, k), h->f[k].val_len))
            return false;
    return true;
}

/* Is field i named by one of the options? */
static bool named_by_connection(const struct head *h, size_t i, const struct conn_options *o)
{
    for (size_t k = 0; k < o->n; k++)
        if (o->len[k] == h->f[i].name_len && strncasecmp(h->buf + o->off[k], head_name(h, i), o->len[k]) == 0)
            return true;
    return false;
}

/* RFC 9110 §7.6.1 plus the legacy names every proxy strips. */
static bool is_hop_by_hop(const char *n, size_t len)
{
    switch (len) {
    case 2: return strncasecmp(n, "te", 2) == 0;
    case 18: return strncasecmp(n, "proxy-authenticate", 18) == 0;
    case 19: return strncasecmp(n, "proxy-authorization", 19) == 0;
    case 7: return strncasecmp(n, "trailer", 7) == 0 || strncasecmp(n, "upgrade", 7) == 0;
    case 10: return strncasecmp(n, "connection", 10) == 0 || strncasecmp(n, "keep-alive", 10) == 0;
    case 16: return strncasecmp(n, "proxy-connection", 16) == 0;
    case 17: return strncasecmp(n, "transfer-encoding", 17) == 0;
    default: return false;
    }
}

/* RFC 9110 §5.6.2 tchar */
static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1, ['-'] = 1,
    ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,  ['0'] = 1, ['1'] = 1, ['2'] = 1,
    ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1,  ['9'] = 1, ['A'] = 1, ['B'] = 1,
    ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,  ['I'] = 1, ['J'] = 1, ['K'] = 1,
    ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1,  ['R'] = 1, ['S'] = 1, ['T'] = 1,
    ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,  ['a'] = 1, ['b'] = 1, ['c'] = 1,
    ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,  ['j'] = 1, ['k'] = 1, ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,  ['s'] = 1, ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

bool proxy_http_tchar(unsigned char ch)
{
    return tchar[ch];
}

static bool valid_name(const char *n, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!tchar[(unsigned char)n[i]])
            return false;
    return true;
}

/* uri-host (RFC 3986 §3.2.2) and an optional port: no spaces, no delimiters that would change the authority.
 */
static bool valid_host(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch <= ' ' || ch >= 0x7f || ch == '/' || ch == '\\' || ch == '?' || ch == '#' || ch == '@' ||
            ch == '"' || ch == '<' || ch == '>' || ch == '{' || ch == '}' || ch == '|' || ch == '^' ||
            ch == '`')
            return false;
    }
    return true;
}

/*
 * Does field i cross the proxy? Not the hop-by-hop ones (RFC 9110 §7.6.1), nor those the
 * Connection field names (custom: any such name exists). An Upgrade field is noted in
 * *upgrade_i (unless NULL): it crosses only with a real upgrade, which the caller decides.
 * Content-Length and Host cross even when Connection names them: the body we forward is
 * framed by that Content-Length (without it the app would read the body as the next
 * request), and Host is the request's authority. nginx and HAProxy keep both too.
 */
static bool crosses(const struct head *h, size_t i, const struct conn_options *o, int *upgrade_i)
{
    const char *n = head_name(h, i);
    size_t nl = h->f[i].name_len;
    if (is_hop_by_hop(n, nl)) {
        if (upgrade_i && eq_nocase(n, nl, "upgrade"))
            *upgrade_i = (int)i;
        return false;
    }
    if (o->n == 0)
        return true;
    if (eq_nocase(n, nl, "content-length") || eq_nocase(n, nl, "host"))
        return true;
    return !named_by_connection(h, i, o);
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

/* RFC 9110 §5.5: a field value excludes trailing whitespace; llhttp 8.1 drops only the leading. */
static void trim_value(struct head *h, size_t i)
{
    const char *v = head_val(h, i);
    uint32_t n = h->f[i].val_len;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    h->f[i].val_len = n;
}

void proxy_http_request_facts(struct head *h, int http_minor, struct req_facts *facts)
{
    struct conn_options co;
    co.n = 0;
    memset(facts, 0, sizeof(*facts));
    const char *url = h->buf + h->url_off;
    const char *q = memchr(url, '?', h->url_len);
    facts->path = url;
    facts->path_len = q ? (size_t)(q - url) : h->url_len;

    for (size_t i = 0; i < h->nf; i++) {
        trim_value(h, i);
        const char *n = head_name(h, i), *v = head_val(h, i);
        size_t nl = h->f[i].name_len, vl = h->f[i].val_len;
        /* obs-fold reaches us as CR/LF inside a value (llhttp 8.1 accepts it): RFC 9112 §5.2 */
        if (!valid_value(v, vl)) {
            facts->bad = "invalid character in a header value (obs-fold, CR, LF or NUL)";
            return;
        }
        if (!valid_name(n, nl)) {
            facts->bad = "invalid character in a header name";
            return;
        }
        if (eq_nocase(n, nl, "host")) {
            if (!valid_host(v, vl)) {
                facts->bad = "invalid Host header";
                return;
            }
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
            if (!conn_options_add(&co, h->buf, v, vl)) {
                facts->bad = "too many options in the Connection header";
                return;
            }
        } else if (eq_nocase(n, nl, "expect")) {
            if (eq_nocase(v, vl, "100-continue"))
                facts->expect_continue = true;
        }
    }
    h->conn_opts = co.n ? 2 : 1;
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

bool proxy_http_response_coding_ok(const struct head *h)
{
    int n = 0;
    for (size_t i = 0; i < h->nf; i++) {
        if (h->f[i].name_len != 17 || !proxy_head_name_is(h, i, "transfer-encoding"))
            continue;
        if (++n > 1 || h->f[i].val_len != 7 || strncasecmp(head_val(h, i), "chunked", 7) != 0)
            return false;
    }
    return true;
}

/*
 * On every response, so only what llhttp 8.1 leaves out: it refuses a name or a value with
 * a byte outside its class (tests/vtc/response_invalid_head.vtc cases 3-5), not an empty name.
 * A byte-by-byte pass over every field (as for requests) cost about 2 000 instructions per
 * proxied request, 12 % of the whole.
 */
const char *proxy_http_response_bad(struct head *h, int status)
{
    /* below 100 there is no class (RFC 9110 §15) to say whether a body follows or not */
    if (status < 100)
        return "invalid status code";
    if (h->reason_len && !valid_value(h->buf + h->reason_off, h->reason_len))
        return "invalid character in the reason phrase";
    struct conn_options co;
    co.n = 0;
    for (size_t i = 0; i < h->nf; i++) {
        if (h->f[i].name_len == 0)
            return "invalid header name";
        trim_value(h, i);
        if (h->f[i].name_len == 10 && proxy_head_name_is(h, i, "connection") &&
            !conn_options_add(&co, h->buf, head_val(h, i), h->f[i].val_len))
            return "too many options in the Connection header";
    }
    h->conn_opts = co.n ? 2 : 1;
    return NULL;
}

/*
 * Heads are written into space reserved in the output buffer in one go:
 * one reserve, memcpy per field, one commit. (Building them with one
 * evbuffer_add or printf per piece cost more than parsing them.)
 */
struct writer {
    char *p;
    char *end;
};

static inline void put(struct writer *wr, const char *s, size_t n)
{
    if ((size_t)(wr->end - wr->p) < n)
        n = (size_t)(wr->end - wr->p); /* cannot happen: space was reserved for the worst case */
    memcpy(wr->p, s, n);
    wr->p += n;
}

#define PUT_LIT(wr, lit) put(wr, lit, sizeof(lit) - 1)

static inline void put_str(struct writer *wr, const char *s)
{
    put(wr, s, strlen(s));
}

static void put_field(struct writer *wr, const struct head *h, size_t i)
{
    put(wr, head_name(h, i), h->f[i].name_len);
    PUT_LIT(wr, ": ");
    put(wr, head_val(h, i), h->f[i].val_len);
    PUT_LIT(wr, "\r\n");
}

/* Every Upgrade field line, in order: several lines are one list (RFC 9110 §5.3, §7.8). */
static void put_upgrade_fields(struct writer *wr, const struct head *h)
{
    for (size_t i = 0; i < h->nf; i++)
        if (h->f[i].name_len == 7 && proxy_head_name_is(h, i, "upgrade"))
            put_field(wr, h, i);
}

static void put_header(struct writer *wr, const char *name, size_t nlen, const char *val)
{
    put(wr, name, nlen);
    put_str(wr, val);
    PUT_LIT(wr, "\r\n");
}

static int writer_begin(struct evbuffer *out, struct writer *wr, struct evbuffer_iovec *iov, size_t size)
{
    if (evbuffer_reserve_space(out, (ev_ssize_t)size, iov, 1) != 1)
        return -1;
    wr->p = iov->iov_base;
    wr->end = wr->p + size;
    return 0;
}

static int writer_commit(struct evbuffer *out, struct writer *wr, struct evbuffer_iovec *iov)
{
    iov->iov_len = (size_t)(wr->p - (char *)iov->iov_base);
    return evbuffer_commit_space(out, iov, 1);
}

static size_t slen(const char *s)
{
    return s ? strlen(s) : 0;
}

static bool starts_nocase(const char *s, size_t len, const char *prefix)
{
    size_t pl = strlen(prefix);
    return len >= pl && strncasecmp(s, prefix, pl) == 0;
}

/* Does name [n, n+len) begin with prefix (lower case, '-') when each '_' is read as '-'? */
static bool starts_dashed(const char *n, size_t len, const char *prefix)
{
    size_t pl = strlen(prefix);
    if (len < pl)
        return false;
    for (size_t k = 0; k < pl; k++) {
        char ch = n[k] == '_' ? '-' : (char)(n[k] | (n[k] >= 'A' && n[k] <= 'Z' ? 0x20 : 0));
        if (ch != prefix[k])
            return false;
    }
    return true;
}

/*
 * A "_" spelling of a field leaseway owns (Fly_Primary_Instance, X_Forwarded_For,
 * Leaseway_Forwarded_By, ...). CGI, WSGI, Rack and PHP give "-" and "_" the same variable
 * (HTTP_X_FORWARDED_FOR), so a client could speak for leaseway through one: dropped, as
 * nginx drops every name with "_" by default (underscores_in_headers off).
 */
static bool owned_lookalike(const char *n, size_t nl)
{
    if (!memchr(n, '_', nl))
        return false;
    return starts_dashed(n, nl, "leaseway-") || starts_dashed(n, nl, "x-forwarded-") ||
           (nl == 20 && starts_dashed(n, nl, "fly-primary-instance"));
}

int proxy_http_write_request(struct evbuffer *out, const struct head *h, const struct req_rewrite *rw)
{
    struct evbuffer_iovec iov;
    struct writer wr;
    /* worst case: every field + separators, the request line, our own fields */
    size_t size = h->len + h->nf * 4 + rw->method_len + 640 + slen(rw->client_ip) + slen(rw->primary_id) +
                  slen(rw->host_fallback) + slen(rw->forwarded_by) + slen(rw->peer_token) +
                  h->len; /* X-Forwarded-Host may repeat Host */
    if (writer_begin(out, &wr, &iov, size) < 0)
        return -1;
    put(&wr, rw->method, rw->method_len);
    PUT_LIT(&wr, " ");
    put(&wr, h->buf + h->url_off, h->url_len);
    PUT_LIT(&wr, " HTTP/1.1\r\n");

    struct conn_options co;
    co.n = 0;
    if (h->conn_opts != 1)                     /* 1: none, as the head's validation found (the usual case) */
        (void)proxy_http_conn_options(h, &co); /* more than the maximum was refused with the head */
    int xff_first = -1, xff_count = 0;
    bool have_host = false, have_proto = false, have_fhost = false;
    int upgrade_i = -1, host_i = -1;
    for (size_t i = 0; i < h->nf; i++) {
        const char *n = head_name(h, i);
        size_t nl = h->f[i].name_len;
        if (!crosses(h, i, &co, &upgrade_i))
            continue;
        if (rw->drop_expect && nl == 6 && strncasecmp(n, "expect", 6) == 0)
            continue;
        if (nl == 4 && strncasecmp(n, "host", 4) == 0) {
            have_host = true;
            host_i = (int)i;
        } else if (!rw->passthrough) {
            const char c0 = (char)(n[0] | 0x20);
            if ((c0 == 'l' || c0 == 'x' || c0 == 'f') && owned_lookalike(n, nl))
                continue;
            if ((n[0] | 0x20) == 'l' && starts_nocase(n, nl, "leaseway-"))
                continue;
            if ((n[0] | 0x20) == 'f' && eq_nocase(n, nl, "fly-primary-instance"))
                continue;
            if ((n[0] | 0x20) == 'x' && nl > 12 && starts_nocase(n, nl, "x-forwarded-")) {
                if (eq_nocase(n, nl, "x-forwarded-for")) {
                    /* several fields form one list (RFC 9110 §5.3): joined below, in order */
                    if (xff_first < 0)
                        xff_first = (int)i;
                    xff_count++;
                    continue;
                }
                have_proto |= eq_nocase(n, nl, "x-forwarded-proto");
                have_fhost |= eq_nocase(n, nl, "x-forwarded-host");
            }
        }
        put_field(&wr, h, i);
    }
    if (!have_host && rw->host_fallback)
        put_header(&wr, "Host: ", 6, rw->host_fallback);
    if (!rw->passthrough) {
        /* a proven peer already appended the client; anyone else is appended here */
        if (xff_count || !rw->from_peer) {
            PUT_LIT(&wr, "X-Forwarded-For: ");
            int seen = 0;
            for (size_t i = (size_t)(xff_first < 0 ? 0 : xff_first); seen < xff_count && i < h->nf; i++) {
                if (!proxy_head_name_is(h, i, "x-forwarded-for"))
                    continue;
                if (seen++)
                    PUT_LIT(&wr, ", ");
                put(&wr, head_val(h, i), h->f[i].val_len);
            }
            if (!rw->from_peer) {
                if (xff_count)
                    PUT_LIT(&wr, ", ");
                put_str(&wr, rw->client_ip);
            }
            PUT_LIT(&wr, "\r\n");
        }
        /* behind Fly's edge the previous hop already says https: keep what it said */
        if (!have_proto)
            PUT_LIT(&wr, "X-Forwarded-Proto: http\r\n");
        if (!have_fhost && host_i >= 0) {
            PUT_LIT(&wr, "X-Forwarded-Host: ");
            put(&wr, head_val(h, (size_t)host_i), h->f[host_i].val_len);
            PUT_LIT(&wr, "\r\n");
        }
        if (rw->primary_id)
            put_header(&wr, "Fly-Primary-Instance: ", 22, rw->primary_id);
        if (rw->forwarded_by)
            put_header(&wr, "Leaseway-Forwarded-By: ", 23, rw->forwarded_by);
        if (rw->peer_token)
            put_header(&wr, "Leaseway-Peer-Auth: ", 20, rw->peer_token);
    }
    if (rw->upgrade && upgrade_i >= 0) {
        PUT_LIT(&wr, "Connection: upgrade\r\n");
        put_upgrade_fields(&wr, h);
    }
    if (rw->chunked)
        PUT_LIT(&wr, "Transfer-Encoding: chunked\r\n");
    PUT_LIT(&wr, "\r\n");
    return writer_commit(out, &wr, &iov);
}

/*
 * "Date: <IMF-fixdate>\r\n" (RFC 9110 §5.6.7) for this second, formatted once a second per
 * thread. An origin with a clock sends Date, and a proxy adds one to a response without it
 * (RFC 9110 §6.6.1): leaseway's own answers, and the app's that lack one.
 */
#define DATE_LINE_MAX 40
static const char *date_line(size_t *len)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    static __thread time_t last = -1;
    static __thread char line[DATE_LINE_MAX + 8];
    static __thread size_t n;
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        int k = snprintf(line, sizeof(line), "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
                         days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
                         tm.tm_hour, tm.tm_min, tm.tm_sec);
        n = k > 0 && (size_t)k < sizeof(line) ? (size_t)k : 0;
        last = now;
    }
    *len = n;
    return line;
}

static size_t our_headers_size(const struct resp_rewrite *rw)
{
    return 128 + slen(rw->primary_id) + slen(rw->instance) + slen(rw->region);
}

static void put_our_headers(struct writer *wr, const struct resp_rewrite *rw)
{
    if (rw->primary_id)
        put_header(wr, "Fly-Primary-Instance: ", 22, rw->primary_id);
    put_header(wr, "Fly-Instance: ", 14, rw->instance);
    if (rw->region && *rw->region)
        put_header(wr, "Fly-Region: ", 12, rw->region);
}

static void put_connection(struct writer *wr, const struct resp_rewrite *rw)
{
    if (rw->upgrade)
        return;
    if (!rw->keepalive)
        PUT_LIT(wr, "Connection: close\r\n");
    else if (rw->client_minor == 0)
        PUT_LIT(wr, "Connection: keep-alive\r\n");
}

static void put_status_line(struct writer *wr, int status, const char *reason, size_t rlen)
{
    char line[16] = "HTTP/1.1 000 ";
    if (status < 100 || status > 999)
        status = 502;
    line[9] = (char)('0' + status / 100);
    line[10] = (char)('0' + status / 10 % 10);
    line[11] = (char)('0' + status % 10);
    put(wr, line, 13);
    put(wr, reason, rlen);
    PUT_LIT(wr, "\r\n");
}

int proxy_http_write_response(struct evbuffer *out, const struct head *h, const struct resp_rewrite *rw)
{
    struct evbuffer_iovec iov;
    struct writer wr;
    const char *reason = proxy_http_reason(rw->status);
    if (writer_begin(out, &wr, &iov,
                     h->len + h->nf * 4 + 416 + DATE_LINE_MAX + our_headers_size(rw) + strlen(reason) +
                         slen(rw->extra)) < 0)
        return -1;
    if (h->reason_len)
        put_status_line(&wr, rw->status, h->buf + h->reason_off, h->reason_len);
    else
        put_status_line(&wr, rw->status, reason, strlen(reason));

    struct conn_options co;
    co.n = 0;
    if (h->conn_opts != 1)                     /* 1: none, as the head's validation found (the usual case) */
        (void)proxy_http_conn_options(h, &co); /* more than the maximum was refused with the head */
    /* no Content-Length on a 1xx or 204 (RFC 9110 §8.6); a 304 or a HEAD answer keeps GET's */
    const bool keep_cl =
        (rw->framing == BODY_LENGTH || rw->framing == BODY_NONE) && rw->status != 204 && rw->status >= 200;
    bool have_date = false;
    for (size_t i = 0; i < h->nf; i++) {
        const char *nm = head_name(h, i);
        size_t nl = h->f[i].name_len;
        if (!crosses(h, i, &co, NULL))
            continue;
        if (nl == 4 && strncasecmp(nm, "date", 4) == 0)
            have_date = true;
        /* framing is ours to decide; a CL survives only where the body keeps its length */
        if (!keep_cl && eq_nocase(nm, nl, "content-length"))
            continue;
        if (!rw->passthrough && (nm[0] | 0x20) == 'f' &&
            (eq_nocase(nm, nl, "fly-primary-instance") || eq_nocase(nm, nl, "fly-instance") ||
             eq_nocase(nm, nl, "fly-region")))
            continue;
        put_field(&wr, h, i);
    }
    const bool final = rw->status >= 200;
    if (!rw->passthrough) {
        if (!have_date && final) {
            size_t dl;
            const char *d = date_line(&dl);
            put(&wr, d, dl);
        }
        put_our_headers(&wr, rw);
    }
    /* cookies go on the final answer only, never on a 1xx (RFC 9110 §15.2: interim, no state) */
    if (rw->extra && final)
        put_str(&wr, rw->extra);
    if (rw->cookie_ms > 0 && final) {
        /* SPEC §3: read-your-writes for this client for --consistency-window */
        char line[160];
        int n = snprintf(line, sizeof(line),
                         "Set-Cookie: leaseway_wrote=%lld; Path=/; Max-Age=%lld; HttpOnly; SameSite=Lax\r\n",
                         (long long)rw->cookie_ms, (long long)rw->cookie_max_age_s);
        put(&wr, line, (size_t)n);
    }
    if (rw->upgrade) {
        PUT_LIT(&wr, "Connection: upgrade\r\n");
        put_upgrade_fields(&wr, h);
    }
    if (rw->framing == BODY_CHUNKED)
        PUT_LIT(&wr, "Transfer-Encoding: chunked\r\n");
    put_connection(&wr, rw);
    PUT_LIT(&wr, "\r\n");
    return writer_commit(out, &wr, &iov);
}

void proxy_http_write_local(struct evbuffer *out, int status, const char *reason_line,
                            const char *extra_headers, const struct resp_rewrite *rw)
{
    size_t blen = reason_line ? strlen(reason_line) + 1 : 0;
    const char *reason = proxy_http_reason(status);
    struct evbuffer_iovec iov;
    struct writer wr;
    char num[24];
    if (writer_begin(out, &wr, &iov,
                     256 + DATE_LINE_MAX + strlen(reason) + slen(extra_headers) + our_headers_size(rw) +
                         blen) < 0)
        return;
    put_status_line(&wr, status, reason, strlen(reason));
    size_t dl;
    const char *d = date_line(&dl);
    put(&wr, d, dl);
    if (blen)
        PUT_LIT(&wr, "Content-Type: text/plain; charset=utf-8\r\n");
    snprintf(num, sizeof(num), "%zu", blen);
    put_header(&wr, "Content-Length: ", 16, num);
    if (extra_headers)
        put_str(&wr, extra_headers);
    put_our_headers(&wr, rw);
    put_connection(&wr, rw);
    PUT_LIT(&wr, "\r\n");
    /* an answer to HEAD says how long the body would be, and sends none (RFC 9110 §9.3.2) */
    if (blen && !rw->no_body) {
        put(&wr, reason_line, blen - 1);
        PUT_LIT(&wr, "\n");
    }
    (void)writer_commit(out, &wr, &iov);
}

enum head_scan_result proxy_http_scan_head_used(uint8_t *state, const char *p, size_t n, size_t *used)
{
    size_t i = 0;
    *used = n;
    while (*state != HEAD_SCAN_DONE) {
        if (*state == HEAD_SCAN_LINE) {
            /* at the start of a line after CRLF */
            if (i >= n)
                return HEAD_SCAN_OK;
            if (p[i] == ' ' || p[i] == '\t')
                return HEAD_SCAN_OBS_FOLD;
            if (p[i] == '\n')
                return HEAD_SCAN_BARE_LF;
            if (p[i] == '\r') {
                *state = HEAD_SCAN_LINE_CR;
                i++;
                continue;
            }
            *state = HEAD_SCAN_START;
            continue;
        }
        if (*state == HEAD_SCAN_LINE_CR) {
            if (i >= n)
                return HEAD_SCAN_OK;
            /* CR LF on an empty line ends the head; a bare CR is llhttp's to refuse */
            *state = p[i] == '\n' ? HEAD_SCAN_DONE : HEAD_SCAN_START;
            if (*state == HEAD_SCAN_DONE)
                *used = i + 1;
            continue;
        }
        const char *lf = i < n ? memchr(p + i, '\n', n - i) : NULL;
        if (!lf) {
            if (n > i)
                *state = p[n - 1] == '\r' ? HEAD_SCAN_CR : HEAD_SCAN_START;
            return HEAD_SCAN_OK;
        }
        size_t j = (size_t)(lf - p);
        bool cr = j > i ? p[j - 1] == '\r' : *state == HEAD_SCAN_CR;
        if (!cr)
            return HEAD_SCAN_BARE_LF;
        *state = HEAD_SCAN_LINE;
        i = j + 1;
    }
    return HEAD_SCAN_OK;
}

enum head_scan_result proxy_http_scan_head(uint8_t *state, const char *p, size_t n)
{
    size_t used;
    return proxy_http_scan_head_used(state, p, n, &used);
}

size_t proxy_http_chunk_header(char *buf, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[16];
    size_t n = 0;
    do {
        tmp[n++] = hex[len & 0xf];
        len >>= 4;
    } while (len);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\r';
    buf[n + 1] = '\n';
    return n + 2;
}

const char *proxy_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 401: return "Unauthorized";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
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
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}
