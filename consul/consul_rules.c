/*
 * The pure rules behind the Consul client: blocking-query index handling,
 * retry backoff, the watch's token bucket, the fence deadline, the
 * candidate's lease state machine, Go durations and URL helpers. No I/O
 * except the log line and the clocks, so the unit tests can pin them down.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "consul/consul-int.h"

static consul_log_sink log_sink; /* set once at start-up, before any thread or request */

void consul_log_set_sink(consul_log_sink sink)
{
    log_sink = sink;
}

void consul_log(const char *level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (log_sink != NULL)
        log_sink(level, line);
    else
        fprintf(stderr, "level=%s component=consul %s\n", level, line);
}

/* CLOCK_BOOTTIME: the fence deadline must count a suspended machine's sleep (see route_fence_now_ms()) */
int64_t consul_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t consul_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t consul_index_next(uint64_t prev, bool has_index, uint64_t index)
{
    if (!has_index)
        return 0;
    if (index < prev)
        return 0; /* went backwards (e.g. a snapshot restore, a new dev agent): reset and re-read */
    if (index == 0)
        return 1; /* blocking on 0 returns at once: a busy loop */
    return index;
}

int64_t consul_backoff_ms(unsigned attempt, uint32_t rnd)
{
    int64_t d = CONSUL_BACKOFF_BASE_MS;

    for (unsigned i = 0; i < attempt && d < CONSUL_BACKOFF_CAP_MS; i++)
        d *= 2;
    if (d > CONSUL_BACKOFF_CAP_MS)
        d = CONSUL_BACKOFF_CAP_MS;
    return d / 2 + (int64_t)(rnd % (uint32_t)(d / 2 + 1));
}

void consul_bucket_init(struct consul_bucket *b, int64_t now_ms)
{
    b->tokens_milli = CONSUL_BUCKET_BURST * 1000;
    b->last_ms = now_ms;
}

int64_t consul_bucket_take(struct consul_bucket *b, int64_t now_ms)
{
    if (now_ms > b->last_ms) {
        b->tokens_milli += (now_ms - b->last_ms) * 1000 / CONSUL_BUCKET_REFILL_MS;
        if (b->tokens_milli > CONSUL_BUCKET_BURST * 1000)
            b->tokens_milli = CONSUL_BUCKET_BURST * 1000;
        b->last_ms = now_ms;
    }
    if (b->tokens_milli >= 1000) {
        b->tokens_milli -= 1000;
        return 0;
    }
    /* ceil of the time until one whole token has accumulated */
    return ((1000 - b->tokens_milli) * CONSUL_BUCKET_REFILL_MS + 999) / 1000;
}

/*
 * Why the holder can stop in time (SPEC §5 "Fencing").
 *
 * Every timestamp below is taken *before* the request is handed to libcurl,
 * so Consul received it later than we think: using the send time only ever
 * moves our deadline earlier.
 *
 * Once our session is invalidated (at T_inv), Consul refuses every acquire
 * for the lock-delay, so the earliest another instance can hold the key is
 * T_inv + lock-delay. What bounds T_inv from below:
 *  - a successful renew: the servers found the session valid when they
 *    handled it, after renew_sent_ms. So T_inv >= renew_sent_ms, whatever
 *    ends the session: the session TTL (2 x TTL after the last renew they
 *    received), the `alive` check, or the node's serfHealth check, which the
 *    servers may turn critical at any moment: within a second of our local
 *    agent dying (an OOM kill), or a few seconds into a network partition
 *    that leaves our clients' path open. Our local agent cannot tell us
 *    about either. Hence renew_sent_ms + min(TTL, lock-delay).
 *  - the `alive` TTL check (3 s): the agent turns it critical no sooner than
 *    3 s after the last pass it received, after alive_sent_ms. A bound of
 *    its own, kept because a renew may be older than the last feed.
 * Our deadline is the smallest of these minus a margin, strictly before
 * another holder by at least the margin: it absorbs timer lateness on our
 * side, workers' snapshot latency and a write already in the app.
 * Renews therefore go every consul_renew_every(): a renew proves the
 * session to the servers, the alive feed only to our own agent.
 *
 * A voluntary release sets no lock-delay: callers fence (drop the role)
 * before they send ?release=.
 */
