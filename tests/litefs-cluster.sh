#!/usr/bin/env bash
# tests/litefs-cluster.sh — a real LiteFS cluster on this machine with leaseway
# in front of every node (also: deploy/local-cluster.sh --litefs).
#
#   tests/litefs-cluster.sh           start, print what to curl, stay in the
#                                     foreground until Ctrl-C (then stop all)
#   tests/litefs-cluster.sh --smoke   start, run the printed curls, check the
#                                     answers, stop; exit 0 only if all passed
#
# What runs, all on loopback (tests/lib/litefs.sh):
#   Consul dev agent   127.0.0.1, free ports
#   LiteFS n1, n2, n3  v0.5.6 (built by tests/setup.sh from the Go module
#                      proxy), hostnames 127.0.0.21/22/23, each with its own
#                      FUSE mount and data dir, leased through Consul
#                      (key litefs/<cluster>); n1 and n2 are candidates
#   demo app ×3        deploy/demo-app/app.py, its SQLite database demo.db on
#                      the node's LiteFS mount (writes only work on the primary;
#                      LiteFS replicates them to the others)
#   leaseway ×3        watch mode on LiteFS's lease (--candidate=false,
#                      --peer-url-template), --litefs-db <mount>/demo.db for
#                      __txid read-your-writes
# Needs FUSE (/dev/fuse, fusermount3) and root. With LEASEWAY_LITEFS_IMPL=standin
# it runs tests/lib/litefs_standin.py instead of LiteFS (not LiteFS: no FUSE).
# State and logs: a fresh directory under ${TMPDIR:-/tmp}, removed at exit
# (kept when --smoke fails).
# Environment: LEASEWAY_BIN (skip the build), LEASEWAY_SKIP_SETUP=1,
# LEASEWAY_LITEFS_IMPL (real by default here).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$0"
MODE=foreground
usage() { sed -n '2,/^set -e/p' "$SELF" | sed -e '$d' -e 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) MODE=smoke ;;
    -h | --help) usage; exit 0 ;;
    *) echo "litefs-cluster: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
say() { printf 'litefs-cluster: %s\n' "$*" >&2; }
fatal() { say "ERROR: $*"; exit 1; }

if [ "${LEASEWAY_SKIP_SETUP:-0}" != 1 ]; then
  say "tests/setup.sh (packages, Consul and LiteFS builds: minutes the first time, then instant)"
  out=$(bash "$ROOT/tests/setup.sh" 2>&1) || { printf '%s\n' "$out" | tail -n 20 >&2; fatal "tests/setup.sh failed"; }
fi
if [ -z "${LEASEWAY_BIN:-}" ]; then
  say "building leaseway (cmake, build/)"
  { [ -f "$ROOT/build/CMakeCache.txt" ] || cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null; } &&
    cmake --build "$ROOT/build" -j "${JOBS:-2}" --target leaseway >/dev/null || fatal "build failed"
  export LEASEWAY_BIN=$ROOT/build/leaseway
fi
export LEASEWAY_LITEFS_IMPL=${LEASEWAY_LITEFS_IMPL:-real}

# shellcheck source=lib/litefs.sh
. "$ROOT/tests/lib/litefs.sh"
IMPL=$(litefs_impl) || fatal "LiteFS cannot run here (see above); LEASEWAY_LITEFS_IMPL=standin runs the stand-in"
DIR=$(mktemp -d "${TMPDIR:-/tmp}/leaseway-litefs-cluster.XXXXXX")
RC=0
on_exit() {
  RC=${RC:-$?}
  set +e
  say "stopping the cluster"
  litefs_cluster_stop
  if [ "$MODE" = smoke ] && [ "$RC" != 0 ]; then
    say "logs kept in $DIR"
  else
    rm -rf "$DIR"
  fi
  cleanup
}
trap 'RC=$?; on_exit; exit $RC' EXIT
trap 'exit 0' INT
trap 'exit 143' TERM

consul_dev_start "$DIR/consul" || fatal "the Consul dev agent did not start"
export LFS_CANDIDATES="1 2" LFS_CLUSTER="demo-$$"
litefs_cluster_start "$DIR" 3 || fatal "the LiteFS cluster did not start (logs in $DIR/n*/)"
for i in 1 2 3; do
  litefs_leaseway_start "$i" --litefs-db "$(_lfs_get LFS_MOUNT "$i")/$LFS_DB" || fatal "leaseway $i did not start"
done
wait_for "[ \"\$(litefs_lw_primary 3)\" = $LFS_HOST_1 ] && [ \"\$(litefs_lw_primary 2)\" = $LFS_HOST_1 ]" 10 0.05 ||
  fatal "the leaseways do not see the LiteFS primary"

