/*
 * Request-head checks and rewriting (SPEC §3): the raw-line scanner that
 * catches what llhttp 8.1 lets through, header validation, hop-by-hop
 * stripping, X-Forwarded-*, and our own response fields.
 */
#include <criterion/criterion.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy_http.h"

static enum head_scan_result scan_all(const char *s)
{
    uint8_t st = HEAD_SCAN_START;
    return proxy_http_scan_head(&st, s, strlen(s));
}

/* Feed the same bytes split at every position: the result must not depend on the split. */
static enum head_scan_result scan_split(const char *s, size_t at)
{
    uint8_t st = HEAD_SCAN_START;
    enum head_scan_result r = proxy_http_scan_head(&st, s, at);
    if (r != HEAD_SCAN_OK)
        return r;
    return proxy_http_scan_head(&st, s + at, strlen(s) - at);
}

Test(scan, accepts_good_heads_and_ignores_the_body)
{
    cr_expect_eq(scan_all("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), HEAD_SCAN_OK);
    cr_expect_eq(scan_all("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\na\n b\n"), HEAD_SCAN_OK);
}

Test(scan, rejects_obs_fold_and_bare_lf_at_any_split)
{
    const char *fold = "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n";
    const char *tabfold = "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\t2\r\n\r\n";
    const char *lf = "GET / HTTP/1.1\nHost: a\n\n";
    const char *lf2 = "GET / HTTP/1.1\r\nHost: a\n\r\n";
    const char *good = "GET / HTTP/1.1\r\nHost: a\r\nX: 1 2\r\n\r\n";
    for (size_t i = 0; i <= strlen(fold); i++)
        cr_expect_eq(scan_split(fold, i), HEAD_SCAN_OBS_FOLD, "split %zu", i);
    for (size_t i = 0; i <= strlen(tabfold); i++)
        cr_expect_eq(scan_split(tabfold, i), HEAD_SCAN_OBS_FOLD, "split %zu", i);
    for (size_t i = 0; i <= strlen(lf); i++)
        cr_expect_eq(scan_split(lf, i), HEAD_SCAN_BARE_LF, "split %zu", i);
    for (size_t i = 0; i <= strlen(lf2); i++)
        cr_expect_eq(scan_split(lf2, i), HEAD_SCAN_BARE_LF, "split %zu", i);
    for (size_t i = 0; i <= strlen(good); i++)
        cr_expect_eq(scan_split(good, i), HEAD_SCAN_OK, "split %zu", i);
}

static struct head *mkhead(const char *url, const char *const *fields)
{
    struct head *h = calloc(1, sizeof(*h));
    cr_assert(h);
    cr_assert_eq(proxy_head_span(h, &h->url_off, &h->url_len, url, strlen(url)), 0);
    for (size_t i = 0; fields[i]; i += 2) {
        cr_assert_eq(proxy_head_field(h, fields[i], strlen(fields[i])), 0);
        cr_assert_eq(proxy_head_value(h, fields[i + 1], strlen(fields[i + 1])), 0);
    }
    return h;
}

static char *drain(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    return s;
}

Test(facts, validation)
{
    struct req_facts f;
    const char *ok[] = {"Host", "a.example:8080", "Content-Length", "12", NULL};
    struct head *h = mkhead("/p?q=1", ok);
    proxy_http_request_facts(h, 1, &f);
    cr_expect_null(f.bad);
    cr_expect_eq(f.path_len, 2);
    cr_expect(f.has_cl);
    proxy_head_free(h);

    const char *const bad[][8] = {
        {"X-A", "1", NULL},                          /* no Host on 1.1 */
        {"Host", "a", "Host", "b", NULL},            /* two Hosts */
        {"Host", "a b", NULL},                       /* invalid Host */
        {"Host", "a", "Content-Length", "+5", NULL}, /* signed CL */
        {"Host", "a", "Content-Length", "", NULL},   /* empty CL */
        {"Host", "a", "Content-Length", "5", "Content-Length", "5", NULL},
        {"Host", "a", "Transfer-Encoding", "gzip, chunked", NULL}, /* only chunked alone */
        {"Host", "a", "Transfer-Encoding", ",chunked", NULL},
        {"Host", "a", "X(A)", "1", NULL},   /* not a token */
        {"Host", "a", "X-A", "a\rb", NULL}, /* CR in a value */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        h = mkhead("/", bad[i]);
        proxy_http_request_facts(h, 1, &f);
        cr_expect_not_null(f.bad, "case %zu should be refused", i);
        proxy_head_free(h);
    }
    const char *te10[] = {"Host", "a", "Transfer-Encoding", "chunked", NULL};
    h = mkhead("/", te10);
    proxy_http_request_facts(h, 0, &f);
    cr_expect_not_null(f.bad, "TE on HTTP/1.0");
    proxy_head_free(h);
}

Test(rewrite, request_strips_hop_by_hop_and_adds_forwarding_fields)
{
    const char *fields[] = {"Host",
                            "app.example",
                            "Connection",
                            "keep-alive, X-Secret",
                            "X-Secret",
                            "s",
                            "Keep-Alive",
                            "timeout=5",
                            "TE",
                            "trailers",
                            "Proxy-Authorization",
                            "Basic x",
                            "Leaseway-Forwarded-By",
                            "evil",
                            "Fly-Primary-Instance",
                            "forged",
                            "X-Forwarded-For",
                            "10.0.0.1",
                            "X-Forwarded-For",
                            "10.0.0.2",
                            "Accept",
                            "*/*",
                            NULL};
    struct head *h = mkhead("/x?y", fields);
    struct evbuffer *b = evbuffer_new();
    struct req_rewrite rw = {
        .method = "POST", .method_len = 4, .client_ip = "192.0.2.7", .primary_id = "p1", .chunked = true};
    cr_assert_eq(proxy_http_write_request(b, h, &rw), 0);
    char *s = drain(b);
    cr_expect(strncmp(s, "POST /x?y HTTP/1.1\r\n", 20) == 0, "%s", s);
    cr_expect(strstr(s, "Host: app.example\r\n"));
    cr_expect(strstr(s, "Accept: */*\r\n"));
    cr_expect(!strstr(s, "X-Secret"), "a field named by Connection crossed: %s", s);
    cr_expect(!strstr(s, "Keep-Alive"));
    cr_expect(!strstr(s, "TE: trailers"));
    cr_expect(!strstr(s, "Proxy-Authorization"));
    cr_expect(!strstr(s, "evil"));
    cr_expect(!strstr(s, "forged"));
    cr_expect(strstr(s, "X-Forwarded-For: 10.0.0.1, 10.0.0.2, 192.0.2.7\r\n"), "%s", s);
    cr_expect(strstr(s, "X-Forwarded-Proto: http\r\n"));
    cr_expect(strstr(s, "X-Forwarded-Host: app.example\r\n"));
    cr_expect(strstr(s, "Fly-Primary-Instance: p1\r\n"));
    cr_expect(strstr(s, "Transfer-Encoding: chunked\r\n"));
    cr_expect(!strstr(s, "Connection:"));
    cr_expect(strcmp(s + strlen(s) - 4, "\r\n\r\n") == 0);
    free(s);

    /* to a peer: who forwarded it and the token */
    struct req_rewrite peer = rw;
    peer.forwarded_by = "r1";
    peer.peer_token = "123.abc";
    cr_assert_eq(proxy_http_write_request(b, h, &peer), 0);
    s = drain(b);
    cr_expect(strstr(s, "Leaseway-Forwarded-By: r1\r\n"));
    cr_expect(strstr(s, "Leaseway-Peer-Auth: 123.abc\r\n"));
    free(s);
    evbuffer_free(b);
    proxy_head_free(h);
}

Test(rewrite, response_restamps_fly_fields_and_sets_the_write_cookie)
{
    const char *fields[] = {"Content-Length", "2",          "Fly-Instance", "app-said", "Connection",
                            "close",          "Set-Cookie", "a=b",          NULL};
    struct head *h = mkhead("", fields);
    struct evbuffer *b = evbuffer_new();
    struct resp_rewrite rw = {.status = 201,
                              .client_minor = 1,
                              .framing = BODY_LENGTH,
                              .keepalive = true,
                              .primary_id = "p1",
                              .instance = "r2",
                              .region = "ams",
                              .cookie_ms = 1700000000123,
                              .cookie_max_age_s = 2};
    cr_assert_eq(proxy_http_write_response(b, h, &rw), 0);
    char *s = drain(b);
    cr_expect(strncmp(s, "HTTP/1.1 201 Created", 12) == 0, "%s", s);
    cr_expect(strstr(s, "Content-Length: 2\r\n"));
    cr_expect(strstr(s, "Fly-Primary-Instance: p1\r\n"));
    cr_expect(strstr(s, "Fly-Instance: r2\r\n"));
    cr_expect(!strstr(s, "app-said"));
    cr_expect(strstr(s, "Fly-Region: ams\r\n"));
    cr_expect(strstr(s, "Set-Cookie: a=b\r\n"));
    cr_expect(
        strstr(s, "Set-Cookie: leaseway_wrote=1700000000123; Path=/; Max-Age=2; HttpOnly; SameSite=Lax\r\n"),
        "%s", s);
    cr_expect(!strstr(s, "Connection:"), "keep-alive to an HTTP/1.1 client needs no Connection field");
    free(s);
    evbuffer_free(b);
    proxy_head_free(h);
}

Test(rewrite, chunk_header)
{
    char buf[24];
    size_t n = proxy_http_chunk_header(buf, 0x1a2b);
    cr_expect_eq(n, 6);
    cr_expect(memcmp(buf, "1a2b\r\n", 6) == 0);
    n = proxy_http_chunk_header(buf, 0);
    cr_expect(memcmp(buf, "0\r\n", 3) == 0 && n == 3);
}
