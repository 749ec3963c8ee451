#!/usr/bin/env python3
"""The app of the rolling-deploy test (tests/integration/deploy_rolling.sh), v1 or v2.

    app.py --listen IP:PORT --name ID --version v1|v2 --db SHARED.sqlite --violations FILE

All instances open one SQLite file: a stand-in for LiteFS, where a replica sees the
primary's writes (and migrations) in its own copy. The schema is owned by the
migrations (deploy/migrate.py), as with Prisma:

    v1: 20240101000000_init     CREATE TABLE notes (id, body, served_by)
    v2: + 20240301000000_add_tag ALTER TABLE notes ADD COLUMN tag

v2 code needs the tag column. A v2 process that is asked to serve a request while the
column is missing answers 500 and appends a line to --violations: the deploy must never
let that happen (its leaseway keeps the gate closed until the migration is applied).

    GET  /         {"served_by", "version", "count"}
    POST /write    {"id": ...} -> 201 {"id", "served_by", "version"}; a known id -> 409
    GET  /healthz  200 (process up; used by --upstream-health)
"""

import argparse
import json
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, obj):
        data = (json.dumps(obj) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def db(self):
        local = self.server.local
        if not hasattr(local, "db"):
            local.db = sqlite3.connect(self.server.args.db, isolation_level=None, timeout=10)
            local.db.execute("PRAGMA busy_timeout=10000")
        return local.db

    def violation(self, what):
        a = self.server.args
        with open(a.violations, "a") as f:
            f.write("%.3f %s %s %s %s\n" % (time.time(), a.name, a.version, self.command, what))
        self.reply(500, {"error": what, "served_by": a.name, "version": a.version})

    def do_GET(self):
        a = self.server.args
        if self.path == "/healthz":
            self.reply(200, {"ok": True, "served_by": a.name, "version": a.version})
            return
        try:
            if a.version == "v2":
                n, tagged = self.db().execute("SELECT count(*), count(tag) FROM notes").fetchone()
            else:
                n = self.db().execute("SELECT count(*) FROM notes").fetchone()[0]
        except sqlite3.OperationalError as e:
            self.violation(str(e))
            return
        self.reply(200, {"served_by": a.name, "version": a.version, "count": n})

    def do_POST(self):
        a = self.server.args
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b"{}"
        try:
            wid = json.loads(body).get("id")
        except ValueError:
            wid = None
        try:
            if a.version == "v2":
                self.db().execute("INSERT INTO notes (id, body, served_by, tag) VALUES (?, ?, ?, 'v2')",
                                  (wid, body.decode(), a.name))
            else:
                self.db().execute("INSERT INTO notes (id, body, served_by) VALUES (?, ?, ?)",
                                  (wid, body.decode(), a.name))
        except sqlite3.IntegrityError:
            self.reply(409, {"duplicate": True, "id": wid, "served_by": a.name, "version": a.version})
            return
        except sqlite3.OperationalError as e:
            self.violation(str(e))
            return
        self.reply(201, {"id": wid, "served_by": a.name, "version": a.version})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--version", choices=["v1", "v2"], required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--violations", required=True)
    a = p.parse_args()
    host, port = a.listen.rsplit(":", 1)
    srv = ThreadingHTTPServer((host, int(port)), Handler)
    srv.daemon_threads = True
    srv.args = a
    srv.local = threading.local()
    srv.serve_forever()


if __name__ == "__main__":
    main()
