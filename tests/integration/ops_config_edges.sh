#!/usr/bin/env bash
# Edges of the command line and the listeners (SPEC §1, docs/configuration.md) found by an audit:
# a --listen address another process holds is refused at start-up (SO_REUSEPORT on the workers'
# sockets used to share it silently with a second leaseway).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib/common.sh"
bin=${LEASEWAY_BIN:-$here/../../build/leaseway}
d=$(mktmp)
fails=0
ok() { printf 'ok   - %s\n' "$*"; }
bad() { fails=$((fails + 1)); printf 'FAIL - %s\n' "$*"; }
T=(--target 127.0.0.1:3000)

# --listen held by a socket with SO_REUSEPORT (what a first leaseway's workers have): refused, exit 1
busy=$(free_port)
python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(30)' "$busy" &
register_pid $!
wait_for "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", $busy)).close()'" 5 || die "no listener"
timeout 10 "$bin" run "${T[@]}" --listen "127.0.0.1:$busy" --admin "127.0.0.1:$(free_port)" >"$d/out" 2>"$d/err"
rc=$?
if [ "$rc" = 1 ] && grep -q "cannot listen on --listen 127.0.0.1:$busy: Address already in use" "$d/err"; then
    ok "run with its --listen port held (SO_REUSEPORT): exit 1 and the reason ($(tail -1 "$d/err"))"
else
    bad "run with its --listen port held (SO_REUSEPORT): exit $rc, stderr: $(tail -c 300 "$d/err")"
fi

[ "$fails" = 0 ]
