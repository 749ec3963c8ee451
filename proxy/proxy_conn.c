/*
 * Client and upstream connections: the request path.
 *
 * Each socket has one event, EV_READ|EV_WRITE|EV_ET|EV_PERSIST, added once
 * and never modified: readiness arrives as edges, we read until a short read
 * or EAGAIN and write at once, so a keep-alive request costs about four
 * syscalls (read, write upstream, read, write client) and no epoll_ctl.
 * Because edges are not repeated, a side that stops reading for backpressure
 * remembers it (read_blocked) and is read again explicitly when resumed.
 *
 * One request is handled at a time per client connection: the request parser
 * pauses after each message (pipelined bytes wait in `pending`), and resumes
 * when the response is complete, so responses go out in order.
 *
 * Bodies are re-framed rather than copied through blindly: llhttp validates
 * the framing (CL or chunked) and hands us the payload, which we send on
 * with a Content-Length or as chunks. A smuggled second message can never
 * ride inside a body we forward.
 */
#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "proxy/proxy_http.h"
#include "proxy/proxy_log.h"
#include "proxy/proxy_uring.h"

static llhttp_settings_t req_settings;
static llhttp_settings_t resp_settings;

static void client_event(evutil_socket_t fd, short what, void *arg);
static void upstream_event(evutil_socket_t fd, short what, void *arg);
static void client_read(struct client *c);
static void client_feed(struct client *c, const char *data, size_t len);
static void client_flush(struct client *c);
static void client_flush_soon(struct client *c);
static void upstream_read(struct upstream *u);
static void upstream_flush(struct upstream *u);
static void upstream_pass_eof(struct upstream *u);
static void upstream_flush_soon(struct upstream *u);
static void upstream_send(struct upstream *u);
static void flush_forget(struct proxy_worker *w, const struct client *c, const struct upstream *u);
static void exchange_done(struct client *c);
static void client_next(struct client *c);

/* Error cause strings, compared by pointer (STYLE rule 4). */
static const char err_upstream_connect[] = "refused the connection or is unreachable";
static const char err_upstream_timeout[] = "did not answer in time";
static const char err_upstream_reset[] = "closed the connection before a complete response";
static const char err_upstream_bad[] = "sent an invalid response";

static const char *client_state_names[CS_COUNT] = {"idle", "head", "body", "wait", "tunnel", "closing"};

static inline const char *client_state_str(enum client_state s)
{
    return (unsigned)s < CS_COUNT ? client_state_names[s] : "invalid";
}

/*
 * A write this primary's app takes (routed local): the lease is not given away on shutdown
 * while one is on its way (see drain_check() in proxy_control.c). Done when the connection
 * is idle again or closed.
 */
static void local_write_begin(struct client *c)
{
    if (!c->local_write) {
        c->local_write = 1;
        proxy_metrics_add(&c->w->metrics.local_writes, 1);
    }
}

static void local_write_end(struct client *c)
{
    if (c->local_write) {
        c->local_write = 0;
        proxy_metrics_add(&c->w->metrics.local_writes, -1);
    }
}

/* Every client state change goes through here (STYLE rule 7). */
static void client_set_state(struct client *c, enum client_state s)
{
    if (c->state == s)
        return;
    if (s == CS_IDLE)
        local_write_end(c);
    if (c->state == CS_IDLE)
        proxy_metrics_add(&c->w->metrics.idle, -1);
    else if (s == CS_IDLE)
        proxy_metrics_add(&c->w->metrics.idle, 1);
    proxy_log_debug("conn state", "fd=%d from=%s to=%s", c->fd, client_state_str(c->state),
                    client_state_str(s));
    c->state = s;
}

/* ---- head arenas: a per-worker free list keeps malloc off the hot path ---- */

static struct head *head_get(struct proxy_worker *w)
{
    struct head *h = w->free_heads;
    if (h) {
        w->free_heads = h->next_free;
        proxy_head_reset(h);
        return h;
    }
    return calloc(1, sizeof(*h));
}

static void head_put(struct proxy_worker *w, struct head *h)
{
    if (!h)
        return;
    /* keep small arenas only: one big request must not pin 64 KiB forever */
    if (h->cap > 16384) {
        proxy_head_free(h);
        return;
    }
    h->next_free = w->free_heads;
    w->free_heads = h;
}

/* ---- client side ---- */

static void set_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void proxy_client_accept(struct proxy_worker *w, int fd, const struct sockaddr_storage *peer)
{
    struct client *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    set_nodelay(fd);
    c->fd = fd;
    c->w = w;
    if (peer->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)peer)->sin6_addr, c->ip, sizeof(c->ip));
    else if (peer->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr, c->ip, sizeof(c->ip));
    else
        snprintf(c->ip, sizeof(c->ip), "unknown");
    c->state = CS_IDLE;
    llhttp_init(&c->parser, HTTP_REQUEST, &req_settings);
    c->parser.data = c;
    event_assign(&c->ev, w->base, fd, EV_READ | EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST, client_event, c);
    if (event_add(&c->ev, NULL) < 0) {
        close(fd);
        free(c);
        return;
    }
    c->next = w->clients;
    if (w->clients)
        w->clients->prev = c;
    w->clients = c;
    w->nclients++;
    proxy_metrics_add(&w->metrics.connections, 1);
    proxy_metrics_add(&w->metrics.idle, 1);
    proxy_metrics_add(&w->metrics.accepted, 1);
    /* a new connection has the header timeout to send its first request */
    proxy_timer_set(w, &c->timer, TL_HEADER);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct evbuffer *client_out(struct client *c)
{
    if (!c->out)
        c->out = evbuffer_new();
    return c->out;
}

/* One access-log line per answered request (--access-log). */
static void access_log(struct client *c, int status)
{
    if (!proxy_log_access_enabled())
        return;
    const struct head *h = c->head;
    struct proxy_access a = {
        .client_ip = c->ip,
        .method = llhttp_method_name(llhttp_get_method(&c->parser)),
        .target = h && h->url_len ? h->buf + h->url_off : NULL,
        .target_len = h ? h->url_len : 0,
        .status = status,
        .route = route_action_str(c->was_held ? ROUTE_HOLD : c->route),
        .upstream = c->up ? (c->up->target->peer ? c->w->snap.primary_id : "app") : NULL,
        .duration_ns = proxy_now_ns() - c->start_ns,
        .from_peer = c->from_peer,
    };
    proxy_log_access(&a);
}

/* Leaving the hold list (dispatched, answered or closed). */
static void hold_leave(struct client *c)
{
    if (c->timer.list == TL_HOLD) {
        proxy_timer_clear(&c->timer);
        c->w->nheld--;
        c->w->held_bytes -= c->body ? evbuffer_get_length(c->body) : 0;
    }
}

static enum route_action metrics_route(const struct client *c)
{
    return c->was_held ? ROUTE_HOLD : c->route;
}

void proxy_client_close(struct client *c)
{
    if (c->dead)
        return;
    struct proxy_worker *w = c->w;
    c->dead = 1;
    if (c->up) {
        struct upstream *u = c->up;
        c->up = NULL;
        u->c = NULL;
        proxy_upstream_close(u);
    }
    hold_leave(c);
    if (c->flush_queued)
        flush_forget(w, c, NULL);
    c->flush_queued = 0;
    proxy_timer_clear(&c->timer);
    event_del(&c->ev);
    close(c->fd);
    if (c->body) {
        evbuffer_free(c->body);
        c->body = NULL;
    }
    free(c->txid_want);
    c->txid_want = NULL;
    if (c->out) {
        evbuffer_free(c->out);
        c->out = NULL;
    }
    head_put(w, c->head);
    c->head = NULL;
    free(c->pending);
    c->pending = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nclients--;
    local_write_end(c);
    proxy_metrics_add(&w->metrics.connections, -1);
    if (c->state == CS_IDLE)
        proxy_metrics_add(&w->metrics.idle, -1);
    proxy_free_later(w, c);
}

static void fill_rewrite(struct client *c, struct resp_rewrite *rw, int status)
{
    struct proxy_worker *w = c->w;
    memset(rw, 0, sizeof(*rw));
    rw->status = status;
    rw->client_minor = c->http_minor;
    rw->keepalive = false;
    rw->passthrough = c->route == ROUTE_PASSTHROUGH;
    rw->primary_id = w->snap.primary_known ? w->snap.primary_id : NULL;
    rw->instance = w->px->cfg->instance;
    rw->region = w->px->cfg->region;
    if (c->set_cookie && !rw->passthrough) {
        rw->cookie_ms = wall_ms();
        rw->cookie_max_age_s = (w->px->cfg->consistency_window_ms + 999) / 1000;
    }
}

/*
 * Answer from leaseway itself and close: bad input, upstream failures, the
 * gate. Only possible while no response head went out; afterwards the only
 * honest signal left is closing the connection.
 */
static void client_error(struct client *c, int status, const char *reason, const char *extra_headers)
{
    if (c->dead)
        return;
    if (c->resp_started) {
        proxy_client_close(c);
        return;
    }
    if (c->up) {
        struct upstream *u = c->up;
        c->up = NULL;
        u->c = NULL;
        proxy_upstream_close(u);
    }
    struct resp_rewrite rw;
    fill_rewrite(c, &rw, status);
    rw.passthrough = false;
    rw.no_body = c->head_req;
    struct evbuffer *out = client_out(c);
    if (!out) {
        proxy_client_close(c);
        return;
    }
    proxy_http_write_local(out, status, reason, extra_headers, &rw);
    c->status = status;
    c->resp_started = 1;
    c->close_after = 1;
    if (c->start_ns)
        proxy_metrics_request(&c->w->metrics, metrics_route(c), status, proxy_now_ns() - c->start_ns);
    if (c->start_ns)
        access_log(c, status);
    c->start_ns = 0;
    hold_leave(c);
    client_set_state(c, CS_CLOSING);
    proxy_timer_set(c->w, &c->timer, TL_SEND);
    client_flush(c);
}

static void client_event(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    (void)fd;
    if (c->dead)
        return;
    if (what & EV_CLOSED)
        c->rdhup = 1;
    if (what & EV_WRITE)
        client_flush(c);
    if (!c->dead && (what & (EV_READ | EV_CLOSED)))
        client_read(c);
}

