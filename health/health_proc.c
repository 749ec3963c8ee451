/*
 * Child processes on the control thread's event loop: the --migrations
 * command probe, --migrate-command and the supervised app.
 *
 * posix_spawn (vfork semantics: no copy of a large, threaded process) puts
 * the child in its own process group, with default signal dispositions
 * (leaseway ignores SIGPIPE; a shell must not inherit that) and with every
 * descriptor above stderr closed (the listeners must not outlive leaseway in
 * a child). Exit is seen through a pidfd, so no SIGCHLD handler competes with
 * anyone; output is read from a non-blocking pipe and handed over line by line.
 *
 * posix_spawn cannot set PR_SET_PDEATHSIG, so under `leaseway run` the child is
 * leaseway itself (`leaseway __child`, health_proc_shim_main), which sets it and
 * execs the command: the command gets SIGTERM if leaseway dies without stopping
 * it (SIGKILL, a crash). The command is looked up on PATH here, before the
 * spawn, so a missing one is still an error at once rather than an exit 127.
 */
#include "health/health-int.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define POLL_EXIT_MS 100 /* without pidfd (old kernels, seccomp): look every 100 ms */

static char *shim; /* leaseway's own path, or NULL: spawn children directly */

void health_proc_use_shim(const char *leaseway_path)
{
    free(shim);
    shim = leaseway_path ? strdup(leaseway_path) : NULL;
}

int health_proc_shim_main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "leaseway __child: internal command, run by leaseway itself\n");
        return 2;
    }
    /* SIGTERM when the thread that spawned us ends; if that already happened, do not start */
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) == 0 && getppid() != (pid_t)strtol(argv[2], NULL, 10))
        return 128 + SIGTERM;
    /* argv[3] holds a '/', so no PATH search: execvp only adds /bin/sh for a script without #! */
    execvp(argv[3], argv + 4);
    int e = errno;
    fprintf(stderr, "leaseway: cannot run %s: %s\n", argv[3], strerror(e));
    return e == ENOENT ? 127 : 126;
}

static bool runnable(const char *path, int *err)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        *err = errno;
        return false;
    }
    if (!S_ISREG(st.st_mode) || access(path, X_OK) < 0) {
        *err = EACCES;
        return false;
    }
    return true;
}

/* What execvp(3) would run for name: a malloc'd path, or NULL with errno (ENOENT, EACCES). */
static char *find_on_path(const char *name)
{
    int err = ENOENT;
    if (!*name) {
        errno = ENOENT;
        return NULL;
    }
    if (strchr(name, '/')) {
        if (runnable(name, &err))
            return strdup(name);
        errno = err;
        return NULL;
    }
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/bin:/usr/bin";
    bool denied = false;
    for (const char *p = path;; p++) {
        const char *end = strchrnul(p, ':');
        size_t dlen = (size_t)(end - p);
        char *cand = malloc(dlen + strlen(name) + 3);
        if (!cand)
            return NULL;
        if (dlen)
            memcpy(cand, p, dlen);
        else
            cand[dlen++] = '.'; /* an empty PATH entry is the current directory */
        cand[dlen] = '/';
        strcpy(cand + dlen + 1, name);
        if (runnable(cand, &err))
            return cand;
        if (err == EACCES)
            denied = true;
        free(cand);
        if (!*end)
            break;
        p = end;
    }
    errno = denied ? EACCES : ENOENT;
    return NULL;
}

/*
 * posix_spawn through the shim: argv becomes {leaseway, __child, <our pid>, path, argv...}.
 * Returns posix_spawn's error; ENOENT/EACCES for the shim itself (a binary replaced on
 * disk, no /proc) falls back to a direct spawn.
 */
