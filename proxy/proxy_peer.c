/*
 * Leaseway-Peer-Auth: proves that a forwarded request comes from a proxy
 * that knows the shared secret (--peer-secret-file).
 *
 * token = "<unix seconds>.<hex HMAC-SHA256(secret, "<unix seconds>:<Leaseway-Forwarded-By>")>"
 *
 * The timestamp bounds replay of a captured header to PEER_WINDOW_S either
 * side of the receiver's clock; the comparison is constant-time. A token is
 * the same for every request of one second, so a sender computes it once a
 * second, not once a request.
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy.h"

#define PEER_WINDOW_S 60

static size_t mac_hex(const struct proxy *px, const char *id, size_t id_len, long long ts, char *hex,
                      size_t size)
{
    char msg[320];
    int n = snprintf(msg, sizeof(msg), "%lld:%.*s", ts, (int)id_len, id);
    if (n < 0 || (size_t)n >= sizeof(msg) || size < 65)
        return 0;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (!HMAC(EVP_sha256(), px->peer_secret, (int)px->peer_secret_len, (const unsigned char *)msg, (size_t)n,
              mac, &mac_len))
        return 0;
    static const char digits[] = "0123456789abcdef";
    for (unsigned int i = 0; i < mac_len; i++) {
        hex[2 * i] = digits[mac[i] >> 4];
        hex[2 * i + 1] = digits[mac[i] & 15];
    }
    hex[2 * mac_len] = '\0';
    return 2 * mac_len;
}

size_t proxy_peer_token(const struct proxy *px, const char *instance, int64_t now_s, char *buf, size_t size)
{
    if (!px->peer_secret)
        return 0;
    char hex[130];
    if (!mac_hex(px, instance, strlen(instance), (long long)now_s, hex, sizeof(hex)))
        return 0;
    int n = snprintf(buf, size, "%lld.%s", (long long)now_s, hex);
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

int proxy_peer_verify(const struct proxy *px, const char *forwarded_by, size_t fb_len, const char *token,
                      size_t token_len, int64_t now_s)
{
    if (!px->peer_secret)
        return 0;
    if (!token || token_len == 0 || token_len > 100)
        return -1;
    char copy[128];
    memcpy(copy, token, token_len);
    copy[token_len] = '\0';
    char *dot = strchr(copy, '.');
    if (!dot)
        return -1;
    *dot = '\0';
    char *end;
    long long ts = strtoll(copy, &end, 10);
    if (*end || end == copy || ts < now_s - PEER_WINDOW_S || ts > now_s + PEER_WINDOW_S)
        return -1;
    char want[130];
    size_t want_len = mac_hex(px, forwarded_by, fb_len, ts, want, sizeof(want));
    const char *got = dot + 1;
    if (!want_len || strlen(got) != want_len)
        return -1;
    return CRYPTO_memcmp(want, got, want_len) == 0 ? 0 : -1;
}