howto() {
  cat <<EOF

LiteFS cluster up ($IMPL LiteFS v$LFS_VERSION; Consul $CONSUL_HTTP_ADDR, lease key $LFS_KEY)
  node   LiteFS API           leaseway             admin                app (on the LiteFS mount)
EOF
  local i
  for i in 1 2 3; do
    printf '  n%s     %-20s %-20s %-20s %s\n' "$i" "$(_lfs_get LFS_HTTP "$i")" "$(_lfs_get LW_ADDR "$i")" \
      "$(_lfs_get LW_ADMIN "$i")" "$(_lfs_get APP_ADDR "$i") ($(_lfs_get LFS_MOUNT "$i")/$LFS_DB)"
  done
  cat <<EOF
Primary now: $(litefs_primary) (n1)

Try:
  # a write through a replica's leaseway is forwarded to the primary; the
  # response sets __txid (the primary's LiteFS position after the write)
  curl -si -X POST -H 'Content-Type: application/json' -d '{"id":"hello"}' http://$LW_ADDR_3/write
  # read it back on that replica (LiteFS replicated it): served by app-n3
  curl -s http://$LW_ADDR_3/writes
  # who is primary, as every leaseway sees it
  curl -s http://$LW_ADMIN_2/status
  # LiteFS hands the lease to n2 (as 'litefs promote' does); leaseway follows
  curl -s -X POST http://$LFS_HTTP_2/promote; sleep 1; curl -si http://$LW_ADDR_3/ | grep -i fly-primary
  # the lease as LiteFS wrote it
  curl -s $CONSUL_HTTP_ADDR/v1/kv/$LFS_KEY?raw
Logs: $DIR/n{1,2,3}/{litefs,app,leaseway}.log
EOF
}

jget() { "$LFS_PY" -c 'import json,sys; j=json.loads(sys.argv[1]); v=eval(sys.argv[2]); print("" if v is None else v)' "$1" "$2" 2>/dev/null || true; }
PASSES=0 FAILS=0
ok() { PASSES=$((PASSES + 1)); printf 'ok   - %s\n' "$*"; }
bad() { FAILS=$((FAILS + 1)); printf 'FAIL - %s\n' "$*"; }

smoke() {
  local out code body cookie p2
  out=$(curl -s -m 10 -D "$DIR/h" -X POST -H 'Content-Type: application/json' -d '{"id":"smoke-1"}' \
    -w '\n%{http_code}' "http://$LW_ADDR_3/write") || out=$'\n000'
  code=${out##*$'\n'}
  body=${out%$'\n'*}
  cookie=$(grep -i '^set-cookie: *__txid=' "$DIR/h" | sed -E 's/.*__txid=([0-9a-f]+).*/\1/' | tr -d '\r' || true)
  [ "$code" = 200 ] && [ "$(jget "$body" 'j["served_by"]')" = app-n1 ] &&
    ok "write via n3's leaseway served by the primary's app (app-n1)" || bad "write via n3: $code $body"
  [[ $cookie =~ ^[0-9a-f]{16}$ ]] && ok "the response sets __txid=$cookie" || bad "no __txid cookie: $(cat "$DIR/h")"
  body=$(curl -s -m 10 -H "Cookie: __txid=$cookie" "http://$LW_ADDR_3/writes" || true)
  [ "$(jget "$body" 'j["served_by"]')" = app-n3 ] && grep -q '"smoke-1"' <<<"$body" &&
    ok "read with that __txid on n3: served by app-n3, sees the write" || bad "read on n3: $body"
  code=$(curl -s -o /dev/null -w '%{http_code}' -m 10 -X POST "http://$LFS_HTTP_2/promote" || echo 000)
  [ "$code" = 200 ] && ok "LiteFS promote on n2: 200" || bad "LiteFS promote on n2: $code"
  if wait_for "[ \"\$(litefs_lw_primary 1)\" = $LFS_HOST_2 ] && [ \"\$(litefs_lw_primary 3)\" = $LFS_HOST_2 ]" 15 0.1; then
    ok "every leaseway follows the handoff to $LFS_HOST_2"
  else
    bad "the leaseways did not follow the handoff (lease: $(litefs_primary))"
  fi
  body=$(curl -s -m 10 -X POST -H 'Content-Type: application/json' -d '{"id":"smoke-2"}' "http://$LW_ADDR_1/write" || true)
  p2=$(jget "$body" 'j["served_by"]')
  [ "$p2" = app-n2 ] && ok "write via n1's leaseway now served by app-n2" || bad "write via n1 after the handoff: $body"
}

howto >&2
case $MODE in
  smoke)
    smoke
    echo "litefs-cluster smoke: $PASSES passed, $FAILS failed"
    [ "$FAILS" = 0 ] || exit 1
    exit 0
    ;;
esac
echo "Press Ctrl-C to stop everything." >&2
while :; do
  sleep 1 &
  wait $! || true
done
