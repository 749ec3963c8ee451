/*
 * A small Consul HTTP client on a libevent base: libcurl's multi interface
 * driven by CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION (curl's
 * hiperfifo.c pattern), plus the CONSUL_* client conventions.
 *
 * Re-entrancy contract: libcurl is never called from inside one of its own
 * callbacks. Socket and timer callbacks only (re)arm events; completions
 * are collected after curl_multi_socket_action() returns, each handle is
 * removed from the multi, and only then do user callbacks run, so a
 * callback may start or cancel requests freely (but must not free the
 * client).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "consul/consul-int.h"

const char consul_err_body_too_large[] = "reply body too large";
const char consul_err_timeout[] = "request timed out";

struct consul_http {
    struct event_base *base;
    CURLM *multi;
    struct event timer;
    struct consul_http_conf *conf;
    struct consul_http_req *reqs; /* every live request (in the multi or awaiting its callback) */
    uint64_t sent;
};

struct sock_ctx {
    struct event ev;
    bool armed;
};

struct consul_http_req {
    struct consul_http *http;
    CURL *easy;
    struct curl_slist *headers;
    struct curl_slist *connect_to;
    char *url;
    char *body_out;
    char *buf; /* reply body, NUL-terminated */
    size_t len, cap;
    unsigned too_large : 1;
    unsigned in_multi : 1;
    unsigned completing : 1; /* removed from the multi, callback pending */
    unsigned cancelled : 1;
    CURLcode result;
    struct consul_http_resp resp;
    consul_http_cb cb;
    void *arg;
    struct consul_http_req *prev, *next; /* http->reqs */
    struct consul_http_req *done_next;   /* completion batch */
    char errbuf[CURL_ERROR_SIZE];
};

/* ---------------- configuration ---------------- */

