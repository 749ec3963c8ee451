#!/usr/bin/env bash
# Regression: leaseway started with SIGCHLD ignored (a launcher's setting survives exec) must
# still see its children's exit codes. With SIGCHLD ignored the kernel reaps children itself,
# waitpid() answers ECHILD, and that was taken as "exit 0": a failing --migrate-command
# counted as done and the gate opened over migrations that never ran (SPEC §4: a failure
# keeps the gate closed). Now leaseway restores SIGCHLD's default at start.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib/common.sh"
bin=${LEASEWAY_BIN:-$here/../../build/leaseway}
d=$(mktmp)
up=$(free_port); lw=$(free_port); adm=$(free_port)
python3 "$here/../lib/upstream.py" --port "$up" --name app >/dev/null 2>&1 &
register_pid $!
python3 -c 'import os, signal, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
os.execv(sys.argv[1], sys.argv[1:])' "$bin" run --instance i1 --listen "127.0.0.1:$lw" --target "127.0.0.1:$up" \
    --admin "127.0.0.1:$adm" --workers 1 --migrate-command "sh -c 'exit 3'" >"$d/lw.log" 2>&1 &
register_pid $!
wait_for "curl -s -o /dev/null http://127.0.0.1:$adm/health" 10 || die "leaseway did not come up"
wait_for "grep -q 'migrate command failed' '$d/lw.log'" 10 || { tail -n 20 "$d/lw.log"; die "no failure logged"; }
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$adm/health")
if [ "$code" = 503 ] && ! grep -q 'migrate command done\|gate=open' "$d/lw.log"; then
    echo "ok   - SIGCHLD ignored at start: a failing --migrate-command keeps the gate closed (/health 503)"
else
    tail -n 20 "$d/lw.log"
    die "SIGCHLD ignored at start: /health $code after a failing --migrate-command"
fi
