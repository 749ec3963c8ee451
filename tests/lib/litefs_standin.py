#!/usr/bin/env python3
"""A LiteFS stand-in for leaseway's tests, for machines that cannot run LiteFS.

NOT LiteFS. It reproduces only what leaseway sees of a LiteFS cluster, with
the shapes and timings of LiteFS v0.5 (see shared/LITEFS.md):

  * the lease: Consul session {Name: litefs, Behavior: delete, TTL 10s,
    LockDelay 1s, no checks} renewed every TTL/2; KV key acquired with
    ?acquire=, value {"hostname": ..., "advertise-url": ...}; released and the
    session destroyed on SIGTERM/SIGINT; no blocking queries: a replica learns
    of a new primary when its replication stream drops, waits 1 s, re-reads;
  * the files on the "mount" (a plain directory here, no FUSE):
    <mount>/.primary holds the primary's hostname on a connected replica and is
    absent on the primary; <mount>/<db>-pos holds "<16 hex TXID>/<16 hex
    checksum>\\n";
  * replication: each committed change on the primary bumps the TXID; replicas
    long-poll the primary's advertise-url (GET /stream?db=&after=) and copy the
    database with SQLite's backup API into their own file, then update -pos.
    Only whole-database snapshots, so keep test databases small.
  * POST /handoff on the HTTP port: the primary releases the lease (another
    candidate takes it); GET /info: JSON state.

Commits are detected by polling PRAGMA data_version (every 20 ms), and at once
when the app calls POST /commit?db=NAME on the local HTTP port (tests/lib/
litefs_app.py does so after each insert, before it answers): real LiteFS
updates -pos inside the commit, so a proxy that reads -pos right after the
app's response must see the new TXID, and the stand-in must not be slower.

Also a pausable TCP relay (`relay` sub-command) used as a node's advertise-url
so a test can stall replication without touching FUSE: SIGUSR1 pauses
(bytes are held in both directions, connections stay open), SIGUSR2 resumes.

    litefs_standin.py node --hostname 127.0.0.2 --http 127.0.0.2:20202 \\
        --advertise-url http://127.0.0.2:20203 --mount M --data D \\
        --consul http://127.0.0.1:8500 --key litefs/x --candidate true --db demo.db
    litefs_standin.py relay --listen 127.0.0.2:20203 --target 127.0.0.2:20202
"""

import argparse
import base64
import hashlib
import json
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def log(*a):
    sys.stderr.write(time.strftime("%H:%M:%S ") + " ".join(str(x) for x in a) + "\n")
    sys.stderr.flush()


def atomic_write(path, data):
    tmp = path + ".tmp-standin"
    with open(tmp, "w") as f:
        f.write(data)
    os.replace(tmp, path)


# --- Consul ---------------------------------------------------------------
class Consul:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def call(self, method, path, body=None, timeout=5):
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


# --- one database on the "mount" ------------------------------------------
class DB:
    def __init__(self, node, name):
        self.node = node
        self.name = name
        self.path = os.path.join(node.mount, name)
        self.pos_path = self.path + "-pos"
        self.snap = os.path.join(node.data, name + ".snap")
        self.txid = 0
        self.checksum = 0
        self.cond = threading.Condition()
        self.watch = None  # connection polling data_version (primary)
        self.version = None
        state = os.path.join(node.data, name + ".state")
        if os.path.exists(state):
            try:
                self.txid, self.checksum = (int(x, 16) for x in open(state).read().split("/"))
            except ValueError:
                pass

    def write_pos(self):
        atomic_write(self.pos_path, "%016x/%016x\n" % (self.txid, self.checksum))
        atomic_write(os.path.join(self.node.data, self.name + ".state"), "%016x/%016x" % (self.txid, self.checksum))

    def commit(self):
        """Primary: snapshot the database, bump the TXID (one at a time)."""
        with self.cond:
            if not os.path.exists(self.path):
                return False
            src = sqlite3.connect(self.path, timeout=5)
            try:
                tmp = self.snap + ".tmp"
                if os.path.exists(tmp):
                    os.unlink(tmp)
                dst = sqlite3.connect(tmp)
                src.backup(dst)
                dst.close()
            finally:
                src.close()
            with open(tmp, "rb") as f:
                digest = hashlib.blake2b(f.read(), digest_size=8).digest()
            new_sum = int.from_bytes(digest, "big")
            if new_sum == self.checksum and self.txid > 0 and os.path.exists(self.snap):
                os.unlink(tmp)
                return False
            os.replace(tmp, self.snap)
            self.txid += 1
            self.checksum = new_sum
            self.write_pos()
            self.cond.notify_all()
            return True

    def poll(self):
        """Primary: has anyone committed since the last look?"""
        if not os.path.exists(self.path):
            return
        if self.watch is None:
            self.watch = sqlite3.connect(self.path, timeout=5, check_same_thread=False)
            self.version = None
        try:
            v = self.watch.execute("PRAGMA data_version").fetchone()[0]
            n = self.watch.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.Error:
            return
        if (v, n) != self.version:
            first = self.version is None
            self.version = (v, n)
            if not first or self.txid == 0 or not os.path.exists(self.snap):
                self.commit()

    def stop_watch(self):
        if self.watch is not None:
            self.watch.close()
            self.watch = None

    def apply(self, blob, txid, checksum):
        """Replica: replace the local database with the primary's snapshot."""
        with self.cond:
            tmp = os.path.join(self.node.data, self.name + ".incoming")
            with open(tmp, "wb") as f:
                f.write(blob)
            src = sqlite3.connect(tmp)
            dst = sqlite3.connect(self.path, timeout=10)
            try:
                dst.execute("PRAGMA busy_timeout=10000")
                src.backup(dst)
            finally:
                dst.close()
                src.close()
                os.unlink(tmp)
            with open(self.snap + ".tmp", "wb") as f:
                f.write(blob)
            os.replace(self.snap + ".tmp", self.snap)
            self.txid, self.checksum = txid, checksum
            self.write_pos()
            self.cond.notify_all()


