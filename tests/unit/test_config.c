/*
 * Settings (SPEC §1): durations, booleans, precedence flag > env > file >
 * default, ${VAR} expansion, and errors that name where a bad value came from.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/proxy.h"
#include "proxy/proxy_config.h"

Test(config, durations)
{
    int64_t ms;
    cr_expect_eq(proxy_config_parse_duration("500ms", &ms), 0);
    cr_expect_eq(ms, 500);
    cr_expect_eq(proxy_config_parse_duration("5s", &ms), 0);
    cr_expect_eq(ms, 5000);
    cr_expect_eq(proxy_config_parse_duration("1m30s", &ms), 0);
    cr_expect_eq(ms, 90000);
    cr_expect_eq(proxy_config_parse_duration("1.5s", &ms), 0);
    cr_expect_eq(ms, 1500);
    cr_expect_eq(proxy_config_parse_duration("0", &ms), 0);
    cr_expect_eq(ms, 0);
    cr_expect_eq(proxy_config_parse_duration("5", &ms), -1);
    cr_expect_eq(proxy_config_parse_duration("-1s", &ms), -1);
    cr_expect_eq(proxy_config_parse_duration("5x", &ms), -1);
    cr_expect_eq(proxy_config_parse_duration("", &ms), -1);
    cr_expect_eq(proxy_config_parse_duration("nans", &ms), -1); /* strtod() reads NaN */
    cr_expect_eq(proxy_config_parse_duration("infs", &ms), -1);
}

/*
 * Go's grammar, not strtod()'s: "0x10s" was 16 s, "1e3ms" 1 s, and "0.4ms" rounded silently to 0
 * (for --consistency-window: off).
 */
Test(config, durations_are_go_style)
{
    static const struct {
        const char *s;
        int64_t ms;
    } good[] = {{"1h", 3600000}, {"2m", 120000},      {"1m30s", 90000},    {"1h1m1s1ms", 3661001},
                {".5s", 500},    {"5.s", 5000},       {"0.5ms", 1},        {"1500us", 2},
                {"1500µs", 2},   {"2000000ns", 2},    {"0s", 0},           {"0ms", 0},
                {"1.25s", 1250}, {"10s500ms", 10500}, {"0.0000000001h", 0}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int64_t ms = -7;
        int rc = proxy_config_parse_duration(good[i].s, &ms);
        if (good[i].ms == 0 && strcmp(good[i].s, "0s") && strcmp(good[i].s, "0ms"))
            cr_expect_eq(rc, PROXY_CONFIG_DUR_UNDER_1MS, "\"%s\" not refused as under 1ms", good[i].s);
        else
            cr_expect(rc == 0 && ms == good[i].ms, "\"%s\": rc %d, %lld ms", good[i].s, rc, (long long)ms);
    }
    const char *bad[] = {"0x10s",
                         "0X10s",
                         "1e3ms",
                         "1E3ms",
                         "1e-3s",
                         "+5s",
                         "-0s",
                         " 5s",
                         "5s ",
                         "5 s",
                         "s",
                         ".s",
                         "1.2.3s",
                         "5sec",
                         "5S",
                         "1d",
                         "5ms5",
                         "0x1p3s",
                         "00",
                         "inf",
                         "99999999999999999999s",
                         "9223372036854775807h",
                         "3000000h"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ms = -7;
        cr_expect_eq(proxy_config_parse_duration(bad[i], &ms), -1, "\"%s\" taken as %lld ms", bad[i],
                     (long long)ms);
    }
    const char *tiny[] = {"0.4ms", "1ns", "499999ns", "1us", "0.0001s"};
    for (size_t i = 0; i < sizeof(tiny) / sizeof(tiny[0]); i++) {
        int64_t ms = -7;
        cr_expect_eq(proxy_config_parse_duration(tiny[i], &ms), PROXY_CONFIG_DUR_UNDER_1MS,
                     "\"%s\" taken as %lld ms", tiny[i], (long long)ms);
    }
}

Test(config, booleans)
{
    bool b;
    cr_expect(proxy_config_parse_bool("true", &b) == 0 && b);
    cr_expect(proxy_config_parse_bool("FALSE", &b) == 0 && !b);
    cr_expect(proxy_config_parse_bool("1", &b) == 0 && b);
    cr_expect_eq(proxy_config_parse_bool("maybe", &b), -1);
}

