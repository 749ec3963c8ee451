#!/usr/bin/env bash
# Failover under load (issue 4): three leaseways (all candidates, consul lease
# on a real dev agent) in front of three demo apps (deploy/demo-app/app.py) on
# 127.0.0.2-4. A writer (python3, WRITERS threads, one connection per request,
# each write a unique id, round-robin over the three instances) sends a steady
# stream of POST /write while the primary's leaseway is
#   (a) SIGTERMed and restarted, CYCLES times, then
#   (b) SIGKILLed and restarted, CYCLES times.
# Each cycle: kill the primary, wait until another instance is primary and has
# acknowledged a write, restart the killed one, wait until it follows the new
# primary, move on. A monitor polls every /status (25 ms) to record each
# instance's primary tenure.
#
# A connect() refused by a dead or draining proxy means the request was never
# sent: the writer sends the same id to the next instance (what an edge load
# balancer does) and counts it as "rerouted", not failed. Anything after a
# successful connect is final (never retried by the writer).
#
# Counted: failed writes by kind (HTTP status / reset / eof / timeout), writes
# with no answer, duplicates (an id in two DBs, or the app answering 409
# duplicate), acknowledged-but-lost (2xx, id in no DB), applied on a
# non-primary (a row whose time is outside every tenure of the instance that
# stored it, or whose app saw a Fly-Primary-Instance other than itself).
# Required: zero duplicates, zero acknowledged-but-lost, zero applied on a
# non-primary; zero failed writes in the SIGTERM phase; in the SIGKILL phase
# failures only among requests in flight to the dead primary (sent before the
# kill, answered after it) — they are listed.
#
# Prints FIGURE lines: failed counts, failover and write-stall times (longest
# gap between acknowledged writes around each failover, median and max).
#
# Environment: CYCLES (default 10 each), WRITERS (4), WRITE_PAUSE_MS (20),
# HOLD_TIMEOUT (10s), ROUTING_FAILOVER_DEADLINE (175 s), FIGURES_OUT=FILE
# (also write the FIGURE lines there, for tests/bench/latency.sh).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"

DEADLINE=${ROUTING_FAILOVER_DEADLINE:-175}
export CYCLES=${CYCLES:-10} WRITERS=${WRITERS:-4} WRITE_PAUSE_MS=${WRITE_PAUSE_MS:-20} HOLD_TIMEOUT=${HOLD_TIMEOUT:-10s}

watchdog "$DEADLINE" "routing_failover timed out after $DEADLINE s"

use_private_leaseway
T_START=$(date +%s)
DIR=$(mktmp routing-failover)
consul_dev_start "$DIR/consul" || die "consul dev agent did not start"
echo "consul dev agent on $CONSUL_HTTP_ADDR; CYCLES=$CYCLES WRITERS=$WRITERS WRITE_PAUSE_MS=$WRITE_PAUSE_MS HOLD_TIMEOUT=$HOLD_TIMEOUT"

IPS=(127.0.0.2 127.0.0.3 127.0.0.4)
IDS=(lw-1 lw-2 lw-3)
PUB=$(free_port) APP=$(free_port) ADM=$(free_port)
for i in 0 1 2; do
  "$PY" "$DEMO/app.py" --quiet --listen "${IPS[$i]}:$APP" --name "${IDS[$i]}" --db "$DIR/${IDS[$i]}.sqlite" \
    >>"$DIR/app-${IDS[$i]}.log" 2>&1 </dev/null &
  register_pid $!
done
for i in 0 1 2; do
  wait_for "curl -sf -m 1 http://${IPS[$i]}:$APP/healthz" 10 0.1 || die "demo app ${IDS[$i]} did not start"
done

show_logs() {
  local f
  for f in "$DIR"/lw-*.log; do
    echo "--- tail of $(basename "$f")" >&2
    tail -n 20 "$f" >&2 || true
  done
}
trap 'rc=$?; set +e; [ $rc -eq 0 ] || show_logs; (exit $rc); cleanup' EXIT

