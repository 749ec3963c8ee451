/*
 * openloop — an open-loop HTTP/1.1 load generator on libevent, for latency at a
 * fixed request rate without coordinated omission.
 *
 * Request i is SCHEDULED at start + i / rate, whatever happened before it. It
 * goes out on a free keep-alive connection as soon as it is due (one request in
 * flight per connection, no pipelining); if every connection is busy it waits
 * in a queue. Its latency is measured from its scheduled time to the last byte
 * of its response, so time spent queued behind a slow response counts (the
 * load does not back off when the server stalls, unlike wrk/ab).
 *
 *   openloop -a 127.0.0.2:8080 -r 500 -d 10 -c 16 [-w 1] [-m POST] [-u /write]
 *            [-j PREFIX | -s BYTES] [-H 'Name: value']... [-q]
 *
 *   -a HOST:PORT   target (IPv4)
 *   -r RATE        requests per second (scheduled)
 *   -d SECONDS     measured duration (after the warm-up)
 *   -w SECONDS     warm-up: scheduled but not recorded (default 1)
 *   -c CONNS       keep-alive connections (default 16)
 *   -m METHOD      default POST
 *   -u PATH        default /write
 *   -j PREFIX      body {"id":"PREFIX-<n>"} (a unique id per request), JSON
 *   -s BYTES       body of BYTES 'x' (default: -j lw, no body for GET/HEAD)
 *   -H HEADER      extra request header, repeatable
 *   -t SECONDS     per-request timeout (default 10): counted as an error
 *
 * Output (one line, then exit 0; exit 2 on bad usage):
 *   count=N errors=E non2xx=K rate=R p50=.. p90=.. p99=.. p999=.. max=.. mean=.. (ms) late_max=..
 * where errors are connection failures/timeouts/unparseable responses, non2xx
 * are complete responses with another status (their latency is recorded too),
 * and late_max is the longest a due request waited for a free connection.
 *
 * Build: cc -O2 -o openloop openloop.c -levent   (tests/bench/latency.sh does it)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADERS 16

struct conn;

struct req {
    uint64_t seq;
    int64_t sched_ns; /* scheduled send time */
    bool record;
};

enum rstate { R_HEAD, R_BODY_CL, R_CHUNK_SIZE, R_CHUNK_DATA, R_CHUNK_CRLF, R_TRAILERS };

struct conn {
    int idx;
    struct bufferevent *bev;
    bool connected, busy;
    struct req cur;
    enum rstate rs;
    int status;
    bool close_after;
    size_t remaining;
    struct conn *next_free;
};

static struct {
    struct event_base *base;
    struct sockaddr_in addr;
    char hostport[128];
    double rate, duration, warmup, timeout_s;
    int nconns;
    const char *method, *path, *json_prefix;
    long body_size;
    const char *headers[MAX_HEADERS];
    int nheaders;
    int64_t start_ns, end_sched_ns;
    uint64_t next_seq, total_sched;
    /* queue of due requests waiting for a connection (ring) */
    struct req *queue;
    size_t qhead, qlen, qcap;
    struct conn *conns;
    struct conn *free_list;
    struct event *tick;
    /* results */
    double *lat;
    size_t nlat, latcap;
    uint64_t errors, non2xx, done;
    int64_t late_max_ns;
    uint64_t outstanding;
} G;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void conn_open(struct conn *c);
static void pump(void);

static void record(const struct req *r, bool ok, int status)
{
    G.done++;
    if (!r->record)
        return;
    if (!ok) {
        G.errors++;
        return;
    }
    if (status < 200 || status > 299)
        G.non2xx++;
    if (G.nlat == G.latcap) {
        G.latcap = G.latcap ? G.latcap * 2 : 4096;
        G.lat = realloc(G.lat, G.latcap * sizeof(double));
        if (!G.lat) {
            perror("realloc");
            exit(1);
        }
    }
    G.lat[G.nlat++] = (double)(now_ns() - r->sched_ns) / 1e6;
}

static void conn_free_push(struct conn *c)
{
    c->busy = false;
    c->next_free = G.free_list;
    G.free_list = c;
}

static void conn_fail(struct conn *c)
{
    if (c->busy) {
        record(&c->cur, false, 0);
        G.outstanding--;
        c->busy = false;
    }
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    c->connected = false;
    /* remove from the free list if it is there */
    struct conn **pp = &G.free_list;
    while (*pp) {
        if (*pp == c) {
            *pp = c->next_free;
            break;
        }
        pp = &(*pp)->next_free;
    }
    conn_open(c);
}

