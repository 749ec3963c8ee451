/*
 * Decoding what Consul sends back (KV entries, the lease value, session
 * replies) with jansson, and encoding the lease value. Pure functions: every
 * input is untrusted, every failure is a constant error string.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "consul/consul-int.h"

#define LEASE_VALUE_MAX (64 * 1024) /* a lease value is two short strings */

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int consul_b64_decode(const char *in, size_t len, char **out, size_t *out_len)
{
    char *buf;
    size_t o = 0;

    if (len % 4 != 0)
        return -1;
    buf = malloc(len / 4 * 3 + 1);
    if (buf == NULL)
        return -1;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int pad = 0;

        for (int j = 0; j < 4; j++) {
            unsigned char c = (unsigned char)in[i + j];
            if (c == '=' && i + 4 == len && j >= 2) {
                v[j] = 0;
                pad++;
            } else if (pad > 0 || (v[j] = b64_val(c)) < 0) {
                goto fail; /* bad character, or data after padding */
            }
        }
        buf[o++] = (char)(v[0] << 2 | v[1] >> 4);
        if (pad < 2)
            buf[o++] = (char)((v[1] & 0xf) << 4 | v[2] >> 2);
        if (pad < 1)
            buf[o++] = (char)((v[2] & 0x3) << 6 | v[3]);
    }
    buf[o] = '\0';
    *out = buf;
    *out_len = o;
    return 0;
fail:
    free(buf);
    return -1;
}

static json_t *parse(const char *body, size_t len, const char **err)
{
    json_error_t jerr;
    json_t *root;

    if (len > CONSUL_BODY_MAX) {
        *err = "body too large";
        return NULL;
    }
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        *err = "malformed JSON";
    return root;
}

void consul_kv_clear(struct consul_kv *kv)
{
    free(kv->value);
    memset(kv, 0, sizeof(*kv));
}

static int get_index(json_t *obj, const char *name, uint64_t *out)
{
    json_t *v = json_object_get(obj, name);

    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

int consul_kv_decode(const char *body, size_t len, struct consul_kv *kv, const char **err)
{
    json_t *root, *e, *v;
    int rc = -1;

    memset(kv, 0, sizeof(*kv));
    root = parse(body, len, err);
    if (root == NULL)
        return -1;
    if (!json_is_array(root)) {
        *err = "KV reply is not an array";
        goto out;
    }
    if (json_array_size(root) == 0) {
        rc = 0; /* exists = false */
        goto out;
    }
    e = json_array_get(root, 0);
    if (!json_is_object(e)) {
        *err = "KV entry is not an object";
        goto out;
    }
    if (get_index(e, "ModifyIndex", &kv->modify_index) < 0) {
        *err = "KV entry without ModifyIndex";
        goto out;
    }
    if (get_index(e, "LockIndex", &kv->lock_index) < 0)
        kv->lock_index = 0;
    v = json_object_get(e, "Session");
    if (json_is_string(v)) {
        if (json_string_length(v) >= sizeof(kv->session)) {
            *err = "KV Session too long";
            goto out;
        }
        memcpy(kv->session, json_string_value(v), json_string_length(v) + 1);
    } else if (v != NULL && !json_is_null(v)) {
        *err = "KV Session is not a string";
        goto out;
    }
    v = json_object_get(e, "Value");
    if (json_is_string(v)) {
        if (consul_b64_decode(json_string_value(v), json_string_length(v), &kv->value, &kv->value_len) < 0) {
            *err = "KV Value is not valid base64";
            goto out;
        }
    } else if (v != NULL && !json_is_null(v)) {
        *err = "KV Value is not a string";
        goto out;
    }
    kv->exists = true;
    rc = 0;
out:
    json_decref(root);
    if (rc < 0)
        consul_kv_clear(kv);
    return rc;
}

/* Printable, no control bytes: it ends up in response headers and logs. */
static bool header_safe(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || *s == 0x7f)
            return false;
    return true;
}

int consul_lease_value_decode(const char *value, size_t len, struct consul_lease_value *lv, const char **err)
{
    json_t *root, *h, *u;
    int rc = -1;

    memset(lv, 0, sizeof(*lv));
    if (value == NULL || len == 0) {
        *err = "empty lease value";
        return -1;
    }
    if (len > LEASE_VALUE_MAX) {
        *err = "lease value too large";
        return -1;
    }
    root = parse(value, len, err);
    if (root == NULL)
        return -1;
    if (!json_is_object(root)) {
        *err = "lease value is not an object";
        goto out;
    }
    h = json_object_get(root, "hostname");
    if (!json_is_string(h) || json_string_length(h) == 0) {
        *err = "lease value without hostname";
        goto out;
    }
    if (json_string_length(h) >= sizeof(lv->hostname) || !header_safe(json_string_value(h))) {
        *err = "lease hostname too long or not printable";
        goto out;
    }
    memcpy(lv->hostname, json_string_value(h), json_string_length(h) + 1);
    u = json_object_get(root, "advertise-url");
    if (json_is_string(u)) {
        if (json_string_length(u) >= sizeof(lv->advertise_url) || !header_safe(json_string_value(u))) {
            *err = "lease advertise-url too long or not printable";
            goto out;
        }
        memcpy(lv->advertise_url, json_string_value(u), json_string_length(u) + 1);
    } else if (u != NULL && !json_is_null(u)) {
        *err = "lease advertise-url is not a string";
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

char *consul_lease_value_encode(const char *hostname, const char *advertise_url)
{
    json_t *o = json_object();
    char *s;

    if (o == NULL)
        return NULL;
    /* a string that is not UTF-8 has no JSON form: fail rather than write a value without it */
    if (json_object_set_new(o, "hostname", json_string(hostname)) < 0 ||
        json_object_set_new(o, "advertise-url", json_string(advertise_url)) < 0) {
        json_decref(o);
        return NULL;
    }
    s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

int consul_session_id_decode(const char *body, size_t len, char *id, size_t idsz, const char **err)
{
    json_t *root, *v;
    int rc = -1;

    root = parse(body, len, err);
    if (root == NULL)
        return -1;
    v = json_object_get(root, "ID");
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= idsz ||
        !header_safe(json_string_value(v))) {
        *err = "session create reply without a usable ID";
        goto out;
    }
    memcpy(id, json_string_value(v), json_string_length(v) + 1);
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int consul_renew_ttl_decode(const char *body, size_t len, int64_t *ttl_ms, const char **err)
{
    json_t *root, *e, *v;
    int rc = -1;

    root = parse(body, len, err);
    if (root == NULL)
        return -1;
    e = json_is_array(root) ? json_array_get(root, 0) : NULL;
    v = json_is_object(e) ? json_object_get(e, "TTL") : NULL;
    if (!json_is_string(v) || (*ttl_ms = consul_duration_ms(json_string_value(v))) <= 0) {
        *err = "renew reply without a usable TTL";
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int consul_bool_decode(const char *body, size_t len, bool *out)
{
    while (len > 0 && isspace((unsigned char)body[len - 1]))
        len--;
    while (len > 0 && isspace((unsigned char)*body))
        body++, len--;
    if (len == 4 && memcmp(body, "true", 4) == 0) {
        *out = true;
        return 0;
    }
    if (len == 5 && memcmp(body, "false", 5) == 0) {
        *out = false;
        return 0;
    }
    return -1;
}
