#!/usr/bin/env python3
"""A tiny single-writer demo app to put behind leaseway.

    python3 app.py --listen 127.0.0.2:3000 --name app-1 --db /tmp/app-1.sqlite

Endpoints (all answers are JSON, every answer names the instance that served it):

    GET  /         {"served_by", "primary", "count"}: "primary" is the request's
                   Fly-Primary-Instance header (set by leaseway), "count" the
                   number of writes in this instance's database
    POST /write    insert a row; the body may be JSON or a form with an "id"
                   field (else one is generated) -> {"id", "served_by"};
                   an id already stored -> 409 {"duplicate": true, "id", ...}
    GET  /writes   every row: {"served_by", "count", "writes": [{id, body,
                   served_by, primary, at}, ...]}
    GET  /healthz  200 {"ok": true}

Each instance keeps its own SQLite file (there is no LiteFS here), so a write
shows up only in the database of the instance that served it: with leaseway in
front, that is always the primary. Standard library only; threaded HTTP/1.1.
"""

import argparse
import json
import signal
import sqlite3
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 1 << 20  # 1 MiB is plenty for a demo write

SCHEMA = """
CREATE TABLE IF NOT EXISTS writes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    body       TEXT NOT NULL,
    served_by  TEXT NOT NULL,
    primary_id TEXT,
    at         TEXT NOT NULL
)
"""


class Store:
    """One SQLite connection shared by all threads, serialised by a lock."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.execute(SCHEMA)

    def insert(self, wid, body, served_by, primary):
        at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        with self.lock:
            try:
                self.db.execute(
                    "INSERT INTO writes (id, body, served_by, primary_id, at) VALUES (?, ?, ?, ?, ?)",
                    (wid, body, served_by, primary, at),
                )
                return True
            except sqlite3.IntegrityError:
                return False

    def count(self):
        with self.lock:
            return self.db.execute("SELECT count(*) FROM writes").fetchone()[0]

    def rows(self):
        with self.lock:
            cur = self.db.execute("SELECT id, body, served_by, primary_id, at FROM writes ORDER BY seq")
            return [
                {"id": r[0], "body": r[1], "served_by": r[2], "primary": r[3], "at": r[4]}
                for r in cur.fetchall()
            ]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer has Content-Length
    server_version = "leaseway-demo/1"

    # --- helpers ---------------------------------------------------------
    def send_json(self, code, obj):
        data = (json.dumps(obj) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Served-By", self.server.name)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def read_body(self):
        """Return the request body (Content-Length or chunked), or None if too big."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(out)
                if len(out) + size > MAX_BODY:
                    return None
                out += self.rfile.read(size)
                self.rfile.readline()  # CRLF after the chunk
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            return None
        return self.rfile.read(n) if n else b""

    def primary(self):
        return self.headers.get("Fly-Primary-Instance")

    # --- routes ----------------------------------------------------------
    def do_GET(self):
        path = urlsplit(self.path).path
        store = self.server.store
        if path == "/":
            self.send_json(200, {"served_by": self.server.name, "primary": self.primary(), "count": store.count()})
        elif path == "/writes":
            rows = store.rows()
            self.send_json(200, {"served_by": self.server.name, "count": len(rows), "writes": rows})
        elif path == "/healthz":
            self.send_json(200, {"ok": True, "served_by": self.server.name})
        else:
            self.send_json(404, {"error": "not found", "served_by": self.server.name})

    do_HEAD = do_GET

    def do_POST(self):
        path = urlsplit(self.path).path
        if path != "/write":
            self.read_body()
            self.send_json(404, {"error": "not found", "served_by": self.server.name})
            return
        raw = self.read_body()
        if raw is None:
            self.close_connection = True
            self.send_json(413, {"error": "body too large", "served_by": self.server.name})
            return
        text = raw.decode("utf-8", "replace")
        wid = None
        ctype = self.headers.get("Content-Type", "")
        try:
            if "json" in ctype or text.lstrip().startswith("{"):
                obj = json.loads(text) if text.strip() else {}
                if isinstance(obj, dict) and obj.get("id") is not None:
                    wid = str(obj["id"])
            elif text:
                wid = (parse_qs(text).get("id") or [None])[0]
        except ValueError:
            self.send_json(400, {"error": "bad JSON body", "served_by": self.server.name})
            return
        wid = wid or uuid.uuid4().hex
        if self.server.store.insert(wid, text, self.server.name, self.primary()):
            self.send_json(200, {"id": wid, "served_by": self.server.name})
        else:
            self.send_json(409, {"duplicate": True, "id": wid, "served_by": self.server.name})

    def log_message(self, fmt, *args):
        sys.stderr.write(
            "%s %s primary=%s %s\n"
            % (time.strftime("%H:%M:%S"), self.server.name, self.primary() or "-", fmt % args)
        )


def main():
    ap = argparse.ArgumentParser(description="leaseway demo app")
    ap.add_argument("--listen", default="127.0.0.1:3000", help="host:port")
    ap.add_argument("--name", required=True, help="instance id (shown as served_by)")
    ap.add_argument("--db", required=True, help="SQLite file")
    ap.add_argument("--quiet", action="store_true", help="no access log")
    args = ap.parse_args()

    host, _, port = args.listen.rpartition(":")
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    # socketserver's listen backlog is 5: a proxy opening 32 connections at once overflows it,
    # and each dropped SYN costs its request a 1 s retransmit. Node listens with 511.
    ThreadingHTTPServer.request_queue_size = 511
    srv = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    srv.name = args.name
    srv.store = Store(args.db)
    if args.quiet:
        Handler.log_message = lambda *a: None

    def stop(signum, _frame):
        # shutdown() waits for serve_forever() to return: call it off the main thread.
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stderr.write("demo app %s listening on %s, db %s\n" % (args.name, args.listen, args.db))
    sys.stderr.flush()
    srv.serve_forever(poll_interval=0.2)
    srv.server_close()
    with srv.store.lock:
        srv.store.db.close()  # checkpoints the WAL


if __name__ == "__main__":
    main()