static void save_pending(struct client *c, const char *data, size_t len)
{
    if (!len)
        return;
    char *p = realloc(c->pending, c->pending_len + len);
    if (!p) {
        proxy_client_close(c);
        return;
    }
    memcpy(p + c->pending_len, data, len);
    c->pending = p;
    c->pending_len += len;
}

/* Should we take more bytes from the client socket now? */
static bool client_may_read(struct client *c)
{
    if (c->state == CS_CLOSING)
        return c->lingering;
    if (c->parse_paused || c->state == CS_TUNNEL) {
        /* pipelined or early tunnel bytes: keep a bounded amount */
        if (c->pending_len >= PROXY_RBUF_SIZE)
            return false;
    }
    if (c->up && c->up->out && evbuffer_get_length(c->up->out) >= PROXY_HIGH_WATER)
        return false;
    return true;
}

/* The client left before its answer: count and log it as nginx's 499, then close. */
static void client_gone(struct client *c)
{
    if (c->start_ns)
        proxy_metrics_request(&c->w->metrics, metrics_route(c), 499, proxy_now_ns() - c->start_ns);
    access_log(c, 499);
    proxy_client_close(c);
}

static void client_read(struct client *c)
{
    struct proxy_worker *w = c->w;
    for (;;) {
        if (!client_may_read(c)) {
            c->read_blocked = 1;
            return;
        }
        c->read_blocked = 0;
        ssize_t n = proxy_sock_recv(c->fd, w->rbuf, sizeof(w->rbuf));
        if (n > 0) {
            if (c->state == CS_CLOSING) {
                /* discard: we are closing after a local answer */
                if ((size_t)n < sizeof(w->rbuf) && !c->rdhup)
                    return;
                continue;
            }
            if (c->parse_paused && c->state != CS_TUNNEL)
                save_pending(c, w->rbuf, (size_t)n);
            else
                client_feed(c, w->rbuf, (size_t)n);
            if (c->dead)
                return;
            /*
             * A short read means the kernel had no more, and the next edge tells us of more.
             * Except after EPOLLHUP/ERR, which libevent reports without EV_CLOSED: a reset that
             * came with the data would go unseen. Mid-body and in a tunnel, read on to EAGAIN.
             */
            if ((size_t)n < sizeof(w->rbuf) && !c->rdhup && c->state != CS_BODY && c->state != CS_TUNNEL)
                return;
            continue;
        }
        if (n == 0) {
            c->eof = 1;
            /* idle or mid-head: nothing owed. Mid-exchange: finish it, then close. */
            if (c->state == CS_IDLE || c->state == CS_HEAD || c->state == CS_CLOSING) {
                proxy_client_close(c);
            } else if (c->state == CS_BODY || (c->state == CS_WAIT && c->resp_started)) {
                /* truncated body (the app must not see half of it), or the reader left mid-answer */
                proxy_client_close(c);
            } else if (c->state == CS_WAIT &&
                       (c->timer.list == TL_HOLD || c->timer.list == TL_TXID || c->timer.list == TL_RETRY)) {
                /*
                 * Held for a primary, or waiting for replication: sent nowhere yet, and the
                 * client gave up. Drop it, as nginx does ("client closed request", 499): a
                 * client that retries would otherwise have a held write applied twice.
                 */
                client_gone(c);
            } else if (c->state == CS_TUNNEL && c->up) {
                /* pass the FIN on after every byte before it, once the tunnel is up */
                upstream_pass_eof(c->up);
            }
            c->read_blocked = 1; /* nothing more will come */
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            proxy_client_close(c);
        return;
    }
}

/* The client may be readable again: resume (edge-triggered, so read explicitly). */
static void client_resume(struct client *c)
{
    if (!c->dead && c->read_blocked && !c->eof && client_may_read(c))
        client_read(c);
}

static void client_flush(struct client *c)
{
    if (c->dead)
        return;
    struct evbuffer *out = c->out;
    while (out && evbuffer_get_length(out) > 0) {
        int n = proxy_sock_send(out, c->fd);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                /* the client is slow: keep its clock running */
                if (c->timer.list != TL_SEND && c->timer.list != TL_HEADER)
                    proxy_timer_set(c->w, &c->timer, TL_SEND);
                return;
            }
            proxy_client_close(c);
            return;
        }
    }
    if (c->timer.list == TL_SEND && c->state != CS_CLOSING) {
        /* sent: an idle keep-alive connection goes back to its idle clock */
        if (c->state == CS_IDLE)
            proxy_timer_set(c->w, &c->timer, TL_IDLE);
        else
            proxy_timer_clear(&c->timer);
    }
    if (c->close_after) {
        if (c->lingering)
            return;
        if (c->req_done || c->eof) {
            proxy_client_close(c);
            return;
        }
        /*
         * Answered before the request was read to its end (an error, a replay, a refusal):
         * closing now could reset the connection and lose the answer in the client's
         * buffer. Shut our side, read and discard until the client closes (RFC 9112 §9.6).
         */
        c->lingering = 1;
        (void)shutdown(c->fd, SHUT_WR);
        proxy_timer_set(c->w, &c->timer, TL_LINGER);
        client_read(c);
        return;
    }
    /* room again: let the upstream go on */
    struct upstream *u = c->up;
    if (u && u->read_blocked)
        upstream_read(u);
}

/*
 * Are the bytes at the parser's refusal of a method a token followed by SP (or by the end of
 * what came so far)? Then it is a method llhttp does not know, not garbage: 501, as RFC 9110
 * §15.6.2 wants, rather than 400.
 */
static bool method_is_token(const char *p, const char *end)
{
    if (!p || p >= end)
        return false;
    const char *s = p;
    while (p < end && p - s < 32 && proxy_http_tchar((unsigned char)*p))
        p++;
    return p > s && (p == end || *p == ' ');
}

static void client_feed(struct client *c, const char *data, size_t len)
{
    if (c->state == CS_TUNNEL) {
        struct upstream *u = c->up;
        if (!u || !u->tunnel) {
            save_pending(c, data, len); /* upgrade answer not in yet */
            return;
        }
        evbuffer_add(u->out, data, len);
        upstream_flush(u);
        return;
    }
    if (c->state == CS_IDLE) {
        client_set_state(c, CS_HEAD);
        proxy_timer_set(c->w, &c->timer, TL_HEADER);
        c->head_scan = HEAD_SCAN_START;
        c->head_wire = 0;
    }
    if (c->head_scan != HEAD_SCAN_DONE) {
        size_t used;
        enum head_scan_result r = proxy_http_scan_head_used(&c->head_scan, data, len, &used);
        if (r != HEAD_SCAN_OK) {
            client_error(c, 400,
                         r == HEAD_SCAN_OBS_FOLD
                             ? "bad request: obs-fold (a header line starting with whitespace)"
                             : "bad request: bare LF line ending",
                         NULL);
            return;
        }
        /* the limit counts the bytes on the wire: separators and whitespace are not free */
        c->head_wire += (uint32_t)(used > PROXY_HEAD_WIRE_MAX ? PROXY_HEAD_WIRE_MAX + 1 : used);
        if (c->head_wire > PROXY_HEAD_WIRE_MAX) {
            client_error(c, 431,
                         c->head_done ? "request trailer fields larger than 64 KiB"
                                      : "request header fields larger than 64 KiB",
                         NULL);
            return;
        }
    }
    llhttp_errno_t e = llhttp_execute(&c->parser, data, len);
    if (c->dead)
        return;
    if (e == HPE_PAUSED && c->last_chunk) {
        /*
         * The last chunk's line is parsed: what follows is the trailer section, held to the
         * head's line rules (no bare LF, no obs-fold), which llhttp 8.1 does not check there.
         */
        const char *at = llhttp_get_error_pos(&c->parser);
        c->last_chunk = 0;
        llhttp_resume(&c->parser);
        c->head_scan = HEAD_SCAN_LINE;
        c->head_wire = 0;
        if (at && at >= data && at <= data + len) {
            if (at < data + len)
                client_feed(c, at, (size_t)(data + len - at));
            return;
        }
        client_error(c, 400, "bad request: chunked framing", NULL);
        return;
    }
    if (e == HPE_OK) {
        if (c->up)
            upstream_send(c->up);
        return;
    }
    const char *pos = llhttp_get_error_pos(&c->parser);
    if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
        c->parse_paused = 1;
        if (pos && pos < data + len)
            save_pending(c, pos, (size_t)(data + len - pos));
        if (c->up && !c->dead)
            upstream_send(c->up);
        return;
    }
    /* a callback already answered (llhttp reports on_headers_complete's refusal as HPE_CB_HEADERS_COMPLETE)
     */
    if (e == HPE_USER || c->state == CS_CLOSING)
        return;
    int status = 400;
    const char *reason = llhttp_get_error_reason(&c->parser);
    if (e == HPE_INVALID_METHOD && method_is_token(pos, data + len)) {
        /* a method llhttp 8.1's fixed table lacks (QUERY, extension tokens): 501, RFC 9110 §15.6.2 */
        client_error(c, 501,
                     "unknown method: leaseway's parser knows the methods of RFC 9110, WebDAV and a few more",
                     NULL);
        return;
    }
    proxy_log_debug("bad request", "fd=%d err=%s reason=\"%s\"", c->fd, llhttp_errno_name(e),
                    reason ? reason : "");
    char line[160];
    snprintf(line, sizeof(line), "bad request: %s", reason ? reason : llhttp_errno_name(e));
    client_error(c, status, line, NULL);
}

/* The exchange ended (or a pipelined request is waiting): go on with the connection. */
static void client_next(struct client *c)
{
    while (!c->dead && c->state == CS_IDLE && c->pending_len) {
        char *p = c->pending;
        size_t n = c->pending_len;
        c->pending = NULL;
        c->pending_len = 0;
        client_feed(c, p, n);
        free(p);
    }
    if (!c->dead && c->state == CS_IDLE && c->eof)
        proxy_client_close(c);
    else if (!c->dead)
        client_resume(c);
}

/* ---- request parser callbacks ---- */

static int req_message_begin(llhttp_t *p)
{
    struct client *c = p->data;
    c->head = head_get(c->w);
    if (!c->head)
        return -1;
    c->start_ns = proxy_now_ns();
    c->req_done = c->resp_done = c->resp_started = 0;
    c->deferred = c->retry_ok = c->was_held = c->from_peer = c->is_write = c->set_cookie = 0;
    c->recent_write = c->fresh_conn = c->txid_checked = c->give_up = 0;
    c->expect_continue = c->continue_sent = 0;
    c->head_done = 0;
    c->head_req = 0;
    c->trailer_len = 0;
    c->body_bytes = 0;
    c->misdirects = 0;
    c->excluded = c->sent_to = 0;
    c->hold_deadline_ms = 0;
    c->retry_until_ms = 0;
    c->status = 0;
    c->route = ROUTE_LOCAL;
    return 0;
}

