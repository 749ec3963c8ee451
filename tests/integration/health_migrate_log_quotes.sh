#!/usr/bin/env bash
# A --migrate-command's output in the log (SPEC §4) keeps both log formats valid: Prisma prints
# `Datasource "db": SQLite database "data.db"`, and a `"` put inside `line="..."` as it was ended
# the logfmt value early and cut the JSON one at the first quote. Every value that quotes text
# from outside (the output line, the command, the failure's last line, the gate's reason) is
# escaped: with --log-format json every log line is JSON and `line` is the printed text; with the
# text format every line is valid logfmt whose `line` unescapes to the printed text.
. "$(dirname "$0")/../lib/proxy.sh"

start_upstream app
# what the command prints: quotes, backslashes (one before a quote), an ANSI colour (ESC bytes)
cat >"$PX_TMP/lines.json" <<'JSON'
["Datasource \"db\": SQLite database \"data.db\" at \"file:./data.db\"",
 "a \\ backslash, a \\\" pair, \u001b[31mred\u001b[0m and a tab\there",
 "Error: P3009: migrate found failed migrations in the target database \"20240501_init\""]
JSON
cat >"$PX_TMP/migrate.py" <<'PY'
import json, sys
for line in json.load(open(sys.argv[1])):
    print(line)
sys.exit(1)
PY
CMD="$PYTHON \"$PX_TMP/migrate.py\" \"$PX_TMP/lines.json\""

for fmt in json text; do
    log="$PX_TMP/leaseway.$fmt.log"
    "$LEASEWAY_BIN" run --listen "127.0.0.1:$(px_free_port)" --admin off --workers 1 --instance i1 \
        --target "127.0.0.1:$UPSTREAM_PORT" --log-format "$fmt" --migrate-command "$CMD" >"$log" 2>&1 &
    pid=$!
    px_register_pid "$pid"
    # the command fails: its last line becomes the gate's reason, logged after the failure
    check "$fmt: the migrate command ran and failed" \
        wait_for "grep -q 'migrate command failed' '$log' && grep 'gate changed' '$log' | grep -q P3009" 10 0.1
    kill -TERM "$pid"
    wait_for "! kill -0 $pid" 10 0.1
    pyrun "$fmt" "$fmt" "$log" "$PX_TMP/lines.json" "$CMD" <<'PY'
import json, re, sys
from rawhttp import Check
ck = Check()
fmt, log, want, cmd = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3])), sys.argv[4]
raw = open(log, encoding="utf-8").read().splitlines()

PAIR = re.compile(r'([A-Za-z0-9_]+)=(?:"((?:[^"\\]|\\["\\]|\\x[0-9a-f]{2})*)"|([^ "=]*))(?: |$)')

def unescape(v):
    return re.sub(r'\\(["\\])|\\x([0-9a-f]{2})', lambda m: m.group(1) or chr(int(m.group(2), 16)), v)

def logfmt(line):
    """the pairs of a logfmt line, or None when it is not one (a stray quote, bad escape, junk)"""
    rec, pos = {}, 0
    while pos < len(line):
        m = PAIR.match(line, pos)
        if not m:
            return None
        rec[m.group(1)] = unescape(m.group(2)) if m.group(2) is not None else m.group(3)
        pos = m.end()
    return rec

recs, bad = [], []
for line in raw:
    if fmt == "json":
        try:
            recs.append(json.loads(line))
        except ValueError:
            bad.append(line)
    else:
        r = logfmt(line)
        (recs.append(r) if r is not None else bad.append(line))
ck.ok("every one of the %d log lines is %s" % (len(raw), "JSON" if fmt == "json" else "logfmt"), not bad,
      "not: %r" % bad[:3])
out = [r.get("line") for r in recs if r.get("msg") == "migrate command output"]
ck.ok("line= is each printed line, as printed", out[:3] == want, "got %r" % out[:3])
failed = [r for r in recs if r.get("msg") == "migrate command failed"]
ck.ok("last_line= is the last printed line", failed and failed[0].get("last_line") == want[-1],
      "got %r" % (failed[:1],))
started = [r.get("command") for r in recs if r.get("msg") == "migrate command started"]
ck.ok("command= is the command", started and started[0] == cmd, "got %r" % started[:1])
reasons = [r.get("reason") for r in recs if r.get("msg") == "gate changed"]
ck.ok("the gate's reason has the last line (its first 80 bytes, quote included)",
      any(want[-1][:80] in (x or "") for x in reasons), "got %r" % reasons)
ck.done()
PY
done
finish
