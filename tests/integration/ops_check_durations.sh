#!/usr/bin/env bash
# A duration is a number and a unit, Go style ("500ms", "1m30s"). strtod() also reads "nan":
# "--drain-timeout nans" used to pass the parser and become -9223372036854775808 ms (a NaN
# converted to an integer, undefined behaviour). Refused now at start-up and by --check, from a
# flag, a LEASEWAY_* variable or the file. Found by tests/fuzz/fuzz_consul_json in the Consul
# side's twin parser (corpus/fuzz_consul_json/regress-duration-nan).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib/common.sh"
bin=${LEASEWAY_BIN:-$here/../../build/leaseway}
d=$(mktmp)
fails=0
ok() { printf 'ok   - %s\n' "$*"; }
bad() { fails=$((fails + 1)); printf 'FAIL - %s\n' "$*"; }
run_check() { "$bin" run --listen 127.0.0.1:1 --admin off --target 127.0.0.1:3000 "$@" --check >"$d/out" 2>"$d/err" </dev/null; }

for v in nans nanms NaNs 'nan(1)s' 1snans; do
    run_check --drain-timeout "$v"
    rc=$?
    if [ "$rc" = 1 ] && grep -q 'expected a duration' "$d/err"; then
        ok "--drain-timeout $v refused ($(head -1 "$d/err"))"
    else
        bad "--drain-timeout $v: exit $rc, $(grep -h drain-timeout "$d/out" "$d/err" | head -1)"
    fi
done
LEASEWAY_HOLD_TIMEOUT=nans run_check
rc=$?
[ "$rc" = 1 ] && grep -q 'LEASEWAY_HOLD_TIMEOUT' "$d/err" && ok "LEASEWAY_HOLD_TIMEOUT=nans refused" ||
    bad "LEASEWAY_HOLD_TIMEOUT=nans: exit $rc, $(grep -h hold-timeout "$d/out" "$d/err" | head -1)"
printf 'target: 127.0.0.1:3000\nconsistency-window: nanms\n' >"$d/leaseway.yml"
"$bin" run --config "$d/leaseway.yml" --listen 127.0.0.1:1 --admin off --check >"$d/out" 2>"$d/err" </dev/null
rc=$?
[ "$rc" = 1 ] && grep -q 'leaseway.yml:2' "$d/err" && ok "consistency-window: nanms in the file refused" ||
    bad "consistency-window: nanms in the file: exit $rc, $(grep -h consistency "$d/out" "$d/err" | head -1)"

# Go's grammar, not strtod()'s: hex and exponents were read as numbers ("0x10s" = 16s, "1e3ms" = 1s),
# and a value under 1ms rounded to 0 ("--consistency-window 0.4ms" became 0, off) without a word.
for v in 0x10s 1e3ms +5s; do
    run_check --hold-timeout "$v"
    rc=$?
    if [ "$rc" = 1 ] && grep -q "^leaseway: --hold-timeout: expected a duration.*\"$v\"" "$d/err"; then
        ok "--hold-timeout $v refused"
    else
        bad "--hold-timeout $v: exit $rc, $(grep -h hold-timeout "$d/out" "$d/err" | head -1)"
    fi
done
run_check --consistency-window 0.4ms
rc=$?
[ "$rc" = 1 ] && grep -q '^leaseway: --consistency-window "0.4ms": under 1ms' "$d/err" &&
    [ "$(wc -l <"$d/err")" = 1 ] && ok "--consistency-window 0.4ms refused ($(cat "$d/err"))" ||
    bad "--consistency-window 0.4ms: exit $rc, $(grep -h consistency "$d/out" "$d/err" | head -1)"
printf 'target: 127.0.0.1:3000\nconsistency-window: 1e3ms\n' >"$d/leaseway.yml"
"$bin" run --config "$d/leaseway.yml" --listen 127.0.0.1:1 --admin off --check >"$d/out" 2>"$d/err" </dev/null
rc=$?
[ "$rc" = 1 ] && grep -q 'leaseway.yml:2: expected a duration' "$d/err" && ok "consistency-window: 1e3ms in the file refused" ||
    bad "consistency-window: 1e3ms in the file: exit $rc, $(grep -h consistency "$d/out" "$d/err" | head -1)"
if run_check --consistency-window 0.5ms --txid-wait 1500us && grep -q '^consistency-window: 1ms' "$d/out" &&
    grep -q '^txid-wait: 2ms' "$d/out"; then
    ok "--consistency-window 0.5ms and --txid-wait 1500us round to 1ms and 2ms"
else
    bad "rounding: $(grep -hE 'consistency-window|txid-wait|leaseway:' "$d/out" "$d/err")"
fi

# numbers still work
if run_check --drain-timeout 1m30s --hold-timeout 1.5s && grep -q '^drain-timeout: 90s' "$d/out" &&
    grep -q '^hold-timeout: 1500ms' "$d/out"; then
    ok "--drain-timeout 1m30s and --hold-timeout 1.5s accepted"
else
    bad "valid durations: $(grep -hE 'drain-timeout|hold-timeout|leaseway:' "$d/out" "$d/err")"
fi
[ "$fails" = 0 ]
