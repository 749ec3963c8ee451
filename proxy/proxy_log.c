/*
 * Log lines are built in a stack buffer and written with one write(2), so
 * lines from different threads never interleave. The same holds for the
 * access log, which the workers write directly (no queue, no lock).
 */
#include "proxy/proxy_log.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "consul/consul.h"

static enum log_level min_level = LOG_INFO;
static bool json;
static int access_fd = -1;     /* set before the workers start, never changed while they run */
static bool access_owned;      /* access_fd is a file we opened */
#define ACCESS_TARGET_MAX 1024 /* longer request-targets are cut (with "...") in the access log */

static const char *const level_names[LOG_LEVEL_COUNT] = {"debug", "info", "warn", "error"};

/* Does p start a logfmt pair (`key=`)? */
static bool at_pair(const char *p)
{
    const char *k = p;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_')
        p++;
    return p > k && *p == '=';
}

/*
 * consul/ lines are `msg="..." k=v ...`: split off the message and keep the pairs. Free text
 * between the message and the first pair (`msg="release done" (standbys take over now)`) joins
 * the message, so that the JSON form loses nothing.
 */
static void consul_sink(const char *level, const char *line)
{
    enum log_level lv = LOG_INFO;
    for (int i = 0; i < LOG_LEVEL_COUNT; i++)
        if (strcmp(level, level_names[i]) == 0)
            lv = (enum log_level)i;
    if (!proxy_log_enabled(lv))
        return;
    char msg[384];
    const char *end;
    if (strncmp(line, "msg=\"", 5) != 0 || !(end = strchr(line + 5, '"'))) {
        proxy_log(lv, "consul", "component=consul %s", line);
        return;
    }
    size_t n = (size_t)snprintf(msg, sizeof(msg), "%.*s", (int)(end - line - 5), line + 5);
    const char *rest = end + 1;
    while (*rest == ' ')
        rest++;
    const char *pairs = rest;
    while (*pairs && !(at_pair(pairs) && (pairs == rest || pairs[-1] == ' ')))
        pairs++;
    if (pairs > rest && n < sizeof(msg))
        snprintf(msg + n, sizeof(msg) - n, " %.*s", (int)(pairs - rest), rest);
    n = strlen(msg);
    while (n > 0 && msg[n - 1] == ' ')
        msg[--n] = '\0';
    proxy_log(lv, msg, "component=consul%s%s", *pairs ? " " : "", pairs);
}

void proxy_log_setup(const char *format, const char *level)
{
    json = format && strcmp(format, "json") == 0;
    for (int i = 0; i < LOG_LEVEL_COUNT; i++)
        if (level && strcmp(level, level_names[i]) == 0)
            min_level = (enum log_level)i;
    consul_log_set_sink(consul_sink);
}

bool proxy_log_enabled(enum log_level level)
{
    return level >= min_level;
}

void proxy_log_scrub(char *buf)
{
    for (char *p = strstr(buf, "://"); p; p = strstr(p, "://")) {
        char *user = p + 3, *q = user;
        while (*q && *q != '@' && *q != '/' && *q != ' ' && *q != '"' && *q != '?' && *q != '#')
            q++;
        if (*q != '@' || q == user) {
            p = user;
            continue;
        }
        static const char red[] = "<redacted>";
        size_t have = (size_t)(q - user), want = sizeof(red) - 1;
        if (have < want) {
            /* never grow the line: keep as much of "<redacted>" as fits, hiding all of it */
            memset(user, '*', have);
        } else {
            memcpy(user, red, want);
            memmove(user + want, q, strlen(q) + 1);
        }
        p = user;
    }
}

/* "2024-05-01T12:00:00.123Z" */
static void timestamp(char *ts, size_t size)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    size_t tn = strftime(ts, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tn, size - tn, ".%03ldZ", now.tv_nsec / 1000000);
}

/*
 * Append s to buf as a JSON string body (no quotes). ascii: also escape bytes >= 0x80, for input
 * that is not known to be UTF-8 (request-targets), so that the line stays valid JSON.
 */
