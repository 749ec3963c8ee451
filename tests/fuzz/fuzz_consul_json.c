/*
 * fuzz_consul_json: one Consul reply body through every decoder leaseway has for one
 * (consul/consul-int.h): KV entries (and the lease value inside, as the watch decodes it),
 * the lease value alone, session create and renew replies, acquire/release booleans,
 * base64, Go durations, and the health-service listing that `leaseway status` turns into
 * rows, a table and --json (consul/consul_status.c, included to reach its static helpers).
 *
 * Besides ASan/UBSan/LeakSanitizer, what a decoder accepts must be usable as its contract
 * says: NUL-terminated IDs that fit, printable lease fields, a positive TTL, and a --json
 * listing that is valid JSON with one object per instance Consul listed.
 */
#include "consul/consul_status.c"

#include "fuzz.h"

#define SESSION_ID_MAX 64 /* as consul_agent.c */

static void check_printable(const char *s, const char *what)
{
    for (; *s; s++)
        FUZZ_CHECK((unsigned char)*s >= 0x21 && *s != 0x7f, "control byte in %s", what);
}

static void lease_value(const char *v, size_t len)
{
    struct consul_lease_value lv;
    const char *err = NULL;
    if (consul_lease_value_decode(v, len, &lv, &err) < 0) {
        FUZZ_CHECK(err != NULL, "lease value refused without a reason");
        return;
    }
    FUZZ_CHECK(memchr(lv.hostname, '\0', sizeof(lv.hostname)) && lv.hostname[0], "hostname");
    FUZZ_CHECK(memchr(lv.advertise_url, '\0', sizeof(lv.advertise_url)), "advertise-url");
    check_printable(lv.hostname, "the lease hostname");
    check_printable(lv.advertise_url, "the lease advertise-url");
}

static void kv(const char *body, size_t len)
{
    struct consul_kv e;
    const char *err = NULL;
    if (consul_kv_decode(body, len, &e, &err) < 0) {
        FUZZ_CHECK(err != NULL && e.value == NULL, "KV refused without a reason, or kept a value");
        return;
    }
    FUZZ_CHECK(memchr(e.session, '\0', sizeof(e.session)), "session not terminated");
    if (e.value) {
        FUZZ_CHECK(e.value[e.value_len] == '\0', "value not terminated");
        lease_value(e.value, e.value_len); /* what the watch does with the lease key */
    }
    consul_kv_clear(&e);
}

/* `leaseway status`: rows, the table and --json, as consul_status_main() makes them. */
static void status_listing(const char *body, size_t len)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (!json_is_array(root)) {
        json_decref(root);
        return;
    }
    size_t n = json_array_size(root), i;
    struct row *rows = calloc(n ? n : 1, sizeof(*rows));
    json_t *v;
    FUZZ_CHECK(rows, "out of memory");
    json_array_foreach(root, i, v)
    {
        fill_row(v, &rows[i]);
        snprintf(rows[i].role, sizeof(rows[i].role), "%s",
                 strcmp(rows[i].id, "i1") == 0 ? "primary" : "replica");
    }
    qsort(rows, n, sizeof(*rows), row_cmp);

    FILE *saved = stdout;
    char *out = NULL;
    size_t out_len = 0;
    stdout = open_memstream(&out, &out_len);
    FUZZ_CHECK(stdout, "open_memstream");
    if (n)
        print_table(rows, n, "svc");
    fclose(stdout);
    free(out);

    out = NULL;
    stdout = open_memstream(&out, &out_len);
    FUZZ_CHECK(stdout, "open_memstream");
    int rc = print_json(rows, n);
    fclose(stdout);
    stdout = saved;
    FUZZ_CHECK(rc == 0, "print_json failed");
    json_t *printed = json_loadb(out, out_len, 0, &jerr);
    FUZZ_CHECK(json_is_array(printed), "--json printed invalid JSON: %s", jerr.text);
    FUZZ_CHECK(json_array_size(printed) == n, "--json lists %zu of %zu instances", json_array_size(printed),
               n);
    json_decref(printed);
    free(out);
    free(rows);
    json_decref(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    const char *err = NULL;

    kv(body, size);
    lease_value(body, size);

    char id[SESSION_ID_MAX];
    if (consul_session_id_decode(body, size, id, sizeof(id), &err) == 0) {
        FUZZ_CHECK(memchr(id, '\0', sizeof(id)) && id[0], "session ID");
        check_printable(id, "the session ID");
    }
    int64_t ttl = 0;
    if (consul_renew_ttl_decode(body, size, &ttl, &err) == 0)
        FUZZ_CHECK(ttl > 0, "TTL %lld accepted", (long long)ttl);
    bool b;
    (void)consul_bool_decode(body, size, &b);

    char *raw = NULL;
    size_t raw_len = 0;
    if (consul_b64_decode(body, size, &raw, &raw_len) == 0) {
        FUZZ_CHECK(raw_len <= size / 4 * 3 && raw[raw_len] == '\0', "base64 output length %zu", raw_len);
        free(raw);
    }

    char *s = malloc(size + 1);
    FUZZ_CHECK(s, "out of memory");
    memcpy(s, data, size);
    s[size] = '\0';
    int64_t ms = consul_duration_ms(s);
    FUZZ_CHECK(ms >= -1, "duration %lld", (long long)ms);
    free(s);

    status_listing(body, size);
    return 0;
}
