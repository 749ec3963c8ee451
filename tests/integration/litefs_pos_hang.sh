#!/usr/bin/env bash
# A hung LiteFS must not stop leaseway's workers (on real LiteFS: txid_pos_hang.sh is the same
# contract with FIFOs for position files).
#
# A replica's LiteFS is stopped with SIGSTOP: every open(2) or read(2) on its FUSE mount,
# <db>-pos included, waits until it runs again. leaseway reads the positions on a thread of
# its own and waits for one at most 100 ms, so on that replica
#   - a read carrying a newer __txid counts as behind and goes to the primary after
#     --txid-wait (200 from the primary's app, with the write in it);
#   - while that read waits, a request that needs no database (/healthz) is answered at once,
#     and a write is forwarded to the primary at once;
#   - /health stays 200; the log names the position file that does not answer;
#   - after SIGCONT the log says it answers again, and a read with the cookie of a write the
#     replica has caught up with is served locally.
# Three nodes (node 1 the only candidate), one worker per leaseway. Real LiteFS only (the
# stand-in's files are not on a FUSE mount): exit 77 without it.
# Bounded: LITEFS_POS_HANG_DEADLINE (default 150 s).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/litefs.sh
. "$HERE/../lib/litefs.sh"

DEADLINE=${LITEFS_POS_HANG_DEADLINE:-150}
watchdog "$DEADLINE" "litefs_pos_hang timed out after $DEADLINE s"
litefs_test_setup litefs-pos-hang
if [ "$IMPL" != real ]; then
  echo "SKIP: needs real LiteFS (a stopped FUSE daemon); txid_pos_hang.sh covers the contract without it" >&2
  exit 77
fi
flt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

export LFS_CANDIDATES="1"
litefs_cluster_start "$DIR" 3 || die "LiteFS cluster did not start"
for i in 1 2 3; do
  litefs_leaseway_start "$i" --litefs-db "$(_lfs_get LFS_MOUNT "$i")/$LFS_DB" --txid-wait 1s ||
    die "leaseway $i did not start"
done
wait_for "[ \"\$(litefs_lw_primary 2)\" = $LFS_HOST_1 ]" 10 0.05 || die "leaseway 2 does not see the LiteFS primary"

# req NAME METHOD HOSTPORT PATH [COOKIE] [BODY] — writes NAME.code ("CODE SECS") and NAME.body
req() {
  local name=$1 extra=()
  [ -n "${5:-}" ] && extra+=(-H "Cookie: __txid=$5")
  [ -n "${6:-}" ] && extra+=(-H 'Content-Type: application/json' --data-binary "$6")
  curl -s -m 20 -X "$2" -D "$DIR/$name.h" -o "$DIR/$name.body" -w '%{http_code} %{time_total}' \
    "${extra[@]}" "http://$3$4" >"$DIR/$name.code" 2>/dev/null || echo "000 0" >"$DIR/$name.code"
}
code() { cut -d' ' -f1 "$DIR/$1.code"; }
secs() { cut -d' ' -f2 "$DIR/$1.code"; }
by() { jget "$(cat "$DIR/$1.body" 2>/dev/null)" 'j["served_by"]'; }

req w1 POST "$LW_ADDR_1" /write "" '{"id":"h1"}'
C1=$(grep -i '^set-cookie: *__txid=' "$DIR/w1.h" | sed -E 's/.*__txid=([0-9a-f]{16}).*/\1/' | tr -d '\r')
[ "$(code w1)" = 200 ] && [ -n "$C1" ] && ok "a write on the primary sets __txid=$C1" ||
  bad "write on the primary: $(code w1), cookie '$C1'"
wait_for "[ \"\$(litefs_pos 2)\" = '$C1' ]" 10 0.05 || bad "node 2 did not catch up to $C1 ($(litefs_pos 2))"

STOPPED=$(_lfs_get LFS_PID 2)
kill -STOP "$STOPPED"
echo "# node 2's LiteFS (pid $STOPPED) stopped"
req ahead GET "$LW_ADDR_2" /writes 7fffffffffffffff &
ahead=$!
sleep 0.3
req hz GET "$LW_ADDR_2" /healthz
[ "$(code hz)" = 200 ] && [ "$(by hz)" = app-n2 ] && flt "$(secs hz)" 1 &&
  ok "while node 2's position read hangs, its leaseway answers /healthz at once ($(secs hz) s)" ||
  bad "/healthz on node 2 during the stall: $(code hz) in $(secs hz) s by '$(by hz)'"
req w2 POST "$LW_ADDR_2" /write "" '{"id":"h2"}'
[ "$(code w2)" = 200 ] && [ "$(by w2)" = app-n1 ] && flt "$(secs w2)" 1 &&
  ok "... and forwards a write to the primary at once ($(secs w2) s)" ||
  bad "write via node 2 during the stall: $(code w2) in $(secs w2) s by '$(by w2)'"
health=$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://$LW_ADMIN_2/health" || true)
[ "$health" = 200 ] && ok "... and /health stays 200" || bad "/health on node 2 during the stall: $health"
wait "$ahead" || true
[ "$(code ahead)" = 200 ] && [ "$(by ahead)" = app-n1 ] && grep -q '"h1"' "$DIR/ahead.body" &&
  ok "a read with a newer __txid counts as behind and is answered by the primary ($(secs ahead) s)" ||
  bad "read with a newer __txid during the stall: $(code ahead) in $(secs ahead) s by '$(by ahead)'"
grep -q 'LiteFS position read does not answer.*demo.db-pos' "$LW_LOG_2" &&
  ok "node 2's leaseway logs the position file that does not answer" ||
  bad "no 'LiteFS position read does not answer' line naming demo.db-pos in $LW_LOG_2"

kill -CONT "$STOPPED"
STOPPED=
echo "# node 2's LiteFS continued"
wait_for "grep -q 'LiteFS position read answers again' '$LW_LOG_2'" 10 0.1 &&
  ok "... and, once LiteFS runs again, that it answers again" || bad "no 'answers again' line in $LW_LOG_2"
p1=$(litefs_pos 1)
wait_for "[ \"\$(litefs_pos 2)\" = '$p1' ]" 15 0.1 || bad "node 2 did not catch up to $p1 ($(litefs_pos 2))"
req r2 GET "$LW_ADDR_2" /writes "$p1"
[ "$(code r2)" = 200 ] && [ "$(by r2)" = app-n2 ] && grep -q '"h2"' "$DIR/r2.body" && flt "$(secs r2)" 1 &&
  ok "then a read with the newest __txid is served locally, with the write made during the stall ($(secs r2) s)" ||
  bad "read on node 2 after the stall: $(code r2) in $(secs r2) s by '$(by r2)'"

echo "$PASSES passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