static size_t json_escape_bytes(char *buf, size_t size, size_t n, const char *s, size_t len, bool ascii)
{
    for (size_t i = 0; i < len && n + 7 < size; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f || (ascii && ch >= 0x80)) {
            n += (size_t)snprintf(buf + n, size - n, "\\u%04x", ch);
        } else {
            buf[n++] = (char)ch;
        }
    }
    return n;
}

static size_t json_escape(char *buf, size_t size, size_t n, const char *s, size_t len)
{
    return json_escape_bytes(buf, size, n, s, len, false);
}

/*
 * Append s to buf as the body of a quoted logfmt value (no quotes): `"` and `\` escaped as `\"`
 * and `\\`, control bytes as \xHH. ascii: also bytes >= 0x80 (request-targets, not known to be
 * UTF-8). An escape is never cut in two when buf is full.
 */
static size_t logfmt_escape_bytes(char *buf, size_t size, size_t n, const char *s, size_t len, bool ascii)
{
    for (size_t i = 0; i < len && n + 5 < size; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f || (ascii && ch >= 0x80)) {
            n += (size_t)snprintf(buf + n, size - n, "\\x%02x", ch);
        } else {
            buf[n++] = (char)ch;
        }
    }
    return n;
}

static size_t logfmt_escape(char *buf, size_t size, size_t n, const char *s, size_t len)
{
    return logfmt_escape_bytes(buf, size, n, s, len, true);
}

const char *proxy_log_quote(char *buf, size_t size, const char *s)
{
    if (size == 0)
        return "";
    size_t n = logfmt_escape_bytes(buf, size, 0, s, strlen(s), false);
    buf[n < size ? n : size - 1] = '\0';
    return buf;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Append the body of a quoted logfmt value to buf as a JSON string body: the escapes of
 * logfmt_escape_bytes() (\", \\, \xHH) become the bytes they stand for, then JSON-escaped.
 * Any other backslash is a byte like the others.
 */
static size_t json_from_logfmt(char *buf, size_t size, size_t n, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '\\' && i + 1 < len && (s[i + 1] == '"' || s[i + 1] == '\\')) {
            ch = s[++i];
        } else if (ch == '\\' && i + 3 < len && s[i + 1] == 'x' && hex_digit(s[i + 2]) >= 0 &&
                   hex_digit(s[i + 3]) >= 0) {
            ch = (char)(hex_digit(s[i + 2]) * 16 + hex_digit(s[i + 3]));
            i += 3;
        }
        n = json_escape(buf, size, n, &ch, 1);
    }
    return n;
}

/* Fields that are counts or durations: an unquoted value of theirs that is a JSON number is written
 * as one. Named, not guessed from the value, so that a field's JSON type is the same on every line
 * (an instance ID of digits stays a string). */
static bool numeric_key(const char *k, size_t len)
{
    static const char *const suffix[] = {"_ms", "_per_s", "_code", "_sent"};
    static const char *const name[] = {"fd",      "pid",  "status", "index", "lines", "worker",
                                       "workers", "step", "tenure", "was",   "now",   "migrate_running",
                                       "oks",     "fails"};
    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        size_t sl = strlen(suffix[i]);
        if (len > sl && !memcmp(k + len - sl, suffix[i], sl))
            return true;
    }
    for (size_t i = 0; i < sizeof(name) / sizeof(name[0]); i++)
        if (strlen(name[i]) == len && !memcmp(k, name[i], len))
            return true;
    return false;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)? : what JSON accepts as a number, without exponents */
static bool json_number(const char *v, size_t len)
{
    size_t i = 0;
    if (i < len && v[i] == '-')
        i++;
    if (i >= len || v[i] < '0' || v[i] > '9' ||
        (v[i] == '0' && i + 1 < len && v[i + 1] >= '0' && v[i + 1] <= '9'))
        return false;
    while (i < len && v[i] >= '0' && v[i] <= '9')
        i++;
    if (i < len && v[i] == '.') {
        size_t d = ++i;
        while (i < len && v[i] >= '0' && v[i] <= '9')
            i++;
        if (i == d)
            return false;
    }
    return i == len;
}