static int req_url(llhttp_t *p, const char *at, size_t len)
{
    struct client *c = p->data;
    struct head *h = c->head;
    c->head_req = p->method == HTTP_HEAD; /* for an answer of ours before the head is complete (414) */
    if (h->url_len + len > PROXY_URL_MAX) {
        client_error(c, 414, "request target longer than 8 KiB", NULL);
        return HPE_USER;
    }
    if (proxy_head_span(h, &h->url_off, &h->url_len, at, len) < 0) {
        client_error(c, 431, "request head larger than 64 KiB", NULL);
        return HPE_USER;
    }
    return 0;
}

/*
 * Trailer fields (after a chunked body) are dropped, on every route: never merged into the
 * head (RFC 9110 §6.5.1), which a buffered write only sends after its body is complete.
 */
static int req_trailer(struct client *c, size_t len)
{
    c->trailer_len += (uint32_t)(len > PROXY_HEAD_MAX ? PROXY_HEAD_MAX : len);
    if (c->trailer_len > PROXY_HEAD_MAX) {
        client_error(c, 431, "request trailer fields larger than 64 KiB", NULL);
        return HPE_USER;
    }
    return 0;
}

static int req_field(llhttp_t *p, const char *at, size_t len)
{
    struct client *c = p->data;
    if (c->head_done)
        return req_trailer(c, len);
    if (proxy_head_field(c->head, at, len) < 0) {
        client_error(c, 431, "request header fields larger than 64 KiB", NULL);
        return HPE_USER;
    }
    return 0;
}

static int req_value(llhttp_t *p, const char *at, size_t len)
{
    struct client *c = p->data;
    if (c->head_done)
        return req_trailer(c, len);
    if (proxy_head_value(c->head, at, len) < 0) {
        client_error(c, 431, "request header fields larger than 64 KiB", NULL);
        return HPE_USER;
    }
    return 0;
}

/* The last chunk (size 0): pause, so that client_feed() scans the trailer section's lines. */
static int req_chunk_header(llhttp_t *p)
{
    struct client *c = p->data;
    if (p->content_length != 0)
        return 0;
    c->last_chunk = 1;
    return HPE_PAUSED;
}

static struct upstream *upstream_acquire(struct proxy_worker *w, struct upstream_target *t, bool fresh);
static int upstream_send_request(struct client *c);
static int route_and_dispatch(struct client *c);
static int dispatch(struct client *c);
static int hold_enter(struct client *c);

static bool method_is_safe(uint8_t m)
{
    return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS || m == HTTP_TRACE;
}

/*
 * LiteFS read-your-writes: does the client carry a __txid newer than this
 * replica's position? (Fills c->txid_want when it does.)
 */
static bool txid_behind(struct client *c)
{
    const struct litefs_dbs *dbs = &c->w->px->litefs;
    uint64_t want[PROXY_MAX_DBS];
    if (!proxy_litefs_wanted(dbs, c->head, want))
        return false;
    /* a read that does not answer counts as behind, as an unreadable file does */
    struct litefs_pos pos;
    if (proxy_litefs_read(dbs, &pos) && proxy_litefs_reached(dbs, want, &pos))
        return false;
    if (!c->txid_want && !(c->txid_want = malloc(sizeof(want))))
        return false;
    memcpy(c->txid_want, want, sizeof(want));
    return true;
}

#define TXID_POLL_MS 2

static int txid_wait_enter(struct client *c)
{
    struct proxy_worker *w = c->w;
    proxy_timer_set(w, &c->timer, TL_TXID);
    client_set_state(c, CS_WAIT);
    if (!event_pending(&w->txid_ev, EV_TIMEOUT, NULL)) {
        struct timeval tv = {0, TXID_POLL_MS * 1000};
        event_add(&w->txid_ev, &tv);
    }
    return 0;
}

/* The wait is over: serve locally (caught up), or from the primary (still behind). */
static void txid_wait_done(struct client *c, bool caught_up)
{
    proxy_timer_clear(&c->timer);
    free(c->txid_want);
    c->txid_want = NULL;
    c->txid_checked = 1;
    route_snapshot_refresh(&c->w->snap);
    if (!caught_up && c->w->snap.primary_known && c->w->snap.role == ROUTE_ROLE_REPLICA) {
        /*
         * Never LiteFS's 504: the primary has the data. Routed from now on as a read after a
         * write (held and sent again, should the primary answer 421), never back to this
         * replica's stale copy.
         */
        c->route = ROUTE_FORWARD;
        c->recent_write = 1;
        c->retry_ok = 1;
    }
    (void)dispatch(c);
}

void proxy_conn_txid_poll(struct proxy_worker *w)
{
    struct tnode *head = &w->tl[TL_TXID].head;
    if (head->next == head)
        return;
    /* never waits: what the last read found, and a new read for the next poll to see */
    const struct litefs_dbs *dbs = &w->px->litefs;
    struct litefs_pos pos;
    proxy_litefs_last(dbs, &pos, true);
    for (struct tnode *t = head->next, *next; t != head; t = next) {
        next = t->next;
        struct client *c = (struct client *)((char *)t - offsetof(struct client, timer));
        if (proxy_litefs_reached(dbs, c->txid_want, &pos))
            txid_wait_done(c, true);
    }
    if (head->next != head) {
        struct timeval tv = {0, TXID_POLL_MS * 1000};
        event_add(&w->txid_ev, &tv);
    }
}

/*
 * Stopping: a write still waiting for a primary (the lease given away, or never known) gets its
 * 503 now, written out before the connection is closed, rather than a connection closed
 * without a byte: it reached no app, and Retry-After says to send it again.
 */
void proxy_conn_refuse_held(struct proxy_worker *w)
{
    struct tnode *head = &w->tl[TL_HOLD].head;
    while (head->next != head) {
        struct client *c = (struct client *)((char *)head->next - offsetof(struct client, timer));
        hold_leave(c);
        client_error(c, 503, "this instance stopped before a primary became available", "Retry-After: 1\r\n");
        if (!c->dead)
            client_flush(c);
    }
}

static int64_t cfg_window(const struct proxy_worker *w)
{
    return w->px->cfg->consistency_window_ms;
}

/*
 * Does a Cookie field carry leaseway_wrote=<unix ms> younger than the window? The instance
 * that stamped it may run a little ahead of this one's clock: a time up to a window ahead
 * counts as recent too (it only sends the client's reads to the primary). More than 15
 * digits is no time of ours (and would overflow).
 */
static bool recent_write_cookie(const struct head *h, int64_t window_ms)
{
    static const char name[] = "leaseway_wrote=";
    for (size_t i = 0; i < h->nf; i++) {
        if (!proxy_head_name_is(h, i, "cookie"))
            continue;
        const char *v = head_val(h, i), *end = v + h->f[i].val_len;
        for (const char *p = v; p + sizeof(name) - 1 <= end; p++) {
            if (memcmp(p, name, sizeof(name) - 1) != 0 || (p != v && p[-1] != ' ' && p[-1] != ';'))
                continue;
            int64_t ms = 0;
            int digits = 0;
            for (p += sizeof(name) - 1; p < end && *p >= '0' && *p <= '9' && digits <= 15; p++, digits++)
                ms = ms * 10 + (*p - '0');
            if (digits == 0 || digits > 15)
                return false;
            int64_t age = wall_ms() - ms;
            return age > -window_ms && age < window_ms;
        }
    }
    return false;
}

/* The pooled target for the current primary's proxy (NULL: not usable). */
static struct upstream_target *peer_target(struct proxy_worker *w)
{
    const struct cluster_snapshot *s = &w->snap;
    if (!s->primary_known || !s->primary_addr_len || (s->primary_tls && !w->px->peer_tls))
        return NULL;
    struct upstream_target *free_slot = NULL, *oldest = NULL;
    for (size_t i = 0; i < PROXY_MAX_PEERS; i++) {
        struct upstream_target *t = &w->peers[i];
        if (t->addr_len && strcmp(t->name, s->primary_url) == 0 && t->addr_len == s->primary_addr_len &&
            memcmp(&t->addr, &s->primary_addr, t->addr_len) == 0) {
            t->last_used_ms = proxy_now_ms();
            return t;
        }
        if (!t->addr_len && !free_slot)
            free_slot = t;
        if (t->addr_len && (!oldest || t->last_used_ms < oldest->last_used_ms))
            oldest = t;
    }
    struct upstream_target *t = free_slot ? free_slot : oldest;
    while (t->pool)
        proxy_upstream_close(t->pool); /* an old primary's idle connections */
    memcpy(&t->addr, &s->primary_addr, s->primary_addr_len);
    t->addr_len = s->primary_addr_len;
    snprintf(t->name, sizeof(t->name), "%s", s->primary_url);
    t->peer = true;
    t->tls = s->primary_tls;
    /* the host part of the URL, for SNI and the certificate check */
    const char *hp = strstr(s->primary_url, "://");
    hp = hp ? hp + 3 : s->primary_url;
    size_t hl = strcspn(hp, "/?#");
    if (hp[0] == '[') {
        hp++;
        hl = strcspn(hp, "]");
    } else {
        const char *colon = memchr(hp, ':', hl);
        if (colon)
            hl = (size_t)(colon - hp);
    }
    snprintf(t->host, sizeof(t->host), "%.*s", (int)hl, hp);
    t->last_used_ms = proxy_now_ms();
    return t;
}

static uint64_t id_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h | 1; /* never 0: 0 means "nothing excluded" */
}

#define EXCLUDE_MS 300

/* Skip the primary the request was last sent to, for EXCLUDE_MS (or for good: give_up). */
static void exclude_primary(struct client *c)
{
    c->excluded = c->sent_to;
    c->excluded_until_ms = proxy_now_ms() + EXCLUDE_MS;
}

/*
 * Wait for a (different) primary, SPEC §2 step 8. Only whole requests wait:
 * the body is buffered, so nothing of it has reached any app.
 */