static int spawn(pid_t *pid, const char *path, char *const argv[], const posix_spawn_file_actions_t *fa,
                 const posix_spawnattr_t *at)
{
    if (shim) {
        size_t n = 0;
        while (argv[n])
            n++;
        char **sargv = calloc(n + 5, sizeof(*sargv));
        if (!sargv)
            return ENOMEM;
        char ppid[24];
        snprintf(ppid, sizeof(ppid), "%d", (int)getpid());
        sargv[0] = "leaseway";
        sargv[1] = "__child";
        sargv[2] = ppid;
        sargv[3] = (char *)path;
        for (size_t i = 0; i < n; i++)
            sargv[4 + i] = argv[i];
        int rc = posix_spawn(pid, shim, fa, at, sargv, environ);
        free(sargv);
        if (rc != ENOENT && rc != EACCES)
            return rc;
    }
    return posix_spawn(pid, path, fa, at, argv, environ);
}

static void flush_line(struct health_proc *p)
{
    if (!p->line_len)
        return;
    p->line[p->line_len] = '\0';
    if (p->line_len && p->line[p->line_len - 1] == '\r')
        p->line[p->line_len - 1] = '\0';
    p->line_len = 0;
    if (p->o.on_line)
        p->o.on_line(p->o.arg, p->line);
}

/*
 * Read what the pipe holds now, at most HEALTH_PROC_READ_MAX bytes a call, so that a command
 * that prints without pause cannot keep the control thread from its other events (the alive
 * check, the admin listener, signals): the level-triggered event calls again on the next pass.
 * Lines go to on_line. Returns false at EOF or error.
 */
#define HEALTH_PROC_READ_MAX (64 * 1024)

static bool read_output(struct health_proc *p)
{
    char buf[4096];
    for (size_t total = 0; total < HEALTH_PROC_READ_MAX;) {
        ssize_t n = read(p->out_fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN;
        if (n == 0)
            return false;
        total += (size_t)n;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n') {
                flush_line(p);
                continue;
            }
            p->line[p->line_len++] = buf[i];
            if (p->line_len == sizeof(p->line) - 1)
                flush_line(p);
        }
    }
    return true;
}

static void close_output(struct health_proc *p)
{
    if (p->out_ev) {
        event_free(p->out_ev);
        p->out_ev = NULL;
    }
    if (p->out_fd >= 0) {
        flush_line(p);
        close(p->out_fd);
        p->out_fd = -1;
    }
}

static void on_output(evutil_socket_t fd, short what, void *arg)
{
    struct health_proc *p = arg;
    (void)fd;
    (void)what;
    if (!read_output(p))
        close_output(p);
}

/* Reaped: report. Nothing of p is touched after the callback (it may free p). */
static void exited(struct health_proc *p, int status)
{
    /* Output still in the pipe belongs to this run; a grandchild keeping the pipe open must
     * not keep the run alive, so take what is there and stop listening. */
    if (p->out_fd >= 0)
        (void)read_output(p);
    close_output(p);
    if (p->timeout_ev)
        event_del(p->timeout_ev);
    if (p->exit_ev)
        event_del(p->exit_ev);
    p->pid = -1;
    if (p->o.on_exit)
        p->o.on_exit(p->o.arg, status, p->timed_out);
}

static void on_exit_ready(evutil_socket_t fd, short what, void *arg)
{
    struct health_proc *p = arg;
    (void)fd;
    (void)what;
    int status = 0;
    pid_t r = waitpid(p->pid, &status, WNOHANG);
    if (r == p->pid)
        exited(p, status);
    else if (r < 0 && errno == ECHILD)
        exited(p, 255 << 8); /* reaped by someone else: its code is lost, and unknown is not success */
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct health_proc *p = arg;
    (void)fd;
    (void)what;
    if (p->pid <= 0)
        return;
    p->timed_out = true;
    kill(-p->pid, SIGKILL);
    kill(p->pid, SIGKILL); /* in case it left its group */
}

static int setup_spawn(posix_spawn_file_actions_t *fa, posix_spawnattr_t *at,
                       const struct health_proc_opts *o, int out_w)
{
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    if (posix_spawnattr_setflags(at,
                                 POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK) ||
        posix_spawnattr_setpgroup(at, 0) || posix_spawnattr_setsigdefault(at, &all) ||
        posix_spawnattr_setsigmask(at, &none))
        return -1;
    if (o->capture) {
        if (posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0) ||
            posix_spawn_file_actions_adddup2(fa, out_w, 1) || posix_spawn_file_actions_adddup2(fa, out_w, 2))
            return -1;
    }
    return posix_spawn_file_actions_addclosefrom_np(fa, 3) ? -1 : 0;
}

