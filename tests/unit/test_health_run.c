/*
 * health/ on a real event loop: child processes (output lines, exit codes,
 * a hung command killed at its timeout together with its children) and the
 * --migrate-command rules (once per lease tenure, never on a replica, never
 * two at once, a run that outlives the lease does not count, failures retried).
 */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "health/health-int.h"
#include "proxy/proxy_log.h"

static struct event_base *base;
static char root[64];

static void setup(void)
{
    proxy_log_setup("text", "error"); /* also links proxy_log (lw_health comes after lw_proxy) */
    base = event_base_new();
    cr_assert(base);
    snprintf(root, sizeof(root), "/tmp/lw-health-run-XXXXXX");
    cr_assert(mkdtemp(root));
}

static void teardown(void)
{
    event_base_free(base);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
}

TestSuite(health_run, .init = setup, .fini = teardown);

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Run the loop until *flag is set or ms pass. */
static void run_until(volatile bool *flag, int64_t ms)
{
    int64_t end = now_ms() + ms;
    while (!(flag && *flag) && now_ms() < end) {
        struct timeval tv = {0, 20 * 1000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
}

/* ---- health_proc ---------------------------------------------------------------------- */

struct seen {
    char lines[8][HEALTH_LINE_MAX];
    int nlines;
    int status;
    bool timed_out;
    bool done;
};

static void on_line(void *arg, const char *line)
{
    struct seen *s = arg;
    if (s->nlines < 8)
        snprintf(s->lines[s->nlines++], HEALTH_LINE_MAX, "%s", line);
}

static void on_exit_cb(void *arg, int status, bool timed_out)
{
    struct seen *s = arg;
    s->status = status;
    s->timed_out = timed_out;
    s->done = true;
}

Test(health_run, proc_output_and_exit_code)
{
    struct seen s = {0};
    struct health_proc_opts o = {.shell_cmd = "echo one; echo two >&2; printf 'no newline'; exit 3",
                                 .capture = true,
                                 .on_line = on_line,
                                 .on_exit = on_exit_cb,
                                 .arg = &s};
    struct health_proc *p = health_proc_spawn(base, &o);
    cr_assert(p, "%s", strerror(errno));
    run_until(&s.done, 5000);
    cr_assert(s.done);
    health_proc_free(p);
    cr_assert(WIFEXITED(s.status) && WEXITSTATUS(s.status) == 3);
    cr_assert_eq(s.nlines, 3);
    cr_assert_str_eq(s.lines[0], "one");
    cr_assert_str_eq(s.lines[1], "two");
    cr_assert_str_eq(s.lines[2], "no newline");
    char how[64];
    health_proc_describe(s.status, false, 0, how, sizeof(how));
    cr_assert_str_eq(how, "exit code 3");
}

Test(health_run, proc_sigpipe_is_default_in_the_child)
{
    /* leaseway ignores SIGPIPE; a child must not inherit that ("yes | head" must end). */
    struct seen s = {0};
    struct health_proc_opts o = {.shell_cmd = "yes | head -n 1 >/dev/null; trap - PIPE; kill -PIPE $$",
                                 .capture = true,
                                 .on_exit = on_exit_cb,
                                 .arg = &s};
    signal(SIGPIPE, SIG_IGN);
    struct health_proc *p = health_proc_spawn(base, &o);
    cr_assert(p);
    run_until(&s.done, 5000);
    health_proc_free(p);
    cr_assert(s.done, "yes | head did not end: SIGPIPE ignored in the child");
    cr_assert(WIFSIGNALED(s.status) && WTERMSIG(s.status) == SIGPIPE);
}

static bool pid_gone(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && rp[2] == 'Z'; /* a zombie waiting for init is gone enough */
}

Test(health_run, hung_command_is_killed_with_its_children)
{
    char pidfile[128], cmd[256];
    snprintf(pidfile, sizeof(pidfile), "%s/grandchild.pid", root);
    snprintf(cmd, sizeof(cmd), "sleep 60 & echo $! > %s; echo started; wait", pidfile);
    struct seen s = {0};
    struct health_proc_opts o = {.shell_cmd = cmd,
                                 .capture = true,
                                 .timeout_ms = 300,
                                 .on_line = on_line,
                                 .on_exit = on_exit_cb,
                                 .arg = &s};
    int64_t t0 = now_ms();
    struct health_proc *p = health_proc_spawn(base, &o);
    cr_assert(p);
    run_until(&s.done, 5000);
    int64_t took = now_ms() - t0;
    health_proc_free(p);
    cr_assert(s.done);
    cr_assert(s.timed_out);
    cr_assert_lt(took, 2000, "took %lld ms", (long long)took);
    cr_assert(WIFSIGNALED(s.status) && WTERMSIG(s.status) == SIGKILL);
    FILE *f = fopen(pidfile, "r");
    cr_assert(f);
    int gc = 0;
    cr_assert_eq(fscanf(f, "%d", &gc), 1);
    fclose(f);
    for (int i = 0; i < 50 && !pid_gone(gc); i++)
        usleep(20 * 1000);
    cr_assert(pid_gone(gc), "the command's own child (pid %d) survived the timeout", gc);
    char how[64];
    health_proc_describe(s.status, true, 30000, how, sizeof(how));
    cr_assert_str_eq(how, "timed out after 30 s (killed)");
}

Test(health_run, spawn_failure_is_reported)
{
    struct seen s = {0};
    char *argv[] = {"/nonexistent/leaseway-test-app", NULL};
    struct health_proc_opts o = {.argv = argv, .on_exit = on_exit_cb, .arg = &s};
    struct health_proc *p = health_proc_spawn(base, &o);
    cr_assert_null(p);
    cr_assert_eq(errno, ENOENT);
}

/* ---- --migrate-command ---------------------------------------------------------------- */

static int changes;
static void changed(void *arg)
{
    (void)arg;
    changes++;
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static struct health *new_health(const char *migrate_command)
{
    struct health_config cfg = {
        .migrations = "none", .migrate_command = migrate_command, .target = "127.0.0.1:1"};
    char err[256];
    struct health *h = health_new(base, &cfg, changed, NULL, NULL, err, sizeof(err));
    cr_assert(h, "%s", err);
    cr_assert_eq(health_start(h), 0);
    return h;
}

static enum route_gate gate(struct health *h, char *reason)
{
    return health_state(h, reason, ROUTE_REASON_MAX);
}

Test(health_run, migrate_once_per_tenure)
{
    char log[128], cmd[512], reason[ROUTE_REASON_MAX];
    snprintf(log, sizeof(log), "%s/runs", root);
    snprintf(cmd, sizeof(cmd), "echo run >> %s", log);
    struct health *h = new_health(cmd);

    /* Unknown role: closed, nothing runs. */
    run_until(NULL, 200);
    cr_assert_eq(count_lines(log), 0);
    cr_assert_eq(gate(h, reason), ROUTE_GATE_CLOSED);
    cr_assert(strstr(reason, "waiting for the lease"), "%s", reason);

    /* A replica never runs it, and its gate does not wait for it. */
    health_set_role(h, ROUTE_ROLE_REPLICA);
    run_until(NULL, 300);
    cr_assert_eq(count_lines(log), 0);
    cr_assert_eq(gate(h, reason), ROUTE_GATE_OPEN, "%s", reason);

    /* Primary: closed until it ran once. */
    health_set_role(h, ROUTE_ROLE_PRIMARY);
    cr_assert_eq(gate(h, reason), ROUTE_GATE_CLOSED);
    cr_assert(health_busy(h));
    for (int i = 0; i < 100 && gate(h, reason) != ROUTE_GATE_OPEN; i++)
        run_until(NULL, 20);
    cr_assert_eq(gate(h, reason), ROUTE_GATE_OPEN, "%s", reason);
    cr_assert_eq(count_lines(log), 1);
    /* Same tenure: role reported again, nothing more. */
    health_set_role(h, ROUTE_ROLE_PRIMARY);
    run_until(NULL, 300);
    cr_assert_eq(count_lines(log), 1);

    /* Lost and re-acquired: a new tenure, one more run. */
    health_set_role(h, ROUTE_ROLE_REPLICA);
    health_set_role(h, ROUTE_ROLE_PRIMARY);
    cr_assert_eq(gate(h, reason), ROUTE_GATE_CLOSED);
    for (int i = 0; i < 100 && gate(h, reason) != ROUTE_GATE_OPEN; i++)
        run_until(NULL, 20);
    cr_assert_eq(count_lines(log), 2);
    health_free(h);
}

Test(health_run, migrate_run_outliving_the_lease_does_not_count)
{
    char log[128], cmd[512], reason[ROUTE_REASON_MAX];
    snprintf(log, sizeof(log), "%s/runs", root);
    snprintf(cmd, sizeof(cmd), "echo start >> %s; sleep 0.4; echo end >> %s", log, log);
    struct health *h = new_health(cmd);
    health_set_role(h, ROUTE_ROLE_PRIMARY);
    run_until(NULL, 100);
    cr_assert(health_busy(h));
    health_set_role(h, ROUTE_ROLE_REPLICA); /* lost while it runs: let it finish */
    run_until(NULL, 100);
    cr_assert(health_busy(h), "the run was killed when the lease was lost");
    health_set_role(h, ROUTE_ROLE_PRIMARY); /* a new tenure while the old run goes on */
    run_until(NULL, 50);
    cr_assert_eq(count_lines(log), 1, "two runs at once");
    cr_assert_eq(gate(h, reason), ROUTE_GATE_CLOSED);
    /* The old run ends; it does not open the new tenure's gate: a second run does. */
    for (int i = 0; i < 150 && count_lines(log) < 4; i++)
        run_until(NULL, 20);
    cr_assert_eq(count_lines(log), 4, "want start,end of the old run and of a new one");
    for (int i = 0; i < 50 && gate(h, reason) != ROUTE_GATE_OPEN; i++)
        run_until(NULL, 20);
    cr_assert_eq(gate(h, reason), ROUTE_GATE_OPEN, "%s", reason);
    health_free(h);
}

Test(health_run, migrate_failure_retried_with_backoff)
{
    char log[128], cmd[512], reason[ROUTE_REASON_MAX];
    snprintf(log, sizeof(log), "%s/runs", root);
    /* Fails twice, then succeeds. */
    snprintf(cmd, sizeof(cmd), "echo try >> %s; echo 'boom: table locked'; test $(wc -l < %s) -ge 3", log,
             log);
    struct health *h = new_health(cmd);
    int64_t t0 = now_ms();
    health_set_role(h, ROUTE_ROLE_PRIMARY);
    run_until(NULL, 300);
    cr_assert_eq(count_lines(log), 1);
    cr_assert_eq(gate(h, reason), ROUTE_GATE_CLOSED);
    cr_assert(strstr(reason, "failed (exit code 1: boom: table locked), retry in 1 s"), "%s", reason);
    for (int i = 0; i < 300 && gate(h, reason) != ROUTE_GATE_OPEN; i++)
        run_until(NULL, 20);
    int64_t took = now_ms() - t0;
    cr_assert_eq(gate(h, reason), ROUTE_GATE_OPEN, "%s", reason);
    cr_assert_eq(count_lines(log), 3);
    /* 1 s then 2 s of backoff. */
    cr_assert(took >= 2900 && took < 5000, "took %lld ms", (long long)took);
    health_free(h);
}

Test(health_run, drain_stops_retries)
{
    char reason[ROUTE_REASON_MAX];
    struct health *h = new_health("exit 1");
    health_set_role(h, ROUTE_ROLE_PRIMARY);
    run_until(NULL, 200);
    cr_assert_not(health_busy(h));
    health_drain(h);
    cr_assert_eq(gate(h, reason), ROUTE_GATE_DRAINING);
    run_until(NULL, 1300);
    cr_assert_not(health_busy(h), "retried while draining");
    health_free(h);
}