int64_t consul_fence_deadline(int64_t renew_sent_ms, int64_t ttl_ms, int64_t lock_delay_ms,
                              int64_t alive_sent_ms)
{
    int64_t span = ttl_ms < lock_delay_ms ? ttl_ms : lock_delay_ms;
    int64_t d = renew_sent_ms + span;

    if (alive_sent_ms >= 0 && alive_sent_ms + CONSUL_ALIVE_TTL_MS < d)
        d = alive_sent_ms + CONSUL_ALIVE_TTL_MS;
    d -= CONSUL_FENCE_MARGIN_MS;
    return d > 1 ? d : 1; /* 0 would mean "no fence" to routing */
}

int64_t consul_renew_every(int64_t ttl_ms, int64_t lock_delay_ms)
{
    int64_t span = (ttl_ms < lock_delay_ms ? ttl_ms : lock_delay_ms) - CONSUL_FENCE_MARGIN_MS;
    int64_t every = span / 3;
    return every < 100 ? 100 : every;
}

/*
 * Why a slow agent does not break the alive chain, and a stall does.
 *
 * The agent turns the check critical once 3 s pass without a pass *received*. We never know
 * when one was received, only that it was between its send and its reply. So when a pass's
 * reply comes back at reply_ms, some earlier successful pass sent at prev_ok_sent_ms was
 * received at or after that send, and this one at or before reply_ms: if reply_ms -
 * prev_ok_sent_ms < TTL - margin, no 3 s went by without a pass between the two (passes in
 * between, or received out of order, only shorten the gaps). Otherwise the check may have
 * gone critical and Consul may have invalidated the session meanwhile.
 *
 * With one pass at a time on a 1 s tick, a reply 1 s or more late made the tick skip, so the
 * next pass went 2 s after the last and reply - previous send = 2 s + D: the chain "broke" for
 * a check that never stopped passing. So passes do not wait for each other: one every second, and
 * while one is unanswered the next goes CONSUL_ALIVE_RESEND_MS after the last, which keeps
 * reply - previous send = RESEND + D: a chain holds with replies up to TTL - margin -
 * RESEND (2.1 s) late. A stalled process or agent still breaks it: nothing is received (or
 * processed) for the stall, and the first reply after it is more than 2.5 s after every
 * send before it.
 */
int64_t consul_alive_next_ms(int64_t last_sent_ms, unsigned in_flight)
{
    return last_sent_ms + (in_flight > 0 ? CONSUL_ALIVE_RESEND_MS : CONSUL_ALIVE_EVERY_MS);
}

bool consul_alive_chain_ok(int64_t prev_ok_sent_ms, int64_t reply_ms)
{
    return prev_ok_sent_ms >= 0 && reply_ms - prev_ok_sent_ms < CONSUL_ALIVE_TTL_MS - CONSUL_FENCE_MARGIN_MS;
}

static const char *const lease_state_names[CONSUL_LEASE_COUNT] = {
    [CONSUL_LEASE_INIT] = "init",         [CONSUL_LEASE_WATCH_ONLY] = "watch-only",
    [CONSUL_LEASE_CREATING] = "creating", [CONSUL_LEASE_ACQUIRING] = "acquiring",
    [CONSUL_LEASE_STANDBY] = "standby",   [CONSUL_LEASE_HOLDING] = "holding",
    [CONSUL_LEASE_HANDOFF] = "handoff",   [CONSUL_LEASE_SIDELINED] = "sidelined",
    [CONSUL_LEASE_STOPPING] = "stopping", [CONSUL_LEASE_STOPPED] = "stopped",
};

const char *consul_lease_state_str(enum consul_lease_state state)
{
    if ((unsigned)state >= CONSUL_LEASE_COUNT)
        return "invalid";
    return lease_state_names[state];
}

