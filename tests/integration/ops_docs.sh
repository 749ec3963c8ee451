#!/usr/bin/env bash
# Docs and help cannot drift from the binary:
#   * docs/configuration.md's reference equals what docs/gen-configuration.py
#     makes of `leaseway run --help` (every flag, env variable, YAML key);
#   * every subcommand has a --help that exits 0 and names each of its options;
#     `leaseway version` names every library; unknown commands exit 2;
#   * the README starts with the two commands and stays about one screen;
#   * relative links in README.md and docs/*.md point at files that exist;
#   * docs/operations.md names every metric /metrics serves.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${LEASEWAY_SRC:=$(cd "$HERE/../.." && pwd)}"
: "${LEASEWAY_BIN:=$LEASEWAY_SRC/build/leaseway}"
[ -x "$LEASEWAY_BIN" ] || { echo "FAIL: no leaseway binary at $LEASEWAY_BIN" >&2; exit 1; }
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
BIN=$LEASEWAY_BIN
cd "$LEASEWAY_SRC"

FAILS=0 PASSES=0
ok() { PASSES=$((PASSES + 1)); printf 'ok   - %s\n' "$*"; }
bad() { FAILS=$((FAILS + 1)); printf 'FAIL - %s\n' "$*"; }

# --- configuration.md vs --help ----------------------------------------------------
if out=$("$PY" docs/gen-configuration.py "$BIN" --check 2>&1); then
  ok "$out"
else
  bad "docs/configuration.md differs from leaseway run --help:"$'\n'"$out"
fi
help=$("$BIN" run --help)
missing=$(grep -oE '^  --[a-z0-9-]+' <<<"$help" | sed 's/^  //' | while read -r f; do
  grep -qF -- "\`$f " docs/configuration.md || echo "$f"
done)
[ -z "$missing" ] && ok "every flag of run --help is in docs/configuration.md" || bad "not documented: $missing"
n_env=$(grep -cE '^      env LEASEWAY_' <<<"$help")
n_flags=$(grep -cE '^  --[a-z0-9-]+ ' <<<"$help")
[ "$n_env" = "$n_flags" ] && ok "run --help: each of the $n_flags flags names its LEASEWAY_ variable" ||
  bad "run --help: $n_flags flags but $n_env env lines"
for v in CONSUL_HTTP_ADDR CONSUL_HTTP_TOKEN CONSUL_HTTP_TOKEN_FILE CONSUL_HTTP_SSL CONSUL_CACERT CONSUL_CAPATH \
  CONSUL_CLIENT_CERT CONSUL_CLIENT_KEY CONSUL_TLS_SERVER_NAME CONSUL_HTTP_SSL_VERIFY CONSUL_NAMESPACE \
  CONSUL_PARTITION CONSUL_HTTP_AUTH; do
  grep -q "^  $v\$" <<<"$help" || bad "run --help does not explain $v (SPEC §1 Consul variables)"
done
ok "run --help explains every Consul client variable of SPEC §1"

# --- every subcommand's help ----------------------------------------------------------
helpcheck() { # DESCRIPTION WORDS -- COMMAND...
  local desc=$1 words=() out rc=0 w miss=
  shift
  while [ "$1" != -- ]; do words+=("$1"); shift; done
  shift
  out=$("$@" 2>&1) || rc=$?
  for w in "${words[@]}"; do grep -qF -- "$w" <<<"$out" || miss="$miss $w"; done
  if [ "$rc" = 0 ] && [ -z "$miss" ]; then ok "$desc"; else bad "$desc: exit $rc, missing:$miss"; fi
}
helpcheck "leaseway --help lists every subcommand" "leaseway run" "leaseway status" "leaseway handoff" \
  "leaseway version" "leaseway help" -- "$BIN" --help
helpcheck "leaseway help == leaseway --help" "leaseway run" -- "$BIN" help
helpcheck "leaseway run --help: usage, precedence, examples" "Usage: leaseway run" "precedence" "Examples:" \
  -- "$BIN" run --help
helpcheck "leaseway help run == run --help" "Usage: leaseway run" -- "$BIN" help run
helpcheck "leaseway status --help names its options" "Usage: leaseway status" --json --service --consul-addr \
  --lease-key -- "$BIN" status --help
