#!/usr/bin/env bash
# Write latency through leaseway: a local write on the primary vs a write
# forwarded by a replica to the primary, at a fixed rate, open loop.
#
#   tests/bench/latency.sh [--record] [--strict] [--help]
#
# Set-up: a Consul dev agent; lw-1 (the only candidate, so the primary) on
# 127.0.0.2 and lw-2 (--candidate=false, a replica) on 127.0.0.3, --workers 1,
# each in front of its own app on the same address. Load: tests/bench/openloop.c
# (built here with cc -O2 ... -levent into the temp dir): RATE requests/s over
# CONNS keep-alive connections, each request timed from its SCHEDULED send
# time (no coordinated omission), POST with a small JSON body {"id": unique}.
#   local:     openloop -> lw-1 -> app-1
#   forwarded: openloop -> lw-2 -> lw-1 -> app-1
# ROUNDS interleaved rounds (the order alternates), DURATION s each after
# WARMUP s. Apps (APPS, both by default):
#   demo   deploy/demo-app/app.py, POST /write = a real SQLite insert (run with
#          TCP_NODELAY on its sockets: its headers and body go out in two
#          send()s, and Nagle + delayed ACK would add 40 ms to every answer)
#   nginx  nginx `return 200` for POST /write: ~no app time, so the ratio shows
#          the cost of the extra proxy hop alone (the worst case for the ratio)
# Bar: forwarded p99 <= 1.5 x local p99 (median over rounds) for each app.
#
# Then (unless SKIP_FAILOVER=1) the write stall during failover:
# tests/integration/routing_failover.sh with CYCLES (default 10) SIGTERM and
# SIGKILL failovers under load; its FIGURE lines (stall = longest gap between
# acknowledged writes around each failover: median and max) are reported.
# Bar: planned handover (SIGTERM) stall max <= 1 s.
#
# Environment: RATE [500] CONNS [16] DURATION [5] WARMUP [1] ROUNDS [5]
#   APPS ["demo nginx"] PIN [1: servers on CPU 0, openloop on CPU 1]
#   SKIP_FAILOVER=1  CYCLES [10]  NOTE (free text for --record)
#   LEASEWAY_BIN [<repo>/build/leaseway]  MAX_SECONDS [600]  KEEP_TMP=1
# --record appends a dated section to tests/bench/RESULTS.md.
# --strict exits 1 when a bar fails. Otherwise exit 0 when the run completed,
# 2 on a set-up error.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=args.sh
. "$HERE/args.sh"
# shellcheck source=ratios.sh
. "$HERE/ratios.sh"
bench_args "record strict" "$@"
RATE=${RATE:-500} CONNS=${CONNS:-16} DURATION=${DURATION:-5} WARMUP=${WARMUP:-1} ROUNDS=${ROUNDS:-5}
APPS=${APPS:-demo nginx} PIN=${PIN:-1} CYCLES=${CYCLES:-10} MAX_SECONDS=${MAX_SECONDS:-600}
LEASEWAY_BIN=${LEASEWAY_BIN:-$REPO/build/leaseway}
[ "${KEEP_TMP:-0}" = 1 ] && export LEASEWAY_KEEP_TMP=1

# shellcheck source=../lib/consul.sh
. "$REPO/tests/lib/consul.sh"

watchdog "$MAX_SECONDS" "latency.sh: killed after MAX_SECONDS=$MAX_SECONDS s"

setup_fail() { echo "latency.sh: $*" >&2; exit 2; }
[ -x "$LEASEWAY_BIN" ] || setup_fail "no leaseway binary at $LEASEWAY_BIN (build it first)"
command -v cc >/dev/null || setup_fail "no C compiler (cc)"
T=$(mktmp latency) || setup_fail "no temp dir"
cc -O2 -Wall -o "$T/openloop" "$HERE/openloop.c" -levent 2>"$T/cc.log" ||
    setup_fail "cannot build openloop.c: $(cat "$T/cc.log") (apt-get install libevent-dev)"
cp "$LEASEWAY_BIN" "$T/leaseway" || setup_fail "cannot copy $LEASEWAY_BIN"
LW=$T/leaseway
LW_INFO="$LEASEWAY_BIN, $("$LW" version 2>/dev/null | head -n 1), built $(date -u -r "$LEASEWAY_BIN" '+%H:%M UTC') (copied at start), repo HEAD $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"

