# shellcheck shell=bash disable=SC2034 # RECORD, STRICT and CHECK are for the caller
# Command line of the bench scripts; sourced. bench_args FLAGS "$@":
# FLAGS lists what the script accepts besides --help ("record", "strict", "check").
# Sets RECORD, STRICT and CHECK (0 or 1); --help prints the script's header
# comment (line 2 up to "set -uo") and exits 0; anything else exits 2.
bench_args() {
    local flags=" $1 " a
    shift
    RECORD=0 STRICT=0 CHECK=0
    for a in "$@"; do
        if [[ $a == --record && $flags == *" record "* ]]; then
            RECORD=1
        elif [[ $a == --strict && $flags == *" strict "* ]]; then
            STRICT=1
        elif [[ $a == --check && $flags == *" check "* ]]; then
            CHECK=1
        elif [[ $a == -h || $a == --help ]]; then
            sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
        else
            echo "$(basename "$0"): unknown argument $a (see --help)" >&2
            exit 2
        fi
    done
}
