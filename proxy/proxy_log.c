/*
 * Log lines are built in a stack buffer and written with one write(2), so
 * lines from different threads never interleave.
 */
#include "proxy/proxy_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;
static bool json;

static const char *const level_names[LOG_LEVEL_COUNT] = {"debug", "info", "warn", "error"};

void proxy_log_setup(const char *format, const char *level)
{
    json = format && strcmp(format, "json") == 0;
    for (int i = 0; i < LOG_LEVEL_COUNT; i++)
        if (level && strcmp(level, level_names[i]) == 0)
            min_level = (enum log_level)i;
}

bool proxy_log_enabled(enum log_level level)
{
    return level >= min_level;
}

/* Append s to buf as a JSON string body (no quotes). */
static size_t json_escape(char *buf, size_t size, size_t n, const char *s, size_t len)
{
    for (size_t i = 0; i < len && n + 7 < size; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)ch;
        } else if (ch < 0x20) {
            n += (size_t)snprintf(buf + n, size - n, "\\u%04x", ch);
        } else {
            buf[n++] = (char)ch;
        }
    }
    return n;
}

/* logfmt pairs -> JSON members: k=v, k="quoted v" */
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
        if (*p == '"') {
            v = ++p;
            while (*p && !(*p == '"' && p[-1] != '\\'))
                p++;
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
        n += (size_t)snprintf(buf + n, size - n, "\":\"");
        n = json_escape(buf, size, n, v, vlen);
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
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    size_t tn = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tn, sizeof(ts) - tn, ".%03ldZ", now.tv_nsec / 1000000);
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
