/*
 * fuzz_response: app bytes through the response path of proxy/proxy_conn.c, without sockets.
 *
 * The harness does what upstream_read() and the resp_* llhttp callbacks do: one strict llhttp
 * response parser whose spans go through proxy_head_span/field/value (64 KiB head limit);
 * interim responses go to HTTP/1.1 clients as they come, a 101 only when the client asked
 * for an upgrade, a Transfer-Encoding other than "chunked" alone is refused (502), the body
 * framing towards the client is chosen as resp_headers_complete() does, the head is written
 * by proxy_http_write_response and the body is re-chunked as resp_body() does; the end of the
 * app's bytes is llhttp_finish(), as upstream_eof() does.
 *
 * Input: byte 0 describes the client's request and the instance (HTTP/1.0 or 1.1, HEAD,
 * upgrade, keep-alive, passthrough route, primary known, region, cookies), byte 1 how the
 * rest is cut into reads (1..255 bytes, or 0: one read), the rest is what the app sends.
 *
 * What leaseway wrote must re-parse with a fresh strict llhttp (told about HEAD) as the
 * interim heads plus one response with the same body, ending exactly where the bytes end (or
 * at the close, for a close-delimited body), with no control byte in a field, no hop-by-hop
 * field but the Connection/Transfer-Encoding/Upgrade leaseway sets, no Content-Length on a
 * 1xx or 204, and exactly our Fly-Instance, Fly-Region and Fly-Primary-Instance (unless the
 * route is passthrough).
 */
#include "fuzz.h"

#include "proxy/proxy.h"

#define INSTANCE   "i-self"
#define REGION     "ams"
#define PRIMARY_ID "i-primary"
#define EXTRA      "Set-Cookie: __txid=000000000000002a; Path=/; Max-Age=300; HttpOnly; SameSite=Lax\r\n"

enum {
    OPT_HTTP11 = 1 << 0,
    OPT_HEAD = 1 << 1,    /* the request was HEAD */
    OPT_UPGRADE = 1 << 2, /* the request asked for an upgrade */
    OPT_KEEPALIVE = 1 << 3,
    OPT_PASSTHROUGH = 1 << 4,
    OPT_PRIMARY = 1 << 5,
    OPT_REGION = 1 << 6,
    OPT_COOKIES = 1 << 7 /* a write: leaseway_wrote and __txid cookies */
};

struct up {
    llhttp_t parser;
    struct head *head;
    uint8_t opts;
    bool final_seen;
    bool resp_done;
    bool failed;        /* 502, or the client closed */
    bool final_written; /* the final head went to the client */
    int status;
    int interim; /* interim heads written */
    struct resp_rewrite rw;
    struct evbuffer *out;  /* to the client */
    struct evbuffer *body; /* the final response's body as the app sent it, decoded */
};

static llhttp_settings_t settings;

static int on_message_begin(llhttp_t *p)
{
    struct up *u = p->data;
    proxy_head_reset(u->head);
    evbuffer_drain(u->body, evbuffer_get_length(u->body));
    return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t len)
{
    struct up *u = p->data;
    return proxy_head_span(u->head, &u->head->reason_off, &u->head->reason_len, at, len) < 0 ? -1 : 0;
}

static int on_field(llhttp_t *p, const char *at, size_t len)
{
    struct up *u = p->data;
    return proxy_head_field(u->head, at, len) < 0 ? -1 : 0;
}

static int on_value(llhttp_t *p, const char *at, size_t len)
{
    struct up *u = p->data;
    return proxy_head_value(u->head, at, len) < 0 ? -1 : 0;
}

/* Write a head; the bytes written must be one head, without bare LF or obs-fold. */
static int write_head(struct up *u, const struct resp_rewrite *rw)
{
    size_t before = evbuffer_get_length(u->out);
    if (proxy_http_write_response(u->out, u->head, rw) < 0)
        return -1;
    size_t n = evbuffer_get_length(u->out) - before;
    const char *p = (const char *)evbuffer_pullup(u->out, -1) + before;
    uint8_t scan = HEAD_SCAN_START;
    FUZZ_CHECK(proxy_http_scan_head(&scan, p, n) == HEAD_SCAN_OK && scan == HEAD_SCAN_DONE,
               "bare LF, obs-fold or no end in a head sent");
    FUZZ_CHECK(n >= 4 && !memcmp(p + n - 4, "\r\n\r\n", 4), "the head does not end with its blank line");
    return 0;
}

