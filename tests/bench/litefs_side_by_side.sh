#!/usr/bin/env bash
# LiteFS's built-in proxy vs leaseway on the same LiteFS cluster, same apps
# (issue 6, item 5).
#
#   tests/bench/litefs_side_by_side.sh [--record] [--check] [--help]
#
# One Consul dev agent, three LiteFS nodes (tests/lib/litefs.sh; node 1 the
# only candidate), each with LiteFS's proxy (proxy: addr, target = the app,
# db = demo.db) AND a leaseway in watch mode (--peer-url-template,
# --litefs-db <mount>/demo.db, --upstream-health <app health path>; other
# flags at their defaults: --hold-timeout 5s, --txid-wait 5s, like LiteFS's
# 5 s waits) in front of the same app. Every row sends the
# same request to node 3 (a replica) through each proxy:
#   phase 1, app = deploy/demo-app/app.py on the mount:
#     write to a replica (where did it land?), read-your-writes after a write
#     on a replica (replication paused 1 s; and stalled 6 s), app not ready
#     (app down, back after 2 s), local-read throughput and p50/p99
#     (wrk -t1 -c32 -d5s --latency GET /, interleaved, 2 rounds, wrk on CPU 0,
#     each proxy process on CPU 1), primary unknown (node 1 stopped, no
#     candidate left), primary back 1 s after a write was sent
#   phase 2, app = tests/lib/upstream.py (fresh cluster, same layout):
#     write body > 1 MB (2 MiB POST), WebSocket, SSE first-event latency,
#     OPTIONS
#   phase 3, app = nginx serving a 1 KiB file (fresh cluster): local-read
#     throughput and p50/p99 again, so that the proxies, not the Python demo
#     app, are what is measured
# For LiteFS's fly-replay answers the client plays Fly's edge where a row
# says "edge emulated": it re-sends the request once to the named instance's
# LiteFS proxy (Fly cannot replay bodies > 1 MB: that row is not emulated).
#
# Needs real LiteFS (tests/setup.sh) for the LiteFS column; on a machine
# without it the cluster is tests/lib/litefs_standin.py, the LiteFS column
# reads "not measured" and only leaseway's figures are real.
# --record appends a dated section with the table to tests/bench/RESULTS.md.
# --check (what tests/integration/litefs_vs_proxy.sh runs in CI): behaviour
# rows only (no throughput rounds, no phase 3); exit 1 when leaseway loses a
# row ("no" in the last column), 77 without a real LiteFS to compare with.
# Env: MAX_SECONDS (170), LEASEWAY_BIN, LEASEWAY_LITEFS_IMPL, WRK_DURATION (5),
#      WRK_CONNS (32), NOTE (free text for --record).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=args.sh
. "$HERE/args.sh"
bench_args "record check" "$@"

# shellcheck source=../lib/litefs.sh
. "$REPO/tests/lib/litefs.sh"
MAX_SECONDS=${MAX_SECONDS:-170}
DUR=${WRK_DURATION:-5}
CONNS=${WRK_CONNS:-32}
PY=$LFS_PY
DRV=("$PY" "$HERE/litefs_side_by_side.py")
UPSTREAM="$REPO/tests/lib/upstream.py"
watchdog "$MAX_SECONDS" "litefs_side_by_side: killed after $MAX_SECONDS s"

[ -x "$LEASEWAY_BIN" ] || { echo "no leaseway binary at $LEASEWAY_BIN" >&2; exit 2; }
for t in wrk taskset curl; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 2; }; done
IMPL=$(litefs_impl) || exit 77
if [ "$IMPL" = real ]; then HAVE_LFS=1; else HAVE_LFS=0; fi
if [ "$CHECK" = 1 ] && [ "$HAVE_LFS" = 0 ]; then
  echo "SKIP: --check compares with LiteFS's proxy, and no real LiteFS can run here" >&2
  exit 77
