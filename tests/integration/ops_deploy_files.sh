#!/usr/bin/env bash
# The deployment kit in deploy/, each file checked with the tool that reads it
# where this machine has one:
#   leaseway.service         systemd-analyze verify (no warnings)
#   haproxy.cfg              haproxy -c -f (no warnings)
#   consul/*.hcl             consul validate (agent config + service definition)
#   consul/leaseway-policy.hcl  created on an ACL-enabled, default-deny Consul;
#                            leaseway with a token holding only that policy
#                            registers, becomes primary, shows the cluster on
#                            its status page and hands off
#   leaseway.yml, fly-leaseway.yml  leaseway run --check --config
#   fly.toml                 TOML parse (python3 tomllib) + cross-checks
#   litefs.yml               structure (no YAML library here): no proxy section,
#                            a consul lease on the key fly-leaseway.yml watches
#   fly-consul-env           splits FLY_CONSUL_URL into CONSUL_HTTP_ADDR/TOKEN
#   Dockerfile               parse level only (no docker daemon here): stages,
#                            COPY sources exist and pass the .dockerignore,
#                            build packages provide every pkg-config module
#                            CMakeLists.txt asks for, runtime packages provide
#                            every library the binary needs, non-root USER
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${LEASEWAY_SRC:=$(cd "$HERE/../.." && pwd)}"
: "${LEASEWAY_BIN:=$LEASEWAY_SRC/build/leaseway}"
# shellcheck source=../lib/consul.sh
. "$LEASEWAY_SRC/tests/lib/consul.sh"
[ -x "$LEASEWAY_BIN" ] || die "no leaseway binary at $LEASEWAY_BIN"
D=$LEASEWAY_SRC/deploy
TMP=$(mktmp deploy-files)

FAILS=0 PASSES=0 NOTES=()
ok() { PASSES=$((PASSES + 1)); printf 'ok   - %s\n' "$*"; }
bad() { FAILS=$((FAILS + 1)); printf 'FAIL - %s\n' "$*"; }
note() { NOTES+=("$*"); printf 'note - %s\n' "$*"; }
# expect DESCRIPTION COMMAND...: ok when COMMAND exits 0 and prints nothing (warnings count)
quiet_ok() {
  local desc=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  if [ "$rc" = 0 ] && [ -z "$out" ]; then ok "$desc"; else bad "$desc (exit $rc): $out"; fi
}
apt_install() { # PACKAGE... — best effort
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; }; } \
    >>"$TMP/apt.log" 2>&1
}

# --- systemd unit ------------------------------------------------------------------
command -v systemd-analyze >/dev/null || apt_install systemd || true
if command -v systemd-analyze >/dev/null; then
  # verify needs ExecStart= to exist: point it at the binary just built
  mkdir -p "$TMP/systemd"
  sed "s|/usr/local/bin/leaseway|$LEASEWAY_BIN|g" "$D/leaseway.service" >"$TMP/systemd/leaseway.service"
  quiet_ok "deploy/leaseway.service: systemd-analyze verify, no warnings" \
    systemd-analyze verify "$TMP/systemd/leaseway.service"
  for want in DynamicUser=yes NoNewPrivileges=yes ProtectSystem=strict PrivateTmp=yes ProtectHome=yes \
    CapabilityBoundingSet= 'SystemCallFilter=@system-service' 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
    KillSignal=SIGTERM 'Environment=CONSUL_HTTP_TOKEN_FILE=%d/consul-token'; do
    grep -qx -- "$want" "$D/leaseway.service" || bad "deploy/leaseway.service lacks $want"
  done
  ok "deploy/leaseway.service: sandboxed (DynamicUser, NoNewPrivileges, ProtectSystem=strict, ...), token as a credential"
  # the stop budget must cover the drain budget
  drain=$(awk -F': *' '$1 == "drain-timeout" { sub(/s.*/, "", $2); print $2 }' "$D/leaseway.yml")
  stop=$(awk -F= '$1 == "TimeoutStopSec" { sub(/s.*/, "", $2); print $2 }' "$D/leaseway.service")
  if [ -n "$drain" ] && [ -n "$stop" ] && [ "$stop" -gt "$drain" ]; then
    ok "TimeoutStopSec ($stop s) exceeds leaseway.yml's drain-timeout ($drain s)"
  else
    bad "TimeoutStopSec ($stop) must exceed drain-timeout ($drain)"
  fi
