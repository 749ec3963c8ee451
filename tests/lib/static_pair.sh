# shellcheck shell=bash
# static_pair.sh: a primary and a replica leaseway with --lease static, each in front of its
# own tests/lib/upstream.py app (named P-app and R-app), on free loopback ports; no Consul.
#   . "$here/../lib/static_pair.sh"
#   static_pair_start [extra replica flags...]
# sets: d (a temporary directory, logs p.log and r.log), bin, up1/up2 (the apps), p1 (the
# primary's listener), p2 (the replica's, with --static-primary P=http://127.0.0.1:$p1).
here=${here:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../integration" && pwd)}
# shellcheck source=common.sh
. "$here/../lib/common.sh"
bin=${LEASEWAY_BIN:-$here/../../build/leaseway}

static_pair_start() {
    d=$(mktmp)
    up1=$(free_port); up2=$(free_port); p1=$(free_port); p2=$(free_port)
    python3 "$here/../lib/upstream.py" --port "$up1" --name P-app >/dev/null 2>&1 &
    register_pid $!
    python3 "$here/../lib/upstream.py" --port "$up2" --name R-app >/dev/null 2>&1 &
    register_pid $!
    "$bin" run --instance P --listen "127.0.0.1:$p1" --target "127.0.0.1:$up1" --admin off --workers 1 \
        >"$d/p.log" 2>&1 &
    register_pid $!
    "$bin" run --instance R --listen "127.0.0.1:$p2" --target "127.0.0.1:$up2" --admin off --workers 1 \
        --static-primary "P=http://127.0.0.1:$p1" "$@" >"$d/r.log" 2>&1 &
    register_pid $!
    local u
    for u in "$up1/echo" "$up2/echo" "$p1/echo" "$p2/echo"; do
        wait_for "curl -sf http://127.0.0.1:$u" 10 || die "127.0.0.1:$u did not come up"
    done
}
