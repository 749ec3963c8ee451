#!/usr/bin/env bash
# Listener addresses (docs/configuration.md, Values): an empty host, ":PORT", means every IPv4
# interface for --listen and --admin alike, as nginx's "listen 8080" and HAProxy's "bind :8080";
# it used to bind [::1] only for --listen, silently, and to fail at run time for --admin.
# 127.0.0.2 reaches a wildcard listener, never one on 127.0.0.1 or [::1].
. "$(dirname "$0")/../lib/proxy.sh"

start_upstream app
P=$(px_free_port)
A=$(px_free_port)
px_log "starting: leaseway run --listen :$P --admin :$A"
"$LEASEWAY_BIN" run --listen ":$P" --admin ":$A" --target "127.0.0.1:$UPSTREAM_PORT" --workers 1 --instance i1 \
    >"$PX_TMP/leaseway.empty-host.log" 2>&1 &
px_register_pid $!
check "--admin :$A answers /health on 127.0.0.1" px_wait_http "http://127.0.0.1:$A/health" 10
expect_eq "--admin :$A answers /health on 127.0.0.2 (every interface)" \
    "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.2:$A/health")" 200
expect_eq "--listen :$P proxies on 127.0.0.1" \
    "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P/echo")" 200
expect_eq "--listen :$P proxies on 127.0.0.2 (every interface, not [::1] only)" \
    "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.2:$P/echo")" 200
"$LEASEWAY_BIN" handoff --admin ":$A" >"$PX_TMP/handoff.out" 2>&1
expect_match "leaseway handoff --admin :$A reaches it (static lease: the reason it cannot hand off)" \
    "$(cat "$PX_TMP/handoff.out")" "needs the consul lease"
check "no libevent warning in the log" bash -c "! grep -q '\[warn\]' '$PX_TMP/leaseway.empty-host.log'"
finish
