#!/usr/bin/env bash
# The primary's own Consul agent dies (SIGKILL, an OOM kill), on real Consul agents: a dev
# server, and a client agent joined to it that only the primary (n1) talks to; the standby
# (n2) talks to the server. The servers mark the client's node failed (serfHealth) within
# about a second, which ends n1's session; n2 acquires the lease after the lock-delay. n1
# cannot learn any of that (its agent is gone): its fence must have closed before n2 can
# hold the lease (SPEC §5: "two instances never both accept writes").
#
# Two writers POST to n1 and n2 every 10 ms for 7 s; the client agent is killed 1.5 s in.
# Checked from the apps' own rows (their commit times): n2's app took writes (the failover
# happened), and no write reached n1's app at or after the first one reached n2's.
# Run three times (the overlap depended on where the kill fell between two feeds).
# Bounded: 150 s.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"

consul_test agent-crash 150
SERVER=$CONSUL_HTTP_ADDR
SERF=$(curl -s "$SERVER/v1/agent/self" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["Member"]["Port"])')
[ -n "$SERF" ] || die "cannot read the server's serf LAN port"
trap 'rc=$?; [ $rc -eq 0 ] || show_tails 20 "$DIR"/r*/*.log; (exit $rc); cleanup' EXIT

IPS=(127.0.0.2 127.0.0.3)
CLIENT_IP=127.0.0.7
PUB=$(free_port) APP=$(free_port) ADM=$(free_port)

for round in 1 2 3; do
  R=$DIR/r$round
  mkdir -p "$R"
  KEY=leaseway/crash-$$-$round/primary
  CHTTP=$(free_port) CSERVER=$(free_port) CSERF=$(free_port)
  "$(consul_bin)" agent -data-dir "$R/client" -bind "$CLIENT_IP" -client "$CLIENT_IP" -node "crash-client-$$-$round" \
    -http-port "$CHTTP" -dns-port -1 -server-port "$CSERVER" -serf-lan-port "$CSERF" -serf-wan-port -1 \
    -grpc-port=-1 -hcl 'ports { grpc_tls = -1 }' -hcl 'disable_update_check = true' \
    -retry-join "127.0.0.1:$SERF" >"$R/client.log" 2>&1 </dev/null &
  CLIENT_PID=$!
  register_pid "$CLIENT_PID"
  wait_for "curl -sf -m 1 -X PUT -d x http://$CLIENT_IP:$CHTTP/v1/kv/_crash_probe" 30 0.2 || die "round $round: client agent did not join"

  APP_PID=()
  for i in 0 1; do
    "$PY" "$DEMO/app.py" --listen "${IPS[$i]}:$APP" --name "app$((i + 1))" --db "$R/app$((i + 1)).sqlite" --quiet \
      >>"$R/app$((i + 1)).log" 2>&1 </dev/null &
    APP_PID[i]=$!
    register_pid "${APP_PID[$i]}"
  done
  for i in 0 1; do
    wait_for "curl -sf -m 1 http://${IPS[$i]}:$APP/healthz" 10 0.1 || die "demo app $i did not start"
  done
  LW_PID=()
  start_lw() { # I CONSUL_URL
    "$LEASEWAY_BIN" run --lease consul --lease-key "$KEY" --instance "n$(($1 + 1))" --workers 1 \
      --listen "${IPS[$1]}:$PUB" --target "${IPS[$1]}:$APP" --admin "${IPS[$1]}:$ADM" \
      --advertise "http://${IPS[$1]}:$PUB" --consul-addr "$2" --service "crash-$$-$round" \
      --lease-ttl 10s --lock-delay 1s --hold-timeout 1s --drain-timeout 1s \
      >>"$R/lw-n$(($1 + 1)).log" 2>&1 </dev/null &
    LW_PID[$1]=$!
    register_pid "${LW_PID[$1]}"
  }
  start_lw 0 "http://$CLIENT_IP:$CHTTP"
  wait_for "curl -s -m 1 http://${IPS[0]}:$ADM/status | grep -Eq '\"role\": ?\"primary\"'" 15 0.1 || die "round $round: n1 did not become primary"
  start_lw 1 "$SERVER"
  wait_for "curl -s -m 1 http://${IPS[1]}:$ADM/status | grep -Eq '\"role\": ?\"replica\"'" 15 0.1 || die "round $round: n2 is not a replica"
  sleep 1

  # writers straight to each proxy; the client agent is SIGKILLed 1.5 s (+ 0-0.9 s) in
  "$PY" - "${IPS[0]}:$PUB" "${IPS[1]}:$PUB" <<'EOF' &
import http.client, sys, threading, time
end = time.time() + 7
def run(hp):
    host, port = hp.rsplit(":", 1)
    c, i = None, 0
    while time.time() < end:
        i += 1
        try:
            if c is None:
                c = http.client.HTTPConnection(host, int(port), timeout=5)
            c.request("POST", "/write", body="id=%s-%d" % (port, i) + "-" + host,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
            c.getresponse().read()
        except Exception:
            c = None
        time.sleep(0.01)
ts = [threading.Thread(target=run, args=(hp,)) for hp in sys.argv[1:]]
[t.start() for t in ts]
[t.join() for t in ts]
EOF
  WRITERS=$!
  sleep "1.$((5 + RANDOM % 5))"
  kill -KILL "$CLIENT_PID"
  wait "$WRITERS"

  verdict=$("$PY" - "${IPS[0]}:$APP" "${IPS[1]}:$APP" <<'EOF'
import json, sys, urllib.request
from datetime import datetime
def ats(hp):
    rows = json.load(urllib.request.urlopen("http://%s/writes" % hp, timeout=5))["writes"]
    return sorted(datetime.fromisoformat(r["at"]).timestamp() for r in rows)
a1, a2 = ats(sys.argv[1]), ats(sys.argv[2])
if not a2:
    print("nofailover %d" % len(a1))
else:
    late = [t for t in a1 if t >= a2[0]]
    print("%d %d %d %.0f" % (len(a1), len(a2), len(late), ((a1[-1] - a2[0]) * 1000) if a1 else 0))
EOF
)
  read -r n1 n2 late span <<<"$verdict"
  if [ "$n1" = nofailover ]; then
    bad "round $round: n2 never took a write after n1's agent died ($n2 writes on app1)"
  elif [ "$late" = 0 ]; then
    ok "round $round: n1's agent SIGKILLed: n2 took over ($n2 writes), and no write reached app1 after app2's first ($n1 before)"
  else
    bad "round $round: two writers: $late writes reached app1 at or after app2's first (app1's last came ${span} ms after it)"
  fi
  for p in "${LW_PID[@]}" "${APP_PID[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait "${LW_PID[@]}" "${APP_PID[@]}" "$CLIENT_PID" 2>/dev/null
done

echo "consul_agent_crash: $PASSES passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
