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

# numbers still work
if run_check --drain-timeout 1m30s --hold-timeout 1.5s && grep -q '^drain-timeout: 90s' "$d/out" &&
    grep -q '^hold-timeout: 1500ms' "$d/out"; then
    ok "--drain-timeout 1m30s and --hold-timeout 1.5s accepted"
else
    bad "valid durations: $(grep -hE 'drain-timeout|hold-timeout|leaseway:' "$d/out" "$d/err")"
fi
[ "$fails" = 0 ]