/* proxy_conn.c's names_protocol(): an Upgrade field with a value. */
static bool names_protocol(const struct head *h)
{
    for (size_t i = 0; i < h->nf; i++)
        if (h->f[i].val_len && proxy_head_name_is(h, i, "upgrade"))
            return true;
    return false;
}

static int on_headers_complete(llhttp_t *p)
{
    struct up *u = p->data;
    const uint8_t o = u->opts;
    int status = p->status_code;
    struct resp_rewrite *rw = &u->rw;

    if (proxy_http_response_bad(u->head, p->status_code)) {
        u->failed = true;
        return -1; /* 502 */
    }
    /* fill_rewrite() */
    memset(rw, 0, sizeof(*rw));
    rw->status = status;
    rw->client_minor = (o & OPT_HTTP11) ? 1 : 0;
    rw->passthrough = o & OPT_PASSTHROUGH;
    rw->primary_id = (o & OPT_PRIMARY) ? PRIMARY_ID : NULL;
    rw->instance = INSTANCE;
    rw->region = (o & OPT_REGION) ? REGION : NULL;
    if ((o & OPT_COOKIES) && !rw->passthrough) {
        rw->cookie_ms = 1700000000000;
        rw->cookie_max_age_s = 5;
    }

    if (status >= 100 && status < 200 && status != 101) {
        if (rw->client_minor >= 1) {
            rw->framing = BODY_NONE;
            rw->keepalive = true;
            rw->passthrough = true;
            if (write_head(u, rw) < 0)
                return -1;
            u->interim++;
        }
        return 1; /* as proxy_conn.c: a 1xx has no body (RFC 9112 §6.3) */
    }
    if (status == 101) {
        if (!(o & OPT_UPGRADE) || !names_protocol(u->head)) {
            u->failed = true;
            return -1; /* an upgrade nobody asked for, or one that names no protocol */
        }
        rw->upgrade = true;
        rw->framing = BODY_NONE;
        p->upgrade = 1; /* as proxy_conn.c: a 101 switches, with or without Connection: upgrade */
        u->final_seen = true;
        u->status = 101;
        if (write_head(u, rw) < 0)
            return -1;
        u->final_written = true;
        return 1; /* as proxy_conn.c: a 101 has no body, the tunnel follows */
    }
    u->final_seen = true;
    if ((p->flags & F_TRANSFER_ENCODING) && !proxy_http_response_coding_ok(u->head)) {
        u->failed = true;
        return -1;
    }
    bool no_body = (o & OPT_HEAD) || status == 204 || status == 304;
    if (no_body)
        rw->framing = BODY_NONE;
    else if (p->flags & F_CONTENT_LENGTH)
        rw->framing = BODY_LENGTH;
    else
        rw->framing = rw->client_minor >= 1 ? BODY_CHUNKED : BODY_EOF;
    rw->keepalive = (o & OPT_KEEPALIVE) && rw->framing != BODY_EOF && !(o & OPT_UPGRADE);
    if ((o & OPT_COOKIES) && status < 500)
        rw->extra = EXTRA;
    u->status = status;
    if (write_head(u, rw) < 0)
        return -1;
    u->final_written = true;
    return no_body ? 1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct up *u = p->data;
    FUZZ_CHECK(u->final_seen, "a body before the final head");
    fuzz_forward_body(u->out, u->rw.framing == BODY_CHUNKED, at, len);
    evbuffer_add(u->body, at, len);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct up *u = p->data;
    if (!u->final_seen)
        return 0; /* an interim response: the final one follows */
    if (u->status == 101)
        return 0; /* llhttp returns HPE_PAUSED_UPGRADE */
    if (u->rw.framing == BODY_CHUNKED)
        evbuffer_add(u->out, "0\r\n\r\n", 5);
    u->resp_done = true;
    return HPE_PAUSED;
}