# --- a node ---------------------------------------------------------------
class Node:
    def __init__(self, a):
        self.a = a
        self.hostname = a.hostname
        self.mount = a.mount
        self.data = a.data
        os.makedirs(self.mount, exist_ok=True)
        os.makedirs(self.data, exist_ok=True)
        self.consul = Consul(a.consul)
        self.key = a.key
        self.candidate = a.candidate
        self.ttl = a.ttl
        self.lock_delay = a.lock_delay
        self.dbs = {n: DB(self, n) for n in a.db}
        self.lock = threading.RLock()
        self.session = None
        self.primary = False
        self.primary_info = None  # {"hostname", "advertise-url"} of the current primary
        self.no_candidacy_until = 0.0
        self.stopping = threading.Event()
        self.last_renew = 0.0
        self.stream_broken = threading.Event()

    # lease ------------------------------------------------------------
    def value(self):
        return json.dumps({"hostname": self.hostname, "advertise-url": self.a.advertise_url}).encode()

    def create_session(self):
        code, body = self.consul.call("PUT", "/v1/session/create", {
            "Name": "litefs", "Behavior": "delete", "TTL": "%ds" % self.ttl,
            "LockDelay": "%ds" % self.lock_delay, "Checks": [],
        })
        if code != 200:
            raise RuntimeError("session create: %s %s" % (code, body[:200]))
        self.session = json.loads(body)["ID"]
        self.last_renew = time.monotonic()

    def read_key(self):
        code, body = self.consul.call("GET", "/v1/kv/" + self.key)
        if code == 404:
            return None, None
        if code != 200:
            raise RuntimeError("kv get: %s" % code)
        ent = json.loads(body)[0]
        if not ent.get("Session"):
            return None, None
        try:
            val = json.loads(base64.b64decode(ent.get("Value") or b"") or b"{}")
        except ValueError:
            val = {}
        return val, ent["Session"]

    def become_primary(self):
        with self.lock:
            self.primary = True
            self.primary_info = {"hostname": self.hostname, "advertise-url": self.a.advertise_url}
        try:
            os.unlink(os.path.join(self.mount, ".primary"))
        except FileNotFoundError:
            pass
        for db in self.dbs.values():
            db.stop_watch()
            db.poll()
        log("primary lease acquired:", self.hostname)

    def step_down(self, why):
        with self.lock:
            was = self.primary
            self.primary = False
            self.primary_info = None
        for db in self.dbs.values():
            db.stop_watch()
        if was:
            log("stepped down:", why)

    def try_acquire(self):
        if not self.candidate or time.monotonic() < self.no_candidacy_until:
            return False
        if self.session is None:
            self.create_session()
        code, body = self.consul.call("PUT", "/v1/kv/%s?acquire=%s" % (self.key, self.session), self.value())
        if code == 500 and b"invalid session" in body:
            self.session = None
            return False
        if code == 200 and body.strip() == b"true":
            self.become_primary()
            return True
        return False

    def release(self):
        if self.session is None:
            return
        if self.primary:
            self.consul.call("PUT", "/v1/kv/%s?release=%s" % (self.key, self.session), b"")
        self.consul.call("PUT", "/v1/session/destroy/" + self.session, b"")
        self.session = None

    def lease_loop(self):
        while not self.stopping.is_set():
            try:
                if self.primary:
                    if time.monotonic() - self.last_renew >= self.ttl / 2:
                        code, _ = self.consul.call("PUT", "/v1/session/renew/" + self.session, b"")
                        if code == 200:
                            self.last_renew = time.monotonic()
                        elif code == 404:
                            self.session = None
                            self.step_down("session gone")
                    if self.primary and time.monotonic() - self.last_renew > self.ttl:
                        self.step_down("renew overdue")
                    for db in self.dbs.values():
                        db.poll()
                    self.stopping.wait(0.02)
                    continue
                # Not primary: a replica connects to the holder; LiteFS reads the
                # key only when it (re)connects, not with blocking queries.
                val, holder = self.read_key()
                if holder is None:
                    if not self.try_acquire():
                        self.stopping.wait(1.0)
                    continue
                if holder == self.session:  # still ours (e.g. after a hiccup)
                    self.become_primary()
                    continue
                with self.lock:
                    self.primary_info = val
                self.replicate(val)  # returns when the stream drops
                with self.lock:
                    self.primary_info = None
                try:
                    os.unlink(os.path.join(self.mount, ".primary"))
                except FileNotFoundError:
                    pass
                if self.session is not None and self.candidate:
                    # keep our idle session alive while we are a replica
                    self.consul.call("PUT", "/v1/session/renew/" + self.session, b"")
                self.stopping.wait(1.0)  # LiteFS: reconnect delay
            except Exception as e:  # noqa: BLE001 - keep going like LiteFS does
                log("lease loop:", repr(e))
                self.stopping.wait(1.0)

    # replication (replica side) ---------------------------------------
    def replicate(self, info):
        url = (info or {}).get("advertise-url")
        if not url:
            return
        primary_file = os.path.join(self.mount, ".primary")
        connected = False
        fails = 0
        while not self.stopping.is_set():
            if self.candidate and self.session is not None and time.monotonic() - self.last_renew >= self.ttl / 2:
                self.consul.call("PUT", "/v1/session/renew/" + self.session, b"")
                self.last_renew = time.monotonic()
            progressed = False
            try:
                for db in self.dbs.values():
                    u = "%s/stream?db=%s&after=%d&wait=2" % (url.rstrip("/"), db.name, db.txid)
                    with urllib.request.urlopen(u, timeout=15) as r:
                        if r.status == 200:
                            blob = r.read()
                            db.apply(blob, int(r.headers["X-Txid"], 16), int(r.headers["X-Checksum"], 16))
                            progressed = True
                        else:
                            r.read()
                fails = 0
                if not connected:
                    connected = True
                    atomic_write(primary_file, info["hostname"] + "\n")
                    log("connected to primary", info["hostname"])
            except urllib.error.HTTPError as e:
                if e.code == 421:  # it is not the primary any more
                    return
                fails += 1
            except (OSError, ValueError, KeyError) as e:
                fails += 1
                if fails == 1:
                    log("stream from %s dropped: %r" % (info.get("hostname"), e))
            if fails >= 2:
                return
            if fails:
                self.stopping.wait(0.2)
            elif not progressed:
                # re-check the lease now and then (a handoff to another node
                # does not break our stream to a live ex-primary at once)
                v, holder = self.read_key()
                if holder is None or (v or {}).get("hostname") != info.get("hostname"):
                    return

    # HTTP --------------------------------------------------------------
    def stream(self, name, after, wait):
        db = self.dbs.get(name)
        if db is None:
            return 404, {}, b"no such db"
        if not self.primary:
            return 421, {}, b"not primary"
        deadline = time.monotonic() + wait
        with db.cond:
            while db.txid <= after and time.monotonic() < deadline and self.primary:
                db.cond.wait(max(0.0, min(0.5, deadline - time.monotonic())))
            if db.txid <= after or not os.path.exists(db.snap):
                return 204, {}, b""
            with open(db.snap, "rb") as f:
                blob = f.read()
            return 200, {"X-Txid": "%016x" % db.txid, "X-Checksum": "%016x" % db.checksum}, blob

    def handoff(self):
        if not self.primary:
            return 400, b"not primary\n"
        self.no_candidacy_until = time.monotonic() + max(2.0, self.lock_delay + 1.0)
        self.consul.call("PUT", "/v1/kv/%s?release=%s" % (self.key, self.session), b"")
        self.step_down("handoff")
        return 200, b"ok\n"

    def info(self):
        return {
            "hostname": self.hostname, "primary": self.primary, "candidate": self.candidate,
            "primary_info": self.primary_info,
            "dbs": {n: "%016x/%016x" % (d.txid, d.checksum) for n, d in self.dbs.items()},
        }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, code, body=b"", headers=None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code not in (204, 304):
            self.wfile.write(body)

    def do_GET(self):
        u = urlsplit(self.path)
        q = parse_qs(u.query)
        node = self.server.node
        if u.path == "/stream":
            code, hdrs, body = node.stream(q.get("db", [""])[0], int(q.get("after", ["0"])[0]),
                                           float(q.get("wait", ["2"])[0]))
            self.reply(code, body, hdrs)
        elif u.path == "/info":
            self.reply(200, json.dumps(node.info()).encode(), {"Content-Type": "application/json"})
        else:
            self.reply(404, b"not found\n")

    def do_POST(self):
        u = urlsplit(self.path)
        q = parse_qs(u.query)
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        node = self.server.node
        if u.path == "/handoff":
            code, body = node.handoff()
            self.reply(code, body)
        elif u.path == "/commit":
            db = node.dbs.get(q.get("db", ["demo.db"])[0])
            if db is None or not node.primary:
                self.reply(409, b"not primary or unknown db\n")
                return
            db.commit()
            self.reply(200, ("%016x/%016x\n" % (db.txid, db.checksum)).encode())
        else:
            self.reply(404, b"not found\n")

    def log_message(self, *a):
        pass


