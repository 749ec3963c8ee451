#!/usr/bin/env bash
# Failover of the primary lease against a real Consul dev agent: three
# leaseway instances (consul lease, all candidates) in front of three demo
# apps (deploy/demo-app/app.py) on 127.0.0.2-4, free ports.
#
#   1. start together -> exactly one primary, all three agree (/status and
#      Fly-Primary-Instance) within 2 s; the catalog tags exactly one primary
#   2. SIGTERM the primary -> another is primary and answering within 1 s
#   3. SIGKILL the primary -> another within alive TTL 3 s + lock-delay 1 s + 1 s
#   4. SIGSTOP the primary -> another is elected; SIGCONT -> the old one says
#      replica within 2 s and a write sent to it never lands in its own app
#   5. POST /handoff on the primary -> another is primary within 1 s
#   6. Consul agent stopped -> reads still served, /status consul.reachable
#      false; agent restarted (state lost) -> instances re-register by
#      themselves: 3 in the catalog, one tagged primary
#
# Prints "FIGURE name=ms" lines for the measured times. Bounded: 170 s.
# CLUSTER_FAILOVER_ROUNDS=10 repeats steps 2-3 ten times and adds median/max.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"

export PYTHONDONTWRITEBYTECODE=1
CL=("$PY" "$DEMO/cluster.py")
ROUNDS=${CLUSTER_FAILOVER_ROUNDS:-1} # SIGTERM + SIGKILL rounds (10 for tests/bench figures)
DEADLINE=${CLUSTER_FAILOVER_DEADLINE:-$((150 + 20 * ROUNDS))}

# Hard bound on the whole test (same watchdog as consul_dev.sh).
watchdog "$DEADLINE" "cluster_failover timed out after $DEADLINE s"

[ -x "$LEASEWAY_BIN" ] || die "no leaseway binary at $LEASEWAY_BIN (build first)"
CONSUL=$(consul_bin) || die "no consul binary (run tests/setup.sh)"

FAILS=0
PASSES=0
T_START=$(date +%s)
ok() { PASSES=$((PASSES + 1)); printf 'ok   - %s\n' "$*"; }
bad() { FAILS=$((FAILS + 1)); printf 'FAIL - %s\n' "$*"; }
figure() { printf 'FIGURE %s=%s\n' "$1" "$2"; FIGURES+=("$1=$2"); }
FIGURES=()
now_ms() { echo $(($(date +%s%N) / 1000000)); }
jget() { "$PY" -c 'import json,sys; j=json.loads(sys.argv[1]); v=eval(sys.argv[2]); print("" if v is None else v)' "$1" "$2" 2>/dev/null || true; }

DIR=$(mktmp cluster-failover)
SERVICE=lwtest-$$
LEASE_KEY=leaseway/test-$$/primary

# --- Consul agent with fixed ports, so it can be restarted in place -------
C_HTTP=$(free_port) C_DNS=$(free_port) C_SERVER=$(free_port) C_LAN=$(free_port) C_WAN=$(free_port)
C_NODE=leaseway-failover-$$
CONSUL_ADDR=http://127.0.0.1:$C_HTTP
export CONSUL_HTTP_ADDR=$CONSUL_ADDR # for _consul_ready
AGENT_PID=

agent_start() {
  "$CONSUL" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -node "$C_NODE" \
    -http-port "$C_HTTP" -dns-port "$C_DNS" -server-port "$C_SERVER" \
    -serf-lan-port "$C_LAN" -serf-wan-port "$C_WAN" \
    -grpc-port=-1 -hcl 'ports { grpc_tls = -1 }' -hcl 'session_ttl_min = "1s"' \
    -hcl 'disable_update_check = true' >>"$DIR/consul.log" 2>&1 </dev/null &
  AGENT_PID=$!
  register_pid "$AGENT_PID"
  if ! wait_for "_consul_ready $AGENT_PID" 30 0.1; then
    tail -n 30 "$DIR/consul.log" >&2
    die "consul dev agent did not start"
  fi
  curl -sf -m 2 -X DELETE "$CONSUL_ADDR/v1/kv/_leaseway/ready" >/dev/null || true
}
agent_stop() { kill_wait "$AGENT_PID" 10; }

