/*
 * Worker threads. Each owns an event_base, an SO_REUSEPORT listener on the
 * public address (the kernel spreads connections), its clients, its
 * upstream pool and its deadline lists. The control thread talks to a worker
 * only through its eventfd: 1 = drain (stop accepting, finish in-flight),
 * 2 = stop now.
 */
#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "proxy/proxy_log.h"
#include "proxy/proxy_uring.h"

#define TICK_MS 250

int64_t proxy_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t proxy_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Why not recv(3)/writev(3): glibc's wrappers are cancellation points and flip the calling
 * thread's cancel state with two atomic operations around every call, and writev(2) goes
 * through the VFS layer (file position lock, permission hooks) that a socket does not need.
 * Workers are never cancelled, so the system calls are made directly. Same contract as
 * recv(2); proxy_sock_send() is evbuffer_write(3) with send(2) for one chunk, sendmsg(2)
 * for several, never SIGPIPE.
 */
ssize_t proxy_sock_recv(int fd, void *buf, size_t len)
{
    return syscall(SYS_recvfrom, fd, buf, len, 0, NULL, NULL);
}

int proxy_sock_send(struct evbuffer *b, int fd)
{
    struct iovec iov[PROXY_SEND_IOV];
    int n = proxy_send_iov(b, iov);
    if (n == 0)
        return 0;
    long r;
    if (n == 1) {
        r = syscall(SYS_sendto, fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT, NULL, 0);
    } else {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        r = syscall(SYS_sendmsg, fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    if (r > 0)
        evbuffer_drain(b, (size_t)r);
    return (int)r;
}

int proxy_parse_addr(const char *hostport, bool passive, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (!colon || (size_t)(colon - hostport) >= sizeof(host) || proxy_config_parse_port(colon + 1) < 0)
        return -1;
    size_t hlen = (size_t)(colon - hostport);
    memcpy(host, hostport, hlen);
    host[hlen] = '\0';
    char *h = host;
    if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
        h[hlen - 1] = '\0';
        h++;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    if (passive && !*h) {
        /* ":8080" listens on every IPv4 interface, as nginx's "listen 8080" and HAProxy's "bind :8080" */
        hints.ai_family = AF_INET;
        hints.ai_flags |= AI_PASSIVE;
    }
    struct addrinfo *res = NULL;
    if (getaddrinfo(*h ? h : NULL, colon + 1, &hints, &res) != 0 || !res)
        return -1;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* ---- deadline lists ---- */

static int64_t list_timeout(struct proxy_worker *w, enum proxy_timer list)
{
    return w->tl[list].timeout_ms;
}

void proxy_timer_clear(struct tnode *t)
{
    if (t->list == TL_NONE)
        return;
    t->prev->next = t->next;
    t->next->prev = t->prev;
    t->prev = t->next = NULL;
    t->list = TL_NONE;
}

/*
 * Timeouts are seconds long and checked by a 250 ms tick, and a request sets several: the
 * coarse clock (a memory read, no TSC) is plenty: it lags CLOCK_MONOTONIC by less than one
 * kernel tick. Deadlines are set and checked on it alike, except those set with
 * proxy_timer_set_at() from proxy_now_ms(), which may so fire a few milliseconds late.
 */
static int64_t coarse_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void proxy_timer_set(struct proxy_worker *w, struct tnode *t, enum proxy_timer list)
{
    proxy_timer_clear(t);
    struct tnode *head = &w->tl[list].head;
    t->deadline_ms = coarse_now_ms() + list_timeout(w, list);
    t->list = (uint8_t)list;
    t->prev = head->prev;
    t->next = head;
    head->prev->next = t;
    head->prev = t;
}

void proxy_timer_set_at(struct proxy_worker *w, struct tnode *t, enum proxy_timer list, int64_t deadline_ms)
{
    proxy_timer_clear(t);
    struct tnode *head = &w->tl[list].head, *after = head->prev;
    while (after != head && after->deadline_ms > deadline_ms)
        after = after->prev;
    t->deadline_ms = deadline_ms;
    t->list = (uint8_t)list;
    t->prev = after;
    t->next = after->next;
    after->next->prev = t;
    after->next = t;
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_worker *w = arg;
    (void)fd;
    (void)what;
    int64_t now = coarse_now_ms();
    for (int l = TL_NONE + 1; l < TL_COUNT; l++) {
        struct tnode *head = &w->tl[l].head;
        while (head->next != head && head->next->deadline_ms <= now)
            proxy_timer_expired(head->next);
    }
}

/* ---- deferred free (STYLE rule 6): never free what a caller up the stack still uses ---- */

static void free_pending(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_worker *w = arg;
    (void)fd;
    (void)what;
    for (size_t i = 0; i < w->nfree_later; i++)
        free(w->free_later[i]);
    w->nfree_later = 0;
}

void proxy_free_later(struct proxy_worker *w, void *p)
{
    if (w->nfree_later == w->cap_free_later) {
        size_t cap = w->cap_free_later ? w->cap_free_later * 2 : 64;
        void **grown = realloc(w->free_later, cap * sizeof(*grown));
        if (!grown)
            abort(); /* freeing now could be a use-after-free; there is no safe way on */
        w->free_later = grown;
        w->cap_free_later = cap;
    }
    w->free_later[w->nfree_later++] = p;
    if (w->nfree_later == 1)
        event_active(&w->free_ev, EV_TIMEOUT, 0);
}

static void txid_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    proxy_conn_txid_poll(arg);
}

/* ---- accepting ---- */

static void accept_ready(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_worker *w = arg;
    (void)what;
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int cfd = accept4(fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE)
                proxy_log_warn("accept: out of file descriptors", "worker=%d", w->id);
            return;
        }
        if ((int64_t)w->nclients >= w->px->cfg->max_connections) {
            close(cfd);
            continue;
        }
        proxy_client_accept(w, cfd, &peer);
    }
}

