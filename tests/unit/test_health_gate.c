/*
 * health/ gate: the order of reasons, draining over everything, change
 * detection; and --migrations parsing (good and bad probe configurations).
 */
#include <string.h>

#include <criterion/criterion.h>

#include "health/health-int.h"
#include "proxy/proxy_log.h"

/* health/ logs through proxy/'s logger; naming it here also links it (lw_health comes
 * after lw_proxy on the link line). */
static void quiet_logs(void)
{
    proxy_log_setup("text", "warn");
}

Test(health_gate, open_when_nothing_is_needed, .init = quiet_logs)
{
    struct health_gate g;
    memset(&g, 0, sizeof(g));
    char r[ROUTE_REASON_MAX] = "x";
    cr_assert_eq(health_gate_state(&g, r, sizeof(r)), ROUTE_GATE_OPEN);
    cr_assert_str_empty(r);
}

Test(health_gate, first_unmet_condition_names_the_reason)
{
    struct health_gate g;
    memset(&g, 0, sizeof(g));
    char r[ROUTE_REASON_MAX];
    cr_assert(health_gate_set(&g, HEALTH_COND_APP_HEALTHY, true, false, "GET /healthz answered 503"));
    cr_assert(health_gate_set(&g, HEALTH_COND_MIGRATIONS, true, false, "1 of 2 pending: b not applied"));
    cr_assert_eq(health_gate_state(&g, r, sizeof(r)), ROUTE_GATE_CLOSED);
    cr_assert_str_eq(r, "migrations pending: 1 of 2 pending: b not applied");
    cr_assert(health_gate_set(&g, HEALTH_COND_MIGRATIONS, true, true, NULL));
    cr_assert_eq(health_gate_state(&g, r, sizeof(r)), ROUTE_GATE_CLOSED);
    cr_assert_str_eq(r, "app not healthy: GET /healthz answered 503");
    cr_assert(health_gate_set(&g, HEALTH_COND_APP_HEALTHY, true, true, NULL));
    cr_assert_eq(health_gate_state(&g, r, sizeof(r)), ROUTE_GATE_OPEN);
    cr_assert_str_empty(r);
    /* A later failure closes it again. */
    cr_assert(health_gate_set(&g, HEALTH_COND_MIGRATIONS, true, false, NULL));
    cr_assert_eq(health_gate_state(&g, r, sizeof(r)), ROUTE_GATE_CLOSED);
    cr_assert_str_eq(r, "migrations pending");
}

Test(health_gate, unneeded_conditions_do_not_count)
{
    struct health_gate g;
    memset(&g, 0, sizeof(g));
    char r[ROUTE_REASON_MAX];
    health_gate_set(&g, HEALTH_COND_MIGRATE_RUN, false, false, "replica");
    cr_assert_eq(health_gate_state(&g, r, sizeof(r)), ROUTE_GATE_OPEN);
    health_gate_set(&g, HEALTH_COND_MIGRATE_RUN, true, false, "running");
    cr_assert_eq(health_gate_state(&g, r, sizeof(r)), ROUTE_GATE_CLOSED);
    cr_assert_str_eq(r, "migrate command has not succeeded yet: running");
}

Test(health_gate, draining_wins)
{
    struct health_gate g;
    memset(&g, 0, sizeof(g));
    char r[ROUTE_REASON_MAX];
    health_gate_set(&g, HEALTH_COND_MIGRATIONS, true, false, "pending");
    g.draining = true;
    cr_assert_eq(health_gate_state(&g, r, sizeof(r)), ROUTE_GATE_DRAINING);
    cr_assert_str_eq(r, "shutting down");
    health_gate_set(&g, HEALTH_COND_MIGRATIONS, true, true, NULL);
    cr_assert_eq(health_gate_state(&g, r, sizeof(r)), ROUTE_GATE_DRAINING);
}

/*
 * Who may take the lease: not an instance whose app is what keeps its gate closed, nor one that
 * drains; one waiting for migrations (the holder runs them) or for the lease itself may.
 */
Test(health_gate, may_lead_unless_the_app_is_not_healthy)
{
    struct health_gate g;
    memset(&g, 0, sizeof(g));
    cr_assert(health_gate_may_lead(&g), "nothing configured");
    health_gate_set(&g, HEALTH_COND_APP_HEALTHY, true, false, "not checked yet");
    cr_assert_not(health_gate_may_lead(&g), "app health unknown or failing");
    health_gate_set(&g, HEALTH_COND_APP_HEALTHY, true, true, NULL);
    cr_assert(health_gate_may_lead(&g));
    health_gate_set(&g, HEALTH_COND_APP_HEALTHY, true, false, "GET /healthz answered 500");
    health_gate_set(&g, HEALTH_COND_MIGRATIONS, true, false, "1 of 3 pending");
    cr_assert(health_gate_may_lead(&g), "migrations pending come first: the holder runs them");
    health_gate_set(&g, HEALTH_COND_MIGRATIONS, true, true, NULL);
    health_gate_set(&g, HEALTH_COND_MIGRATE_RUN, true, false, "waiting for the lease");
    cr_assert(health_gate_may_lead(&g), "the migrate command waits for the lease");
    health_gate_set(&g, HEALTH_COND_MIGRATE_RUN, false, true, NULL);
    health_gate_set(&g, HEALTH_COND_APP_STARTED, true, false, "waiting for the lease");
    cr_assert(health_gate_may_lead(&g), "the supervised app starts once the lease is settled");
    health_gate_set(&g, HEALTH_COND_APP_STARTED, true, true, NULL);
    cr_assert_not(health_gate_may_lead(&g), "only the app's health is left");
    health_gate_set(&g, HEALTH_COND_APP_HEALTHY, true, true, NULL);
    g.draining = true;
    cr_assert_not(health_gate_may_lead(&g), "draining");
}

