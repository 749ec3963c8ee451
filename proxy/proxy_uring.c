/*
 * Batched sends through io_uring: what a worker's loop pass completed goes to all of its
 * sockets in one io_uring_enter(2), instead of one send(2) per socket.
 *
 * Why: when the app shares a CPU with the worker (the usual single-machine deploy, and the
 * benchmark), each send that wakes the app lets the scheduler switch to it when that
 * system call returns. The app then wakes for one request, answers it, sleeps again, and
 * the worker sends the next: about one context switch each way per four requests on this
 * machine. Sent in one system call, the requests of a pass all reach the app before it
 * runs, and it answers them in one of its own passes.
 *
 * Only sends, never receives: the buffers stay owned by the caller's evbuffers and every
 * send completes before proxy_uring_send() returns (MSG_DONTWAIT makes the kernel answer
 * -EAGAIN at once rather than wait for room), so no memory is shared with the kernel
 * beyond the call. No liburing: the three system calls and the ring layout are the
 * kernel's UAPI (<linux/io_uring.h>).
 */
#include "proxy/proxy_uring.h"

#include <errno.h>
#include <stdbool.h>
#include <event2/buffer.h>
#include <linux/io_uring.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

struct proxy_uring {
    int fd;
    unsigned entries;
    unsigned *sq_tail, sq_mask;
    struct io_uring_sqe *sqes;
    unsigned *cq_head, *cq_tail, cq_mask;
    struct io_uring_cqe *cqes;
    void *sq_map, *cq_map, *sqe_map;
    size_t sq_len, cq_len, sqe_len;
    struct msghdr *msgs; /* [entries] */
    struct iovec *iovs;  /* [entries * PROXY_SEND_IOV] */
};

static int enter(int fd, unsigned to_submit, unsigned min_complete)
{
    return (int)syscall(SYS_io_uring_enter, fd, to_submit, min_complete, IORING_ENTER_GETEVENTS, NULL, 0);
}