# --- three demo apps and three leaseways -----------------------------------
IPS=(127.0.0.2 127.0.0.3 127.0.0.4)
IDS=(lw-1 lw-2 lw-3)
PUB=$(free_port) APP=$(free_port) ADM=$(free_port)
LW_PID=("" "" "")
SPECS=()
for i in 0 1 2; do SPECS+=("${IPS[$i]}:$ADM@${IPS[$i]}:$PUB"); done

idx_of() { local i; for i in 0 1 2; do [ "${IDS[$i]}" = "$1" ] && { echo "$i"; return 0; }; done; return 1; }
others() { local i; for i in 0 1 2; do [ "$i" = "$1" ] || echo "${SPECS[$i]}"; done; }

start_app() {
  "$PY" "$DEMO/app.py" --listen "${IPS[$1]}:$APP" --name "${IDS[$1]}" --db "$DIR/${IDS[$1]}.sqlite" \
    >>"$DIR/app-${IDS[$1]}.log" 2>&1 </dev/null &
  register_pid $!
}
start_lw() {
  local i=$1
  "$LEASEWAY_BIN" run --lease consul --lease-key "$LEASE_KEY" --instance "${IDS[$i]}" --region local \
    --listen "${IPS[$i]}:$PUB" --target "${IPS[$i]}:$APP" --admin "${IPS[$i]}:$ADM" \
    --advertise "http://${IPS[$i]}:$PUB" --consul-addr "$CONSUL_ADDR" --service "$SERVICE" \
    --lease-ttl 10s --lock-delay 1s --drain-timeout 5s --hold-timeout 2s \
    >>"$DIR/lw-${IDS[$i]}.log" 2>&1 </dev/null &
  LW_PID[i]=$!
  register_pid "${LW_PID[$i]}"
}
show_logs() { show_tails 25 "$DIR"/lw-*.log; }
trap 'rc=$?; set +e; [ $rc -eq 0 ] || show_logs; (exit $rc); cleanup' EXIT

# primary_idx: index of the instance all answering instances agree on.
current_primary() {
  local out
  out=$("${CL[@]}" wait-primary --timeout "${1:-5}" --min "${2:-3}" "${SPECS[@]}") || return 1
  idx_of "$(jget "$out" 'j["primary"]')"
}

# ========================================================================
agent_start
echo "consul dev agent on $CONSUL_ADDR (pid $AGENT_PID); service $SERVICE, lease key $LEASE_KEY"
for i in 0 1 2; do start_app "$i"; done
for i in 0 1 2; do
  wait_for "curl -sf -m 1 http://${IPS[$i]}:$APP/healthz" 10 0.1 || die "demo app ${IDS[$i]} did not start"
done

# --- 1. start together ---------------------------------------------------
T0=$(now_ms)
for i in 0 1 2; do start_lw "$i"; done
if out=$("${CL[@]}" wait-primary --timeout 15 --t0-ms "$T0" "${SPECS[@]}" 2>&1); then
  P=$(idx_of "$(jget "$out" 'j["primary"]')")
  ms=$(jget "$out" 'j["ms"]')
  figure startup_agree_ms "$ms"
  if [ "$ms" -le 2000 ]; then
    ok "start: exactly one primary (${IDS[$P]}), all three agree in /status and headers, ${ms} ms after launch"
  else
    bad "start: one primary (${IDS[$P]}) agreed by all, but only after ${ms} ms (want <= 2000)"
  fi
else
  bad "start: no single agreed primary within 15 s: $out"
  for i in 0 1 2; do kill -0 "${LW_PID[$i]}" 2>/dev/null || echo "leaseway ${IDS[$i]} is not running" >&2; done
  exit 1
fi
# Every instance names itself in Fly-Instance.
for i in 0 1 2; do
  out=$("${CL[@]}" get "http://${IPS[$i]}:$PUB/")
  if [ "$(jget "$out" 'j["headers"].get("fly-instance")')" = "${IDS[$i]}" ] &&
    [ "$(jget "$out" 'j["body"]["served_by"]')" = "${IDS[$i]}" ]; then
    ok "GET / on ${IDS[$i]}: Fly-Instance ${IDS[$i]}, served by its own app"
  else
    bad "GET / on ${IDS[$i]}: want Fly-Instance=${IDS[$i]} served_by=${IDS[$i]}; got $out"
  fi
