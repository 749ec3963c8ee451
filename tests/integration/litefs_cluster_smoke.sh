#!/usr/bin/env bash
# The main job with real LiteFS (issue 6, item 1): deploy/local-cluster.sh
# --litefs --smoke, i.e. tests/litefs-cluster.sh --smoke, starts Consul, three
# LiteFS nodes with the demo app's database on their FUSE mounts and leaseway
# in watch mode in front of each, runs the curls it prints (a write through a
# replica, its __txid, the read-back on the replica, a LiteFS promote that every
# leaseway follows, a write after it), checks the answers and stops everything
# (no FUSE mount left behind). Skips (77) where real LiteFS cannot run.
# Bounded: 90 s.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${LEASEWAY_SRC:=$(cd "$HERE/../.." && pwd)}"
: "${LEASEWAY_BIN:=$LEASEWAY_SRC/build/leaseway}"
export LEASEWAY_BIN LEASEWAY_SKIP_SETUP=${LEASEWAY_SKIP_SETUP:-1}
[ -x "$LEASEWAY_BIN" ] || { echo "FAIL: no leaseway binary at $LEASEWAY_BIN" >&2; exit 1; }
# shellcheck source=../lib/litefs.sh
. "$HERE/../lib/litefs.sh"
LEASEWAY_LITEFS_IMPL=real litefs_impl >/dev/null || { echo "SKIP: real LiteFS cannot run here" >&2; exit 77; }

before=$(grep -c ' fuse' /proc/mounts || true)
rc=0
timeout --kill-after=5 80 bash "$LEASEWAY_SRC/deploy/local-cluster.sh" --litefs --smoke || rc=$?
echo "litefs_cluster_smoke: deploy/local-cluster.sh --litefs --smoke exited $rc"
after=$(grep -c ' fuse' /proc/mounts || true)
if [ "$after" -gt "$before" ]; then
  echo "FAIL: FUSE mounts left behind ($before before, $after after)" >&2
  grep ' fuse' /proc/mounts >&2
  rc=1
fi
exit $rc
