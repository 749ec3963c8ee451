# shellcheck shell=bash
# Ratios and verdicts of the bench scripts; sourced. A verdict compares the
# exact ratio with its bar; only what is printed is rounded (a round at
# 1.1979x must fail a 1.20x bar though it prints as 1.20).
#
#   ratio_exact A B   A/B with 6 decimals; "ERR" if A is an error, "n/a" if either is missing
#   ratio_show R      R as printed in tables: 2 decimals (ERR and n/a unchanged)
#   fmt_ratio A B     ratio_show of ratio_exact A B
#   min_ratio R...    the smallest exact ratio; "ERR" if any is, "n/a" if any is missing
#   min_show R        a minimum as printed next to its verdict: 4 decimals
#   verdict R OP BAR  PASS, FAIL (also for ERR) or N/A; OP is ">=" or "<="
ratio_exact() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a ~ /^ERR/) print "ERR"
        else if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.6f\n", a / b
        else print "n/a" }'
}
ratio_show() {
    awk -v r="$1" 'BEGIN { if (r ~ /^[0-9.]+$/) printf "%.2f\n", r; else print r }'
}
fmt_ratio() {
    ratio_show "$(ratio_exact "$1" "$2")"
}
min_ratio() {
    printf '%s\n' "$@" | awk '
        /^ERR/ { err = 1; next }
        !/^[0-9.]+$/ { bad = 1; next }
        { if (!n++ || $1 + 0 < m) m = $1 + 0 }
        END { if (err) print "ERR"; else if (bad || !n) print "n/a"; else printf "%.6f\n", m }'
}
min_show() {
    awk -v r="$1" 'BEGIN { if (r ~ /^[0-9.]+$/) printf "%.4f\n", r; else print r }'
}
verdict() {
    awk -v v="$1" -v op="$2" -v b="$3" 'BEGIN {
        if (v ~ /^ERR/) { print "FAIL"; exit }
        if (v !~ /^[0-9.]+$/) { print "N/A"; exit }
        ok = (op == ">=") ? (v + 0 >= b + 0) : (v + 0 <= b + 0)
        print ok ? "PASS" : "FAIL" }'
}
