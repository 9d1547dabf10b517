#!/usr/bin/env python3
"""Load balancer benchmark for `berth up` (called by bench/lb.sh; see there).

One `berth up` with the blog's two tasks behind its load balancer. The same
requests go to one task directly (plain HTTP, as an ALB target is reached)
and through the load balancer's HTTPS listener, in one run:

- small requests: `wrk` on GET /health, requests per second;
- throughput: `wrk` on GET of a 1 MiB file, MB/s;
- one stream each way: `curl` upload and download of a large file, MB/s,
  and the `berth up` process's resident memory while the upload streams
  through it (it must not grow with the upload).

The peer is nginx as a streaming reverse proxy (proxy_buffering and
proxy_request_buffering off, keepalive to the upstreams) over the same two
tasks, with the same certificate, in the same run.

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
import threading
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


NGINX_CONF = """
daemon off;
master_process on;
worker_processes auto;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    client_max_body_size 0;
    keepalive_requests 100000;
    upstream tasks {{
        server {t0};
        server {t1};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{http_port};
        listen 127.0.0.1:{https_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://tasks;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            # Stream both ways, as berth's load balancer does.
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_buffer_size 256k;
            proxy_buffers 4 256k;
            proxy_busy_buffers_size 512k;
        }}
    }}
}}
"""


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(work, tasks, cert, key):
    """nginx as a reverse proxy over the same two tasks, HTTP and HTTPS."""
    run_dir = work / "nginx"
    run_dir.mkdir(exist_ok=True)
    http_port, https_port = free_port(), free_port()
    conf = run_dir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(run=run_dir, t0=tasks[0]["endpoint"], t1=tasks[1]["endpoint"],
                                      http_port=http_port, https_port=https_port, cert=cert, key=key))
    user = ["-g", "user root;"] if os.geteuid() == 0 else []
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(run_dir)] + user,
                            stdout=subprocess.DEVNULL, stderr=open(run_dir / "stderr.log", "wb"))
    for _ in range(100):
        if subprocess.run(["curl", "-sf", "-o", "/dev/null", f"http://127.0.0.1:{http_port}/health"]).returncode == 0:
            return proc, f"http://127.0.0.1:{http_port}", f"https://127.0.0.1:{https_port}"
        time.sleep(0.1)
    sys.exit(f"nginx did not start; see {run_dir}")


def sample_rss(pid, out, stop):
    """Appends the process's resident memory (KiB) every 20 ms until `stop`."""
    while not stop.is_set():
        out.append(hwm_kib(pid)[1])
        time.sleep(0.02)


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
http = "forward"
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

        nginx, nginx_http, nginx_https = start_nginx(work, tasks, lb["cert"], str(state / "lb-key.pem"))
        results = {}
        targets = (("direct", direct), ("lbhttp", lb["http"]), ("lb", https), ("nginxhttp", nginx_http),
                   ("nginx", nginx_https))
        for name, base in targets:
            print(f"{name}: wrk /health", file=sys.stderr)
            results[f"{name}_health"] = wrk(f"{base}/health", args.seconds, 32)
            print(f"{name}: wrk 1 MiB downloads", file=sys.stderr)
            results[f"{name}_1mib"] = wrk(f"{base}/download/one-mib.bin", args.seconds, 8, LOCAL)
            print(f"{name}: one-stream download and upload of {args.big_mib} MiB", file=sys.stderr)
            results[f"{name}_down"] = curl_speed([f"{base}/download/big.bin"], "speed_download")
            if name.startswith("nginx"):
                results[f"{name}_up"] = curl_speed(["-T", str(big), f"{base}/files/up-{name}.bin"], "speed_upload")
                continue
            before = hwm_kib(proc.pid)[1]
            samples = []
            sampler = threading.Thread(target=sample_rss, args=(proc.pid, samples, stop := threading.Event()))
            sampler.start()
            try:
                results[f"{name}_up"] = curl_speed(["-T", str(big), f"{base}/files/up-{name}.bin"], "speed_upload")
            finally:
                stop.set()
                sampler.join()
            results[f"{name}_mem"] = (before, max(samples, default=before))
        nginx.terminate()
        nginx.wait(timeout=10)
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

    r = results
    rows = [
        ("GET /health, wrk 2 threads × 32 connections (req/s)", "health", "rps"),
        ("GET /health p99 latency (ms)", "health", "p99_ms"),
        ("GET 1 MiB file, wrk 2 × 8 connections (req/s)", "1mib", "rps"),
        ("GET 1 MiB file (MB/s)", "1mib", "mbps"),
        (f"one-stream download, {args.big_mib} MiB (MB/s)", "down", None),
        (f"one-stream upload, {args.big_mib} MiB (MB/s)", "up", None),
    ]
    lines = [
        "| measurement | task directly (HTTP) | berth lb, HTTP forward | ratio | berth lb, HTTPS | ratio "
        "| nginx proxy, HTTP | ratio | nginx proxy, HTTPS | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = ("direct", "lbhttp", "lb", "nginxhttp", "nginx")
    for label, key, field in rows:
        vals = [r[f"{n}_{key}"] if field is None else r[f"{n}_{key}"][field] for n in names]
        cells = [f"{vals[0]:.1f}"]
        for v in vals[1:]:
            cells += [f"{v:.1f}", "" if "latency" in label else ratio(v, vals[0])]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    for name, what in (("lbhttp", "HTTP forward"), ("lb", "HTTPS")):
        rss0, peak = results[f"{name}_mem"]
        lines.append(f"`berth up` (load balancer, controller and supervisor in one process) resident memory "
                     f"before the {args.big_mib} MiB upload through its {what} listener: {rss0 / 1024:.1f} MiB; "
                     f"highest while it streamed (sampled every 20 ms): {peak / 1024:.1f} MiB.")
    errs = [f"{k}: non-2xx {v['non2xx']}, socket errors {v['socket_errors'] or 'none'}"
            for k, v in results.items() if isinstance(v, dict)]
    lines.append("wrk errors: " + "; ".join(errs) + ".")
    text = "\n".join(lines) + "\n"
    Path(args.results).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
