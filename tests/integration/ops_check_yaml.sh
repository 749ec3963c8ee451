#!/usr/bin/env bash
# `leaseway run --check` prints the effective configuration as YAML that reads back as the
# same values, whatever bytes a value holds: control characters (a YAML escape such as "\b",
# an ESC in a shell command) and bytes that are not UTF-8 (a flag or LEASEWAY_* variable) are
# printed escaped, never raw, so the output is valid YAML and cannot drive the terminal. Found
# by tests/fuzz/fuzz_config (corpus/fuzz_config/regress-check-yaml-control-byte).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib/common.sh"
bin=${LEASEWAY_BIN:-$here/../../build/leaseway}
d=$(mktmp)
fails=0
ok() { printf 'ok   - %s\n' "$*"; }
bad() { fails=$((fails + 1)); printf 'FAIL - %s\n' "$*"; }

cat >"$d/leaseway.yml" <<'YAML'
target: 127.0.0.1:3000
service: "back\bspace caf\u00e9 \u0085nel"
migrate-command: "printf '\e[31mred\e[0m\n'; echo\tdone"
YAML
LEASEWAY_PASSTHROUGH=$'/bad\xffutf8' "$bin" run --config "$d/leaseway.yml" --listen 127.0.0.1:1 --admin off \
    --check >"$d/out" 2>"$d/err" </dev/null
rc=$?
[ "$rc" = 0 ] && ok "--check on the configuration: exit 0" || bad "--check: exit $rc: $(head -c 300 "$d/err")"

# nothing but newline and tab below 0x20, no DEL, no C1 control, only UTF-8
if python3 - "$d/out" <<'PY'; then
import re, sys
raw = open(sys.argv[1], "rb").read()
text = raw.decode("utf-8")  # raises on bytes that are not UTF-8
bad = [hex(ord(c)) for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7f <= ord(c) <= 0x9f]
assert not bad, "raw control characters: %s" % bad
PY
    ok "--check prints no raw control byte and only UTF-8"
else
    bad "--check output: $(grep -naP '[\x00-\x08\x0b-\x1f\x7f]' "$d/out" | cat -A | head -3)"
fi

# the values read back as they were given (PyYAML, when this machine has it)
if python3 -c 'import yaml' 2>/dev/null; then
    if got=$(python3 - "$d/out" <<'PY' 2>&1
import sys, yaml
c = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
assert c["service"] == "back\bspace caf\u00e9 \u0085nel", repr(c["service"])
assert c["migrate-command"] == "printf '\x1b[31mred\x1b[0m\n'; echo\tdone", repr(c["migrate-command"])
assert c["passthrough"] == ["/bad\xffutf8"], repr(c["passthrough"])
print("service %r" % c["service"])
PY
    ); then
        ok "--check output is YAML and reads back as the values given: $got"
    else
        bad "--check output does not read back: $got"
    fi
else
    echo "skip - PyYAML not installed: the read-back check needs it"
fi
[ "$fails" = 0 ]
