/*
 * One-shot HTTP GETs for the `http:` migration probe and --upstream-health,
 * on the control thread's loop (libevent's evhttp client: off the request
 * path, small, non-blocking). One request at a time per checker; each asks
 * for `Connection: close`, so a restarted app never meets a stale keep-alive
 * connection and a check reflects the app as it is now.
 */
#include "health/health-int.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define HTTP_MAX_BODY (1 << 20) /* a health answer is small; more is an error, not a reason to buffer */

int health_http_parse_url(const char *url, char *host, size_t hsize, int *port, char *path, size_t psize,
                          const char **why)
{
    if (!strncmp(url, "https://", 8)) {
        *why = "https is not supported by the built-in check (use command:curl -fsS <url>)";
        return -1;
    }
    if (strncmp(url, "http://", 7) != 0) {
        *why = "expected a URL starting with http://";
        return -1;
    }
    const char *hp = url + 7;
    size_t hplen = strcspn(hp, "/?#");
    const char *rest = hp + hplen;
    const char *h = hp, *colon = NULL;
    size_t hlen;
    if (*hp == '[') { /* [v6]:port */
        const char *close = memchr(hp, ']', hplen);
        if (!close) {
            *why = "bad IPv6 address in URL";
            return -1;
        }
        h = hp + 1;
        hlen = (size_t)(close - h);
        if (close + 1 < rest && close[1] == ':')
            colon = close + 1;
        else if (close + 1 != rest) {
            *why = "bad host in URL";
            return -1;
        }
    } else {
        colon = memchr(hp, ':', hplen);
        hlen = colon ? (size_t)(colon - hp) : hplen;
    }
    if (hlen == 0 || hlen >= hsize) {
        *why = "missing or too long host in URL";
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = 80;
    if (colon) {
        char *end;
        long v = strtol(colon + 1, &end, 10);
        if (end != rest || v < 1 || v > 65535) {
            *why = "bad port in URL";
            return -1;
        }
        *port = (int)v;
    }
    for (const char *c = rest; *c; c++)
        if ((unsigned char)*c < 0x21 || (unsigned char)*c > 0x7e) {
            /* it goes into the request line as it is: a space or CR/LF would split it */
            *why = "expected a URL of visible ASCII without spaces (percent-encode the rest)";
            return -1;
        }
    if (*rest == '#')
        rest = "";
    int n = snprintf(path, psize, "%s%.*s", *rest == '/' ? "" : "/", (int)strcspn(rest, "#"), rest);
    if (n < 0 || (size_t)n >= psize) {
        *why = "URL path too long";
        return -1;
    }
    return 0;
}

static bool is_numeric(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

int health_http_init(struct health_http *h, struct event_base *base, const char *url, int64_t timeout_ms,
                     health_http_cb cb, void *arg, const char **why)
{
    memset(h, 0, sizeof(*h));
    if (health_http_parse_url(url, h->host, sizeof(h->host), &h->port, h->path, sizeof(h->path), why) < 0)
        return -1;
    h->base = base;
    h->timeout_ms = timeout_ms;
    h->cb = cb;
    h->arg = arg;
    bool v6 = strchr(h->host, ':') != NULL;
    snprintf(h->hostport, sizeof(h->hostport), v6 ? "[%s]:%d" : "%s:%d", h->host, h->port);
    if (!is_numeric(h->host)) {
        /* evhttp resolves names synchronously without a DNS base: that must not stall the loop. */
        h->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
        if (!h->dns) {
            *why = "cannot set up DNS resolution";
            return -1;
        }
    }
    h->conn = evhttp_connection_base_new(base, h->dns, h->host, (unsigned short)h->port);
    if (!h->conn) {
        *why = "out of memory";
        health_http_cleanup(h);
        return -1;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evhttp_connection_set_timeout_tv(h->conn, &tv);
    evhttp_connection_set_retries(h->conn, 0);
    evhttp_connection_set_max_body_size(h->conn, HTTP_MAX_BODY);
    return 0;
}

static void on_error(enum evhttp_request_error e, void *arg)
{
    struct health_http *h = arg;
    switch (e) {
    case EVREQ_HTTP_TIMEOUT: h->err = "timed out"; break;
    case EVREQ_HTTP_EOF: h->err = "connection refused or closed"; break;
    case EVREQ_HTTP_INVALID_HEADER: h->err = "malformed response"; break;
    case EVREQ_HTTP_BUFFER_ERROR: h->err = "connection failed"; break;
    case EVREQ_HTTP_REQUEST_CANCEL: h->err = "cancelled"; break;
    case EVREQ_HTTP_DATA_TOO_LONG: h->err = "response too large"; break;
    default: h->err = "failed"; break;
    }
}

static void on_done(struct evhttp_request *req, void *arg)
{
    struct health_http *h = arg;
    int status = req ? evhttp_request_get_response_code(req) : 0;
    const char *err = status ? NULL : (h->err ? h->err : "connection failed");
    h->busy = false;
    h->err = NULL;
    h->cb(h->arg, status, err);
}

int health_http_get(struct health_http *h)
{
    if (h->busy || !h->conn)
        return -1;
    struct evhttp_request *req = evhttp_request_new(on_done, h);
    if (!req)
        return -1;
    evhttp_request_set_error_cb(req, on_error);
    struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);
    evhttp_add_header(hdr, "Host", h->hostport);
    evhttp_add_header(hdr, "User-Agent", "leaseway-health");
    evhttp_add_header(hdr, "Connection", "close");
    h->err = NULL;
    h->busy = true;
    if (evhttp_make_request(h->conn, req, EVHTTP_REQ_GET, h->path) != 0) {
        h->busy = false; /* evhttp freed req */
        return -1;
    }
    return 0;
}

void health_http_cleanup(struct health_http *h)
{
    if (h->conn)
        evhttp_connection_free(h->conn);
    if (h->dns)
        evdns_base_free(h->dns, 0);
    h->conn = NULL;
    h->dns = NULL;
    h->busy = false;
}