struct health_proc *health_proc_spawn(struct event_base *base, const struct health_proc_opts *o)
{
    int pipefd[2] = {-1, -1};
    struct health_proc *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->base = base;
    p->o = *o;
    p->pid = -1;
    p->pidfd = -1;
    p->out_fd = -1;
    if (o->capture && pipe2(pipefd, O_CLOEXEC) < 0)
        goto fail;

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    if (posix_spawn_file_actions_init(&fa))
        goto fail;
    if (posix_spawnattr_init(&at)) {
        posix_spawn_file_actions_destroy(&fa);
        goto fail;
    }
    int rc = setup_spawn(&fa, &at, o, pipefd[1]) < 0 ? ENOMEM : 0;
    if (!rc && o->shell_cmd) {
        char *sh_argv[] = {"sh", "-c", (char *)o->shell_cmd, NULL};
        rc = spawn(&p->pid, "/bin/sh", sh_argv, &fa, &at);
    } else if (!rc) {
        char *path = find_on_path(o->argv[0]);
        rc = path ? spawn(&p->pid, path, o->argv, &fa, &at) : errno;
        free(path);
    }
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc) {
        p->pid = -1;
        errno = rc;
        goto fail;
    }
    if (pipefd[1] >= 0) {
        close(pipefd[1]);
        pipefd[1] = -1;
        p->out_fd = pipefd[0];
        pipefd[0] = -1;
        if (fcntl(p->out_fd, F_SETFL, O_NONBLOCK) < 0)
            goto fail;
        p->out_ev = event_new(base, p->out_fd, EV_READ | EV_PERSIST, on_output, p);
        if (!p->out_ev || event_add(p->out_ev, NULL) < 0)
            goto fail;
    }
    p->pidfd = pidfd_open(p->pid, 0);
    if (p->pidfd >= 0) {
        fcntl(p->pidfd, F_SETFD, FD_CLOEXEC);
        p->exit_ev = event_new(base, p->pidfd, EV_READ | EV_PERSIST, on_exit_ready, p);
        if (!p->exit_ev || event_add(p->exit_ev, NULL) < 0)
            goto fail;
    } else {
        struct timeval tv = {0, POLL_EXIT_MS * 1000};
        p->exit_ev = event_new(base, -1, EV_PERSIST, on_exit_ready, p);
        if (!p->exit_ev || event_add(p->exit_ev, &tv) < 0)
            goto fail;
    }
    if (o->timeout_ms > 0) {
        struct timeval tv = {o->timeout_ms / 1000, (o->timeout_ms % 1000) * 1000};
        p->timeout_ev = evtimer_new(base, on_timeout, p);
        if (!p->timeout_ev || evtimer_add(p->timeout_ev, &tv) < 0)
            goto fail;
    }
    return p;

fail:;
    int saved = errno;
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    health_proc_free(p);
    errno = saved;
    return NULL;
}

void health_proc_signal(struct health_proc *p, int sig)
{
    if (p && p->pid > 0)
        kill(p->pid, sig);
}

void health_proc_free(struct health_proc *p)
{
    if (!p)
        return;
    if (p->pid > 0) {
        kill(-p->pid, SIGKILL);
        kill(p->pid, SIGKILL);
        while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    if (p->out_ev)
        event_free(p->out_ev);
    if (p->out_fd >= 0)
        close(p->out_fd);
    if (p->exit_ev)
        event_free(p->exit_ev);
    if (p->timeout_ev)
        event_free(p->timeout_ev);
    if (p->pidfd >= 0)
        close(p->pidfd);
    free(p);
}

void health_proc_describe(int status, bool timed_out, int64_t timeout_ms, char *buf, size_t size)
{
    if (timed_out)
        snprintf(buf, size, "timed out after %lld s (killed)", (long long)(timeout_ms / 1000));
    else if (WIFEXITED(status))
        snprintf(buf, size, "exit code %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, size, "killed by SIG%s",
                 sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
    else
        snprintf(buf, size, "status %d", status);
}
