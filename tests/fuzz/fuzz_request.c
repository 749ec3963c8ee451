/*
 * fuzz_request: client bytes through the request path of proxy/proxy_conn.c, without sockets.
 *
 * The harness does what client_feed() and the req_* llhttp callbacks do: the raw-line scan
 * (proxy_http_scan_head: bare LF, obs-fold), one strict llhttp parser (no lenient flag) whose
 * spans go through proxy_head_field/value/span with the same 8 KiB target and 64 KiB head
 * limits, then on the head proxy_http_absolute_form, proxy_http_request_facts, the CONNECT
 * refusal, the peer check, the __txid cookies and route_decide, and proxy_http_write_request
 * into an evbuffer; bodies are re-chunked as req_body does; a message pauses the parser and
 * pipelined bytes are parsed after it, as client_next() does.
 *
 * Input: byte 0 picks the rewrite options (route, primary, peer, ...), byte 1 how the rest is
 * cut into reads (1..255 bytes, or 0: one read), the rest is what the client sends.
 *
 * For every request head leaseway accepts, what it wrote must re-parse with a fresh strict
 * llhttp as one request with the same method, target and body (nothing smuggled in or out),
 * no control byte in any field, exactly one Host (the absolute-form authority if there was
 * one), no hop-by-hop field but the ones leaseway sets, and no client Leaseway-* or
 * Fly-Primary-Instance field (unless the route is passthrough, which touches nothing).
 * Every request that ends (answered or refused) gets its --access-log line as access_log()
 * writes it: one line, no raw control byte, valid JSON with --log-format json, no URL
 * credentials left.
 */
#include "fuzz.h"

#include <jansson.h>
#include <sys/mman.h>
#include <unistd.h>

#include "proxy/proxy.h"
#include "proxy/proxy_log.h"
#include "proxy/proxy_litefs.h"
#include "routing/route.h"

#define CLIENT_IP    "192.0.2.7"
#define PRIMARY_ID   "i-primary"
#define FORWARDED_BY "i-self"
#define PEER_TOKEN   "1700000000.00ff"
#define HOST_FALLBK  "127.0.0.1:3000"

enum {
    OPT_PASSTHROUGH = 1 << 0,
    OPT_FROM_PEER = 1 << 1,   /* a proven peer (rw.from_peer) */
    OPT_PRIMARY = 1 << 2,     /* the primary is known */
    OPT_FORWARD = 1 << 3,     /* to a peer: Leaseway-Forwarded-By */
    OPT_TOKEN = 1 << 4,       /* ... and Leaseway-Peer-Auth */
    OPT_SECRET = 1 << 5,      /* --peer-secret-file: Leaseway-Forwarded-By must carry a token */
    OPT_DROP_EXPECT = 1 << 6, /* leaseway answered 100 Continue itself */
    OPT_JSON_LOG = 1 << 7     /* --log-format json (the access log line) */
};

struct conn {
    llhttp_t parser;
    struct head *head;
    uint8_t head_scan;
    uint8_t opts;
    bool in_message;  /* between message begin and complete */
    bool head_done;   /* fields from now on are trailers */
    bool head_sent;   /* proxy_http_write_request wrote a head */
    bool dead;        /* refused (client_error) */
    bool upgrade_req; /* the request asks for an upgrade */
    uint32_t trailer_len;
    enum body_framing framing;
    struct evbuffer *up;   /* to the app: head and re-framed body */
    struct evbuffer *body; /* the body as the client sent it, decoded */
    struct req_rewrite rw;
    /* what the re-parse must see */
    uint8_t method;
    char authority[PROXY_URL_MAX + 1]; /* absolute-form target's authority ("" if none) */
    bool absolute;
    int client_xff;
    int upgrade_fields; /* the client's Upgrade field lines */
};

static llhttp_settings_t settings;
static struct proxy px_nosecret, px_secret;
static struct litefs_dbs dbs;
static struct route_rules rules;
static int access_fd = -1; /* memfd behind --access-log */

static int refuse(struct conn *c)
{
    c->dead = true;
    return HPE_USER;
}

