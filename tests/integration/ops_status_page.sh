#!/usr/bin/env bash
# The admin status page (GET /) in headless Chromium: a local cluster
# (deploy/local-cluster.sh --detach: Consul dev agent, 3 demo apps, 3
# leaseways), the page of one instance shows the three instances and exactly
# one primary; after POST /handoff on the primary it shows the new one within
# a few seconds, without a reload. Screenshots: tests/out/status_page*.png.
#
# Needs Debian's chromium (installed here if missing; exit 77 = skip only when
# it cannot be installed) and node + npm (playwright-core from tests/ui's
# package-lock.json, installed into tests/ui/node_modules if missing).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${LEASEWAY_SRC:=$(cd "$HERE/../.." && pwd)}"
: "${LEASEWAY_BIN:=$LEASEWAY_SRC/build/leaseway}"
export LEASEWAY_BIN
. "$LEASEWAY_SRC/tests/lib/common.sh"
[ -x "$LEASEWAY_BIN" ] || die "no leaseway binary at $LEASEWAY_BIN"

say() { printf '[ops_status_page %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- tools -------------------------------------------------------------------
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  say "installing Debian's chromium"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }; } \
    >/dev/null 2>&1 || [ ! -x "$CHROMIUM" ]; then
    say "SKIP: chromium is not installed and cannot be installed here"
    exit 77
  fi
fi
command -v node >/dev/null && command -v npm >/dev/null ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null 2>&1 ||
  die "node and npm are needed (apt-get install nodejs npm)"
UI=$LEASEWAY_SRC/tests/ui
if [ ! -f "$UI/node_modules/playwright-core/package.json" ]; then
  say "npm ci in tests/ui (playwright-core, no browser download)"
  (cd "$UI" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund >/dev/null) ||
    die "npm ci in tests/ui failed"
fi

# --- cluster -----------------------------------------------------------------
export LEASEWAY_SKIP_SETUP=${LEASEWAY_SKIP_SETUP:-1}
LEASEWAY_CLUSTER_DIR=$(mktmp cluster)
export LEASEWAY_CLUSTER_DIR
SCRIPT=$LEASEWAY_SRC/deploy/local-cluster.sh
stop_cluster() {
  local rc=$?
  trap - EXIT
  bash "$SCRIPT" --stop >/dev/null 2>&1 || true
  if [ "$rc" -ne 0 ] && [ -d "$LEASEWAY_CLUSTER_DIR/logs" ]; then
    for f in "$LEASEWAY_CLUSTER_DIR"/logs/leaseway-*.log; do
      echo "--- tail of $f" >&2
      tail -n 15 "$f" >&2
    done
  fi
  cleanup
  exit "$rc"
}
trap stop_cluster EXIT

say "starting the local cluster (deploy/local-cluster.sh --detach)"
timeout --kill-after=5 90 bash "$SCRIPT" --detach >"$LEASEWAY_CLUSTER_DIR/start.log" 2>&1 ||
  { tail -n 30 "$LEASEWAY_CLUSTER_DIR/start.log" >&2; die "local-cluster.sh --detach failed"; }
# shellcheck disable=SC1091
. "$LEASEWAY_CLUSTER_DIR/cluster.env"
ADMINS="app-1=http://127.0.0.2:$ADMIN_PORT,app-2=http://127.0.0.3:$ADMIN_PORT,app-3=http://127.0.0.4:$ADMIN_PORT"

OUT=$LEASEWAY_SRC/tests/out
mkdir -p "$OUT"
say "opening http://127.0.0.2:$ADMIN_PORT/ in headless Chromium"
PAGE_URL="http://127.0.0.2:$ADMIN_PORT/" ADMINS=$ADMINS OUT_DIR=$OUT CHROMIUM=$CHROMIUM \
  timeout --kill-after=5 120 node "$UI/status_page.mjs"
