/*
 * Resolving the primary's advertised URL, on the control thread (workers
 * never resolve names). The last answer is cached: the snapshot is
 * republished every time the fence moves, the primary changes rarely.
 */
#include <netdb.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy.h"
#include "proxy/proxy_log.h"

int proxy_resolve_url(const char *url, struct sockaddr_storage *addr, socklen_t *len, bool *tls)
{
    static __thread char cached_url[ROUTE_URL_MAX];
    static __thread struct sockaddr_storage cached_addr;
    static __thread socklen_t cached_len;
    if (cached_len && strcmp(url, cached_url) == 0) {
        *addr = cached_addr;
        *len = cached_len;
        *tls = strncmp(url, "https://", 8) == 0;
        return 0;
    }
    const char *hp;
    int default_port;
    if (strncmp(url, "http://", 7) == 0) {
        hp = url + 7;
        default_port = 80;
        *tls = false;
    } else if (strncmp(url, "https://", 8) == 0) {
        hp = url + 8;
        default_port = 443;
        *tls = true;
    } else {
        return -1;
    }
    char host[256], port[16];
    size_t n = strcspn(hp, "/?#");
    if (n == 0 || n >= sizeof(host))
        return -1;
    memcpy(host, hp, n);
    host[n] = '\0';
    char *colon = strrchr(host, ':');
    char *bracket = strrchr(host, ']');
    if (colon && (!bracket || colon > bracket)) {
        *colon = '\0';
        snprintf(port, sizeof(port), "%s", colon + 1);
    } else {
        snprintf(port, sizeof(port), "%d", default_port);
    }
    char *h = host;
    if (h[0] == '[') {
        h++;
        char *close = strchr(h, ']');
        if (close)
            *close = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(h, port, &hints, &res);
    if (rc != 0 || !res) {
        proxy_log_warn("cannot resolve the primary's URL", "url=%s err=\"%s\"", url, gai_strerror(rc));
        return -1;
    }
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    snprintf(cached_url, sizeof(cached_url), "%s", url);
    cached_addr = *addr;
    cached_len = *len;
    return 0;
}

int proxy_peer_tls_setup(struct proxy *px)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return -1;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* the system's CAs, or SSL_CERT_FILE / SSL_CERT_DIR as OpenSSL reads them */
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        SSL_CTX_free(ctx);
        return -1;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    px->peer_tls = ctx;
    return 0;
}

void proxy_peer_tls_free(struct proxy *px)
{
    SSL_CTX_free(px->peer_tls);
    px->peer_tls = NULL;
}

int proxy_load_peer_secret(struct proxy *px, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "leaseway: --peer-secret-file %s: cannot read it\n", path);
        return -1;
    }
    unsigned char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    if (n < 16) {
        fprintf(stderr, "leaseway: --peer-secret-file %s: the secret must be at least 16 bytes\n", path);
        return -1;
    }
    px->peer_secret = malloc(n);
    if (!px->peer_secret)
        return -1;
    memcpy(px->peer_secret, buf, n);
    px->peer_secret_len = n;
    return 0;
}
