#!/usr/bin/env bash
# tests/setup.sh — install what leaseway's tests need. Idempotent; a second run
# with everything present takes well under 2 s.
#
#   * Debian packages (only apt-get when `dpkg -s` says something is missing;
#     system nginx/haproxy/varnish services are kept stopped: tests run their own)
#   * Consul, built from the Go module proxy with the pinned wrapper module in
#     tests/consul-build/, cached OUTSIDE the repo:
#       ${LEASEWAY_CACHE:-$HOME/.cache/leaseway}/consul-<version>/consul
#       ${LEASEWAY_CACHE:-$HOME/.cache/leaseway}/bin/consul  (symlink)
#
# Timing (2 cores, nice -n 10, go1.26.8): first Consul build ~7 min with empty
# caches (~1.5 min downloading modules + 343 s compiling; ~7.7 min CPU), 135 MB
# binary. Later runs skip it (`consul version` check): whole script ~0.3 s.
#
#   * LiteFS (for tests/integration/litefs_*.sh and tests/bench/litefs_side_by_side.sh),
#     built from the Go module proxy with the pinned wrapper module in
#     tests/litefs-build/ (cgo: go-sqlite3, FUSE via bazil.org/fuse), cached
#     OUTSIDE the repo:
#       ${LEASEWAY_CACHE:-$HOME/.cache/leaseway}/litefs-<version>/litefs
#       ${LEASEWAY_CACHE:-$HOME/.cache/leaseway}/bin/litefs  (symlink)
#     plus fuse3 (fusermount3) from Debian.
#     Why v0.5.6 and a wrapper module: on this workplace the module proxy
#     answers 403 "This module version is not available" for v0.5.11, v0.5.10,
#     v0.5.9, v0.5.8 and v0.5.7 and lists no version (so `go install
#     ...@version`, which reads the version list for deprecation notices, is
#     refused too); v0.5.6 is served. Building inside a module that requires it,
#     with its go.sum committed, needs neither the list nor the checksum DB.
#     Build time (2 cores, warm module cache): ~30 s; ~1 min downloading first.
#     When the build is impossible the step says why and setup goes on; the
#     LiteFS tests then run against tests/lib/litefs_standin.py or skip (77).
#     LEASEWAY_LITEFS_BIN=<path> uses a LiteFS binary obtained elsewhere (it is
#     symlinked into the cache's bin/); LEASEWAY_SKIP_LITEFS=1 skips the step;
#     LEASEWAY_REQUIRE_LITEFS=1 makes a missing LiteFS fatal.
#
# Env: LEASEWAY_CACHE (cache dir), LEASEWAY_SKIP_APT=1 (skip the apt part),
#      LEASEWAY_FORCE_CONSUL_BUILD=1 (rebuild even if the binary works).
# Last lines printed: LITEFS_BIN=<path or empty>, CONSUL_BIN=<path>
set -euo pipefail
shopt -s inherit_errexit

CONSUL_VERSION=1.22.0   # keep in sync with tests/consul-build/go.mod
LITEFS_VERSION=0.5.6    # keep in sync with tests/litefs-build/go.mod and tests/lib/litefs.sh

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${LEASEWAY_CACHE:-$HOME/.cache/leaseway}
export DEBIAN_FRONTEND=noninteractive

log() { printf 'setup: %s\n' "$*" >&2; }

APT_PACKAGES=(
  build-essential cmake pkg-config libevent-dev libcurl4-openssl-dev
  libjansson-dev libssl-dev libcriterion-dev node-llhttp libyaml-dev
  libsqlite3-dev sqlite3 curl nginx haproxy wrk varnish valgrind clang-14 libclang-rt-14-dev
  clang-format dnsutils iproute2 python3 procps psmisc
)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- Debian packages -------------------------------------------------------
install_apt() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0

  log "installing: ${missing[*]}"
  # Keep apt from starting nginx/haproxy/varnish as system services.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    made_policy=1
  fi
  local rc=0
  as_root apt-get update -qq || rc=$?
  [ $rc -eq 0 ] && { as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" || rc=$?; }
  [ $made_policy -eq 1 ] && as_root rm -f "$policy"
  [ $rc -eq 0 ] || { log "apt-get failed ($rc)"; return $rc; }
}

