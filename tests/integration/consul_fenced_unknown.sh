#!/usr/bin/env bash
# A primary that cannot reach Consul stops claiming to be the primary once its fence runs out.
#
# The fence (SPEC §5) stops the holder's writes once it cannot prove its session alive: after
# that Consul may have ended the session and another instance may hold the lease. It used to
# go on saying role=primary in /status, leaseway_is_primary 1 and Fly-Primary-Instance: itself
# on every response, for as long as Consul stayed away (while another instance could be the
# primary), and /status kept Consul's last known_leader/last_contact_ms. Now, from the fence on,
# it reports role unknown with no primary (no Fly-Primary-Instance, is_primary 0), known_leader
# false and last_contact_ms -1, serves reads, and is the primary again once Consul answers.
#
# Set-up: a real Consul dev agent, one leaseway candidate in front of the demo app. The agent
# is frozen with SIGSTOP (requests to it hang: nothing is refused, nothing answers), then
# resumed with SIGCONT. Bounded: 90 s.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"

consul_test fenced-unknown 90
trap 'rc=$?; set +e; kill -CONT "$CONSUL_PID" 2>/dev/null; [ $rc -eq 0 ] || tail -n 30 "$DIR/leaseway.log" >&2; (exit $rc); cleanup' EXIT

APP=$(free_port) PUB=$(free_port) ADM=$(free_port)
"$PY" "$DEMO/app.py" --listen "127.0.0.1:$APP" --name fu-1 --db "$DIR/app.sqlite" --quiet \
  >"$DIR/app.log" 2>&1 </dev/null &
register_pid $!
wait_for "curl -sf -m 1 http://127.0.0.1:$APP/healthz" 10 0.1 || die "demo app did not start"

env -u CONSUL_HTTP_TOKEN -u CONSUL_HTTP_TOKEN_FILE -u CONSUL_HTTP_ADDR \
  "$LEASEWAY_BIN" run --lease consul --lease-key "leaseway/fu-$$/primary" --instance fu-1 --region local \
  --listen "127.0.0.1:$PUB" --target "127.0.0.1:$APP" --admin "127.0.0.1:$ADM" \
  --advertise "http://127.0.0.1:$PUB" --consul-addr "$CONSUL_HTTP_ADDR" --service "fu-$$" \
  --lease-ttl 10s --lock-delay 1s --hold-timeout 1s --drain-timeout 2s >"$DIR/leaseway.log" 2>&1 </dev/null &
LW=$!
register_pid $LW

# view: role primary_id is_primary fly_primary_header known_leader last_contact_ms reachable
view() {
  local st met hdr
  st=$(curl -sf -m 2 "http://127.0.0.1:$ADM/status") || st='{}'
  met=$(curl -sf -m 2 "http://127.0.0.1:$ADM/metrics" | awk '/^leaseway_is_primary / { print $2 }') || met=
  hdr=$(curl -s -m 2 -D - -o /dev/null "http://127.0.0.1:$PUB/" | tr -d '\r' |
    awk -F': ' 'tolower($1) == "fly-primary-instance" { print $2 }') || hdr=
  "$PY" -c '
import json, sys
d = json.loads(sys.argv[1]); c = d.get("consul") or {}; p = d.get("primary")
print(d.get("role"), (p or {}).get("id", "-"), sys.argv[2] or "-", sys.argv[3] or "-",
      str(c.get("known_leader")).lower(), c.get("last_contact_ms"), str(c.get("reachable")).lower())
' "$st" "${met:-}" "${hdr:-}"
}
normal() { [ "$(view | cut -d' ' -f1-5)" = "primary fu-1 1 fu-1 true" ]; }
wait_for normal 20 0.1 || die "leaseway did not become the primary: $(view)"
ok "primary: $(view)"

kill -STOP "$CONSUL_PID"
T0=$(date +%s%N)
# The fence runs out at most 2.5 s after the last alive feed; replies time out at 2.5 s.
fenced() { [ "$(view)" = "unknown - 0 - false -1 false" ]; }
if wait_for fenced 10 0.1; then
  ms=$((($(date +%s%N) - T0) / 1000000))
  ok "Consul frozen: role unknown, no primary, is_primary 0, no Fly-Primary-Instance, known_leader false, last_contact_ms -1 after ${ms} ms ($(view))"
else
  bad "Consul frozen for 10 s: want 'unknown - 0 - false -1 false', have '$(view)'"
fi
sleep 2
if fenced; then ok "still so 2 s later"; else bad "2 s later: $(view)"; fi
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PUB/") || code=000
if [ "$code" = 200 ]; then ok "reads are served meanwhile"; else bad "a read was answered $code"; fi
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST -d id=fu "http://127.0.0.1:$PUB/write") || code=000
if [ "$code" = 503 ]; then ok "a write is held, then 503"; else bad "a write was answered $code, want 503"; fi

kill -CONT "$CONSUL_PID"
if wait_for normal 20 0.1; then
  ok "Consul back: primary again ($(view))"
else
  bad "Consul back for 20 s: want primary fu-1 1 fu-1 true, have '$(view)'"
fi
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST -d id=fu2 "http://127.0.0.1:$PUB/write") || code=000
if [ "$code" = 200 ]; then ok "writes are taken again"; else bad "a write was answered $code after Consul came back"; fi

kill -TERM $LW
wait $LW 2>/dev/null || true
[ "$FAILS" -eq 0 ] || die "$FAILS checks failed (logs in $DIR)"
echo "PASS consul_fenced_unknown"
