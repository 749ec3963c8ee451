/*
 * Batched sends (proxy/proxy_uring.c) against the real kernel: TCP connections
 * on loopback, a real io_uring. What a batch must do for the callers in
 * proxy_conn.c to stay right: drain exactly what each socket took, leave a
 * full or broken socket's buffer as it was, never block, never SIGPIPE.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/proxy_uring.h"

struct pair {
    int tx, rx; /* we send on tx, the peer reads rx */
};

/* A connected loopback pair; tx non-blocking like the proxy's sockets. rcvbuf > 0 shrinks rx's buffer. */
static struct pair tcp_pair(int rcvbuf)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    cr_assert(bind(l, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(l, 4) == 0);
    cr_assert(getsockname(l, (struct sockaddr *)&a, &len) == 0);
    struct pair p = {.tx = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)};
    if (rcvbuf > 0)
        setsockopt(l, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)); /* inherited by the accepted socket */
    int r = connect(p.tx, (struct sockaddr *)&a, sizeof(a));
    cr_assert(r == 0 || errno == EINPROGRESS);
    p.rx = accept(l, NULL, NULL);
    cr_assert(p.rx >= 0);
    close(l);
    int one = 1;
    setsockopt(p.tx, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return p;
}

static void pair_close(struct pair p)
{
    close(p.tx);
    if (p.rx >= 0)
        close(p.rx);
}

static struct proxy_uring *ring(unsigned entries)
{
    struct proxy_uring *r = proxy_uring_new(entries);
    if (!r)
        cr_skip_test("io_uring unavailable here: %s", strerror(errno));
    return r;
}

/* Reads exactly n bytes from fd (blocking). */
static void read_exactly(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        cr_assert(k > 0, "peer read: %zd (%s) after %zu of %zu", k, strerror(errno), got, n);
        got += (size_t)k;
    }
}

/* Several chunks in one evbuffer, so the send needs sendmsg with several iovecs. */
static struct evbuffer *chunks(const char *const *parts, size_t n)
{
    struct evbuffer *b = evbuffer_new();
    for (size_t i = 0; i < n; i++) {
        struct evbuffer *one = evbuffer_new();
        evbuffer_add(one, parts[i], strlen(parts[i]));
        evbuffer_add_buffer(b, one); /* keeps chunk boundaries */
        evbuffer_free(one);
    }
    return b;
}

