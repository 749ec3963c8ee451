#!/usr/bin/env bash
# --lease-ttl below Consul's session_ttl_min is made obvious, and retried.
#
# Consul answers the session create with `HTTP 500 Invalid Session TTL ..., must be between
# [10s=24h0m0s]`: without a session this candidate can never become primary. Before the fix
# that was one warn line, /health 200 and /status role replica with no primary, forever, and
# nothing saying why. Now: an error line naming --lease-ttl and Consul's range (once), the
# same text in /status lease.error, and session creates retried with backoff (an operator
# may lower session_ttl_min) — counted in leaseway_consul_errors_total.
#
# Set-up: a real Consul dev agent at its default session_ttl_min (10s: the tests' usual
# 1s is not passed), one leaseway candidate with --lease-ttl 5s in front of the demo app.
# Bounded: 60 s.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"

watchdog 60 "consul_lease_ttl_min timed out after 60 s"
[ -x "$LEASEWAY_BIN" ] || die "no leaseway binary at $LEASEWAY_BIN (build first)"

export PYTHONDONTWRITEBYTECODE=1
FAILS=0
ok() { printf 'ok   - %s\n' "$*"; }
bad() {
  FAILS=$((FAILS + 1))
  printf 'FAIL - %s\n' "$*"
}

DIR=$(mktmp lease-ttl-min)
CONSUL_SESSION_TTL_MIN='' consul_dev_start "$DIR/consul" || die "consul did not start"
LEASE_KEY=leaseway/ttlmin-$$/primary
PUB=$(free_port) APP=$(free_port) ADM=$(free_port)
LOG=$DIR/lw.log
trap 'rc=$?; set +e; [ $rc -eq 0 ] || show_tails 40 "$LOG"; (exit $rc); cleanup' EXIT

"$PY" "$DEMO/app.py" --listen "127.0.0.1:$APP" --name tm-1 --db "$DIR/tm-1.sqlite" --quiet \
  >"$DIR/app.log" 2>&1 </dev/null &
register_pid $!
wait_for "curl -sf -m 1 http://127.0.0.1:$APP/healthz" 10 0.1 || die "demo app did not start"
env -u CONSUL_HTTP_TOKEN -u CONSUL_HTTP_TOKEN_FILE -u CONSUL_HTTP_ADDR \
  "$LEASEWAY_BIN" run --lease consul --lease-key "$LEASE_KEY" --instance tm-1 --region local \
  --listen "127.0.0.1:$PUB" --target "127.0.0.1:$APP" --admin "127.0.0.1:$ADM" \
  --advertise "http://127.0.0.1:$PUB" --consul-addr "$CONSUL_HTTP_ADDR" --service "tm-$$" \
  --lease-ttl 5s --lock-delay 1s --drain-timeout 2s >"$LOG" 2>&1 </dev/null &
register_pid $!

st() { curl -sf -m 2 "http://127.0.0.1:$ADM/status" || true; }
jst() { st | "$PY" -c 'import json,sys; j=json.load(sys.stdin); v=eval(sys.argv[1]); print("" if v is None else v)' "$1" 2>/dev/null || true; }
errors() { curl -sf -m 2 "http://127.0.0.1:$ADM/metrics" | awk '/^leaseway_consul_errors_total / { print $2 }'; }

# --- /status says why ----------------------------------------------------------
if wait_for '[ -n "$(jst "j[\"lease\"].get(\"error\")")" ]' 15 0.2; then
  e=$(jst 'j["lease"]["error"]')
  ok "/status lease.error: $e"
  expect() { if [[ $e == *"$1"* ]]; then ok "lease.error names $2"; else bad "lease.error does not name $2 ('$1'): $e"; fi; }
  expect "--lease-ttl 5s" "the flag and its value"
  expect "10s" "Consul's minimum"
  expect "24h" "Consul's maximum"
  expect "session_ttl_min" "session_ttl_min"
else
  bad "/status has no lease.error after 15 s: $(st)"
fi
role=$(jst 'j["role"]')
[ "$role" = replica ] && ok "role stays replica" || bad "role is '$role', want replica"

# --- logged at error level, once, while it keeps retrying -------------------------
e1=$(errors)
sleep 8
e2=$(errors)
if [ -n "$e1" ] && [ -n "$e2" ] && [ "$e2" -gt "$e1" ]; then
  ok "session create retried: leaseway_consul_errors_total $e1 -> $e2 in 8 s"
else
  bad "no retry seen: leaseway_consul_errors_total '$e1' -> '$e2' in 8 s"
fi
n=$(grep -c 'level=error msg="no session: this instance cannot become primary until this is fixed".*--lease-ttl 5s' "$LOG" || true)
[ "$n" = 1 ] && ok "one error line with the hint" || bad "$n error lines with the hint, want 1: $(grep -i 'session' "$LOG" | tail -5)"
n=$(grep -c 'level=warn.*Invalid Session TTL' "$LOG" || true)
[ "$n" = 0 ] && ok "no warn line for it" || bad "$n warn lines for the refused TTL, want 0 (it is an error)"
s=$(curl -s -m 2 "$CONSUL_HTTP_ADDR/v1/kv/$LEASE_KEY?raw" -o /dev/null -w '%{http_code}')
[ "$s" = 404 ] && ok "nobody holds the lease key" || bad "the lease key answers $s, want 404"

[ "$FAILS" -eq 0 ] || die "$FAILS checks failed (logs in $DIR)"
echo "PASS consul_lease_ttl_min"