LW_PIDFILE=$(_lw_state pids)
export LW_BIN=$LEASEWAY_BIN LW_DIR=$DIR LW_PUB=$PUB LW_APP=$APP LW_ADM=$ADM LW_PIDFILE
export LW_KEY=leaseway/failover-$$/primary LW_SERVICE=lwfo-$$
# leave time for the analysis even when the proxy misbehaves (hung writes, slow failovers)
export LW_BUDGET=$((DEADLINE - 35 - ($(date +%s) - T_START)))

rc=0
"$PY" - "${IPS[@]}" <<'EOF' || rc=$?
import http.client, json, os, signal, socket, statistics, subprocess, sys, threading, time

IPS = sys.argv[1:4]
IDS = ["lw-1", "lw-2", "lw-3"]
E = os.environ
PUB, APP, ADM = E["LW_PUB"], E["LW_APP"], E["LW_ADM"]
CYCLES, WRITERS, PAUSE = int(E["CYCLES"]), int(E["WRITERS"]), int(E["WRITE_PAUSE_MS"]) / 1000.0
FIG_OUT = E.get("FIGURES_OUT")
T0 = time.time()
BUDGET = float(E.get("LW_BUDGET", "140"))
FAILS = 0
FIGS = []

def ok(m): print("ok   - " + m, flush=True)
def bad(m):
    global FAILS
    FAILS += 1
    print("FAIL - " + m, flush=True)
def figure(name, val):
    FIGS.append("%s=%s" % (name, val))
    print("FIGURE %s=%s" % (name, val), flush=True)
def log(m): print("# " + m, flush=True)

# --- leaseway processes ---------------------------------------------------------
procs = [None, None, None]
def start(i):
    cmd = [E["LW_BIN"], "run", "--lease", "consul", "--lease-key", E["LW_KEY"], "--instance", IDS[i],
           "--listen", "%s:%s" % (IPS[i], PUB), "--target", "%s:%s" % (IPS[i], APP),
           "--admin", "%s:%s" % (IPS[i], ADM), "--advertise", "http://%s:%s" % (IPS[i], PUB),
           "--consul-addr", E["CONSUL_HTTP_ADDR"], "--service", E["LW_SERVICE"], "--workers", "1",
           "--lease-ttl", "10s", "--lock-delay", "1s", "--drain-timeout", "5s", "--hold-timeout", E["HOLD_TIMEOUT"]] + E.get("LW_EXTRA_ARGS", "").split()
    f = open(os.path.join(E["LW_DIR"], "lw-%s.log" % IDS[i]), "ab")
    p = subprocess.Popen(cmd, stdout=f, stderr=f, stdin=subprocess.DEVNULL)
    with open(E["LW_PIDFILE"], "a") as pf:  # tests/lib/common.sh kills these at exit
        pf.write("%d\n" % p.pid)
    procs[i] = p

def status(i, timeout=0.3):
    try:
        c = http.client.HTTPConnection(IPS[i], int(ADM), timeout=timeout)
        c.request("GET", "/status")
        r = c.getresponse()
        j = json.loads(r.read())
        c.close()
        return j
    except (OSError, ValueError, http.client.HTTPException):
        return None

def metrics(i):
    """leaseway_requests_total by (route, code) on instance i (its whole life), {} if unreachable."""
    import re
    try:
        c = http.client.HTTPConnection(IPS[i], int(ADM), timeout=1)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode("latin-1")
        c.close()
    except (OSError, http.client.HTTPException):
        return {}
    out = {}
    for m in re.finditer(r'leaseway_requests_total\{route="([^"]+)",code="(\d+)"\} (\d+)', text):
        out["%s/%s" % (m.group(1), m.group(2))] = int(m.group(3))
    return out

# --- monitor: /status of all three every 25 ms ------------------------------------
obs = []  # (t, i, role or None, primary id or None)
stop_mon = threading.Event()
def monitor():
    while not stop_mon.is_set():
        for i in range(3):
            st = status(i, 0.2)
            t = time.time()
            obs.append((t, i, st.get("role") if st else None, ((st or {}).get("primary") or {}).get("id")))
        time.sleep(0.025)

def latest():
    """Last observation per instance."""
    last = {}
    for o in reversed(obs[-60:]):
        last.setdefault(o[1], o)
    return last