static const char *const lease_event_names[CONSUL_LEV_COUNT] = {
    [CONSUL_LEV_START] = "start",
    [CONSUL_LEV_START_WATCH] = "start-watch",
    [CONSUL_LEV_SESSION_OK] = "session-ok",
    [CONSUL_LEV_SESSION_LOST] = "session-lost",
    [CONSUL_LEV_ACQUIRED] = "acquired",
    [CONSUL_LEV_NOT_ACQUIRED] = "not-acquired",
    [CONSUL_LEV_KEY_FREE] = "key-free",
    [CONSUL_LEV_KEY_OTHER] = "key-other",
    [CONSUL_LEV_KEY_OURS] = "key-ours",
    [CONSUL_LEV_RETRY] = "retry",
    [CONSUL_LEV_HANDOFF] = "handoff",
    [CONSUL_LEV_UNFIT] = "unfit",
    [CONSUL_LEV_FIT] = "fit",
    [CONSUL_LEV_SHUTDOWN] = "shutdown",
    [CONSUL_LEV_STOPPED] = "stopped",
};

const char *consul_lease_event_str(enum consul_lease_event ev)
{
    if ((unsigned)ev >= CONSUL_LEV_COUNT)
        return "invalid";
    return lease_event_names[ev];
}

/*
 * The whole candidate lifecycle. Pairs not listed keep the state (e.g. a
 * transient error: the caller retries the same step after a backoff).
 *
 * UNFIT (this instance may not lead now: its app is not healthy, or it drains) takes a
 * candidate out of the race: it keeps its session but sends no acquire until FIT. The agent
 * also fires UNFIT on entering ACQUIRING or STANDBY while unfit. A holder keeps the lease
 * (HOLDING + UNFIT stays): its gate already refuses traffic, and a release on a failing health
 * check would make a flapping one a failover storm.
 */
enum consul_lease_state consul_lease_next(enum consul_lease_state s, enum consul_lease_event ev)
{
    if (s == CONSUL_LEASE_STOPPED)
        return s;
    if (ev == CONSUL_LEV_SHUTDOWN)
        return CONSUL_LEASE_STOPPING;
    if (s == CONSUL_LEASE_STOPPING)
        return ev == CONSUL_LEV_STOPPED ? CONSUL_LEASE_STOPPED : s;

    switch (s) {
    case CONSUL_LEASE_INIT:
        if (ev == CONSUL_LEV_START)
            return CONSUL_LEASE_CREATING;
        if (ev == CONSUL_LEV_START_WATCH)
            return CONSUL_LEASE_WATCH_ONLY;
        return s;
    case CONSUL_LEASE_WATCH_ONLY: return s;
    case CONSUL_LEASE_CREATING: return ev == CONSUL_LEV_SESSION_OK ? CONSUL_LEASE_ACQUIRING : s;
    case CONSUL_LEASE_ACQUIRING:
        switch (ev) {
        case CONSUL_LEV_ACQUIRED:
        case CONSUL_LEV_KEY_OURS: /* the reply was lost but the acquire happened */
            return CONSUL_LEASE_HOLDING;
        case CONSUL_LEV_NOT_ACQUIRED: return CONSUL_LEASE_STANDBY;
        case CONSUL_LEV_SESSION_LOST: return CONSUL_LEASE_CREATING;
        case CONSUL_LEV_HANDOFF: return CONSUL_LEASE_HANDOFF;
        case CONSUL_LEV_UNFIT:
            return CONSUL_LEASE_SIDELINED; /* an acquire in flight may still land: KEY_OURS */
        default: return s;
        }
    case CONSUL_LEASE_STANDBY:
        switch (ev) {
        case CONSUL_LEV_KEY_FREE:
        case CONSUL_LEV_RETRY: return CONSUL_LEASE_ACQUIRING;
        case CONSUL_LEV_KEY_OURS: return CONSUL_LEASE_HOLDING;
        case CONSUL_LEV_SESSION_LOST: return CONSUL_LEASE_CREATING;
        case CONSUL_LEV_UNFIT: return CONSUL_LEASE_SIDELINED;
        default: return s;
        }
    case CONSUL_LEASE_SIDELINED:
        switch (ev) {
        case CONSUL_LEV_FIT: return CONSUL_LEASE_STANDBY; /* which acquires at once if the key is free */
        case CONSUL_LEV_KEY_OURS: /* an acquire sent before UNFIT landed: a holder keeps the lease */
            return CONSUL_LEASE_HOLDING;
        case CONSUL_LEV_SESSION_LOST: return CONSUL_LEASE_CREATING;
        default: return s; /* KEY_FREE, RETRY: not contending */
        }
    case CONSUL_LEASE_HOLDING:
        switch (ev) {
        case CONSUL_LEV_SESSION_LOST: return CONSUL_LEASE_CREATING;
        case CONSUL_LEV_KEY_OTHER: return CONSUL_LEASE_STANDBY;
        case CONSUL_LEV_KEY_FREE:
            /* released or deleted behind our back, or a stale read: re-acquiring is idempotent */
            return CONSUL_LEASE_ACQUIRING;
        case CONSUL_LEV_HANDOFF: return CONSUL_LEASE_HANDOFF;
        default: return s;
        }
    case CONSUL_LEASE_HANDOFF:
        switch (ev) {
        case CONSUL_LEV_KEY_OTHER: /* a standby won: the handoff is complete */
        case CONSUL_LEV_RETRY: /* lock-delay + 1 s passed and nobody took it */ return CONSUL_LEASE_STANDBY;
        default: return s; /* SESSION_LOST: STANDBY notices the missing session on entry */
        }
    default: return s;
    }
}

