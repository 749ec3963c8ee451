#!/usr/bin/env python3
"""Look at a local leaseway cluster from outside (stdlib only).

Used by deploy/local-cluster.sh and the tests/integration/cluster_*.sh tests;
also importable (sys.path.insert(0, "deploy/demo-app"); import cluster).

An instance is named on the command line as ADMIN@PUBLIC, both host:port,
e.g. 127.0.0.2:9901@127.0.0.2:8080 (the admin and public listeners).

    cluster.py status INST...            one line per instance
    cluster.py wait-primary [--timeout S] [--not ID] [--t0-ms MS] [--min N] INST...
        poll every 50 ms until exactly one instance reports role primary, every
        instance that answers names it in /status and in Fly-Primary-Instance,
        and at least N (default: all) instances answer; print
        {"primary": ID, "ms": <ms since --t0-ms or since start>} and exit 0,
        or print the last observation and exit 1 at the timeout
        --kill PID [--sig TERM] / --handoff: send that signal to PID, or POST
        /handoff to the instance that is primary now, then start the clock
    cluster.py wait-status --expr PYEXPR [--timeout S] INST...
        poll /status every 50 ms until PYEXPR (on the parsed status `st`) is
        true on every instance; print {"ms": ...}
    cluster.py catalog --consul URL --service NAME [--want N] [--timeout S] [--token T]
        the service in Consul's catalog: {"ids", "primary", "ms"}; with --want,
        wait until N instances are registered and exactly one is tagged primary
    cluster.py get URL                   {"code", "headers", "body"} as JSON
    cluster.py post URL [BODY]           same, for a POST (BODY: JSON or a form)
        (exit 0 even when nothing answered: then "code" is null)
"""

import argparse
import http.client
import json
import os
import signal
import sys
import time
from urllib.parse import urlsplit


def now_ms():
    return time.time() * 1000.0