done
if out=$("${CL[@]}" catalog --consul "$CONSUL_ADDR" --service "$SERVICE" --want 3 --timeout 5 2>&1); then
  if [ "$(jget "$out" '",".join(j["primary"])')" = "${IDS[$P]}" ]; then
    ok "catalog: 3 instances of $SERVICE, exactly one tagged primary (${IDS[$P]})"
  else
    bad "catalog: the primary tag is on $(jget "$out" 'j["primary"]'), want ${IDS[$P]}"
  fi
else
  bad "catalog: $out"
fi
passing3() { [ "$(jget "$(curl -s -m 2 "$CONSUL_ADDR/v1/health/service/$SERVICE?passing")" 'len(j)')" = 3 ]; }
if wait_for passing3 3 0.1; then
  ok "health: all 3 instances passing (alive + ready checks)"
else
  out=$(curl -s -m 2 "$CONSUL_ADDR/v1/health/service/$SERVICE")
  bad "health: want 3 passing instances of $SERVICE; got $(jget "$out" '[(e["Service"]["ID"], [(c["CheckID"], c["Status"]) for c in e["Checks"]]) for e in j]')"
fi

# --- 2 + 3. SIGTERM, then SIGKILL, the primary (CLUSTER_FAILOVER_ROUNDS times) ---
SIGTERM_MS=()
SIGKILL_MS=()
for round in $(seq 1 "$ROUNDS"); do
  [ "$ROUNDS" = 1 ] || echo "# round $round of $ROUNDS"
  # --- 2. SIGTERM the primary ----------------------------------------------
  OLD=$P
  mapfile -t OTH < <(others "$OLD")
  if out=$("${CL[@]}" wait-primary --timeout 10 --kill "${LW_PID[$OLD]}" --sig TERM --not "${IDS[$OLD]}" --min 2 "${OTH[@]}" 2>&1); then
    P=$(idx_of "$(jget "$out" 'j["primary"]')")
    ms=$(jget "$out" 'j["ms"]')
    figure sigterm_failover_ms "$ms"
    SIGTERM_MS+=("$ms")
    if [ "$ms" -le 1000 ]; then
      ok "SIGTERM ${IDS[$OLD]}: ${IDS[$P]} primary and answering after ${ms} ms"
    else
      bad "SIGTERM ${IDS[$OLD]}: ${IDS[$P]} primary only after ${ms} ms (want <= 1000)"
    fi
  else
    bad "SIGTERM ${IDS[$OLD]}: no new primary within 10 s: $out"
    P=
  fi
  rc=0
  wait_for "! kill -0 ${LW_PID[$OLD]}" 10 0.05 || true
  wait "${LW_PID[$OLD]}" 2>/dev/null || rc=$?
  if kill -0 "${LW_PID[$OLD]}" 2>/dev/null; then
    bad "SIGTERM ${IDS[$OLD]}: still running 10 s later"
    kill -KILL "${LW_PID[$OLD]}" 2>/dev/null || true
  elif [ "$rc" = 0 ]; then
    ok "SIGTERM ${IDS[$OLD]}: exited 0"
  else
    bad "SIGTERM ${IDS[$OLD]}: exit status $rc (want 0)"
  fi
  if out=$("${CL[@]}" catalog --consul "$CONSUL_ADDR" --service "$SERVICE" --want 2 --timeout 3 2>&1); then
    ok "catalog after SIGTERM: ${IDS[$OLD]} deregistered, 2 left, one primary"
  else
    bad "catalog after SIGTERM: want ${IDS[$OLD]} deregistered: $out"
  fi
  start_lw "$OLD"
  if P=$(current_primary 10); then
    ok "restarted ${IDS[$OLD]}: all three agree, primary ${IDS[$P]}"
  else
    bad "restarted ${IDS[$OLD]}: no agreement within 10 s"
    exit 1
  fi
  [ "$P" != "$OLD" ] || bad "restarted ${IDS[$OLD]} took the lease back from a healthy primary"

  # --- 3. SIGKILL the primary ----------------------------------------------
  OLD=$P
  mapfile -t OTH < <(others "$OLD")
  if out=$("${CL[@]}" wait-primary --timeout 20 --kill "${LW_PID[$OLD]}" --sig KILL --not "${IDS[$OLD]}" --min 2 "${OTH[@]}" 2>&1); then
    P=$(idx_of "$(jget "$out" 'j["primary"]')")
    ms=$(jget "$out" 'j["ms"]')
    figure sigkill_failover_ms "$ms"
    SIGKILL_MS+=("$ms")
    if [ "$ms" -le 6000 ]; then
      ok "SIGKILL ${IDS[$OLD]}: ${IDS[$P]} primary and answering after ${ms} ms (limit 6000: alive TTL 3 s + lock-delay 1 s + 1 s + slack)"
    else
      bad "SIGKILL ${IDS[$OLD]}: ${IDS[$P]} primary only after ${ms} ms (want <= 6000)"
    fi
  else
    bad "SIGKILL ${IDS[$OLD]}: no new primary within 20 s: $out"
  fi
  wait "${LW_PID[$OLD]}" 2>/dev/null || true
  start_lw "$OLD"
  P=$(current_primary 10) || { bad "restarted ${IDS[$OLD]} after SIGKILL: no agreement within 10 s"; exit 1; }
  ok "restarted ${IDS[$OLD]} after SIGKILL: all three agree, primary ${IDS[$P]}"
  "${CL[@]}" catalog --consul "$CONSUL_ADDR" --service "$SERVICE" --want 3 --timeout 5 >/dev/null 2>&1 ||
    bad "catalog after the restart: want 3 instances, one primary"