def agreed(exclude=None, need=3):
    last = latest()
    ans = [o for o in last.values() if o[2] is not None]
    prims = [o for o in ans if o[2] == "primary"]
    if len(ans) < need or len(prims) != 1:
        return None
    pid = IDS[prims[0][1]]
    if pid == exclude or any(o[3] != pid for o in ans):
        return None
    return IDS.index(pid)

# --- writer --------------------------------------------------------------------------
recs = []  # dicts
recs_lock = threading.Lock()
stop_w = threading.Event()
def writer(k):
    n = 0
    inst = k % 3
    while not stop_w.is_set():
        n += 1
        wid = "w%d-%d" % (k, n)
        body = json.dumps({"id": wid})
        rec = {"id": wid, "t_send": time.time(), "tries": [], "status": None, "kind": None}
        for attempt in range(3):
            i = (inst + attempt) % 3
            c = http.client.HTTPConnection(IPS[i], int(PUB), timeout=15)
            try:
                c.connect()
            except ConnectionRefusedError:
                rec["tries"].append((IDS[i], "refused"))
                c.close()
                continue
            except OSError as e:
                rec["tries"].append((IDS[i], "connect " + type(e).__name__))
                c.close()
                continue
            rec["inst"] = IDS[i]
            rec["t_sent"] = time.time()
            try:
                c.request("POST", "/write", body=body, headers={"Content-Type": "application/json", "Connection": "close"})
                r = c.getresponse()
                data = r.read()
                rec["status"] = r.status
                rec["kind"] = str(r.status)
                rec["fpi"] = r.getheader("Fly-Primary-Instance")
                try:
                    rec["served_by"] = json.loads(data).get("served_by")
                    rec["dup"] = bool(json.loads(data).get("duplicate"))
                except ValueError:
                    rec["served_by"] = None
                    rec["body"] = data[:120].decode("latin-1")
            except socket.timeout:
                rec["kind"] = "timeout"
            except ConnectionResetError:
                rec["kind"] = "reset"
            except http.client.RemoteDisconnected:
                rec["kind"] = "eof"
            except (OSError, http.client.HTTPException) as e:
                rec["kind"] = type(e).__name__
            finally:
                c.close()
            break
        else:
            rec["kind"] = "all-refused"
        rec["t_done"] = time.time()
        with recs_lock:
            recs.append(rec)
        inst = (inst + 1) % 3
        time.sleep(PAUSE)

# --- run ---------------------------------------------------------------------------
for i in range(3):
    start(i)
mt = threading.Thread(target=monitor, daemon=True)
mt.start()
deadline = time.time() + 20
while agreed() is None and time.time() < deadline:
    time.sleep(0.05)
P = agreed()
if P is None:
    bad("no agreed primary 20 s after start")
    sys.exit(1)
ok("start: %s primary, all three agree" % IDS[P])
threads = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(WRITERS)]
for t in threads:
    t.start()
time.sleep(1.0)

