#!/usr/bin/env bash
# TXID read-your-writes on a LiteFS cluster (issue 6, item 3; SPEC §2 step 5).
#
# Contract under test (leaseway run --litefs-db PATH [--txid-wait DUR]):
#   - after a write through leaseway (on the primary, or forwarded from a
#     replica) the response sets
#       Set-Cookie: __txid=<16 hex>; Path=/; ...; HttpOnly; SameSite=Lax
#     (Secure only over TLS) with the TXID from the primary's <db>-pos file
#   - a read on a replica carrying a __txid newer than the local position
#     waits (bounded by --txid-wait) and is served locally once replication
#     catches up, or by the primary when it does not — never 504
#   - reads without the cookie, with an older one, or on the primary are
#     served locally at once
# Replication is slowed by pausing the relay in front of the primary's LiteFS
# HTTP API (its advertise-url; tests/lib/litefs.sh): nothing on a FUSE mount
# is stopped, so reading a -pos file never blocks.
# Three nodes (node 1 the only candidate), leaseway in watch mode in front of
# each app with --litefs-db <its mount>/demo.db --txid-wait $TXID_WAIT.
# Exit 77 when `leaseway run --help` has no --litefs-db.
# Bounded: LITEFS_TXID_DEADLINE (default 150 s).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/litefs.sh
. "$HERE/../lib/litefs.sh"

DEADLINE=${LITEFS_TXID_DEADLINE:-150}
TXID_WAIT=${TXID_WAIT:-3} # seconds (margin for a busy CI machine)
watchdog "$DEADLINE" "litefs_txid timed out after $DEADLINE s"

[ -x "$LEASEWAY_BIN" ] || die "no leaseway binary at $LEASEWAY_BIN (build first)"
HELP=$("$LEASEWAY_BIN" run --help 2>&1 || true)
if ! grep -q -- '--litefs-db' <<<"$HELP"; then
  echo "SKIP: this leaseway has no --litefs-db (TXID read-your-writes not built yet)" >&2
  exit 77
fi
litefs_test_setup litefs-txid
fge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }
flt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

export LFS_CANDIDATES="1"
litefs_cluster_start "$DIR" 3 || die "LiteFS cluster did not start"
echo "# LiteFS implementation: $IMPL; lease key $LFS_KEY; --txid-wait ${TXID_WAIT}s"
for i in 1 2 3; do
  litefs_leaseway_start "$i" --litefs-db "$(_lfs_get LFS_MOUNT "$i")/$LFS_DB" --txid-wait "${TXID_WAIT}s" ||
    die "leaseway $i did not start"
done
wait_for "[ \"\$(litefs_lw_primary 3)\" = $LFS_HOST_1 ] && [ \"\$(litefs_lw_primary 2)\" = $LFS_HOST_1 ]" 10 0.05 ||
  die "leaseways do not see the LiteFS primary"

