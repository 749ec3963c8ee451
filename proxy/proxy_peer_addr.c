/*
 * Resolving the primary's advertised URL for the control thread (workers never resolve
 * names). An address literal is answered at once. A name is looked up on a helper thread:
 * getaddrinfo() can block for seconds (glibc: 5 s per try) and the control thread must
 * not, as it feeds Consul's alive check and serves the admin listener. Until the answer
 * is in, the primary has no address (writes wait as while it is unknown); when it comes,
 * proxy_resolve_fd() becomes readable and the caller publishes again. The last answer is
 * kept: the snapshot is republished every time the fence moves, the primary changes
 * rarely. A failed lookup is tried again after RETRY_MS, not at every republish.
 */
#include <errno.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "proxy/proxy.h"
#include "proxy/proxy_log.h"

#define RETRY_MS 5000

static struct {
    pthread_mutex_t mu;
    int efd;                 /* readable when a lookup finished */
    bool busy;               /* a lookup is under way */
    char url[ROUTE_URL_MAX]; /* the URL of the last answer (or of the one under way) */
    bool ok;                 /* the last answer's outcome */
    int64_t done_ms;         /* when it came */
    struct sockaddr_storage addr;
    socklen_t len;
} rs = {.mu = PTHREAD_MUTEX_INITIALIZER, .efd = -1};

struct job {
    char url[ROUTE_URL_MAX];
    char host[256], port[16];
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The wake-up, made on first need (with rs.mu held): before the first lookup that uses it. */
static int wakeup_fd_locked(void)
{
    if (rs.efd < 0)
        rs.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return rs.efd;
}

int proxy_resolve_fd(void)
{
    pthread_mutex_lock(&rs.mu);
    int fd = wakeup_fd_locked();
    pthread_mutex_unlock(&rs.mu);
    return fd;
}

void proxy_resolve_ack(void)
{
    uint64_t n;
    if (rs.efd >= 0)
        while (read(rs.efd, &n, sizeof(n)) > 0) {
        }
}

static void *lookup(void *arg)
{
    struct job *j = arg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(j->host, j->port, &hints, &res);
    if (rc != 0 || !res)
        proxy_log_warn("cannot resolve the primary's URL", "url=%s err=\"%s\" retry_in_ms=%d", j->url,
                       gai_strerror(rc), RETRY_MS);
    pthread_mutex_lock(&rs.mu);
    if (strcmp(rs.url, j->url) == 0) {
        rs.ok = rc == 0 && res;
        if (rs.ok) {
            memcpy(&rs.addr, res->ai_addr, res->ai_addrlen);
            rs.len = res->ai_addrlen;
        }
        rs.done_ms = mono_ms();
    }
    rs.busy = false;
    int efd = rs.efd;
    pthread_mutex_unlock(&rs.mu);
    if (res)
        freeaddrinfo(res);
    free(j);
    uint64_t one = 1;
    if (efd >= 0 && write(efd, &one, sizeof(one)) < 0) {
        /* the counter is full: the control thread has wake-ups enough */
    }
    return NULL;
}

/* host and port of an http(s) URL; false if it is not one */
static bool split_url(const char *url, char *host, size_t hsize, char *port, size_t psize, bool *tls)
{
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
        return false;
    }
    size_t n = strcspn(hp, "/?#");
    if (n == 0 || n >= hsize)
        return false;
    memcpy(host, hp, n);
    host[n] = '\0';
    char *colon = strrchr(host, ':');
    char *bracket = strrchr(host, ']');
    if (colon && (!bracket || colon > bracket)) {
        *colon = '\0';
        snprintf(port, psize, "%s", colon + 1);
    } else {
        snprintf(port, psize, "%d", default_port);
    }
    if (host[0] == '[') {
        memmove(host, host + 1, strlen(host));
        char *close = strchr(host, ']');
        if (close)
            *close = '\0';
    }
    return true;
}

void proxy_url_host_port(const char *url, char *out, size_t size)
{
    char host[256], port[16];
    bool tls;
    if (!split_url(url, host, sizeof(host), port, sizeof(port), &tls))
        snprintf(out, size, "%s", url);
    else
        snprintf(out, size, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
}

int proxy_resolve_url(const char *url, struct sockaddr_storage *addr, socklen_t *len, bool *tls)
{
    char host[256], port[16];
    if (!split_url(url, host, sizeof(host), port, sizeof(port), tls))
        return -1;
    /* an address literal needs no lookup */
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, port, &hints, &res) == 0 && res) {
        memcpy(addr, res->ai_addr, res->ai_addrlen);
        *len = res->ai_addrlen;
        freeaddrinfo(res);
        return 0;
    }
    int rc = -1;
    pthread_mutex_lock(&rs.mu);
    bool same = strcmp(rs.url, url) == 0;
    if (same && rs.ok && !rs.busy) {
        *addr = rs.addr;
        *len = rs.len;
        rc = 0;
    } else if (!rs.busy && (!same || mono_ms() - rs.done_ms >= RETRY_MS)) {
        (void)wakeup_fd_locked();
        struct job *j = calloc(1, sizeof(*j));
        pthread_attr_t attr;
        pthread_t t;
        if (j && pthread_attr_init(&attr) == 0) {
            snprintf(j->url, sizeof(j->url), "%s", url);
            snprintf(j->host, sizeof(j->host), "%s", host);
            snprintf(j->port, sizeof(j->port), "%s", port);
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            if (pthread_create(&t, &attr, lookup, j) == 0) {
                snprintf(rs.url, sizeof(rs.url), "%s", url);
                rs.ok = false;
                rs.busy = true;
                j = NULL;
            }
            pthread_attr_destroy(&attr);
        }
        free(j);
    }
    pthread_mutex_unlock(&rs.mu);
    return rc;
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