fi
T_START=$(date +%s)
DIR=$(mktmp litefs-sbs)
# A copy, so that a rebuild during the run cannot swap the binary under us.
cp "$LEASEWAY_BIN" "$DIR/leaseway" || { echo "cannot copy $LEASEWAY_BIN" >&2; exit 2; }
LEASEWAY_BIN_ORIG=$LEASEWAY_BIN
LEASEWAY_BIN="$DIR/leaseway"
RES="$DIR/results.tsv"
: >"$RES"
trap 'set +e; litefs_resume_replication 1 2>/dev/null; litefs_cluster_stop; cleanup' EXIT
log() { printf '[sbs %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# rec ROW SYSTEM JSON
rec() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RES"; }
jget() { "$PY" -c 'import json,sys; j=json.loads(sys.argv[1]); v=eval(sys.argv[2]); print("" if v is None else v)' "$1" "$2" 2>/dev/null || true; }
systems() { if [ "$HAVE_LFS" = 1 ]; then echo "litefs leaseway"; else echo "leaseway"; fi; }
addr3() { if [ "$1" = litefs ]; then echo "$LFS_PROXY_3"; else echo "$LW_ADDR_3"; fi; }
replay_map() { printf '{"%s":"%s","%s":"%s","%s":"%s"}' "$LFS_HOST_1" "$LFS_PROXY_1" "$LFS_HOST_2" "$LFS_PROXY_2" "$LFS_HOST_3" "$LFS_PROXY_3"; }
# landed ID — which app's database has the write (checked on every live app; the primary's first)
landed() {
  local i out where=""
  for i in 1 2 3; do
    out=$(curl -s -m 3 "http://$(_lfs_get APP_ADDR "$i")/writes" 2>/dev/null) || continue
    if grep -q "\"id\": \"$1\"" <<<"$out"; then
      where=$(jget "$out" '[w["served_by"] for w in j["writes"] if w["id"]=="'"$1"'"][0]')
      break
    fi
  done
  echo "${where:-nowhere}"
}
txid_cookie() { jget "$1" '[c.split(";")[0] for c in j["set_cookie"] if c.startswith("__txid=")][0]'; }

# throughput LABEL — local reads on node 3 through each proxy, interleaved,
# 2 rounds each; wrk on CPU 0, each proxy process on CPU 1.
throughput() {
  local label=$1 round s out rps p50 p99 errs
  # leaseway's gate (--upstream-health) may still be closed from a row that
  # stopped the app: wait for it, then warm both paths up.
  wait_for "curl -sf -o /dev/null -m 1 http://$LW_ADMIN_3/health" 15 0.2 || log "leaseway n3 gate not open"
  for s in $(systems); do curl -s -o /dev/null -m 3 "http://$(addr3 "$s")/" || true; done
  if [ "$HAVE_LFS" = 1 ]; then taskset -apc 1 "$LFS_PID_3" >/dev/null 2>&1; fi
  taskset -apc 1 "$LW_PID_3" >/dev/null 2>&1
  for round in 1 2; do
    for s in $(systems); do
      out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "http://$(addr3 "$s")/" 2>&1)
      rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
      p50=$(awk '$1=="50%" {print $2}' <<<"$out")
      p99=$(awk '$1=="99%" {print $2}' <<<"$out")
      errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
      rec "throughput_${label}_r$round" "$s" "{\"rps\": \"${rps:-0}\", \"p50\": \"${p50:-?}\", \"p99\": \"${p99:-?}\", \"errors\": \"${errs}\"}"
      log "wrk $label round $round $s: $rps req/s p50 $p50 p99 $p99 $errs"
    done
  done
}

start_phase() { # NAME — cluster + leaseways under $DIR/NAME
  local name=$1 i
  export LFS_CANDIDATES=1 LFS_WITH_PROXY=1 LFS_CLUSTER="sbs-$$-$name"
  litefs_cluster_start "$DIR/$name" 3 || { log "cluster ($name) did not start"; exit 2; }
  for i in 1 2 3; do
    litefs_leaseway_start "$i" --litefs-db "$(_lfs_get LFS_MOUNT "$i")/$LFS_DB" \
      --upstream-health "${LFS_APP_HEALTH:-/healthz}" || { log "leaseway $i did not start"; exit 2; }
  done
  wait_for "[ \"\$(litefs_lw_primary 3)\" = $LFS_HOST_1 ]" 10 0.05 || { log "leaseway n3 does not see the primary"; exit 2; }
  if [ "$HAVE_LFS" = 1 ]; then
    wait_for "curl -s -o /dev/null -m 1 http://$LFS_PROXY_3/" 20 0.1 || log "LiteFS proxy on node 3 does not answer"
  fi
}