static int hold_enter(struct client *c)
{
    struct proxy_worker *w = c->w;
    if (c->timer.list == TL_HOLD)
        return 0;
    /* bounded in number and in memory: past either, the write is refused (503) rather than queued */
    size_t bytes = c->body ? evbuffer_get_length(c->body) : 0;
    if (w->nheld >= PROXY_HOLD_MAX || w->held_bytes + bytes > PROXY_HOLD_BYTES_MAX)
        return -1;
    c->was_held = 1;
    w->nheld++;
    w->held_bytes += bytes;
    /* one --hold-timeout per request, however often it goes back to waiting */
    if (!c->hold_deadline_ms)
        c->hold_deadline_ms = proxy_now_ms() + w->tl[TL_HOLD].timeout_ms;
    proxy_timer_set_at(w, &c->timer, TL_HOLD, c->hold_deadline_ms);
    client_set_state(c, CS_WAIT);
    return 0;
}

/* Held writes: route them again against the newest snapshot (on change, and on every tick). */
void proxy_conn_retry_held(struct proxy_worker *w)
{
    struct tnode *head = &w->tl[TL_HOLD].head;
    if (head->next == head)
        return;
    route_snapshot_refresh(&w->snap);
    /* take the whole queue; what must wait again goes back into the (now empty) real one */
    struct tnode batch = *head;
    batch.next->prev = &batch;
    batch.prev->next = &batch;
    head->next = head->prev = head;
    while (batch.next != &batch) {
        struct tnode *t = batch.next;
        struct client *c = (struct client *)((char *)t - offsetof(struct client, timer));
        /*
         * A primary that said 421 or could not be reached is skipped until the snapshot names
         * another, or for EXCLUDE_MS: it may just have learnt of its lease later than we did.
         */
        bool excluded = c->excluded && proxy_now_ms() < c->excluded_until_ms && w->snap.primary_known &&
                        id_hash(w->snap.primary_id) == c->excluded;
        hold_leave(c); /* unlinks t from the batch */
        if (excluded || route_and_dispatch(c) != 0 || c->dead || c->timer.list == TL_HOLD) {
            if (!c->dead && c->state != CS_CLOSING && !c->up)
                (void)hold_enter(c); /* still waiting, with its first deadline */
        }
    }
}

static int req_headers_complete(llhttp_t *p)
{
    struct client *c = p->data;
    struct proxy_worker *w = c->w;
    struct head *h = c->head;
    struct req_facts facts;

    proxy_timer_clear(&c->timer);
    c->head_done = 1;
    c->http_minor = p->http_minor;
    c->keepalive = llhttp_should_keep_alive(p) && !w->draining;
    c->head_req = p->method == HTTP_HEAD;
    c->upgrade_req = p->upgrade;

    if (p->http_major != 1) {
        client_error(c, 400, "only HTTP/1.x is spoken here", NULL);
        return HPE_USER;
    }
    /* absolute-form (RFC 9112 §3.2.2): the app gets origin-form, routing sees the path */
    const char *bad_target = proxy_http_absolute_form(h, p->http_minor);
    if (bad_target) {
        char line[160];
        snprintf(line, sizeof(line), "bad request: %s", bad_target);
        client_error(c, 400, line, NULL);
        return HPE_USER;
    }
    proxy_http_request_facts(h, p->http_minor, &facts);
    c->expect_continue = facts.expect_continue;
    if (facts.bad) {
        char line[160];
        snprintf(line, sizeof(line), "bad request: %s", facts.bad);
        client_error(c, 400, line, NULL);
        return HPE_USER;
    }
    if (h->url_len == 1 && h->buf[h->url_off] == '*' && p->method != HTTP_OPTIONS) {
        client_error(c, 400, "bad request: the target \"*\" is for OPTIONS only (RFC 9112 §3.2.4)", NULL);
        return HPE_USER;
    }
    if (p->method == HTTP_CONNECT) {
        /* RFC 9110 §15.5.6: a 405 carries Allow (the usual methods; the app gets every other one) */
        client_error(c, 405, "CONNECT is not supported by a reverse proxy",
                     "Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n");
        return HPE_USER;
    }

    if (p->flags & F_CHUNKED)
        c->req_framing = BODY_CHUNKED;
    else if ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0)
        c->req_framing = BODY_LENGTH;
    else
        c->req_framing = BODY_NONE;

    /* a request forwarded by another leaseway: authenticate it before anything else */
    int fb = proxy_head_find(h, "leaseway-forwarded-by");
    if (fb >= 0) {
        int tok = proxy_head_find(h, "leaseway-peer-auth");
        if (proxy_peer_verify(w->px, head_val(h, (size_t)fb), h->f[fb].val_len,
                              tok >= 0 ? head_val(h, (size_t)tok) : NULL, tok >= 0 ? h->f[tok].val_len : 0,
                              (int64_t)time(NULL)) < 0) {
            proxy_log_warn("forwarded request with a bad peer token", "client=%s", c->ip);
            client_error(c, 403, "forwarded request: missing or invalid Leaseway-Peer-Auth", NULL);
            return HPE_USER;
        }
        c->from_peer = 1;
    }
    c->recent_write = cfg_window(w) > 0 && recent_write_cookie(h, cfg_window(w));
    route_snapshot_refresh(&w->snap);
    return route_and_dispatch(c);
}

