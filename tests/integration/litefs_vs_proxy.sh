#!/usr/bin/env bash
# leaseway against LiteFS's own proxy, on one real LiteFS cluster, row by row
# (issue 6, item 5 and its bar "leaseway >= LiteFS's proxy on every behaviour
# row"): runs tests/bench/litefs_side_by_side.sh --check, the side-by-side's
# behaviour rows without its throughput rounds, and fails when leaseway loses
# one. Skips (77) where no real LiteFS can run. Bounded: 240 s.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAX_SECONDS=${MAX_SECONDS:-240} exec bash "$HERE/../bench/litefs_side_by_side.sh" --check