/* One strict port parser for --listen, --admin and --target: atoi() took "99x" as 99, 88901 as 23365. */
Test(config, ports_are_strict)
{
    cr_expect_eq(proxy_config_parse_port("1"), 1);
    cr_expect_eq(proxy_config_parse_port("8080"), 8080);
    cr_expect_eq(proxy_config_parse_port("65535"), 65535);
    const char *bad[] = {"",    "0",  "65536", "88901", "99x",  "x99",
                         "+80", "-1", " 80",   "80 ",   "0x50", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(proxy_config_parse_port(bad[i]), -1, "\"%s\" taken as a port", bad[i]);

    /* at bind time too: the address a listener binds is never a port the check did not see */
    struct sockaddr_storage ss;
    socklen_t len;
    cr_expect_eq(proxy_parse_addr("127.0.0.1:8080", true, &ss, &len), 0);
    cr_expect_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 8080);
    const char *bad_addr[] = {"127.0.0.1:88901", "127.0.0.1:99x", "127.0.0.1:", ":0", "[::1]:65536"};
    for (size_t i = 0; i < sizeof(bad_addr) / sizeof(bad_addr[0]); i++)
        cr_expect_eq(proxy_parse_addr(bad_addr[i], true, &ss, &len), -1, "\"%s\" parsed", bad_addr[i]);
}

static void write_yaml(char *path, const char *text)
{
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
}

static int load(struct proxy_config *cfg, int argc, const char **argv)
{
    return proxy_config_load(cfg, argc, (char **)argv);
}

Test(config, precedence_flag_env_file_default, .init = cr_redirect_stderr)
{
    char path[] = "/tmp/leaseway-cfg-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "target: 127.0.0.1:3000\nregion: ${LW_TEST_REGION}\nhold-timeout: 7s\n"
               "drain-timeout: 9s\npassthrough:\n  - /healthz\n  - /static/*\n");
    fclose(f);
    setenv("LW_TEST_REGION", "ams", 1);
    setenv("LEASEWAY_HOLD_TIMEOUT", "3s", 1);
    struct proxy_config cfg;
    const char *argv[] = {"--config", path, "--drain-timeout=1s", "--instance", "i9"};
    cr_assert_eq(load(&cfg, 5, argv), 0);
    cr_expect_str_eq(cfg.target, "127.0.0.1:3000"); /* file */
    cr_expect_str_eq(cfg.region, "ams");            /* file, ${VAR} expanded */
    cr_expect_eq(cfg.hold_timeout_ms, 3000);        /* env beats file */
    cr_expect_eq(cfg.drain_timeout_ms, 1000);       /* flag beats file */
    cr_expect_eq(cfg.idle_timeout_ms, 60000);       /* default */
    cr_expect_str_eq(cfg.instance, "i9");
    cr_expect_eq(cfg.passthrough.n, 2);
    cr_expect_str_eq(cfg.passthrough.v[1], "/static/*");
    cr_expect_str_eq(cfg.lease, "static");
    proxy_config_free(&cfg);
    unsetenv("LEASEWAY_HOLD_TIMEOUT");
    unlink(path);
}

