#!/usr/bin/env python3
"""Regenerate the reference part of docs/configuration.md from `leaseway run --help`.

    python3 docs/gen-configuration.py [path/to/leaseway]          # rewrite the file
    python3 docs/gen-configuration.py [path/to/leaseway] --check  # exit 1 (and show a diff) if stale

Only the text between the BEGIN/END GENERATED markers is replaced; the prose
around it is edited by hand. tests/integration/ops_docs.sh runs --check, so the
reference cannot drift from the binary: change the option table in
proxy/proxy_config.c, then run this.
"""
import difflib
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(HERE, "configuration.md")
BEGIN = "<!-- BEGIN GENERATED from `leaseway run --help` by docs/gen-configuration.py: do not edit by hand -->"
END = "<!-- END GENERATED -->"


def cell(s):
    return s.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def code(s):
    return "`%s`" % s if s else ""


def parse(help_text):
    """Sections of `leaseway run --help`: flags, then NAME + description blocks under titled sections."""
    flags, sections, cur = [], [], None
    lines = help_text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^  --([a-z0-9-]+) (\S+)$", line)
        if m and cur is None:
            desc = lines[i + 1].strip()
            env_line = lines[i + 2].strip()
            em = re.match(r"^env (LEASEWAY_[A-Z0-9_]+)(?:, default (.*))?$", env_line)
            if not em:
                raise SystemExit("cannot parse the env line of --%s: %r" % (m.group(1), env_line))
            flags.append({"name": m.group(1), "metavar": m.group(2), "help": desc,
                          "env": em.group(1), "default": em.group(2)})
            i += 3
            continue
        if re.match(r"^[A-Z][^:]*\(.*\):$|^[A-Z][A-Za-z .]*environment.*:$", line):
            cur = {"title": line.rstrip(":"), "vars": []}
            sections.append(cur)
        elif line.startswith("Examples:"):
            cur = {"title": "Examples", "vars": None}
        elif cur and cur["vars"] is not None and re.match(r"^  [A-Z][A-Z0-9_]+$", line):
            cur["vars"].append((line.strip(), lines[i + 1].strip()))
            i += 2
            continue
        i += 1
    if not flags:
        raise SystemExit("no flags found in leaseway run --help")
    return flags, sections


def render(flags, sections):
    out = [BEGIN, "", "### Flags, environment variables and YAML keys", "",
           "| flag | environment | YAML key | default | meaning |", "|---|---|---|---|---|"]
    for f in flags:
        yaml_key = "—" if f["name"] == "config" else code(f["name"])
        flag = "`--%s %s`" % (f["name"], f["metavar"])
        out.append("| %s | %s | %s | %s | %s |" % (cell(flag), code(f["env"]), yaml_key,
                                                   cell(code(f["default"]) if f["default"] else "—"), cell(f["help"])))
    for s in sections:
        out += ["", "### " + s["title"], "", "| variable | meaning |", "|---|---|"]
        for name, desc in s["vars"]:
            out.append("| `%s` | %s |" % (name, cell(desc)))
    out += ["", END]
    return "\n".join(out)


def main():
    args = [a for a in sys.argv[1:] if a != "--check"]
    check = "--check" in sys.argv[1:]
    binary = args[0] if args else os.path.join(HERE, "..", "build", "leaseway")
    help_text = subprocess.run([binary, "run", "--help"], capture_output=True, text=True, check=True).stdout
    generated = render(*parse(help_text))
    doc = open(DOC).read()
    if BEGIN not in doc or END not in doc:
        raise SystemExit("%s: markers missing" % DOC)
    head, rest = doc.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    new = head + generated + tail
    if check:
        if new != doc:
            sys.stdout.writelines(difflib.unified_diff(doc.splitlines(True), new.splitlines(True),
                                                       "docs/configuration.md", "from leaseway run --help"))
            print("docs/configuration.md is stale: run python3 docs/gen-configuration.py")
            return 1
        print("docs/configuration.md matches leaseway run --help (%d flags)" % len(flags_of(help_text)))
        return 0
    if new != doc:
        open(DOC, "w").write(new)
        print("rewrote %s" % DOC)
    return 0


def flags_of(help_text):
    return parse(help_text)[0]


if __name__ == "__main__":
    sys.exit(main())
