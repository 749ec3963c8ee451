#!/usr/bin/env bash
# A --migrate-command still running when the drain runs out of time (SPEC §4: it runs on the
# lease holder only), on a real Consul dev agent:
#   A (primary, --drain-timeout 2s, supervising an app that takes 3 s to stop) runs a 20 s
#   migration that writes a tick every 0.1 s; B is a standby with the same command.
#   SIGTERM A: A's migration must be stopped before A gives the lease away, so that no tick of
#   A's comes after B has acquired the lease and started its own run.
# Bounded: 90 s.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"

consul_test migrate-drain 90
KEY=leaseway/migdrain-$$/primary
TICKS=$DIR/ticks.log
: >"$TICKS"
IPS=(127.0.0.2 127.0.0.3)
IDS=(md-a md-b)
PUB=$(free_port) APP=$(free_port) ADM=$(free_port)
trap 'rc=$?; [ $rc -eq 0 ] || { show_tails 30 "$DIR"/lw-*.log; tail -n 5 "$TICKS" >&2; }; (exit $rc); cleanup' EXIT

for i in 0 1; do
  "$PY" "$DEMO/app.py" --listen "${IPS[$i]}:$APP" --name "${IDS[$i]}" --db "$DIR/${IDS[$i]}.sqlite" \
    >>"$DIR/app-${IDS[$i]}.log" 2>&1 </dev/null &
  register_pid $!
done
for i in 0 1; do
  wait_for "curl -sf -m 1 http://${IPS[$i]}:$APP/healthz" 10 0.1 || die "demo app ${IDS[$i]} did not start"
done

# every 0.1 s for 20 s: "<id> tick <unix time>"; the first line says "start"
MIG='echo "$MD_ID start $(date +%s.%N)" >> '"$TICKS"'; i=0; while [ $i -lt 200 ]; do echo "$MD_ID tick $(date +%s.%N)" >> '"$TICKS"'; sleep 0.1; i=$((i + 1)); done'
start_lw() { # I [-- app command]
  local i=$1
  shift
  MD_ID=${IDS[$i]} "$LEASEWAY_BIN" run --lease consul --lease-key "$KEY" --instance "${IDS[$i]}" \
    --listen "${IPS[$i]}:$PUB" --target "${IPS[$i]}:$APP" --admin "${IPS[$i]}:$ADM" \
    --advertise "http://${IPS[$i]}:$PUB" --consul-addr "$CONSUL_HTTP_ADDR" --register=false \
    --lease-ttl 10s --lock-delay 1s --drain-timeout 2s --migrate-command "$MIG" "$@" \
    >>"$DIR/lw-${IDS[$i]}.log" 2>&1 </dev/null &
  LW_PID[i]=$!
  register_pid "${LW_PID[$i]}"
}

start_lw 0 -- sh -c 'trap "sleep 3; exit 0" TERM; while :; do sleep 0.1; done'
wait_for "grep -q '^md-a start' $TICKS" 15 0.1 || die "md-a did not start its migration as primary"
start_lw 1
wait_for "curl -s -m 1 http://${IPS[1]}:$ADM/status | grep -q '\"primary\"'" 10 0.1 || die "md-b does not see a primary"
sleep 0.5
grep -q '^md-b' "$TICKS" && bad "md-b ran its migration while md-a held the lease"

kill -TERM "${LW_PID[0]}"
wait_for "grep -q '^md-b start' $TICKS" 20 0.1 || die "md-b did not take over and start its migration"
wait_for "! kill -0 ${LW_PID[0]} 2>/dev/null" 15 0.1 || bad "md-a did not exit within 15 s of its SIGTERM"
sleep 0.5
b_start=$(awk '$1 == "md-b" && $2 == "start" { print $3; exit }' "$TICKS")
a_last=$(awk '$1 == "md-a" { t = $3 } END { print t }' "$TICKS")
if awk -v a="$a_last" -v b="$b_start" 'BEGIN { exit !(a < b) }'; then
  ok "SIGTERM with the migration outliving --drain-timeout: md-a's last tick ($a_last) came before md-b started its own run ($b_start)"
else
  bad "md-a's migration still ran after md-b took the lease and started its own: last tick $a_last, md-b start $b_start"
fi
if grep -q 'msg="stopping the migrate command before the lease is released"' "$DIR/lw-md-a.log"; then
  ok "md-a logged that it stopped its migrate command before releasing the lease"
else
  bad "md-a did not log stopping its migrate command before the release"
fi

echo "health_migrate_drain: $PASSES passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
