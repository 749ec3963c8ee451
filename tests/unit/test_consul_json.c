/*
 * consul/ decoding: base64, KV entries, the lease value, session replies,
 * Go durations and URL helpers. Every input here is what a hostile or
 * broken Consul (or another lease writer) could send.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "consul/consul-int.h"

static char *b64(const char *s)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s), o = 0;
    char *out = malloc(n / 3 * 4 + 5);
    const unsigned char *p = (const unsigned char *)s;

    for (size_t i = 0; i < n; i += 3) {
        unsigned v = p[i] << 16 | (i + 1 < n ? p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        out[o++] = tbl[v >> 18 & 63];
        out[o++] = tbl[v >> 12 & 63];
        out[o++] = i + 1 < n ? tbl[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? tbl[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

Test(consul_b64, decodes_with_and_without_padding)
{
    const char *cases[] = {"", "a", "ab", "abc", "abcd", "{\"hostname\":\"x\"}"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *enc = b64(cases[i]), *dec = NULL;
        size_t len = 0;
        cr_assert_eq(consul_b64_decode(enc, strlen(enc), &dec, &len), 0, "case %zu", i);
        cr_assert_eq(len, strlen(cases[i]));
        cr_assert_str_eq(dec, cases[i]);
        free(dec);
        free(enc);
    }
}

Test(consul_b64, rejects_garbage)
{
    const char *bad[] = {"abc", "ab=c", "a===", "ab!d", "YQ==YQ==", "YQ= ", "Y\nQ="};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *dec = NULL;
        size_t len;
        cr_assert_eq(consul_b64_decode(bad[i], strlen(bad[i]), &dec, &len), -1, "accepted %s", bad[i]);
        cr_assert_null(dec);
    }
}

Test(consul_b64, binary_with_nul)
{
    char *dec;
    size_t len;
    cr_assert_eq(consul_b64_decode("AAEA", 4, &dec, &len), 0);
    cr_assert_eq(len, 3);
    cr_assert_eq(dec[0], 0);
    cr_assert_eq(dec[1], 1);
    free(dec);
}

static char *kv_body(const char *session, const char *value)
{
    char *enc = value ? b64(value) : NULL;
    char *out;
    int n = asprintf(&out,
                     "[{\"LockIndex\":3,\"Key\":\"leaseway/primary\",\"Flags\":0,\"Value\":%s%s%s,%s%s%s"
                     "\"CreateIndex\":10,\"ModifyIndex\":42}]",
                     enc ? "\"" : "", enc ? enc : "null", enc ? "\"" : "", session ? "\"Session\":\"" : "",
                     session ? session : "", session ? "\"," : "");
    cr_assert(n > 0);
    free(enc);
    return out;
}

Test(consul_kv, decodes_a_held_lease)
{
    char *body = kv_body("adf4238a-882b-9ddc-4a9d-5b6758e4159e",
                         "{\"hostname\":\"node-a\",\"advertise-url\":\"http://10.0.0.1:8080\"}");
    struct consul_kv kv;
    struct consul_lease_value lv;
    const char *err = NULL;

    cr_assert_eq(consul_kv_decode(body, strlen(body), &kv, &err), 0, "%s", err);
    cr_assert(kv.exists);
    cr_assert_eq(kv.modify_index, 42);
    cr_assert_eq(kv.lock_index, 3);
    cr_assert_str_eq(kv.session, "adf4238a-882b-9ddc-4a9d-5b6758e4159e");
    cr_assert_eq(consul_lease_value_decode(kv.value, kv.value_len, &lv, &err), 0, "%s", err);
    cr_assert_str_eq(lv.hostname, "node-a");
    cr_assert_str_eq(lv.advertise_url, "http://10.0.0.1:8080");
    consul_kv_clear(&kv);
    free(body);
}

Test(consul_kv, released_key_has_no_session)
{
    char *body = kv_body(NULL, "{\"hostname\":\"node-a\",\"advertise-url\":\"http://x:1\"}");
    struct consul_kv kv;
    const char *err = NULL;

    cr_assert_eq(consul_kv_decode(body, strlen(body), &kv, &err), 0);
    cr_assert(kv.exists);
    cr_assert_str_eq(kv.session, "");
    consul_kv_clear(&kv);
    free(body);
}

Test(consul_kv, null_value_and_empty_array)
{
    char *body = kv_body("s", NULL);
    struct consul_kv kv;
    const char *err = NULL;

    cr_assert_eq(consul_kv_decode(body, strlen(body), &kv, &err), 0);
    cr_assert(kv.exists);
    cr_assert_null(kv.value);
    consul_kv_clear(&kv);
    free(body);
    cr_assert_eq(consul_kv_decode("[]", 2, &kv, &err), 0);
    cr_assert_not(kv.exists);
}

Test(consul_kv, malformed_replies_are_refused)
{
    const char *bad[] = {
        "",
        "{",
        "null",
        "{\"Key\":\"x\"}",
        "[1]",
        "[{\"Key\":\"x\"}]",                        /* no ModifyIndex */
        "[{\"ModifyIndex\":-1}]",                   /* negative */
        "[{\"ModifyIndex\":1,\"Session\":5}]",      /* wrong type */
        "[{\"ModifyIndex\":1,\"Value\":\"!!!!\"}]", /* bad base64 */
        "[{\"ModifyIndex\":1,\"Value\":7}]",        /* wrong type */
        "[{\"ModifyIndex\":1,\"ModifyIndex\":2}]",  /* duplicate keys */
        "[{\"ModifyIndex\":1,\"Session\":\""
        "0123456789012345678901234567890123456789012345678901234567890123456789\"}]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct consul_kv kv;
        const char *err = NULL;
        cr_assert_eq(consul_kv_decode(bad[i], strlen(bad[i]), &kv, &err), -1, "accepted #%zu %s", i, bad[i]);
        cr_assert_not_null(err);
        cr_assert_null(kv.value);
    }
}