static int open_listener(struct proxy *px)
{
    int fd = socket(px->listen_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&px->listen_addr, px->listen_len) < 0 || listen(fd, 4096) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/*
 * The workers' sockets share --listen through SO_REUSEPORT, which would also let them share it
 * with any other process that set it (a second leaseway, silently taking half the traffic). A
 * socket without SO_REUSEPORT cannot bind while anyone holds the address: EADDRINUSE, as nginx
 * says. Closed again before the workers bind theirs.
 */
int proxy_listen_probe(const struct proxy *px)
{
    int fd = socket(px->listen_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)); /* connections in TIME_WAIT are no one */
    int rc = bind(fd, (const struct sockaddr *)&px->listen_addr, px->listen_len);
    int e = errno;
    close(fd);
    errno = e;
    return rc < 0 ? -1 : 0;
}

static void stop_listening(struct proxy_worker *w)
{
    if (w->listen_fd < 0)
        return;
    /* take what already sits in the queue: closing would reset those connections */
    accept_ready(w->listen_fd, EV_READ, w);
    event_del(&w->listen_ev);
    close(w->listen_fd);
    w->listen_fd = -1;
}

static void close_all(struct proxy_worker *w)
{
    proxy_conn_refuse_held(w);
    while (w->clients)
        proxy_client_close(w->clients);
    while (w->app.pool)
        proxy_upstream_close(w->app.pool);
    for (size_t i = 0; i < PROXY_MAX_PEERS; i++)
        while (w->peers[i].pool)
            proxy_upstream_close(w->peers[i].pool);
}

static void check_drained(struct proxy_worker *w)
{
    if (w->stopping) {
        close_all(w);
        event_base_loopexit(w->base, NULL);
    }
}

/*
 * The eventfd only wakes the worker (its counter adds up writes); what to do
 * is in the proxy's atomic flags, read here.
 */