cycles = []
aborted = False
for signame in ("TERM", "KILL"):
    for c in range(CYCLES):
        if time.time() - T0 > BUDGET:
            bad("time budget (%d s) used up after %d cycles: stopping the failovers here" % (BUDGET, len(cycles)))
            aborted = True
            break
        deadline = time.time() + 15
        while time.time() < deadline:
            P = agreed()
            if P is not None:
                break
            time.sleep(0.05)
        if P is None:
            bad("%s cycle %d: no agreed primary before the kill" % (signame, c + 1))
            aborted = True
            break
        old = P
        cyc = {"sig": signame, "n": c + 1, "old": IDS[old]}
        cyc["t_kill"] = time.time()
        os.kill(procs[old].pid, getattr(signal, "SIG" + signame))
        if signame == "KILL":
            # the process (and its sockets) is gone when it is reaped; a connect
            # can still land in its listen backlog until then
            procs[old].wait(timeout=5)
            cyc["t_dead"] = time.time()
        # new primary agreed by the two survivors, and a write acknowledged by its app after the kill
        new = None
        deadline = time.time() + 15
        while time.time() < deadline:
            q = agreed(exclude=IDS[old], need=2)
            if q is not None:
                new = q
                if any(r.get("status") == 200 and r.get("served_by") == IDS[q] and r["t_done"] > cyc["t_kill"]
                       for r in list(recs[-40:])):
                    break
            time.sleep(0.01)
        cyc["t_new"] = time.time()
        cyc["new"] = IDS[new] if new is not None else None
        if new is not None and cyc["t_new"] >= deadline:
            bad("%s cycle %d: %s is primary but acknowledged no write within 15 s of killing %s (writes hung?)" % (
                signame, c + 1, IDS[new], IDS[old]))
        try:
            cyc["exit"] = procs[old].wait(timeout=10)
        except subprocess.TimeoutExpired:
            cyc["exit"] = "still running"
            procs[old].kill()
            procs[old].wait()
        if new is None:
            bad("%s cycle %d: no new primary within 15 s of killing %s" % (signame, c + 1, IDS[old]))
            cycles.append(cyc)
            aborted = True
            break
        start(old)
        cyc["t_restart"] = time.time()
        deadline = time.time() + 10
        while time.time() < deadline:
            st = status(old)
            if st and st.get("role") == "replica" and (st.get("primary") or {}).get("id") == IDS[new]:
                break
            time.sleep(0.05)
        else:
            bad("%s cycle %d: restarted %s does not follow %s within 10 s" % (signame, c + 1, IDS[old], IDS[new]))
        time.sleep(0.4)
        m = metrics(new)
        cyc["new_misdirected"] = m.get("misdirected/421", 0)
        cyc["new_gated"] = m.get("gated/503", 0)
        cyc["t_end"] = time.time()
        cycles.append(cyc)
        log("%s %2d: %s -> %s, serving after %d ms, exit %s; %s answered so far (since its start): %d x 421, %d x 503 gated" % (
            signame, c + 1, IDS[old], IDS[new], (cyc["t_new"] - cyc["t_kill"]) * 1000, cyc["exit"], IDS[new],
            cyc["new_misdirected"], cyc["new_gated"]))
    if aborted:
        break

time.sleep(0.5)
stop_w.set()
for t in threads:
    t.join(17)
stop_mon.set()
mt.join(2)
time.sleep(0.3)

# --- the databases -------------------------------------------------------------------
rows = {}
for i in range(3):
    c = http.client.HTTPConnection(IPS[i], int(APP), timeout=10)
    c.request("GET", "/writes")
    rows[IDS[i]] = json.loads(c.getresponse().read())["writes"]
    c.close()
from datetime import datetime
def ts(s):
    return datetime.fromisoformat(s).timestamp()
where = {}
for inst, rs in rows.items():
    for r in rs:
        where.setdefault(r["id"], []).append((inst, ts(r["at"]), r.get("primary")))

# tenure intervals from the monitor: [last obs not primary before, first obs not primary after]
tenure = {x: [] for x in IDS}
for i in range(3):
    seq = sorted((o[0], o[2]) for o in obs if o[1] == i)
    start_t, prev_t = None, None
    for t, role in seq:
        if role == "primary" and start_t is None:
            start_t = prev_t if prev_t is not None else t - 0.05
        elif role != "primary" and start_t is not None:
            tenure[IDS[i]].append((start_t, t))
            start_t = None
        prev_t = t
    if start_t is not None:
        tenure[IDS[i]].append((start_t, float("inf")))
def in_tenure(inst, t, slack=0.03):
    return any(a - slack <= t <= b + slack for a, b in tenure[inst])
# two instances reporting primary at the same instant (status view only; informational)

# --- analysis ------------------------------------------------------------------------
total = len(recs)
acked = [r for r in recs if r.get("status") == 200]
dups_db = {w: l for w, l in where.items() if len(l) > 1}
dups_409 = [r for r in recs if r.get("status") == 409 and r.get("dup")]
lost = [r for r in acked if r["id"] not in where]
nonprim = []
for w, l in where.items():
    for inst, t, seen_primary in l:
        if not in_tenure(inst, t) or (seen_primary and seen_primary != inst):
            nonprim.append((w, inst, t, seen_primary))
