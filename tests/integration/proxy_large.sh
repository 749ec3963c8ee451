#!/usr/bin/env bash
# Bodies stream with backpressure (SPEC §3): a 1 GiB upload (chunked, from
# curl -T -) and a 1 GiB download go through with matching checksums, a
# Content-Length upload into a slow app and a download to a slow client keep
# memory flat, and the proxy's peak RSS (VmHWM) stays under 64 MiB.
. "$(dirname "$0")/../lib/proxy.sh"

GIB=1073741824
RSS_LIMIT_KB=$((64 * 1024))
# Under ASan the quarantine and shadow memory make RSS meaningless: the bound is checked in the normal pass.
[ -n "${LEASEWAY_UNDER_SANITIZER:-}" ] && RSS_LIMIT_KB=$((4096 * 1024))
export RSS_LIMIT_KB

start_upstream app
start_leaseway

want=$("$PYTHON" "$UPSTREAM_PY" --sha "$GIB")
px_log "pattern sha256 of 1 GiB: $want; leaseway VmHWM at start: $(lw_vmhwm) kB"

# --- 1 GiB download ------------------------------------------------------------
t=$(px_now)
got=$(curl -s -m 80 -o >(sha256sum | cut -d' ' -f1 >"$PX_TMP/dl.sha") -w '%{http_code} %{size_download}' "$LW_URL/bytes?n=$GIB")
sleep 0.5
px_log "download took $(px_since "$t")s"
expect_eq "1 GiB download: status and size" "$got" "200 $GIB"
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -s "$PX_TMP/dl.sha" ] && break; sleep 0.5; done
expect_eq "1 GiB download: sha256" "$(cat "$PX_TMP/dl.sha")" "$want"
hwm=$(lw_vmhwm)
check "VmHWM after the download ${hwm} kB < $RSS_LIMIT_KB kB" [ "${hwm:-999999999}" -lt "$RSS_LIMIT_KB" ]

# --- 1 GiB upload, chunked (curl -T - reads a pipe) ----------------------------------
t=$(px_now)
"$PYTHON" "$UPSTREAM_PY" --gen "$GIB" | curl -s -m 80 -T - -o "$PX_TMP/up.json" "$LW_URL/upload"
px_log "upload took $(px_since "$t")s"
expect_eq "1 GiB chunked upload: the app got every byte" \
    "$(json_get "$PX_TMP/up.json" 'str(j["length"]) + " " + j["sha256"]' 2>&1)" "$GIB $want"
hwm=$(lw_vmhwm)
check "VmHWM after the upload ${hwm} kB < $RSS_LIMIT_KB kB" [ "${hwm:-999999999}" -lt "$RSS_LIMIT_KB" ]

# --- 256 MiB Content-Length upload into a slow app (backpressure on the request) ----
pyrun cl-upload "$LW_PORT" <<'EOF'
import sys, time, hashlib
from rawhttp import Client, Check
import upstream
ck = Check()
port = int(sys.argv[1])
n = 256 << 20
c = Client(port, timeout=60)
c.send(b"POST /upload?mb_delay_ms=8 HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % n)
t = time.monotonic()
for chunk in upstream.pattern_chunks(n):
    c.send(chunk)
r = c.response()
j = r.json()
ck.eq("256 MiB Content-Length upload to a slow app", (r.status, j["length"], j["sha256"]), (200, n, upstream.pattern_sha(n)))
ck.ok("the app saw a Content-Length body, not chunked", j["chunked"] is False)
print("     (took %.1fs)" % (time.monotonic() - t))
ck.done()
EOF
hwm=$(lw_vmhwm)
check "VmHWM after the slow-app upload ${hwm} kB < $RSS_LIMIT_KB kB" [ "${hwm:-999999999}" -lt "$RSS_LIMIT_KB" ]

# --- 200 MiB download to a slow client (backpressure on the response) ---------------
n=$((200 * 1024 * 1024))
got=$(curl -s -m 60 --limit-rate 60M -o /dev/null -w '%{http_code} %{size_download}' "$LW_URL/bytes?n=$n")
expect_eq "200 MiB download at 60 MB/s" "$got" "200 $n"
hwm=$(lw_vmhwm)
check "VmHWM after the slow-client download ${hwm} kB < $RSS_LIMIT_KB kB" [ "${hwm:-999999999}" -lt "$RSS_LIMIT_KB" ]
px_log "final leaseway VmHWM: ${hwm} kB"

finish
