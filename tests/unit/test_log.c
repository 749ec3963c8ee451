/*
 * Logging (proxy/proxy_log.c): URL credentials scrubbed, consul/'s lines
 * split into message and fields, and the access log in both formats with the
 * query string dropped and unsafe bytes escaped. The static helpers are
 * reached by including the .c (STYLE rule 11).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/proxy_log.c"

static void scrubbed(const char *in, const char *want)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", in);
    proxy_log_scrub(buf);
    cr_expect_str_eq(buf, want, "scrub(%s)", in);
}

Test(log, scrub_url_credentials)
{
    scrubbed("consul=https://user:pa55w0rd-long-enough@consul.example:8501/p x=1",
             "consul=https://<redacted>@consul.example:8501/p x=1");
    scrubbed("a=http://:tok@h b=https://x:y@z", "a=http://****@h b=https://***@z");
    scrubbed("no credentials: http://host:8500/v1/kv?x=a@b", "no credentials: http://host:8500/v1/kv?x=a@b");
    scrubbed("mail me@example.com", "mail me@example.com");
    scrubbed("path=/a@b", "path=/a@b");
    scrubbed("", "");
}

/* Run fn with stderr going to a temporary file; return what was written (caller frees). */
static char *capture_stderr(void (*fn)(void))
{
    char path[] = "/tmp/leaseway-test-log.XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    off_t n = lseek(fd, 0, SEEK_END);
    char *out = calloc(1, (size_t)n + 1);
    cr_assert(pread(fd, out, (size_t)n, 0) == n);
    close(fd);
    unlink(path);
    return out;
}

static void consul_lines(void)
{
    consul_sink("info", "msg=\"lease state\" from=standby to=holding event=acquired");
    consul_sink("info", "msg=\"release done\" (standbys take over now)");
    consul_sink("warn", "msg=\"Consul request failed\" op=watch error=\"connection refused\"");
    consul_sink("debug", "msg=\"hidden at info\" x=1");
    consul_sink("info", "not logfmt at all");
}

Test(log, consul_lines_logfmt)
{
    proxy_log_setup("text", "info");
    char *out = capture_stderr(consul_lines);
    cr_expect(strstr(out, "level=info msg=\"lease state\" component=consul from=standby to=holding "
                          "event=acquired\n") != NULL,
              "%s", out);
    cr_expect(strstr(out, "msg=\"release done (standbys take over now)\" component=consul\n") != NULL, "%s",
              out);
    cr_expect(strstr(out, "level=warn msg=\"Consul request failed\" component=consul op=watch") != NULL, "%s",
              out);
    cr_expect(strstr(out, "hidden at info") == NULL, "%s", out);
    cr_expect(strstr(out, "msg=\"consul\" component=consul not logfmt at all") != NULL, "%s", out);
    free(out);
}

Test(log, consul_lines_json)
{
    proxy_log_setup("json", "info");
    char *out = capture_stderr(consul_lines);
    cr_expect(
        strstr(out,
               "\"level\":\"info\",\"msg\":\"lease state\",\"component\":\"consul\",\"from\":\"standby\","
               "\"to\":\"holding\",\"event\":\"acquired\"}\n") != NULL,
        "%s", out);
    cr_expect(strstr(out, "\"msg\":\"release done (standbys take over now)\",\"component\":\"consul\"}") !=
                  NULL,
              "%s", out);
    cr_expect(strstr(out, "\"error\":\"connection refused\"") != NULL, "%s", out);
    proxy_log_setup("text", "info");
    free(out);
}

static void secret_line(void)
{
    proxy_log_info("starting", "consul=%s token=%s", "http://ops:hunter2-hunter2@127.0.0.1:8500", "set");
}

Test(log, lines_are_scrubbed)
{
    proxy_log_setup("text", "info");
    char *out = capture_stderr(secret_line);
    cr_expect(strstr(out, "hunter2") == NULL, "%s", out);
    cr_expect(strstr(out, "consul=http://<redacted>@127.0.0.1:8500 token=set") != NULL, "%s", out);
    free(out);
}