int64_t consul_duration_ms(const char *s)
{
    double total = 0;
    const char *p = s;

    if (s == NULL || *s == '\0')
        return -1;
    if (strcmp(s, "0") == 0)
        return 0;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        double unit;

        if (end == p || !(v >= 0))
            return -1; /* also NaN ("nans"), whose conversion to an integer is undefined */
        p = end;
        if (strncmp(p, "ns", 2) == 0) {
            unit = 1e-6, p += 2;
        } else if (strncmp(p, "us", 2) == 0 || strncmp(p, "\xc2\xb5s", 3) == 0) {
            unit = 1e-3, p += (*p == 'u') ? 2 : 3;
        } else if (strncmp(p, "ms", 2) == 0) {
            unit = 1, p += 2;
        } else if (*p == 's') {
            unit = 1000, p++;
        } else if (*p == 'm') {
            unit = 60000, p++;
        } else if (*p == 'h') {
            unit = 3600000, p++;
        } else {
            return -1;
        }
        total += v * unit;
    }
    if (total > 9e15)
        return -1;
    return (int64_t)(total + 0.5);
}

void consul_duration_fmt(int64_t ms, char *buf, size_t size)
{
    if (ms % 1000 == 0)
        snprintf(buf, size, "%llds", (long long)(ms / 1000));
    else
        snprintf(buf, size, "%lldms", (long long)ms);
}

int consul_url_host_port(const char *url, char *host, size_t hostsz, int *port)
{
    const char *p, *h, *end;
    int defport;
    size_t n;

    if (strncmp(url, "http://", 7) == 0) {
        p = url + 7, defport = 80;
    } else if (strncmp(url, "https://", 8) == 0) {
        p = url + 8, defport = 443;
    } else {
        return -1;
    }
    end = p + strcspn(p, "/?#");
    h = p;
    {
        const char *at = memchr(p, '@', (size_t)(end - p));
        if (at != NULL)
            h = at + 1;
    }
    if (*h == '[') { /* IPv6 literal */
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (rb == NULL)
            return -1;
        n = (size_t)(rb - h - 1);
        if (n == 0 || n >= hostsz)
            return -1;
        memcpy(host, h + 1, n);
        host[n] = '\0';
        p = rb + 1;
    } else {
        const char *colon = memchr(h, ':', (size_t)(end - h));
        const char *hend = colon ? colon : end;
        n = (size_t)(hend - h);
        if (n == 0 || n >= hostsz)
            return -1;
        memcpy(host, h, n);
        host[n] = '\0';
        p = hend;
    }
    if (p < end && *p == ':') {
        char *e;
        long v = strtol(p + 1, &e, 10);
        if (e != end || v <= 0 || v > 65535)
            return -1;
        *port = (int)v;
    } else if (p == end) {
        *port = defport;
    } else {
        return -1;
    }
    return 0;
}

int consul_url_template(const char *tmpl, const char *id, char *out, size_t size)
{
    size_t o = 0, idlen = strlen(id);

    for (const char *p = tmpl; *p;) {
        if (strncmp(p, "{id}", 4) == 0) {
            if (o + idlen >= size)
                return -1;
            memcpy(out + o, id, idlen);
            o += idlen;
            p += 4;
        } else {
            if (o + 1 >= size)
                return -1;
            out[o++] = *p++;
        }
    }
    if (o >= size)
        return -1;
    out[o] = '\0';
    return 0;
}
