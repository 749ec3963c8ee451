#!/usr/bin/env bash
# --advertise goes into the lease value ({"hostname","advertise-url"} in Consul), which the
# other instances decode to find the primary's proxy: they accept visible ASCII only, under
# 256 bytes (consul_lease_value_decode). A URL outside that is refused at start-up (and by
# --check) with one line and exit 1, rather than written as a lease value that has lost its
# advertise-url (jansson drops a string that is not UTF-8) or that no replica can read.
# Found by tests/fuzz/fuzz_parsers (corpus/fuzz_parsers/regress-lease-value-not-utf8).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib/common.sh"
bin=${LEASEWAY_BIN:-$here/../../build/leaseway}
d=$(mktmp)
fails=0
ok() { printf 'ok   - %s\n' "$*"; }
bad() { fails=$((fails + 1)); printf 'FAIL - %s\n' "$*"; }

run_check() {
    "$bin" run --listen 127.0.0.1:1 --admin off --target 127.0.0.1:3000 --lease-key service/app/primary \
        --consul-addr http://127.0.0.1:1 "$@" --check >"$d/out" 2>"$d/err" </dev/null
}
refused() { # description advertise
    run_check --advertise "$2"
    local rc=$?
    if [ "$rc" = 1 ] && grep -q -- "--advertise" "$d/err"; then
        ok "--check refuses $1 (exit 1: $(head -1 "$d/err" | cut -c1-120))"
    else
        bad "--check with $1: exit $rc, stderr: $(head -c 300 "$d/err")"
    fi
}
refused "an --advertise URL that is not UTF-8" $'http://h\xb3st:8080'
refused "an --advertise URL with a control byte" $'http://host:8080/\x01'
refused "an --advertise URL with a space" 'http://host:8080/a b'
refused "an --advertise URL of 256 bytes" "http://h$(printf 'x%.0s' $(seq 1 234)).internal:8080"

# the longest and most unusual URLs a replica can still read are accepted
for url in "http://h$(printf 'x%.0s' $(seq 1 233)).internal:8080" 'https://[fd00::1]:8443/p~a_t-h.%41?q=1&r=2'; do
    if run_check --advertise "$url" && grep -q 'advertise' "$d/out"; then
        ok "--check accepts --advertise ${url:0:40}... (${#url} bytes)"
    else
        bad "--check with --advertise $url: stderr $(head -c 300 "$d/err")"
    fi
done
[ "$fails" = 0 ]