consul_dev_start "$DIR/consul" || { log "consul dev agent did not start"; exit 2; }

# ============================== phase 1: demo app ==============================
log "impl=$IMPL; phase 1 (demo app)"
start_phase p1
for s in $(systems); do
  r=$("${DRV[@]}" req POST "$(addr3 "$s")" /write --body "{\"id\":\"wr-$s\"}")
  sleep 0.5
  rec write_replica "$s" "$(jget "$r" 'json.dumps({"code":j["code"],"ms":j["ms"],"fly_replay":j["headers"].get("fly-replay"),"body_len":len(j["body"]),"err":j["err"]})' | sed 's/}$//'), \"landed\": \"$(landed "wr-$s")\"}"
done

# read-your-writes, replication paused 1 s then resumed
for s in $(systems); do
  wait_for "[ \"\$(litefs_pos 3)\" = \"\$(litefs_pos 1)\" ]" 10 0.05
  litefs_pause_replication 1
  if [ "$s" = litefs ]; then
    w=$("${DRV[@]}" replay "$LFS_PROXY_3" /write "{\"id\":\"ryw1-$s\"}" "$(replay_map)")
  else
    w=$("${DRV[@]}" req POST "$LW_ADDR_3" /write --body "{\"id\":\"ryw1-$s\"}")
  fi
  ck=$(txid_cookie "$w")
  "${DRV[@]}" req GET "$(addr3 "$s")" /writes --cookie "${ck:-none=1}" --timeout 12 >"$DIR/ryw1-$s.json" &
  p=$!
  sleep 1
  litefs_resume_replication 1
  wait $p
  r=$(cat "$DIR/ryw1-$s.json")
  rec ryw_resumed "$s" "$(jget "$r" 'json.dumps({"code":j["code"],"ms":j["ms"],"served_by":(json.loads(j["body"]).get("served_by") if j["body"].startswith("{") else None),"has_write":"ryw1-'"$s"'" in j["body"],"cookie":"'"$ck"'"})')"
done

# read-your-writes, replication stalled 6 s (> both 5 s waits)
for s in $(systems); do
  wait_for "[ \"\$(litefs_pos 3)\" = \"\$(litefs_pos 1)\" ]" 10 0.05
  litefs_pause_replication 1
  if [ "$s" = litefs ]; then
    w=$("${DRV[@]}" replay "$LFS_PROXY_3" /write "{\"id\":\"ryw2-$s\"}" "$(replay_map)")
  else
    w=$("${DRV[@]}" req POST "$LW_ADDR_3" /write --body "{\"id\":\"ryw2-$s\"}")
  fi
  ck=$(txid_cookie "$w")
  r=$("${DRV[@]}" req GET "$(addr3 "$s")" /writes --cookie "${ck:-none=1}" --timeout 12)
  litefs_resume_replication 1
  rec ryw_stalled "$s" "$(jget "$r" 'json.dumps({"code":j["code"],"ms":j["ms"],"served_by":(json.loads(j["body"]).get("served_by") if j["body"].startswith("{") else None),"has_write":"ryw2-'"$s"'" in j["body"],"body":j["body"][:60]})')"
done
wait_for "[ \"\$(litefs_pos 3)\" = \"\$(litefs_pos 1)\" ]" 10 0.05

# app not ready: node 3's app down, back after 2 s; both requests in flight at once
litefs_app_stop 3
for s in $(systems); do
  "${DRV[@]}" req GET "$(addr3 "$s")" / --timeout 12 >"$DIR/appdown-$s.json" &
  eval "ad_$s=\$!"
done
sleep 2
litefs_app_start 3 >/dev/null 2>&1 || log "app 3 did not come back"
for s in $(systems); do
  eval "wait \$ad_$s"
  r=$(cat "$DIR/appdown-$s.json")
  rec app_down "$s" "$(jget "$r" 'json.dumps({"code":j["code"],"ms":j["ms"],"retry_after":j["headers"].get("retry-after"),"gate":j["headers"].get("leaseway-gate"),"err":j["err"]})')"
done

# throughput of local reads on node 3 (the demo app: the app is the bottleneck)
[ "$CHECK" = 1 ] || throughput demo

# primary unknown: stop node 1 (the only candidate): nobody holds the lease
litefs_app_stop 1
litefs_node_stop 1 TERM
wait_for '[ -z "$(litefs_primary)" ]' 15 0.1 || log "lease still held after node 1 stopped"
wait_for '[ -z "$(litefs_lw_primary 3)" ]' 10 0.1 || log "leaseway n3 still reports a primary"
sleep 1.5 # LiteFS replicas: stream drop + 1 s before they re-read the lease
for s in $(systems); do
  r=$("${DRV[@]}" req POST "$(addr3 "$s")" /write --body "{\"id\":\"pu-$s\"}" --timeout 12)
  rec primary_unknown "$s" "$(jget "$r" 'json.dumps({"code":j["code"],"ms":j["ms"],"retry_after":j["headers"].get("retry-after"),"body":j["body"][:60],"err":j["err"]})')"
done

# primary back 1 s after a write was sent (edge emulated for LiteFS)
for s in $(systems); do
  if [ "$s" = litefs ]; then
    "${DRV[@]}" replay "$LFS_PROXY_3" /write "{\"id\":\"pb-$s\"}" "$(replay_map)" --timeout 15 >"$DIR/pb-$s.json" &
  else
    "${DRV[@]}" req POST "$LW_ADDR_3" /write --body "{\"id\":\"pb-$s\"}" --timeout 15 >"$DIR/pb-$s.json" &
  fi
  eval "pb_$s=\$!"
done
sleep 1
t_back=$(date +%s%N)
litefs_node_start 1 && litefs_wait_primary "$LFS_HOST_1" 20 && litefs_app_start 1 || log "node 1 did not come back"
log "node 1 primary again with its app after $((($(date +%s%N) - t_back) / 1000000)) ms"
for s in $(systems); do
  eval "wait \$pb_$s"
  r=$(cat "$DIR/pb-$s.json")
  sleep 0.3
  rec primary_back "$s" "$(jget "$r" 'json.dumps({"code":j["code"],"first_code":j.get("first_code"),"replayed_to":j.get("replayed_to"),"ms":j["ms"],"err":j["err"]})' | sed 's/}$//'), \"landed\": \"$(landed "pb-$s")\"}"
done
litefs_cluster_stop

# ============================ phase 2: upstream.py ============================
log "phase 2 (tests/lib/upstream.py as the app)"
cat >"$DIR/upapp.sh" <<EOF
# app for phase 2: make sure the LiteFS proxy's db exists, then upstream.py
db=\$1 port=\$2 name=\$3
[ -s "\$db" ] || "$PY" -c 'import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute("create table if not exists t(x)")' "\$db"
exec "$PY" "$UPSTREAM" --port "\$port" --name "\$name"
EOF
export LFS_APP_LOOPBACK=1 LFS_APP_HEALTH=/echo LFS_APP_CMD="bash $DIR/upapp.sh {db} {port} {name}"
start_phase p2
for s in $(systems); do
  r=$("${DRV[@]}" req POST "$(addr3 "$s")" /upload --size 2097152 --timeout 20)
  rec big_body "$s" "$(jget "$r" 'json.dumps({"code":j["code"],"ms":j["ms"],"served_by":j["headers"].get("x-served-by"),"fly_replay":j["headers"].get("fly-replay"),"sha_ok":(j["body"].startswith("{") and json.loads(j["body"]).get("sha256")==j.get("sent_sha256")),"err":j["err"]})')"
  r=$("${DRV[@]}" ws "$(addr3 "$s")" /ws --timeout 6)
  rec websocket "$s" "$r"
  r=$("${DRV[@]}" sse "$(addr3 "$s")" "/sse?n=5&ms=300" --timeout 8)
  rec sse "$s" "$r"
  r=$("${DRV[@]}" req OPTIONS "$(addr3 "$s")" /echo)
  rec options "$s" "$(jget "$r" 'json.dumps({"code":j["code"],"ms":j["ms"],"served_by":j["headers"].get("x-served-by"),"fly_replay":j["headers"].get("fly-replay"),"allow":j["headers"].get("allow")})')"
done
litefs_cluster_stop

# ====================== phase 3: nginx serving 1 KiB ==========================
# The demo app (Python) caps both proxies at a few hundred req/s; a static
# nginx app shows what each proxy itself costs.
if [ "$CHECK" = 1 ]; then
  log "--check: phase 3 (throughput) skipped"
elif command -v nginx >/dev/null 2>&1; then
  log "phase 3 (nginx, 1 KiB static file, as the app)"
  mkdir -p "$DIR/www"
  head -c 1024 /dev/zero | tr '\0' x >"$DIR/www/index.html"
  cat >"$DIR/nginxapp.sh" <<EOF
# app for phase 3: the LiteFS proxy's db, then nginx on 127.0.0.1:<port>
db=\$1 port=\$2 name=\$3 d="$DIR/ngx-\$3"
mkdir -p "\$d/tmp"
[ -s "\$db" ] || "$PY" -c 'import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute("create table if not exists t(x)")' "\$db"
cat >"\$d/nginx.conf" <<CONF
user root;
worker_processes 1;
daemon off;
pid \$d/nginx.pid;
error_log \$d/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path \$d/tmp; proxy_temp_path \$d/tmp; fastcgi_temp_path \$d/tmp;
  uwsgi_temp_path \$d/tmp; scgi_temp_path \$d/tmp;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:\$port;
    location = /healthz { return 200 "ok"; }
    location / { root $DIR/www; }
  }
}
CONF
exec nginx -c "\$d/nginx.conf"
EOF
  export LFS_APP_HEALTH=/healthz LFS_APP_CMD="bash $DIR/nginxapp.sh {db} {port} {name}"
  start_phase p3
  throughput nginx
  litefs_cluster_stop
else
  log "no nginx: phase 3 skipped"
fi

# ================================== report ===================================
TABLE="$DIR/table.md"
"$PY" - "$RES" "$HAVE_LFS" "$IMPL" "$CHECK" >"$TABLE" <<'EOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    row, sysname, js = line.rstrip("\n").split("\t", 2)
    try:
        rows.setdefault(row, {})[sysname] = json.loads(js)
    except ValueError:
        rows.setdefault(row, {})[sysname] = {"raw": js}
have = sys.argv[2] == "1"
# --check runs in CI on a loaded machine: a tie on time allows 300 ms more
slack_ms = 300 if sys.argv[4] == "1" else 50
NM = "not measured (no LiteFS binary here)"

def g(row, s):
    return rows.get(row, {}).get(s)

def ms(v):
    return "?" if v is None else "%.0f ms" % v

def lat(v):
    # wrk units -> ms
    if not v or v == "?":
        return None
    for suf, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(suf):
            try:
                return float(v[:-len(suf)]) * f
            except ValueError:
                return None
    return None

def desc(row, d):
    if d is None:
        return NM
    if "raw" in d:
        return d["raw"][:80]
    if row == "write_replica":
        return "%s%s, landed: %s" % (d.get("code"), ", fly-replay: " + d["fly_replay"] if d.get("fly_replay") else "", d.get("landed"))
    if row in ("ryw_resumed", "ryw_stalled"):
        return "%s in %s, served by %s, sees the write: %s" % (d.get("code"), ms(d.get("ms")), d.get("served_by"), "yes" if d.get("has_write") else "no")
    if row == "app_down":
        x = "%s in %s" % (d.get("code") or d.get("err"), ms(d.get("ms")))
        if d.get("retry_after"):
            x += ", Retry-After: %s" % d["retry_after"]
        if d.get("gate"):
            x += ", Leaseway-Gate: %s" % d["gate"]
        return x
    if row == "primary_unknown":
        x = "%s in %s" % (d.get("code") or d.get("err"), ms(d.get("ms")))
        if d.get("retry_after"):
            x += ", Retry-After: %s" % d["retry_after"]
        return x
    if row == "primary_back":
        x = "%s in %s" % (d.get("code") or d.get("err"), ms(d.get("ms")))
        if d.get("replayed_to"):
            x += " (fly-replay %s, edge emulated)" % d.get("first_code")
        return x + ", landed: %s" % d.get("landed")
    if row == "big_body":
        x = "%s in %s" % (d.get("code") or d.get("err"), ms(d.get("ms")))
        if d.get("fly_replay"):
            x += ", fly-replay (Fly's edge cannot replay > 1 MB)"
        if d.get("served_by"):
            x += ", served by %s, body intact: %s" % (d["served_by"], "yes" if d.get("sha_ok") else "no")
        return x
    if row == "websocket":
        return "%s, echo: %s%s" % (d.get("code"), "yes" if d.get("echoed") else "no", (", " + d["err"]) if d.get("err") else "")
    if row == "sse":
        return "%s, first event at %s, stream %s, %s events" % (d.get("code"), ms(d.get("first_ms")), ms(d.get("total_ms")), d.get("events"))
    if row == "options":
        x = "%s" % d.get("code")
        if d.get("fly_replay"):
            x += ", fly-replay: %s (treated as a write)" % d["fly_replay"]
        if d.get("served_by"):
            x += ", served by %s" % d["served_by"]
        return x
    if row.startswith("throughput"):
        return "%s req/s, p50 %s, p99 %s%s" % (d.get("rps"), d.get("p50"), d.get("p99"), (", " + d["errors"].strip()) if d.get("errors", "").strip() else "")
    return json.dumps(d)

def verdict(row, l, w):
    if w is None:
        return "?"
    if l is None:
        return "n/a (LiteFS not measured)"
    try:
        if row == "write_replica":
            lw = w.get("landed", "").startswith("app-n1") and w.get("code") == 200
            ll = l.get("landed", "").startswith("app-n1") and l.get("code") == 200
            return "yes" if lw and not ll else ("tie" if lw == ll else "no")
        if row in ("ryw_resumed", "ryw_stalled"):
            okw = w.get("code") == 200 and w.get("has_write")
            okl = l.get("code") == 200 and l.get("has_write")
            if okw and not okl:
                return "yes"
            if okw and okl:
                return "tie" if (w.get("ms") or 0) <= (l.get("ms") or 0) * 1.1 + slack_ms else "no (slower)"
            return "no"
        if row == "app_down":
            okw, okl = w.get("code") == 200, l.get("code") == 200
            if okw and not okl:
                return "yes"
            if okl and not okw:
                return "no"
            return "tie"
        if row == "primary_unknown":
            return "tie" if w.get("code") == l.get("code") else ("yes" if w.get("code") == 503 else "no")
        if row == "primary_back":
            lw = w.get("landed", "").startswith("app-n1")
            ll = l.get("landed", "").startswith("app-n1")
            return "yes" if lw and not ll else ("tie" if lw == ll else "no")
        if row == "big_body":
            okw = w.get("code") == 200 and w.get("sha_ok")
            return "yes (Fly cannot replay it)" if okw and l.get("fly_replay") else ("tie" if okw and l.get("sha_ok") else ("yes" if okw else "no"))
        if row == "websocket":
            return "yes" if w.get("echoed") and not l.get("echoed") else ("tie" if w.get("echoed") == l.get("echoed") else "no")
        if row == "sse":
            fw, fl = w.get("first_ms") or 1e9, l.get("first_ms") or 1e9
            return "yes" if fw < 500 and fl >= 500 else ("tie" if (fw < 500) == (fl < 500) else "no")
        if row == "options":
            lw = w.get("code") == 200 and not w.get("fly_replay")
            ll = l.get("code") == 200 and not l.get("fly_replay")
            return "yes" if lw and not ll else ("tie" if lw == ll else "no")
        if row.startswith("throughput"):
            rw, rl = float(w.get("rps") or 0), float(l.get("rps") or 0)
            pw, pl = lat(w.get("p99")), lat(l.get("p99"))
            ratio = rw / rl if rl else float("inf")
            lower = pw is not None and pl is not None and pw < pl
            return "%s (%.2fx, p99 %s)" % ("yes" if ratio >= 2 and lower else "no", ratio, "lower" if lower else "not lower")
    except Exception as e:  # noqa
        return "? (%s)" % e
    return "?"

labels = [
    ("write_replica", "Write to a replica (POST /write on node 3)"),
    ("big_body", "Write body > 1 MB to a replica (2 MiB POST /upload)"),
    ("websocket", "WebSocket through a replica (GET /ws, one echo)"),
    ("sse", "SSE through a replica (/sse 5 events x 300 ms)"),
    ("options", "OPTIONS /echo on a replica"),
    ("ryw_resumed", "Read-your-writes after a write on a replica, replication paused 1 s (LiteFS: edge emulated)"),
    ("ryw_stalled", "Read-your-writes, replication stalled 6 s (LiteFS: edge emulated)"),
    ("primary_unknown", "Primary unknown (only candidate stopped): write on a replica"),
    ("primary_back", "Primary back 1 s after the write was sent (LiteFS: edge emulated)"),
    ("app_down", "App not ready: GET / on node 3, app down, back after 2 s"),
    ("throughput_demo_r1", "Local reads GET / of the demo app (wrk -t1 -c32 -d5s), round 1"),
    ("throughput_demo_r2", "Local reads GET / of the demo app, round 2"),
    ("throughput_nginx_r1", "Local reads GET / of a 1 KiB nginx file as the app (wrk -t1 -c32 -d5s), round 1"),
    ("throughput_nginx_r2", "Local reads GET / of a 1 KiB nginx file as the app, round 2"),
]
print("| row | LiteFS proxy | leaseway | leaseway wins? |")
print("|---|---|---|---|")
for key, label in labels:
    l, w = g(key, "litefs"), g(key, "leaseway")
    if w is None and l is None:
        continue
    print("| %s | %s | %s | %s |" % (label, desc(key, l) if have else NM, desc(key, w), verdict(key, l if have else None, w)))
EOF

echo
echo "LiteFS side by side ($(date -u '+%Y-%m-%d %H:%M:%S UTC'); cluster: $IMPL; $(($(date +%s) - T_START)) s)"
echo
cat "$TABLE"
if [ "$RECORD" = 1 ]; then
  {
    echo
    echo "## LiteFS side by side — $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo
    echo "- script: tests/bench/litefs_side_by_side.sh (rows and method in its header)"
    if [ "$HAVE_LFS" = 1 ]; then
      echo "- cluster: LiteFS v$LFS_VERSION, 3 nodes on loopback, Consul dev agent; LiteFS proxy and leaseway in front of the same apps"
    else
      echo "- cluster: **tests/lib/litefs_standin.py, not LiteFS** (no LiteFS binary could run here), so the LiteFS column could not be measured; the leaseway column is real (leaseway in watch mode on a LiteFS-shaped lease, TXID from <db>-pos)"
    fi
    echo "- leaseway: $LEASEWAY_BIN_ORIG, copied at start ($("$LEASEWAY_BIN" version 2>/dev/null | head -n1)), repo HEAD $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null); kernel $(uname -r), nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- wrk on CPU 0, each proxy process on CPU 1, apps unpinned; ${NOTE:+note: $NOTE}"
    echo
    cat "$TABLE"
  } >>"$REPO/tests/bench/RESULTS.md"
  log "appended to tests/bench/RESULTS.md"
fi
if [ "$CHECK" = 1 ]; then
  # the verdict is the last cell of each row
  lost=$(awk -F'|' 'NR > 2 && $(NF-1) ~ /^ *(no|\?)/ { print $2 }' "$TABLE")
  if [ -n "$lost" ]; then
    echo "FAIL - leaseway does not win or tie these rows:"
    printf '%s\n' "$lost" | sed 's/^ */  /'
    exit 1
  fi
  echo "ok   - leaseway wins or ties every behaviour row against LiteFS v$LFS_VERSION's proxy ($(awk 'NR > 2' "$TABLE" | wc -l) rows)"
fi
exit 0