/* Go's strconv.ParseBool. */
static int parse_bool(const char *s, bool *out)
{
    static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (strcmp(s, t[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(s, f[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return (v != NULL && *v != '\0') ? v : NULL;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static char *read_token_file(const char *path)
{
    char buf[4096];
    FILE *f = fopen(path, "r");
    size_t n;
    char *s, *e;

    if (f == NULL)
        return NULL;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (s = buf; isspace((unsigned char)*s); s++)
        ;
    for (e = s + strlen(s); e > s && isspace((unsigned char)e[-1]); e--)
        ;
    *e = '\0';
    return strdup(s);
}

void consul_http_conf_free(struct consul_http_conf *conf)
{
    free(conf->base_url);
    free(conf->unix_path);
    free(conf->token);
    free(conf->token_file);
    free(conf->userpwd);
    free(conf->cacert);
    free(conf->capath);
    free(conf->client_cert);
    free(conf->client_key);
    free(conf->connect_to);
    free(conf->ns);
    free(conf->partition);
    memset(conf, 0, sizeof(*conf));
}

bool consul_http_conf_reload_token(struct consul_http_conf *conf)
{
    char *t;
    bool changed;

    if (conf->token_file == NULL)
        return false;
    t = read_token_file(conf->token_file);
    if (t == NULL)
        return false;
    changed = conf->token == NULL || strcmp(t, conf->token) != 0;
    free(conf->token);
    conf->token = t;
    return changed;
}

/*
 * The address's [user@]host[:port] (before any path prefix): what consul_url_host_port()
 * accepts (a port from 1 to 65535, an [IPv6] literal), with a host of name characters only.
 */
static bool authority_ok(const char *rest)
{
    char url[600], host[256];
    int port;
    size_t n = strcspn(rest, "/");
    if (n > 512)
        return false;
    snprintf(url, sizeof(url), "http://%.*s", (int)n, rest);
    if (consul_url_host_port(url, host, sizeof(host), &port) < 0)
        return false;
    for (const char *h = host; *h; h++)
        if (!isalnum((unsigned char)*h) && *h != '.' && *h != '-' && *h != '_' && *h != ':')
            return false;
    return true;
}

int consul_http_conf_init(struct consul_http_conf *conf, const char *addr, const char **err)
{
    const char *sep, *rest, *v, *server_name;
    bool ssl = false, https;
    char buf[1024];

    memset(conf, 0, sizeof(*conf));
    conf->verify = 1;
    if (addr == NULL || *addr == '\0')
        addr = env("CONSUL_HTTP_ADDR");
    if (addr == NULL)
        addr = "http://127.0.0.1:8500";
    if ((v = env("CONSUL_HTTP_SSL")) != NULL && parse_bool(v, &ssl) < 0) {
        *err = "CONSUL_HTTP_SSL is not a boolean";
        goto fail;
    }
    https = ssl;
    sep = strstr(addr, "://");
    rest = addr;
    if (sep != NULL) {
        size_t n = (size_t)(sep - addr);
        rest = sep + 3;
        if (n == 4 && strncmp(addr, "http", 4) == 0) {
            /* like Consul's api: never revert to http when TLS was explicitly requested */
        } else if (n == 5 && strncmp(addr, "https", 5) == 0) {
            https = true;
        } else if (n == 4 && strncmp(addr, "unix", 4) == 0) {
            if (*rest == '\0') {
                *err = "unix:// address without a socket path";
                goto fail;
            }
            conf->unix_path = strdup(rest);
            https = false;
            rest = "localhost";
        } else {
            *err = "Consul address scheme must be http://, https:// or unix://";
            goto fail;
        }
    }
    if (*rest == '\0' || *rest == '/') {
        *err = "Consul address without a host";
        goto fail;
    }
    if (!conf->unix_path && !authority_ok(rest)) {
        *err = "Consul address: expected [scheme://]host[:port] with a port from 1 to 65535";
        goto fail;
    }
    server_name = https ? env("CONSUL_TLS_SERVER_NAME") : NULL;
    {
        size_t hp = strcspn(rest, "/"); /* host[:port], then the optional path prefix */
        const char *prefix = rest + hp;
        size_t plen = strlen(prefix);

        while (plen > 0 && prefix[plen - 1] == '/')
            plen--;
        if (server_name != NULL) {
            /* keep the real host for the connection, name the server in the URL (SNI + verify) */
            char hostport[512];
            const char *port = NULL;

            if (hp >= sizeof(hostport)) {
                *err = "Consul address too long";
                goto fail;
            }
            memcpy(hostport, rest, hp);
            hostport[hp] = '\0';
            if (hostport[0] == '[') {
                char *rb = strchr(hostport, ']');
                if (rb && rb[1] == ':')
                    port = rb + 2;
            } else if (strchr(hostport, ':')) {
                port = strrchr(hostport, ':') + 1;
            }
            snprintf(buf, sizeof(buf), "::%.*s:%s", (int)(port ? (size_t)(port - 1 - hostport) : hp),
                     hostport, port ? port : "443");
            conf->connect_to = strdup(buf);
            snprintf(buf, sizeof(buf), "https://%s:%s%.*s", server_name, port ? port : "443", (int)plen,
                     prefix);
        } else {
            snprintf(buf, sizeof(buf), "%s://%.*s%.*s", https ? "https" : "http", (int)hp, rest, (int)plen,
                     prefix);
        }
        conf->base_url = strdup(buf);
    }
    if ((v = env("CONSUL_HTTP_TOKEN_FILE")) != NULL) {
        conf->token_file = strdup(v);
        if (!consul_http_conf_reload_token(conf)) {
            *err = "CONSUL_HTTP_TOKEN_FILE cannot be read";
            goto fail;
        }
    } else {
        conf->token = dup_or_null(env("CONSUL_HTTP_TOKEN"));
    }
    if (conf->token != NULL && conf->token[0] == '\0') {
        free(conf->token);
        conf->token = NULL;
    }
    conf->userpwd = dup_or_null(env("CONSUL_HTTP_AUTH"));
    conf->cacert = dup_or_null(env("CONSUL_CACERT"));
    conf->capath = dup_or_null(env("CONSUL_CAPATH"));
    conf->client_cert = dup_or_null(env("CONSUL_CLIENT_CERT"));
    conf->client_key = dup_or_null(env("CONSUL_CLIENT_KEY"));
    if ((conf->client_cert == NULL) != (conf->client_key == NULL)) {
        *err = "CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY must be set together";
        goto fail;
    }
    if ((v = env("CONSUL_HTTP_SSL_VERIFY")) != NULL) {
        bool verify;
        if (parse_bool(v, &verify) < 0) {
            *err = "CONSUL_HTTP_SSL_VERIFY is not a boolean";
            goto fail;
        }
        conf->verify = verify;
    }
    conf->ns = dup_or_null(env("CONSUL_NAMESPACE"));
    conf->partition = dup_or_null(env("CONSUL_PARTITION"));
    if (conf->base_url == NULL) {
        *err = "out of memory";
        goto fail;
    }
    return 0;
fail:
    consul_http_conf_free(conf);
    return -1;
}

char *consul_escape_key(const char *key)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(key);
    char *out = malloc(n * 3 + 1), *o = out;

    if (out == NULL)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' || *p == '/') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

/* ---------------- libcurl <-> libevent ---------------- */

static void check_done(struct consul_http *http);

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct consul_http *http = arg;
    int running;

    curl_multi_socket_action(http->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(http);
}

/* CURLMOPT_TIMERFUNCTION: only (re)arms our timer; the 0 ms case too (never act from here). */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct consul_http *http = userp;
    struct timeval tv;

    if (timeout_ms < 0) {
        evtimer_del(&http->timer);
        return 0;
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    evtimer_add(&http->timer, &tv);
    return 0;
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    struct consul_http *http = arg;
    int action = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running;

    curl_multi_socket_action(http->multi, fd, action, &running);
    check_done(http);
}

/* CURLMOPT_SOCKETFUNCTION: one event per socket, re-assigned when the interest changes. */
static int sock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct consul_http *http = userp;
    struct sock_ctx *sc = socketp;
    short kind;

    if (what == CURL_POLL_REMOVE) {
        if (sc != NULL) {
            if (sc->armed)
                event_del(&sc->ev);
            free(sc);
            curl_multi_assign(http->multi, s, NULL);
        }
        return 0;
    }
    if (sc == NULL) {
        sc = calloc(1, sizeof(*sc));
        if (sc == NULL)
            return -1;
        curl_multi_assign(http->multi, s, sc);
    }
    kind =
        (short)(((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
    if (sc->armed)
        event_del(&sc->ev);
    event_assign(&sc->ev, http->base, s, kind, on_socket, http);
    event_add(&sc->ev, NULL);
    sc->armed = true;
    return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct consul_http_req *req = userdata;
    size_t n = size * nmemb;

    if (req->len + n > CONSUL_BODY_MAX) {
        req->too_large = 1;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (req->len + n + 1 > req->cap) {
        size_t cap = req->cap ? req->cap : 1024;
        char *nb;
        while (cap < req->len + n + 1)
            cap *= 2;
        nb = realloc(req->buf, cap);
        if (nb == NULL)
            return 0;
        req->buf = nb;
        req->cap = cap;
    }
    memcpy(req->buf + req->len, ptr, n);
    req->len += n;
    req->buf[req->len] = '\0';
    return n;
}

static bool header_is(const char *line, size_t len, const char *name, const char **value)
{
    size_t n = strlen(name);

    if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
        return false;
    *value = line + n + 1;
    while (**value == ' ' || **value == '\t')
        (*value)++;
    return true;
}

static size_t header_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct consul_http_req *req = userdata;
    size_t n = size * nmemb;
    char line[256];
    const char *v;

    if (n >= sizeof(line))
        return n; /* not one of ours */
    memcpy(line, ptr, n);
    line[n] = '\0';
    if (strncmp(line, "HTTP/", 5) == 0) { /* a new header block (e.g. after 100) */
        req->resp.has_index = false;
        req->resp.has_leader = false;
        req->resp.last_contact_ms = -1;
    } else if (header_is(line, n, "X-Consul-Index", &v)) {
        char *e;
        unsigned long long x = strtoull(v, &e, 10);
        if (e != v) {
            req->resp.has_index = true;
            req->resp.index = x;
        }
    } else if (header_is(line, n, "X-Consul-KnownLeader", &v)) {
        req->resp.has_leader = true;
        req->resp.known_leader = strncmp(v, "true", 4) == 0;
    } else if (header_is(line, n, "X-Consul-LastContact", &v)) {
        req->resp.last_contact_ms = strtoll(v, NULL, 10);
    }
    return n;
}

static void unlink_req(struct consul_http_req *req)
{
    struct consul_http *http = req->http;

    if (req->prev)
        req->prev->next = req->next;
    else
        http->reqs = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
}

static void free_req(struct consul_http_req *req)
{
    if (req->easy != NULL)
        curl_easy_cleanup(req->easy);
    curl_slist_free_all(req->headers);
    curl_slist_free_all(req->connect_to);
    free(req->url);
    free(req->body_out);
    free(req->buf);
    free(req);
}

static void check_done(struct consul_http *http)
{
    struct consul_http_req *batch = NULL, **tail = &batch, *req;
    CURLMsg *msg;
    int left;

    /* First copy and detach every finished transfer; no user code runs inside this loop. */
    while ((msg = curl_multi_info_read(http->multi, &left)) != NULL) {
        char *priv = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        req = (struct consul_http_req *)priv;
        req->result = msg->data.result;
        req->completing = 1;
        *tail = req;
        tail = &req->done_next;
    }
    for (req = batch; req != NULL; req = req->done_next) {
        curl_multi_remove_handle(http->multi, req->easy);
        req->in_multi = 0;
    }
    /* Then run the callbacks. */
    while ((req = batch) != NULL) {
        struct consul_http_resp *r = &req->resp;

        batch = req->done_next;
        unlink_req(req);
        if (!req->cancelled) {
            long status = 0;
            r->body = req->buf ? req->buf : "";
            r->body_len = req->len;
            if (req->too_large) {
                r->error = consul_err_body_too_large;
            } else if (req->result != CURLE_OK) {
                r->error = req->result == CURLE_OPERATION_TIMEDOUT ? consul_err_timeout
                           : req->errbuf[0]                        ? req->errbuf
                                                                   : curl_easy_strerror(req->result);
            } else {
                curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
                r->status = status;
            }
            req->cb(r, req->arg);
        }
        free_req(req);
    }
}

struct consul_http *consul_http_new(struct event_base *base, struct consul_http_conf *conf)
{
    struct consul_http *http;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return NULL;
    http = calloc(1, sizeof(*http));
    if (http == NULL)
        return NULL;
    http->base = base;
    http->conf = conf;
    http->multi = curl_multi_init();
    if (http->multi == NULL) {
        free(http);
        return NULL;
    }
    evtimer_assign(&http->timer, base, on_timer, http);
    curl_multi_setopt(http->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(http->multi, CURLMOPT_SOCKETDATA, http);
    curl_multi_setopt(http->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(http->multi, CURLMOPT_TIMERDATA, http);
    return http;
}

void consul_http_free(struct consul_http *http)
{
    if (http == NULL)
        return;
    while (http->reqs != NULL) {
        struct consul_http_req *req = http->reqs;
        unlink_req(req);
        if (req->in_multi)
            curl_multi_remove_handle(http->multi, req->easy);
        free_req(req);
    }
    curl_multi_cleanup(http->multi); /* may call sock_cb(REMOVE): events are still valid */
    evtimer_del(&http->timer);
    free(http);
}

void consul_http_cancel(struct consul_http_req *req)
{
    if (req == NULL)
        return;
    if (req->completing) { /* detached already; check_done frees it without calling back */
        req->cancelled = 1;
        return;
    }
    unlink_req(req);
    if (req->in_multi)
        curl_multi_remove_handle(req->http->multi, req->easy);
    free_req(req);
}

uint64_t consul_http_sent(const struct consul_http *http)
{
    return http->sent;
}

static int append_param(char *buf, size_t size, size_t *off, const char *name, const char *value)
{
    char *esc = curl_easy_escape(NULL, value, 0);
    int n;

    if (esc == NULL)
        return -1;
    n = snprintf(buf + *off, size - *off, "%s%s=%s", *off ? "&" : "", name, esc);
    curl_free(esc);
    if (n < 0 || (size_t)n >= size - *off)
        return -1;
    *off += (size_t)n;
    return 0;
}

char *consul_http_url(const struct consul_http_conf *conf, const char *path, const char *query)
{
    char q[1024];
    size_t qoff = 0, ulen;
    char *url;

    q[0] = '\0';
    if (query != NULL && *query) {
        int n = snprintf(q, sizeof(q), "%s", query);
        if (n < 0 || (size_t)n >= sizeof(q))
            return NULL;
        qoff = (size_t)n;
    }
    if (conf->ns && append_param(q, sizeof(q), &qoff, "ns", conf->ns) < 0)
        return NULL;
    if (conf->partition && append_param(q, sizeof(q), &qoff, "partition", conf->partition) < 0)
        return NULL;
    ulen = strlen(conf->base_url) + strlen(path) + qoff + 2;
    url = malloc(ulen);
    if (url != NULL)
        snprintf(url, ulen, "%s%s%s%s", conf->base_url, path, qoff ? "?" : "", q);
    return url;
}

int consul_http_easy_conf(void *easy, const struct consul_http_conf *conf, bool has_body,
                          struct curl_slist **headers, struct curl_slist **connect_to)
{
    CURL *e = easy;

    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (conf->unix_path)
        curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, conf->unix_path);
    if (conf->userpwd) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERPWD, conf->userpwd);
    }
    if (conf->cacert)
        curl_easy_setopt(e, CURLOPT_CAINFO, conf->cacert);
    if (conf->capath)
        curl_easy_setopt(e, CURLOPT_CAPATH, conf->capath);
    if (conf->client_cert) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, conf->client_cert);
        curl_easy_setopt(e, CURLOPT_SSLKEY, conf->client_key);
    }
    if (!conf->verify) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (conf->connect_to) {
        *connect_to = curl_slist_append(NULL, conf->connect_to);
        if (*connect_to == NULL)
            return -1;
        curl_easy_setopt(e, CURLOPT_CONNECT_TO, *connect_to);
    }
    *headers = curl_slist_append(NULL, "Expect:");
    if (*headers != NULL && conf->token) {
        char h[600];
        struct curl_slist *n;
        snprintf(h, sizeof(h), "X-Consul-Token: %s", conf->token);
        n = curl_slist_append(*headers, h);
        explicit_bzero(h, sizeof(h));
        if (n == NULL)
            return -1;
        *headers = n;
    }
    if (*headers != NULL && has_body) {
        struct curl_slist *n = curl_slist_append(*headers, "Content-Type: application/json");
        if (n == NULL)
            return -1;
        *headers = n;
    }
    if (*headers == NULL)
        return -1;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, *headers);
    return 0;
}

struct consul_http_req *consul_http_request(struct consul_http *http, const char *method, const char *path,
                                            const char *query, const char *body, int64_t timeout_ms,
                                            consul_http_cb cb, void *arg)
{
    struct consul_http_req *req;
    CURL *e;

    req = calloc(1, sizeof(*req));
    if (req == NULL)
        return NULL;
    req->http = http;
    req->cb = cb;
    req->arg = arg;
    req->resp.last_contact_ms = -1;
    req->url = consul_http_url(http->conf, path, query);
    req->easy = e = curl_easy_init();
    if (req->url == NULL || req->easy == NULL)
        goto fail;
    if (consul_http_easy_conf(e, http->conf, body != NULL, &req->headers, &req->connect_to) < 0)
        goto fail;
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)req);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->errbuf);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_ms < 2000 ? timeout_ms : 2000));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, req);
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        req->body_out = strdup(body ? body : "");
        if (req->body_out == NULL)
            goto fail;
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body_out);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(req->body_out));
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }

    req->resp.sent_ms = consul_now_ms();
    if (curl_multi_add_handle(http->multi, e) != CURLM_OK)
        goto fail;
    req->in_multi = 1;
    req->next = http->reqs;
    if (http->reqs)
        http->reqs->prev = req;
    http->reqs = req;
    http->sent++;
    return req;
fail:
    free_req(req);
    return NULL;
}