/*
 * Values quoted with proxy_log_quote(): `"`, `\` and control bytes escaped, so that a migration's
 * output (Prisma: `Datasource "db": SQLite database "data.db"`) neither ends the logfmt value
 * early nor cuts the JSON one; the JSON form has the text as it was.
 */
Test(log, quoted_values_are_escaped)
{
    char q[64];
    cr_expect_str_eq(proxy_log_quote(q, sizeof(q), "Datasource \"db\": C:\\x"),
                     "Datasource \\\"db\\\": C:\\\\x");
    cr_expect_str_eq(proxy_log_quote(q, sizeof(q), "\x1b[31mred\n\x7f é"), "\\x1b[31mred\\x0a\\x7f é");
    char small[8];
    cr_expect_str_eq(proxy_log_quote(small, sizeof(small), "ab\"\"\"\""), "ab\\\"", "an escape is never cut");
}

static const char odd_line[] =
    "Datasource \"db\": SQLite database \"data.db\" at \"file:./data.db\" \\ \x1b[0m end\\";

static void quoted_line(void)
{
    char q[PROXY_LOG_QUOTE_MAX];
    proxy_log_info("migrate command output", "line=\"%s\" n=1", proxy_log_quote(q, sizeof(q), odd_line));
}

Test(log, quoted_values_text_and_json)
{
    proxy_log_setup("text", "info");
    char *out = capture_stderr(quoted_line);
    cr_expect(
        strstr(out,
               " line=\"Datasource \\\"db\\\": SQLite database \\\"data.db\\\" at \\\"file:./data.db\\\" "
               "\\\\ \\x1b[0m end\\\\\" n=1\n") != NULL,
        "%s", out);
    free(out);
    proxy_log_setup("json", "info");
    out = capture_stderr(quoted_line);
    proxy_log_setup("text", "info");
    json_error_t e;
    json_t *j = json_loads(out, 0, &e);
    cr_assert(j, "not JSON (%s): %s", e.text, out);
    cr_expect_str_eq(json_string_value(json_object_get(j, "line")), odd_line);
    cr_expect_str_eq(json_string_value(json_object_get(j, "n")), "1", "the pair after the value is kept");
    json_decref(j);
    free(out);
}

static void numeric_line(void)
{
    proxy_log_info("numbers",
                   "pid=%d duration_ms=12 ttl_ms=10000 limit_per_s=50 status=200 index=7 "
                   "timeout_ms=abc instance=123 n=4 reason=\"7\" worker=-1 lines=1.5",
                   4242);
}

/* --log-format json: the fields that are counts and durations are JSON numbers (jq '.ttl_ms > 5000'
 * works); an ID or a quoted value that happens to be digits stays a string, so a field's type never
 * changes from one line to the next. */
Test(log, json_numbers)
{
    proxy_log_setup("json", "info");
    char *out = capture_stderr(numeric_line);
    proxy_log_setup("text", "info");
    json_error_t e;
    json_t *j = json_loads(out, 0, &e);
    cr_assert(j, "not JSON (%s): %s", e.text, out);
    const char *nums[] = {"pid",    "duration_ms", "ttl_ms", "limit_per_s",
                          "status", "index",       "worker", "lines"};
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
        cr_expect(json_is_number(json_object_get(j, nums[i])), "%s is not a number: %s", nums[i], out);
    cr_expect_eq(json_integer_value(json_object_get(j, "pid")), 4242);
    cr_expect_eq(json_integer_value(json_object_get(j, "ttl_ms")), 10000);
    cr_expect_eq(json_integer_value(json_object_get(j, "worker")), -1);
    cr_expect_float_eq(json_real_value(json_object_get(j, "lines")), 1.5, 1e-9);
    cr_expect_str_eq(json_string_value(json_object_get(j, "timeout_ms")), "abc", "not a number: a string");
    cr_expect_str_eq(json_string_value(json_object_get(j, "instance")), "123", "an ID stays a string");
    cr_expect_str_eq(json_string_value(json_object_get(j, "n")), "4");
    cr_expect_str_eq(json_string_value(json_object_get(j, "reason")), "7", "a quoted value stays a string");
    json_decref(j);
    free(out);
}