Test(uring, sends_every_buffer_whole_and_in_order)
{
    struct proxy_uring *r = ring(8);
    struct pair p1 = tcp_pair(0), p2 = tcp_pair(0);
    const char *a_parts[] = {"HTTP/1.1 200 OK\r\n", "Content-Length: 5\r\n\r\n", "hello"};
    struct evbuffer *a = chunks(a_parts, 3), *b = evbuffer_new();
    evbuffer_add(b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
    cr_assert_eq(evbuffer_peek(a, -1, NULL, NULL, 0), 3, "three chunks: a sendmsg with three iovecs");
    struct proxy_send items[] = {{p1.tx, a}, {p2.tx, b}};
    cr_expect_eq(proxy_uring_send(r, items, 2), 2);
    cr_expect_eq(evbuffer_get_length(a), 0);
    cr_expect_eq(evbuffer_get_length(b), 0);
    const char *want = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    char got[64] = {0};
    read_exactly(p1.rx, got, strlen(want));
    cr_expect_str_eq(got, want);
    memset(got, 0, sizeof(got));
    read_exactly(p2.rx, got, 27);
    cr_expect_str_eq(got, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    evbuffer_free(a);
    evbuffer_free(b);
    pair_close(p1);
    pair_close(p2);
    proxy_uring_free(r);
}

Test(uring, full_socket_keeps_its_buffer_others_go)
{
    struct proxy_uring *r = ring(8);
    struct pair full = tcp_pair(4096), ok = tcp_pair(0);
    /* fill `full` until the kernel refuses more */
    static char junk[65536];
    size_t queued = 0;
    for (;;) {
        ssize_t k = send(full.tx, junk, sizeof(junk), MSG_DONTWAIT);
        if (k < 0) {
            cr_assert(errno == EAGAIN, "%s", strerror(errno));
            break;
        }
        queued += (size_t)k;
    }
    struct evbuffer *stuck = evbuffer_new(), *b = evbuffer_new();
    evbuffer_add(stuck, "next answer", 11);
    evbuffer_add(b, "ping", 4);
    struct proxy_send items[] = {{full.tx, stuck}, {ok.tx, b}};
    cr_expect_eq(proxy_uring_send(r, items, 2), 2, "two sends made, whatever they took");
    cr_expect_eq(evbuffer_get_length(stuck), 11, "EAGAIN: nothing drained");
    cr_expect_eq(evbuffer_get_length(b), 0);
    char got[5] = {0};
    read_exactly(ok.rx, got, 4);
    cr_expect_str_eq(got, "ping");
    /* the caller's own send then meets the same EAGAIN, as the contract says */
    cr_expect_eq(send(full.tx, "x", 1, MSG_DONTWAIT), -1);
    cr_expect_eq(errno, EAGAIN);
    (void)queued;
    evbuffer_free(stuck);
    evbuffer_free(b);
    pair_close(full);
    pair_close(ok);
    proxy_uring_free(r);
}

Test(uring, short_send_drains_what_was_taken)
{
    struct proxy_uring *r = ring(4);
    struct pair p = tcp_pair(4096);
    int small = 4096;
    setsockopt(p.tx, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    size_t n = 4 << 20;
    char *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 7 + i / 4096);
    struct evbuffer *b = evbuffer_new(), *other = evbuffer_new();
    evbuffer_add(b, data, n);
    evbuffer_add(other, "x", 1);
    struct pair q = tcp_pair(0);
    struct proxy_send items[] = {{p.tx, b}, {q.tx, other}};
    cr_expect_eq(proxy_uring_send(r, items, 2), 2);
    size_t left = evbuffer_get_length(b), took = n - left;
    cr_expect(took > 0 && took < n, "a short send: took %zu of %zu", took, n);
    /* what went out is exactly the front of the buffer, and what is left is the rest */
    char *got = malloc(took);
    read_exactly(p.rx, got, took);
    cr_expect(memcmp(got, data, took) == 0);
    cr_expect(memcmp(evbuffer_pullup(b, -1), data + took, left) == 0);
    free(got);
    free(data);
    evbuffer_free(b);
    evbuffer_free(other);
    pair_close(p);
    pair_close(q);
    proxy_uring_free(r);
}

Test(uring, broken_peer_no_sigpipe_buffer_kept)
{
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill the test */
    struct proxy_uring *r = ring(4);
    struct pair p = tcp_pair(0), q = tcp_pair(0);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(p.rx, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(p.rx); /* RST */
    p.rx = -1;
    usleep(20000);
    struct evbuffer *b = evbuffer_new(), *c = evbuffer_new();
    evbuffer_add(b, "lost", 4);
    evbuffer_add(c, "fine", 4);
    struct proxy_send items[] = {{p.tx, b}, {q.tx, c}};
    cr_expect_eq(proxy_uring_send(r, items, 2), 2);
    cr_expect_eq(evbuffer_get_length(b), 4, "an error drains nothing");
    cr_expect_eq(evbuffer_get_length(c), 0, "the error does not hold back the others");
    /* the caller's own send sees the connection is gone */
    cr_expect_eq(send(p.tx, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL), -1);
    evbuffer_free(b);
    evbuffer_free(c);
    pair_close(p);
    pair_close(q);
    proxy_uring_free(r);
}

Test(uring, empty_buffers_skipped_and_batch_capped_at_ring_size)
{
    struct proxy_uring *r = ring(4);
    struct pair p[6];
    struct evbuffer *b[6];
    struct proxy_send items[6];
    for (int i = 0; i < 6; i++) {
        p[i] = tcp_pair(0);
        b[i] = evbuffer_new();
        if (i != 1)
            evbuffer_add_printf(b[i], "item %d", i);
        items[i] = (struct proxy_send){p[i].tx, b[i]};
    }
    cr_expect_eq(proxy_uring_send(r, items, 0), 0);
    /* 5 non-empty buffers, 4 entries: the first 4 of them go, the 5th waits for its own send */
    cr_expect_eq(proxy_uring_send(r, items, 6), 4);
    for (int i = 0; i < 5; i++)
        cr_expect_eq(evbuffer_get_length(b[i]), 0, "item %d", i);
    cr_expect_eq(evbuffer_get_length(b[5]), 6, "item 5 is past the ring's size");
    /* and the ring is reusable */
    cr_expect_eq(proxy_uring_send(r, items, 6), 1);
    cr_expect_eq(evbuffer_get_length(b[5]), 0);
    for (int i = 0; i < 6; i++) {
        evbuffer_free(b[i]);
        pair_close(p[i]);
    }
    proxy_uring_free(r);
}
