#!/usr/bin/env python3
"""An HTTP relay in front of a Consul agent that holds back chosen replies.

    consul_delay.py --listen 127.0.0.1:PORT --upstream 127.0.0.1:8500 \
        --path-prefix /v1/session/renew/ --delay 1.8 [--method GET] [--ready FILE]

Every request is passed on to the agent (blocking queries included: one thread per client
connection); the reply to a request whose path starts with --path-prefix is sent --delay
seconds after the agent gave it (with --method, only for that method). Each held reply is
logged on stdout with its times, so a test can see what the relay did. Keep-alive on the
client side; a new agent connection per request.
"""
import argparse
import http.client
import http.server
import sys
import threading
import time

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--path-prefix", required=True)
    ap.add_argument("--delay", type=float, required=True)
    ap.add_argument("--method", help="hold back only the replies to this method")
    ap.add_argument("--ready")
    args = ap.parse_args()
    lhost, lport = args.listen.rsplit(":", 1)
    uhost, uport = args.upstream.rsplit(":", 1)
    lock = threading.Lock()

    class Relay(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def relay(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            up = http.client.HTTPConnection(uhost, int(uport), timeout=600)
            try:
                up.request(self.command, self.path, body=body, headers=headers)
                resp = up.getresponse()
                data = resp.read()
                got = time.monotonic()
                if self.path.startswith(args.path_prefix) and args.method in (None, self.command):
                    time.sleep(args.delay)
                    with lock:
                        print(f"held {self.command} {self.path.split('?')[0]} {resp.status} "
                              f"for {time.monotonic() - got:.2f} s", flush=True)
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            finally:
                up.close()

        do_GET = do_PUT = do_POST = do_DELETE = relay

    srv = http.server.ThreadingHTTPServer((lhost, int(lport)), Relay)
    srv.daemon_threads = True
    if args.ready:
        with open(args.ready, "w") as f:
            f.write("ready\n")
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