static void control(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_worker *w = arg;
    uint64_t v = 0;
    (void)what;
    if (read(fd, &v, sizeof(v)) != sizeof(v))
        return;
    if (atomic_load(&w->px->stopping))
        w->stopping = true;
    if (atomic_load(&w->px->refuse_held))
        proxy_conn_refuse_held(w);
    /*
     * Draining: no new connections; every request still arriving on an open one is answered
     * with Connection: close. Idle connections are left open until the stop, after the lease is
     * given away: closing them now would race with a peer sending a write on one.
     */
    if (atomic_load(&w->px->draining) && !w->draining) {
        w->draining = true;
        stop_listening(w);
    }
    if (w->stopping)
        check_drained(w);
    else
        proxy_conn_retry_held(w); /* a new snapshot: writes waiting for a primary may go on */
}

static void drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_worker *w = arg;
    __atomic_store_n(&w->heartbeat_ms, (uint64_t)coarse_now_ms(), __ATOMIC_RELAXED);
    tick(fd, what, arg);
    proxy_conn_retry_held(w); /* a primary whose gate was closed may be ready now */
    if (w->stopping)
        check_drained(w);
}

static void *worker_main(void *arg)
{
    struct proxy_worker *w = arg;
    /* the worker's own ring: only this thread submits to it, so it needs no lock */
    if (w->px->cfg->io_uring && !(w->uring = proxy_uring_new(PROXY_SEND_BATCH)))
        proxy_log_info("io_uring unavailable: one send per socket", "worker=%d err=\"%s\"", w->id,
                       strerror(errno));
    /* one pass at a time, so that the answers it completed go out together at its end */
    while (event_base_loop(w->base, EVLOOP_ONCE) == 0 && !event_base_got_exit(w->base) &&
           !event_base_got_break(w->base))
        proxy_conn_flush_queued(w);
    proxy_conn_flush_queued(w);
    close_all(w);
    free_pending(-1, 0, w);
    proxy_uring_free(w->uring);
    w->uring = NULL;
    return NULL;
}