def run_node(a):
    node = Node(a)
    host, _, port = a.http.rpartition(":")
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    srv = ThreadingHTTPServer((host, int(port)), Handler)
    srv.node = node
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    for db in node.dbs.values():
        if db.txid:
            db.write_pos()

    def stop(signum, _frame):
        node.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    t = threading.Thread(target=node.lease_loop, daemon=True)
    t.start()
    log("litefs stand-in %s: http %s, mount %s, candidate %s" % (a.hostname, a.http, a.mount, a.candidate))
    while not node.stopping.is_set():
        node.stopping.wait(0.5)
    # LiteFS on shutdown: release the lease and destroy the session.
    with node.lock:
        try:
            node.release()
        except Exception as e:  # noqa: BLE001
            log("release:", repr(e))
        node.step_down("shutdown")
    srv.shutdown()
    log("litefs stand-in %s stopped" % a.hostname)


# --- pausable relay -------------------------------------------------------
def run_relay(a):
    running = threading.Event()
    running.set()
    signal.signal(signal.SIGUSR1, lambda *_: running.clear())
    signal.signal(signal.SIGUSR2, lambda *_: running.set())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    thost, _, tport = a.target.rpartition(":")

    def pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                while not running.is_set():
                    running.wait(0.05)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve(c):
        try:
            u = socket.create_connection((thost, int(tport)), timeout=5)
            u.settimeout(None)
        except OSError:
            c.close()
            return
        threading.Thread(target=pipe, args=(c, u), daemon=True).start()
        threading.Thread(target=pipe, args=(u, c), daemon=True).start()

    host, _, port = a.listen.rpartition(":")
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, int(port)))
    ls.listen(64)
    ls.settimeout(0.2)
    if a.ready_file:
        atomic_write(a.ready_file, "ok\n")
    while not stop.is_set():
        try:
            c, _ = ls.accept()
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        serve(c)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    n = sub.add_parser("node")
    n.add_argument("--hostname", required=True)
    n.add_argument("--http", required=True, help="host:port of this node's HTTP API")
    n.add_argument("--advertise-url", required=True)
    n.add_argument("--mount", required=True)
    n.add_argument("--data", required=True)
    n.add_argument("--consul", required=True)
    n.add_argument("--key", required=True)
    n.add_argument("--candidate", type=lambda s: s.lower() in ("1", "true", "yes"), default=True)
    n.add_argument("--db", action="append", default=[])
    n.add_argument("--ttl", type=int, default=10)
    n.add_argument("--lock-delay", type=int, default=1)
    r = sub.add_parser("relay")
    r.add_argument("--listen", required=True)
    r.add_argument("--target", required=True)
    r.add_argument("--ready-file")
    a = ap.parse_args()
    if a.cmd == "node":
        if not a.db:
            a.db = ["demo.db"]
        run_node(a)
    else:
        run_relay(a)


if __name__ == "__main__":
    main()