else
  note "systemd-analyze is not available here and could not be installed: deploy/leaseway.service not verified"
fi

# --- HAProxy -------------------------------------------------------------------------
command -v haproxy >/dev/null || apt_install haproxy || true
if command -v haproxy >/dev/null; then
  out=$(haproxy -c -f "$D/haproxy.cfg" 2>&1) && rc=0 || rc=$?
  if [ "$rc" = 0 ] && ! grep -q 'WARNING\|ALERT' <<<"$out"; then
    ok "deploy/haproxy.cfg: haproxy -c -f, valid, no warnings"
  else
    bad "deploy/haproxy.cfg: haproxy -c -f (exit $rc): $out"
  fi
  grep -q '^ *http-check send meth GET uri /health' "$D/haproxy.cfg" && grep -q '^ *option httpchk' "$D/haproxy.cfg" &&
    grep -q 'check port 9901' "$D/haproxy.cfg" &&
    ok "deploy/haproxy.cfg checks leaseway's admin /health (option httpchk, port 9901)" ||
    bad "deploy/haproxy.cfg does not check the admin /health"
else
  note "haproxy is not available: deploy/haproxy.cfg not checked"
fi

# --- Consul: validate, then the ACL policy for real ------------------------------------
CONSUL=$(consul_bin) || die "no consul binary (run tests/setup.sh)"
mkdir -p "$TMP/consul.d"
cp "$D/consul/leaseway-service.hcl" "$D/consul/agent-acl.hcl" "$TMP/consul.d/"
echo "data_dir = \"$TMP/consul-data\"" >"$TMP/consul.d/00-data-dir.hcl"
if out=$("$CONSUL" validate "$TMP/consul.d" 2>&1); then
  ok "deploy/consul/leaseway-service.hcl + agent-acl.hcl: consul validate"
else
  bad "consul validate: $out"
fi