/* The invariants of every head the client gets. */
static void check_head(struct reparse *r)
{
    const struct up *u = r->arg;
    const struct head *h = r->h;
    int status = r->p.status_code;
    bool interim = status >= 100 && status < 200 && status != 101;

    FUZZ_CHECK(r->p.http_major == 1 && r->p.http_minor == 1, "HTTP/%d.%d sent", r->p.http_major,
               r->p.http_minor);
    fuzz_check_field_bytes(h);
    static const char *const never[] = {
        "te", "trailer", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection"};
    for (size_t k = 0; k < sizeof(never) / sizeof(never[0]); k++)
        FUZZ_CHECK(fuzz_count(h, never[k]) == 0, "%s crossed", never[k]);
    if (status < 200 || status == 204)
        FUZZ_CHECK(fuzz_count(h, "content-length") == 0, "Content-Length on a %d", status);
    FUZZ_CHECK(!(fuzz_count(h, "content-length") && fuzz_count(h, "transfer-encoding")), "CL and TE");
    if (interim) {
        FUZZ_CHECK(fuzz_count(h, "connection") == 0 && fuzz_count(h, "transfer-encoding") == 0 &&
                       fuzz_count(h, "upgrade") == 0,
                   "hop-by-hop field on an interim response");
        return;
    }
    const struct resp_rewrite *rw = &u->rw;
    FUZZ_CHECK(status == (u->status < 100 || u->status > 999 ? 502 : u->status), "status %d became %d",
               u->status, status);
    int conn = proxy_head_find(h, "connection");
    FUZZ_CHECK(fuzz_count(h, "connection") <= 1, "%d Connection fields", fuzz_count(h, "connection"));
    if (rw->upgrade)
        FUZZ_CHECK(conn >= 0 && fuzz_val_is(h, (size_t)conn, "upgrade"), "101 without Connection: upgrade");
    else if (!rw->keepalive)
        FUZZ_CHECK(conn >= 0 && fuzz_val_is(h, (size_t)conn, "close"), "no Connection: close");
    else if (rw->client_minor == 0)
        FUZZ_CHECK(conn >= 0 && fuzz_val_is(h, (size_t)conn, "keep-alive"), "no Connection: keep-alive");
    else
        FUZZ_CHECK(conn < 0, "a Connection field on a kept HTTP/1.1 connection");
    /* with a 101, every Upgrade line of the app: one list (RFC 9110 §5.3) */
    FUZZ_CHECK(fuzz_count(h, "upgrade") == (rw->upgrade ? fuzz_count(u->head, "upgrade") : 0),
               "%d Upgrade fields", fuzz_count(h, "upgrade"));
    FUZZ_CHECK(fuzz_count(h, "transfer-encoding") == (rw->framing == BODY_CHUNKED ? 1 : 0),
               "%d Transfer-Encoding fields", fuzz_count(h, "transfer-encoding"));
    if (rw->passthrough)
        return;
    FUZZ_CHECK(fuzz_count(h, "fly-instance") == 1 &&
                   fuzz_val_is(h, (size_t)proxy_head_find(h, "fly-instance"), INSTANCE),
               "not our Fly-Instance");
    FUZZ_CHECK(fuzz_count(h, "fly-region") == (rw->region ? 1 : 0), "%d Fly-Region",
               fuzz_count(h, "fly-region"));
    if (rw->region)
        FUZZ_CHECK(fuzz_val_is(h, (size_t)proxy_head_find(h, "fly-region"), REGION), "not our Fly-Region");
    FUZZ_CHECK(fuzz_count(h, "fly-primary-instance") == (rw->primary_id ? 1 : 0), "%d Fly-Primary-Instance",
               fuzz_count(h, "fly-primary-instance"));
    if (rw->primary_id)
        FUZZ_CHECK(fuzz_val_is(h, (size_t)proxy_head_find(h, "fly-primary-instance"), PRIMARY_ID),
                   "not our Fly-Primary-Instance");
}

/* What leaseway wrote to the client, parsed by the client. */
static void check_client(struct up *u, bool complete)
{
    struct reparse r;
    reparse_init(&r, HTTP_RESPONSE, check_head, u);
    r.head_resp = u->opts & OPT_HEAD;
    size_t n = evbuffer_get_length(u->out);
    const char *out = (const char *)evbuffer_pullup(u->out, -1);
    llhttp_errno_t e = n ? llhttp_execute(&r.p, out, n) : HPE_OK;
    FUZZ_CHECK(!r.failed, "re-parse arena full");
    FUZZ_CHECK(e == HPE_OK || e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE,
               "the client cannot parse it: %s (%s)", llhttp_errno_name(e), llhttp_get_error_reason(&r.p));
    if (e == HPE_OK && complete && u->rw.framing == BODY_EOF) {
        e = llhttp_finish(&r.p); /* leaseway closes after a close-delimited body (close_after_resp) */
        FUZZ_CHECK(e == HPE_OK || e == HPE_PAUSED, "close-delimited body: %s", llhttp_errno_name(e));
        if (e == HPE_OK && r.messages == u->interim + 1)
            e = HPE_PAUSED;
    }
    FUZZ_CHECK(r.heads == u->interim + u->final_written, "%d heads sent, %d written", r.heads,
               u->interim + u->final_written);
    if (u->final_written) {
        const char *body = (const char *)evbuffer_pullup(u->body, -1);
        FUZZ_CHECK(fuzz_buf_eq(r.body, body, evbuffer_get_length(u->body)),
                   "the body changed (%zu -> %zu bytes)", evbuffer_get_length(u->body),
                   evbuffer_get_length(r.body));
    }
    if (complete) {
        FUZZ_CHECK(e == (u->status == 101 ? HPE_PAUSED_UPGRADE : HPE_PAUSED), "the response did not end: %s",
                   llhttp_errno_name(e));
        if (u->rw.framing != BODY_EOF)
            FUZZ_CHECK(llhttp_get_error_pos(&r.p) == out + n, "%zu bytes after the response",
                       (size_t)(out + n - llhttp_get_error_pos(&r.p)));
        FUZZ_CHECK(r.messages == u->interim + 1, "%d messages, %d written", r.messages, u->interim + 1);
    } else {
        FUZZ_CHECK(e == HPE_OK, "a partial response ended: %s", llhttp_errno_name(e));
    }
    reparse_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        init = true;
        llhttp_settings_init(&settings);
        settings.on_message_begin = on_message_begin;
        settings.on_status = on_status;
        settings.on_header_field = on_field;
        settings.on_header_value = on_value;
        settings.on_headers_complete = on_headers_complete;
        settings.on_body = on_body;
        settings.on_message_complete = on_message_complete;
    }
    if (size < 2)
        return 0;
    struct up u = {.opts = data[0]};
    size_t step = data[1] ? data[1] : SIZE_MAX;
    const char *in = (const char *)data + 2;
    size_t n = size - 2, pos = 0;
    u.head = calloc(1, sizeof(*u.head));
    u.out = evbuffer_new();
    u.body = evbuffer_new();
    FUZZ_CHECK(u.head && u.out && u.body, "out of memory");
    llhttp_init(&u.parser, HTTP_RESPONSE, &settings);
    u.parser.data = &u;

    llhttp_errno_t e = HPE_OK;
    while (pos < n) {
        size_t len = n - pos < step ? n - pos : step;
        e = llhttp_execute(&u.parser, in + pos, len);
        if (e != HPE_OK)
            break;
        pos += len;
    }
    if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
        FUZZ_CHECK(!u.failed && u.final_written, "paused without a final head sent");
        check_client(&u, true);
    } else {
        /* the app closed (or sent garbage): a close-delimited body ends here (RFC 9112 §6.3 rule 8) */
        if (e == HPE_OK && n > 0)
            (void)llhttp_finish(&u.parser);
        if (u.resp_done)
            check_client(&u, true);
        else if (evbuffer_get_length(u.out))
            check_client(&u, false); /* what went out before the close is a valid beginning */
    }

    proxy_head_free(u.head);
    evbuffer_free(u.out);
    evbuffer_free(u.body);
    return 0;
}
