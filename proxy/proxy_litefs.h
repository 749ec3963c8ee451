/*
 * LiteFS read-your-writes (--litefs-db): the `__txid` cookie, LiteFS's own
 * consistency model, done without its 504. A LiteFS mount exposes
 * `<db>-pos` = "<16 hex TXID>/<16 hex checksum>\n" for each database.
 */
#ifndef LEASEWAY_PROXY_LITEFS_H
#define LEASEWAY_PROXY_LITEFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROXY_MAX_DBS 4

struct strlist;
struct head;

struct litefs_db {
    char *pos_path;  /* "<db>-pos" */
    char cookie[64]; /* "__txid" for the first database, "__txid_<name>" for the others */
};

struct litefs_dbs {
    struct litefs_db db[PROXY_MAX_DBS];
    size_t n;
};

/* Validate the --litefs-db paths and name their cookies. Returns 0 or -1 (message printed). */
__attribute__((warn_unused_result)) int proxy_litefs_setup(struct litefs_dbs *dbs,
                                                           const struct strlist *paths);
void proxy_litefs_free(struct litefs_dbs *dbs);

/* The local replication position of one database; -1 if the file cannot be read. */
__attribute__((warn_unused_result)) int proxy_litefs_position(const struct litefs_db *db, uint64_t *txid);

/* TXIDs the client has seen, from its cookies; want[i] = 0 where it has none. Returns how many it has. */
size_t proxy_litefs_wanted(const struct litefs_dbs *dbs, const struct head *h, uint64_t *want);

/*
 * Set-Cookie lines for every database's current position (after a write),
 * e.g. "Set-Cookie: __txid=000000000000002a; Path=/; Max-Age=300; HttpOnly; SameSite=Lax\r\n".
 * Returns the length written to buf (0 if nothing could be read).
 */
size_t proxy_litefs_cookies(const struct litefs_dbs *dbs, bool secure, char *buf, size_t size);

#endif