def request(method, url, body=None, headers=None, timeout=1.0):
    """One HTTP request on a fresh connection. Returns (code, headers dict with
    lower-case names, body bytes), or (None, {}, error string) on failure."""
    if "://" not in url:
        url = "http://" + url
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        if body is not None and isinstance(body, str):
            body = body.encode()
        conn.request(method, (u.path or "/") + ("?" + u.query if u.query else ""), body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    except (OSError, http.client.HTTPException) as e:
        return None, {}, str(e)
    finally:
        conn.close()


def get_json(url, timeout=1.0):
    code, _, body = request("GET", url, timeout=timeout)
    if code is None:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


class Inst:
    """One leaseway instance: admin and public host:port."""

    def __init__(self, spec):
        self.admin, _, self.public = spec.partition("@")
        self.id = None  # learnt from /status

    def status(self, timeout=0.5):
        st = get_json("http://%s/status" % self.admin, timeout)
        if st and st.get("instance"):
            self.id = st["instance"]
        return st

    def head(self, path="/", timeout=0.5):
        """GET on the public listener: (code, Fly-Primary-Instance, Fly-Instance)."""
        code, h, _ = request("GET", "http://%s%s" % (self.public, path), timeout=timeout)
        return code, h.get("fly-primary-instance"), h.get("fly-instance")

    def __repr__(self):
        return self.id or self.admin


def role_of(st):
    return (st or {}).get("role")


def primary_of(st):
    p = (st or {}).get("primary")
    return p.get("id") if isinstance(p, dict) else None


def observe(insts, headers=True, timeout=0.5):
    """One look at every instance: list of dicts {inst, status, role, primary,
    code, hdr_primary, hdr_instance}."""
    out = []
    for i in insts:
        st = i.status(timeout)
        o = {"inst": i, "status": st, "role": role_of(st), "primary": primary_of(st)}
        if headers and st is not None and i.public:
            o["code"], o["hdr_primary"], o["hdr_instance"] = i.head(timeout=timeout)
        out.append(o)
    return out


def agreed_primary(obs, min_answering, exclude=None, headers=True):
    """The primary id if the observation shows exactly one agreed primary."""
    answering = [o for o in obs if o["status"] is not None]
    if len(answering) < min_answering:
        return None
    prims = [o for o in answering if o["role"] == "primary"]
    if len(prims) != 1:
        return None
    pid = prims[0]["status"].get("instance")
    if not pid or pid == exclude:
        return None
    for o in answering:
        if o["primary"] != pid:
            return None
        if headers and o["inst"].public:
            if o.get("code") != 200 or o.get("hdr_primary") != pid:
                return None
    return pid


def describe(obs):
    parts = []
    for o in obs:
        st = o["status"]
        if st is None:
            parts.append("%s: no answer" % o["inst"])
            continue
        s = "%s: role=%s primary=%s" % (st.get("instance"), o["role"], o["primary"])
        if "code" in o:
            s += " GET=%s hdr=%s" % (o["code"], o["hdr_primary"])
        c = st.get("consul") or {}
        s += " consul.reachable=%s" % c.get("reachable")
        parts.append(s)
    return "; ".join(parts)


def wait_primary(insts, timeout=10.0, exclude=None, t0_ms=None, min_answering=None, headers=True, interval=0.05):
    """Poll until one agreed primary (see module doc). Returns (id, ms, last obs)."""
    t0_ms = now_ms() if t0_ms is None else t0_ms
    min_answering = len(insts) if min_answering is None else min_answering
    deadline = time.monotonic() + timeout
    obs = []
    while True:
        obs = observe(insts, headers)
        pid = agreed_primary(obs, min_answering, exclude, headers)
        if pid:
            return pid, now_ms() - t0_ms, obs
        if time.monotonic() >= deadline:
            return None, now_ms() - t0_ms, obs
        time.sleep(interval)


def catalog(consul, service, token=None, timeout=1.0):
    """(ids, ids tagged primary) from /v1/catalog/service/<service>, or None."""
    hdrs = {"X-Consul-Token": token} if token else {}
    code, _, body = request("GET", "%s/v1/catalog/service/%s" % (consul.rstrip("/"), service), headers=hdrs, timeout=timeout)
    if code != 200:
        return None
    try:
        entries = json.loads(body)
    except ValueError:
        return None
    ids = sorted(e.get("ServiceID") for e in entries)
    prim = sorted(e.get("ServiceID") for e in entries if "primary" in (e.get("ServiceTags") or []))
    return ids, prim


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("status")
    s.add_argument("inst", nargs="+")
    w = sub.add_parser("wait-primary")
    w.add_argument("--timeout", type=float, default=10.0)
    w.add_argument("--not", dest="exclude")
    w.add_argument("--t0-ms", type=float)
    w.add_argument("--min", type=int)
    w.add_argument("--no-headers", action="store_true")
    w.add_argument("--kill", type=int, metavar="PID")
    w.add_argument("--sig", default="TERM")
    w.add_argument("--handoff", action="store_true")
    w.add_argument("inst", nargs="+")
    ws = sub.add_parser("wait-status")
    ws.add_argument("--expr", required=True)
    ws.add_argument("--timeout", type=float, default=10.0)
    ws.add_argument("inst", nargs="+")
    c = sub.add_parser("catalog")
    c.add_argument("--consul", required=True)
    c.add_argument("--service", required=True)
    c.add_argument("--want", type=int)
    c.add_argument("--timeout", type=float, default=10.0)
    c.add_argument("--token")
    g = sub.add_parser("get")
    g.add_argument("url")
    p = sub.add_parser("post")
    p.add_argument("url")
    p.add_argument("body", nargs="?", default="")
    a = ap.parse_args()

    if a.cmd == "status":
        print(describe(observe([Inst(x) for x in a.inst])).replace("; ", "\n"))
        return 0
    if a.cmd == "wait-primary":
        insts = [Inst(x) for x in a.inst]
        t0 = a.t0_ms
        if a.kill:
            t0 = now_ms()
            os.kill(a.kill, getattr(signal, "SIG" + a.sig))
        elif a.handoff:
            obs = observe(insts, headers=False)
            cur = [o for o in obs if o["role"] == "primary"]
            if len(cur) != 1:
                print("--handoff: want one primary, got: %s" % describe(obs), file=sys.stderr)
                return 1
            a.exclude = cur[0]["status"]["instance"]
            t0 = now_ms()
            code, _, body = request("POST", "http://%s/handoff" % cur[0]["inst"].admin, body=b"", timeout=5)
            if code is None or code >= 300:
                print("--handoff: POST /handoff on %s: %s %r" % (a.exclude, code, body[:200]), file=sys.stderr)
                return 1
        pid, ms, obs = wait_primary(insts, a.timeout, a.exclude, t0, a.min, not a.no_headers)
        if pid:
            print(json.dumps({"primary": pid, "ms": int(round(ms)), "old": a.exclude}))
            return 0
        print("no agreed primary after %.1f s: %s" % (a.timeout, describe(obs)), file=sys.stderr)
        return 1
    if a.cmd == "wait-status":
        insts = [Inst(x) for x in a.inst]
        t0 = now_ms()
        deadline = time.monotonic() + a.timeout
        while True:
            sts = [i.status() for i in insts]
            try:
                good = all(st is not None and eval(a.expr, {}, {"st": st}) for st in sts)
            except (KeyError, TypeError, AttributeError):
                good = False
            if good:
                print(json.dumps({"ms": int(round(now_ms() - t0))}))
                return 0
            if time.monotonic() >= deadline:
                print("not %s after %.1f s: %s" % (a.expr, a.timeout, json.dumps(sts)), file=sys.stderr)
                return 1
            time.sleep(0.05)
    if a.cmd == "catalog":
        t0 = now_ms()
        deadline = time.monotonic() + a.timeout
        while True:
            got = catalog(a.consul, a.service, a.token)
            if a.want is None or (got and len(got[0]) == a.want and len(got[1]) == 1):
                break
            if time.monotonic() >= deadline:
                print("catalog: want %d instances, one tagged primary, after %.1f s; got %s"
                      % (a.want, a.timeout, got), file=sys.stderr)
                return 1
            time.sleep(0.1)
        if got is None:
            print("catalog: no answer from %s" % a.consul, file=sys.stderr)
            return 1
        print(json.dumps({"ids": got[0], "primary": got[1], "ms": int(round(now_ms() - t0))}))
        return 0
    if a.cmd in ("get", "post"):
        body = a.body if a.cmd == "post" else None
        hdrs = {"Content-Type": "application/json"} if body and body.lstrip().startswith("{") else {}
        if a.cmd == "post" and body and not hdrs:
            hdrs = {"Content-Type": "application/x-www-form-urlencoded"}
        code, h, data = request(a.cmd.upper(), a.url, body=body, headers=hdrs, timeout=5.0)
        if code is None:
            print(json.dumps({"code": None, "error": data}))
            return 0  # the JSON says it; callers test "code"
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = data.decode("utf-8", "replace")
        print(json.dumps({"code": code, "headers": h, "body": parsed}))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