PIN_SRV=() PIN_CLI=()
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    PIN_SRV=(taskset -c 0) PIN_CLI=(taskset -c 1)
fi

OUT=()
out() { printf '%s\n' "$*"; OUT+=("$*"); }
log() { printf '# %s\n' "$*" >&2; }

consul_dev_start "$T/consul" || setup_fail "consul dev agent did not start (run tests/setup.sh)"
log "consul dev agent on $CONSUL_HTTP_ADDR; leaseway: $LW_INFO"

IPS=(127.0.0.2 127.0.0.3)
IDS=(lw-1 lw-2)
PUB=$(free_port) ADM=$(free_port) APP=$(free_port)

start_app() { # kind i
    local kind=$1 i=$2 ip=${IPS[$2]}
    case $kind in
    demo)
        "${PIN_SRV[@]}" "$PY" -c '
import sys
sys.path.insert(0, sys.argv[1])
import app
app.Handler.disable_nagle_algorithm = True  # TCP_NODELAY: see the header of latency.sh
sys.argv = ["app.py", "--quiet", "--listen", sys.argv[2], "--name", sys.argv[3], "--db", sys.argv[4]]
app.main()
' "$REPO/deploy/demo-app" "$ip:$APP" "app-${IDS[$i]}" "$T/demo-$i.sqlite" >"$T/app-$kind-$i.log" 2>&1 </dev/null &
        ;;
    nginx)
        mkdir -p "$T/ngx-$i"
        cat >"$T/nginx-$i.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $T/nginx-$i.pid;