static int on_message_begin(llhttp_t *p)
{
    struct conn *c = p->data;
    proxy_head_reset(c->head);
    c->in_message = true;
    c->head_done = c->head_sent = c->upgrade_req = false;
    c->trailer_len = 0;
    c->absolute = false;
    c->authority[0] = '\0';
    evbuffer_drain(c->up, evbuffer_get_length(c->up));
    evbuffer_drain(c->body, evbuffer_get_length(c->body));
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    struct head *h = c->head;
    if (h->url_len + len > PROXY_URL_MAX)
        return refuse(c); /* 414 */
    if (proxy_head_span(h, &h->url_off, &h->url_len, at, len) < 0)
        return refuse(c); /* 431 */
    return 0;
}

static int trailer(struct conn *c, size_t len)
{
    c->trailer_len += (uint32_t)(len > PROXY_HEAD_MAX ? PROXY_HEAD_MAX : len);
    return c->trailer_len > PROXY_HEAD_MAX ? refuse(c) : 0;
}

static int on_field(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (c->head_done)
        return trailer(c, len);
    return proxy_head_field(c->head, at, len) < 0 ? refuse(c) : 0;
}

static int on_value(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (c->head_done)
        return trailer(c, len);
    return proxy_head_value(c->head, at, len) < 0 ? refuse(c) : 0;
}

/* The authority of an http(s):// target, as proxy_http_absolute_form should find it. */
static void note_authority(struct conn *c)
{
    const struct head *h = c->head;
    const char *url = h->buf + h->url_off;
    size_t skip = h->url_len >= 7 && !strncasecmp(url, "http://", 7)    ? 7
                  : h->url_len >= 8 && !strncasecmp(url, "https://", 8) ? 8
                                                                        : 0;
    if (!skip || url[0] == '/' || url[0] == '*')
        return;
    size_t end = skip;
    while (end < h->url_len && url[end] != '/' && url[end] != '?')
        end++;
    c->absolute = true;
    memcpy(c->authority, url + skip, end - skip);
    c->authority[end - skip] = '\0';
}

static int on_headers_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    struct head *h = c->head;
    struct req_facts facts;

    c->head_done = true;
    c->upgrade_req = p->upgrade;
    c->method = p->method;
    if (p->http_major != 1)
        return refuse(c);
    note_authority(c);
    if (proxy_http_absolute_form(h, p->http_minor))
        return refuse(c);
    proxy_http_request_facts(h, p->http_minor, &facts);
    if (facts.bad)
        return refuse(c);
    FUZZ_CHECK(facts.host_count == 1 || (facts.host_count == 0 && p->http_minor == 0),
               "Host count %d accepted", facts.host_count);
    FUZZ_CHECK(!(facts.has_te && facts.has_cl), "CL and TE accepted together");
    if (p->method == HTTP_CONNECT)
        return refuse(c); /* 405 */
    if (p->flags & F_CHUNKED)
        c->framing = BODY_CHUNKED;
    else if ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0)
        c->framing = BODY_LENGTH;
    else
        c->framing = BODY_NONE;
    FUZZ_CHECK((c->framing == BODY_CHUNKED) == facts.has_te, "llhttp and the facts disagree on chunked");

    /* a request forwarded by another leaseway is authenticated first */
    int fb = proxy_head_find(h, "leaseway-forwarded-by");
    if (fb >= 0) {
        int tok = proxy_head_find(h, "leaseway-peer-auth");
        const struct proxy *px = (c->opts & OPT_SECRET) ? &px_secret : &px_nosecret;
        if (proxy_peer_verify(px, head_val(h, (size_t)fb), h->f[fb].val_len,
                              tok >= 0 ? head_val(h, (size_t)tok) : NULL, tok >= 0 ? h->f[tok].val_len : 0,
                              1700000000) < 0)
            return refuse(c); /* 403 */
    }
    uint64_t want[PROXY_MAX_DBS];
    (void)proxy_litefs_wanted(&dbs, h, want);
    const char *method = llhttp_method_name(p->method);
    struct route_request rreq = {
        .method = method,
        .method_len = strlen(method),
        .path = facts.path,
        .path_len = facts.path_len,
        .from_peer = fb >= 0,
    };
    struct cluster_snapshot snap = {
        .role = ROUTE_ROLE_REPLICA, .gate = ROUTE_GATE_OPEN, .primary_known = true};
    (void)route_decide(&rules, &rreq, &snap, 1);

    c->rw = (struct req_rewrite){
        .method = method,
        .method_len = strlen(method),
        .client_ip = CLIENT_IP,
        .primary_id = (c->opts & OPT_PRIMARY) ? PRIMARY_ID : NULL,
        .host_fallback = HOST_FALLBK,
        .chunked = c->framing == BODY_CHUNKED,
        .upgrade = c->upgrade_req,
        .passthrough = c->opts & OPT_PASSTHROUGH,
        .from_peer = c->opts & OPT_FROM_PEER,
        .drop_expect = (c->opts & OPT_DROP_EXPECT) && facts.expect_continue && p->http_minor >= 1,
        .forwarded_by = (c->opts & OPT_FORWARD) ? FORWARDED_BY : NULL,
        .peer_token = (c->opts & OPT_FORWARD) && (c->opts & OPT_TOKEN) ? PEER_TOKEN : NULL,
    };
    c->client_xff = 0;
    c->upgrade_fields = 0;
    for (size_t i = 0; i < h->nf; i++) {
        c->client_xff += proxy_head_name_is(h, i, "x-forwarded-for");
        c->upgrade_fields += proxy_head_name_is(h, i, "upgrade");
    }
    FUZZ_CHECK(proxy_http_write_request(c->up, h, &c->rw) == 0, "proxy_http_write_request failed");
    c->head_sent = true;
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    FUZZ_CHECK(c->head_sent, "body before the head was sent");
    fuzz_forward_body(c->up, c->framing == BODY_CHUNKED, at, len);
    evbuffer_add(c->body, at, len);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    if (c->framing == BODY_CHUNKED)
        evbuffer_add(c->up, "0\r\n\r\n", 5);
    c->in_message = false;
    return llhttp_get_upgrade(p) ? 0 : HPE_PAUSED;
}