static int worker_init(struct proxy *px, struct proxy_worker *w, int id)
{
    struct proxy_config *cfg = px->cfg;
    w->id = id;
    w->px = px;
    w->listen_fd = -1;
    w->ctl_fd = -1;
    struct event_config *ec = event_config_new();
    if (!ec)
        return -1;
    /* one thread per base: no locking inside libevent */
    event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (!w->base)
        return -1;
    const int64_t timeouts[TL_COUNT] = {
        [TL_HEADER] = cfg->header_timeout_ms,
        [TL_IDLE] = cfg->idle_timeout_ms,
        [TL_SEND] = cfg->idle_timeout_ms,
        [TL_CONNECT] = cfg->connect_timeout_ms,
        [TL_UPSTREAM] = cfg->upstream_timeout_ms,
        [TL_POOL] = PROXY_POOL_IDLE_MS,
        [TL_HOLD] = cfg->hold_timeout_ms > 0 ? cfg->hold_timeout_ms : 1,
        [TL_TXID] = cfg->txid_wait_ms > 0 ? cfg->txid_wait_ms : 1,
        [TL_LINGER] = 5000,
        [TL_RETRY] = PROXY_RETRY_MS,
    };
    memcpy(&w->app.addr, &px->target_addr, px->target_len);
    w->app.addr_len = px->target_len;
    snprintf(w->app.name, sizeof(w->app.name), "%s", px->target_hostport);
    for (int l = 0; l < TL_COUNT; l++) {
        w->tl[l].head.next = w->tl[l].head.prev = &w->tl[l].head;
        w->tl[l].timeout_ms = timeouts[l];
    }
    if ((w->listen_fd = open_listener(px)) < 0) {
        proxy_log_error("cannot listen", "listen=%s err=\"%s\"", cfg->listen, strerror(errno));
        return -1;
    }
    if ((w->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
        return -1;
    event_assign(&w->listen_ev, w->base, w->listen_fd, EV_READ | EV_PERSIST, accept_ready, w);
    event_assign(&w->ctl_ev, w->base, w->ctl_fd, EV_READ | EV_PERSIST, control, w);
    event_assign(&w->tick_ev, w->base, -1, EV_PERSIST, drain_tick, w);
    event_assign(&w->free_ev, w->base, -1, 0, free_pending, w);
    event_assign(&w->txid_ev, w->base, -1, 0, txid_tick, w);
    struct timeval tv = {0, TICK_MS * 1000};
    w->heartbeat_ms = (uint64_t)coarse_now_ms();
    if (event_add(&w->listen_ev, NULL) < 0 || event_add(&w->ctl_ev, NULL) < 0 ||
        event_add(&w->tick_ev, &tv) < 0)
        return -1;
    return 0;
}

static void worker_free(struct proxy_worker *w)
{
    if (!w->base)
        return;
    if (w->listen_fd >= 0)
        close(w->listen_fd);
    if (w->ctl_fd >= 0)
        close(w->ctl_fd);
    event_base_free(w->base);
    w->base = NULL;
    free(w->free_later);
    w->free_later = NULL;
    free(w->flushq);
    w->flushq = NULL;
    while (w->free_heads) {
        struct head *h = w->free_heads;
        w->free_heads = h->next_free;
        free(h->buf);
        free(h->f);
        free(h);
    }
}

int proxy_workers_start(struct proxy *px)
{
    proxy_conn_init_settings();
    px->workers = calloc(px->nworkers, sizeof(*px->workers));
    if (!px->workers)
        return -1;
    for (size_t i = 0; i < px->nworkers; i++) {
        if (worker_init(px, &px->workers[i], (int)i) < 0)
            goto fail;
    }
    for (size_t i = 0; i < px->nworkers; i++) {
        route_snapshot_refresh(&px->workers[i].snap);
        if (pthread_create(&px->workers[i].thread, NULL, worker_main, &px->workers[i]) != 0) {
            px->nworkers = i; /* join only what started */
            proxy_workers_stop(px);
            proxy_workers_join(px);
            return -1;
        }
    }
    return 0;
fail:
    for (size_t i = 0; i < px->nworkers; i++)
        worker_free(&px->workers[i]);
    free(px->workers);
    px->workers = NULL;
    return -1;
}

static void wake_workers(struct proxy *px)
{
    uint64_t one = 1;
    for (size_t i = 0; i < px->nworkers; i++) {
        ssize_t n = write(px->workers[i].ctl_fd, &one, sizeof(one));
        (void)n;
    }
}

void proxy_workers_drain(struct proxy *px)
{
    atomic_store(&px->draining, 1);
    wake_workers(px);
}

void proxy_workers_stop(struct proxy *px)
{
    atomic_store(&px->stopping, 1);
    wake_workers(px);
}

void proxy_workers_notify(struct proxy *px)
{
    if (px->workers)
        wake_workers(px);
}

int proxy_workers_stuck(struct proxy *px, int64_t limit_ms, int64_t *age_ms)
{
    int64_t now = coarse_now_ms();
    for (size_t i = 0; px->workers && i < px->nworkers; i++) {
        int64_t age = now - (int64_t)__atomic_load_n(&px->workers[i].heartbeat_ms, __ATOMIC_RELAXED);
        if (age >= limit_ms) {
            *age_ms = age;
            return (int)i;
        }
    }
    return -1;
}

int proxy_workers_join(struct proxy *px)
{
    if (!px->workers)
        return 0;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += PROXY_JOIN_TIMEOUT_MS / 1000;
    bool all = true;
    for (size_t i = 0; i < px->nworkers; i++) {
        if (pthread_timedjoin_np(px->workers[i].thread, NULL, &deadline) != 0) {
            proxy_log_error("worker did not stop", "worker=%zu timeout_ms=%d reason=\"%s\"", i,
                            PROXY_JOIN_TIMEOUT_MS,
                            "blocked in a system call (an --access-log pipe nobody reads?)");
            all = false;
        }
    }
    if (!all)
        return -1; /* a stuck worker still uses its state: leave it all */
    for (size_t i = 0; i < px->nworkers; i++)
        worker_free(&px->workers[i]);
    free(px->workers);
    px->workers = NULL;
    return 0;
}
