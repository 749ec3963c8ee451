/*
 * consul/ rules: blocking-query index handling, backoff bounds, the watch's
 * token bucket, the fence deadline, the lease state machine, and how the
 * CONSUL_* environment becomes a client configuration.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <sched.h>
#include <sys/wait.h>
#include <time.h>

#include "consul/consul-int.h"
#include "routing/route.h"

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The fence is timed on CLOCK_BOOTTIME, which counts a suspended machine's sleep (a paused VM, a
 * laptop lid): CLOCK_MONOTONIC stops meanwhile, so a primary waking up after its session expired
 * would have kept writing until its fence, timed from before the sleep, ran out on the stopped
 * clock. A time namespace whose boot time is 1000 s ahead of its monotonic time tells the two
 * clocks apart (root only; skipped elsewhere).
 */
Test(clock, fence_clocks_count_a_suspended_machine)
{
    if (unshare(CLONE_NEWTIME) < 0)
        cr_skip_test("no time namespace here (%s)", strerror(errno));
    FILE *f = fopen("/proc/self/timens_offsets", "w");
    if (!f || fprintf(f, "boottime 1000 0\n") < 0 || fclose(f) != 0)
        cr_skip_test("cannot set the time namespace's offsets (%s)", strerror(errno));
    pid_t pid = fork(); /* the new namespace applies to children */
    cr_assert(pid >= 0);
    if (pid == 0) {
        int64_t boot = clock_ms(CLOCK_BOOTTIME), mono = clock_ms(CLOCK_MONOTONIC);
        int bad = 0;
        if (boot - mono < 999000)
            bad |= 1; /* the namespace did not take */
        if (llabs(consul_now_ms() - boot) > 500)
            bad |= 2;
        if (llabs(route_fence_now_ms() - boot) > 500)
            bad |= 4;
        _exit(bad);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status));
    cr_expect_eq(WEXITSTATUS(status) & 1, 0, "the time namespace's offset did not apply");
    cr_expect_eq(WEXITSTATUS(status) & 2, 0,
                 "consul_now_ms() (renew times, fence deadlines) is not CLOCK_BOOTTIME");
    cr_expect_eq(WEXITSTATUS(status) & 4, 0,
                 "route_fence_now_ms() (the workers' fence check) is not CLOCK_BOOTTIME");
}

Test(consul_index, rules)
{
    cr_assert_eq(consul_index_next(0, true, 17), 17, "first read");
    cr_assert_eq(consul_index_next(17, true, 17), 17, "timeout: same index");
    cr_assert_eq(consul_index_next(17, true, 30), 30, "moved on");
    cr_assert_eq(consul_index_next(30, true, 29), 0, "went backwards: reset and re-read");
    cr_assert_eq(consul_index_next(30, true, 1), 0, "new agent: reset");
    cr_assert_eq(consul_index_next(0, true, 0), 1, "never block on 0");
    cr_assert_eq(consul_index_next(5, false, 0), 0, "no header: plain read");
    /* a 404 with an index blocks like any other reply */
    cr_assert_eq(consul_index_next(0, true, 12), 12);
}

