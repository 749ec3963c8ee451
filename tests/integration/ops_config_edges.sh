#!/usr/bin/env bash
# Edges of the command line and the listeners (SPEC §1, docs/configuration.md) found by an audit,
# through the real binary:
#   - a --listen address another process holds is refused at start-up (SO_REUSEPORT on the
#     workers' sockets used to share it silently with a second leaseway);
#   - --config beats LEASEWAY_CONFIG, and an empty LEASEWAY_<X>= is unset (flag > env > file);
#   - list variables drop blanks around commas; a YAML syntax error is reported as such;
#   - --config from a pipe (read whole: it is parsed twice).
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

# check_out DESCRIPTION PATTERN COMMAND...: exit 0 and a line of --check's output matches PATTERN
check_out() {
    local what=$1 pat=$2
    shift 2
    "$@" >"$d/out" 2>"$d/err" </dev/null
    local rc=$?
    if [ "$rc" = 0 ] && grep -qE -- "$pat" "$d/out"; then
        ok "$what"
    else
        bad "$what: exit $rc, stdout: $(grep -E '^(region|target|passthrough|lease):' "$d/out" | tr '\n' ' '), stderr: $(head -c 300 "$d/err")"
    fi
}
printf 'target: 127.0.0.1:3001\nregion: from-env-file\n' >"$d/env.yml"
printf 'target: 127.0.0.1:3002\nregion: from-flag-file\n' >"$d/flag.yml"
check_out "LEASEWAY_CONFIG=env.yml --config flag.yml: the flag's file" '^region: "from-flag-file"' \
    env LEASEWAY_CONFIG="$d/env.yml" "$bin" run --config "$d/flag.yml" --admin off --check
check_out "LEASEWAY_CONFIG= --config flag.yml: the flag's file" '^region: "from-flag-file"' \
    env LEASEWAY_CONFIG= "$bin" run --config "$d/flag.yml" --admin off --check
check_out "LEASEWAY_TARGET= with a target in the file: the file's" '^target: "127.0.0.1:3002"  # file' \
    env LEASEWAY_TARGET= "$bin" run --config "$d/flag.yml" --admin off --check
check_out "LEASEWAY_LEASE_KEY=: the static lease" '^lease: "static"  # default' \
    env LEASEWAY_LEASE_KEY= "$bin" run --config "$d/flag.yml" --admin off --check
check_out "LEASEWAY_PASSTHROUGH='/assets/* , /favicon.ico': both items, trimmed" \
    '^passthrough: \["/assets/\*", "/favicon.ico"\]  # env' \
    env LEASEWAY_PASSTHROUGH='/assets/* , /favicon.ico' "$bin" run "${T[@]}" --admin off --check
check_out "--config from a pipe" '^region: "piped"' \
    "$bin" run --config <(printf 'target: 127.0.0.1:3000\nregion: piped\n') --admin off --check

printf 'target: 127.0.0.1:3000\nhold-timeout: [5s\nregion: ams\n' >"$d/syntax.yml"
"$bin" run --config "$d/syntax.yml" --admin off --check >"$d/out" 2>"$d/err" </dev/null
rc=$?
if [ "$rc" = 1 ] && grep -qF "syntax.yml:3: did not find expected ',' or ']' (while parsing a flow sequence on line 2)" "$d/err"; then
    ok "a YAML syntax error under a non-list key: libyaml's error ($(head -1 "$d/err"))"
else
    bad "a YAML syntax error under a non-list key: exit $rc, stderr: $(head -c 300 "$d/err")"
fi

[ "$fails" = 0 ]