static void send_req(struct conn *c, const struct req *r)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char body[256];
    const char *b = NULL;
    size_t blen = 0;
    if (G.json_prefix) {
        blen = (size_t)snprintf(body, sizeof(body), "{\"id\":\"%s-%llu\"}", G.json_prefix,
                                (unsigned long long)r->seq);
        b = body;
    } else if (G.body_size > 0) {
        blen = (size_t)G.body_size;
    }
    evbuffer_add_printf(out, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: leaseway-openloop\r\n", G.method,
                        G.path, G.hostport);
    if (G.json_prefix)
        evbuffer_add_printf(out, "Content-Type: application/json\r\n");
    for (int i = 0; i < G.nheaders; i++)
        evbuffer_add_printf(out, "%s\r\n", G.headers[i]);
    if (b || blen)
        evbuffer_add_printf(out, "Content-Length: %zu\r\n", blen);
    evbuffer_add(out, "\r\n", 2);
    if (b) {
        evbuffer_add(out, b, blen);
    } else if (blen) {
        static char xs[4096];
        if (!xs[0])
            memset(xs, 'x', sizeof(xs));
        for (size_t left = blen; left;) {
            size_t k = left < sizeof(xs) ? left : sizeof(xs);
            evbuffer_add(out, xs, k);
            left -= k;
        }
    }
    c->busy = true;
    c->cur = *r;
    c->rs = R_HEAD;
    c->status = 0;
    c->close_after = false;
    struct timeval tv = {(time_t)G.timeout_s, (suseconds_t)((G.timeout_s - (time_t)G.timeout_s) * 1e6)};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    G.outstanding++;
    int64_t late = now_ns() - r->sched_ns;
    if (r->record && late > G.late_max_ns)
        G.late_max_ns = late;
}

/* Parse as much of the response as is buffered. Returns 1 when complete, 0 for more, -1 on error. */
static int parse(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    for (;;) {
        switch (c->rs) {
        case R_HEAD: {
            struct evbuffer_ptr p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
            if (p.pos < 0)
                return evbuffer_get_length(in) > 65536 ? -1 : 0;
            size_t n = (size_t)p.pos + 4;
            char *h = malloc(n + 1);
            if (!h)
                return -1;
            evbuffer_remove(in, h, n);
            h[n] = '\0';
            if (strncmp(h, "HTTP/1.", 7) || strlen(h) < 12) {
                free(h);
                return -1;
            }
            c->status = atoi(h + 9);
            long cl = -1;
            bool chunked = false;
            for (char *line = strstr(h, "\r\n"); line && line[2] != '\r';) {
                line += 2;
                char *eol = strstr(line, "\r\n");
                if (!eol)
                    break;
                if (!strncasecmp(line, "Content-Length:", 15))
                    cl = strtol(line + 15, NULL, 10);
                else if (!strncasecmp(line, "Transfer-Encoding:", 18) && strcasestr(line, "chunked") &&
                         strcasestr(line, "chunked") < eol)
                    chunked = true;
                else if (!strncasecmp(line, "Connection:", 11) && strcasestr(line, "close") &&
                         strcasestr(line, "close") < eol)
                    c->close_after = true;
                line = eol;
            }
            free(h);
            if (c->status >= 100 && c->status < 200 && c->status != 101) {
                c->rs = R_HEAD; /* interim response */
                continue;
            }
            if (!strcmp(G.method, "HEAD") || c->status == 204 || c->status == 304)
                return 1;
            if (chunked) {
                c->rs = R_CHUNK_SIZE;
            } else if (cl >= 0) {
                c->remaining = (size_t)cl;
                c->rs = R_BODY_CL;
            } else {
                return -1; /* close-delimited bodies are not supported */
            }
            break;
        }
        case R_BODY_CL: {
            size_t have = evbuffer_get_length(in);
            size_t k = have < c->remaining ? have : c->remaining;
            evbuffer_drain(in, k);
            c->remaining -= k;
            if (c->remaining == 0)
                return 1;
            return 0;
        }
        case R_CHUNK_SIZE: {
            size_t len;
            char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF_STRICT);
            if (!line)
                return 0;
            c->remaining = strtoul(line, NULL, 16);
            free(line);
            c->rs = c->remaining ? R_CHUNK_DATA : R_TRAILERS;
            break;
        }
        case R_CHUNK_DATA: {
            size_t have = evbuffer_get_length(in);
            size_t k = have < c->remaining ? have : c->remaining;
            evbuffer_drain(in, k);
            c->remaining -= k;
            if (c->remaining)
                return 0;
            c->rs = R_CHUNK_CRLF;
            break;
        }
        case R_CHUNK_CRLF: {
            if (evbuffer_get_length(in) < 2)
                return 0;
            evbuffer_drain(in, 2);
            c->rs = R_CHUNK_SIZE;
            break;
        }
        case R_TRAILERS: {
            size_t len;
            char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF_STRICT);
            if (!line)
                return 0;
            free(line);
            if (len == 0)
                return 1;
            break;
        }
        }
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct conn *c = arg;
    if (!c->busy) { /* unsolicited bytes */
        conn_fail(c);
        pump();
        return;
    }
    int r = parse(c);
    if (r < 0) {
        conn_fail(c);
        pump();
        return;
    }
    if (r == 0)
        return;
    record(&c->cur, true, c->status);
    G.outstanding--;
    c->busy = false;
    if (c->close_after) {
        conn_fail(c);
    } else {
        bufferevent_set_timeouts(c->bev, NULL, NULL);
        conn_free_push(c);
    }
    pump();
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        c->connected = true;
        int one = 1;
        setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conn_free_push(c);
        pump();
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        conn_fail(c);
        pump();
    }
}