/* The request head is in: decide where it goes (SPEC §2) and start it on its way. */
static int route_and_dispatch(struct client *c)
{
    struct proxy_worker *w = c->w;
    llhttp_t *p = &c->parser;
    struct head *h = c->head;
    const char *method = llhttp_method_name(p->method);
    const char *url = h->buf + h->url_off;
    const char *q = memchr(url, '?', h->url_len);
    struct route_request rreq = {
        .method = method,
        .method_len = strlen(method),
        .path = url,
        .path_len = q ? (size_t)(q - url) : h->url_len,
        .from_peer = c->from_peer,
        .recent_write = c->recent_write,
        .body_over_replay_max = c->req_framing == BODY_LENGTH && p->content_length > ROUTE_REPLAY_BODY_MAX,
    };
    struct route_decision d = route_decide(&w->px->rules, &rreq, &w->snap, route_fence_now_ms());
    if (d.action == ROUTE_LOCAL && d.is_write)
        local_write_begin(c);
    c->route = d.action;
    c->is_write = d.is_write;
    c->set_cookie = d.is_write && !c->from_peer && cfg_window(w) > 0 && d.action != ROUTE_PASSTHROUGH;
    switch (d.action) {
    case ROUTE_LOCAL:
        if (w->px->litefs.n && !d.is_write && !c->txid_checked && w->snap.role == ROUTE_ROLE_REPLICA &&
            txid_behind(c)) {
            if (c->req_framing == BODY_NONE)
                return txid_wait_enter(c);
            /* a read with a body cannot wait here: the primary has the data now */
            free(c->txid_want);
            c->txid_want = NULL;
            if (w->snap.primary_known)
                c->route = ROUTE_FORWARD;
        }
        return dispatch(c);
    case ROUTE_PASSTHROUGH: return dispatch(c);
    case ROUTE_GATED: {
        char extra[ROUTE_REASON_MAX + 64], line[ROUTE_REASON_MAX + 32];
        snprintf(extra, sizeof(extra), "Retry-After: 1\r\nLeaseway-Gate: %s\r\n",
                 route_gate_str(w->snap.gate));
        snprintf(line, sizeof(line), "gate %s: %s", route_gate_str(w->snap.gate),
                 w->snap.gate_reason[0] ? w->snap.gate_reason : "not ready");
        c->set_cookie = 0;
        client_error(c, 503, line, extra);
        return HPE_USER;
    }
    case ROUTE_MISDIRECTED:
        c->set_cookie = 0;
        client_error(c, 421, "this instance is not the primary", NULL);
        return HPE_USER;
    case ROUTE_REPLAY: {
        /* fly-replay: Fly's edge replays the original request to the primary; no body is read */
        char extra[ROUTE_ID_MAX + 64];
        snprintf(extra, sizeof(extra), "fly-replay: instance=%s\r\n", w->snap.primary_id);
        c->set_cookie = 0;
        client_error(c, 409, NULL, extra);
        return HPE_USER;
    }
    case ROUTE_FORWARD:
    case ROUTE_HOLD:
        if (c->upgrade_req) {
            /* an upgrade has no body to hold: tunnel to the primary now, or refuse */
            if (d.action == ROUTE_HOLD) {
                client_error(c, 503, "no primary is known", "Retry-After: 1\r\n");
                return HPE_USER;
            }
            return dispatch(c);
        }
        if (c->req_framing == BODY_LENGTH && p->content_length > PROXY_HOLD_BODY_MAX) {
            if (d.action == ROUTE_HOLD) {
                client_error(c, 503, "no primary is known (bodies over 1 MiB are not held)",
                             "Retry-After: 1\r\n");
                return HPE_USER;
            }
            return dispatch(c); /* streamed as it comes: no retry possible */
        }
        if (c->req_done) /* re-routed after a hold: the body is complete */
            return d.action == ROUTE_HOLD ? hold_enter(c) : dispatch(c);
        /* buffer the body (at most 1 MiB) so the request can wait or be sent again */
        c->deferred = 1;
        if (!c->body && !(c->body = evbuffer_new())) {
            client_error(c, 500, "out of memory", NULL);
            return HPE_USER;
        }
        client_set_state(c, CS_BODY);
        if (c->req_framing != BODY_NONE) {
            proxy_timer_set(w, &c->timer, TL_SEND);
            if (c->expect_continue && c->http_minor >= 1) {
                /* we take the body ourselves: say so now, rather than let the client wait (RFC 9110 §10.1.1)
                 */
                struct evbuffer *out = client_out(c);
                if (out && evbuffer_add(out, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0)
                    c->continue_sent = 1;
                client_flush(c);
            }
        }
        return 0;
    default: client_error(c, 500, "unexpected route", NULL); return HPE_USER;
    }
}

/*
 * The app refused the connection: it is starting or restarting (a deploy, a crash and its
 * supervisor). A request without a body, which nothing has seen, is tried again every
 * PROXY_RETRY_MS until --connect-timeout has passed since the first refusal, instead of a
 * 502 at once; LiteFS's proxy does the same (every 100 ms, for 30 s). A request with a body
 * streams into the connection as it arrives, so it is not kept for a second try; nor is an
 * upgrade, nor anything sent to a peer proxy (a write that cannot reach the primary waits for
 * the next one instead). True when the next try is scheduled.
 */
static bool connect_retry(struct client *c, const struct upstream_target *t)
{
    struct proxy_worker *w = c->w;
    if (t->peer || c->req_framing != BODY_NONE || c->upgrade_req || c->resp_started || c->dead ||
        c->state == CS_CLOSING)
        return false;
    int64_t now = proxy_now_ms();
    if (!c->retry_until_ms)
        c->retry_until_ms = now + w->tl[TL_CONNECT].timeout_ms;
    if (now + PROXY_RETRY_MS > c->retry_until_ms)
        return false;
    proxy_timer_set(w, &c->timer, TL_RETRY);
    return true;
}

/*
 * Send the request where its route points: the local app, or the primary's
 * proxy. The head is (re)built from c->head; a buffered body is added by
 * reference, so it is still there to send again after a 421.
 */
static int dispatch(struct client *c)
{
    struct proxy_worker *w = c->w;
    struct upstream_target *t = &w->app;
    if (c->route == ROUTE_FORWARD) {
        t = peer_target(w);
        if (!t && !w->snap.primary_addr_len && c->req_done && c->retry_ok) {
            /* the primary's name is still being looked up: its write waits, as for a primary */
            if (hold_enter(c) == 0)
                return 0;
        }
        if (!t) {
            client_error(c, 502, "the primary's advertised URL cannot be used", NULL);
            return HPE_USER;
        }
    }
    if (c->route == ROUTE_FORWARD)
        c->sent_to = w->snap.primary_known ? id_hash(w->snap.primary_id) : 0;
    /* a request that may not be sent twice takes no pooled connection the app is likely to close */
    bool fresh = c->fresh_conn ||
                 (t->closes_conns && (c->req_framing != BODY_NONE || !method_is_safe(c->parser.method)));
    struct upstream *u = upstream_acquire(w, t, fresh);
    if (!u) {
        if (errno == ECONNREFUSED && connect_retry(c, t))
            return 0;
        if (c->route == ROUTE_FORWARD && c->req_done && c->retry_ok) {
            /* the primary cannot be reached, so it saw nothing: wait for the next one */
            exclude_primary(c);
            if (hold_enter(c) == 0)
                return 0;
        }
        client_error(c, 502,
                     t->peer ? "the primary's proxy refused the connection or is unreachable"
                             : "the app refused the connection or is unreachable",
                     NULL);
        return HPE_USER;
    }
    c->up = u;
    u->c = c;
    if (upstream_send_request(c) < 0 ||
        (c->body && evbuffer_get_length(c->body) && evbuffer_add_buffer_reference(u->out, c->body) < 0)) {
        client_error(c, 500, "out of memory", NULL);
        return HPE_USER;
    }
    c->deferred = 0;
    if (c->req_done) {
        client_set_state(c, c->upgrade_req ? CS_TUNNEL : CS_WAIT);
    } else {
        /* an upgrade request's body is parsed like any other: the tunnel starts after it */
        client_set_state(c, CS_BODY);
        /* a slow body sender is timed like a slow reader */
        if (c->req_framing != BODY_NONE && c->timer.list != TL_SEND)
            proxy_timer_set(w, &c->timer, TL_SEND);
    }
    /*
     * The head, and the body bytes that came with it, go at the end of the loop pass: in one
     * send, and after this pass's events, so that a pooled connection's FIN among them is seen
     * while nothing of the request was written yet (resend_unsent). An upgrade goes at once.
     */
    if (!c->upgrade_req)
        upstream_flush_soon(u);
    else
        upstream_flush(u);
    return 0;
}

static int upstream_send_request(struct client *c)
{
    struct upstream *u = c->up;
    llhttp_t *p = &c->parser;
    const char *method = llhttp_method_name(p->method);
    struct proxy_worker *w = c->w;
    struct req_rewrite rw = {
        .method = method,
        .method_len = strlen(method),
        .client_ip = c->ip,
        .from_peer = c->from_peer && w->px->peer_secret, /* only a proven peer keeps X-Forwarded-For as is */
        .primary_id = w->snap.primary_known ? w->snap.primary_id : NULL,
        .host_fallback = w->px->target_hostport,
        .chunked = c->req_framing == BODY_CHUNKED,
        .upgrade = c->upgrade_req,
        .passthrough = c->route == ROUTE_PASSTHROUGH,
        .drop_expect = c->continue_sent,
    };
    if (c->route == ROUTE_FORWARD) {
        rw.forwarded_by = w->px->cfg->instance;
        int64_t now_s = (int64_t)time(NULL);
        if (w->px->peer_secret && w->peer_token_sec != now_s) {
            if (!proxy_peer_token(w->px, w->px->cfg->instance, now_s, w->peer_token, sizeof(w->peer_token)))
                return -1;
            w->peer_token_sec = now_s;
        }
        rw.peer_token = w->px->peer_secret ? w->peer_token : NULL;
    }
    return proxy_http_write_request(u->out, c->head, &rw);
}

static int req_body(llhttp_t *p, const char *at, size_t len)
{
    struct client *c = p->data;
    struct evbuffer *to = c->deferred ? c->body : c->up ? c->up->out : NULL;
    if (!to)
        return HPE_USER;
    if (c->req_framing == BODY_CHUNKED) {
        char sz[24];
        evbuffer_add(to, sz, proxy_http_chunk_header(sz, len));
        evbuffer_add(to, at, len);
        evbuffer_add(to, "\r\n", 2);
    } else {
        evbuffer_add(to, at, len);
    }
    c->body_bytes += len;
    /* the limit is on the body (SPEC §2 step 8), not on the chunk framing buffered with it */
    if (c->deferred && c->body_bytes > PROXY_HOLD_BODY_MAX) {
        /* too big to keep: stream it if a primary is known, else give up now */
        if (c->route != ROUTE_FORWARD) {
            client_error(c, 503, "no primary is known (bodies over 1 MiB are not held)",
                         "Retry-After: 1\r\n");
            return HPE_USER;
        }
        if (dispatch(c) != 0)
            return HPE_USER;
        /* the buffered part went out by reference; drop our hold on it, the rest streams */
        evbuffer_free(c->body);
        c->body = NULL;
    }
    if (c->timer.list == TL_SEND)
        proxy_timer_set(c->w, &c->timer, TL_SEND);
    return 0;
}

static int req_message_complete(llhttp_t *p)
{
    struct client *c = p->data;
    struct evbuffer *to = c->deferred ? c->body : c->up ? c->up->out : NULL;
    if (to && c->req_framing == BODY_CHUNKED)
        evbuffer_add(to, "0\r\n\r\n", 5);
    c->req_done = 1;
    if (c->timer.list == TL_SEND)
        proxy_timer_clear(&c->timer);
    if (c->deferred) {
        /* the whole write is buffered: send it, or wait for a primary */
        c->retry_ok = 1;
        int rc = c->route == ROUTE_HOLD ? hold_enter(c) : dispatch(c);
        if (c->dead || c->state == CS_CLOSING)
            return HPE_USER;
        if (rc != 0) {
            client_error(c, 503, "too many writes are waiting for a primary", "Retry-After: 1\r\n");
            return HPE_USER;
        }
        return HPE_PAUSED;
    }
    client_set_state(c, c->upgrade_req ? CS_TUNNEL : CS_WAIT);
    /* stop here: the next pipelined request waits for this response */
    return llhttp_get_upgrade(p) ? 0 : HPE_PAUSED;
}

/* ---- upstream side ---- */

static struct upstream *upstream_new(struct proxy_worker *w, struct upstream_target *t)
{
    int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    set_nodelay(fd);
    struct upstream *u = calloc(1, sizeof(*u));
    if (!u || !(u->out = evbuffer_new())) {
        free(u);
        close(fd);
        return NULL;
    }
    u->fd = fd;
    u->w = w;
    u->target = t;
    llhttp_init(&u->parser, HTTP_RESPONSE, &resp_settings);
    u->parser.data = u;
    int rc = connect(fd, (struct sockaddr *)&t->addr, t->addr_len);
    if (rc < 0 && errno != EINPROGRESS) {
        int err = errno;
        proxy_log_debug("upstream connect failed", "target=%s err=\"%s\"", t->name, strerror(err));
        evbuffer_free(u->out);
        free(u);
        close(fd);
        proxy_metrics_add(&w->metrics.upstream_errors, 1);
        errno = err; /* dispatch() tells a refusal from the rest */
        return NULL;
    }
    u->connecting = rc < 0;
    event_assign(&u->ev, w->base, fd, EV_READ | EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST, upstream_event, u);
    if (event_add(&u->ev, NULL) < 0) {
        evbuffer_free(u->out);
        free(u);
        close(fd);
        return NULL;
    }
    proxy_metrics_add(&w->metrics.upstream_connects, 1);
    if (u->connecting)
        proxy_timer_set(w, &u->timer, TL_CONNECT);
    return u;
}

static void pool_remove(struct upstream *u)
{
    struct upstream_target *t = u->target;
    if (!u->pooled)
        return;
    if (u->pool_prev)
        u->pool_prev->pool_next = u->pool_next;
    else
        t->pool = u->pool_next;
    if (u->pool_next)
        u->pool_next->pool_prev = u->pool_prev;
    u->pool_prev = u->pool_next = NULL;
    u->pooled = 0;
    t->npool--;
}

static struct upstream *upstream_acquire(struct proxy_worker *w, struct upstream_target *t, bool fresh)
{
    struct upstream *u = fresh ? NULL : t->pool;
    if (u) {
        pool_remove(u);
        proxy_timer_clear(&u->timer);
        u->reused = 1;
        u->got_bytes = u->wrote = u->final_seen = u->discard = u->timer_paused = u->shut_wr = 0;
        llhttp_init(&u->parser, HTTP_RESPONSE, &resp_settings);
        u->parser.data = u;
        return u;
    }
    return upstream_new(w, t);
}

void proxy_upstream_close(struct upstream *u)
{
    if (u->dead)
        return;
    u->dead = 1;
    if (u->flush_queued)
        flush_forget(u->w, NULL, u);
    u->flush_queued = 0;
    pool_remove(u);
    if (u->c) {
        u->c->up = NULL;
        u->c = NULL;
    }
    proxy_timer_clear(&u->timer);
    event_del(&u->ev);
    if (u->ssl)
        SSL_free(u->ssl);
    u->ssl = NULL;
    close(u->fd);
    evbuffer_free(u->out);
    u->out = NULL;
    head_put(u->w, u->head);
    u->head = NULL;
    proxy_free_later(u->w, u);
}

/*
 * Put a finished upstream connection back in the pool, or close it. One whose FIN already
 * came (often in the same event as the response: an app may close after any response without
 * saying "Connection: close", RFC 9112 §9.6) is closed: its next event never comes, and a
 * request queued on it would meet the EOF instead of the app.
 */
static void upstream_release(struct upstream *u, bool reusable)
{
    struct proxy_worker *w = u->w;
    u->c = NULL;
    head_put(w, u->head);
    u->head = NULL;
    struct upstream_target *t = u->target;
    bool keepalive = reusable && llhttp_should_keep_alive(&u->parser);
    if (keepalive && u->rdhup)
        t->closes_conns = true; /* it said keep-alive and closed: it closes them all (upstream_target) */
    else if (keepalive && u->reused)
        t->closes_conns = false; /* a second exchange on one connection: it keeps them */
    if (!keepalive || w->draining || u->tunnel || u->rdhup || evbuffer_get_length(u->out) > 0) {
        proxy_upstream_close(u);
        return;
    }
    u->pooled = 1;
    u->pool_prev = NULL;
    u->pool_next = t->pool;
    if (t->pool)
        t->pool->pool_prev = u;
    t->pool = u;
    t->npool++;
    proxy_timer_set(w, &u->timer, TL_POOL);
}

/*
 * The connection ended (EOF, reset, a failed send) while not a byte of the request had been
 * written to it: the request is all still in u->out, body bytes read so far included, and the
 * app never saw it, whatever its method. It moves as it is to a new connection, once per
 * request (fresh_conn). True when it did; u is closed then. A connect that failed is not
 * handled here (connect_retry() and the hold are).
 */
static bool resend_unsent(struct upstream *u)
{
    struct client *c = u->c;
    if (u->wrote || u->got_bytes || u->tunnel || u->connecting || u->handshaking || c->fresh_conn ||
        c->resp_started || c->state == CS_CLOSING || evbuffer_get_length(u->out) == 0)
        return false;
    struct upstream *nu = upstream_new(u->w, u->target);
    if (!nu)
        return false;
    if (evbuffer_add_buffer(nu->out, u->out) < 0) {
        proxy_upstream_close(nu);
        return false;
    }
    proxy_log_debug("upstream closed before the request was sent: sending it on a new connection",
                    "target=%s", u->target->name);
    c->fresh_conn = 1;
    proxy_upstream_close(u); /* unbinds c */
    c->up = nu;
    nu->c = c;
    upstream_flush_soon(nu); /* goes once connected */
    return true;
}

/* The app failed us before or during the response. */
static void upstream_fail(struct upstream *u, const char *why)
{
    struct client *c = u->c;
    /* refused, timed out or TLS refused while connecting: the request never left this process */
    bool never_sent = u->connecting || u->handshaking;
    bool refused = u->refused; /* set only by a failed connect */
    bool stale = u->reused && !u->got_bytes;
    struct upstream_target *t = u->target;
    proxy_metrics_add(&u->w->metrics.upstream_errors, 1);
    if (stale && why == err_upstream_reset)
        t->closes_conns = true; /* the app closed a kept-alive connection as it was reused */
    if (c && !c->dead && why == err_upstream_reset && resend_unsent(u))
        return;
    proxy_upstream_close(u);
    if (!c || c->dead)
        return;
    if (refused && c->req_done && connect_retry(c, t))
        return;
    if (stale && !c->fresh_conn && c->req_done && !c->resp_started && c->req_framing == BODY_NONE &&
        method_is_safe(c->parser.method)) {
        /*
         * A pooled connection the app had already closed (its keep-alive timer won the race):
         * a safe method without a body may be sent again (RFC 9110 §9.2.2), once, on a new
         * connection. Anything else may have reached the app and is never retried.
         */
        c->fresh_conn = 1;
        if (dispatch(c) == 0 || c->dead)
            return;
    }
    if (c->route == ROUTE_FORWARD && c->retry_ok && c->req_done && never_sent && !c->resp_started) {
        /* the primary could not be reached, so it saw nothing: wait for the next primary */
        exclude_primary(c);
        if (hold_enter(c) == 0)
            return;
    }
    int status = why == err_upstream_timeout ? 504 : 502;
    const char *who = t->peer ? "the primary's proxy" : "the app";
    char line[160];
    snprintf(line, sizeof(line), "%s: %s", who, why);
    proxy_log_info("upstream error", "status=%d upstream=%s reason=\"%s\"", status, t->name, why);
    client_error(c, status, line, NULL);
}

/* recv(2) for plain and TLS connections: > 0 bytes, 0 at EOF, -1 with errno (EAGAIN: wait for an edge). */
static ssize_t up_recv(struct upstream *u, char *buf, size_t len)
{
    if (!u->ssl)
        return proxy_sock_recv(u->fd, buf, len);
    ERR_clear_error();
    int n = SSL_read(u->ssl, buf, (int)len);
    if (n > 0)
        return n;
    int e = SSL_get_error(u->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0))
        return 0;
    errno = ECONNRESET;
    return -1;
}

