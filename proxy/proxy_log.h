/*
 * Logging: one line per event on stderr, logfmt (`time=… level=… msg="…" k=v`)
 * or JSON lines with --log-format json. Callers pass logfmt pairs; the JSON
 * form is derived from them, so every call site serves both formats.
 */
#ifndef LEASEWAY_PROXY_LOG_H
#define LEASEWAY_PROXY_LOG_H

#include <stdbool.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_LEVEL_COUNT };

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

#endif