error_log $T/nginx-$i.err warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_timeout 120s;
    keepalive_requests 1000000000;
    client_body_temp_path $T/ngx-$i/body;
    proxy_temp_path $T/ngx-$i/proxy;
    fastcgi_temp_path $T/ngx-$i/fastcgi;
    uwsgi_temp_path $T/ngx-$i/uwsgi;
    scgi_temp_path $T/ngx-$i/scgi;
    server {
        listen $ip:$APP;
        location / { default_type application/json; return 200 '{"served_by":"app-${IDS[$i]}"}\n'; }
    }
}
EOF
        "${PIN_SRV[@]}" nginx -p "$T/ngx-$i" -e "$T/nginx-$i.err" -c "$T/nginx-$i.conf" >"$T/app-$kind-$i.log" 2>&1 </dev/null &
        ;;
    esac
    APP_PID[i]=$!
    register_pid "${APP_PID[$i]}"
}
start_lw() { # kind i extra...
    local kind=$1 i=$2
    shift 2
    "${PIN_SRV[@]}" "$LW" run --lease consul --lease-key "leaseway/latency-$$/$kind" --instance "${IDS[$i]}" \
        --listen "${IPS[$i]}:$PUB" --target "${IPS[$i]}:$APP" --admin "${IPS[$i]}:$ADM" \
        --advertise "http://${IPS[$i]}:$PUB" --consul-addr "$CONSUL_HTTP_ADDR" --service "lwlat-$$-$kind" \
        --workers 1 --log-level warn "$@" >>"$T/lw-$kind-$i.log" 2>&1 </dev/null &
    LW_PID[i]=$!
    register_pid "${LW_PID[$i]}"
}
status_of() { # admin -> "role primary-id"
    curl -s -m 1 "http://$1/status" | "$PY" -c 'import json,sys; j=json.load(sys.stdin); print(j.get("role"), (j.get("primary") or {}).get("id"))' 2>/dev/null
}
metric() { # admin route -> sum of leaseway_requests_total{route=...}
    curl -s -m 2 "http://$1/metrics" | awk -v r="route=\"$2\"" 'index($0, "leaseway_requests_total{" r) == 1 { s += $2 } END { print s + 0 }'
}
field() { sed -n "s/.*\\b$1=\\([0-9.]*\\).*/\\1/p" <<<"$2"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

declare -A RES
VERDICTS=()
FAILED_BARS=0
APP_PID=() LW_PID=()

for kind in $APPS; do
    case $kind in demo | nginx) ;; *) setup_fail "unknown app '$kind' in APPS (demo, nginx)" ;; esac
    start_app "$kind" 0
    start_app "$kind" 1
    for i in 0 1; do
        wait_for "curl -s -m 1 -o /dev/null -X POST -d '{\"id\":\"probe-$i-$kind-$$\"}' http://${IPS[$i]}:$APP/write" 10 0.1 ||
            setup_fail "$kind app $i did not start: $(cat "$T/app-$kind-$i.log" "$T/nginx-$i.err" 2>/dev/null | tail -n 5)"
    done
    start_lw "$kind" 0
    start_lw "$kind" 1 --candidate=false
    wait_for "[ \"\$(status_of ${IPS[1]}:$ADM)\" = 'replica lw-1' ] && [ \"\$(status_of ${IPS[0]}:$ADM)\" = 'primary lw-1' ]" 20 0.1 ||
        setup_fail "$kind: lw-1 did not become primary / lw-2 does not follow it"
    # prime keep-alive pools (client -> proxy -> peer -> app)
    for n in 1 2 3 4 5; do
        curl -s -m 2 -o /dev/null -X POST -d "{\"id\":\"warm-$kind-$n-$$\"}" "http://${IPS[1]}:$PUB/write"
        curl -s -m 2 -o /dev/null -X POST -d "{\"id\":\"warm2-$kind-$n-$$\"}" "http://${IPS[0]}:$PUB/write"
    done
    out ""
    out "### $kind app: POST /write at $RATE req/s, $CONNS connections, ${DURATION} s (+${WARMUP} s warm-up) per run, $ROUNDS interleaved rounds"
    out ""
    out "| round | path | count | errors | non-2xx | p50 ms | p90 ms | p99 ms | max ms |"
    out "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    fwd0=$(metric "${IPS[1]}:$ADM" forwarded)
    loc0=$(metric "${IPS[0]}:$ADM" local)
    P99L=() P99F=() P50L=() P50F=() RAT=()
    for r in $(seq 1 "$ROUNDS"); do
        if [ $((r % 2)) = 1 ]; then order="local forwarded"; else order="forwarded local"; fi
        for path in $order; do
            if [ "$path" = local ]; then tgt=${IPS[0]}:$PUB; else tgt=${IPS[1]}:$PUB; fi
            line=$("${PIN_CLI[@]}" "$T/openloop" -a "$tgt" -r "$RATE" -d "$DURATION" -w "$WARMUP" -c "$CONNS" \
                -u /write -j "lat-$kind-$r-$path-$$" 2>&1 | tail -n 1)
            RES[$kind,$r,$path]=$line
            out "| $r | $path | $(field count "$line") | $(field errors "$line") | $(field non2xx "$line") | $(field p50 "$line") | $(field p90 "$line") | $(field p99 "$line") | $(field max "$line") |"
        done
        l=${RES[$kind,$r,local]} f=${RES[$kind,$r,forwarded]}
        P99L+=("$(field p99 "$l")") P99F+=("$(field p99 "$f")") P50L+=("$(field p50 "$l")") P50F+=("$(field p50 "$f")")
        RAT+=("$(fmt_ratio "$(field p99 "$f")" "$(field p99 "$l")")")
    done
    fwd=$(($(metric "${IPS[1]}:$ADM" forwarded) - fwd0))
    loc=$(($(metric "${IPS[0]}:$ADM" local) - loc0))
    ml=$(median "${P99L[@]}") mf=$(median "${P99F[@]}")
    # the bar is checked on the exact ratio (ratios.sh); rr is rounded for printing; no figure fails
    rx=$(ratio_exact "$mf" "$ml") && rr=$(ratio_show "$rx")
    verdict=$(verdict "$rx" "<=" 1.5)
    [ "$verdict" = N/A ] && verdict=FAIL
    [ "$verdict" = PASS ] || FAILED_BARS=$((FAILED_BARS + 1))
    out ""
    out "$kind: median p50 local $(median "${P50L[@]}") ms, forwarded $(median "${P50F[@]}") ms (ratio $(fmt_ratio "$(median "${P50F[@]}")" "$(median "${P50L[@]}")")); median p99 local $ml ms, forwarded $mf ms"
    out "$kind: forwarded/local p99 per round: ${RAT[*]}; of the medians: **$rr** (bar <= 1.5): $verdict"
    out "$kind: metrics: lw-2 route=\"forwarded\" +$fwd, lw-1 route=\"local\" +$loc (includes the forwarded ones it served)"
    VERDICTS+=("$kind forwarded/local p99 = $rr ($verdict)")
    for i in 0 1; do kill_wait "${LW_PID[$i]}" 5; kill_wait "${APP_PID[$i]}" 5; done