struct proxy_uring *proxy_uring_new(unsigned entries)
{
    struct proxy_uring *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->fd = -1;
    r->sq_map = r->cq_map = r->sqe_map = MAP_FAILED;
    /* SUBMIT_ALL (5.18): a send refused at submission must not hold back the ones after it */
    struct io_uring_params p = {.flags = IORING_SETUP_SUBMIT_ALL};
    r->fd = (int)syscall(SYS_io_uring_setup, entries, &p);
    if (r->fd < 0)
        goto fail;
    r->entries = p.sq_entries;
    r->sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        if (r->cq_len > r->sq_len)
            r->sq_len = r->cq_len;
        r->cq_len = r->sq_len;
    }
    r->sq_map =
        mmap(NULL, r->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
    if (r->sq_map == MAP_FAILED)
        goto fail;
    if (p.features & IORING_FEAT_SINGLE_MMAP)
        r->cq_map = r->sq_map;
    else if ((r->cq_map = mmap(NULL, r->cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                               IORING_OFF_CQ_RING)) == MAP_FAILED)
        goto fail;
    r->sqe_len = p.sq_entries * sizeof(struct io_uring_sqe);
    r->sqe_map =
        mmap(NULL, r->sqe_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
    if (r->sqe_map == MAP_FAILED)
        goto fail;
    char *sq = r->sq_map, *cq = r->cq_map;
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
    r->sqes = r->sqe_map;
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    /* slot i of the ring always holds SQE i: the index array is filled once */
    unsigned *array = (unsigned *)(sq + p.sq_off.array);
    for (unsigned i = 0; i < p.sq_entries; i++)
        array[i] = i;
    r->msgs = calloc(r->entries, sizeof(*r->msgs));
    r->iovs = calloc((size_t)r->entries * PROXY_SEND_IOV, sizeof(*r->iovs));
    if (!r->msgs || !r->iovs) {
        errno = ENOMEM;
        goto fail;
    }
    return r;
fail:;
    int e = errno;
    proxy_uring_free(r);
    errno = e;
    return NULL;
}

void proxy_uring_free(struct proxy_uring *r)
{
    if (!r)
        return;
    if (r->sqe_map != MAP_FAILED)
        munmap(r->sqe_map, r->sqe_len);
    if (r->cq_map != MAP_FAILED && r->cq_map != r->sq_map)
        munmap(r->cq_map, r->cq_len);
    if (r->sq_map != MAP_FAILED)
        munmap(r->sq_map, r->sq_len);
    if (r->fd >= 0)
        close(r->fd);
    free(r->msgs);
    free(r->iovs);
    free(r);
}

int proxy_send_iov(struct evbuffer *b, struct iovec iov[PROXY_SEND_IOV])
{
    struct evbuffer_iovec v[PROXY_SEND_IOV];
    int n = evbuffer_peek(b, -1, NULL, v, PROXY_SEND_IOV);
    if (n <= 0)
        return 0;
    if (n > PROXY_SEND_IOV) /* peek says how many chunks there are, not how many it filled */
        n = PROXY_SEND_IOV;
    for (int i = 0; i < n; i++)
        iov[i] = (struct iovec){.iov_base = v[i].iov_base, .iov_len = v[i].iov_len};
    return n;
}

/* Fills SQE `slot` with a send of the first chunks of `b` to `fd`; false if `b` is empty. */
static bool prep_send(struct proxy_uring *r, unsigned slot, int fd, struct evbuffer *b, uint64_t tag)
{
    struct iovec *iov = &r->iovs[(size_t)slot * PROXY_SEND_IOV];
    int nv = proxy_send_iov(b, iov);
    if (nv == 0)
        return false;
    struct io_uring_sqe *sqe = &r->sqes[slot];
    memset(sqe, 0, sizeof(*sqe));
    sqe->fd = fd;
    sqe->msg_flags = MSG_NOSIGNAL | MSG_DONTWAIT; /* DONTWAIT: -EAGAIN now, never a poll */
    sqe->user_data = tag;
    if (nv == 1) {
        sqe->opcode = IORING_OP_SEND;
        sqe->addr = (uintptr_t)iov[0].iov_base;
        sqe->len = (uint32_t)(iov[0].iov_len > UINT32_MAX ? UINT32_MAX : iov[0].iov_len);
        return true;
    }
    r->msgs[slot] = (struct msghdr){.msg_iov = iov, .msg_iovlen = (size_t)nv};
    sqe->opcode = IORING_OP_SENDMSG;
    sqe->addr = (uintptr_t)&r->msgs[slot];
    sqe->len = 1;
    return true;
}

int proxy_uring_send(struct proxy_uring *r, const struct proxy_send *items, size_t n)
{
    /* only this thread writes the SQ tail, and the kernel reads it only inside enter() */
    unsigned tail = *r->sq_tail, s = 0;
    for (size_t i = 0; i < n && s < r->entries; i++)
        if (prep_send(r, (tail + s) & r->sq_mask, items[i].fd, items[i].buf, i))
            s++;
    if (s == 0)
        return 0;
    __atomic_store_n(r->sq_tail, tail + s, __ATOMIC_RELEASE);
    int submitted;
    do
        submitted = enter(r->fd, s, s);
    while (submitted < 0 && errno == EINTR);
    if (submitted < 0) {
        /* nothing was taken: take the entries back so that no later call submits them */
        __atomic_store_n(r->sq_tail, tail, __ATOMIC_RELEASE);
        return -1;
    }
    if ((unsigned)submitted < s) /* SUBMIT_ALL says it cannot happen; if it did, the rest go one by one */
        __atomic_store_n(r->sq_tail, tail + (unsigned)submitted, __ATOMIC_RELEASE);
    /* every submitted entry has completed (DONTWAIT), or completes at once: reap them all */
    unsigned reaped = 0;
    while (reaped < (unsigned)submitted) {
        unsigned head = *r->cq_head;
        unsigned ctail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
        for (; head != ctail; head++, reaped++) {
            const struct io_uring_cqe *cqe = &r->cqes[head & r->cq_mask];
            if (cqe->res > 0)
                evbuffer_drain(items[cqe->user_data].buf, (size_t)cqe->res);
        }
        __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
        if (reaped < (unsigned)submitted && enter(r->fd, 0, (unsigned)submitted - reaped) < 0 &&
            errno != EINTR)
            return -1;
    }
    return submitted;
}
