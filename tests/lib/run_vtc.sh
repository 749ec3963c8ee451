#!/usr/bin/env bash
# run_vtc.sh FILE.vtc: run one varnishtest case against a real leaseway.
#
# The VTC declares its own upstream as a varnishtest server listening on
# ${up_port}; leaseway is started here, before varnishtest, with
# --target 127.0.0.1:${up_port} (it connects to the app only per request, so
# the port may still be closed while it starts). Macros passed to the VTC:
#   ${lw_addr} ${lw_port}   leaseway's public listener
#   ${lw_admin}             leaseway's admin port
#   ${up_port}              where the VTC's server must listen
# Extra leaseway flags can be given in the VTC with a comment line:
#   # leaseway-flags: --header-timeout 2s
# Exit status: varnishtest's (0 pass); on failure the varnishtest log and
# leaseway's log tail are printed.
set -u
vtc=${1:?usage: run_vtc.sh FILE.vtc}
[ -f "$vtc" ] || { echo "no such file: $vtc" >&2; exit 2; }
vtc=$(cd "$(dirname "$vtc")" && pwd)/$(basename "$vtc")
PX_DEADLINE=${PX_DEADLINE:-100}
# proxy.sh names its temp dir and log lines after the script: use the case.
export PX_NAME_OVERRIDE
PX_NAME_OVERRIDE=$(basename "$vtc" .vtc)
. "$(dirname "${BASH_SOURCE[0]}")/proxy.sh"


command -v varnishtest >/dev/null || px_die "varnishtest not installed (apt-get install varnish)"

read -r -a flags <<<"$(sed -n 's/^#[[:space:]]*leaseway-flags:[[:space:]]*//p' "$vtc" | head -1)"
up_port=$(px_free_port)
LW_TARGET=127.0.0.1:$up_port start_leaseway "${flags[@]}"

log=$PX_TMP/varnishtest.log
varnishtest -v -t 60 \
    -Dlw_addr=127.0.0.1 -Dlw_port="$LW_PORT" -Dlw_admin="$LW_ADMIN" -Dup_port="$up_port" \
    "$vtc" >"$log" 2>&1
rc=$?
if [ "$rc" -ne 0 ]; then
    echo "=== varnishtest $(basename "$vtc") failed ($rc); log (client/server lines) ==="
    # The useful part: what was sent and received, and the failed expectation.
    grep -vE 'macro (def|undef)|^\*\*\*\* dT|^\*\*\*\* +[a-z0-9]+ +(txreq|rxhdr)?len' "$log" | tail -n 150
    echo "=== leaseway log tail ==="
    tail -n 20 "$LW_LOG"
else
    grep -E '^#' "$log" | tail -n 1
fi
stop_leaseway TERM 10
exit "$rc"
