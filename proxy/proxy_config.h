/*
 * leaseway's settings (SPEC §1): one table drives flags, LEASEWAY_* environment
 * variables, YAML keys and --help, so the four cannot drift apart.
 */
#ifndef LEASEWAY_PROXY_CONFIG_H
#define LEASEWAY_PROXY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct strlist {
    char **v;
    size_t n;
};

enum config_source { SRC_DEFAULT = 0, SRC_FILE, SRC_ENV, SRC_FLAG };

struct proxy_config {
    char *config_file;
    char *listen;
    char *target;
    char *admin;
    char *instance;
    char *region;
    char *advertise;
    int64_t workers;
    char *lease;
    char *lease_key;
    bool candidate;
    int64_t lease_ttl_ms;
    int64_t lock_delay_ms;
    char *static_primary;
    char *peer_url_template;
    char *consul_addr;
    char *service;
    bool register_service;
    char *writes;
    struct strlist passthrough;
    struct strlist always_primary;
    int64_t hold_timeout_ms;
    int64_t consistency_window_ms;
    struct strlist litefs_db;
    int64_t txid_wait_ms;
    char *peer_secret_file;
    char *migrations;
    char *migrate_command;
    char *upstream_health;
    int64_t drain_timeout_ms;
    char *log_format;
    char *log_level;
    char *access_log; /* off, stderr, stdout or a file path */
    int64_t header_timeout_ms;
    int64_t idle_timeout_ms;
    int64_t connect_timeout_ms;
    int64_t upstream_timeout_ms;
    int64_t max_connections;
    bool io_uring; /* batch each loop pass's sends in one io_uring_enter(2) where the kernel allows */
    bool check;    /* --check: validate, print, exit */

    /* where each option's value came from, indexed like the option table */
    enum config_source source[64];
    /* set by proxy_config_load(): args after "--" (the supervised app) */
    char **app_argv;
    int app_argc;
};

/*
 * Fill *cfg from defaults, the YAML file (--config / LEASEWAY_CONFIG), the
 * environment and argv (after the "run" word), in rising precedence.
 * Returns 0, or -1 after printing "leaseway: <what is wrong>" to stderr.
 * On either return the caller owns *cfg and frees it with proxy_config_free().
 */
__attribute__((warn_unused_result)) int proxy_config_load(struct proxy_config *cfg, int argc, char **argv);
void proxy_config_free(struct proxy_config *cfg);

/*
 * Parse Go-style durations: "500ms", "5s", "1m30s", "1.5s", "0" (units ns, us, µs, ms, s, m, h; no
 * sign, exponent or hex), rounded to the nearest millisecond. Returns 0, -1 when s is not a
 * duration, or PROXY_CONFIG_DUR_UNDER_1MS when it is nonzero but rounds to 0 ms (*ms untouched).
 */
#define PROXY_CONFIG_DUR_UNDER_1MS (-2)
__attribute__((warn_unused_result)) int proxy_config_parse_duration(const char *s, int64_t *ms);
__attribute__((warn_unused_result)) int proxy_config_parse_bool(const char *s, bool *out);
/* A TCP port: the whole string decimal digits, 1 to 65535. Returns the port or -1. */
__attribute__((warn_unused_result)) int proxy_config_parse_port(const char *s);

/* Print every option with its flag, environment variable and default. */
void proxy_config_usage(FILE *out);

/* Print the effective configuration as YAML, secrets redacted (--check). */
void proxy_config_print(const struct proxy_config *cfg);

#endif