Test(consul_kv, oversized_body_is_refused)
{
    size_t n = CONSUL_BODY_MAX + 10;
    char *big = malloc(n + 1);
    struct consul_kv kv;
    const char *err = NULL;

    memset(big, ' ', n);
    big[0] = '[';
    big[n - 1] = ']';
    big[n] = '\0';
    cr_assert_eq(consul_kv_decode(big, n, &kv, &err), -1);
    cr_assert_str_eq(err, "body too large");
    free(big);
}

Test(consul_lease_value, litefs_shape_and_errors)
{
    struct consul_lease_value lv;
    const char *err;
    const char *ok =
        "{\"hostname\":\"e784ee7b\",\"advertise-url\":\"http://e784ee7b.vm.app.internal:20202\"}";
    char longname[300];

    cr_assert_eq(consul_lease_value_decode(ok, strlen(ok), &lv, &err), 0);
    cr_assert_str_eq(lv.hostname, "e784ee7b");
    /* advertise-url is optional (a template may supply the URL) */
    cr_assert_eq(consul_lease_value_decode("{\"hostname\":\"a\"}", 16, &lv, &err), 0);
    cr_assert_str_eq(lv.advertise_url, "");

    const char *bad[] = {"",
                         "x",
                         "[]",
                         "{}",
                         "{\"hostname\":\"\"}",
                         "{\"hostname\":3}",
                         "{\"hostname\":\"a b\"}",
                         "{\"hostname\":\"a\\r\\nX-Evil: 1\"}",
                         "{\"hostname\":\"a\",\"advertise-url\":5}",
                         "{\"hostname\":\"a\",\"advertise-url\":\"http://x\\n\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(consul_lease_value_decode(bad[i], strlen(bad[i]), &lv, &err), -1, "accepted %s", bad[i]);
    cr_assert_eq(consul_lease_value_decode(NULL, 0, &lv, &err), -1);

    memset(longname, 'a', sizeof(longname));
    snprintf(longname, sizeof(longname), "{\"hostname\":\"%0200d\"}", 0);
    cr_assert_eq(consul_lease_value_decode(longname, strlen(longname), &lv, &err), -1);
}

Test(consul_lease_value, huge_value_is_refused)
{
    size_t n = 70 * 1024;
    char *v = malloc(n + 1);
    struct consul_lease_value lv;
    const char *err;

    memset(v, ' ', n);
    memcpy(v, "{\"hostname\":\"a\"}", 16);
    v[n] = '\0';
    cr_assert_eq(consul_lease_value_decode(v, n, &lv, &err), -1);
    free(v);
}

Test(consul_lease_value, encode_roundtrip)
{
    char *s = consul_lease_value_encode("node\"1", "http://h:1");
    struct consul_lease_value lv;
    const char *err;

    cr_assert_str_eq(s, "{\"hostname\":\"node\\\"1\",\"advertise-url\":\"http://h:1\"}");
    cr_assert_eq(consul_lease_value_decode(s, strlen(s), &lv, &err), 0);
    cr_assert_str_eq(lv.hostname, "node\"1");
    free(s);
}

/* tests/fuzz/corpus/fuzz_parsers/regress-lease-value-not-utf8: no value rather than one without the URL */
Test(consul_lease_value, encode_refuses_what_json_cannot_carry)
{
    cr_assert_null(consul_lease_value_encode("i1", "http://h\xb3st:8080"));
    cr_assert_null(consul_lease_value_encode("i\xff", "http://h:1"));
}

Test(consul_session, create_renew_and_bool_replies)
{
    char id[64];
    const char *err;
    int64_t ttl;
    bool b;
    const char *create = "{\"ID\":\"adf4238a-882b-9ddc-4a9d-5b6758e4159e\"}";
    const char *renew = "[{\"ID\":\"x\",\"TTL\":\"20s\",\"Behavior\":\"delete\"}]";

    cr_assert_eq(consul_session_id_decode(create, strlen(create), id, sizeof(id), &err), 0);
    cr_assert_str_eq(id, "adf4238a-882b-9ddc-4a9d-5b6758e4159e");
    cr_assert_eq(consul_session_id_decode("{}", 2, id, sizeof(id), &err), -1);
    cr_assert_eq(consul_session_id_decode("{\"ID\":\"\"}", 9, id, sizeof(id), &err), -1);
    cr_assert_eq(consul_session_id_decode("{\"ID\":\"a\"}", 10, id, 1, &err), -1);
    cr_assert_eq(consul_renew_ttl_decode(renew, strlen(renew), &ttl, &err), 0);
    cr_assert_eq(ttl, 20000);
    cr_assert_eq(consul_renew_ttl_decode("[]", 2, &ttl, &err), -1);
    cr_assert_eq(consul_renew_ttl_decode("[{\"TTL\":\"\"}]", 12, &ttl, &err), -1);
    cr_assert_eq(consul_bool_decode("true", 4, &b), 0);
    cr_assert(b);
    cr_assert_eq(consul_bool_decode("false\n", 6, &b), 0);
    cr_assert_not(b);
    cr_assert_eq(consul_bool_decode("rpc error: invalid session", 26, &b), -1);
    cr_assert_eq(consul_bool_decode("", 0, &b), -1);
}

Test(consul_duration, go_durations)
{
    cr_assert_eq(consul_duration_ms("10s"), 10000);
    cr_assert_eq(consul_duration_ms("1.5s"), 1500);
    cr_assert_eq(consul_duration_ms("300ms"), 300);
    cr_assert_eq(consul_duration_ms("5m"), 300000);
    cr_assert_eq(consul_duration_ms("1h2m"), 3720000);
    cr_assert_eq(consul_duration_ms("1m30s"), 90000);
    cr_assert_eq(consul_duration_ms("0"), 0);
    cr_assert_eq(consul_duration_ms("0s"), 0);
    cr_assert_eq(consul_duration_ms(""), -1);
    cr_assert_eq(consul_duration_ms("10"), -1);
    cr_assert_eq(consul_duration_ms("s"), -1);
    cr_assert_eq(consul_duration_ms("10x"), -1);
    cr_assert_eq(consul_duration_ms("-1s"), -1);
    /* strtod() reads these: tests/fuzz/corpus/fuzz_consul_json/regress-duration-nan */
    cr_assert_eq(consul_duration_ms("nans"), -1);
    cr_assert_eq(consul_duration_ms("1snanms"), -1);
    cr_assert_eq(consul_duration_ms("infs"), -1);
    char buf[32];
    consul_duration_fmt(10000, buf, sizeof(buf));
    cr_assert_str_eq(buf, "10s");
    consul_duration_fmt(1500, buf, sizeof(buf));
    cr_assert_str_eq(buf, "1500ms");
}

Test(consul_url, host_port_and_template)
{
    char host[64], out[64];
    int port;

    cr_assert_eq(consul_url_host_port("http://10.0.0.1:8080", host, sizeof(host), &port), 0);
    cr_assert_str_eq(host, "10.0.0.1");
    cr_assert_eq(port, 8080);
    cr_assert_eq(consul_url_host_port("https://app.internal/x", host, sizeof(host), &port), 0);
    cr_assert_str_eq(host, "app.internal");
    cr_assert_eq(port, 443);
    cr_assert_eq(consul_url_host_port("http://[fdaa::3]:8080/", host, sizeof(host), &port), 0);
    cr_assert_str_eq(host, "fdaa::3");
    cr_assert_eq(port, 8080);
    cr_assert_eq(consul_url_host_port("ftp://x", host, sizeof(host), &port), -1);
    cr_assert_eq(consul_url_host_port("http://:80", host, sizeof(host), &port), -1);
    cr_assert_eq(consul_url_host_port("http://h:99999", host, sizeof(host), &port), -1);
    cr_assert_eq(consul_url_host_port("http://h:8x", host, sizeof(host), &port), -1);

    cr_assert_eq(consul_url_template("http://{id}.vm.app.internal:8080", "e784", out, sizeof(out)), 0);
    cr_assert_str_eq(out, "http://e784.vm.app.internal:8080");
    cr_assert_eq(consul_url_template("{id}-{id}", "a", out, sizeof(out)), 0);
    cr_assert_str_eq(out, "a-a");
    cr_assert_eq(consul_url_template("http://{id}",
                                     "0123456789012345678901234567890123456789012345678901234567890", out,
                                     sizeof(out)),
                 -1);
}

Test(consul_url, escape_key)
{
    char *k = consul_escape_key("service/app x/primary?");
    cr_assert_str_eq(k, "service/app%20x/primary%3F");
    free(k);
}
