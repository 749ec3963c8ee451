/*
 * __txid cookies. The -pos file is read with open/pread/close each time:
 * LiteFS serves it from FUSE, so a cached descriptor could see a stale
 * page; these reads happen only after writes and for reads that carry a
 * newer TXID than the replica has, never on the plain read path.
 */
#include "proxy/proxy_litefs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy/proxy_config.h"
#include "proxy/proxy_http.h"

int proxy_litefs_setup(struct litefs_dbs *dbs, const struct strlist *paths)
{
    memset(dbs, 0, sizeof(*dbs));
    if (paths->n > PROXY_MAX_DBS) {
        fprintf(stderr, "leaseway: --litefs-db: at most %d databases\n", PROXY_MAX_DBS);
        return -1;
    }
    for (size_t i = 0; i < paths->n; i++) {
        const char *p = paths->v[i];
        size_t len = strlen(p);
        if (len == 0 || p[0] != '/') {
            fprintf(
                stderr,
                "leaseway: --litefs-db \"%s\": expected the absolute path of a database on a LiteFS mount\n",
                p);
            goto fail;
        }
        struct litefs_db *db = &dbs->db[dbs->n++];
        if (!(db->pos_path = malloc(len + 5)))
            goto fail;
        snprintf(db->pos_path, len + 5, "%s-pos", p);
        const char *base = strrchr(p, '/') + 1;
        if (i == 0) {
            snprintf(db->cookie, sizeof(db->cookie), "__txid");
        } else {
            size_t n = (size_t)snprintf(db->cookie, sizeof(db->cookie), "__txid_");
            for (const char *c = base; *c && n + 1 < sizeof(db->cookie); c++)
                db->cookie[n++] =
                    (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ? *c
                                                                                                     : '_';
            db->cookie[n] = '\0';
        }
        for (size_t j = 0; j + 1 < dbs->n; j++) {
            if (strcmp(dbs->db[j].cookie, db->cookie) == 0) {
                fprintf(stderr,
                        "leaseway: --litefs-db \"%s\": its cookie would be %s, as another database's: "
                        "give the databases names that differ in letters or digits\n",
                        p, db->cookie);
                goto fail;
            }
        }
    }
    return 0;
fail:
    proxy_litefs_free(dbs);
    return -1;
}

void proxy_litefs_free(struct litefs_dbs *dbs)
{
    for (size_t i = 0; i < dbs->n; i++)
        free(dbs->db[i].pos_path);
    memset(dbs, 0, sizeof(*dbs));
}

static int parse_hex16(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

int proxy_litefs_position(const struct litefs_db *db, uint64_t *txid)
{
    int fd = open(db->pos_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[64];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    if (n < 16)
        return -1;
    buf[n] = '\0';
    return parse_hex16(buf, txid);
}

/*
 * A browser sends every cookie of a name it holds (set for another Path or Domain), oldest
 * first, in one Cookie field or several: the newest valid TXID is the one to wait for.
 */
size_t proxy_litefs_wanted(const struct litefs_dbs *dbs, const struct head *h, uint64_t *want)
{
    size_t found = 0;
    for (size_t d = 0; d < dbs->n; d++) {
        want[d] = 0;
        size_t clen = strlen(dbs->db[d].cookie);
        for (size_t i = 0; i < h->nf; i++) {
            if (!proxy_head_name_is(h, i, "cookie"))
                continue;
            const char *v = head_val(h, i), *end = v + h->f[i].val_len;
            for (const char *p = v; p + clen + 17 <= end; p++) {
                uint64_t txid;
                const char *after = p + clen + 17;
                if ((p != v && p[-1] != ' ' && p[-1] != ';') || memcmp(p, dbs->db[d].cookie, clen) != 0 ||
                    p[clen] != '=' || (after < end && *after != ';' && *after != ' ') ||
                    parse_hex16(p + clen + 1, &txid) < 0)
                    continue;
                if (txid > want[d])
                    want[d] = txid;
            }
        }
        if (want[d])
            found++;
    }
    return found;
}

size_t proxy_litefs_cookies(const struct litefs_dbs *dbs, bool secure, char *buf, size_t size)
{
    size_t n = 0;
    for (size_t d = 0; d < dbs->n; d++) {
        uint64_t txid;
        if (proxy_litefs_position(&dbs->db[d], &txid) < 0)
            continue;
        /* as LiteFS: 5 minutes; unlike LiteFS: SameSite=Lax, and Secure over TLS (its issue #440) */
        int w = snprintf(buf + n, size - n,
                         "Set-Cookie: %s=%016llx; Path=/; Max-Age=300; HttpOnly; SameSite=Lax%s\r\n",
                         dbs->db[d].cookie, (unsigned long long)txid, secure ? "; Secure" : "");
        if (w < 0 || (size_t)w >= size - n)
            break;
        n += (size_t)w;
    }
    return n;
}
