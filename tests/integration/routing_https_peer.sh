#!/usr/bin/env bash
# Writes forwarded to an https:// primary: the certificate chain and the name
# in the primary's URL are verified (OpenSSL, SNI). The primary's leaseway
# sits behind a TLS terminator (HAProxy) with a certificate from a test CA.
#   - right CA, right name      -> the write lands on the primary's app
#   - name not in the cert      -> refused: held, then 503; the app never sees it
#   - CA not trusted            -> the same
#   - an https://IP peer        -> verified against the certificate's IP SAN; no SNI (RFC 6066 §3)
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib/common.sh"
bin=${LEASEWAY_BIN:-$here/../../build/leaseway}
command -v haproxy >/dev/null || { echo "haproxy missing"; exit 77; }
d=$(mktmp)

# a CA and a certificate for localhost only (not for 127.0.0.1)
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=leaseway test CA" \
    -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null || die "openssl CA"
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$d/srv.key" -out "$d/srv.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\n' >"$d/ext"
openssl x509 -req -in "$d/srv.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
    -extfile "$d/ext" -out "$d/srv.pem" 2>/dev/null || die "openssl cert"
cat "$d/srv.pem" "$d/srv.key" >"$d/haproxy.pem"
# and one for the IP address 127.0.0.1 (an https://IP peer)
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$d/ip.key" -out "$d/ip.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$d/ipext"
openssl x509 -req -in "$d/ip.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
    -extfile "$d/ipext" -out "$d/ip.pem" 2>/dev/null || die "openssl IP cert"
cat "$d/ip.pem" "$d/ip.key" >"$d/haproxy-ip.pem"

up1=$(free_port); up2=$(free_port); p1=$(free_port); a1=$(free_port); tls=$(free_port); tlsip=$(free_port)
python3 "$here/../lib/upstream.py" --port "$up1" --name primary-app >/dev/null 2>&1 &
register_pid $!
python3 "$here/../lib/upstream.py" --port "$up2" --name replica-app >/dev/null 2>&1 &
register_pid $!
"$bin" run --instance P --listen "127.0.0.1:$p1" --target "127.0.0.1:$up1" --admin "127.0.0.1:$a1" --workers 1 \
    >"$d/p.log" 2>&1 &
register_pid $!
cat >"$d/haproxy.cfg" <<CFG
global
    maxconn 100
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:$tls ssl crt $d/haproxy.pem
    default_backend be
# RFC 6066 §3: a client must not send an IP literal as the server name
frontend fe_ip
    bind 127.0.0.1:$tlsip ssl crt $d/haproxy-ip.pem
    http-request deny deny_status 400 if { ssl_fc_sni -m found }
    default_backend be
backend be
    server p 127.0.0.1:$p1
CFG
haproxy -f "$d/haproxy.cfg" -db >"$d/haproxy.log" 2>&1 &
register_pid $!
for u in "http://127.0.0.1:$up1/echo" "http://127.0.0.1:$up2/echo" "http://127.0.0.1:$a1/health"; do
    wait_for "curl -sf $u" 10 || die "$u did not come up"
done
wait_for "curl -sf --cacert $d/ca.pem https://localhost:$tls/echo" 10 || die "TLS terminator did not come up"

fails=0
check() { if eval "$2"; then echo "ok   - $1"; else echo "FAIL - $1"; fails=$((fails + 1)); fi; }
app_posts() { curl -s "http://127.0.0.1:$up1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["paths"].get("/echo",0))'; }

run_replica() { # url, extra env...
    local url=$1
    shift
    p2=$(free_port); a2=$(free_port)
    env "$@" "$bin" run --instance R --listen "127.0.0.1:$p2" --target "127.0.0.1:$up2" --admin "127.0.0.1:$a2" \
        --workers 1 --static-primary "P=$url" --hold-timeout 1s >>"$d/r.log" 2>&1 &
    rpid=$!
    register_pid $rpid
    wait_for "curl -sf http://127.0.0.1:$a2/health" 10 || die "replica did not start"
}

run_replica "https://localhost:$tls" SSL_CERT_FILE="$d/ca.pem"
body=$(curl -s -m 20 -X POST -d hello "http://127.0.0.1:$p2/echo")
s=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["served_by"])' <<<"$body" 2>/dev/null)
check "a write forwarded over verified TLS lands on the primary's app ($s)" '[ "$s" = primary-app ]'
kill $rpid; wait $rpid 2>/dev/null

before=$(app_posts)
run_replica "https://127.0.0.1:$tls" SSL_CERT_FILE="$d/ca.pem"
code=$(curl -s -m 20 -o /dev/null -w '%{http_code}' -X POST -d hello "http://127.0.0.1:$p2/echo")
check "a certificate without the URL's name is refused: 503 after the hold ($code)" '[ "$code" = 503 ]'
check "... and the app never saw it" '[ "$(app_posts)" = "$before" ]'
check "... the log says why" 'grep -q "TLS handshake with the primary failed" "$d/r.log"'
kill $rpid; wait $rpid 2>/dev/null

run_replica "https://127.0.0.1:$tlsip" SSL_CERT_FILE="$d/ca.pem"
body=$(curl -s -m 20 -X POST -d hello "http://127.0.0.1:$p2/echo")
s=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["served_by"])' <<<"$body" 2>/dev/null)
check "https://127.0.0.1 peer with an IP certificate: verified, no IP sent as SNI, the write lands ($s)" \
    '[ "$s" = primary-app ]'
kill $rpid; wait $rpid 2>/dev/null
before=$(app_posts)

run_replica "https://localhost:$tls" SSL_CERT_FILE=/nonexistent
code=$(curl -s -m 20 -o /dev/null -w '%{http_code}' -X POST -d hello "http://127.0.0.1:$p2/echo")
check "an untrusted CA is refused: 503 ($code)" '[ "$code" = 503 ]'
check "... and the app never saw it" '[ "$(app_posts)" = "$before" ]'

[ "$fails" -eq 0 ] || { tail -n 20 "$d/r.log"; die "$fails check(s) failed"; }
echo "all checks passed"
