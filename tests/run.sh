#!/usr/bin/env bash
# Runs every test leaseway has, from a fresh machine: installs what is missing
# (tests/setup.sh), builds, then runs
#   1. the format check (clang-format, .clang-format),
#   2. the unit, integration and VTC tests (ctest) on the normal build,
#   3. the same under ASan+UBSan (LEASEWAY_SANITIZE=ON),
#   4. every libFuzzer target (tests/fuzz, LEASEWAY_FUZZ=ON, clang-14) over its checked-in
#      corpus plus a short deterministic fuzz (-seed=1 -runs=FUZZ_RUNS), one result per target,
#   5. a valgrind leak check of the binary through a real exchange.
# The last line is "N passed, N failed" over all of it; exit 0 only if none failed.
#
# Options (environment): JOBS (build parallelism, default 2), SKIP_SANITIZE=1, SKIP_FUZZ=1,
# FUZZ_RUNS (runs per target, its corpus included; default 100000), SKIP_VALGRIND=1,
# TEST_REGEX=... (ctest -R filter).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
jobs=${JOBS:-2}
out="$top/tests/out"
mkdir -p "$out"
passed=0
failed=0
failures=()

stage() { printf '\n==== %s ====\n' "$*"; }
record() { # name rc
    if [ "$2" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$1"); fi
}

stage "set-up (tests/setup.sh)"
if ! bash "$here/setup.sh"; then
    echo "set-up failed: see above"
    echo "0 passed, 1 failed"
    exit 1
fi

build() { # dir extra-cmake-args...
    local dir=$1
    shift
    cmake -S "$top" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >"$out/cmake-$(basename "$dir").log" 2>&1 &&
        cmake --build "$dir" -j "$jobs" 2>&1 | tail -n 30
    return "${PIPESTATUS[0]}"
}

# ctest prints "N% tests passed, F tests failed out of T"; fold its counts into ours.
run_ctest() { # dir label
    local dir=$1 label=$2 log="$out/ctest-$2.log"
    local args=(--test-dir "$dir" --output-on-failure --no-tests=error)
    [ -n "${TEST_REGEX:-}" ] && args+=(-R "$TEST_REGEX")
    [ -n "${CTEST_EXCLUDE:-}" ] && args+=(-E "$CTEST_EXCLUDE")
    ctest "${args[@]}" 2>&1 | tee "$log"
    local line total fails
    line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        failed=$((failed + 1))
        failures+=("$label: ctest did not run")
        return
    fi
    total=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$line")
    fails=$(sed -E 's/.*, ([0-9]+) tests? failed.*/\1/' <<<"$line")
    passed=$((passed + total - fails))
    failed=$((failed + fails))
    while read -r name; do failures+=("$label: $name"); done < <(grep -E '^\s+[0-9]+ - ' "$log" | sed -E 's/^\s+[0-9]+ - //')
}

stage "format check"
mapfile -t csrc < <(cd "$top" && git ls-files '*.c' '*.h' 2>/dev/null || find proxy consul routing health tests -name '*.[ch]')
if (cd "$top" && clang-format --dry-run --Werror "${csrc[@]}" >"$out/format.log" 2>&1); then
    record format 0
else
    head -n 40 "$out/format.log"
    echo "format check failed: run clang-format -i on the files above"
    record format 1
fi

stage "build (RelWithDebInfo, -Wall -Wextra -Werror)"
if build "$top/build"; then
    record build 0
    stage "tests (normal build)"
    run_ctest "$top/build" normal
else
    record build 1
fi

if [ -z "${SKIP_SANITIZE:-}" ]; then
    stage "build (ASan + UBSan)"
    if build "$top/build-asan" -DLEASEWAY_SANITIZE=ON; then
        record build-asan 0
        stage "tests under ASan + UBSan"
        # leak checks are valgrind's job below; ASan still reports leaks at exit of unit tests
        # The long end-to-end scenarios (failover loops, rolling deploy, LiteFS, the browser,
        # and the timing scenarios: a killed Consul agent, slow agent replies, a locked database
        # across a 10 s re-check) run once, in the normal pass: every code path they use is also
        # driven here by the shorter tests, and twice would push the suite past its time budget.
        ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1} \
            UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
            LEASEWAY_UNDER_SANITIZER=1 \
            CTEST_EXCLUDE=${ASAN_EXCLUDE:-routing_failover|deploy_rolling|litefs_|ops_status_page|consul_agent_crash|consul_alive_delay|consul_renew_delay|health_prisma_locked} \
            run_ctest "$top/build-asan" asan
    else
        record build-asan 1
    fi
fi

# Each target reads its corpus (tests/fuzz/corpus/<target>, never written: libFuzzer adds what
# it finds to the first directory, a temporary one) and then fuzzes FUZZ_RUNS inputs from a
# fixed seed, so the result does not depend on the machine's speed. A crash, leak, UBSan
# report or broken invariant fails the target; its input is kept in tests/out/.
if [ -z "${SKIP_FUZZ:-}" ]; then
    stage "build (libFuzzer targets: clang-14, ASan + UBSan)"
    if build "$top/build-fuzz" -DCMAKE_C_COMPILER=clang-14 -DLEASEWAY_FUZZ=ON -DLEASEWAY_TESTS=OFF; then
        record build-fuzz 0
        stage "fuzz targets: each over its corpus, then fuzzed up to ${FUZZ_RUNS:-100000} runs (-seed=1)"
        for src in "$top"/tests/fuzz/fuzz_*.c; do
            t=$(basename "$src" .c)
            scratch=$(mktemp -d "${TMPDIR:-/tmp}/leaseway-$t.XXXXXX")
            t0=$SECONDS
            "$top/build-fuzz/tests/fuzz/$t" -seed=1 -runs="${FUZZ_RUNS:-100000}" -timeout=20 \
                -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/$t-" \
                "$scratch" "$top/tests/fuzz/corpus/$t" >"$out/$t.log" 2>&1
            rc=$?
            rm -rf "$scratch"
            if [ "$rc" -eq 0 ]; then
                echo "ok   - $t: $(grep -E '^stat::number_of_executed_units' "$out/$t.log" | awk '{print $2}') runs in $((SECONDS - t0)) s"
            else
                grep -E 'fuzz invariant|SUMMARY:' "$out/$t.log" | head -n 4
                unit=$(sed -n 's/.*Test unit written to //p' "$out/$t.log" | head -n 1)
                echo "FAIL - $t (rc $rc): log $out/$t.log; again: build-fuzz/tests/fuzz/$t ${unit:-<input>}"
            fi
            record "fuzz/$t" "$rc"
        done
    else
        record build-fuzz 1
    fi
fi

if [ -z "${SKIP_VALGRIND:-}" ]; then
    stage "valgrind leak check"
    LEASEWAY_BIN="$top/build/leaseway" LEASEWAY_SRC="$top" bash "$here/valgrind.sh"
    record valgrind $?
fi

echo
if [ "${#failures[@]}" -gt 0 ]; then
    echo "failed:"
    printf '  %s\n' "${failures[@]}"
fi
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
