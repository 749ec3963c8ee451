/*
 * Logging: one line per event on stderr, logfmt (`time=… level=… msg="…" k=v`)
 * or JSON lines with --log-format json. Callers pass logfmt pairs; the JSON
 * form is derived from them, so every call site serves both formats.
 *
 * Secrets: no call site passes a token or a secret, and as a second line of
 * defence every line has URL credentials (`scheme://user:pass@`) replaced by
 * `scheme://<redacted>@` before it is written.
 *
 * The access log (--access-log) is separate: one line per finished request,
 * written by the workers with one write(2) each, in the same format.
 */
#ifndef LEASEWAY_PROXY_LOG_H
#define LEASEWAY_PROXY_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_LEVEL_COUNT };

/* Also routes consul/'s log lines through proxy_log() (component=consul). */
void proxy_log_setup(const char *format, const char *level);
bool proxy_log_enabled(enum log_level level);
/* kv_fmt: printf format producing logfmt pairs, e.g. "role=%s index=%llu" (may be ""). */
void proxy_log(enum log_level level, const char *msg, const char *kv_fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define proxy_log_debug(msg, ...)                                                                            \
    do {                                                                                                     \
        if (proxy_log_enabled(LOG_DEBUG))                                                                    \
            proxy_log(LOG_DEBUG, msg, __VA_ARGS__);                                                          \
    } while (0)
#define proxy_log_info(msg, ...)  proxy_log(LOG_INFO, msg, __VA_ARGS__)
#define proxy_log_warn(msg, ...)  proxy_log(LOG_WARN, msg, __VA_ARGS__)
#define proxy_log_error(msg, ...) proxy_log(LOG_ERROR, msg, __VA_ARGS__)

/*
 * s made safe for a quoted logfmt value, `k="%s"`: `"` and `\` escaped as `\"` and `\\`, control
 * bytes (newline, ESC...) as \xHH, UTF-8 kept; cut at a whole escape if buf is too small. Returns
 * buf. Use it for every quoted value that does not come from leaseway itself (command output,
 * commands, IDs and reasons from elsewhere); the JSON form turns the escapes back.
 */
#define PROXY_LOG_QUOTE_MAX 2048 /* room for any value a log line can hold */
const char *proxy_log_quote(char *buf, size_t size, const char *s);

/* Replace the credentials of every `scheme://user:pass@host` in buf (NUL-terminated, in place). */
void proxy_log_scrub(char *buf);

/* ---- access log ---- */

/*
 * --access-log: "off" (default), "stderr", "stdout" or a file path (opened
 * O_APPEND, created 0640; rotate with copytruncate). Call once on the control
 * thread after proxy_log_setup() and before the workers start. Returns 0, or
 * -1 after printing "leaseway: --access-log PATH: <why>" to stderr.
 */
__attribute__((warn_unused_result)) int proxy_log_access_open(const char *where);
/*
 * --check: whether proxy_log_access_open(where) would succeed (the file writable, or its directory
 * when it does not exist yet), without creating or opening anything. Returns 0, or -1 after
 * printing the line proxy_log_access_open() would print.
 */
__attribute__((warn_unused_result)) int proxy_log_access_check(const char *where);
void proxy_log_access_close(void);

/* True when an access log is open: check it before filling a struct proxy_access. */
bool proxy_log_access_enabled(void);

/* One finished request. Strings are borrowed for the duration of the call. */
struct proxy_access {
    const char *client_ip; /* NUL-terminated; "" if unknown */
    const char *method;    /* NUL-terminated, e.g. llhttp_method_name(llhttp_get_method(&parser)) */
    const char *target;    /* request-target bytes (not NUL-terminated), or NULL if not read */
    size_t target_len;
    int status;           /* status sent to the client (0: none, the connection was closed) */
    const char *route;    /* route_action_str(): local, primary, replay, held, passthrough, ... */
    const char *upstream; /* "app", the primary's instance ID, or NULL when leaseway answered */
    int64_t duration_ns;  /* first byte of the request to the end of the response */
    bool from_peer;       /* forwarded to us by another leaseway */
};

/*
 * Write one access-log line (no-op when none is open). The query string is
 * dropped (it may carry tokens: OAuth codes, signed URLs); only `query=1` says
 * there was one. Thread-safe: any worker may call it.
 */
void proxy_log_access(const struct proxy_access *a);

#endif