wrong_served = [r for r in acked if r.get("served_by") and r["id"] in where and where[r["id"]][0][0] != r["served_by"]]
rerouted = sum(1 for r in recs if any(k == "refused" for _, k in r["tries"]))
failed = [r for r in recs if r.get("status") != 200]
for r in failed:
    if r.get("body"):
        r["body"] = r["body"].strip()
noans = [r for r in failed if r["kind"] in ("timeout", "reset", "eof", "all-refused") or r.get("status") is None]

def phase_of(r):
    """The last failover that started before this write was answered."""
    best = None
    for cyc in cycles:
        if cyc["t_kill"] <= r["t_done"]:
            best = cyc
    return best
def kinds(rs):
    d = {}
    for r in rs:
        d[r["kind"]] = d.get(r["kind"], 0) + 1
    return d

term_cycles = [c for c in cycles if c["sig"] == "TERM"]
kill_cycles = [c for c in cycles if c["sig"] == "KILL"]
t_kill_phase = kill_cycles[0]["t_kill"] if kill_cycles else float("inf")
term_failed = [r for r in failed if r["t_done"] < t_kill_phase]
kill_failed = [r for r in failed if r["t_done"] >= t_kill_phase]
def in_flight_to_dead(r):
    for cyc in kill_cycles:
        if r.get("t_sent", r["t_send"]) <= cyc["t_dead"] and r["t_done"] >= cyc["t_kill"]:
            # sent to the dead one itself, or forwarded by a replica to it (the app answered nothing)
            return True
    return False
kill_bad = [r for r in kill_failed if not in_flight_to_dead(r)]

print("# writes: %d sent, %d acknowledged, %d rerouted after a refused connect, %d failed %s" %
      (total, len(acked), rerouted, len(failed), kinds(failed)))
for r in failed[:40]:
    cyc = phase_of(r)
    print("#   failed %s via %s: %s (sent %+.0f ms, answered %+.0f ms rel. to %s kill #%s of %s) %s" % (
        r["id"], r.get("inst"), r["kind"],
        (r.get("t_sent", r["t_send"]) - cyc["t_kill"]) * 1000 if cyc else 0, (r["t_done"] - cyc["t_kill"]) * 1000 if cyc else 0,
        cyc["sig"] if cyc else "-", cyc["n"] if cyc else "-", cyc["old"] if cyc else "-", r.get("body", "")) +
        ("; applied in %s" % [x[0] for x in where[r["id"]]] if r["id"] in where else "; not applied"))

for name, cs in (("SIGTERM", [c for c in cycles if c["sig"] == "TERM"]), ("SIGKILL", [c for c in cycles if c["sig"] == "KILL"])):
    slow = sorted(((r["t_done"] - r["t_send"]) * 1000, r["id"], r) for r in acked
                  if any(c["t_kill"] - 0.5 <= r["t_send"] <= c.get("t_end", c["t_new"]) for c in cs))[-3:]
    for ms, _, r in reversed(slow):
        cyc = phase_of(r)
        print("#   slowest %s-phase write %s via %s -> served by %s in %d ms (sent %+.0f ms rel. to %s kill #%s of %s; connect attempts %s)" % (
            name, r["id"], r.get("inst"), r.get("served_by"), ms, (r["t_send"] - cyc["t_kill"]) * 1000 if cyc else 0,
            cyc["sig"] if cyc else "-", cyc["n"] if cyc else "-", cyc["old"] if cyc else "-", r["tries"]))

# stall per failover: longest gap between consecutive acknowledgements in [t_kill - 1 s, t_restart]
# (plus the first one after it)
acks = sorted(r["t_done"] for r in acked)
import bisect
def stall(cyc):
    a, b = cyc["t_kill"] - 1.0, cyc.get("t_restart", cyc["t_new"] + 1)
    lo, hi = bisect.bisect_left(acks, a), bisect.bisect_right(acks, b)
    pts = acks[lo:hi + 1]  # and the first acknowledgement after the window, if the stall runs past it
    if not any(a <= x <= cyc["t_kill"] for x in pts):
        pts = sorted(pts + [cyc["t_kill"]])  # nothing acknowledged just before: count from the kill
    if len(pts) < 2:
        return None
    return max(y - x for x, y in zip(pts, pts[1:])) * 1000