/* evbuffer_write(3) for plain and TLS connections. */
static int up_write(struct upstream *u)
{
    if (!u->ssl)
        return proxy_sock_send(u->out, u->fd);
    struct evbuffer_iovec v;
    if (evbuffer_peek(u->out, -1, NULL, &v, 1) < 1)
        return 0;
    ERR_clear_error();
    int n = SSL_write(u->ssl, v.iov_base, (int)(v.iov_len > INT32_MAX ? INT32_MAX : v.iov_len));
    if (n > 0) {
        evbuffer_drain(u->out, (size_t)n);
        return n;
    }
    int e = SSL_get_error(u->ssl, n);
    errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : EPIPE;
    return -1;
}

/*
 * TLS to an https:// peer: verify the chain (system CAs, or SSL_CERT_FILE /
 * SSL_CERT_DIR) and the name in the primary's URL. Returns 1 when done,
 * 0 to wait for the next edge, -1 on failure (the peer got nothing).
 */
static bool is_ip_literal(const char *host)
{
    unsigned char addr[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

static int up_handshake(struct upstream *u)
{
    if (!u->ssl) {
        struct proxy *px = u->w->px;
        const char *host = u->target->host;
        /* SSL_set1_host checks a name or an IP address; SNI carries names only (RFC 6066 §3) */
        if (!(u->ssl = SSL_new(px->peer_tls)) || SSL_set_fd(u->ssl, u->fd) != 1 ||
            (!is_ip_literal(host) && SSL_set_tlsext_host_name(u->ssl, host) != 1) ||
            SSL_set1_host(u->ssl, host) != 1)
            return -1;
        SSL_set_connect_state(u->ssl);
    }
    ERR_clear_error();
    int r = SSL_do_handshake(u->ssl);
    if (r == 1) {
        u->handshaking = 0;
        return 1;
    }
    int e = SSL_get_error(u->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    long vr = SSL_get_verify_result(u->ssl);
    proxy_log_warn("TLS handshake with the primary failed", "peer=%s verify=\"%s\" err=\"%s\"",
                   u->target->name, X509_verify_cert_error_string(vr),
                   ERR_reason_error_string(ERR_peek_last_error()));
    return -1;
}

/* Connected (and through TLS): its queued request bytes may go out. */
static bool upstream_may_send(const struct upstream *u)
{
    return !u->dead && !u->connecting && !u->handshaking;
}

/* A tunnel's client half-closed: half-close towards the app once all it sent has gone there. */
static void upstream_pass_eof(struct upstream *u)
{
    struct client *c = u->c;
    if (u->tunnel && !u->shut_wr && c && c->eof && !c->pending_len && evbuffer_get_length(u->out) == 0) {
        u->shut_wr = 1;
        (void)shutdown(u->fd, SHUT_WR);
    }
}

static void upstream_flush(struct upstream *u)
{
    if (!upstream_may_send(u))
        return;
    if (u->rdhup && !u->wrote && !u->tunnel && evbuffer_get_length(u->out) > 0) {
        /*
         * The app's FIN came before a byte of this request was written (the EPOLLOUT that comes
         * with it must not send it now): it would never be answered here. A new connection.
         */
        upstream_fail(u, err_upstream_reset);
        return;
    }
    while (evbuffer_get_length(u->out) > 0) {
        int n = up_write(u);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            /* a send only fails once connected: the app closed or reset the connection */
            upstream_fail(u, u->connecting ? err_upstream_connect : err_upstream_reset);
            return;
        }
        u->wrote = 1;
    }
    struct client *c = u->c;
    if (!c)
        return;
    if (c->eof && u->tunnel)
        upstream_pass_eof(u);
    /* once the whole request is out, the app is due an answer: time its silence */
    if (!u->tunnel && c->req_done && u->timer.list != TL_UPSTREAM)
        proxy_timer_set(u->w, &u->timer, TL_UPSTREAM);
    if (c->read_blocked && evbuffer_get_length(u->out) < PROXY_HIGH_WATER / 2)
        client_resume(c);
}

static void upstream_event(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *u = arg;
    if (u->dead)
        return;
    if (u->pooled) {
        /* an idle pooled connection spoke: EOF or junk, either way it is done */
        if (what & (EV_READ | EV_CLOSED)) {
            /* closed soon after its response, not after an idle timeout of the app's */
            int64_t idle_ms = u->w->tl[TL_POOL].timeout_ms;
            if (proxy_now_ms() - (u->timer.deadline_ms - idle_ms) < idle_ms / 2)
                u->target->closes_conns = true;
            proxy_upstream_close(u);
        }
        return;
    }
    if (u->connecting && (what & (EV_WRITE | EV_READ))) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            proxy_log_debug("upstream connect failed", "err=\"%s\"", strerror(err));
            u->refused = err == ECONNREFUSED;
            upstream_fail(u, err_upstream_connect);
            return;
        }
        u->connecting = 0;
        u->handshaking = u->target->tls;
        if (!u->handshaking)
            proxy_timer_clear(&u->timer);
    }
    if (u->handshaking) {
        int r = up_handshake(u);
        if (r < 0) {
            upstream_fail(u, err_upstream_connect);
            return;
        }
        if (r == 0)
            return;
        proxy_timer_clear(&u->timer);
        what |= EV_WRITE;
    }
    if (what & EV_CLOSED)
        u->rdhup = 1;
    if (what & EV_WRITE)
        upstream_flush(u);
    if (!u->dead && (what & (EV_READ | EV_CLOSED)))
        upstream_read(u);
}