helpcheck "leaseway handoff --help names its option and exit status" "Usage: leaseway handoff" --admin \
  "Exit status" -- "$BIN" handoff --help
helpcheck "leaseway version --help" "Usage: leaseway version" -- "$BIN" version --help
helpcheck "leaseway version names leaseway and every library" "leaseway " libevent llhttp libcurl OpenSSL \
  jansson libyaml SQLite -- "$BIN" version
rc=0
"$BIN" frobnicate >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] && ok "an unknown subcommand exits 2" || bad "unknown subcommand exited $rc"
for args in "--admin" "--admin="; do
  rc=0
  # shellcheck disable=SC2086 # one word each
  out=$("$BIN" handoff $args 2>&1) || rc=$?
  if [ "$rc" = 2 ] && grep -q '^leaseway handoff: --admin needs a value (HOST:PORT)' <<<"$out"; then
    ok "handoff $args without a value: exit 2, and it says what is missing"
  else
    bad "handoff $args: exit $rc, said: $out"
  fi
done
rc=0
"$BIN" status --no-such-flag >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] && ok "status with an unknown flag exits 2" || bad "status --no-such-flag exited $rc"
# the options each subcommand parses are all in its help: getopt tables and strcmp()s in the source
for opt in $(grep -oE '\{"[a-z-]+", (no|required)_argument' consul/consul_status.c | sed -E 's/\{"([a-z-]+)".*/\1/'); do
  "$BIN" status --help | grep -qF -- "--$opt" || bad "status parses --$opt but its help does not say so"
done
ok "every option consul_status.c parses is in status --help"

# --- README ------------------------------------------------------------------------------
first=$(awk '/^```sh$/ { inb = 1; next } inb && /^```$/ { exit } inb' README.md | head -2 | awk '{ print $1 }' | paste -sd' ')
[ "$first" = "./deploy/local-cluster.sh ./tests/run.sh" ] &&
  ok "README starts with ./deploy/local-cluster.sh and ./tests/run.sh" || bad "README's first commands: $first"
lines=$(wc -l <README.md)
[ "$lines" -le 90 ] && ok "README is about one screen ($lines lines)" || bad "README has $lines lines (one screen: <= 90)"

# --- links -----------------------------------------------------------------------------------
if out=$("$PY" - README.md docs/*.md <<'EOF' 2>&1
import os, re, sys
bad = []
for f in sys.argv[1:]:
    text = open(f).read()
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        p = os.path.normpath(os.path.join(os.path.dirname(f), target.split("#")[0]))
        if not os.path.exists(p):
            bad.append("%s -> %s" % (f, target))
print("; ".join(bad))
sys.exit(1 if bad else 0)
EOF
); then
  ok "relative links in README.md and docs/*.md resolve"
else
  bad "broken links: $out"
fi

# --- metrics named in operations.md ----------------------------------------------------------
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ADMIN=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" run --listen "127.0.0.1:$PORT" --admin "127.0.0.1:$ADMIN" --target 127.0.0.1:9 --workers 1 >/dev/null 2>&1 &
LW=$!
trap 'kill $LW 2>/dev/null || true' EXIT
metrics=
for _ in $(seq 50); do
  metrics=$(curl -s -m 1 "http://127.0.0.1:$ADMIN/metrics" 2>/dev/null) && [ -n "$metrics" ] && break
  sleep 0.1
done
names=$(grep -oE '^# TYPE [a-z_]+' <<<"$metrics" | awk '{ print $3 }')
[ -n "$names" ] || bad "no metrics from a static leaseway"
missing=$(for m in $names; do grep -qF -- "$m" docs/operations.md || echo "$m"; done)
[ -z "$missing" ] && ok "docs/operations.md names all $(wc -w <<<"$names") metrics /metrics serves" ||
  bad "docs/operations.md does not name: $missing"
for m in leaseway_requests_total leaseway_request_duration_seconds leaseway_is_primary \
  leaseway_primary_changes_total leaseway_gate_open leaseway_consul_errors_total leaseway_connections; do
  grep -qx "$m" <<<"$names" || bad "SPEC §6 metric $m is not served"
done
ok "every SPEC §6 metric is served"

echo "ops_docs: $PASSES passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