/* logfmt pairs -> JSON members: k=v, k="quoted v"; numbers bare for the numeric_key() fields */
static size_t kv_to_json(char *buf, size_t size, size_t n, const char *kv)
{
    const char *p = kv;
    while (*p && n + 16 < size) {
        while (*p == ' ')
            p++;
        const char *k = p;
        while (*p && *p != '=' && *p != ' ')
            p++;
        if (*p != '=')
            break;
        size_t klen = (size_t)(p - k);
        p++;
        const char *v;
        size_t vlen;
        bool quoted = *p == '"';
        if (quoted) {
            v = ++p;
            while (*p && *p != '"')
                p += *p == '\\' && p[1] ? 2 : 1; /* \" and \\ do not end the value */
            vlen = (size_t)(p - v);
            if (*p)
                p++;
        } else {
            v = p;
            while (*p && *p != ' ')
                p++;
            vlen = (size_t)(p - v);
        }
        buf[n++] = ',';
        buf[n++] = '"';
        n = json_escape(buf, size, n, k, klen);
        if (!quoted && n + vlen + 3 < size && numeric_key(k, klen) && json_number(v, vlen)) {
            n += (size_t)snprintf(buf + n, size - n, "\":%.*s", (int)vlen, v);
            continue;
        }
        n += (size_t)snprintf(buf + n, size - n, "\":\"");
        n = quoted ? json_from_logfmt(buf, size, n, v, vlen) : json_escape(buf, size, n, v, vlen);
        if (n + 1 < size)
            buf[n++] = '"';
    }
    return n;
}

void proxy_log(enum log_level level, const char *msg, const char *kv_fmt, ...)
{
    if (level < min_level)
        return;
    char kv[2048], line[4096], ts[40];
    va_list ap;
    va_start(ap, kv_fmt);
    vsnprintf(kv, sizeof(kv), kv_fmt, ap);
    va_end(ap);
    proxy_log_scrub(kv);
    timestamp(ts, sizeof(ts));
    size_t n;
    if (json) {
        n = (size_t)snprintf(line, sizeof(line), "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
                             level_names[level]);
        n = json_escape(line, sizeof(line), n, msg, strlen(msg));
        line[n++] = '"';
        n = kv_to_json(line, sizeof(line) - 4, n, kv);
        n += (size_t)snprintf(line + n, sizeof(line) - n, "}\n");
    } else {
        n = (size_t)snprintf(line, sizeof(line), "time=%s level=%s msg=\"%s\"%s%s\n", ts, level_names[level],
                             msg, kv[0] ? " " : "", kv);
    }
    if (n > sizeof(line))
        n = sizeof(line);
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

/* ---- access log ---- */

int proxy_log_access_open(const char *where)
{
    proxy_log_access_close();
    if (!where || !*where || !strcmp(where, "off"))
        return 0;
    if (!strcmp(where, "stderr") || !strcmp(where, "-")) {
        access_fd = STDERR_FILENO;
        return 0;
    }
    if (!strcmp(where, "stdout")) {
        access_fd = STDOUT_FILENO;
        return 0;
    }
    int fd = open(where, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        fprintf(stderr, "leaseway: --access-log %s: %s\n", where, strerror(errno));
        return -1;
    }
    access_fd = fd;
    access_owned = true;
    return 0;
}

/*
 * Why open(path, O_WRONLY | O_APPEND | O_CREAT) would fail, as an errno, found without creating
 * the file (a FIFO is not opened either: that could block or make its reader see an EOF); 0 if it
 * would succeed.
 */
static int append_errno(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return EISDIR;
        return access(path, W_OK) == 0 ? 0 : errno;
    }
    if (errno != ENOENT)
        return errno;
    char *copy = strdup(path);
    if (!copy)
        return ENOMEM;
    int e = access(dirname(copy), W_OK | X_OK) == 0 ? 0 : errno;
    free(copy);
    return e;
}