ROOT_TOKEN=root-$$-$RANDOM
HTTP=$(free_port)
CONSUL_ADDR=http://127.0.0.1:$HTTP
NODE=ops-deploy-$$
"$CONSUL" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -node "$NODE" \
  -http-port "$HTTP" -dns-port "$(free_port)" -server-port "$(free_port)" \
  -serf-lan-port "$(free_port)" -serf-wan-port "$(free_port)" \
  -grpc-port=-1 -hcl 'ports { grpc_tls = -1 }' -hcl 'session_ttl_min = "1s"' \
  -hcl 'disable_update_check = true' \
  -hcl "acl { enabled = true default_policy = \"deny\" enable_token_persistence = false
         tokens { initial_management = \"$ROOT_TOKEN\" agent = \"$ROOT_TOKEN\" } }" \
  >"$TMP/consul.log" 2>&1 </dev/null &
register_pid $!
RT=(-H "X-Consul-Token: $ROOT_TOKEN")
wait_for "[ \"\$(curl -s -m 2 -X PUT -d ok ${RT[*]@Q} $CONSUL_ADDR/v1/kv/_ready)\" = true ]" 30 0.2 ||
  { tail -n 20 "$TMP/consul.log" >&2; die "ACL dev agent did not start"; }
SVC=opsdeploy$$
sed -e "s|\"myapp/\"|\"$SVC/\"|; s|service \"myapp\"|service \"$SVC\"|" "$D/consul/leaseway-policy.hcl" >"$TMP/policy.hcl"
grep -q "key_prefix \"$SVC/\"" "$TMP/policy.hcl" && grep -q "service \"$SVC\"" "$TMP/policy.hcl" ||
  die "could not adapt leaseway-policy.hcl to the test's names"
body=$("$PY" -c 'import json,sys; print(json.dumps({"Name": sys.argv[1], "Rules": open(sys.argv[2]).read()}))' "leaseway-$SVC" "$TMP/policy.hcl")
curl -sf -m 5 -X PUT "${RT[@]}" -d "$body" "$CONSUL_ADDR/v1/acl/policy" >/dev/null &&
  ok "deploy/consul/leaseway-policy.hcl: Consul accepts it as an ACL policy" || bad "Consul refused the policy"
tok=$(curl -sf -m 5 -X PUT "${RT[@]}" -d "{\"Policies\":[{\"Name\":\"leaseway-$SVC\"}]}" "$CONSUL_ADDR/v1/acl/token" |
  "$PY" -c 'import json,sys; print(json.load(sys.stdin)["SecretID"])')
(umask 077 && printf '%s\n' "$tok" >"$TMP/token")
UP=$(free_port) PUB=$(free_port) ADM=$(free_port)
"$PY" -m http.server "$UP" --bind 127.0.0.1 --directory "$TMP" >"$TMP/app.log" 2>&1 &
register_pid $!
env -u CONSUL_HTTP_TOKEN CONSUL_HTTP_TOKEN_FILE="$TMP/token" "$LEASEWAY_BIN" run --lease-key "$SVC/primary" \
  --service "$SVC" --instance "$SVC-1" --consul-addr "$CONSUL_ADDR" --listen "127.0.0.1:$PUB" \
  --admin "127.0.0.1:$ADM" --advertise "http://127.0.0.1:$PUB" --target "127.0.0.1:$UP" --lease-ttl 2s \
  --drain-timeout 2s >"$TMP/leaseway-acl.log" 2>&1 &
LW=$!
register_pid $LW
if wait_for "curl -s -m 1 http://127.0.0.1:$ADM/status | grep -q '\"role\": \"primary\"'" 20 0.2; then
  ok "a token with only leaseway-policy.hcl: leaseway takes the lease (primary)"
else
  bad "a token with only leaseway-policy.hcl: leaseway never became primary: $(grep -iE 'error|warn|403' "$TMP/leaseway-acl.log" | tail -3)"
fi
if wait_for "curl -s -m 1 http://127.0.0.1:$ADM/cluster | $PY -c 'import json,sys; j=json.load(sys.stdin); r=[i for i in j[\"instances\"] if i[\"id\"]==\"$SVC-1\"]; sys.exit(not (r and r[0][\"registered\"] and r[0][\"check\"]==\"passing\" and r[0][\"role\"]==\"primary\"))'" 15 0.3; then
  ok "... registered with passing checks, and its status page (/cluster) can read it from Consul (node_prefix read)"
else
  bad "... /cluster does not show the instance registered and passing: $(curl -s -m 2 "http://127.0.0.1:$ADM/cluster" | head -c 600)"
fi
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$ADM/handoff")
[ "$code" = 200 ] && ok "... and hands off (POST /handoff: 200)" || bad "POST /handoff: $code"
if grep -qiE 'permission denied|HTTP 403' "$TMP/leaseway-acl.log"; then
  bad "leaseway logged a permission error with the policy: $(grep -iE 'permission denied|HTTP 403' "$TMP/leaseway-acl.log" | head -2)"
else
  ok "... with no permission error in its log"
fi
kill_wait "$LW" 10

# --- leaseway YAML files --------------------------------------------------------------
if out=$("$LEASEWAY_BIN" run --check --config "$D/leaseway.yml" 2>&1); then
  ok "deploy/leaseway.yml: leaseway run --check accepts it"
else
  bad "deploy/leaseway.yml: $out"
fi
FLYENV=(FLY_APP_NAME=epic FLY_MACHINE_ID=e784 FLY_REGION=sjc PRIMARY_REGION=sjc INTERNAL_PORT=8080 PORT=8081
  DATABASE_PATH=/litefs/data/sqlite.db)
# --check checks what run checks, the migrations directory included: it is in the app's image
# (/myapp), so the copy checked here points to a stand-in for it.
mkdir -p "$TMP/myapp/prisma/migrations"
sed "s|/myapp/|$TMP/myapp/|g" "$D/fly-leaseway.yml" >"$TMP/fly-leaseway.yml"
if out=$(env "${FLYENV[@]}" "$LEASEWAY_BIN" run --check --config "$TMP/fly-leaseway.yml" 2>&1); then
  ok "deploy/fly-leaseway.yml: leaseway run --check accepts it (Fly's variables set)"
  for want in 'lease-key: "epic-stack-litefs/epic"' 'peer-url-template: "http://{id}.vm.epic.internal:8080"' \
    'advertise: "http://e784.vm.epic.internal:8080"' 'target: "127.0.0.1:8081"' 'candidate: false' \
    'instance: "e784"' 'litefs-db: ["/litefs/data/sqlite.db"]'; do
    grep -qF -- "$want" <<<"$out" || bad "fly-leaseway.yml --check: want $want"
  done
  ok "fly-leaseway.yml expands \${VAR}: lease key, peer URL template, advertise, instance from FLY_MACHINE_ID"
else
  bad "deploy/fly-leaseway.yml: $out"
fi

# --- fly.toml, litefs.yml --------------------------------------------------------------
if out=$("$PY" - "$D/fly.toml" "$D/fly-leaseway.yml" <<'EOF' 2>&1
import re, sys, tomllib
t = tomllib.load(open(sys.argv[1], "rb"))
lw = open(sys.argv[2]).read()
def lw_get(k):
    m = re.search(r"^%s:\s*'?([^'#\n]*?)'?\s*(#.*)?$" % re.escape(k), lw, re.M)
    return m.group(1).strip() if m else None
svc = t["services"][0]
errs = []
if str(svc["internal_port"]) != t["env"]["INTERNAL_PORT"]:
    errs.append("internal_port %s != env INTERNAL_PORT %s" % (svc["internal_port"], t["env"]["INTERNAL_PORT"]))
if not lw_get("listen").endswith(":${INTERNAL_PORT}"):
    errs.append("fly-leaseway.yml listen must use ${INTERNAL_PORT}")
drain = int(lw_get("drain-timeout").rstrip("s"))
if t["kill_timeout"] <= 2 * drain:
    # the drain, then the supervised app's stop, which gets the same budget
    errs.append("kill_timeout %s must exceed twice drain-timeout %s (drain + the app's stop)" % (t["kill_timeout"], drain))
if t.get("kill_signal") != "SIGTERM":
    errs.append("kill_signal must be SIGTERM (leaseway drains on it)")
admin_port = int(lw_get("admin").rsplit(":", 1)[1])
if t["checks"]["leaseway"]["port"] != admin_port or t["checks"]["leaseway"]["path"] != "/health":
    errs.append("[checks.leaseway] must hit the admin listener's /health on %d" % admin_port)
if any(p.get("port") == admin_port for s in t["services"] for p in s.get("ports", [])):
    errs.append("the admin port must not be public")
if t["metrics"]["port"] != admin_port:
    errs.append("[metrics] should scrape the admin listener")
print("; ".join(errs))
sys.exit(1 if errs else 0)
EOF
); then
  ok "deploy/fly.toml: valid TOML; internal_port = leaseway's listen, kill_timeout > drain-timeout, admin /health check, admin not public"
else
  bad "deploy/fly.toml: $out"
fi
if out=$("$PY" - "$D/litefs.yml" "$D/fly-leaseway.yml" <<'EOF' 2>&1
import re, sys
text = open(sys.argv[1]).read()
lw = open(sys.argv[2]).read()
errs = []
lines = [l for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]
if any("\t" in l for l in lines):
    errs.append("tabs in YAML")
top = [l.split(":")[0] for l in lines if not l.startswith(" ")]
for k in top:
    if not re.fullmatch(r"[a-z-]+", k):
        errs.append("odd top-level line %r" % k)
if "proxy" in top:
    errs.append("LiteFS's proxy must be off: no top-level proxy: section")
for need in ("fuse", "data", "lease", "exec"):
    if need not in top:
        errs.append("missing %s:" % need)
if not re.search(r"^lease:\n(  .*\n|\n)*?  type: 'consul'", text, re.M):
    errs.append("lease.type must be consul")
m = re.search(r"^    key: '([^']+)'", text, re.M)
k = re.search(r"^lease-key: (\S+)", lw, re.M)
if not m or not k or m.group(1) != k.group(1):
    errs.append("litefs.yml lease.consul.key %r != fly-leaseway.yml lease-key %r" % (m and m.group(1), k and k.group(1)))
if not re.search(r"^  - cmd: .*leaseway run --config /etc/leaseway.yml -- ", text, re.M):
    errs.append("exec must end by running leaseway (which supervises the app)")
if re.search(r"^\s*-\s*cmd:.*prisma migrate deploy", text, re.M):
    errs.append("migrations belong to leaseway's migrate-command, not a LiteFS exec step")
# quotes balanced on every line
for l in lines:
    if l.count("'") % 2:
        errs.append("unbalanced quote: %r" % l)
print("; ".join(errs))
sys.exit(1 if errs else 0)
EOF
); then
  ok "deploy/litefs.yml: structure (no proxy section, consul lease on fly-leaseway.yml's key, exec ends with leaseway)"
else
  bad "deploy/litefs.yml: $out"
fi
out=$(env -u CONSUL_HTTP_ADDR -u CONSUL_HTTP_TOKEN FLY_CONSUL_URL='https://:t0ken@consul-x.example.net/app-1a2b/' \
  sh "$D/fly-consul-env" sh -c 'echo "$CONSUL_HTTP_ADDR|$CONSUL_HTTP_TOKEN"')
[ "$out" = "https://consul-x.example.net/app-1a2b/|t0ken" ] &&
  ok "deploy/fly-consul-env splits FLY_CONSUL_URL into CONSUL_HTTP_ADDR and CONSUL_HTTP_TOKEN" ||
  bad "fly-consul-env: got $out"

# --- Dockerfile (parse level) --------------------------------------------------------------
if docker info >/dev/null 2>&1; then
  note "a docker daemon is reachable, but images cannot be pulled here: parse-level checks only"
else
  note "no docker daemon here: deploy/Dockerfile gets parse-level checks only (no docker build)"
fi
if out=$("$PY" - "$D/Dockerfile" "$D/Dockerfile.dockerignore" "$LEASEWAY_SRC" "$LEASEWAY_BIN" <<'EOF' 2>&1
import fnmatch, os, re, subprocess, sys
path, ignore_path, root, binary = sys.argv[1:5]
raw = open(path).read()
# join continuation lines, drop comments
text = re.sub(r"\\\n", " ", "\n".join(l for l in raw.splitlines() if not l.lstrip().startswith("#")))
ins = [l.strip() for l in text.splitlines() if l.strip()]
errs = []
known = {"FROM", "RUN", "COPY", "ADD", "ARG", "ENV", "WORKDIR", "USER", "EXPOSE", "ENTRYPOINT", "CMD",
         "STOPSIGNAL", "HEALTHCHECK", "LABEL", "VOLUME", "SHELL", "ONBUILD"}
for l in ins:
    if l.split()[0].upper() not in known or l.split()[0] != l.split()[0].upper():
        errs.append("unknown or lower-case instruction: %r" % l[:60])
froms = [l for l in ins if l.startswith("FROM ")]
stages = [re.search(r"\bAS (\S+)", l).group(1) for l in froms if re.search(r"\bAS (\S+)", l)]
if len(froms) < 2 or "build" not in stages:
    errs.append("want a multi-stage build with a 'build' stage: %r" % froms)
if not ins[0].startswith(("ARG ", "FROM ")):
    errs.append("first instruction must be ARG or FROM")
# split into stages
cur, by = None, {}
for l in ins:
    if l.startswith("FROM "):
        m = re.search(r"\bAS (\S+)", l)
        cur = m.group(1) if m else "stage%d" % len(by)
        by[cur] = []
    elif cur:
        by[cur].append(l)
final = list(by)[-1]
# COPY sources exist and are not excluded by the .dockerignore
ignore = [l.strip() for l in open(ignore_path) if l.strip() and not l.startswith("#")]
def ignored(rel):
    res = False
    for pat in ignore:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.rstrip("/")
        if p == "*" or fnmatch.fnmatch(rel, p) or rel.startswith(p + "/"):
            res = not neg
    return res
for stage, lines in by.items():
    for l in lines:
        if not l.startswith("COPY "):
            continue
        parts = l.split()[1:]
        if any(p.startswith("--from=") for p in parts):
            src = [p for p in parts if not p.startswith("--")][0]
            frm = [p for p in parts if p.startswith("--from=")][0][7:]
            if frm not in by:
                errs.append("COPY --from=%s: no such stage" % frm)
            continue
        srcs = [p for p in parts if not p.startswith("--")][:-1]
        for s in srcs:
            rel = s.rstrip("/")
            if not os.path.exists(os.path.join(root, rel)):
                errs.append("COPY source %s does not exist in the repository" % s)
            elif ignored(rel):
                errs.append("COPY source %s is excluded by %s" % (s, os.path.basename(ignore_path)))
def apt_pkgs(lines):
    pk = []
    for l in lines:
        if l.startswith("RUN ") and "apt-get install" in l:
            seg = l.split("apt-get install", 1)[1].split("&&")[0]
            pk += [w for w in seg.split() if not w.startswith("-")]
    return set(pk)
def owner(f):
    for cand in (f, f[4:] if f.startswith("/usr/") else "/usr" + f):
        r = subprocess.run(["dpkg", "-S", cand], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":")[0]
    return None
build_pk, run_pk = apt_pkgs(by["build"]), apt_pkgs(by[final])
# build stage: every pkg-config module of CMakeLists.txt, and node-llhttp
cm = open(os.path.join(root, "CMakeLists.txt")).read()
mods = []
for m in re.finditer(r"pkg_check_modules\(\w+ REQUIRED IMPORTED_TARGET ([^)]*)\)", cm):
    mods += m.group(1).split()
for mod in mods:
    pc = subprocess.run(["pkg-config", "--variable=pcfiledir", mod], capture_output=True, text=True).stdout.strip()
    o = owner(os.path.join(pc, mod + ".pc")) if pc else None
    if o is None:
        errs.append("cannot tell which package provides pkg-config module %s" % mod)
    elif o.split(":")[0] not in build_pk:
        errs.append("build stage lacks %s (pkg-config %s)" % (o, mod))
if "node-llhttp" not in build_pk:
    errs.append("build stage lacks node-llhttp")
if "cmake" not in build_pk:
    errs.append("build stage lacks cmake")
# runtime stage: the package of every NEEDED library of the binary
needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                    subprocess.run(["readelf", "-d", binary], capture_output=True, text=True).stdout)
ldd = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
where = dict(re.findall(r"^\s*(\S+) => (/\S+)", ldd, re.M))
# an ASan/UBSan build needs the sanitizer runtimes and links differently; the image ships the
# normal build, whose libraries the normal pass checks
if os.environ.get("LEASEWAY_UNDER_SANITIZER"):
    needed = []
for lib in needed:
    o = owner(where.get(lib, ""))
    if o is None:
        errs.append("cannot find the package of %s" % lib)
    elif o != "libc6" and o not in run_pk:
        errs.append("runtime stage lacks %s (for %s)" % (o, lib))
if "ca-certificates" not in run_pk:
    errs.append("runtime stage lacks ca-certificates")
if any(p.endswith("-dev") or p in ("build-essential", "cmake") for p in run_pk):
    errs.append("runtime stage installs build tools: %s" % sorted(p for p in run_pk if p.endswith("-dev")))
users = [l.split()[1] for l in by[final] if l.startswith("USER ")]
if not users or users[-1].split(":")[0] in ("root", "0"):
    errs.append("the runtime stage must end as a non-root USER")
if not any(l.startswith("COPY --from=build") and "leaseway" in l for l in by[final]):
    errs.append("the runtime stage must copy the binary from the build stage")
if not any(l.startswith("ENTRYPOINT") for l in by[final]):
    errs.append("no ENTRYPOINT")
print("; ".join(errs) if errs else "stages %s; runtime packages cover %d NEEDED libraries" % (list(by), len(needed)))
sys.exit(1 if errs else 0)
EOF
); then
  ok "deploy/Dockerfile (parse level): $out"
else
  bad "deploy/Dockerfile: $out"
fi

[ ${#NOTES[@]} -eq 0 ] || printf 'notes:\n%s\n' "$(printf '  %s\n' "${NOTES[@]}")"
echo "ops_deploy_files: $PASSES passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
