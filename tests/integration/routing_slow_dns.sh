#!/usr/bin/env bash
# Regression: the primary's advertised URL is looked up without blocking the control thread.
# getaddrinfo() can take seconds (glibc: 5 s per try); it ran on the thread that starts the
# listeners, feeds Consul's alive check (once a second) and serves the admin listener, so a
# slow or failing name stalled all of that, at every republish. A shim (LD_PRELOAD) makes
# two names slow here: slow-localhost.invalid answers 127.0.0.1 after 2 s, slow.invalid fails
# after 3 s. While a name is being looked up, a write to the primary waits (as while the
# primary is unknown), then goes on, or gets 503 after --hold-timeout; never a 502.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib/common.sh"
bin=${LEASEWAY_BIN:-$here/../../build/leaseway}
d=$(mktmp)
cat >"$d/slowdns.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <string.h>
#include <unistd.h>
typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    gai_fn real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    if (hints && (hints->ai_flags & AI_NUMERICHOST)) /* no lookup: as fast as glibc's own */
        return real(node, service, hints, res);
    if (node && strcmp(node, "slow.invalid") == 0) {
        sleep(3);
        return EAI_AGAIN;
    }
    if (node && strcmp(node, "slow-localhost.invalid") == 0) {
        sleep(2);
        return real("127.0.0.1", service, hints, res);
    }
    return real(node, service, hints, res);
}
C
cc -shared -fPIC -o "$d/slowdns.so" "$d/slowdns.c" -ldl || die "cannot build the getaddrinfo shim"
fails=0
ok() { printf 'ok   - %s\n' "$*"; }
bad() { fails=$((fails + 1)); printf 'FAIL - %s\n' "$*"; }

upP=$(free_port); upR=$(free_port); p1=$(free_port)
python3 "$here/../lib/upstream.py" --port "$upP" --name P-app >/dev/null 2>&1 &
register_pid $!
python3 "$here/../lib/upstream.py" --port "$upR" --name R-app >/dev/null 2>&1 &
register_pid $!
"$bin" run --instance P --listen "127.0.0.1:$p1" --target "127.0.0.1:$upP" --admin off --workers 1 >"$d/p.log" 2>&1 &
register_pid $!
wait_for "curl -sf http://127.0.0.1:$p1/echo" 10 || die "the primary did not come up"

start_replica() { # name url -> sets R_PORT, R_ADMIN
    R_PORT=$(free_port)
    R_ADMIN=$(free_port)
    # under ASan (the sanitizer pass) the shim comes before ASan's runtime: allow it
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" LD_PRELOAD="$d/slowdns.so" "$bin" run --instance "$1" --listen "127.0.0.1:$R_PORT" --target "127.0.0.1:$upR" \
        --admin "127.0.0.1:$R_ADMIN" --workers 1 --hold-timeout 2s --static-primary "P=$2" >"$d/$1.log" 2>&1 &
    register_pid $!
}

# 1. a name that answers after 2 s: up at once, a write waits for the address, then reaches P
t0=$(date +%s.%N)
start_replica R1 "http://slow-localhost.invalid:$p1"
wait_for "curl -s -o /dev/null http://127.0.0.1:$R_ADMIN/health" 10 0.05 || die "R1 did not come up"
up=$(python3 -c "import sys, time; print('%.2f' % (time.time() - float(sys.argv[1])))" "$t0")
if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 1.5 else 1)" "$up"; then
    ok "a primary whose name takes 2 s to look up: the replica answers /health ${up}s after start"
else
    bad "a primary whose name takes 2 s to look up: the replica answered /health only ${up}s after start"
fi
out=$(curl -s -m 10 -o "$d/w1.json" -w '%{http_code} %{time_total}' -X POST --data-binary x "http://127.0.0.1:$R_PORT/echo")
if [ "${out% *}" = 200 ] && grep -q '"served_by": *"P-app"' "$d/w1.json"; then
    ok "... a write sent meanwhile waited for the address and reached the primary's app (${out#* }s)"
else
    bad "... a write sent meanwhile: $out $(head -c 200 "$d/w1.json")"
fi

# 2. a name that fails after 3 s: the admin listener never stalls; a write gets 503 after --hold-timeout
start_replica R2 "http://slow.invalid:$p1"
wait_for "curl -s -o /dev/null http://127.0.0.1:$R_ADMIN/health" 10 0.05 || die "R2 did not come up"
slowest=$(python3 - "$R_ADMIN" <<'PY'
import sys, time, urllib.request
worst = 0.0
end = time.time() + 7
while time.time() < end:
    t = time.time()
    urllib.request.urlopen("http://127.0.0.1:%s/health" % sys.argv[1], timeout=10).read()
    worst = max(worst, time.time() - t)
    time.sleep(0.1)
print("%.3f" % worst)
PY
)
if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 0.5 else 1)" "$slowest"; then
    ok "a primary whose name fails after 3 s (retried every 5 s): /health never slower than ${slowest}s over 7 s"
else
    bad "a primary whose name fails after 3 s: /health took ${slowest}s"
fi
code=$(curl -s -m 10 -o "$d/w2.txt" -w '%{http_code}' -X POST --data-binary x "http://127.0.0.1:$R_PORT/echo")
if [ "$code" = 503 ]; then
    ok "... a write to it: 503 after --hold-timeout 2s ($(head -c 80 "$d/w2.txt"))"
else
    bad "... a write to it: $code $(head -c 120 "$d/w2.txt"), want 503"
fi
check_log=$(grep -c 'cannot resolve the primary' "$d/R2.log" || true)
if [ "$check_log" -ge 1 ] && [ "$check_log" -le 4 ]; then
    ok "... the failing lookup is logged and retried, not once per republish ($check_log lines)"
else
    bad "... 'cannot resolve' logged $check_log times"
fi
[ "$fails" = 0 ]
