#!/usr/bin/env bash
# leaseway in WATCH mode on a LiteFS cluster's lease (issue 6, item 2).
#
# Three LiteFS nodes (tests/lib/litefs.sh: real LiteFS v0.5.6 when it can run
# here, else tests/lib/litefs_standin.py — the run says which) leased through a
# Consul dev agent, all three candidates, hostnames 127.0.0.21-23; the demo app
# on each node's mount; a leaseway in front of each app with
#   --lease consul --lease-key litefs/<cluster> --candidate=false
#   --instance <LiteFS hostname> --listen <hostname>:<LW_PORT>
#   --peer-url-template http://{id}:<LW_PORT>
# Checks:
#   - every leaseway reports the LiteFS primary (/status, Fly-Primary-Instance),
#     Fly-Instance is its own hostname, reads are served by the local app
#   - a write through any leaseway lands in the primary's app, and is read back
#     on the replicas' apps after replication
#   - LiteFS failovers: handoff (real LiteFS: POST /promote on node 2's HTTP
#     API, as `litefs promote`; stand-in: POST /handoff on the primary's), SIGTERM of the primary's LiteFS, SIGKILL of the primary's LiteFS:
#     every leaseway reports the new lease holder within LW_FOLLOW_MAX (3 s) of
#     the key changing, and writes through every leaseway land there
# Bounded: LITEFS_WATCH_DEADLINE (default 170 s).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/litefs.sh
. "$HERE/../lib/litefs.sh"

DEADLINE=${LITEFS_WATCH_DEADLINE:-170}
FOLLOW_MAX=${LW_FOLLOW_MAX:-3}
watchdog "$DEADLINE" "litefs_watch timed out after $DEADLINE s"

litefs_test_setup litefs-watch
now_ms() { echo $(($(date +%s%N) / 1000000)); }
export LFS_CANDIDATES="1 2 3"
litefs_cluster_start "$DIR" 3 || die "LiteFS cluster did not start"
echo "# LiteFS implementation: $IMPL; lease key $LFS_KEY; consul $CONSUL_HTTP_ADDR"
for i in 1 2 3; do litefs_leaseway_start "$i" || die "leaseway $i did not start"; done