def maxlat(cyc):
    ls = [(r["t_done"] - r["t_send"]) * 1000 for r in acked if cyc["t_kill"] - 0.5 <= r["t_send"] <= cyc["t_new"]]
    return max(ls) if ls else 0

for name, cs in (("sigterm", term_cycles), ("sigkill", kill_cycles)):
    if not cs:
        continue
    st = [s for s in (stall(c) for c in cs) if s is not None]
    fo = [(c["t_new"] - c["t_kill"]) * 1000 for c in cs]
    ml = [maxlat(c) for c in cs]
    print("# %s stalls (ms): %s" % (name, [round(s) for s in st]))
    figure("%s_cycles" % name, len(cs))
    figure("%s_stall_ms_median" % name, round(statistics.median(st)) if st else "NA")
    figure("%s_stall_ms_max" % name, round(max(st)) if st else "NA")
    figure("%s_new_primary_serving_ms_median" % name, round(statistics.median(fo)))
    figure("%s_new_primary_serving_ms_max" % name, round(max(fo)))
    figure("%s_write_latency_ms_max" % name, round(max(ml)))
figure("writes_total", total)
figure("writes_acked", len(acked))
figure("writes_rerouted_refused", rerouted)
figure("sigterm_failed", len(term_failed))
figure("sigkill_failed", len(kill_failed))
figure("sigkill_failed_not_in_flight_to_dead", len(kill_bad))
figure("no_answer", len(noans))
figure("duplicates", len(dups_db) + len(dups_409))
figure("acked_lost", len(lost))
figure("applied_on_non_primary", len(nonprim))
if FIG_OUT:
    with open(FIG_OUT, "w") as f:
        f.write("\n".join(FIGS) + "\n")

# --- verdicts -------------------------------------------------------------------------
want_cycles = CYCLES
if len(term_cycles) == want_cycles and len(kill_cycles) == want_cycles:
    ok("%d SIGTERM and %d SIGKILL failovers under load completed" % (len(term_cycles), len(kill_cycles)))
else:
    bad("completed %d SIGTERM and %d SIGKILL failovers, want %d each" % (len(term_cycles), len(kill_cycles), want_cycles))
bad_exit = [c for c in term_cycles if c["exit"] != 0]
(ok if not bad_exit else bad)("SIGTERMed primaries exit 0 (%s)" % ([(c["n"], c["old"], c["exit"]) for c in bad_exit] or "all"))
(ok if total > 200 and len(acked) > 0.9 * total else bad)("the writer kept writing: %d writes, %d acknowledged" % (total, len(acked)))
(ok if not dups_db and not dups_409 else bad)("zero duplicates (ids in two DBs: %s; 409 duplicate answers: %s)" % (
    list(dups_db.items())[:5] or 0, [r["id"] for r in dups_409][:5] or 0))
(ok if not lost else bad)("zero acknowledged-but-lost writes (%s)" % ([r["id"] for r in lost][:10] or 0))
(ok if not nonprim else bad)("zero writes applied on a non-primary (%s)" % (nonprim[:5] or 0))
(ok if not wrong_served else bad)("every acknowledged write's served_by names the DB it is in (%s)" % ([r["id"] for r in wrong_served][:5] or 0))
(ok if not term_failed else bad)("SIGTERM phase: zero failed writes (%d: %s)" % (len(term_failed), kinds(term_failed)))
(ok if not kill_bad else bad)("SIGKILL phase: failures only among requests in flight to the dead primary (%d failed, %s; %d not in flight: %s)" % (
    len(kill_failed), kinds(kill_failed), len(kill_bad), [(r["id"], r.get("inst"), r["kind"]) for r in kill_bad][:8]))
if term_cycles:
    st = [s for s in (stall(c) for c in term_cycles) if s is not None]
    (ok if st and max(st) <= 1000 else bad)("planned handover (SIGTERM) write stall <= 1 s: median %s ms, max %s ms" % (
        round(statistics.median(st)) if st else "NA", round(max(st)) if st else "NA"))
sys.exit(1 if FAILS else 0)
EOF

echo "routing_failover: $([ $rc -eq 0 ] && echo passed || echo FAILED) ($(($(date +%s) - T_START)) s)"
exit "$rc"