Test(health_gate, set_reports_changes_only)
{
    struct health_gate g;
    memset(&g, 0, sizeof(g));
    cr_assert(health_gate_set(&g, HEALTH_COND_APP_HEALTHY, true, false, "a"));
    cr_assert_not(health_gate_set(&g, HEALTH_COND_APP_HEALTHY, true, false, "a"));
    cr_assert(health_gate_set(&g, HEALTH_COND_APP_HEALTHY, true, false, "b"));
    cr_assert(health_gate_set(&g, HEALTH_COND_APP_HEALTHY, true, true, "b"));
    cr_assert_not(health_gate_set(&g, HEALTH_COND_COUNT, true, true, NULL));
    cr_assert_str_eq(health_cond_str(HEALTH_COND_MIGRATE_RUN), "migrate_run");
    cr_assert_str_eq(health_cond_str(HEALTH_COND_COUNT), "invalid");
}

/* --upstream-health's hysteresis (HAProxy's fall 3, rise 2): the first 2xx opens the condition; once
 * open, only three failures in a row close it (a blip does not take the instance out); once closed
 * again, two successes in a row reopen it. */
Test(health_app, fall_and_rise)
{
    struct health_app_state s = {0};
    cr_expect_not(health_app_result(&s, false), "closed until the app first answers 2xx");
    cr_expect_not(health_app_result(&s, false));
    cr_expect(health_app_result(&s, true), "the first 2xx opens it at once (start-up)");
    cr_expect(health_app_result(&s, false), "one failure: still open");
    cr_expect(health_app_result(&s, false), "two: still open");
    cr_expect(health_app_result(&s, true), "a success resets the count");
    cr_expect(health_app_result(&s, false));
    cr_expect(health_app_result(&s, false));
    cr_expect_not(health_app_result(&s, false), "three in a row close it");
    cr_expect_not(health_app_result(&s, true), "one success after a fall is not enough");
    cr_expect_not(health_app_result(&s, false), "and a failure resets the rise count");
    cr_expect_not(health_app_result(&s, true));
    cr_expect(health_app_result(&s, true), "two in a row reopen it");
}

Test(health_probe_parse, good)
{
    struct health_probe_spec s;
    char err[256];
    cr_assert_eq(health_probe_parse("none", &s, err, sizeof(err)), 0);
    cr_assert_eq(s.kind, HEALTH_PROBE_NONE);
    cr_assert_eq(health_probe_parse(NULL, &s, err, sizeof(err)), 0);
    cr_assert_eq(s.kind, HEALTH_PROBE_NONE);

    cr_assert_eq(health_probe_parse("prisma:/data/sqlite.db:/app/prisma/migrations", &s, err, sizeof(err)),
                 0);
    cr_assert_eq(s.kind, HEALTH_PROBE_PRISMA);
    cr_assert_str_eq(s.db, "/data/sqlite.db");
    cr_assert_str_eq(s.dir, "/app/prisma/migrations");
    health_probe_spec_free(&s);

    cr_assert_eq(health_probe_parse("command:npx prisma migrate status", &s, err, sizeof(err)), 0);
    cr_assert_eq(s.kind, HEALTH_PROBE_COMMAND);
    cr_assert_str_eq(s.arg, "npx prisma migrate status");
    health_probe_spec_free(&s);

    cr_assert_eq(health_probe_parse("http:http://127.0.0.1:3000/migrations?x=1", &s, err, sizeof(err)), 0);
    cr_assert_eq(s.kind, HEALTH_PROBE_HTTP);
    cr_assert_str_eq(s.arg, "http://127.0.0.1:3000/migrations?x=1");
    health_probe_spec_free(&s);
    cr_assert_str_eq(health_probe_kind_str(HEALTH_PROBE_HTTP), "http");
}

Test(health_probe_parse, bad)
{
    static const char *const bad[] = {
        "prisma",        "prisma:",         "prisma:/db",       "prisma::/dir",
        "prisma:/db:",   "command:",        "command:   ",      "http:",
        "http:ftp://x/", "http:https://x/", "http:http://:80/", "http:http://h:99999/",
        "sql:/x",        "Prisma:/a:/b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct health_probe_spec s;
        char err[256] = "";
        cr_assert_eq(health_probe_parse(bad[i], &s, err, sizeof(err)), -1, "%s accepted", bad[i]);
        cr_assert(strstr(err, "--migrations"), "%s: message \"%s\" does not name the flag", bad[i], err);
    }
}

Test(health_http, parse_url)
{
    char host[64], path[64];
    int port;
    const char *why;
    cr_assert_eq(health_http_parse_url("http://127.0.0.1:8080/x/y?z", host, sizeof(host), &port, path,
                                       sizeof(path), &why),
                 0);
    cr_assert_str_eq(host, "127.0.0.1");
    cr_assert_eq(port, 8080);
    cr_assert_str_eq(path, "/x/y?z");
    cr_assert_eq(health_http_parse_url("http://app", host, sizeof(host), &port, path, sizeof(path), &why), 0);
    cr_assert_str_eq(host, "app");
    cr_assert_eq(port, 80);
    cr_assert_str_eq(path, "/");
    cr_assert_eq(
        health_http_parse_url("http://[::1]:3000/h", host, sizeof(host), &port, path, sizeof(path), &why), 0);
    cr_assert_str_eq(host, "::1");
    cr_assert_eq(port, 3000);
    cr_assert_eq(health_http_parse_url("http://h:0/", host, sizeof(host), &port, path, sizeof(path), &why),
                 -1);
    cr_assert_eq(health_http_parse_url("http://h:12x/", host, sizeof(host), &port, path, sizeof(path), &why),
                 -1);
}
