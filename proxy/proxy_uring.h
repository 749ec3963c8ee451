/*
 * Batched sends: one io_uring_enter(2) sends what a worker's loop pass completed to all
 * of its sockets at once. See proxy_uring.c for why.
 */
#ifndef LEASEWAY_PROXY_URING_H
#define LEASEWAY_PROXY_URING_H

#include <stddef.h>

#include <sys/uio.h>

struct evbuffer;
struct proxy_uring;

#define PROXY_SEND_IOV 16 /* chunks per send: the rest of a buffer goes on the next send */

/* The first (up to PROXY_SEND_IOV) chunks of `b` as iovecs, for one send; 0 if `b` is empty. */
int proxy_send_iov(struct evbuffer *b, struct iovec iov[PROXY_SEND_IOV]);

/* One socket and the buffer whose bytes go to it. */
struct proxy_send {
    int fd;
    struct evbuffer *buf;
};

/*
 * A ring for batches of up to `entries` sends, owned by the caller (proxy_uring_free).
 * NULL when the kernel has no io_uring or refuses it (errno says why: ENOSYS, EPERM from
 * kernel.io_uring_disabled or a seccomp filter); callers then send one by one.
 * A ring has no lock: one thread at a time uses it (each worker makes its own).
 */
struct proxy_uring *proxy_uring_new(unsigned entries);
void proxy_uring_free(struct proxy_uring *r);

/*
 * Sends the bytes of each item's buffer (its first chunks, as one send(2) would) to its
 * socket, all in one system call, then drains from each buffer what the kernel took.
 * At most as many items as the ring has entries are sent; items with an empty buffer are
 * skipped. Never blocks: a socket without room, or with an error, takes nothing and its
 * buffer is left as it was, so the caller's own send afterwards meets the same condition
 * and handles it as usual. Returns how many sends were made, or -1 if the batch could not
 * be submitted (nothing was sent; the ring is then unusable and should be freed).
 */
int proxy_uring_send(struct proxy_uring *r, const struct proxy_send *items, size_t n)
    __attribute__((warn_unused_result));

#endif