static bool upstream_may_read(struct upstream *u)
{
    struct client *c = u->c;
    return !(c && c->out && evbuffer_get_length(c->out) >= PROXY_HIGH_WATER);
}

static void upstream_eof(struct upstream *u)
{
    struct client *c = u->c;
    if (u->tunnel) {
        /* the app closed its side of the tunnel: flush to the client, then close */
        if (c) {
            c->close_after = 1;
            client_flush(c);
        }
        if (!u->dead)
            proxy_upstream_close(u);
        return;
    }
    if (c && u->got_bytes && !c->resp_done) {
        /* a close-delimited body ends here (RFC 9112 §6.3 rule 8) */
        (void)llhttp_finish(&u->parser);
        if (u->dead || !u->c)
            return;
    }
    if (c && c->resp_done) {
        c->up = NULL;
        u->c = NULL;
        proxy_upstream_close(u);
        if (!c->req_done) {
            c->close_after_resp = 1;
            c->req_done = 1;
        }
        exchange_done(c);
        return;
    }
    upstream_fail(u, err_upstream_reset);
}

static void upstream_read(struct upstream *u)
{
    struct proxy_worker *w = u->w;
    for (;;) {
        if (u->dead)
            return;
        if (!upstream_may_read(u)) {
            u->read_blocked = 1;
            /* the client holds us back, not the app: the app's silence is not timed meanwhile */
            if (u->timer.list == TL_UPSTREAM) {
                proxy_timer_clear(&u->timer);
                u->timer_paused = 1;
            }
            return;
        }
        u->read_blocked = 0;
        if (u->timer_paused) {
            u->timer_paused = 0;
            if (u->c && !u->tunnel && u->timer.list == TL_NONE)
                proxy_timer_set(w, &u->timer, TL_UPSTREAM);
        }
        ssize_t n = up_recv(u, w->rbuf, sizeof(w->rbuf));
        if (n > 0) {
            struct client *c = u->c;
            if (!c) {
                proxy_upstream_close(u);
                return;
            }
            u->got_bytes = 1;
            if (u->timer.list == TL_UPSTREAM)
                proxy_timer_set(w, &u->timer, TL_UPSTREAM);
            if (u->tunnel) {
                evbuffer_add(client_out(c), w->rbuf, (size_t)n);
            } else {
                llhttp_errno_t e = llhttp_execute(&u->parser, w->rbuf, (size_t)n);
                if (u->dead || c->dead)
                    return;
                if (e == HPE_PAUSED_UPGRADE) {
                    /* 101: everything after the head belongs to the tunnel */
                    const char *pos = llhttp_get_error_pos(&u->parser);
                    u->tunnel = 1;
                    proxy_timer_clear(&u->timer);
                    if (pos && pos < w->rbuf + n)
                        evbuffer_add(client_out(c), pos, (size_t)(w->rbuf + n - pos));
                    client_set_state(c, CS_TUNNEL);
                    if (c->pending_len) {
                        evbuffer_add(u->out, c->pending, c->pending_len);
                        free(c->pending);
                        c->pending = NULL;
                        c->pending_len = 0;
                    }
                    c->parse_paused = 0;
                    upstream_flush(u);
                    if (u->dead)
                        return;
                } else if (e == HPE_PAUSED) {
                    /* response complete; anything after it is the app's error, not ours to relay */
                    if (u->discard) {
                        /* 421 or gate-closed from the primary: wait for another, send again */
                        c->up = NULL;
                        upstream_release(u, c->req_done);
                        if (c->give_up)
                            c->excluded_until_ms = INT64_MAX; /* retried once: now only a new primary */
                        if (hold_enter(c) < 0)
                            client_error(c, 503, "no primary is ready for this write", "Retry-After: 1\r\n");
                        return;
                    }
                    if (c->req_done) {
                        exchange_done(c);
                    } else {
                        /* an early answer while the body still comes: send it and close both */
                        c->close_after_resp = 1;
                        c->req_done = 1;
                        c->up = NULL;
                        u->c = NULL;
                        proxy_upstream_close(u);
                        exchange_done(c);
                    }
                    return;
                } else if (e != HPE_OK) {
                    proxy_log_info("bad upstream response", "err=%s reason=\"%s\"", llhttp_errno_name(e),
                                   llhttp_get_error_reason(&u->parser));
                    upstream_fail(u, err_upstream_bad);
                    return;
                }
            }
            client_flush(c);
            if (c->dead || u->dead)
                return;
            /* TLS may hold decrypted bytes the socket no longer signals: read it dry */
            if ((size_t)n < sizeof(w->rbuf) && !u->rdhup && !u->tunnel && !u->ssl)
                return; /* a FIN comes flagged (EV_CLOSED): see client_read for resets */
            continue;
        }
        if (n == 0) {
            upstream_eof(u);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        if (u->tunnel || u->got_bytes)
            upstream_eof(u);
        else
            upstream_fail(u, err_upstream_reset);
        return;
    }
}

/* ---- response parser callbacks ---- */

static int resp_message_begin(llhttp_t *p)
{
    struct upstream *u = p->data;
    if (!u->head)
        u->head = head_get(u->w);
    else
        proxy_head_reset(u->head);
    return u->head ? 0 : -1;
}

static int resp_status(llhttp_t *p, const char *at, size_t len)
{
    struct upstream *u = p->data;
    return proxy_head_span(u->head, &u->head->reason_off, &u->head->reason_len, at, len) < 0 ? -1 : 0;
}

static int resp_field(llhttp_t *p, const char *at, size_t len)
{
    struct upstream *u = p->data;
    return proxy_head_field(u->head, at, len) < 0 ? -1 : 0;
}

static int resp_value(llhttp_t *p, const char *at, size_t len)
{
    struct upstream *u = p->data;
    return proxy_head_value(u->head, at, len) < 0 ? -1 : 0;
}

/* Does an Upgrade field name a protocol (a 101 without one switches to nothing known)? */
static bool names_protocol(const struct head *h)
{
    for (size_t i = 0; i < h->nf; i++)
        if (h->f[i].val_len && proxy_head_name_is(h, i, "upgrade"))
            return true;
    return false;
}

static int resp_headers_complete(llhttp_t *p)
{
    struct upstream *u = p->data;
    struct client *c = u->c;
    int status = p->status_code;
    if (!c)
        return -1;
    if (proxy_http_response_bad(u->head, status))
        return -1; /* 502: nothing of it reaches the client */
    struct evbuffer *out = client_out(c);
    if (!out)
        return -1;
    struct resp_rewrite rw;
    fill_rewrite(c, &rw, status);

    if (status >= 100 && status < 200 && status != 101) {
        /* interim responses (100 Continue, 103) go to HTTP/1.1 clients as they come */
        if (c->http_minor >= 1) {
            rw.framing = BODY_NONE;
            rw.keepalive = true;
            rw.passthrough = true; /* no fields of ours on an interim answer */
            if (proxy_http_write_response(out, u->head, &rw) < 0)
                return -1;
        }
        return 1; /* no body, whatever its framing fields say (RFC 9112 §6.3): the next response follows */
    }
    if (status == 101) {
        if (!c->upgrade_req)
            return -1; /* an upgrade nobody asked for */
        if (!names_protocol(u->head))
            return -1; /* 502: a 101 must name the protocol that follows (RFC 9110 §15.2.2) */
        rw.upgrade = true;
        rw.framing = BODY_NONE;
        /* a 101 switches protocols even without Connection: upgrade, which llhttp waits for */
        p->upgrade = 1;
        u->final_seen = 1;
        c->resp_started = 1;
        c->status = 101;
        /* 1: no body (RFC 9112 §6.3), whatever it announces: the bytes after its head are the tunnel's */
        return proxy_http_write_response(out, u->head, &rw) < 0 ? -1 : 1;
    }
    u->final_seen = 1;
    if ((p->flags & F_TRANSFER_ENCODING) && !proxy_http_response_coding_ok(u->head))
        return -1; /* 502: a coding we would drop (we re-frame bodies and strip Transfer-Encoding) */
    if (c->route == ROUTE_FORWARD && c->retry_ok &&
        (status == 421 || (status == 503 && proxy_head_find(u->head, "leaseway-gate") >= 0))) {
        /*
         * Not an answer for the client: the primary moved (421: it touched no app) or is
         * not ready yet (gate closed). Retry a 421 once, and hold through a closed gate.
         */
        u->discard = 1;
        if (status == 421) {
            /*
             * Retried once already at this primary (SPEC §2 step 9): from now on wait for the
             * snapshot to name another. A 421 from a primary not yet tried starts over: at a
             * handoff the old primary can say it (it let go), then the new one (its acquire
             * reply is still on its way) - the new one is tried again after EXCLUDE_MS.
             */
            bool again = c->misdirects >= 1 && c->excluded == c->sent_to;
            exclude_primary(c);
            c->give_up = again;
            c->misdirects = again ? 2 : 1;
        }
        return c->head_req ? 1 : 0;
    }
    bool no_body = c->head_req || status == 204 || status == 304;
    if (no_body)
        rw.framing = BODY_NONE;
    else if (p->flags & F_CONTENT_LENGTH)
        rw.framing = BODY_LENGTH;
    else
        rw.framing = c->http_minor >= 1 ? BODY_CHUNKED : BODY_EOF;
    /* a refused upgrade leaves the request parser in upgrade mode: close after */
    rw.keepalive = c->keepalive && !c->w->draining && rw.framing != BODY_EOF && !c->upgrade_req && !c->eof;
    if (!rw.keepalive)
        c->close_after_resp = 1;
    c->resp_framing = rw.framing;
    char txid_cookies[512];
    if (c->w->px->litefs.n && c->is_write && c->route == ROUTE_LOCAL && status < 500) {
        /* the write is committed on this primary: tell the client the position it must see */
        int xfp = proxy_head_find(c->head, "x-forwarded-proto");
        bool secure = xfp >= 0 && c->head->f[xfp].val_len == 5 &&
                      !strncasecmp(head_val(c->head, (size_t)xfp), "https", 5);
        if (proxy_litefs_cookies(&c->w->px->litefs, secure, txid_cookies, sizeof(txid_cookies)))
            rw.extra = txid_cookies;
    }
    c->resp_started = 1;
    c->status = status;
    if (proxy_http_write_response(out, u->head, &rw) < 0)
        return -1;
    /* a HEAD answer, a 204 and a 304 end with their head, whatever Content-Length says (RFC 9112 §6.3) */
    return no_body ? 1 : 0;
}

static int resp_body(llhttp_t *p, const char *at, size_t len)
{
    struct upstream *u = p->data;
    struct client *c = u->c;
    if (!c)
        return -1;
    if (u->discard)
        return 0;
    if (c->resp_framing == BODY_CHUNKED) {
        char sz[24];
        evbuffer_add(c->out, sz, proxy_http_chunk_header(sz, len));
        evbuffer_add(c->out, at, len);
        evbuffer_add(c->out, "\r\n", 2);
    } else {
        evbuffer_add(c->out, at, len);
    }
    return 0;
}

static int resp_message_complete(llhttp_t *p)
{
    struct upstream *u = p->data;
    struct client *c = u->c;
    if (!c)
        return -1;
    if (!u->final_seen)
        return 0; /* an interim response: the final one follows */
    if (c->status == 101)
        return 0; /* llhttp returns HPE_PAUSED_UPGRADE */
    if (u->discard)
        return HPE_PAUSED;
    if (c->resp_framing == BODY_CHUNKED)
        evbuffer_add(c->out, "0\r\n\r\n", 5);
    c->resp_done = 1;
    proxy_timer_clear(&u->timer);
    return HPE_PAUSED;
}

/*
 * Both halves are done: account, give the upstream connection back, and
 * either close the client or go back to reading its next request.
 */
static void exchange_done(struct client *c)
{
    struct proxy_worker *w = c->w;
    struct upstream *u = c->up;
    if (c->start_ns)
        proxy_metrics_request(&w->metrics, metrics_route(c), c->status, proxy_now_ns() - c->start_ns);
    if (c->start_ns)
        access_log(c, c->status);
    c->start_ns = 0;
    if (c->body) {
        evbuffer_free(c->body);
        c->body = NULL;
    }
    if (u) {
        c->up = NULL;
        upstream_release(u, c->req_done && c->resp_done);
    }
    head_put(w, c->head);
    c->head = NULL;
    /*
     * Close only what the response said it would (Connection: close). A response that went out
     * promising keep-alive just before draining began must not be followed by a close: the peer
     * may already be sending its next request on it. Draining answers that one with close.
     */
    if (c->close_after_resp || !c->keepalive || c->upgrade_req || c->eof) {
        c->close_after = 1;
        client_set_state(c, CS_CLOSING);
        client_flush(c);
        return;
    }
    client_set_state(c, CS_IDLE);
    c->parse_paused = 0;
    llhttp_resume(&c->parser);
    proxy_timer_set(w, &c->timer, TL_IDLE);
    client_flush_soon(c);
    client_next(c);
}

/*
 * Answers and whole requests complete during a loop pass are sent together at its end, not
 * one by one as they finish. A reader (wrk, a browser, a load balancer, the app) then wakes
 * once for a burst instead of once per message: on a busy worker most of the cost of a small
 * response is the wake-up of its reader (a cross-CPU interrupt), which this saves. The queue
 * holds a connection once; a close empties its slot (flush_forget).
 */
static bool flush_push(struct proxy_worker *w, struct client *c, struct upstream *u)
{
    if (w->nflushq == w->cap_flushq) {
        size_t cap = w->cap_flushq ? w->cap_flushq * 2 : 64;
        struct flush_item *grown = realloc(w->flushq, cap * sizeof(*grown));
        if (!grown)
            return false;
        w->flushq = grown;
        w->cap_flushq = cap;
    }
    w->flushq[w->nflushq++] = (struct flush_item){.c = c, .u = u};
    return true;
}

static void flush_forget(struct proxy_worker *w, const struct client *c, const struct upstream *u)
{
    for (size_t i = 0; i < w->nflushq; i++)
        if ((c && w->flushq[i].c == c) || (u && w->flushq[i].u == u))
            w->flushq[i] = (struct flush_item){0};
}

static void client_flush_soon(struct client *c)
{
    if (c->flush_queued)
        return;
    if (!flush_push(c->w, c, NULL)) {
        client_flush(c); /* no room to queue: send now */
        return;
    }
    c->flush_queued = 1;
}

static void upstream_flush_soon(struct upstream *u)
{
    if (u->flush_queued)
        return;
    if (!flush_push(u->w, NULL, u)) {
        upstream_flush(u);
        return;
    }
    u->flush_queued = 1;
}

/*
 * The sends of a pass in one system call (proxy_uring.c says why). Only bytes move here:
 * client_flush and upstream_flush then run as usual, find less (usually nothing) left to
 * send, and do the rest (a short send, EAGAIN, an error, timers, closing).
 */
static void send_batch(struct proxy_worker *w)
{
    struct proxy_send items[PROXY_SEND_BATCH];
    struct upstream *ups[PROXY_SEND_BATCH]; /* the upstream of each item (NULL: a client) */
    size_t lens[PROXY_SEND_BATCH];          /* its bytes before the send */
    size_t n = 0;
    for (size_t i = 0; i < w->nflushq && n < PROXY_SEND_BATCH; i++) {
        struct client *c = w->flushq[i].c;
        struct upstream *u = w->flushq[i].u;
        if (c && !c->dead && c->out && evbuffer_get_length(c->out)) {
            ups[n] = NULL;
            items[n++] = (struct proxy_send){.fd = c->fd, .buf = c->out};
        } else if (u && upstream_may_send(u) && !u->ssl && !u->rdhup && evbuffer_get_length(u->out)) {
            ups[n] = u;
            lens[n] = evbuffer_get_length(u->out);
            items[n++] = (struct proxy_send){.fd = u->fd, .buf = u->out};
        }
    }
    if (n < 2)
        return; /* one send is one system call either way: the loop below makes it */
    int sent = proxy_uring_send(w->uring, items, n);
    if (sent < 0) {
        proxy_log_warn("io_uring send failed: one send per socket from now on", "worker=%d err=\"%s\"", w->id,
                       strerror(errno));
        proxy_uring_free(w->uring);
        w->uring = NULL;
        return;
    }
    /* what reached an app's socket may have reached the app: never sent again (resend_unsent) */
    for (size_t i = 0; i < n; i++)
        if (ups[i] && evbuffer_get_length(ups[i]->out) < lens[i])
            ups[i]->wrote = 1;
    proxy_metrics_batch(&w->metrics, (size_t)sent);
}

/* Request bytes are ready: a whole request waits in the queue for the end of the pass, body bytes go now. */
static void upstream_send(struct upstream *u)
{
    if (!u->flush_queued)
        upstream_flush(u);
}

/* End of a loop pass: send what was queued (sending may queue more; those go too, in order). */
void proxy_conn_flush_queued(struct proxy_worker *w)
{
    if (w->uring)
        send_batch(w);
    for (size_t i = 0; i < w->nflushq; i++) {
        struct flush_item it = w->flushq[i];
        w->flushq[i] = (struct flush_item){0};
        if (it.u) {
            it.u->flush_queued = 0;
            upstream_flush(it.u);
        } else if (it.c) {
            struct client *c = it.c;
            c->flush_queued = 0;
            client_flush(c);
            if (!c->dead && c->state == CS_IDLE && c->out && evbuffer_get_length(c->out) == 0) {
                /* an idle keep-alive connection keeps no buffers */
                evbuffer_free(c->out);
                c->out = NULL;
            }
        }
    }
    w->nflushq = 0;
}

/* ---- timers ---- */

void proxy_timer_expired(struct tnode *t)
{
    switch ((enum proxy_timer)t->list) {
    case TL_HEADER: {
        struct client *c = (struct client *)((char *)t - offsetof(struct client, timer));
        proxy_timer_clear(t);
        if (c->state == CS_HEAD)
            client_error(c, 408, "request headers not received in time", NULL);
        else
            proxy_client_close(c);
        break;
    }
    case TL_IDLE:
    case TL_LINGER:
    case TL_SEND: {
        struct client *c = (struct client *)((char *)t - offsetof(struct client, timer));
        proxy_timer_clear(t);
        proxy_client_close(c);
        break;
    }
    case TL_CONNECT: {
        struct upstream *u = (struct upstream *)((char *)t - offsetof(struct upstream, timer));
        proxy_timer_clear(t);
        upstream_fail(u, err_upstream_timeout);
        break;
    }
    case TL_UPSTREAM: {
        struct upstream *u = (struct upstream *)((char *)t - offsetof(struct upstream, timer));
        proxy_timer_clear(t);
        upstream_fail(u, err_upstream_timeout);
        break;
    }
    case TL_TXID: {
        struct client *c = (struct client *)((char *)t - offsetof(struct client, timer));
        txid_wait_done(c, false);
        break;
    }
    case TL_HOLD: {
        struct client *c = (struct client *)((char *)t - offsetof(struct client, timer));
        hold_leave(c);
        client_error(c, 503, "no primary became available within --hold-timeout", "Retry-After: 1\r\n");
        break;
    }
    case TL_POOL: {
        struct upstream *u = (struct upstream *)((char *)t - offsetof(struct upstream, timer));
        u->target->closes_conns = false; /* the app kept it open all this time */
        proxy_upstream_close(u);
        break;
    }
    case TL_RETRY: {
        struct client *c = (struct client *)((char *)t - offsetof(struct client, timer));
        proxy_timer_clear(t);
        (void)dispatch(c);
        break;
    }
    default: proxy_timer_clear(t); break;
    }
}

void proxy_conn_init_settings(void)
{
    llhttp_settings_init(&req_settings);
    req_settings.on_message_begin = req_message_begin;
    req_settings.on_url = req_url;
    req_settings.on_header_field = req_field;
    req_settings.on_header_value = req_value;
    req_settings.on_headers_complete = req_headers_complete;
    req_settings.on_body = req_body;
    req_settings.on_chunk_header = req_chunk_header;
    req_settings.on_message_complete = req_message_complete;

    llhttp_settings_init(&resp_settings);
    resp_settings.on_message_begin = resp_message_begin;
    resp_settings.on_status = resp_status;
    resp_settings.on_header_field = resp_field;
    resp_settings.on_header_value = resp_value;
    resp_settings.on_headers_complete = resp_headers_complete;
    resp_settings.on_body = resp_body;
    resp_settings.on_message_complete = resp_message_complete;
}