# req METHOD HOSTPORT PATH [BODY] — sets CODE, BODY, HDRS (file).
HDRS="$DIR/hdrs"
req() {
  local data=()
  [ $# -ge 4 ] && data=(-H 'Content-Type: application/json' --data-binary "$4")
  CODE=$(curl -s -m 15 -X "$1" -D "$HDRS" -o "$DIR/body" -w '%{http_code}' "${data[@]}" "http://$2$3") || CODE=000
  BODY=$(cat "$DIR/body" 2>/dev/null || true)
}
hdr() { grep -i "^$1:" "$HDRS" | tail -n1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//'; }

all_report() { # HOST — every leaseway reports HOST as the primary
  local i
  for i in 1 2 3; do
    [ -z "$(_lfs_get LW_PID "$i")" ] && continue
    [ "$(litefs_lw_primary "$i")" = "$1" ] || return 1
  done
}

# write_via I ID — POST /write through leaseway I; echoes served_by.
write_via() {
  req POST "$(_lfs_get LW_ADDR "$1")" /write "{\"id\":\"$2\"}"
  if [ "$CODE" != 200 ]; then echo "code=$CODE body=$BODY"; return; fi
  jget "$BODY" 'j["served_by"]'
}

# replicated NODE ID... — node's app (directly) has every ID.
replicated() {
  local n=$1 out id
  shift
  out=$(curl -sf -m 5 "http://$(_lfs_get APP_ADDR "$n")/writes") || return 1
  for id in "$@"; do grep -q "\"$id\"" <<<"$out" || return 1; done
}

check_cluster() { # LABEL PRIMARY_NODE LIVE_NODES...
  local label=$1 p=$2 i got ids=()
  shift 2
  local phost
  phost=$(_lfs_get LFS_HOST "$p")
  for i in 1 2 3; do
    [ -z "$(_lfs_get LW_PID "$i")" ] && continue
    got=$(write_via "$i" "$label-via-$i")
    if [ "$got" = "app-n$p" ]; then ok "$label: write via leaseway n$i lands in the primary's app (app-n$p)"; else bad "$label: write via leaseway n$i landed: $got (want app-n$p)"; fi
    local fpi
    fpi=$(hdr Fly-Primary-Instance)
    [ "$fpi" = "$phost" ] || bad "$label: Fly-Primary-Instance on the write via n$i is '$fpi' (want $phost)"
    ids+=("$label-via-$i")
  done
  for i in "$@"; do
    [ "$i" = "$p" ] && continue
    if wait_for "replicated $i ${ids[*]}" 8 0.1; then
      ok "$label: the writes replicated to node $i's app"
    else
      bad "$label: node $i's app lacks some of ${ids[*]} after 8 s"
    fi
  done
}

# follow LABEL OLD_HOST — wait for the lease to move off OLD_HOST, then for
# every leaseway to report the new holder; echoes the new primary's node number.
follow() {
  local label=$1 old=$2 t_lease t_lw new n
  if ! wait_for "p=\$(litefs_primary); [ -n \"\$p\" ] && [ \"\$p\" != '$old' ]" 40 0.05; then
    bad "$label: the LiteFS lease did not move off $old in 40 s (holder: '$(litefs_primary)')"
    return 1
  fi
  t_lease=$(now_ms)
  new=$(litefs_primary)
  if wait_for "all_report $new" 10 0.05; then
    t_lw=$(now_ms)
    local dt=$((t_lw - t_lease))
    if [ "$dt" -le $((FOLLOW_MAX * 1000)) ]; then
      ok "$label: every leaseway reports the new primary $new ${dt} ms after the lease moved"
    else
      bad "$label: leaseways took ${dt} ms to report $new (max ${FOLLOW_MAX} s)"
    fi
  else
    local i s=""
    for i in 1 2 3; do s="$s n$i=$(litefs_lw_primary "$i")"; done
    bad "$label: leaseways do not report $new after 10 s:$s"
  fi
  n=$(litefs_node_of "$new")
  echo "# $label: new primary $new (node $n)" >&2
  NEW_PRIMARY=$n
}

# --- 1. steady state ---------------------------------------------------------
P1=$LFS_HOST_1
if wait_for "all_report $P1" 10 0.05; then
  ok "every leaseway reports the LiteFS primary $P1 (/status)"
else
  bad "leaseways do not report $P1: n1=$(litefs_lw_primary 1) n2=$(litefs_lw_primary 2) n3=$(litefs_lw_primary 3)"
fi
lease=$(litefs_lease_json | "$LFS_PY" -c 'import base64,json,sys; print(base64.b64decode(json.load(sys.stdin)[0]["Value"]).decode())')
echo "# lease value: $lease"
st=$(curl -sf -m 2 "http://$LW_ADMIN_2/status" || true)
[ "$(jget "$st" 'j["role"]')" = replica ] && ok "a non-holder leaseway's role is replica" || bad "leaseway n2 role: $(jget "$st" 'j.get("role")')"
[ "$(jget "$st" 'j["lease"]["candidate"]')" = False ] && ok "watch mode: /status lease.candidate is false" || bad "leaseway n2 lease.candidate: $(jget "$st" 'j["lease"].get("candidate")')"
st=$(curl -sf -m 2 "http://$LW_ADMIN_1/status" || true)
[ "$(jget "$st" 'j["role"]')" = primary ] && ok "the leaseway on the LiteFS primary's host has role primary" || bad "leaseway n1 role: $(jget "$st" 'j.get("role")')"

for i in 1 2 3; do
  req GET "$(_lfs_get LW_ADDR "$i")" /
  h=$(_lfs_get LFS_HOST "$i")
  if [ "$CODE" = 200 ] && [ "$(jget "$BODY" 'j["served_by"]')" = "app-n$i" ] &&
    [ "$(hdr Fly-Primary-Instance)" = "$P1" ] && [ "$(hdr Fly-Instance)" = "$h" ] &&
    [ "$(jget "$BODY" 'j["primary"]')" = "$P1" ]; then
    ok "GET / via leaseway n$i: local app, Fly-Primary-Instance=$P1 (response and app), Fly-Instance=$h"
  else
    bad "GET / via leaseway n$i: $CODE $BODY FPI=$(hdr Fly-Primary-Instance) FI=$(hdr Fly-Instance)"
  fi
done
check_cluster steady 1 1 2 3

# --- 2. LiteFS handoff ---------------------------------------------------------
code=$(litefs_handoff 1 2)
if [ "$code" = 200 ]; then
  ok "handoff asked of LiteFS ($([ "$IMPL" = real ] && echo "POST /promote on node 2" || echo "POST /handoff on node 1")): 200"
  follow handoff "$P1"
  check_cluster handoff "$NEW_PRIMARY" 1 2 3
else
  bad "the LiteFS handoff request answered $code — stopping node 1 with SIGTERM instead"
  litefs_app_stop 1
  litefs_node_stop 1 TERM
  follow handoff-term "$P1"
  check_cluster handoff-term "$NEW_PRIMARY" 2 3
fi

# --- 3. SIGTERM of the primary's LiteFS --------------------------------------
P=$NEW_PRIMARY
PH=$(_lfs_get LFS_HOST "$P")
litefs_app_stop "$P"       # its database goes away with the mount
litefs_node_stop "$P" TERM # LiteFS releases the lease on shutdown
follow sigterm "$PH"
LIVE=()
for i in 1 2 3; do [ -n "$(_lfs_get LFS_PID "$i")" ] && kill -0 "$(_lfs_get LFS_PID "$i")" 2>/dev/null && LIVE+=("$i"); done
check_cluster sigterm "$NEW_PRIMARY" "${LIVE[@]}"

# --- 4. SIGKILL of the primary's LiteFS (session expires: up to 2 x TTL) ------
P=$NEW_PRIMARY
PH=$(_lfs_get LFS_HOST "$P")
if [ "${#LIVE[@]}" -ge 2 ]; then
  litefs_app_stop "$P"
  t0=$(now_ms)
  kill -KILL "$(_lfs_get LFS_PID "$P")"
  follow sigkill "$PH"
  echo "# sigkill: lease moved after $(($(now_ms) - t0)) ms (LiteFS TTL ${LFS_TTL:-10}s, lock-delay 1s)"
  check_cluster sigkill "$NEW_PRIMARY" "$NEW_PRIMARY"
  litefs_node_stop "$P" KILL # unmount the dead node's FUSE dir
else
  bad "sigkill: fewer than two live LiteFS nodes left"
fi

echo "$PASSES passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