done
summary() { # name values...
  local name=$1
  shift
  [ $# -gt 1 ] || return 0
  figure "${name}_median" "$(printf '%s\n' "$@" | sort -n | "$PY" -c 'import sys,statistics; print(int(statistics.median(int(x) for x in sys.stdin)))')"
  figure "${name}_max" "$(printf '%s\n' "$@" | sort -n | tail -n 1)"
}
summary sigterm_failover_ms "${SIGTERM_MS[@]}"
summary sigkill_failover_ms "${SIGKILL_MS[@]}"

# --- 4. SIGSTOP the primary (hung, not dead) -------------------------------
OLD=$P
NEWOUT=$DIR/sigstop.json
if "$PY" - "$DEMO" "${LW_PID[$OLD]}" "$OLD" "$APP" "$NEWOUT" "${SPECS[@]}" <<'EOF'; then
import json, os, signal, socket, sys, threading, time
sys.path.insert(0, sys.argv[1])
import cluster as C

pid, old, app_port, out_path = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
insts = [C.Inst(s) for s in sys.argv[6:]]
for i in insts:
    i.status()
P = insts[old]
others = [i for j, i in enumerate(insts) if j != old]
res = {"dual_primary": [], "p_status_after_cont": []}

def raw_post(public, wid):
    """Open a connection to public and send a POST /write; return the socket."""
    host, port = public.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    body = json.dumps({"id": wid}).encode()
    s.sendall(b"POST /write HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (public.encode(), len(body), body))
    return s

def read_resp(s, key):
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as e:
        res[key + "_error"] = str(e)
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    code = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else None
    try:
        served = json.loads(body).get("served_by")
    except ValueError:
        served = None
    res[key] = {"code": code, "served_by": served, "at_ms": round(C.now_ms() - t_cont) if t_cont else None,
                "headers": [l for l in lines[1:] if l.lower().startswith(("fly-", "leaseway-", "retry-after"))]}

# SIGSTOP; poll the two others until they agree on a new primary.
t0 = C.now_ms()
os.kill(pid, signal.SIGSTOP)
t_cont = None
deadline = time.monotonic() + 20
new = None
while time.monotonic() < deadline:
    obs = C.observe(others, headers=True, timeout=0.5)
    if sum(1 for o in obs if o["role"] == "primary") > 1:
        res["dual_primary"].append(("while stopped", C.describe(obs)))
    new = C.agreed_primary(obs, 2, exclude=P.id)
    if new:
        break
    time.sleep(0.05)
res["new"] = new
res["new_primary_ms"] = round(C.now_ms() - t0)
if not new:
    res["error"] = "no new primary within 20 s of SIGSTOP: " + C.describe(obs)
    os.kill(pid, signal.SIGCONT)
    json.dump(res, open(out_path, "w"))
    sys.exit(1)

# A write queued in the stopped process's socket before SIGCONT, and one sent
# right after: neither may reach the old primary's app.
wid1, wid2 = "sigstop-queued-%d" % os.getpid(), "sigstop-after-%d" % os.getpid()
s1 = raw_post(P.public, wid1)
time.sleep(0.05)
t_cont = C.now_ms()
os.kill(pid, signal.SIGCONT)
s2 = raw_post(P.public, wid2)
th = [threading.Thread(target=read_resp, args=(s1, "queued")), threading.Thread(target=read_resp, args=(s2, "after"))]
for t in th:
    t.start()

# Poll all three every 50 ms: when does the old one say replica? Any instant
# with two instances reporting role primary?
deadline = time.monotonic() + 5
res["replica_ms"] = None
while time.monotonic() < deadline:
    obs = C.observe(insts, headers=False, timeout=1.0)
    rep = obs[old]
    if rep["status"] is not None:
        res["p_status_after_cont"].append({"ms": round(C.now_ms() - t_cont), "role": rep["role"], "primary": rep["primary"],
                                          "gate": (rep["status"].get("gate") or {}).get("state"),
                                          "lease": rep["status"].get("lease")})
    if sum(1 for o in obs if o["role"] == "primary") > 1:
        res["dual_primary"].append(("after SIGCONT +%d ms" % round(C.now_ms() - t_cont), C.describe(obs)))
    if rep["role"] == "replica" and rep["primary"] == new:
        res["replica_ms"] = round(C.now_ms() - t_cont)
        break
    time.sleep(0.05)
for t in th:
    t.join(15)

code, _, body = C.request("GET", "http://%s:%s/writes" % (P.public.rsplit(":", 1)[0], app_port), timeout=5)
rows = json.loads(body)["writes"] if code == 200 else None
res["old_app_ids"] = [r["id"] for r in rows] if rows is not None else None
res["wids"] = [wid1, wid2]
json.dump(res, open(out_path, "w"))
EOF
  :
fi
if [ -s "$NEWOUT" ]; then
  R=$(cat "$NEWOUT")
  if [ -n "$(jget "$R" 'j.get("error")')" ]; then
    bad "SIGSTOP ${IDS[$OLD]}: $(jget "$R" 'j["error"]')"
  else
    NEW=$(jget "$R" 'j["new"]')
    figure sigstop_new_primary_ms "$(jget "$R" 'j["new_primary_ms"]')"
    ok "SIGSTOP ${IDS[$OLD]}: $NEW elected after $(jget "$R" 'j["new_primary_ms"]') ms (the stopped one cannot renew)"
    rms=$(jget "$R" 'j["replica_ms"]')
    if [ -n "$rms" ] && [ "$rms" -le 2000 ]; then
      figure sigcont_to_replica_ms "$rms"
      ok "SIGCONT ${IDS[$OLD]}: reports replica (primary $NEW) after $rms ms"
    else
      bad "SIGCONT ${IDS[$OLD]}: not replica of $NEW within 2 s; its /status after SIGCONT: $(jget "$R" 'j["p_status_after_cont"][-5:]')"
    fi
    landed=$(jget "$R" '" ".join(w for w in j["wids"] if j["old_app_ids"] is None or w in j["old_app_ids"])')
    if [ -z "$landed" ]; then
      ok "SIGCONT ${IDS[$OLD]}: writes sent to it (queued before SIGCONT: $(jget "$R" 'j["queued"]["code"]') served_by $(jget "$R" 'j["queued"]["served_by"]'); right after: $(jget "$R" 'j["after"]["code"]') served_by $(jget "$R" 'j["after"]["served_by"]')) never reached its own app"
    else
      bad "SIGCONT ${IDS[$OLD]}: the resumed old primary applied write(s) $landed to its own app (fencing failed): queued=$(jget "$R" 'j["queued"]') after=$(jget "$R" 'j["after"]')"
    fi
    nd=$(jget "$R" 'len(j["dual_primary"])')
    if [ "$nd" = 0 ]; then
      ok "SIGSTOP/SIGCONT: never two instances reporting role primary at once"
    else
      # The hard requirement is the write path (above); a stale role in
      # /status of a fenced instance is reported here.
      bad "SIGSTOP/SIGCONT: $nd instant(s) with two instances reporting role primary: $(jget "$R" 'j["dual_primary"][:3]'); old primary's /status after SIGCONT: $(jget "$R" 'j["p_status_after_cont"][:4]')"
    fi
    kill -0 "${LW_PID[$OLD]}" 2>/dev/null || bad "SIGCONT ${IDS[$OLD]}: the resumed process died"
  fi
else
  bad "SIGSTOP ${IDS[$OLD]}: the probe wrote no result"
  kill -CONT "${LW_PID[$OLD]}" 2>/dev/null || true
fi
P=$(current_primary 10) || { bad "after SIGSTOP/SIGCONT: no agreement within 10 s"; exit 1; }

# --- 5. planned handoff --------------------------------------------------
if out=$("${CL[@]}" wait-primary --timeout 10 --handoff "${SPECS[@]}" 2>&1); then
  ms=$(jget "$out" 'j["ms"]')
  figure handoff_ms "$ms"
  if [ "$ms" -le 1000 ]; then
    ok "POST /handoff on $(jget "$out" 'j["old"]'): $(jget "$out" 'j["primary"]') primary, all agree, after ${ms} ms"
  else
    bad "POST /handoff on $(jget "$out" 'j["old"]'): $(jget "$out" 'j["primary"]') primary only after ${ms} ms (want <= 1000)"
  fi
  P=$(idx_of "$(jget "$out" 'j["primary"]')")
else
  bad "POST /handoff: $out"
  P=$(current_primary 10) || exit 1
fi

# --- 6. Consul agent stopped, then restarted --------------------------------
T0=$(now_ms)
agent_stop
if out=$("${CL[@]}" wait-status --timeout 10 --expr 'st["consul"]["reachable"] is False' "${SPECS[@]}" 2>&1); then
  figure consul_down_detect_ms "$(($(now_ms) - T0))"
  ok "agent stopped: all three /status show consul.reachable false"
else
  bad "agent stopped: /status does not show consul.reachable false within 10 s: $out"
fi
sleep 3.5 # longer than the alive TTL: reads must still work, with the last known primary
for i in 0 1 2; do
  out=$("${CL[@]}" get "http://${IPS[$i]}:$PUB/")
  code=$(jget "$out" 'j["code"]')
  hp=$(jget "$out" 'j["headers"].get("fly-primary-instance")')
  if [ "$code" = 200 ] && [ "$(jget "$out" 'j["body"]["served_by"]')" = "${IDS[$i]}" ]; then
    if [ "$i" = "$P" ] || [ "$hp" = "${IDS[$P]}" ]; then
      ok "agent down 3.5 s: GET / on ${IDS[$i]} 200, served locally, Fly-Primary-Instance: ${hp:-(none)}"
    else
      bad "agent down: GET / on replica ${IDS[$i]} 200 but Fly-Primary-Instance '$hp', want the last known primary ${IDS[$P]}"
    fi
  else
    bad "agent down: GET / on ${IDS[$i]}: want 200 served locally; got $out"
  fi
done

# The primary cannot feed its alive check any more: it must be fenced (SPEC
# §5), so a write sent to it, or forwarded to it, is refused, not applied.
for i in "$P" $(((P + 1) % 3)); do
  id="agent-down-$i-$$"
  out=$("${CL[@]}" post "http://${IPS[$i]}:$PUB/write" "{\"id\":\"$id\"}")
  code=$(jget "$out" 'j["code"]')
  rows=$("${CL[@]}" get "http://${IPS[$P]}:$APP/writes")
  if [ -n "$code" ] && [ "$code" -ge 500 ] && [ -z "$(jget "$rows" '"x" if any(w["id"] == "'"$id"'" for w in j["body"]["writes"]) else ""')" ]; then
    ok "agent down: a write on ${IDS[$i]}$([ "$i" = "$P" ] && echo ' (the fenced primary)' || echo ' (replica)') is refused ($code) and not applied"
  else
    bad "agent down: a write on ${IDS[$i]} answered ${code:-nothing}, want a refusal (fenced primary, SPEC §5); $(jget "$out" 'j.get("body")')"
  fi
done

T0=$(now_ms)
agent_start
echo "agent restarted (pid $AGENT_PID), $(($(now_ms) - T0)) ms to ready; its state is gone"
if out=$("${CL[@]}" catalog --consul "$CONSUL_ADDR" --service "$SERVICE" --want 3 --timeout 20 2>&1); then
  ms=$(($(now_ms) - T0))
  figure consul_restart_reregister_ms "$ms"
  if [ "$ms" -le 12000 ]; then
    ok "agent restarted: 3 instances re-registered by themselves, one tagged primary ($(jget "$out" 'j["primary"][0]')), ${ms} ms after the restart"
  else
    bad "agent restarted: re-registration took ${ms} ms (want about 10 s)"
  fi
else
  bad "agent restarted: the service did not come back: $out"
fi
if out=$("${CL[@]}" wait-status --timeout 10 --expr 'st["consul"]["reachable"] is True' "${SPECS[@]}" 2>&1) &&
  P2=$(current_primary 10); then
  # Tags follow role changes asynchronously: give the catalog a moment.
  cat_p=
  for _ in $(seq 1 30); do
    cat_p=$("${CL[@]}" catalog --consul "$CONSUL_ADDR" --service "$SERVICE" 2>&1) || true
    cat_p=$(jget "$cat_p" '",".join(j["primary"])')
    [ "$cat_p" = "${IDS[$P2]}" ] && break
    sleep 0.1
  done
  if [ "$cat_p" = "${IDS[$P2]}" ]; then
    ok "agent restarted: consul reachable again everywhere, all agree on ${IDS[$P2]}, catalog agrees"
  else
    bad "agent restarted: instances agree on ${IDS[$P2]} but the catalog tags '$cat_p'"
  fi
  if wait_for passing3 10 0.2; then
    ok "agent restarted: alive and ready checks passing again on all 3"
  else
    bad "agent restarted: not all 3 instances passing their checks within 10 s: $(curl -s -m 2 "$CONSUL_ADDR/v1/health/service/$SERVICE" | "$PY" -c 'import json,sys; print([(e["Service"]["ID"], [(c["CheckID"], c["Status"]) for c in e["Checks"]]) for e in json.load(sys.stdin)])' 2>&1)"
  fi
  r=$(((P2 + 1) % 3))
  t_w=$(date +%H:%M:%S.%3N)
  out=$("${CL[@]}" post "http://${IPS[$r]}:$PUB/write" "{\"id\":\"after-restart-$$\"}")
  if [ "$(jget "$out" 'j["code"]')" = 200 ] && [ "$(jget "$out" 'j["body"]["served_by"]')" = "${IDS[$P2]}" ]; then
    ok "agent restarted: a write via replica ${IDS[$r]} lands on ${IDS[$P2]} again"
  else
    bad "agent restarted: a write via ${IDS[$r]} sent at $t_w: want 200 served_by ${IDS[$P2]}; got $out; now: $("${CL[@]}" status "${SPECS[@]}" | paste -sd';')"
  fi
  holder=$(curl -s -m 2 "$CONSUL_ADDR/v1/kv/$LEASE_KEY?raw") || holder=
  if [ "$(jget "$holder" 'j["hostname"]')" = "${IDS[$P2]}" ]; then
    ok "agent restarted: the lease key is held again (by ${IDS[$P2]})"
  else
    bad "agent restarted: lease key value '$holder', want hostname ${IDS[$P2]}"
  fi
else
  bad "agent restarted: instances do not recover (consul.reachable / one primary): $out"
fi

# --- summary ---------------------------------------------------------------
for i in 0 1 2; do kill -0 "${LW_PID[$i]}" 2>/dev/null || bad "leaseway ${IDS[$i]} is not running at the end"; done
echo "FIGURES ${FIGURES[*]}"
echo "cluster_failover: $PASSES passed, $FAILS failed ($(($(date +%s) - T_START)) s)"
[ "$FAILS" -eq 0 ]
