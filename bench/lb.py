#!/usr/bin/env python3
"""Load balancer benchmark for `berth up` (called by bench/lb.sh; see there).

One `berth up` with the blog's two tasks behind its load balancer. The same
requests go to one task directly (plain HTTP, as an ALB target is reached)
and through the load balancer's HTTPS listener, in one run:

- small requests: `wrk` on GET /health, requests per second;
- throughput: `wrk` on GET of a 1 MiB file, MB/s;
- one stream each way: `curl` upload and download of a large file, MB/s,
  and the `berth up` process's peak memory before and after the upload
  through it (the proxy streams, so the upload must not grow it).

Files are put on both volumes and requested with `X-Berth-Scope: local`,
so each task answers from its own volume: the figures measure the load
balancer, not the file service's cluster mode. Loopback only.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

LOCAL = "X-Berth-Scope: local"


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def wrk(url, seconds, conns, header=None):
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency"]
    if header:
        cmd += ["-H", header]
    out = run(cmd + [url])
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    tr = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    scale = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[tr.group(2)]
    p99 = re.search(r"99%\s+([\d.]+)(\w+)", out)
    p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "mbps": float(tr.group(1)) * scale / 1e6, "p99_ms": p99_ms,
            "non2xx": int(errors.group(1)) if errors else 0, "socket_errors": sock.group(1) if sock else ""}


def curl_speed(args, what):
    out = run(["curl", "-sS", "-k", "-H", LOCAL, "-o", "/dev/null", "-w", "%{http_code} %{" + what + "}"] + args)
    code, speed = out.split()
    if not code.startswith("2"):
        sys.exit(f"curl {args}: HTTP {code}")
    return float(speed) / 1e6


def hwm_kib(pid):
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", text).group(1)), int(re.search(r"VmRSS:\s+(\d+)", text).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--berth", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--big-mib", type=int, default=1024)
    args = ap.parse_args()

    work = Path(args.work)
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    state = work / ".berth"
    (work / "berth.toml").write_text("""
[lb]
http_port = 0
https_port = 0
health_interval = "1s"
grace_period = "0s"
[[service]]
name = "files"
desired_count = 2
[service.autoscaling]
enabled = false
[service.health_check]
interval = "1s"
start_period = "1s"
""")
    env = dict(os.environ, BERTH_PASSWORD="bench", BERTH_LOG_FORMAT="json")
    log = open(work / "up.log", "wb")
    proc = subprocess.Popen([args.berth, "up", "--state", str(state), "--config", str(work / "berth.toml")],
                            stdout=log, stderr=log, env=env)
    try:
        deadline = time.time() + 60
        while not (state / "lb.json").exists() or not (state / "admin.json").exists():
            if time.time() > deadline or proc.poll() is not None:
                sys.exit(f"berth up did not start; see {work / 'up.log'}")
            time.sleep(0.1)
        time.sleep(0.2)
        lb = json.loads((state / "lb.json").read_text())
        admin = json.loads((state / "admin.json").read_text())
        token = (state / "admin.token").read_text().strip()

        def api(path):
            req = urllib.request.Request(admin["url"] + path)
            req.add_header("Authorization", "Bearer " + token)
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())

        while True:
            tasks = [t for t in api("/v1/tasks") if t["last_status"] == "RUNNING" and t["health"] == "HEALTHY"]
            if len(tasks) == 2:
                break
            if time.time() > deadline:
                sys.exit("tasks did not become healthy")
            time.sleep(0.2)
        https = lb["https"]
        while subprocess.run(["curl", "-sfk", "-o", "/dev/null", f"{https}/health"]).returncode != 0:
            if time.time() > deadline:
                sys.exit("the load balancer has no healthy target")
            time.sleep(0.2)
        direct = "http://" + tasks[0]["endpoint"]

        one = work / "one-mib.bin"
        one.write_bytes(os.urandom(1 << 20))
        big = work / "big.bin"
        with open(big, "wb") as f:
            for _ in range(args.big_mib // 64):
                f.write(os.urandom(64 << 20))
        for t in tasks:
            for path in (one, big):
                run(["curl", "-sSf", "-H", LOCAL, "-T", str(path), f"http://{t['endpoint']}/files/{path.name}"])

        results = {}
        for name, base in (("direct", direct), ("lb", https)):
            print(f"{name}: wrk /health", file=sys.stderr)
            results[f"{name}_health"] = wrk(f"{base}/health", args.seconds, 32)
            print(f"{name}: wrk 1 MiB downloads", file=sys.stderr)
            results[f"{name}_1mib"] = wrk(f"{base}/download/one-mib.bin", args.seconds, 8, LOCAL)
            print(f"{name}: one-stream download and upload of {args.big_mib} MiB", file=sys.stderr)
            results[f"{name}_down"] = curl_speed([f"{base}/download/big.bin"], "speed_download")
            before = hwm_kib(proc.pid)
            results[f"{name}_up"] = curl_speed(["-T", str(big), f"{base}/files/up-{name}.bin"], "speed_upload")
            results[f"{name}_mem"] = (before, hwm_kib(proc.pid))
    finally:
        try:
            req = urllib.request.Request(admin["url"] + "/v1/down", data=b"{}", method="POST")
            req.add_header("Authorization", "Bearer " + token)
            req.add_header("Content-Type", "application/json")
            urllib.request.urlopen(req, timeout=10)
            proc.wait(timeout=120)
        except Exception:
            proc.kill()
        for p in (work / "big.bin",):
            p.unlink(missing_ok=True)

    def ratio(a, b, target=0.8):
        r = a / b if b else 0
        return f"{r:.2f}× {'PASS' if r >= target else 'FAIL'}"

    d, l = results, results
    rows = [
        ("GET /health, wrk 2 threads × 32 connections (req/s)", d["direct_health"]["rps"], l["lb_health"]["rps"]),
        ("GET /health p99 latency (ms)", d["direct_health"]["p99_ms"], l["lb_health"]["p99_ms"]),
        ("GET 1 MiB file, wrk 2 × 8 connections (req/s)", d["direct_1mib"]["rps"], l["lb_1mib"]["rps"]),
        ("GET 1 MiB file (MB/s)", d["direct_1mib"]["mbps"], l["lb_1mib"]["mbps"]),
        (f"one-stream download, {args.big_mib} MiB (MB/s)", d["direct_down"], l["lb_down"]),
        (f"one-stream upload, {args.big_mib} MiB (MB/s)", d["direct_up"], l["lb_up"]),
    ]
    lines = [
        "| measurement | task directly (HTTP) | through the load balancer (HTTPS) | lb / direct (target ≥ 0.8×) |",
        "|---|---|---|---|",
    ]
    for label, a, b in rows:
        cell = "" if "latency" in label else ratio(b, a)
        lines.append(f"| {label} | {a:.1f} | {b:.1f} | {cell} |")
    (hwm0, _), (hwm1, rss1) = results["lb_mem"]
    lines.append("")
    lines.append(f"`berth up` (load balancer, controller, supervisor in one process) peak RSS before the "
                 f"{args.big_mib} MiB upload through it: {hwm0 / 1024:.1f} MiB; after: {hwm1 / 1024:.1f} MiB "
                 f"(RSS then {rss1 / 1024:.1f} MiB).")
    errs = [f"{k}: non-2xx {v['non2xx']}, socket errors {v['socket_errors'] or 'none'}"
            for k, v in results.items() if isinstance(v, dict)]
    lines.append("wrk errors: " + "; ".join(errs) + ".")
    text = "\n".join(lines) + "\n"
    Path(args.results).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
