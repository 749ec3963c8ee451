#!/usr/bin/env bash
# A write answered 421 by two different primaries, one after the other, is not given up.
#
# At a handoff, a replica's write can reach the old primary just after it let go (421), and
# then the new primary just before its own acquire reply has come back (421 again: it does not
# know yet). The replica gave up on any primary after a second 421 ("only a different primary
# may have it") and waited, for the new primary that it had just been sent to, until
# --hold-timeout: 503 after 5 s (routing_late_watch.sh failed so, one run in ten). A 421 now
# counts against the primary that said it: the same primary twice is given up, a new one is
# retried after its short exclusion, as the first was.
#
# Set-up: a real Consul dev agent; the lease key held by a session of this script, its value
# naming "p1", then "p2": two small HTTP servers standing in for the primaries' proxies. p1
# answers every request 421; p2 answers its first 421, then 200. One replica (leaseway,
# watch-only) in front.
#   1. the replica sees p1 as the primary
#   2. a POST through it reaches p1: 421; the script then names p2 in the key
#   3. the POST reaches p2: 421 once, then 200, well before --hold-timeout (4 s)
# Bounded: 60 s.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/consul.sh
. "$HERE/../lib/consul.sh"
consul_test routing_misdirect_moved 60
trap 'rc=$?; set +e; [ $rc -eq 0 ] || show_tails 25 "$DIR"/*.log; (exit $rc); cleanup' EXIT

KEY=leaseway/moved-$$/primary
P1=$(free_port) P2=$(free_port) PUB=$(free_port) ADM=$(free_port)

# stand-in primary: PORT NAME N421 -> answers the first N421 requests 421 (then 200), logs each
stand_in() {
  "$PY" - "$1" "$2" "$3" "$DIR/$2.hits" <<'PYEOF' >"$DIR/$2.log" 2>&1 &
import http.server, sys
port, name, n421, hits = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
seen = 0
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        global seen
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        seen += 1
        code = 421 if seen <= n421 else 200
        with open(hits, "a") as f:
            f.write("%d\n" % code)
        body = ("%s %d\n" % (name, code)).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PYEOF
  register_pid $!
}
stand_in "$P1" p1 1000000
stand_in "$P2" p2 1
for p in "$P1" "$P2"; do
  wait_for "curl -s -m 1 -o /dev/null http://127.0.0.1:$p/warm" 10 0.1 || die "stand-in on $p did not start" # a GET: not counted
done
: >"$DIR/p1.hits"
: >"$DIR/p2.hits"

SID=$(curl -sf -m 5 -X PUT -d '{"Name":"moved-test","TTL":"60s","LockDelay":"0s"}' \
  "$CONSUL_HTTP_ADDR/v1/session/create" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["ID"])') ||
  die "no session"
name_primary() { # NAME PORT
  local r
  r=$(curl -sf -m 5 -X PUT -d "{\"hostname\":\"$1\",\"advertise-url\":\"http://127.0.0.1:$2\"}" \
    "$CONSUL_HTTP_ADDR/v1/kv/$KEY?acquire=$SID") || die "cannot write the lease key"
  [ "$r" = true ] || die "acquire for $1 answered $r"
}
name_primary p1 "$P1"

env -u CONSUL_HTTP_TOKEN -u CONSUL_HTTP_TOKEN_FILE \
  "$LEASEWAY_BIN" run --lease consul --lease-key "$KEY" --candidate=false --register=false --instance r1 \
  --listen "127.0.0.1:$PUB" --target "127.0.0.1:$P2" --admin "127.0.0.1:$ADM" \
  --consul-addr "$CONSUL_HTTP_ADDR" --hold-timeout 4s --drain-timeout 1s >"$DIR/lw.log" 2>&1 </dev/null &
register_pid $!

# --- 1. the replica sees p1 -----------------------------------------------------------
if wait_for "grep -q 'primary=\"p1\"' '$DIR/lw.log'" 10 0.1; then
  ok "the replica follows the lease key: primary p1"
else
  die "the replica did not see p1: $(tail -3 "$DIR/lw.log")"
fi

# --- 2. a write reaches p1 (421), and the key moves to p2 -------------------------------
T0=$(date +%s%N)
curl -s -m 15 -o "$DIR/post.body" -w '%{http_code}' -X POST -d 'x=1' "http://127.0.0.1:$PUB/write" >"$DIR/post.code" &
CURL=$!
wait_for "grep -q 421 '$DIR/p1.hits'" 5 0.01 || die "the write never reached p1"
name_primary p2 "$P2"

# --- 3. p2: 421 once, then 200 ----------------------------------------------------------
wait "$CURL" || true
MS=$((($(date +%s%N) - T0) / 1000000))
CODE=$(cat "$DIR/post.code")
if [ "$CODE" = 200 ] && grep -q 'p2 200' "$DIR/post.body"; then
  ok "the write was answered 200 by p2 after $MS ms (p1: $(paste -sd, "$DIR/p1.hits"); p2: $(paste -sd, "$DIR/p2.hits"))"
else
  bad "the write got $CODE after $MS ms, body '$(head -c 200 "$DIR/post.body")' (p1: $(paste -sd, "$DIR/p1.hits"); p2: $(paste -sd, "$DIR/p2.hits")); before the fix: 503 after --hold-timeout"
fi
[ "$MS" -lt 3000 ] && ok "... well before --hold-timeout (4 s)" || bad "the write took $MS ms"
grep -q 421 "$DIR/p2.hits" && ok "p2 did answer 421 first (the case under test)" ||
  bad "p2 never answered 421: the test did not exercise two misdirects"

echo "routing_misdirect_moved: $PASSES passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
