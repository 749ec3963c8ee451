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
struct litefs_reader;

struct litefs_db {
    char *pos_path;  /* "<db>-pos" */
    char cookie[64]; /* "__txid" for the first database, "__txid_<name>" for the others */
};

struct litefs_dbs {
    struct litefs_db db[PROXY_MAX_DBS];
    size_t n;
    struct litefs_reader *reader; /* the thread that reads the -pos files; NULL when n = 0 */
};

/* The databases' positions at one read: ok[i] is false where <db>-pos could not be read. */
struct litefs_pos {
    uint64_t txid[PROXY_MAX_DBS];
    bool ok[PROXY_MAX_DBS];
};

/*
 * How long a worker waits for a position read before it goes on without one. A -pos file is
 * on LiteFS's FUSE mount, so a hung LiteFS daemon makes its open(2) and read(2) never return:
 * they run on a thread of their own, and a worker waits for them at most this long, and not
 * at all while a read that started longer ago than this is still under way.
 */
#define PROXY_LITEFS_WAIT_MS 100

/*
 * Validate the --litefs-db paths, name their cookies and start the thread that reads their
 * positions (when there are any). Returns 0 or -1 (message printed).
 */
__attribute__((warn_unused_result)) int proxy_litefs_setup(struct litefs_dbs *dbs,
                                                           const struct strlist *paths);
void proxy_litefs_free(struct litefs_dbs *dbs);

/*
 * The positions from a read that begins after this call (so, after a write has been
 * answered on this host, they include it). Waits at most PROXY_LITEFS_WAIT_MS; false when
 * the read did not answer in that time.
 */
__attribute__((warn_unused_result)) bool proxy_litefs_read(const struct litefs_dbs *dbs,
                                                           struct litefs_pos *out);

/*
 * The positions of the last read that answered (none ok before the first), without waiting;
 * with refresh, a new read is asked for, for a later call to see.
 */
void proxy_litefs_last(const struct litefs_dbs *dbs, struct litefs_pos *out, bool refresh);

/* Has every database reached the TXID in want (0: nothing wanted there)? */
bool proxy_litefs_reached(const struct litefs_dbs *dbs, const uint64_t *want, const struct litefs_pos *pos);

/* TXIDs the client has seen, from its cookies; want[i] = 0 where it has none. Returns how many it has. */
size_t proxy_litefs_wanted(const struct litefs_dbs *dbs, const struct head *h, uint64_t *want);

/*
 * Set-Cookie lines for every database's current position (after a write),
 * e.g. "Set-Cookie: __txid=000000000000002a; Path=/; Max-Age=300; HttpOnly; SameSite=Lax\r\n".
 * Returns the length written to buf (0 if nothing could be read, or the read did not answer
 * within PROXY_LITEFS_WAIT_MS).
 */
size_t proxy_litefs_cookies(const struct litefs_dbs *dbs, bool secure, char *buf, size_t size);

#endif
