#!/usr/bin/env python3
"""Steady read+write load for the rolling-deploy test.

    load.py URL --threads N --stop-file F --out RESULT.json [--write-ratio 0.3] [--pause-ms 5]

Each thread keeps one keep-alive connection to URL (the load balancer) and sends
GET / or POST /write {"id": unique} until F exists. Every request is recorded:
anything but 2xx, or a transport error, is a failure. RESULT.json holds the
counts, failures (first 50 with details), latency figures, the longest stall
(largest gap between two completed requests across all threads), the ids of
successful writes, and which app versions served reads over time.
"""

import argparse
import http.client
import json
import os
import random
import threading
import time
from urllib.parse import urlsplit


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--write-ratio", type=float, default=0.3)
    p.add_argument("--pause-ms", type=float, default=5)
    a = p.parse_args()
    u = urlsplit(a.url)
    lock = threading.Lock()
    res = {"requests": 0, "reads": 0, "writes": 0, "failures": 0, "failure_samples": [], "latencies_ms": [],
           "written": [], "versions": {}, "done_at": [], "slow_samples": []}

    def worker(tid):
        conn = None
        seq = 0
        while not os.path.exists(a.stop_file):
            seq += 1
            write = random.random() < a.write_ratio
            wid = "w-%d-%d-%d" % (os.getpid(), tid, seq)
            t0 = time.monotonic()
            code, body, err = None, b"", None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
                if write:
                    payload = json.dumps({"id": wid})
                    conn.request("POST", "/write", body=payload, headers={"Content-Type": "application/json"})
                else:
                    conn.request("GET", "/")
                r = conn.getresponse()
                code, body = r.status, r.read()
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                err = "%s: %s" % (type(e).__name__, e)
                if conn:
                    conn.close()
                conn = None
            t1 = time.monotonic()
            ok = code is not None and 200 <= code < 300
            with lock:
                res["requests"] += 1
                res["writes" if write else "reads"] += 1
                res["latencies_ms"].append((t1 - t0) * 1000)
                res["done_at"].append(t1)
                if ok and write:
                    res["written"].append(wid)
                if ok and not write:
                    try:
                        v = json.loads(body).get("version", "?")
                    except ValueError:
                        v = "?"
                    res["versions"][v] = res["versions"].get(v, 0) + 1
                if t1 - t0 > 2.0 and len(res["slow_samples"]) < 20:
                    res["slow_samples"].append({"at": round(time.time(), 3), "write": write, "code": code,
                                                "ms": round((t1 - t0) * 1000)})
                if not ok:
                    res["failures"] += 1
                    if len(res["failure_samples"]) < 50:
                        res["failure_samples"].append({"at": time.time(), "write": write, "code": code, "error": err,
                                                       "body": body[:200].decode("latin-1")})
            if a.pause_ms:
                time.sleep(a.pause_ms / 1000)

    started = time.monotonic()
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(a.threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    lat = sorted(res.pop("latencies_ms"))
    done = sorted(res.pop("done_at"))
    gaps = [b - a for a, b in zip([started] + done, done)]
    res["duration_s"] = round(time.monotonic() - started, 2)
    res["latency_ms"] = {
        "p50": round(lat[len(lat) // 2], 1) if lat else None,
        "p99": round(lat[int(len(lat) * 0.99)], 1) if lat else None,
        "max": round(lat[-1], 1) if lat else None,
    }
    res["longest_stall_ms"] = round(max(gaps) * 1000, 1) if gaps else None
    with open(a.out, "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    main()