# Stop system instances (identified by their system pid files only, so test
# instances that other shells started are never touched).
stop_system_services() {
  local svc pidfile pid
  for svc in nginx:/run/nginx.pid haproxy:/run/haproxy.pid varnish:/run/varnishd.pid; do
    pidfile=${svc#*:}; svc=${svc%%:*}
    [ -r "$pidfile" ] || continue
    pid=$(head -n1 "$pidfile" 2>/dev/null | tr -dc 0-9)
    { [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; } || continue
    log "stopping system $svc (pid $pid)"
    as_root service "$svc" stop >/dev/null 2>&1 || true
    if kill -0 "$pid" 2>/dev/null; then as_root kill "$pid" 2>/dev/null || true; fi
  done
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    as_root systemctl disable --now nginx haproxy varnish >/dev/null 2>&1 || true
  fi
}

# --- Consul ----------------------------------------------------------------
consul_ok() {
  local out
  [ -x "$1" ] && out=$("$1" version 2>/dev/null) || return 1
  [ "${out%%$'\n'*}" = "Consul v$CONSUL_VERSION" ]
}

build_consul() {
  local dir="$CACHE/consul-$CONSUL_VERSION" bin
  bin="$dir/consul"
  mkdir -p "$dir" "$CACHE/bin"
  if [ "${LEASEWAY_FORCE_CONSUL_BUILD:-0}" != 1 ] && consul_ok "$bin"; then
    ln -sfn "$bin" "$CACHE/bin/consul"
    CONSUL_BIN=$bin; return 0
  fi
  command -v go >/dev/null 2>&1 || PATH=$PATH:/usr/local/go/bin
  command -v go >/dev/null 2>&1 || { log "go not found (need Go >= 1.25.3)"; return 1; }

  # One build at a time per cache dir.
  exec 9>"$dir/.build.lock"
  flock 9
  if [ "${LEASEWAY_FORCE_CONSUL_BUILD:-0}" != 1 ] && consul_ok "$bin"; then
    ln -sfn "$bin" "$CACHE/bin/consul"; exec 9>&-
    CONSUL_BIN=$bin; return 0
  fi

  local t0=$SECONDS
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/leaseway-consul-build.XXXXXX")
  TMPBIN="$dir/consul.tmp"
  trap 'rm -rf "$WORK" "$TMPBIN"' EXIT
  local work=$WORK
  cp "$ROOT/tests/consul-build/go.mod" "$ROOT/tests/consul-build/go.sum" "$work/"
  log "building Consul v$CONSUL_VERSION with $(go version | cut -d' ' -f3) (several minutes the first time)"
  # GONOSUMDB: the proxy's checksum DB has no entry for some Consul submodules
  # (e.g. envoyextensions v0.9.0); their hashes are pinned in go.sum anyway.
  ( cd "$work" &&
    CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" \
    GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/hashicorp/consul" \
    nice -n 10 go build -trimpath -ldflags="-s -w" -o "$TMPBIN" github.com/hashicorp/consul ) >&2
  mv -f "$TMPBIN" "$bin"
  consul_ok "$bin" || { log "built binary does not report Consul v$CONSUL_VERSION"; return 1; }
  ln -sfn "$bin" "$CACHE/bin/consul"
  exec 9>&-
  log "Consul built in $((SECONDS - t0)) s"
  CONSUL_BIN=$bin
}

# --- LiteFS ----------------------------------------------------------------
# A binary is accepted when it runs `litefs version` and the stamp file written
# next to it after our build (or LEASEWAY_LITEFS_BIN) names the pinned version.
litefs_ok() {
  [ -x "$1" ] && "$1" version >/dev/null 2>&1 || return 1
  [ "$(cat "$(dirname "$1")/litefs.version" 2>/dev/null)" = "v$LITEFS_VERSION" ]
}

litefs_fuse_tools() {
  command -v fusermount3 >/dev/null 2>&1 && return 0
  [ "${LEASEWAY_SKIP_APT:-0}" = 1 ] && { log "fusermount3 missing (LEASEWAY_SKIP_APT=1): apt-get install fuse3"; return 0; }
  log "installing fuse3 (fusermount3) for LiteFS"
  as_root apt-get install -y -qq --no-install-recommends fuse3 >&2 ||
    { as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends fuse3 >&2; } ||
    log "could not install fuse3: LiteFS tests will not mount"
}

build_litefs() {
  local dir="$CACHE/litefs-$LITEFS_VERSION" bin out rc=0
  bin="$dir/litefs"
  LITEFS_BIN=
  [ "${LEASEWAY_SKIP_LITEFS:-0}" = 1 ] && { log "LiteFS step skipped (LEASEWAY_SKIP_LITEFS=1)"; return 0; }
  mkdir -p "$dir" "$CACHE/bin"
  if [ -n "${LEASEWAY_LITEFS_BIN:-}" ]; then
    [ -x "$LEASEWAY_LITEFS_BIN" ] || { log "LEASEWAY_LITEFS_BIN=$LEASEWAY_LITEFS_BIN is not executable"; return 1; }
    ln -sfn "$LEASEWAY_LITEFS_BIN" "$CACHE/bin/litefs"
    LITEFS_BIN=$LEASEWAY_LITEFS_BIN; litefs_fuse_tools; return 0
  fi
  if [ "${LEASEWAY_FORCE_LITEFS_BUILD:-0}" != 1 ] && litefs_ok "$bin"; then
    ln -sfn "$bin" "$CACHE/bin/litefs"
    LITEFS_BIN=$bin; litefs_fuse_tools; return 0
  fi
  command -v go >/dev/null 2>&1 || PATH=$PATH:/usr/local/go/bin
  command -v go >/dev/null 2>&1 || { log "go not found: no LiteFS (its tests use the stand-in or skip)"; return 0; }
  command -v gcc >/dev/null 2>&1 || { log "gcc not found (LiteFS needs cgo): no LiteFS"; return 0; }

  exec 8>"$dir/.build.lock"
  flock 8
  if [ "${LEASEWAY_FORCE_LITEFS_BUILD:-0}" != 1 ] && litefs_ok "$bin"; then
    ln -sfn "$bin" "$CACHE/bin/litefs"; exec 8>&-
    LITEFS_BIN=$bin; litefs_fuse_tools; return 0
  fi
  local t0=$SECONDS gobin
  gobin=$(mktemp -d "$dir/.gobin.XXXXXX")
  cp "$ROOT/tests/litefs-build/go.mod" "$ROOT/tests/litefs-build/go.sum" "$ROOT/tests/litefs-build/tools.go" "$gobin/"
  log "building LiteFS v$LITEFS_VERSION with $(go version | cut -d' ' -f3)"
  # Same flags as LiteFS's own Dockerfile, minus the static link.
  out=$( cd "$gobin" && CGO_ENABLED=1 GOFLAGS="-mod=mod -buildvcs=false" \
         timeout 1500 nice -n 10 go build -trimpath -o "$gobin/litefs" \
           -tags osusergo,sqlite_omit_load_extension \
           -ldflags="-s -w -X main.Version=v$LITEFS_VERSION" \
           github.com/superfly/litefs/cmd/litefs 2>&1 ) || rc=$?
  if [ $rc -ne 0 ] || [ ! -x "$gobin/litefs" ]; then
    rm -rf "$gobin"; exec 8>&-
    printf '%s\n' "$out" | tail -n 5 | sed 's/^/setup:   /' >&2
    if grep -qiE '403|not available|forbidden|410 Gone' <<<"$out"; then
      log "LiteFS v$LITEFS_VERSION is not served by the Go module proxy here: no LiteFS binary;"
      log "  litefs_* tests run on tests/lib/litefs_standin.py, the side-by-side bench skips"
    else
      log "LiteFS build failed (rc $rc): no LiteFS binary"
    fi
    [ "${LEASEWAY_REQUIRE_LITEFS:-0}" = 1 ] && return 1
    return 0
  fi
  mv -f "$gobin/litefs" "$bin"; rm -rf "$gobin"
  echo "v$LITEFS_VERSION" >"$dir/litefs.version"
  ln -sfn "$bin" "$CACHE/bin/litefs"
  exec 8>&-
  log "LiteFS built in $((SECONDS - t0)) s"
  LITEFS_BIN=$bin
  litefs_fuse_tools
}

if [ "${LEASEWAY_SKIP_APT:-0}" != 1 ]; then
  install_apt
  stop_system_services
fi
CONSUL_BIN=
build_consul
LITEFS_BIN=
build_litefs
echo "LITEFS_BIN=$LITEFS_BIN"
echo "CONSUL_BIN=$CONSUL_BIN"