static char *access_lines(const char *format)
{
    char path[] = "/tmp/leaseway-test-access.XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    proxy_log_setup(format, "info");
    cr_assert_eq(proxy_log_access_open(path), 0);
    cr_expect(proxy_log_access_enabled());
    static const char target[] = "/oauth/callback?code=SECRET&state=x";
    struct proxy_access a = {
        .client_ip = "10.0.0.7",
        .method = "GET",
        .target = target,
        .target_len = sizeof(target) - 1,
        .status = 200,
        .route = "forwarded",
        .upstream = "app-1",
        .duration_ns = 1234567,
        .from_peer = false,
    };
    proxy_log_access(&a);
    static const char odd[] = "/a\"b\\c\x01\xff";
    struct proxy_access b = {
        .client_ip = "::1",
        .method = "POST",
        .target = odd,
        .target_len = sizeof(odd) - 1,
        .status = 503,
        .route = "held",
        .upstream = NULL,
        .duration_ns = 5000000000,
        .from_peer = true,
    };
    proxy_log_access(&b);
    struct proxy_access c = {
        .client_ip = "1.2.3.4", .method = "GET", .target = NULL, .status = 408, .route = "local"};
    proxy_log_access(&c);
    proxy_log_access_close();
    cr_expect(!proxy_log_access_enabled());
    FILE *f = fopen(path, "r");
    char *out = calloc(1, 8192);
    size_t n = fread(out, 1, 8191, f);
    out[n] = '\0';
    fclose(f);
    unlink(path);
    proxy_log_setup("text", "info");
    return out;
}

Test(log, access_logfmt)
{
    char *out = access_lines("text");
    cr_expect(strstr(out, "SECRET") == NULL, "%s", out);
    cr_expect(strstr(out,
                     "msg=\"request\" log=access client=\"10.0.0.7\" method=\"GET\" path=\"/oauth/callback\" "
                     "query=1 status=200 route=forwarded upstream=\"app-1\" duration_ms=1.235\n") != NULL,
              "%s", out);
    cr_expect(strstr(out,
                     "method=\"POST\" path=\"/a\\\"b\\\\c\\x01\\xff\" status=503 route=held upstream=\"\" "
                     "duration_ms=5000.000 from_peer=1\n") != NULL,
              "%s", out);
    cr_expect(strstr(out, "path=\"\" status=408 route=local") != NULL, "%s", out);
    free(out);
}

Test(log, access_json)
{
    char *out = access_lines("json");
    cr_expect(strstr(out, "SECRET") == NULL, "%s", out);
    cr_expect(strstr(out,
                     "\"msg\":\"request\",\"log\":\"access\",\"client\":\"10.0.0.7\",\"method\":\"GET\","
                     "\"path\":\"/oauth/callback\",\"query\":true,\"status\":200,\"route\":\"forwarded\","
                     "\"upstream\":\"app-1\",\"duration_ms\":1.235,\"from_peer\":false}\n") != NULL,
              "%s", out);
    cr_expect(
        strstr(out,
               "\"path\":\"/a\\\"b\\\\c\\u0001\\u00ff\",\"query\":false,\"status\":503,\"route\":\"held\","
               "\"upstream\":null,\"duration_ms\":5000.000,\"from_peer\":true}\n") != NULL,
        "%s", out);
    free(out);
}

Test(log, access_open_errors)
{
    cr_expect_eq(proxy_log_access_open("off"), 0);
    cr_expect(!proxy_log_access_enabled());
    cr_expect_eq(proxy_log_access_open("/nonexistent-dir/leaseway/access.log"), -1);
    cr_expect(!proxy_log_access_enabled());
}