int proxy_log_access_check(const char *where)
{
    if (!where || !*where || !strcmp(where, "off") || !strcmp(where, "stderr") || !strcmp(where, "-") ||
        !strcmp(where, "stdout"))
        return 0;
    int e = append_errno(where);
    if (e) {
        fprintf(stderr, "leaseway: --access-log %s: %s\n", where, strerror(e));
        return -1;
    }
    return 0;
}

void proxy_log_access_close(void)
{
    if (access_owned && access_fd >= 0)
        close(access_fd);
    access_fd = -1;
    access_owned = false;
}

bool proxy_log_access_enabled(void)
{
    return access_fd >= 0;
}

void proxy_log_access(const struct proxy_access *a)
{
    if (access_fd < 0)
        return;
    char line[ACCESS_TARGET_MAX * 4 + 1024], ts[40], path[ACCESS_TARGET_MAX + 4];
    size_t plen = 0;
    bool query = false;
    if (a->target) {
        size_t len = a->target_len;
        const char *q = memchr(a->target, '?', len);
        if (q) {
            len = (size_t)(q - a->target);
            query = true;
        }
        bool cut = len > ACCESS_TARGET_MAX;
        plen = cut ? ACCESS_TARGET_MAX : len;
        memcpy(path, a->target, plen);
        if (cut) {
            memcpy(path + plen, "...", 3);
            plen += 3;
        }
        path[plen] = '\0';
        /* an absolute-form target may carry credentials */
        proxy_log_scrub(path);
        plen = strlen(path);
    }
    timestamp(ts, sizeof(ts));
    const char *method = a->method && *a->method ? a->method : "-";
    const char *route = a->route && *a->route ? a->route : "-";
    const char *client = a->client_ip ? a->client_ip : "";
    double ms = (double)a->duration_ns / 1e6;
    size_t n;
    if (json) {
        n = (size_t)snprintf(line, sizeof(line),
                             "{\"time\":\"%s\",\"level\":\"info\",\"msg\":\"request\",\"log\":\"access\","
                             "\"client\":\"",
                             ts);
        n = json_escape(line, sizeof(line), n, client, strlen(client));
        n += (size_t)snprintf(line + n, sizeof(line) - n, "\",\"method\":\"");
        n = json_escape(line, sizeof(line), n, method, strlen(method));
        n += (size_t)snprintf(line + n, sizeof(line) - n, "\",\"path\":\"");
        n = json_escape_bytes(line, sizeof(line), n, path, plen, true);
        n += (size_t)snprintf(line + n, sizeof(line) - n,
                              "\",\"query\":%s,\"status\":%d,\"route\":\"%s\",\"upstream\":",
                              query ? "true" : "false", a->status, route);
        if (a->upstream) {
            line[n++] = '"';
            n = json_escape(line, sizeof(line), n, a->upstream, strlen(a->upstream));
            line[n++] = '"';
        } else {
            n += (size_t)snprintf(line + n, sizeof(line) - n, "null");
        }
        n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"duration_ms\":%.3f,\"from_peer\":%s}\n", ms,
                              a->from_peer ? "true" : "false");
    } else {
        n = (size_t)snprintf(line, sizeof(line), "time=%s level=info msg=\"request\" log=access client=\"",
                             ts);
        n = logfmt_escape(line, sizeof(line), n, client, strlen(client));
        n += (size_t)snprintf(line + n, sizeof(line) - n, "\" method=\"");
        n = logfmt_escape(line, sizeof(line), n, method, strlen(method));
        n += (size_t)snprintf(line + n, sizeof(line) - n, "\" path=\"");
        n = logfmt_escape(line, sizeof(line), n, path, plen);
        n += (size_t)snprintf(line + n, sizeof(line) - n, "\"%s status=%d route=%s upstream=\"",
                              query ? " query=1" : "", a->status, route);
        if (a->upstream)
            n = logfmt_escape(line, sizeof(line), n, a->upstream, strlen(a->upstream));
        n += (size_t)snprintf(line + n, sizeof(line) - n, "\" duration_ms=%.3f%s\n", ms,
                              a->from_peer ? " from_peer=1" : "");
    }
    if (n > sizeof(line))
        n = sizeof(line);
    ssize_t w = write(access_fd, line, n);
    (void)w;
}