Test(consul_backoff, bounded_and_jittered)
{
    for (unsigned attempt = 0; attempt < 40; attempt++) {
        int64_t lo = INT64_MAX, hi = 0;
        for (uint32_t r = 0; r < 5000; r += 7) {
            int64_t d = consul_backoff_ms(attempt, r * 2654435761u);
            cr_assert_geq(d, CONSUL_BACKOFF_BASE_MS / 2);
            cr_assert_leq(d, CONSUL_BACKOFF_CAP_MS, "attempt %u: %lld", attempt, (long long)d);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        cr_assert_gt(hi, lo, "attempt %u is not jittered", attempt);
    }
    cr_assert_leq(consul_backoff_ms(0, UINT32_MAX), CONSUL_BACKOFF_BASE_MS);
    cr_assert_geq(consul_backoff_ms(30, 0), CONSUL_BACKOFF_CAP_MS / 2);
}

Test(consul_bucket, burst_two_then_rate_limited)
{
    struct consul_bucket b;
    int64_t t = 1000;

    consul_bucket_init(&b, t);
    cr_assert_eq(consul_bucket_take(&b, t), 0);
    cr_assert_eq(consul_bucket_take(&b, t), 0);
    int64_t wait = consul_bucket_take(&b, t);
    cr_assert_eq(wait, CONSUL_BUCKET_REFILL_MS);
    cr_assert_gt(consul_bucket_take(&b, t + wait - 1), 0);
    cr_assert_eq(consul_bucket_take(&b, t + wait), 0);
    /* a long quiet spell refills to the burst, no more */
    t += 3600 * 1000;
    cr_assert_eq(consul_bucket_take(&b, t), 0);
    cr_assert_eq(consul_bucket_take(&b, t), 0);
    cr_assert_gt(consul_bucket_take(&b, t), 0);
    /* a busy loop takes at most burst + elapsed/refill tokens */
    int taken = 0;
    for (int64_t now = t; now < t + 10000; now++)
        if (consul_bucket_take(&b, now) == 0)
            taken++;
    cr_assert_leq(taken, 10000 / CONSUL_BUCKET_REFILL_MS + 1);
    cr_assert_geq(taken, 10000 / CONSUL_BUCKET_REFILL_MS - 1);
}

Test(consul_fence, min_of_renew_and_alive_minus_margin)
{
    /* lock-delay 10 s, TTL 10 s: the alive feed is the binding constraint while renews go on */
    cr_assert_eq(consul_fence_deadline(10000, 10000, 10000, 15000),
                 15000 + CONSUL_ALIVE_TTL_MS - CONSUL_FENCE_MARGIN_MS);
    /* alive feeds go on but renews stopped: min(TTL, lock-delay) after the last renew bounds it */
    cr_assert_eq(consul_fence_deadline(10000, 10000, 10000, 18000), 20000 - CONSUL_FENCE_MARGIN_MS);
    /* no alive check (--register=false): renew only */
    cr_assert_eq(consul_fence_deadline(10000, 10000, 10000, -1), 20000 - CONSUL_FENCE_MARGIN_MS);
    /* never 0 (0 means "no fence" to routing) */
    cr_assert_eq(consul_fence_deadline(0, 0, 1000, -1), 1);
}

Test(consul_fence, a_renew_keeps_the_fence_open_for_the_lock_delay_only)
{
    /*
     * The servers may end the session at any moment after they handled the last renew (the
     * node's serfHealth check, when our own agent dies or is cut off): another instance can
     * then hold the key a lock-delay later. The fence must close before that.
     */
    cr_assert_eq(consul_fence_deadline(10000, 10000, 1000, 10500), 11000 - CONSUL_FENCE_MARGIN_MS);
    cr_assert_eq(consul_fence_deadline(10000, 10000, 2000, 10500), 12000 - CONSUL_FENCE_MARGIN_MS);
    for (int64_t ld = CONSUL_LOCK_DELAY_MIN_MS; ld <= 60000; ld += 1500)
        for (int64_t renew = 0; renew < 20000; renew += 977)
            for (int64_t alive = 0; alive < 20000; alive += 631) {
                int64_t d = consul_fence_deadline(renew, 10000, ld, alive);
                cr_assert_lt(d, alive + CONSUL_ALIVE_TTL_MS); /* the alive check */
                cr_assert_lt(d, renew + 2 * 10000);           /* the session TTL */
                cr_assert_lt(d, renew + ld);                  /* serfHealth + lock-delay */
            }
}

Test(consul_fence, renews_come_three_times_within_the_span_they_keep_open)
{
    cr_assert_eq(consul_renew_every(10000, 1000), (1000 - CONSUL_FENCE_MARGIN_MS) / 3);
    cr_assert_eq(consul_renew_every(10000, 2000), 500);
    cr_assert_eq(consul_renew_every(10000, 60000), (10000 - CONSUL_FENCE_MARGIN_MS) / 3,
                 "TTL bounds the span");
    cr_assert_eq(consul_renew_every(1000, 1000), 166);
    for (int64_t ld = CONSUL_LOCK_DELAY_MIN_MS; ld <= 60000; ld += 250)
        cr_assert_lt(3 * consul_renew_every(10000, ld),
                     (ld < 10000 ? ld : 10000) - CONSUL_FENCE_MARGIN_MS + 3);
}

/*
 * The alive feed as consul_agent.c runs it, on a millisecond clock: a pass is sent when
 * consul_alive_next_ms() says so, its reply comes delay_ms later (none past the 2.5 s timeout),
 * and each reply is checked with consul_alive_chain_ok() against the latest send that succeeded
 * before it. Between stall_from and stall_to the process runs nothing (SIGSTOP): replies due
 * then are handled at stall_to. Returns how many replies broke the chain.
 */
static int alive_sim(int64_t delay_ms, int64_t stall_from, int64_t stall_to)
{
    enum { N = 256 };
    int64_t sent[N], reply[N], last_sent = -1, ok_sent = -1;
    int n = 0, broken = 0;
    bool done[N] = {false};

    for (int64_t t = 0; t < 60000; t++) {
        if (t >= stall_from && t < stall_to)
            continue;
        unsigned in_flight = 0;
        for (int i = 0; i < n; i++) {
            if (done[i] || reply[i] > t)
                continue;
            done[i] = true;
            if (reply[i] - sent[i] >= CONSUL_ALIVE_TTL_MS - CONSUL_FENCE_MARGIN_MS)
                continue; /* timed out */
            if (ok_sent >= 0 && !consul_alive_chain_ok(ok_sent, t))
                broken++;
            if (sent[i] > ok_sent)
                ok_sent = sent[i];
        }
        for (int i = 0; i < n; i++)
            in_flight += !done[i];
        if ((last_sent < 0 || t >= consul_alive_next_ms(last_sent, in_flight)) && n < N) {
            sent[n] = last_sent = t;
            reply[n++] = t + delay_ms;
        }
    }
    return broken;
}

Test(consul_alive, slow_agent_keeps_the_chain_a_stall_breaks_it)
{
    cr_assert_eq(consul_alive_next_ms(5000, 0), 5000 + CONSUL_ALIVE_EVERY_MS);
    cr_assert_lt(consul_alive_next_ms(5000, 1), 5000 + CONSUL_ALIVE_EVERY_MS,
                 "sooner while one is unanswered");
    cr_assert(!consul_alive_chain_ok(-1, 100), "no pass before: nothing proves the check passing");
    cr_assert(consul_alive_chain_ok(1000, 1000 + CONSUL_ALIVE_TTL_MS - CONSUL_FENCE_MARGIN_MS - 1));
    cr_assert(!consul_alive_chain_ok(1000, 1000 + CONSUL_ALIVE_TTL_MS - CONSUL_FENCE_MARGIN_MS));
    /* replies up to 2 s late: never broken (one pass at a time broke from about 1 s) */
    for (int64_t d = 0; d <= 2000; d += 50)
        cr_assert_eq(alive_sim(d, -1, -1), 0, "replies %lld ms late broke the chain", (long long)d);
    /* the process stopped for 3 s: broken, with fast or slow replies */
    cr_assert_gt(alive_sim(5, 20000, 23000), 0);
    cr_assert_gt(alive_sim(1200, 20000, 23000), 0);
    /* a 1 s pause (+ up to 1 s since the last pass + the reply) stays under TTL - margin */
    cr_assert_eq(alive_sim(5, 20000, 21000), 0);
}

#define S(x) CONSUL_LEASE_##x
#define E(x) CONSUL_LEV_##x

Test(consul_lease, happy_path_to_holding)
{
    enum consul_lease_state s = S(INIT);
    s = consul_lease_next(s, E(START));
    cr_assert_eq(s, S(CREATING));
    cr_assert_eq(consul_lease_next(s, E(KEY_FREE)), S(CREATING), "no acquire without a session");
    s = consul_lease_next(s, E(SESSION_OK));
    cr_assert_eq(s, S(ACQUIRING));
    s = consul_lease_next(s, E(ACQUIRED));
    cr_assert_eq(s, S(HOLDING));
    cr_assert_eq(consul_lease_next(s, E(KEY_OURS)), S(HOLDING));
}

Test(consul_lease, standby_and_failover)
{
    enum consul_lease_state s = S(ACQUIRING);
    s = consul_lease_next(s, E(NOT_ACQUIRED));
    cr_assert_eq(s, S(STANDBY));
    cr_assert_eq(consul_lease_next(s, E(KEY_OTHER)), S(STANDBY));
    cr_assert_eq(consul_lease_next(s, E(RETRY)), S(ACQUIRING), "retry after lock-delay");
    cr_assert_eq(consul_lease_next(s, E(KEY_FREE)), S(ACQUIRING), "holder released or died");
    cr_assert_eq(consul_lease_next(s, E(KEY_OURS)), S(HOLDING), "acquire reply lost but it happened");
    cr_assert_eq(consul_lease_next(s, E(SESSION_LOST)), S(CREATING));
    cr_assert_eq(consul_lease_next(S(ACQUIRING), E(KEY_OURS)), S(HOLDING));
    cr_assert_eq(consul_lease_next(S(ACQUIRING), E(SESSION_LOST)), S(CREATING), "500 invalid session");
}

Test(consul_lease, losing_the_lease)
{
    cr_assert_eq(consul_lease_next(S(HOLDING), E(SESSION_LOST)), S(CREATING), "renew 404");
    cr_assert_eq(consul_lease_next(S(HOLDING), E(KEY_OTHER)), S(STANDBY));
    cr_assert_eq(consul_lease_next(S(HOLDING), E(KEY_FREE)), S(ACQUIRING), "re-acquire is idempotent");
    cr_assert_eq(consul_lease_next(S(HOLDING), E(NOT_ACQUIRED)), S(HOLDING));
}

Test(consul_lease, handoff)
{
    enum consul_lease_state s = consul_lease_next(S(HOLDING), E(HANDOFF));
    cr_assert_eq(s, S(HANDOFF));
    cr_assert_eq(consul_lease_next(s, E(KEY_FREE)), S(HANDOFF),
                 "our own release must not trigger an acquire");
    cr_assert_eq(consul_lease_next(s, E(KEY_OURS)), S(HANDOFF));
    cr_assert_eq(consul_lease_next(s, E(SESSION_LOST)), S(HANDOFF));
    cr_assert_eq(consul_lease_next(s, E(KEY_OTHER)), S(STANDBY), "a standby won");
    cr_assert_eq(consul_lease_next(s, E(RETRY)), S(STANDBY), "nobody took it in time");
    cr_assert_eq(consul_lease_next(S(STANDBY), E(HANDOFF)), S(STANDBY), "nothing to hand off");
}

/*
 * A candidate unfit to lead (its app not healthy, or draining) stays out of the race: the
 * regression behind cluster_unhealthy_candidate.sh, where a candidate with a failed app took the
 * lease at a handoff and kept it while the healthy former primary waited.
 */
Test(consul_lease, unfit_candidate_stays_out_of_the_race)
{
    cr_assert_eq(consul_lease_next(S(STANDBY), E(UNFIT)), S(SIDELINED));
    cr_assert_eq(consul_lease_next(S(ACQUIRING), E(UNFIT)), S(SIDELINED), "no retry of the acquire");
    enum consul_lease_state s = S(SIDELINED);
    cr_assert_eq(consul_lease_next(s, E(KEY_FREE)), S(SIDELINED),
                 "a free key (handoff, failover) is not taken");
    cr_assert_eq(consul_lease_next(s, E(RETRY)), S(SIDELINED), "the retry timer does not acquire");
    cr_assert_eq(consul_lease_next(s, E(KEY_OTHER)), S(SIDELINED));
    cr_assert_eq(consul_lease_next(s, E(NOT_ACQUIRED)), S(SIDELINED));
    cr_assert_eq(consul_lease_next(s, E(ACQUIRED)), S(SIDELINED));
    cr_assert_eq(consul_lease_next(s, E(HANDOFF)), S(SIDELINED), "nothing to hand off");
    cr_assert_eq(consul_lease_next(s, E(UNFIT)), S(SIDELINED));
    cr_assert_eq(consul_lease_next(s, E(SESSION_LOST)), S(CREATING), "the session is kept up meanwhile");
    cr_assert_eq(consul_lease_next(s, E(KEY_OURS)), S(HOLDING),
                 "an acquire sent before it turned unfit landed: a holder keeps the lease");
    cr_assert_eq(consul_lease_next(s, E(FIT)), S(STANDBY), "back in the race (STANDBY acquires a free key)");
    cr_assert_eq(consul_lease_next(S(SIDELINED), E(SHUTDOWN)), S(STOPPING));
}

/*
 * The agent turns UNFIT into SIDELINED on entering ACQUIRING or STANDBY; the machine itself
 * still goes there (a session created, a handoff's wait over), and FIT elsewhere changes nothing.
 */
Test(consul_lease, unfit_elsewhere)
{
    cr_assert_eq(consul_lease_next(S(HOLDING), E(UNFIT)), S(HOLDING),
                 "the primary keeps the lease when its app fails: its gate already refuses traffic");
    cr_assert_eq(consul_lease_next(S(HANDOFF), E(UNFIT)), S(HANDOFF), "the handoff's wait runs on");
    cr_assert_eq(consul_lease_next(S(CREATING), E(UNFIT)), S(CREATING), "a session is still created");
    cr_assert_eq(consul_lease_next(S(CREATING), E(SESSION_OK)), S(ACQUIRING));
    cr_assert_eq(consul_lease_next(S(INIT), E(UNFIT)), S(INIT));
    for (int st = 0; st < CONSUL_LEASE_COUNT; st++) {
        if (st == S(SIDELINED))
            continue;
        cr_assert_eq(consul_lease_next((enum consul_lease_state)st, E(FIT)), st, "%s moved on fit",
                     consul_lease_state_str((enum consul_lease_state)st));
    }
}

Test(consul_lease, watch_only_and_shutdown)
{
    enum consul_lease_state s = consul_lease_next(S(INIT), E(START_WATCH));
    cr_assert_eq(s, S(WATCH_ONLY));
    for (int ev = 0; ev < CONSUL_LEV_COUNT; ev++) {
        if (ev == E(SHUTDOWN))
            continue;
        cr_assert_eq(consul_lease_next(s, (enum consul_lease_event)ev), S(WATCH_ONLY), "watcher moved on %s",
                     consul_lease_event_str((enum consul_lease_event)ev));
    }
    for (int st = 0; st < CONSUL_LEASE_COUNT; st++) {
        enum consul_lease_state n = consul_lease_next((enum consul_lease_state)st, E(SHUTDOWN));
        cr_assert_eq(n, st == S(STOPPED) ? S(STOPPED) : S(STOPPING));
    }
    cr_assert_eq(consul_lease_next(S(STOPPING), E(ACQUIRED)), S(STOPPING));
    cr_assert_eq(consul_lease_next(S(STOPPING), E(STOPPED)), S(STOPPED));
    cr_assert_eq(consul_lease_next(S(STOPPED), E(START)), S(STOPPED));
}

Test(consul_lease, names)
{
    for (int st = 0; st < CONSUL_LEASE_COUNT; st++)
        cr_assert_str_neq(consul_lease_state_str((enum consul_lease_state)st), "invalid");
    for (int ev = 0; ev < CONSUL_LEV_COUNT; ev++)
        cr_assert_str_neq(consul_lease_event_str((enum consul_lease_event)ev), "invalid");
    cr_assert_str_eq(consul_lease_state_str(CONSUL_LEASE_COUNT), "invalid");
}

static void clear_env(void)
{
    const char *vars[] = {"CONSUL_HTTP_ADDR",       "CONSUL_HTTP_TOKEN",      "CONSUL_HTTP_TOKEN_FILE",
                          "CONSUL_HTTP_AUTH",       "CONSUL_HTTP_SSL",        "CONSUL_CACERT",
                          "CONSUL_CAPATH",          "CONSUL_CLIENT_CERT",     "CONSUL_CLIENT_KEY",
                          "CONSUL_TLS_SERVER_NAME", "CONSUL_HTTP_SSL_VERIFY", "CONSUL_NAMESPACE",
                          "CONSUL_PARTITION"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
}

Test(consul_conf, addresses, .init = clear_env)
{
    struct consul_http_conf c;
    const char *err = NULL;

    cr_assert_eq(consul_http_conf_init(&c, NULL, &err), 0);
    cr_assert_str_eq(c.base_url, "http://127.0.0.1:8500");
    consul_http_conf_free(&c);

    setenv("CONSUL_HTTP_ADDR", "10.0.0.5:8500", 1);
    cr_assert_eq(consul_http_conf_init(&c, "", &err), 0);
    cr_assert_str_eq(c.base_url, "http://10.0.0.5:8500");
    consul_http_conf_free(&c);

    /* the flag wins over the environment; path prefix kept, trailing slash dropped */
    cr_assert_eq(consul_http_conf_init(&c, "https://consul.example:8501/proxy/", &err), 0);
    cr_assert_str_eq(c.base_url, "https://consul.example:8501/proxy");
    consul_http_conf_free(&c);

    cr_assert_eq(consul_http_conf_init(&c, "unix:///var/run/consul.sock", &err), 0);
    cr_assert_str_eq(c.unix_path, "/var/run/consul.sock");
    cr_assert_str_eq(c.base_url, "http://localhost");
    consul_http_conf_free(&c);

    setenv("CONSUL_HTTP_SSL", "true", 1);
    cr_assert_eq(consul_http_conf_init(&c, "http://h:8501", &err), 0);
    cr_assert_str_eq(c.base_url, "https://h:8501", "never revert to http when SSL is requested");
    consul_http_conf_free(&c);
    setenv("CONSUL_TLS_SERVER_NAME", "server.dc1.consul", 1);
    cr_assert_eq(consul_http_conf_init(&c, "h:8501", &err), 0);
    cr_assert_str_eq(c.base_url, "https://server.dc1.consul:8501");
    cr_assert_str_eq(c.connect_to, "::h:8501");
    consul_http_conf_free(&c);

    cr_assert_eq(consul_http_conf_init(&c, "ftp://h", &err), -1);
    cr_assert_not_null(err);
    cr_assert_eq(consul_http_conf_init(&c, "http://", &err), -1);
    /* a host:port that no connection could use is an error now, not a retry loop later */
    cr_assert_eq(consul_http_conf_init(&c, "not a url", &err), -1);
    cr_assert_eq(consul_http_conf_init(&c, "http://127.0.0.1:99999", &err), -1);
    cr_assert_eq(consul_http_conf_init(&c, "http://127.0.0.1:", &err), -1);
    cr_assert_eq(consul_http_conf_init(&c, "http://h:85x0", &err), -1);
    cr_assert_eq(consul_http_conf_init(&c, "http://ops:p%40ss@127.0.0.1:8500", &err), 0, "credentials");
    consul_http_conf_free(&c);
    cr_assert_eq(consul_http_conf_init(&c, "http://ops:pw@127.0.0.1:0", &err), -1);
    cr_assert_eq(consul_http_conf_init(&c, "http://[::1]:8500", &err), 0, "IPv6 literal");
    consul_http_conf_free(&c);
    cr_assert_eq(consul_http_conf_init(&c, "consul.service.consul", &err), 0,
                 "no port: the scheme's default");
    consul_http_conf_free(&c);
    setenv("CONSUL_HTTP_SSL", "maybe", 1);
    cr_assert_eq(consul_http_conf_init(&c, "h:1", &err), -1);
}

Test(consul_conf, tokens_tls_and_tenancy, .init = clear_env)
{
    struct consul_http_conf c;
    const char *err = NULL;
    char path[] = "/tmp/lw-token-XXXXXX";
    int fd = mkstemp(path);

    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "  file-token\n", 13), 13);
    close(fd);

    setenv("CONSUL_HTTP_TOKEN", "env-token", 1);
    cr_assert_eq(consul_http_conf_init(&c, NULL, &err), 0);
    cr_assert_str_eq(c.token, "env-token");
    consul_http_conf_free(&c);

    setenv("CONSUL_HTTP_TOKEN_FILE", path, 1);
    cr_assert_eq(consul_http_conf_init(&c, NULL, &err), 0);
    cr_assert_str_eq(c.token, "file-token", "the token file wins and is trimmed");
    fd = open(path, O_WRONLY | O_TRUNC);
    cr_assert_eq(write(fd, "rotated", 7), 7);
    close(fd);
    cr_assert(consul_http_conf_reload_token(&c));
    cr_assert_str_eq(c.token, "rotated");
    cr_assert_not(consul_http_conf_reload_token(&c));
    consul_http_conf_free(&c);
    unlink(path);
    cr_assert_eq(consul_http_conf_init(&c, NULL, &err), -1, "an unreadable token file is an error");
    unsetenv("CONSUL_HTTP_TOKEN_FILE");

    setenv("CONSUL_CLIENT_CERT", "/c.pem", 1);
    cr_assert_eq(consul_http_conf_init(&c, NULL, &err), -1, "cert without key");
    setenv("CONSUL_CLIENT_KEY", "/k.pem", 1);
    setenv("CONSUL_HTTP_SSL_VERIFY", "false", 1);
    setenv("CONSUL_NAMESPACE", "team a", 1);
    setenv("CONSUL_PARTITION", "p1", 1);
    setenv("CONSUL_HTTP_AUTH", "u:p", 1);
    cr_assert_eq(consul_http_conf_init(&c, NULL, &err), 0);
    cr_assert_eq(c.verify, 0);
    cr_assert_str_eq(c.userpwd, "u:p");
    char *url = consul_http_url(&c, "/v1/kv/k", "index=5");
    cr_assert_str_eq(url, "http://127.0.0.1:8500/v1/kv/k?index=5&ns=team%20a&partition=p1");
    free(url);
    url = consul_http_url(&c, "/v1/kv/k", NULL);
    cr_assert_str_eq(url, "http://127.0.0.1:8500/v1/kv/k?ns=team%20a&partition=p1");
    free(url);
    consul_http_conf_free(&c);
}
