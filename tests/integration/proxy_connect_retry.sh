#!/usr/bin/env bash
# The app refuses connections while it (re)starts: a request without a body is
# retried every 100 ms until --connect-timeout, then 502 (LiteFS's proxy does the
# same for 30 s; nginx answers 502 at once). Checks, on the real binary:
#   - a GET sent while nothing listens is answered 200 by the app that starts
#     1 s later, in about 1 s;
#   - the same on a keep-alive connection whose app was restarted;
#   - an app that never comes back: 502 once --connect-timeout (3 s) has passed;
#   - a client that gives up while its request waits does not hurt the proxy;
#   - a POST with a body is not kept: 502 at once (proxy_errors.sh too).
. "$(dirname "$0")/../lib/proxy.sh"

PORT=$(px_free_port)
LW_TARGET=127.0.0.1:$PORT start_leaseway --connect-timeout 3s

# get PATH [CURL ARGS...] — prints "CODE SECONDS"
get() {
    local path=$1
    shift
    curl -s -o "$PX_TMP/body" -w '%{http_code} %{time_total}' -m 10 "$@" "$LW_URL$path" || true
}
app_up() { start_upstream app --port "$PORT"; }
app_down() { kill "$UPSTREAM_PID" 2>/dev/null; wait "$UPSTREAM_PID" 2>/dev/null || true; }

# --- 1. the app starts 1 s after the request ------------------------------------
get /echo >"$PX_TMP/r1" &
cpid=$!
sleep 1
app_up
wait "$cpid"
read -r code secs <"$PX_TMP/r1"
check "nothing listening, app up 1 s later: GET answered 200 by the app (${secs}s)" \
    [ "$code" = 200 ] && grep -q '"method": *"GET"' "$PX_TMP/body"
check "... after about 1 s (${secs}s), not a 502 at once" px_lt 0.9 "$secs"
check "... and well before --connect-timeout (${secs}s < 2.5)" px_lt "$secs" 2.5

# --- 2. app restarted under a client's keep-alive connection ----------------------
# The client sends a GET, waits 1 s and sends a second on the same connection; the
# app goes down 0.3 s in and is back 1.5 s in: the second GET waits for it.
pyrun keepalive "$LW_PORT" >"$PX_TMP/ka.out" 2>&1 <<'EOF2' &
import sys, time
from rawhttp import Client, Check
ck = Check()
c = Client(int(sys.argv[1]))
c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
ck.eq("keep-alive: first GET 200", c.response().status, 200)
time.sleep(1.0)
t0 = time.monotonic()
c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
r = c.response()
took = time.monotonic() - t0
ck.eq("keep-alive: a GET sent while the app restarts is answered 200 (%.2fs)" % took, r.status, 200)
ck.ok("keep-alive: ... once the app is back (%.2fs)" % took, 0.3 < took < 1.5, "%.2fs" % took)
ck.done()
EOF2
kapid=$!
sleep 0.3
app_down
sleep 1.2
app_up
wait "$kapid"
cat "$PX_TMP/ka.out"
check "keep-alive client: its 3 checks passed" bash -c "[ \$(grep -c 'ok   - keep-alive' '$PX_TMP/ka.out') = 3 ] && ! grep -q FAIL '$PX_TMP/ka.out'"

# --- 3. a client that gives up while waiting -------------------------------------
app_down
code=$(curl -s -o /dev/null -w '%{http_code}' -m 0.5 "$LW_URL/echo" || true)
check "client gives up after 0.5 s while its request waits (curl: $code)" [ "$code" = 000 ]
sleep 0.5
check "leaseway is still running after that" kill -0 "$LW_PID"
check "admin /health still 200" [ "$(curl -s -o /dev/null -w '%{http_code}' -m 2 "$LW_ADMIN_URL/health")" = 200 ]

# --- 4. the app never comes back: 502 after --connect-timeout ---------------------
read -r code secs < <(get /echo)
check "app down for good: 502 ($code)" [ "$code" = 502 ]
check "... once --connect-timeout 3s has passed (${secs}s)" px_lt 2.8 "$secs"
check "... not much later (${secs}s < 4.5)" px_lt "$secs" 4.5
check "the 502 says the app refused the connection" grep -q 'refused' "$PX_TMP/body"

# --- 5. a POST with a body is not kept for a retry ---------------------------------
head -c 5000 /dev/zero >"$PX_TMP/post"
read -r code secs < <(get /echo --data-binary "@$PX_TMP/post")
check "app down, POST with a body: 502 ($code)" [ "$code" = 502 ]
check "... at once (${secs}s < 1)" px_lt "$secs" 1

# --- 6. and once the app is back, everything works on ------------------------------
app_up
read -r code secs < <(get /echo)
check "app back: GET 200 ($code in ${secs}s)" [ "$code" = 200 ]
check "leaseway logged no crash" bash -c "! grep -qiE 'assert|segfault|sanitizer' '$LW_LOG'"
finish
