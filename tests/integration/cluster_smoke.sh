#!/usr/bin/env bash
# The README's main-job command, end to end: deploy/local-cluster.sh --smoke
# starts Consul, three demo apps and three leaseways on 127.0.0.2-4, runs the
# curls it prints (reads, writes through replicas, duplicates, /status,
# leaseway status, /handoff), checks the answers and stops everything.
# Bounded: 90 s.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${LEASEWAY_SRC:=$(cd "$HERE/../.." && pwd)}"
: "${LEASEWAY_BIN:=$LEASEWAY_SRC/build/leaseway}"
export LEASEWAY_BIN
[ -x "$LEASEWAY_BIN" ] || { echo "FAIL: no leaseway binary at $LEASEWAY_BIN" >&2; exit 1; }

# tests/run.sh has run tests/setup.sh already; running it again is cheap but
# may reach for apt: skip it unless asked.
export LEASEWAY_SKIP_SETUP=${LEASEWAY_SKIP_SETUP:-1}
LEASEWAY_CLUSTER_DIR=$(mktemp -d "${TMPDIR:-/tmp}/leaseway-cluster-smoke.XXXXXX")
export LEASEWAY_CLUSTER_DIR
SCRIPT=$LEASEWAY_SRC/deploy/local-cluster.sh

start=$(date +%s)
rc=0
timeout --kill-after=5 75 bash "$SCRIPT" --smoke || rc=$?
echo "cluster_smoke: deploy/local-cluster.sh --smoke exited $rc after $(($(date +%s) - start)) s"
if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
  echo "FAIL: local-cluster.sh --smoke timed out (75 s); stopping what it left" >&2
  bash "$SCRIPT" --stop || true
fi
if [ $rc -eq 0 ]; then rm -rf "$LEASEWAY_CLUSTER_DIR"; else echo "logs: $LEASEWAY_CLUSTER_DIR/logs" >&2; fi
exit $rc
