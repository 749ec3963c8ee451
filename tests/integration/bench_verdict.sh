#!/usr/bin/env bash
# The benchmark's verdicts compare the exact ratios with the bars, never the
# rounded ones it prints (tests/bench/ratios.sh, sourced by bench.sh): a round
# at 1.1979x HAProxy fails the 1.20x bar even though it prints as 1.20.
PX_DEADLINE=${PX_DEADLINE:-30}
. "$(dirname "$0")/../lib/proxy.sh"
# shellcheck source=../bench/ratios.sh
. "$LEASEWAY_SRC/tests/bench/ratios.sh"

# the 12:04 run's fourth round: leaseway 54626 req/s, nginx 49477, HAProxy 45603
rn=$(ratio_exact 54626 49477) rh=$(ratio_exact 54626 45603)
expect_eq "1.1979x HAProxy is under the 1.20x bar" "$(verdict "$(min_ratio "$rh" 1.30)" ">=" 1.20)" FAIL
expect_eq "1.1041x nginx is over the 1.10x bar" "$(verdict "$(min_ratio "$rn" 1.30)" ">=" 1.10)" PASS
expect_eq "... and prints as 1.20 (the figure people read)" "$(ratio_show "$rh")" 1.20
expect_eq "the minimum shows enough digits to see why it failed" "$(min_show "$(min_ratio "$rh" 1.30)")" 1.1979
expect_eq "exactly at the bar passes" "$(verdict "$(ratio_exact 120 100)" ">=" 1.20)" PASS
expect_eq "a <= bar: 0.8004 fails 0.80" "$(verdict "$(ratio_exact 8004 10000)" "<=" 0.80)" FAIL
expect_eq "a <= bar: 0.7400 passes 0.80" "$(verdict "$(ratio_exact 7400 10000)" "<=" 0.80)" PASS
expect_eq "a round where leaseway failed is an error, and fails" "$(verdict "$(min_ratio 1.30 ERR)" ">=" 1.10)" FAIL
expect_eq "a missing ratio is n/a" "$(verdict "$(min_ratio 1.30 n/a)" ">=" 1.10)" N/A
expect_eq "ratio of an error" "$(ratio_exact ERR 100)" ERR
expect_eq "ratio with a missing figure" "$(ratio_exact 100 "")" n/a

finish