static void conn_open(struct conn *c)
{
    c->bev = bufferevent_socket_new(G.base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        fprintf(stderr, "openloop: bufferevent_socket_new failed\n");
        exit(1);
    }
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&G.addr, sizeof(G.addr)) < 0) {
        /* immediate failure: retry on the next tick */
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
}

static void queue_push(struct req r)
{
    if (G.qlen == G.qcap) {
        size_t ncap = G.qcap ? G.qcap * 2 : 1024;
        struct req *nq = malloc(ncap * sizeof(*nq));
        if (!nq) {
            perror("malloc");
            exit(1);
        }
        for (size_t i = 0; i < G.qlen; i++)
            nq[i] = G.queue[(G.qhead + i) % G.qcap];
        free(G.queue);
        G.queue = nq;
        G.qcap = ncap;
        G.qhead = 0;
    }
    G.queue[(G.qhead + G.qlen) % G.qcap] = r;
    G.qlen++;
}

/* Enqueue every request that is due, then hand queued ones to free connections. */
static void pump(void)
{
    int64_t now = now_ns();
    while (G.next_seq < G.total_sched) {
        int64_t t = G.start_ns + (int64_t)((double)G.next_seq * 1e9 / G.rate);
        if (t > now)
            break;
        struct req r = {G.next_seq, t, t >= G.start_ns + (int64_t)(G.warmup * 1e9)};
        queue_push(r);
        G.next_seq++;
    }
    while (G.qlen && G.free_list) {
        struct conn *c = G.free_list;
        G.free_list = c->next_free;
        struct req r = G.queue[G.qhead];
        G.qhead = (G.qhead + 1) % G.qcap;
        G.qlen--;
        send_req(c, &r);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    for (int i = 0; i < G.nconns; i++)
        if (!G.conns[i].bev)
            conn_open(&G.conns[i]);
    pump();
    int64_t now = now_ns();
    if (G.next_seq >= G.total_sched) {
        if ((G.qlen == 0 && G.outstanding == 0) ||
            now > G.end_sched_ns + (int64_t)(G.timeout_s * 1e9) + 1000000000LL) {
            /* whatever is still queued or in flight past the timeout is an error */
            for (size_t i = 0; i < G.qlen; i++)
                record(&G.queue[(G.qhead + i) % G.qcap], false, 0);
            for (int i = 0; i < G.nconns; i++)
                if (G.conns[i].busy)
                    record(&G.conns[i].cur, false, 0);
            event_base_loopexit(G.base, NULL);
            return;
        }
        struct timeval tv = {0, 10000};
        evtimer_add(G.tick, &tv);
        return;
    }
    int64_t next = G.start_ns + (int64_t)((double)G.next_seq * 1e9 / G.rate);
    int64_t wait = next - now;
    if (wait < 0)
        wait = 0;
    struct timeval tv = {(time_t)(wait / 1000000000LL), (suseconds_t)((wait % 1000000000LL) / 1000)};
    evtimer_add(G.tick, &tv);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    if (!G.nlat)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)G.nlat);
    if (i >= G.nlat)
        i = G.nlat - 1;
    return G.lat[i];
}