HDRS="$DIR/hdrs"
# req METHOD HOSTPORT PATH [COOKIE] [BODY] — sets CODE, BODY, SECS, HDRS file.
req() {
  local extra=()
  [ -n "${4:-}" ] && extra+=(-H "Cookie: __txid=$4")
  [ -n "${5:-}" ] && extra+=(-H 'Content-Type: application/json' --data-binary "$5")
  local out
  out=$(curl -s -m 20 -X "$1" -D "$HDRS" -o "$DIR/body" -w '%{http_code} %{time_total}' "${extra[@]}" "http://$2$3") || out="000 0"
  CODE=${out% *}
  SECS=${out#* }
  BODY=$(cat "$DIR/body" 2>/dev/null || true)
}
setcookie() { grep -i '^set-cookie: *__txid=' "$HDRS" | tail -n1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//'; }
cookie_val() { sed -E 's/^__txid=([^;]*).*/\1/' <<<"$1"; }
has_attr() { tr ';' '\n' <<<"$1" | sed 's/^ *//' | grep -qix "$2"; }
hexlt() { "$LFS_PY" -c 'import sys; sys.exit(0 if int(sys.argv[1] or "0",16) < int(sys.argv[2] or "0",16) else 1)' "$1" "$2"; }

# --- 1. the cookie after a write on the primary --------------------------------
req POST "$LW_ADDR_1" /write "" '{"id":"t1"}'
sc=$(setcookie)
pos1=$(litefs_pos 1)
echo "# write on the primary: $CODE; Set-Cookie: $sc; primary -pos: $pos1"
v=$(cookie_val "$sc")
if [ "$CODE" = 200 ] && [[ $v =~ ^[0-9a-f]{16}$ ]]; then
  ok "write via the primary's leaseway sets __txid=<16 hex> ($v)"
else
  bad "write via the primary's leaseway: $CODE, Set-Cookie '$sc'"
fi
[ "$v" = "$pos1" ] && ok "__txid equals the primary's demo.db-pos TXID" || bad "__txid '$v' != primary -pos '$pos1'"
has_attr "$sc" 'Path=/' && ok "__txid has Path=/" || bad "__txid lacks Path=/: $sc"
has_attr "$sc" 'HttpOnly' && ok "__txid has HttpOnly" || bad "__txid lacks HttpOnly: $sc"
has_attr "$sc" 'SameSite=Lax' && ok "__txid has SameSite=Lax" || bad "__txid lacks SameSite=Lax: $sc"
has_attr "$sc" 'Secure' && bad "__txid has Secure on a plain-HTTP request: $sc" || ok "__txid has no Secure over plain HTTP"
grep -qiE 'Max-Age=|Expires=' <<<"$sc" && echo "# lifetime attribute: $(tr ';' '\n' <<<"$sc" | grep -iE 'Max-Age|Expires' | sed 's/^ *//')"

# --- 2. the cookie after a write forwarded from a replica ----------------------
req POST "$LW_ADDR_3" /write "" '{"id":"t2"}'
sc=$(setcookie)
v=$(cookie_val "$sc")
pos1=$(litefs_pos 1)
if [ "$CODE" = 200 ] && [ "$(jget "$BODY" 'j["served_by"]')" = app-n1 ] && [ "$v" = "$pos1" ]; then
  ok "write via a replica's leaseway (forwarded): __txid=$v = the primary's position"
else
  bad "write via replica n3: $CODE $BODY; Set-Cookie '$sc'; primary -pos $pos1"
fi
wait_for "[ \"\$(litefs_pos 3)\" = '$pos1' ] && [ \"\$(litefs_pos 2)\" = '$pos1' ]" 10 0.05 ||
  bad "replicas did not catch up to $pos1 (n2=$(litefs_pos 2) n3=$(litefs_pos 3))"

# --- 3. replication stalled: waits, then served locally ------------------------
litefs_pause_replication 1
PAUSED=1
req POST "$LW_ADDR_3" /write "" '{"id":"t3"}'
C3=$(cookie_val "$(setcookie)")
sleep 0.3
p3=$(litefs_pos 3)
if [ -n "$C3" ] && hexlt "$p3" "$C3"; then
  ok "with replication paused node 3 stays behind (pos $p3 < __txid $C3)"
else
  bad "replication pause did not hold node 3 back (pos $p3, __txid '$C3')"
fi
req GET "$LW_ADDR_3" /writes
if [ "$CODE" = 200 ] && flt "$SECS" 0.5 && [ "$(jget "$BODY" 'j["served_by"]')" = app-n3 ] && ! grep -q '"t3"' <<<"$BODY"; then
  ok "a read without __txid on the lagging replica is served locally at once (${SECS}s, stale)"
else
  bad "read without __txid on n3: $CODE in ${SECS}s, served_by $(jget "$BODY" 'j.get("served_by")')"
fi
out="$DIR/t3.out"
( curl -s -m 20 -H "Cookie: __txid=$C3" -o "$DIR/t3.body" -w '%{http_code} %{time_total}' "http://$LW_ADDR_3/writes" >"$out" 2>/dev/null || echo "000 0" >"$out" ) &
cpid=$!
sleep 1.0
litefs_resume_replication 1
PAUSED=0
wait "$cpid" || true
read -r code secs <"$out" || true
b=$(cat "$DIR/t3.body" 2>/dev/null || true)
sb=$(jget "$b" 'j["served_by"]')
echo "# read with a newer __txid, replication resumed after 1.0 s: $code in ${secs}s by $sb"
if [ "$code" = 200 ] && [ "$sb" = app-n3 ] && grep -q '"t3"' <<<"$b" && fge "$secs" 0.9 && flt "$secs" "$TXID_WAIT"; then
  ok "a read with a newer __txid waits for replication, then is served locally with the write (${secs}s)"
else
  bad "read with newer __txid on n3: $code in ${secs}s by '$sb', has t3: $(grep -c '"t3"' <<<"$b")"
fi

# --- 4. replication stalled past --txid-wait: the primary answers -------------
wait_for "[ \"\$(litefs_pos 3)\" = \"\$(litefs_pos 1)\" ]" 10 0.05 || true
litefs_pause_replication 1
PAUSED=1
req POST "$LW_ADDR_3" /write "" '{"id":"t4"}'
C4=$(cookie_val "$(setcookie)")
req GET "$LW_ADDR_3" /writes "$C4"
sb=$(jget "$BODY" 'j["served_by"]')
echo "# read with a newer __txid, replication paused: $CODE in ${SECS}s by $sb"
if [ "$CODE" = 504 ]; then
  bad "read with a newer __txid on a stalled replica: 504 (LiteFS's behaviour, not leaseway's contract)"
elif [ "$CODE" = 200 ] && [ "$sb" = app-n1 ] && grep -q '"t4"' <<<"$BODY" &&
  fge "$SECS" "$(awk -v w="$TXID_WAIT" 'BEGIN{print w*0.9}')" && flt "$SECS" "$((TXID_WAIT + 2))"; then
  ok "after --txid-wait (${TXID_WAIT}s) the read is forwarded to the primary, which has the write (${SECS}s, 200)"
else
  bad "read with newer __txid past --txid-wait: $CODE in ${SECS}s by '$sb', has t4: $(grep -c '"t4"' <<<"$BODY")"
fi
litefs_resume_replication 1
PAUSED=0
wait_for "[ \"\$(litefs_pos 3)\" = \"\$(litefs_pos 1)\" ]" 10 0.05 || bad "node 3 did not catch up after the pause"

# --- 5. cookies that must not cause a wait -------------------------------------
old=0000000000000001
req GET "$LW_ADDR_3" / "$old"
if [ "$CODE" = 200 ] && flt "$SECS" 0.5 && [ "$(jget "$BODY" 'j["served_by"]')" = app-n3 ]; then
  ok "an older __txid is served locally at once (${SECS}s)"
else
  bad "older __txid on n3: $CODE in ${SECS}s by $(jget "$BODY" 'j.get("served_by")')"
fi
req GET "$LW_ADDR_1" / 7fffffffffffffff
if [ "$CODE" = 200 ] && flt "$SECS" 0.5 && [ "$(jget "$BODY" 'j["served_by"]')" = app-n1 ]; then
  ok "on the primary even a far-future __txid is served locally at once (${SECS}s)"
else
  bad "future __txid on the primary: $CODE in ${SECS}s by $(jget "$BODY" 'j.get("served_by")')"
fi
req GET "$LW_ADDR_3" / "not-hex"
if [ "${CODE:0:1}" != 5 ] && flt "$SECS" 0.5; then
  ok "a malformed __txid is not an error and causes no wait ($CODE in ${SECS}s)"
else
  bad "malformed __txid on n3: $CODE in ${SECS}s"
fi

# --- 6. a TXID no replica will reach: bounded, then the primary ----------------
req GET "$LW_ADDR_2" / 7fffffffffffffff
sb=$(jget "$BODY" 'j["served_by"]')
if [ "$CODE" = 200 ] && [ "$sb" = app-n1 ] && flt "$SECS" "$((TXID_WAIT + 2))"; then
  ok "a __txid beyond any position: forwarded to the primary after ${SECS}s, 200 (LiteFS: 504)"
else
  bad "unreachable __txid on n2: $CODE in ${SECS}s by '$sb'"
fi

# --- 7. a read on a replica with a cookie from the same write, caught up ------
req POST "$LW_ADDR_2" /write "" '{"id":"t7"}'
C7=$(cookie_val "$(setcookie)")
req GET "$LW_ADDR_2" /writes "$C7"
sb=$(jget "$BODY" 'j["served_by"]')
if [ "$CODE" = 200 ] && grep -q '"t7"' <<<"$BODY" && flt "$SECS" 1.0; then
  ok "write then read on the same replica with its __txid: sees the write (${SECS}s, served by $sb)"
else
  bad "read-your-write on n2: $CODE in ${SECS}s by '$sb', has t7: $(grep -c '"t7"' <<<"$BODY")"
fi

echo "$PASSES passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
