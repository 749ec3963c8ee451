#!/usr/bin/env bash
# SIGTERM on a primary that has a long read open (an SSE stream), on a real Consul dev agent:
# the lease must not wait for reads. It goes to the standby as soon as no write is in flight
# here, so the cluster's writes go on at once, while the stream itself is still served to its
# end within --drain-timeout (SPEC §7).
#   lw-a (primary, --drain-timeout 20s) serves an 8 s event stream (8 events, 1 s apart);
#   0.5 s in, SIGTERM lw-a; a write every 0.5 s through lw-b (the standby) for 6 s.
# Every write 200 and none slower than 2 s; the stream gets all 8 events; lw-a exits 0 after.
# Bounded: 60 s.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"

consul_test drain-stream 60
trap 'rc=$?; [ $rc -eq 0 ] || show_tails 25 "$DIR"/lw-*.log; (exit $rc); cleanup' EXIT
KEY=leaseway/drainstream-$$/primary
IPS=(127.0.0.2 127.0.0.3)
IDS=(ds-a ds-b)
PUB=$(free_port) ADM=$(free_port)
APPS=("$(free_port)" "$(free_port)")
for i in 0 1; do
  "$PY" "$LEASEWAY_SRC/tests/lib/upstream.py" --port "${APPS[$i]}" --name "up-${IDS[$i]}" \
    >>"$DIR/app-${IDS[$i]}.log" 2>&1 </dev/null &
  register_pid $!
done
for i in 0 1; do
  wait_for "curl -sf -m 1 http://127.0.0.1:${APPS[$i]}/echo" 10 0.1 || die "app ${IDS[$i]} did not start"
done
for i in 0 1; do
  "$LEASEWAY_BIN" run --lease consul --lease-key "$KEY" --instance "${IDS[$i]}" --workers 1 \
    --listen "${IPS[$i]}:$PUB" --target "127.0.0.1:${APPS[$i]}" --admin "${IPS[$i]}:$ADM" \
    --advertise "http://${IPS[$i]}:$PUB" --consul-addr "$CONSUL_HTTP_ADDR" --service "drainstream-$$" \
    --lease-ttl 10s --lock-delay 1s --hold-timeout 5s --drain-timeout 20s >>"$DIR/lw-${IDS[$i]}.log" 2>&1 </dev/null &
  LW_PID[i]=$!
  register_pid "${LW_PID[$i]}"
  [ "$i" = 0 ] && { wait_for "curl -s -m 1 http://${IPS[0]}:$ADM/status | grep -Eq '\"role\": ?\"primary\"'" 15 0.1 || die "ds-a did not become primary"; }
done
wait_for "curl -s -m 1 http://${IPS[1]}:$ADM/status | grep -Eq '\"role\": ?\"replica\"'" 15 0.1 || die "ds-b is not a replica"

curl -s -N -m 30 "http://${IPS[0]}:$PUB/sse?n=8&ms=1000" >"$DIR/sse.out" &
SSE=$!
sleep 0.5
kill -TERM "${LW_PID[0]}"
T0=$(date +%s%N)
: >"$DIR/writes.out"
for i in $(seq 1 12); do
  curl -s -o /dev/null -m 10 -w "$i %{http_code} %{time_total}\n" -X POST -d "w$i" "http://${IPS[1]}:$PUB/echo" >>"$DIR/writes.out"
  sleep 0.5
done
wait "$SSE"
wait "${LW_PID[0]}"
rc_a=$?
cat "$DIR/writes.out" | sed 's/^/#   /'
non200=$(awk '$2 != 200' "$DIR/writes.out" | wc -l)
slow=$(awk '$3 >= 2.0' "$DIR/writes.out" | wc -l)
events=$(grep -c '^data:' "$DIR/sse.out")
[ "$non200" = 0 ] && ok "12 writes through ds-b while ds-a drained its stream: all 200" ||
  bad "$non200 of 12 writes through ds-b were not 200 while ds-a drained"
[ "$slow" = 0 ] && ok "no write took 2 s or more: the lease moved before the stream ended" ||
  bad "$slow writes took 2 s or more: the lease waited for ds-a's stream"
[ "$events" = 8 ] && ok "the stream on ds-a got all 8 events during the drain" || bad "the stream got $events of 8 events"
[ "$rc_a" = 0 ] && ok "ds-a exited 0 after the stream" || bad "ds-a exited $rc_a"
grep -q 'msg="lease released before the drain ended"' "$DIR/lw-ds-a.log" &&
  ok "ds-a logged that it gave the lease away while reads were still open" ||
  bad "ds-a did not log an early release"

echo "routing_drain_stream: $PASSES passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