static void usage(void)
{
    fprintf(stderr,
            "usage: openloop -a HOST:PORT -r RATE -d SECONDS [-w S] [-c CONNS] [-m METHOD] [-u PATH]\n"
            "                [-j ID_PREFIX | -s BODY_BYTES] [-H 'Name: value']... [-t TIMEOUT_S]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    G.rate = 500;
    G.duration = 10;
    G.warmup = 1;
    G.timeout_s = 10;
    G.nconns = 16;
    G.method = "POST";
    G.path = "/write";
    G.body_size = -1;
    const char *addr = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "a:r:d:w:c:m:u:j:s:H:t:")) != -1) {
        switch (opt) {
        case 'a': addr = optarg; break;
        case 'r': G.rate = atof(optarg); break;
        case 'd': G.duration = atof(optarg); break;
        case 'w': G.warmup = atof(optarg); break;
        case 'c': G.nconns = atoi(optarg); break;
        case 'm': G.method = optarg; break;
        case 'u': G.path = optarg; break;
        case 'j': G.json_prefix = optarg; break;
        case 's': G.body_size = atol(optarg); break;
        case 'H':
            if (G.nheaders == MAX_HEADERS)
                usage();
            G.headers[G.nheaders++] = optarg;
            break;
        case 't': G.timeout_s = atof(optarg); break;
        default: usage();
        }
    }
    if (!addr || G.rate <= 0 || G.duration <= 0 || G.nconns <= 0 || G.warmup < 0)
        usage();
    if (!G.json_prefix && G.body_size < 0 && strcmp(G.method, "GET") && strcmp(G.method, "HEAD"))
        G.json_prefix = "lw"; /* a write needs a unique id; a GET gets no body */
    snprintf(G.hostport, sizeof(G.hostport), "%s", addr);
    char host[128];
    snprintf(host, sizeof(host), "%s", addr);
    char *colon = strrchr(host, ':');
    if (!colon)
        usage();
    *colon = '\0';
    G.addr.sin_family = AF_INET;
    G.addr.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &G.addr.sin_addr) != 1)
        usage();

    struct event_config *cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER); /* timerfd: sub-ms ticks */
    G.base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!G.base) {
        fprintf(stderr, "openloop: no event base\n");
        return 1;
    }
    G.conns = calloc((size_t)G.nconns, sizeof(*G.conns));
    for (int i = 0; i < G.nconns; i++) {
        G.conns[i].idx = i;
        conn_open(&G.conns[i]);
    }
    /* let the connections come up before the clock starts */
    struct timeval settle = {0, 200000};
    event_base_loopexit(G.base, &settle);
    event_base_dispatch(G.base);

    G.total_sched = (uint64_t)((G.warmup + G.duration) * G.rate);
    G.start_ns = now_ns();
    G.end_sched_ns = G.start_ns + (int64_t)((G.warmup + G.duration) * 1e9);
    G.tick = evtimer_new(G.base, on_tick, NULL);
    struct timeval zero = {0, 0};
    evtimer_add(G.tick, &zero);
    event_base_dispatch(G.base);

    qsort(G.lat, G.nlat, sizeof(double), cmp_d);
    double sum = 0;
    for (size_t i = 0; i < G.nlat; i++)
        sum += G.lat[i];
    uint64_t recorded = G.nlat + G.errors;
    printf(
        "count=%zu errors=%llu non2xx=%llu rate=%.1f p50=%.3f p90=%.3f p99=%.3f p999=%.3f max=%.3f mean=%.3f "
        "late_max=%.3f\n",
        G.nlat, (unsigned long long)G.errors, (unsigned long long)G.non2xx, (double)recorded / G.duration,
        pct(50), pct(90), pct(99), pct(99.9), G.nlat ? G.lat[G.nlat - 1] : 0.0,
        G.nlat ? sum / (double)G.nlat : 0.0, (double)G.late_max_ns / 1e6);
    return 0;
}
