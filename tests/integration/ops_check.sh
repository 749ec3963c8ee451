#!/usr/bin/env bash
# `leaseway run --check` (docs/configuration.md: "validate; print the effective settings")
# refuses exactly what `leaseway run` would refuse at start-up, with one line and exit 1:
# the values that are only checked when they are used (a target that does not resolve, an
# unreadable secret file, an access log it cannot write, an --admin that does not resolve, a bad
# glob, probe or static primary, the Consul client settings, the lease TTL), not only those the
# flag parser sees. A good configuration: exit 0 and the
# settings. Nothing is started: no listener, no Consul request.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib/common.sh"
bin=${LEASEWAY_BIN:-$here/../../build/leaseway}
d=$(mktmp)
fails=0
ok() { printf 'ok   - %s\n' "$*"; }
bad() { fails=$((fails + 1)); printf 'FAIL - %s\n' "$*"; }

# each case: description | expected stderr fragment | run arguments (after --target ... --check)
refused() {
    local what=$1 frag=$2
    shift 2
    "$bin" run --listen 127.0.0.1:1 --admin off "$@" --check >"$d/out" 2>"$d/err" </dev/null
    local rc=$?
    if [ "$rc" = 1 ] && grep -qi -- "$frag" "$d/err"; then
        ok "--check refuses $what (exit 1: $(head -c 150 "$d/err" | head -1))"
    else
        bad "--check with $what: exit $rc, stderr: $(head -c 300 "$d/err"), stdout: $(head -c 100 "$d/out")"
    fi
}
T=(--target 127.0.0.1:3000)
refused "a target that does not resolve" "cannot resolve" --target no-such-host.invalid:3000
refused "an unreadable --peer-secret-file" "peer-secret" "${T[@]}" --peer-secret-file "$d/nonexistent"
refused "an unknown --migrations probe" "migrations" "${T[@]}" --migrations foo:bar
refused "a --static-primary without ID=URL" "static-primary" "${T[@]}" --static-primary foo
refused "a --passthrough glob not starting with /" "passthrough" "${T[@]}" --passthrough nopath
refused "--lease-ttl 0" "lease-ttl" "${T[@]}" --lease-key k --lease-ttl 0
refused "a --consul-addr with an ftp:// scheme" "scheme" "${T[@]}" --lease-key k --consul-addr ftp://x
refused "a --consul-addr that is not host:port" "Consul address" "${T[@]}" --lease-key k --consul-addr 'not a url'
# ports are read whole and must be 1 to 65535 (atoi() bound 88901 as 23365, "99x" as 99, "" and 0 as random)
refused "--admin 127.0.0.1:88901" '--admin "127.0.0.1:88901": expected host:port' "${T[@]}" --admin 127.0.0.1:88901
refused "--admin 127.0.0.1:99x" '--admin "127.0.0.1:99x": expected host:port' "${T[@]}" --admin 127.0.0.1:99x
refused "--listen 127.0.0.1: (no port)" '--listen "127.0.0.1:": expected host:port' "${T[@]}" --listen 127.0.0.1:
refused "--listen :0" '--listen ":0": expected host:port' "${T[@]}" --listen :0
refused "--target 127.0.0.1:70000" '--target "127.0.0.1:70000": expected host:port' --target 127.0.0.1:70000
# a URL where host:port is expected said "cannot resolve"; an unquoted IPv6 listen in YAML, that lists are for other keys
refused "--target with a scheme" '--target "http://127.0.0.1:3000": expected host:port without a scheme' \
    --target http://127.0.0.1:3000
printf 'target: 127.0.0.1:3000\nlisten: [::]:8080\n' >"$d/v6.yml"
refused "an unquoted IPv6 listen: in the file" 'v6.yml:2: listen: quote an IPv6 address' --config "$d/v6.yml"
CONSUL_HTTP_TOKEN_FILE=$d/nonexistent refused "an unreadable CONSUL_HTTP_TOKEN_FILE" "token" \
    "${T[@]}" --lease-key k
CONSUL_HTTP_SSL=maybe refused "CONSUL_HTTP_SSL=maybe" "CONSUL_HTTP_SSL" "${T[@]}" --lease-key k
# the YAML file: null is no value ("lease-key: ~" turned the consul lease on), a key given twice is
# refused (the last one won), and a value the environment or a flag overrides is checked all the same
printf 'target: 127.0.0.1:3000\nlease-key: ~\n' >"$d/null.yml"
refused "lease-key: ~ in the file" "null.yml:2: lease-key: a value is required, got ~" --config "$d/null.yml"
printf 'target: 127.0.0.1:3000\nregion:\n' >"$d/empty.yml"
refused "an empty region: in the file" "empty.yml:2: region: a value is required, got nothing" --config "$d/empty.yml"
printf 'target: 127.0.0.1:3000\nwrites: forward\nwrites: replay\n' >"$d/dup.yml"
refused "a duplicated key in the file" 'dup.yml:3: duplicate key "writes" (first on line 2)' --config "$d/dup.yml"
printf 'target: 127.0.0.1:3000\nhold-timeout: garbage\n' >"$d/over.yml"
LEASEWAY_HOLD_TIMEOUT=5s refused "a bad file value that LEASEWAY_HOLD_TIMEOUT overrides" \
    'over.yml:2: expected a duration such as 500ms, 5s or 1m, got "garbage"' --config "$d/over.yml"