done

if [ "${SKIP_FAILOVER:-0}" != 1 ]; then
    log "failover stall: tests/integration/routing_failover.sh CYCLES=$CYCLES"
    FO_LOG=$T/failover.log
    CYCLES=$CYCLES FIGURES_OUT=$T/failover.fig LEASEWAY_BIN=$LW bash "$REPO/tests/integration/routing_failover.sh" >"$FO_LOG" 2>&1
    fo_rc=$?
    fig() { sed -n "s/^$1=//p" "$T/failover.fig" 2>/dev/null; }
    out ""
    out "### Write stall during failover (tests/integration/routing_failover.sh, $CYCLES SIGTERM + $CYCLES SIGKILL under load, exit $fo_rc)"
    out ""
    if [ -s "$T/failover.fig" ]; then
        out "| failover | cycles | stall median ms | stall max ms | new primary serving median / max ms | longest write ms |"
        out "|---|---:|---:|---:|---:|---:|"
        for k in sigterm sigkill; do
            out "| $k | $(fig ${k}_cycles) | $(fig ${k}_stall_ms_median) | $(fig ${k}_stall_ms_max) | $(fig ${k}_new_primary_serving_ms_median) / $(fig ${k}_new_primary_serving_ms_max) | $(fig ${k}_write_latency_ms_max) |"
        done
        out ""
        out "writes $(fig writes_total), acknowledged $(fig writes_acked); failed: SIGTERM phase $(fig sigterm_failed), SIGKILL phase $(fig sigkill_failed) ($(fig sigkill_failed_not_in_flight_to_dead) not in flight to the dead primary); duplicates $(fig duplicates), acknowledged-but-lost $(fig acked_lost), applied on a non-primary $(fig applied_on_non_primary)"
        out "routing_failover.sh verdicts: $(grep -E '^(ok|FAIL) ' "$FO_LOG" | grep -c '^ok') ok, $(grep -c '^FAIL ' "$FO_LOG") FAIL$(grep '^FAIL ' "$FO_LOG" | sed 's/^FAIL - /; FAIL: /' | cut -c1-200 | tr -d '\n')"
        sm=$(fig sigterm_stall_ms_max)
        v=$(awk -v x="$sm" 'BEGIN { print (x != "" && x != "NA" && x <= 1000) ? "PASS" : "FAIL" }')
        [ "$v" = PASS ] || FAILED_BARS=$((FAILED_BARS + 1))
        out "planned handover (SIGTERM) stall max $sm ms (bar <= 1000): $v"
        VERDICTS+=("SIGTERM stall max ${sm} ms ($v)")
    else
        out "routing_failover.sh produced no figures; tail of its output:"
        while IFS= read -r l; do out "    $l"; done < <(grep -v '^level=\|^time=' "$FO_LOG" | tail -n 15)
        FAILED_BARS=$((FAILED_BARS + 1))
    fi
fi

out ""
out "summary: ${VERDICTS[*]}"

if [ "$RECORD" = 1 ]; then
    {
        echo ""
        echo "## $(date -u '+%Y-%m-%d %H:%M:%S UTC') — write latency, local vs forwarded (tests/bench/latency.sh)"
        echo ""
        echo "- kernel: $(uname -r); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); nproc: $(nproc)"
        echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)${NOTE:+; note: $NOTE}"
        echo "- leaseway: $LW_INFO"
        echo "- RATE=$RATE CONNS=$CONNS DURATION=$DURATION WARMUP=$WARMUP ROUNDS=$ROUNDS APPS=\"$APPS\" PIN=$PIN${PIN_SRV:+ (servers CPU 0, openloop CPU 1)}; load: tests/bench/openloop.c (open loop, latency from the scheduled send time)"
        printf '%s\n' "${OUT[@]}"
    } >>"$HERE/RESULTS.md"
    log "appended to $HERE/RESULTS.md"
fi
if [ "$STRICT" = 1 ] && [ "$FAILED_BARS" -gt 0 ]; then exit 1; fi
exit 0