/* ${NAME} with a name of any length, also at the very end of a value (it was read past) */
Test(config, env_expansion_long_name, .init = cr_redirect_stderr)
{
    char name[301];
    memset(name, 'L', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    char path[] = "/tmp/leaseway-cfg-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "target: 127.0.0.1:3000\nregion: ${%s}\ninstance: i-${%s}\n", name, name);
    fclose(f);
    setenv(name, "fra", 1);
    struct proxy_config cfg;
    const char *argv[] = {"--config", path};
    cr_assert_eq(load(&cfg, 2, argv), 0);
    cr_expect_str_eq(cfg.region, "fra");
    cr_expect_str_eq(cfg.instance, "i-fra");
    proxy_config_free(&cfg);
    unsetenv(name);
    unlink(path);
}

/* $NAME without braces too, as litefs.yml (Go's os.ExpandEnv) does; a '$' not followed by a name or
 * '{' stays as it is (a trailing '$', "$5", "$-") */
Test(config, env_expansion_bare_name, .init = cr_redirect_stderr)
{
    char path[] = "/tmp/leaseway-cfg-XXXXXX";
    write_yaml(path, "target: $LW_TEST_HOST:3000\nregion: $LW_TEST_UNSET_9\ninstance: a$LW_TEST_ID.b$\n"
                     "advertise: http://h:1/$5/$-/$LW_TEST_HOSTx\n");
    setenv("LW_TEST_HOST", "127.0.0.1", 1);
    setenv("LW_TEST_ID", "7", 1);
    unsetenv("LW_TEST_UNSET_9");
    struct proxy_config cfg;
    const char *argv[] = {"--config", path};
    cr_assert_eq(load(&cfg, 2, argv), 0);
    cr_expect_str_eq(cfg.target, "127.0.0.1:3000");
    cr_expect(cfg.region == NULL || cfg.region[0] == '\0', "an unset variable is empty: \"%s\"", cfg.region);
    cr_expect_str_eq(cfg.instance, "a7.b$");
    cr_expect_str_eq(cfg.advertise, "http://h:1/$5/$-/", "the name runs to the last letter, digit or _");
    proxy_config_free(&cfg);
    unsetenv("LW_TEST_HOST");
    unsetenv("LW_TEST_ID");
    unlink(path);
}

Test(config, errors_name_their_origin, .init = cr_redirect_stderr)
{
    char path[] = "/tmp/leaseway-cfg-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "target: 127.0.0.1:3000\nlisten_port: 80\n");
    fclose(f);
    struct proxy_config cfg;
    const char *argv[] = {"--config", path};
    cr_expect_eq(load(&cfg, 2, argv), -1);
    proxy_config_free(&cfg);
    fflush(stderr);
    char want[256];
    snprintf(want, sizeof(want),
             "leaseway: %s:2: unknown key \"listen_port\" (see leaseway run --help for the keys)\n", path);
    cr_expect_stderr_eq_str(want);
    unlink(path);
}

Test(config, bad_values_are_refused, .init = cr_redirect_stderr)
{
    struct proxy_config cfg;
    const char *no_target[] = {"--listen", "127.0.0.1:8080"};
    cr_expect_eq(load(&cfg, 2, no_target), -1);
    proxy_config_free(&cfg);
    const char *bad_dur[] = {"--target", "127.0.0.1:1", "--hold-timeout", "soon"};
    cr_expect_eq(load(&cfg, 4, bad_dur), -1);
    proxy_config_free(&cfg);
    const char *bad_writes[] = {"--target", "127.0.0.1:1", "--writes", "sometimes"};
    cr_expect_eq(load(&cfg, 4, bad_writes), -1);
    proxy_config_free(&cfg);
    const char *consul_no_key[] = {"--target", "127.0.0.1:1", "--lease", "consul"};
    cr_expect_eq(load(&cfg, 4, consul_no_key), -1);
    proxy_config_free(&cfg);
    const char *unknown[] = {"--target", "127.0.0.1:1", "--frobnicate"};
    cr_expect_eq(load(&cfg, 3, unknown), -1);
    proxy_config_free(&cfg);
}

/* --instance and --region go into response headers and logs: visible ASCII only, 1-127 bytes */
Test(config, instance_and_region_are_header_safe, .init = cr_redirect_stderr)
{
    struct proxy_config cfg;
    const char *crlf_region[] = {"--target", "127.0.0.1:1", "--region", "fra\r\nX-Evil: 1"};
    cr_expect_eq(load(&cfg, 4, crlf_region), -1);
    proxy_config_free(&cfg);
    const char *space_instance[] = {"--target", "127.0.0.1:1", "--instance", "a b"};
    cr_expect_eq(load(&cfg, 4, space_instance), -1);
    proxy_config_free(&cfg);
    const char *empty_instance[] = {"--target", "127.0.0.1:1", "--instance", ""};
    cr_expect_eq(load(&cfg, 4, empty_instance), -1);
    proxy_config_free(&cfg);
    char long_id[200];
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    const char *long_instance[] = {"--target", "127.0.0.1:1", "--instance", long_id};
    cr_expect_eq(load(&cfg, 4, long_instance), -1);
    proxy_config_free(&cfg);
    const char *fine[] = {"--target", "127.0.0.1:1", "--instance", "machine-0a1b.fra_2", "--region", "fra"};
    cr_expect_eq(load(&cfg, 6, fine), 0);
    proxy_config_free(&cfg);
    const char *no_region[] = {"--target", "127.0.0.1:1", "--instance", "i1", "--region", ""};
    cr_expect_eq(load(&cfg, 6, no_region), 0, "an empty --region means none");
    proxy_config_free(&cfg);
}

/* Flags that the chosen lease mode would silently ignore are refused instead. */
Test(config, flags_of_the_other_lease_mode_are_refused, .init = cr_redirect_stderr)
{
    struct proxy_config cfg;
    const char *static_register[] = {"--target", "127.0.0.1:1", "--lease", "static", "--register"};
    cr_expect_eq(load(&cfg, 5, static_register), -1);
    proxy_config_free(&cfg);
    const char *static_key[] = {"--target", "127.0.0.1:1", "--lease", "static", "--lease-key", "k"};
    cr_expect_eq(load(&cfg, 6, static_key), -1);
    proxy_config_free(&cfg);
    const char *consul_static_primary[] = {"--target", "127.0.0.1:1",      "--lease-key",
                                           "k",        "--static-primary", "p=http://127.0.0.1:2"};
    cr_expect_eq(load(&cfg, 6, consul_static_primary), -1);
    proxy_config_free(&cfg);
    const char *static_fine[] = {"--target", "127.0.0.1:1", "--static-primary", "p=http://127.0.0.1:2",
                                 "--register=false"};
    cr_expect_eq(load(&cfg, 5, static_fine), 0);
    proxy_config_free(&cfg);
    const char *consul_fine[] = {"--target", "127.0.0.1:1", "--lease-key", "k", "--register=false"};
    cr_expect_eq(load(&cfg, 5, consul_fine), 0);
    proxy_config_free(&cfg);
}

/* --help shows "--candidate BOOL": "--candidate false" works as "--candidate=false" does */
Test(config, bool_flag_takes_a_following_true_or_false, .init = cr_redirect_stderr)
{
    struct proxy_config cfg;
    const char *spaced[] = {"--target", "127.0.0.1:1", "--candidate", "false", "--io-uring", "true"};
    cr_assert_eq(load(&cfg, 6, spaced), 0);
    cr_expect(!cfg.candidate);
    cr_expect(cfg.io_uring);
    proxy_config_free(&cfg);
    const char *alone[] = {"--candidate", "--target", "127.0.0.1:1"};
    cr_assert_eq(load(&cfg, 3, alone), 0);
    cr_expect(cfg.candidate, "a bare bool flag is still true");
    proxy_config_free(&cfg);
    const char *negated[] = {"--target", "127.0.0.1:1", "--no-candidate"};
    cr_assert_eq(load(&cfg, 3, negated), 0);
    cr_expect(!cfg.candidate);
    proxy_config_free(&cfg);
}

/* path gets a temporary file holding text; the caller unlinks it */
static int load_yaml_text(const char *text, int argc_extra, const char **extra)
{
    char path[] = "/tmp/leaseway-cfg-XXXXXX";
    write_yaml(path, text);
    const char *argv[8] = {"--config", path};
    for (int k = 0; k < argc_extra; k++)
        argv[2 + k] = extra[k];
    struct proxy_config cfg;
    int rc = load(&cfg, 2 + argc_extra, argv);
    proxy_config_free(&cfg);
    unlink(path);
    return rc;
}

/*
 * YAML's null ("key:", "key: ~", "key: null") was taken as the text "", "~" or "null": an empty or
 * "~" lease-key turned the consul lease on. Refused now; quoted, they are text.
 */
Test(config, yaml_null_is_refused, .init = cr_redirect_stderr)
{
    const char *nulls[] = {
        "target: 127.0.0.1:3000\nlease-key: ~\n",  "target: 127.0.0.1:3000\nlease-key:\n",
        "target: 127.0.0.1:3000\nregion: null\n",  "target: 127.0.0.1:3000\nregion: NULL\n",
        "target: 127.0.0.1:3000\nregion: Null\n",  "target: 127.0.0.1:3000\nwrites: ~\n",
        "target: 127.0.0.1:3000\npassthrough:\n",  "target: 127.0.0.1:3000\npassthrough:\n  - /a\n  - ~\n",
        "target: 127.0.0.1:3000\nhold-timeout:\n", "target: ~\n"};
    for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
        cr_expect_eq(load_yaml_text(nulls[i], 0, NULL), -1, "taken: %s", nulls[i]);
    cr_expect_eq(load_yaml_text("target: 127.0.0.1:3000\nregion: \"null\"\ninstance: '~'\n", 0, NULL), 0,
                 "quoted, null and ~ are text");
    cr_expect_eq(load_yaml_text("target: 127.0.0.1:3000\nregion: \"\"\n", 0, NULL), 0,
                 "a quoted empty region means none");
}

/* the message: file:line, the key, and what was there; one load per test (stderr is compared whole) */
static void expect_yaml_error(const char *text, const char *line_and_message)
{
    char path[] = "/tmp/leaseway-cfg-XXXXXX";
    write_yaml(path, text);
    struct proxy_config cfg;
    const char *argv[] = {"--config", path, "--listen", "127.0.0.1:1"};
    cr_expect_eq(load(&cfg, 4, argv), -1);
    proxy_config_free(&cfg);
    fflush(stderr);
    char want[512];
    snprintf(want, sizeof(want), "leaseway: %s:%s\n", path, line_and_message);
    cr_expect_stderr_eq_str(want);
    unlink(path);
}

Test(config, yaml_null_message, .init = cr_redirect_stderr)
{
    expect_yaml_error("target: 127.0.0.1:3000\nlease-key: ~\n",
                      "2: lease-key: a value is required, got ~ (quote it for the text itself)");
}

Test(config, yaml_empty_message, .init = cr_redirect_stderr)
{
    expect_yaml_error("target: 127.0.0.1:3000\nlease-key:\nregion: fra\n",
                      "2: lease-key: a value is required, got nothing (quote it for the text itself)");
}

/* A duplicated key was accepted, the last one winning (lists merged); nginx refuses a duplicated directive.
 */
Test(config, yaml_duplicate_key_is_refused, .init = cr_redirect_stderr)
{
    expect_yaml_error("target: 127.0.0.1:3000\nwrites: forward\nregion: fra\nwrites: replay\n",
                      "4: duplicate key \"writes\" (first on line 2)");
}

Test(config, yaml_duplicate_list_is_refused, .init = cr_redirect_stderr)
{
    expect_yaml_error("target: 127.0.0.1:3000\npassthrough:\n  - /a\npassthrough: [/b]\n",
                      "4: duplicate key \"passthrough\" (first on line 2)");
}

/*
 * A file value that the environment or a flag overrides was never checked: --check with the
 * variable set passed a file that fails without it.
 */
Test(config, yaml_overridden_value_is_checked, .init = cr_redirect_stderr)
{
    setenv("LEASEWAY_HOLD_TIMEOUT", "5s", 1);
    cr_expect_eq(load_yaml_text("target: 127.0.0.1:3000\nhold-timeout: garbage\n", 0, NULL), -1);
    cr_expect_eq(load_yaml_text("target: 127.0.0.1:3000\nhold-timeout: 7s\n", 0, NULL), 0);
    unsetenv("LEASEWAY_HOLD_TIMEOUT");
    const char *writes[] = {"--writes", "forward"};
    cr_expect_eq(load_yaml_text("target: 127.0.0.1:3000\nwrites: proxy\n", 2, writes), -1);
    const char *idle[] = {"--idle-timeout", "5s"};
    cr_expect_eq(load_yaml_text("target: 127.0.0.1:3000\nidle-timeout: 0\n", 2, idle), -1);
    const char *listen[] = {"--listen", "127.0.0.1:8080"};
    cr_expect_eq(load_yaml_text("target: 127.0.0.1:3000\nlisten: 127.0.0.1:88901\n", 2, listen), -1);
    const char *candidate[] = {"--candidate=false"};
    cr_expect_eq(load_yaml_text("target: 127.0.0.1:3000\ncandidate: perhaps\n", 1, candidate), -1);
    const char *pass[] = {"--passthrough", "/x"};
    cr_expect_eq(load_yaml_text("target: 127.0.0.1:3000\npassthrough:\n  - /a\n  -\n", 2, pass), -1);
}

Test(config, yaml_overridden_value_message, .init = cr_redirect_stderr)
{
    setenv("LEASEWAY_WRITES", "forward", 1);
    expect_yaml_error("target: 127.0.0.1:3000\nwrites: proxy\n",
                      "2: writes \"proxy\": expected forward or replay");
    unsetenv("LEASEWAY_WRITES");
}

/* "listen: [::]:8080" unquoted is a YAML list: the message said lists were for other keys */
Test(config, yaml_unquoted_ipv6_says_quote_it, .init = cr_redirect_stderr)
{
    expect_yaml_error(
        "target: 127.0.0.1:3000\nlisten: [::]:8080\n",
        "2: listen: quote an IPv6 address, e.g. listen: \"[::]:8080\" (unquoted, [...] is a YAML list)");
}

/* "--target http://127.0.0.1:3000" passed the port check and failed as "cannot resolve" */
Test(config, target_with_a_scheme_says_so, .init = cr_redirect_stderr)
{
    struct proxy_config cfg;
    const char *argv[] = {"--target", "http://127.0.0.1:3000"};
    cr_expect_eq(load(&cfg, 2, argv), -1);
    proxy_config_free(&cfg);
    fflush(stderr);
    cr_expect_stderr_eq_str("leaseway: --target \"http://127.0.0.1:3000\": expected host:port without a "
                            "scheme, e.g. 127.0.0.1:3000\n");
}

Test(config, listen_and_admin_with_a_scheme_are_refused, .init = cr_redirect_stderr)
{
    struct proxy_config cfg;
    const char *listen[] = {"--target", "127.0.0.1:3000", "--listen", "http://0.0.0.0:8080"};
    cr_expect_eq(load(&cfg, 4, listen), -1);
    proxy_config_free(&cfg);
    const char *admin[] = {"--target", "127.0.0.1:3000", "--admin", "http://127.0.0.1:9901"};
    cr_expect_eq(load(&cfg, 4, admin), -1);
    proxy_config_free(&cfg);
    const char *fine[] = {"--target", "[::1]:3000", "--listen", "[::]:8080", "--admin", "off"};
    cr_expect_eq(load(&cfg, 6, fine), 0);
    proxy_config_free(&cfg);
}

/*
 * LEASEWAY_CONFIG beat --config (load_env overwrote the flag's file), and an empty LEASEWAY_CONFIG=
 * made --config FILE fail: flag > environment, and an empty variable is unset.
 */
Test(config, config_flag_beats_leaseway_config, .init = cr_redirect_stderr)
{
    char env_path[] = "/tmp/leaseway-cfg-XXXXXX", flag_path[] = "/tmp/leaseway-cfg-XXXXXX";
    write_yaml(env_path, "target: 127.0.0.1:3001\nregion: from-env-file\n");
    write_yaml(flag_path, "target: 127.0.0.1:3002\nregion: from-flag-file\n");
    struct proxy_config cfg;
    const char *argv[] = {"--config", flag_path};
    setenv("LEASEWAY_CONFIG", env_path, 1);
    cr_expect_eq(load(&cfg, 2, argv), 0);
    cr_expect_str_eq(cfg.region, "from-flag-file");
    proxy_config_free(&cfg);
    cr_expect_eq(load(&cfg, 0, argv), 0);
    cr_expect_str_eq(cfg.region, "from-env-file", "without --config, LEASEWAY_CONFIG is read");
    proxy_config_free(&cfg);
    setenv("LEASEWAY_CONFIG", "", 1);
    cr_expect_eq(load(&cfg, 2, argv), 0);
    cr_expect_str_eq(cfg.region, "from-flag-file");
    proxy_config_free(&cfg);
    const char *target[] = {"--target", "127.0.0.1:3000"};
    cr_expect_eq(load(&cfg, 2, target), 0, "an empty LEASEWAY_CONFIG= is no file");
    proxy_config_free(&cfg);
    unsetenv("LEASEWAY_CONFIG");
    unlink(env_path);
    unlink(flag_path);
}

/*
 * --upstream-health and the http: migrations probe's URL go into a request line as they are: a
 * space, CR, LF or other control byte split it (header injection from "\r\n" in the file). Refused
 * where the value came from.
 */
Test(config, health_paths_are_request_target_safe, .init = cr_redirect_stderr)
{
    struct proxy_config cfg;
    const char *bad[] = {"/health check", "/h\r\nX-Injected: 1", "/h\n", "/h\t", "/h\x7f",
                         "/h\x01",        "/caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *argv[] = {"--target", "127.0.0.1:3000", "--upstream-health", bad[i]};
        cr_expect_eq(load(&cfg, 4, argv), -1, "--upstream-health \"%s\" taken", bad[i]);
        proxy_config_free(&cfg);
        char mig[64];
        snprintf(mig, sizeof(mig), "http:http://127.0.0.1:3000%s", bad[i]);
        const char *argv2[] = {"--target", "127.0.0.1:3000", "--migrations", mig};
        cr_expect_eq(load(&cfg, 4, argv2), -1, "--migrations \"%s\" taken", mig);
        proxy_config_free(&cfg);
    }
    const char *good[] = {"--target",          "127.0.0.1:3000",
                          "--upstream-health", "/health%20check?full=1",
                          "--migrations",      "http:http://127.0.0.1:3000/migrations?x=%22"};
    cr_expect_eq(load(&cfg, 6, good), 0);
    proxy_config_free(&cfg);
    const char *no_slash[] = {"--target", "127.0.0.1:3000", "--upstream-health", "health"};
    cr_expect_eq(load(&cfg, 4, no_slash), -1);
    proxy_config_free(&cfg);
}

Test(config, health_path_message_names_the_flag, .init = cr_redirect_stderr)
{
    struct proxy_config cfg;
    const char *argv[] = {"--target", "127.0.0.1:3000", "--upstream-health", "/health check"};
    cr_expect_eq(load(&cfg, 4, argv), -1);
    proxy_config_free(&cfg);
    fflush(stderr);
    cr_expect_stderr_eq_str("leaseway: --upstream-health \"/health check\": expected a path starting with /, "
                            "of visible ASCII without spaces (percent-encode the rest), e.g. /healthz\n");
}

Test(config, health_path_message_names_the_file_line, .init = cr_redirect_stderr)
{
    expect_yaml_error(
        "target: 127.0.0.1:3000\nupstream-health: \"/h HTTP/1.1\\r\\nX-Injected: 1\"\n",
        "2: upstream-health \"/h HTTP/1.1\\r\\nX-Injected: 1\": expected a path starting with /, "
        "of visible ASCII without spaces (percent-encode the rest), e.g. /healthz");
}

Test(config, migrations_url_message_names_the_variable, .init = cr_redirect_stderr)
{
    setenv("LEASEWAY_MIGRATIONS", "http:http://127.0.0.1:3000/m x", 1);
    struct proxy_config cfg;
    const char *argv[] = {"--target", "127.0.0.1:3000"};
    cr_expect_eq(load(&cfg, 2, argv), -1);
    proxy_config_free(&cfg);
    unsetenv("LEASEWAY_MIGRATIONS");
    fflush(stderr);
    cr_expect_stderr_eq_str("leaseway: LEASEWAY_MIGRATIONS \"http:http://127.0.0.1:3000/m x\": expected an "
                            "http: URL of visible ASCII without spaces (percent-encode the rest)\n");
}

/*
 * An empty LEASEWAY_<STRING>= was a value: LEASEWAY_TARGET= (compose's ${UNSET}) wiped the file's
 * target and LEASEWAY_LEASE_KEY= turned the consul lease on. Empty is unset for every type, as it
 * already was for booleans and durations.
 */
Test(config, empty_env_is_unset, .init = cr_redirect_stderr)
{
    char path[] = "/tmp/leaseway-cfg-XXXXXX";
    write_yaml(path, "target: 127.0.0.1:3001\nhold-timeout: 7s\nwrites: replay\n");
    const char *names[] = {"LEASEWAY_TARGET",      "LEASEWAY_LEASE_KEY", "LEASEWAY_SERVICE",
                           "LEASEWAY_WRITES",      "LEASEWAY_LEASE",     "LEASEWAY_HOLD_TIMEOUT",
                           "LEASEWAY_PASSTHROUGH", "LEASEWAY_WORKERS",   "LEASEWAY_CANDIDATE",
                           "LEASEWAY_REGION"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        setenv(names[i], "", 1);
    unsetenv("FLY_APP_NAME");
    struct proxy_config cfg;
    const char *argv[] = {"--config", path};
    cr_assert_eq(load(&cfg, 2, argv), 0);
    cr_expect_str_eq(cfg.target, "127.0.0.1:3001");
    cr_expect_eq(cfg.source[2], SRC_FILE);
    cr_expect_str_eq(cfg.lease, "static");
    cr_expect_null(cfg.lease_key);
    cr_expect_str_eq(cfg.service, "leaseway");
    cr_expect_str_eq(cfg.writes, "replay");
    cr_expect_eq(cfg.hold_timeout_ms, 7000);
    proxy_config_free(&cfg);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unsetenv(names[i]);
    unlink(path);
}

/* "LEASEWAY_PASSTHROUGH=/assets/x , /favicon.ico" kept the space before the comma ("/assets/x ") */
Test(config, env_list_items_are_trimmed, .init = cr_redirect_stderr)
{
    setenv("LEASEWAY_PASSTHROUGH", " /assets/* , /favicon.ico\t,, ", 1);
    setenv("LEASEWAY_LITEFS_DB", "/litefs/a.db , /litefs/b.db ", 1);
    struct proxy_config cfg;
    const char *argv[] = {"--target", "127.0.0.1:3000"};
    cr_expect_eq(load(&cfg, 2, argv), 0);
    cr_expect_eq(cfg.passthrough.n, 2);
    if (cfg.passthrough.n == 2) {
        cr_expect_str_eq(cfg.passthrough.v[0], "/assets/*");
        cr_expect_str_eq(cfg.passthrough.v[1], "/favicon.ico");
    }
    cr_expect_eq(cfg.litefs_db.n, 2);
    if (cfg.litefs_db.n == 2) {
        cr_expect_str_eq(cfg.litefs_db.v[0], "/litefs/a.db");
        cr_expect_str_eq(cfg.litefs_db.v[1], "/litefs/b.db");
    }
    proxy_config_free(&cfg);
    unsetenv("LEASEWAY_PASSTHROUGH");
    unsetenv("LEASEWAY_LITEFS_DB");
}

/*
 * A YAML syntax error under a key that takes no list ("hold-timeout: [5s") was reported as "a
 * list is only allowed for ...", which libyaml's events show before its error: the syntax error
 * is reported, whatever key it is under.
 */
Test(config, yaml_syntax_error_under_a_scalar_key, .init = cr_redirect_stderr)
{
    expect_yaml_error("target: 127.0.0.1:3000\nhold-timeout: [5s\nregion: ams\n",
                      "3: did not find expected ',' or ']' (while parsing a flow sequence on line 2)");
}

Test(config, yaml_syntax_error_after_a_bad_value, .init = cr_redirect_stderr)
{
    expect_yaml_error("target: 127.0.0.1:3000\nwrites: proxy\nregion: [ams\n",
                      "4: did not find expected ',' or ']' (while parsing a flow sequence on line 3)");
}

/* a list in a list key's list said lists were allowed for that very key */
Test(config, yaml_nested_list_message, .init = cr_redirect_stderr)
{
    expect_yaml_error("target: 127.0.0.1:3000\npassthrough:\n  - [/a, /b]\n",
                      "3: passthrough: each item is a string, not a list");
}

/*
 * A bad glob from the file or the environment was reported as "--passthrough", a flag never
 * given; host:port and enum values from LEASEWAY_* were too. Each names where it came from.
 */
Test(config, yaml_bad_glob_names_its_line, .init = cr_redirect_stderr)
{
    expect_yaml_error(
        "target: 127.0.0.1:3000\npassthrough:\n  - /ok/*\n  - assets/*\n",
        "4: passthrough \"assets/*\": glob must start with '/' or '*' (optionally after a method)");
}

static void expect_env_error(const char *name, const char *value, const char *message)
{
    setenv(name, value, 1);
    struct proxy_config cfg;
    const char *argv[] = {"--listen", "127.0.0.1:1"};
    cr_expect_eq(load(&cfg, 2, argv), -1);
    proxy_config_free(&cfg);
    unsetenv(name);
    fflush(stderr);
    cr_expect_stderr_eq_str(message);
}

Test(config, env_bad_glob_names_the_variable, .init = cr_redirect_stderr)
{
    setenv("LEASEWAY_TARGET", "127.0.0.1:3000", 1);
    expect_env_error("LEASEWAY_ALWAYS_PRIMARY", "/a,get /b",
                     "leaseway: LEASEWAY_ALWAYS_PRIMARY \"get /b\": method must be upper-case letters, e.g. "
                     "\"POST /path/*\"\n");
    unsetenv("LEASEWAY_TARGET");
}

Test(config, env_bad_target_names_the_variable, .init = cr_redirect_stderr)
{
    expect_env_error("LEASEWAY_TARGET", "x",
                     "leaseway: LEASEWAY_TARGET \"x\": expected host:port, the port from 1 to 65535\n");
}

Test(config, flag_bad_glob_names_the_flag, .init = cr_redirect_stderr)
{
    struct proxy_config cfg;
    const char *argv[] = {"--target", "127.0.0.1:3000", "--passthrough", "/a", "--passthrough", "b"};
    cr_expect_eq(load(&cfg, 6, argv), -1);
    proxy_config_free(&cfg);
    fflush(stderr);
    cr_expect_stderr_eq_str(
        "leaseway: --passthrough \"b\": glob must start with '/' or '*' (optionally after a method)\n");
}