/* Is name one that leaseway itself may add to a request? */
static bool ours(const char *n, size_t len)
{
    static const char *const names[] = {
        "host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "connection",
        "upgrade",
        "transfer-encoding",
        "fly-primary-instance",
        "content-length",
        "leaseway-forwarded-by",
        "leaseway-peer-auth",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == len && strncasecmp(n, names[i], len) == 0)
            return true;
    return false;
}

/* Does a Connection field of the client's head name [n, n + len)? */
static bool client_named(const struct head *ch, const char *n, size_t len)
{
    for (size_t k = 0; k < ch->nf; k++) {
        if (!proxy_head_name_is(ch, k, "connection"))
            continue;
        const char *v = head_val(ch, k);
        size_t vl = ch->f[k].val_len, i = 0;
        while (i < vl) {
            while (i < vl && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
                i++;
            size_t s = i;
            while (i < vl && v[i] != ',')
                i++;
            size_t e = i;
            while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
                e--;
            if (e - s == len && strncasecmp(v + s, n, len) == 0)
                return true;
        }
    }
    return false;
}

/* The invariants of one rewritten request head, as the app parses it. */
static void check_head(struct reparse *r)
{
    const struct conn *c = r->arg;
    const struct head *h = r->h, *ch = c->head;
    const struct req_rewrite *rw = &c->rw;

    FUZZ_CHECK(r->p.http_major == 1 && r->p.http_minor == 1, "HTTP/%d.%d sent", r->p.http_major,
               r->p.http_minor);
    FUZZ_CHECK(r->p.method == c->method, "method %s became %s", llhttp_method_name(c->method),
               llhttp_method_name(r->p.method));
    FUZZ_CHECK(h->url_len == ch->url_len && !memcmp(h->buf + h->url_off, ch->buf + ch->url_off, h->url_len),
               "target changed");
    if (c->absolute)
        FUZZ_CHECK(h->url_len > 0 && (h->buf[h->url_off] == '/'), "absolute-form target left as is");
    fuzz_check_field_bytes(h);

    FUZZ_CHECK(fuzz_count(h, "host") == 1, "%d Host fields", fuzz_count(h, "host"));
    int host = proxy_head_find(h, "host");
    if (c->absolute)
        FUZZ_CHECK(fuzz_val_is(h, (size_t)host, c->authority), "Host is not the target's authority");

    /* hop-by-hop: only what leaseway sets itself */
    static const char *const never[] = {
        "te", "trailer", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection"};
    for (size_t k = 0; k < sizeof(never) / sizeof(never[0]); k++)
        FUZZ_CHECK(fuzz_count(h, never[k]) == 0, "%s crossed", never[k]);
    bool upgrade = rw->upgrade && c->upgrade_fields;
    FUZZ_CHECK(fuzz_count(h, "connection") == (upgrade ? 1 : 0), "%d Connection fields",
               fuzz_count(h, "connection"));
    /* with an upgrade, every Upgrade line of the client: one list (RFC 9110 §5.3) */
    FUZZ_CHECK(fuzz_count(h, "upgrade") == (upgrade ? c->upgrade_fields : 0), "%d Upgrade fields of %d",
               fuzz_count(h, "upgrade"), c->upgrade_fields);
    FUZZ_CHECK(fuzz_count(h, "transfer-encoding") == (rw->chunked ? 1 : 0), "%d Transfer-Encoding fields",
               fuzz_count(h, "transfer-encoding"));
    FUZZ_CHECK((r->p.flags & F_CHUNKED) ? rw->chunked : !rw->chunked, "chunked framing changed");

    /* what the client's Connection named does not cross (Content-Length and Host excepted) */
    for (size_t i = 0; i < h->nf; i++)
        if (!ours(head_name(h, i), h->f[i].name_len))
            FUZZ_CHECK(!client_named(ch, head_name(h, i), h->f[i].name_len),
                       "%.*s crossed, named by Connection", (int)h->f[i].name_len, head_name(h, i));

    if (rw->passthrough)
        return;
    /* no client Leaseway-* or Fly-Primary-Instance: only ours */
    int ours_lw = 0;
    for (size_t i = 0; i < h->nf; i++) {
        if (h->f[i].name_len >= 9 && !strncasecmp(head_name(h, i), "leaseway-", 9)) {
            if (proxy_head_name_is(h, i, "leaseway-forwarded-by") && rw->forwarded_by)
                FUZZ_CHECK(fuzz_val_is(h, i, rw->forwarded_by), "a client Leaseway-Forwarded-By crossed");
            else if (proxy_head_name_is(h, i, "leaseway-peer-auth") && rw->peer_token)
                FUZZ_CHECK(fuzz_val_is(h, i, rw->peer_token), "a client Leaseway-Peer-Auth crossed");
            else
                FUZZ_CHECK(false, "a client %.*s crossed", (int)h->f[i].name_len, head_name(h, i));
            ours_lw++;
        }
    }
    FUZZ_CHECK(ours_lw == (rw->forwarded_by ? 1 : 0) + (rw->peer_token ? 1 : 0), "%d Leaseway-* fields",
               ours_lw);
    int fpi = proxy_head_find(h, "fly-primary-instance");
    FUZZ_CHECK(fuzz_count(h, "fly-primary-instance") == (rw->primary_id ? 1 : 0), "%d Fly-Primary-Instance",
               fuzz_count(h, "fly-primary-instance"));
    if (rw->primary_id)
        FUZZ_CHECK(fuzz_val_is(h, (size_t)fpi, rw->primary_id), "a client Fly-Primary-Instance crossed");
    /* client X-Forwarded-For fields that cross are joined into one */
    int cx = client_named(ch, "x-forwarded-for", 15) ? 0 : c->client_xff;
    if (cx || !rw->from_peer) {
        int xff = proxy_head_find(h, "x-forwarded-for");
        FUZZ_CHECK(fuzz_count(h, "x-forwarded-for") == 1, "%d X-Forwarded-For",
                   fuzz_count(h, "x-forwarded-for"));
        size_t ipl = strlen(CLIENT_IP), vl = h->f[xff].val_len;
        if (!rw->from_peer)
            FUZZ_CHECK(vl >= ipl && !memcmp(head_val(h, (size_t)xff) + vl - ipl, CLIENT_IP, ipl),
                       "X-Forwarded-For does not end with the client");
    }
    FUZZ_CHECK(fuzz_count(h, "x-forwarded-proto") >= 1, "no X-Forwarded-Proto");
}

/* What leaseway wrote for the current message, parsed by the app. */
static void check_upstream(struct conn *c, bool complete)
{
    struct reparse r;
    reparse_init(&r, HTTP_REQUEST, check_head, c);
    size_t n = evbuffer_get_length(c->up);
    const char *out = (const char *)evbuffer_pullup(c->up, -1);
    uint8_t scan = HEAD_SCAN_START;
    FUZZ_CHECK(proxy_http_scan_head(&scan, out, n) == HEAD_SCAN_OK && scan == HEAD_SCAN_DONE,
               "bare LF or obs-fold in the head sent");
    llhttp_errno_t e = llhttp_execute(&r.p, out, n);
    FUZZ_CHECK(!r.failed, "re-parse arena full");
    FUZZ_CHECK(r.heads == 1, "%d heads sent for one request (%s: %s)", r.heads, llhttp_errno_name(e),
               llhttp_get_error_reason(&r.p));
    const char *body = (const char *)evbuffer_pullup(c->body, -1);
    FUZZ_CHECK(fuzz_buf_eq(r.body, body, evbuffer_get_length(c->body)), "the body changed (%zu -> %zu bytes)",
               evbuffer_get_length(c->body), evbuffer_get_length(r.body));
    if (complete) {
        FUZZ_CHECK(e == (c->upgrade_req ? HPE_PAUSED_UPGRADE : HPE_PAUSED), "the request did not end: %s",
                   llhttp_errno_name(e));
        FUZZ_CHECK(llhttp_get_error_pos(&r.p) == out + n, "%zu bytes after the request",
                   (size_t)(out + n - llhttp_get_error_pos(&r.p)));
        FUZZ_CHECK(r.messages == 1, "%d messages", r.messages);
    } else {
        FUZZ_CHECK(e == HPE_OK, "partial request: %s", llhttp_errno_name(e));
    }
    reparse_free(&r);
}

/* access_log(): the line for the request that just ended, read back from the memfd. */
static void check_access_log(const struct conn *c, int status)
{
    const struct head *h = c->head;
    struct proxy_access a = {
        .client_ip = CLIENT_IP,
        .method = llhttp_method_name(c->parser.method),
        .target = h->url_len ? h->buf + h->url_off : NULL,
        .target_len = h->url_len,
        .status = status,
        .route = "local",
        .upstream = "app",
        .duration_ns = 1234567,
    };
    proxy_log_access(&a);
    char line[8192];
    ssize_t n = pread(access_fd, line, sizeof(line) - 1, 0);
    FUZZ_CHECK(n > 0 && ftruncate(access_fd, 0) == 0, "no access log line");
    line[n] = '\0';
    FUZZ_CHECK(line[n - 1] == '\n' && memchr(line, '\n', (size_t)n) == line + n - 1,
               "not one access log line");
    for (ssize_t i = 0; i < n - 1; i++)
        FUZZ_CHECK((unsigned char)line[i] >= 0x20 && line[i] != 0x7f, "control byte 0x%02x in the access log",
                   (unsigned char)line[i]);
    char path[8192];
    if (c->opts & OPT_JSON_LOG) {
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        FUZZ_CHECK(json_is_object(o), "access log line is not JSON: %s: %s", jerr.text, line);
        FUZZ_CHECK(json_is_string(json_object_get(o, "path")), "no path");
        snprintf(path, sizeof(path), "%s", json_string_value(json_object_get(o, "path")));
        json_decref(o);
    } else {
        /* path="<logfmt-escaped>": \" \\ and \xHH */
        const char *p = strstr(line, " path=\"");
        FUZZ_CHECK(p, "no path in the access log line");
        size_t k = 0;
        for (p += 7; *p && *p != '"'; p++) {
            if (*p == '\\' && p[1] == 'x' && p[2] && p[3]) {
                unsigned v;
                FUZZ_CHECK(sscanf(p + 2, "%2x", &v) == 1 && v, "bad \\x escape in the access log");
                path[k++] = (char)v;
                p += 3;
            } else {
                if (*p == '\\')
                    p++;
                FUZZ_CHECK(*p, "a path that ends in a backslash");
                path[k++] = *p;
            }
        }
        FUZZ_CHECK(*p == '"', "unterminated path in the access log");
        path[k] = '\0';
    }
    /* credentials were replaced: scrubbing again changes nothing */
    char again[sizeof(path)];
    memcpy(again, path, sizeof(path));
    proxy_log_scrub(again);
    FUZZ_CHECK(!strcmp(again, path), "URL credentials in the access log: %s", path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        init = true;
        llhttp_settings_init(&settings);
        settings.on_message_begin = on_message_begin;
        settings.on_url = on_url;
        settings.on_header_field = on_field;
        settings.on_header_value = on_value;
        settings.on_headers_complete = on_headers_complete;
        settings.on_body = on_body;
        settings.on_message_complete = on_message_complete;
        static unsigned char secret[] = "fuzz-secret";
        px_secret.peer_secret = secret;
        px_secret.peer_secret_len = sizeof(secret) - 1;
        char *paths[] = {"/litefs/db", "/litefs/other.db"};
        struct strlist l = {paths, 2};
        const char *err;
        FUZZ_CHECK(proxy_litefs_setup(&dbs, &l) == 0, "litefs setup");
        FUZZ_CHECK(route_rules_add_glob(&rules, false, "/healthz*", &err) == 0, "glob");
        FUZZ_CHECK(route_rules_add_glob(&rules, true, "GET /admin/*/write", &err) == 0, "glob");
        access_fd = memfd_create("access-log", 0);
        char where[64];
        snprintf(where, sizeof(where), "/proc/self/fd/%d", access_fd);
        FUZZ_CHECK(access_fd >= 0 && proxy_log_access_open(where) == 0, "access log");
    }
    if (size < 2)
        return 0;
    struct conn c = {.opts = data[0]};
    proxy_log_setup((c.opts & OPT_JSON_LOG) ? "json" : "text", "error");
    size_t step = data[1] ? data[1] : SIZE_MAX;
    const char *in = (const char *)data + 2;
    size_t n = size - 2, pos = 0;
    c.head = calloc(1, sizeof(*c.head));
    c.up = evbuffer_new();
    c.body = evbuffer_new();
    FUZZ_CHECK(c.head && c.up && c.body, "out of memory");
    llhttp_init(&c.parser, HTTP_REQUEST, &settings);
    c.parser.data = &c;

    bool idle = true;
    while (pos < n && !c.dead) {
        if (idle) {
            idle = false;
            c.head_scan = HEAD_SCAN_START;
        }
        size_t len = n - pos < step ? n - pos : step;
        if (c.head_scan != HEAD_SCAN_DONE &&
            proxy_http_scan_head(&c.head_scan, in + pos, len) != HEAD_SCAN_OK)
            break; /* 400 */
        llhttp_errno_t e = llhttp_execute(&c.parser, in + pos, len);
        if (e == HPE_OK) {
            pos += len;
            continue;
        }
        if (e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE)
            break; /* 400, or refused by a callback */
        FUZZ_CHECK(!c.dead, "paused after a refusal");
        check_upstream(&c, true);
        check_access_log(&c, 200);
        const char *at = llhttp_get_error_pos(&c.parser);
        if (e == HPE_PAUSED_UPGRADE || !llhttp_should_keep_alive(&c.parser))
            break; /* a tunnel from here, or the connection closes after the answer */
        pos = (size_t)(at - in);
        llhttp_resume(&c.parser);
        idle = true;
    }
    if (!c.dead && c.in_message && c.head_sent)
        check_upstream(&c, false); /* the client stopped sending mid-body */
    if (c.in_message)
        check_access_log(&c, c.head_sent ? 502 : 400); /* refused, or the client went away */

    proxy_head_free(c.head);
    evbuffer_free(c.up);
    evbuffer_free(c.body);
    return 0;
}