printf 'target: 127.0.0.1:3000\nwrites: proxy\n' >"$d/over2.yml"
refused "a bad file value that --writes overrides" 'over2.yml:2: writes "proxy": expected forward or replay' \
    --config "$d/over2.yml" --writes forward
refused "--idle-timeout 0, naming the flag" '^leaseway: --idle-timeout 0: must be greater than 0' "${T[@]}" \
    --idle-timeout 0
refused "--lock-delay 500ms, naming the flag and the range" '^leaseway: --lock-delay 500ms: must be between 1s and 60s' \
    "${T[@]}" --lease-key k --lock-delay 500ms
refused "--lock-delay 2m" '^leaseway: --lock-delay 2m: must be between 1s and 60s' "${T[@]}" --lease-key k --lock-delay 2m
refused "--lease-ttl 500ms, naming the flag and the range" '^leaseway: --lease-ttl 500ms: must be between 1s and 24h' \
    "${T[@]}" --lease-key k --lease-ttl 500ms

# what run refuses before it starts anything, --check refuses with the same line
same_as_run() {
    local what=$1
    shift
    "$bin" run --listen 127.0.0.1:1 "$@" --check >"$d/out" 2>"$d/err.check" </dev/null
    local rc=$?
    timeout 10 "$bin" run --listen "127.0.0.1:$(free_port)" "$@" >"$d/out" 2>"$d/err.run" </dev/null
    local rc_run=$? line
    line=$(grep -m1 '^leaseway: ' "$d/err.run")
    if [ "$rc" = 1 ] && [ "$rc_run" = 1 ] && [ -n "$line" ] && [ "$(cat "$d/err.check")" = "$line" ]; then
        ok "--check refuses $what as run does (exit 1: $line)"
    else
        bad "--check with $what: exit $rc, stderr [$(head -c 300 "$d/err.check")]; run: exit $rc_run, [$line]"
    fi
}
same_as_run "an --access-log in a missing directory" "${T[@]}" --admin off --access-log "$d/nonexistent/a.log"
same_as_run "an --access-log that is a directory" "${T[@]}" --admin off --access-log "$d"
if [ "$(id -u)" != 0 ]; then
    mkdir "$d/ro" && chmod 555 "$d/ro"
    same_as_run "an --access-log in a directory it cannot write" "${T[@]}" --admin off --access-log "$d/ro/a.log"
fi
same_as_run "an --admin host that does not resolve" "${T[@]}" --admin no-such-host.invalid:9901
same_as_run "an --admin with a broken IPv6 host" "${T[@]}" --admin '[::1:9901'
# the Consul client checked these only once started, in a log line, after the gate had opened
same_as_run "--lock-delay 500ms" "${T[@]}" --admin off --lease-key k --consul-addr http://127.0.0.1:1 --lock-delay 500ms
[ ! -e "$d/nonexistent" ] || bad "--check created the access log's directory"
if "$bin" run --listen 127.0.0.1:1 --admin off "${T[@]}" --access-log "$d/new.log" --check >"$d/out" 2>"$d/err" </dev/null &&
    [ ! -e "$d/new.log" ]; then
    ok "--check accepts an --access-log it could create, and does not create it"
else
    bad "--check with a new --access-log: stderr $(head -c 300 "$d/err"), created: $([ -e "$d/new.log" ] && echo yes)"
fi

# what only binding can find out: run says why it cannot listen (the port is taken here)
busy=$(free_port)
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(30)' "$busy" &
register_pid $!
wait_for "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", $busy)).close()'" 5 || die "no listener"
timeout 10 "$bin" run "${T[@]}" --listen "127.0.0.1:$(free_port)" --admin "127.0.0.1:$busy" >"$d/out" 2>"$d/err"
rc=$?
if [ "$rc" = 1 ] && grep -q "cannot listen on --admin 127.0.0.1:$busy: Address already in use" "$d/err"; then
    ok "run with its --admin port taken: exit 1 and the reason ($(tail -1 "$d/err"))"
else
    bad "run with its --admin port taken: exit $rc, stderr: $(tail -c 300 "$d/err")"
fi

# good configurations, static and Consul: exit 0, the settings printed, nothing listening
for mode in static consul; do
    extra=()
    [ "$mode" = consul ] && extra=(--lease-key service/app/primary --consul-addr http://127.0.0.1:1)
    if "$bin" run --listen 127.0.0.1:1 --admin off "${T[@]}" --migrations command:true "${extra[@]}" --check \
        >"$d/out" 2>"$d/err" </dev/null && grep -q 'target' "$d/out"; then
        ok "--check on a good $mode configuration: exit 0, settings printed"
    else
        bad "--check on a good $mode configuration: stdout $(head -c 200 "$d/out"), stderr $(head -c 300 "$d/err")"
    fi
done
[ "$fails" = 0 ]
