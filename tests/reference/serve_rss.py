#!/usr/bin/env python3
"""Resident memory of `edgewise serve` over many large requests (issue #20, item 10).

Starts `edgewise serve` on the real model (loopback, a free port), sends one small warm-up
request, reads VmRSS, then sends `--requests` large chat requests from `--clients` parallel
clients and reads VmRSS after them (and again after a short pause). Two workloads:

- `many`: `--messages` one-word messages (the issue's 60,000); the server caps the count.
- `big`: 2000 messages of ~1.9 KB (3.8 MB, under the caps; `--big-requests` of them): the
  engine renders and tokenizes them, then answers 400 (context overflow).

Prints one JSON line per workload. Standard library only:
    python3 tests/reference/serve_rss.py --edgewise target/release/edgewise --model PATH
"""
import argparse
import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def post(base, body, timeout=300):
    req = urllib.request.Request(base + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--edgewise", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--big-requests", type=int, default=4, help="requests of the `big` workload (slow: each is tokenized)")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--messages", type=int, default=60000)
    ap.add_argument("--workloads", default="many,big")
    a = ap.parse_args()

    proc = subprocess.Popen(
        [a.edgewise, "serve", "--model", a.model, "--addr", "127.0.0.1:0"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        base = None
        for line in proc.stderr:
            m = re.search(r"at (http://[0-9.:]+)/v1", line)
            if m:
                base = m.group(1)
                break
        assert base, "server did not start"
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        small = json.dumps({"max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}).encode()
        assert post(base, small) == 200
        for w in a.workloads.split(","):
            if w == "many":
                msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": "hello"} for i in range(a.messages)]
            else:
                msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": "word " * 380} for i in range(2000)]
            body = json.dumps({"max_tokens": 4, "messages": msgs}).encode()
            before = rss_mib(proc.pid)
            statuses, peak = [], [before]
            lock = threading.Lock()

            def client(n):
                for _ in range(n):
                    st = post(base, body)
                    with lock:
                        statuses.append(st)
                        peak.append(rss_mib(proc.pid))

            t0 = time.time()
            per = max(1, (a.requests if w == "many" else a.big_requests) // a.clients)
            ts = [threading.Thread(target=client, args=(per,)) for _ in range(a.clients)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            after = rss_mib(proc.pid)
            time.sleep(2)
            settled = rss_mib(proc.pid)
            print(json.dumps({
                "workload": w, "body_bytes": len(body), "requests": len(statuses),
                "statuses": sorted(set(statuses)), "seconds": round(time.time() - t0, 1),
                "rss_before_mib": round(before), "rss_peak_mib": round(max(peak)),
                "rss_after_mib": round(after), "rss_after_2s_mib": round(settled),
            }), flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
