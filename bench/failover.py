#!/usr/bin/env python3
"""Failover benchmark for `berth up` (called by bench/failover.sh; see there).

Measures the time from `kill -9` of a task's process to a replacement that
passes its health check and lists every file of the volume, over N runs, at
several volume sizes, with the same-host adopt path and with the restore
path; then a mass interruption of M claims at once. As the peer for the
restore path, `restic restore` of the same snapshot from berth's repository
(restic reads it) is timed on the same disk. Everything is on loopback.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

SIZES = {"10M": 10 << 20, "1G": 1 << 30, "4G": 4 << 30}


class Up:
    """One `berth up` with its own state folder, driven through its admin API."""

    def __init__(self, berth, work, count, adopt, health_interval="100ms", image=None, background=None):
        self.berth, self.work = berth, Path(work)
        subprocess.run(["rm", "-rf", str(self.work)], check=True)
        self.work.mkdir(parents=True)
        self.state = self.work / ".berth"
        (self.work / "berth.toml").write_text(
            f"""
[controller]
resync_interval = "5s"
sweep_grace = "5s"
adopt = {"true" if adopt else "false"}
crash_loop_reset = "1s"
[lb]
enabled = false
[[service]]
name = "files"
desired_count = {count}
stop_timeout = "5s"
{f'image = "{image}"' if image else ""}
{f'background_snapshots = "{background}"' if background else ""}
[service.autoscaling]
enabled = false
[service.retention]
keep_last = 3
keep_daily = 0
[service.health_check]
interval = "{health_interval}"
timeout = "2s"
retries = 2
start_period = "1s"
"""
        )
        env = dict(os.environ, BERTH_PASSWORD="bench", BERTH_LOG_FORMAT="json")
        self.log = open(self.work / "up.log", "wb")
        self.proc = subprocess.Popen(
            [berth, "up", "--state", str(self.state), "--config", str(self.work / "berth.toml")],
            stdout=self.log, stderr=self.log, env=env,
        )
        deadline = time.time() + 60
        while not (self.state / "admin.json").exists() or not (self.state / "admin.token").exists():
            if time.time() > deadline or self.proc.poll() is not None:
                sys.exit(f"berth up did not start; see {self.work / 'up.log'}")
            time.sleep(0.05)
        time.sleep(0.1)
        self.url = json.loads((self.state / "admin.json").read_text())["url"]
        self.token = (self.state / "admin.token").read_text().strip()

    def api(self, path, body=None):
        req = urllib.request.Request(self.url + path, method="POST" if body is not None else "GET",
                                     data=json.dumps(body).encode() if body is not None else None)
        req.add_header("Authorization", "Bearer " + self.token)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def ready_tasks(self):
        """The healthy running task of each claim."""
        out = {}
        for t in self.api("/v1/tasks"):
            if t["last_status"] == "RUNNING" and t["health"] == "HEALTHY":
                out[t["claim"]] = t
        return out

    def wait_ready(self, claims, newer_than=None, timeout=600):
        """Waits until every claim has a healthy task (of a generation above
        `newer_than[claim]`) whose /files lists `files[claim]`; returns the tasks."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            tasks = self.ready_tasks()
            if all(c in tasks and (newer_than is None or tasks[c]["generation"] > newer_than[c]) for c in claims):
                return tasks
            time.sleep(0.005)
        sys.exit(f"claims {claims} not ready after {timeout}s; see {self.work / 'up.log'}")

    def down(self):
        try:
            self.api("/v1/down", {})
        except Exception:
            pass
        try:
            self.proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def files_of(endpoint):
    with urllib.request.urlopen(f"http://{endpoint}/files", timeout=10) as r:
        listing = json.loads(r.read())
    return {f["name"]: f["size"] for f in listing["files"]}


def volume_dir(up, task):
    claim = next(c for c in up.api("/v1/claims") if c["name"] == task["claim"])
    return up.state / "volumes" / claim["volume"]


def fill(path, size):
    """A volume with one big incompressible file and 100 small ones."""
    with open(path / "big.bin", "wb") as f:
        left = size
        while left > 0:
            n = min(left, 64 << 20)
            f.write(os.urandom(n))
            left -= n
    for i in range(100):
        (path / f"small-{i:03}.txt").write_text(f"file {i}\n" * 50)


def pct(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def failover_runs(up, runs, expect):
    times = []
    for i in range(runs):
        task = up.ready_tasks()["files-0"]
        time.sleep(1.1)  # past crash_loop_reset: each kill is a first crash, not a loop
        t0 = time.monotonic()
        os.kill(task["pid"], signal.SIGKILL)
        while True:
            new = up.wait_ready(["files-0"], {"files-0": task["generation"]})["files-0"]
            try:
                if files_of(new["endpoint"]) == expect:
                    break
            except Exception:
                pass
            time.sleep(0.005)
        times.append(time.monotonic() - t0)
        print(f"    run {i + 1:2}: {times[-1] * 1000:8.1f} ms", flush=True)
    return times


def restic_restore(up, work):
    """Times `restic restore` of the claim's head snapshot from berth's repository."""
    claim = next(c for c in up.api("/v1/claims") if c["name"] == "files-0")
    target = Path(work) / "restic-restore"
    subprocess.run(["rm", "-rf", str(target)], check=True)
    env = dict(os.environ, RESTIC_PASSWORD="bench")
    t0 = time.monotonic()
    subprocess.run(["restic", "-q", "-r", str(up.state / "repository"), "restore", claim["head_snapshot"],
                    "--target", str(target)], check=True, env=env)
    took = time.monotonic() - t0
    subprocess.run(["rm", "-rf", str(target)], check=True)
    return took


def defaults_scenario(berth, work, runs, image=None):
    """The shipped defaults (the blog's 30 s health checks, the load balancer
    checking every 30 s and needing 2 passes; start intervals as shipped),
    one task: first `berth up` → the first 200 of /health through the HTTPS
    load balancer, then `runs` Spot stops → an uploaded file downloads
    through the load balancer again."""
    import ssl
    work = Path(work)
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    state = work / ".berth"
    (work / "berth.toml").write_text(
        f"""
[lb]
http_port = 0
https_port = 0
[[service]]
name = "files"
desired_count = 1
{f'image = "{image}"' if image else ""}
[service.autoscaling]
enabled = false
"""
    )
    env = dict(os.environ, BERTH_PASSWORD="bench", BERTH_LOG_FORMAT="json")
    log = open(work / "up.log", "wb")
    t0 = time.monotonic()
    proc = subprocess.Popen([berth, "up", "--state", str(state), "--config", str(work / "berth.toml")],
                            stdout=log, stderr=log, env=env)
    while not (state / "lb.json").exists():
        if proc.poll() is not None:
            sys.exit(f"berth up exited; see {work / 'up.log'}")
        time.sleep(0.005)
    lb = json.loads((state / "lb.json").read_text())
    https = lb["https"]
    tls = ssl.create_default_context(cafile=lb["cert"])

    def get(path):
        try:
            with urllib.request.urlopen(https + path, timeout=5, context=tls) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, b""
        except Exception:
            return None, b""

    while get("/health")[0] != 200:
        time.sleep(0.005)
    first_start = time.monotonic() - t0
    print(f"    first berth up → 200 through the load balancer: {first_start * 1000:.0f} ms", flush=True)
    up = Up.__new__(Up)
    up.berth, up.work, up.state, up.proc, up.log = berth, work, state, proc, log
    up.url = json.loads((state / "admin.json").read_text())["url"]
    up.token = (state / "admin.token").read_text().strip()
    body = os.urandom(256 << 10)
    boundary = "berthbench"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"kept.bin\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + body + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(https + "/upload", data=form, method="POST")
    req.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
    with urllib.request.urlopen(req, timeout=30, context=tls) as r:
        assert r.status == 200, r.status
    times = []
    for i in range(runs):
        task = up.wait_ready(["files-0"])["files-0"]
        time.sleep(1.1)
        t0 = time.monotonic()
        up.api(f"/v1/tasks/{task['arn'].rsplit('/', 1)[1]}/stop", {"reason": "spot"})
        # The old task drains first: wait for the new generation, then for the file.
        while True:
            tasks = [t for t in up.api("/v1/tasks") if t["claim"] == "files-0" and t["generation"] > task["generation"]]
            if tasks:
                status, data = get("/download/kept.bin")
                if status == 200 and data == body:
                    break
            time.sleep(0.005)
        times.append(time.monotonic() - t0)
        print(f"    stop {i + 1:2} → kept.bin through the load balancer: {times[-1] * 1000:8.1f} ms", flush=True)
    up.down()
    subprocess.run(["rm", "-rf", str(work)], check=True)
    return first_start, times


def wait_background(up, files, written):
    """Seconds until a background snapshot started after `written` (epoch
    seconds, when the data was written) holds all `files`."""
    import datetime
    t0 = time.monotonic()
    while True:
        out = subprocess.run([up.berth, "snapshot", "list", "--json", "--state", str(up.state)],
                             check=True, capture_output=True, text=True,
                             env=dict(os.environ, BERTH_PASSWORD="bench")).stdout
        for s in json.loads(out):
            head, _, frac = s["time"].rstrip("Z").partition(".")
            started = datetime.datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()
            if s.get("kind") == "background" and s.get("files") == files and started >= written:
                return time.monotonic() - t0
        time.sleep(0.1)


def engine_floor(image, runs, work):
    """The engine's own start of the same image, as the floor of a container
    failover: `podman run` with the volume, the port and the network berth
    gives it, until /health answers."""
    import socket
    vol = Path(work) / "floor-volume"
    vol.mkdir(parents=True, exist_ok=True)
    os.chown(vol, 10001, 10001)
    times = []
    for i in range(runs):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        name = f"berth-bench-floor-{os.getpid()}-{i}"
        t0 = time.monotonic()
        # The network berth gives a container task on Podman (engine.rs).
        subprocess.run(["podman", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:5000",
                        "--network", "slirp4netns:allow_host_loopback=true,port_handler=slirp4netns",
                        "-v", f"{vol}:/data", "-e", "STORAGE_PATH=/data", "-e", "PORT=5000",
                        "-e", "BERTH_LISTEN=0.0.0.0", image], check=True, stdout=subprocess.DEVNULL)
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except Exception:
                time.sleep(0.005)
        times.append(time.monotonic() - t0)
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], check=True, stdout=subprocess.DEVNULL)
        print(f"    floor run {i + 1:2}: {times[-1] * 1000:8.1f} ms", flush=True)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--berth", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--sizes", default="10M,1G,4G")
    ap.add_argument("--paths", default="adopt,restore")
    ap.add_argument("--mass", type=int, default=100)
    ap.add_argument("--runtimes", default="process")
    ap.add_argument("--defaults", action="store_true",
                    help="also the shipped-defaults scenario through the HTTPS load balancer")
    ap.add_argument("--image", help="the berth serve image of the container runtime")
    ap.add_argument("--background", help="background_snapshots for the service (e.g. 2s); the first failover "
                    "after writing the data then waits for a background snapshot that holds it")
    ap.add_argument("--results", required=True)
    a = ap.parse_args()

    rows = []
    runtimes = [r for r in a.runtimes.split(",") if r]
    cells = [(r, s, p) for r in runtimes for s in a.sizes.split(",") if s for p in a.paths.split(",") if p]
    for runtime, size_name, path in cells:
        print(f"== {runtime} tasks, {path} path, {size_name} volume, {a.runs} runs", flush=True)
        work = Path(a.work) / f"{runtime}-{path}-{size_name}"
        image = a.image if runtime == "container" else None
        up = Up(a.berth, work, 1, adopt=(path == "adopt"), image=image, background=a.background)
        task = up.wait_ready(["files-0"])["files-0"]
        fill(volume_dir(up, task), SIZES[size_name])
        written = time.time()
        expect = files_of(task["endpoint"])
        if a.background:
            caught_up = wait_background(up, len(expect), written)
            print(f"    a background snapshot held the data {caught_up:.2f} s after it was written", flush=True)
        # The first failover after writing the data also snapshots every
        # new byte (there is no earlier snapshot to be incremental to):
        # timed, but reported apart from the steady-state runs.
        first = failover_runs(up, 1, expect)[0]
        times = failover_runs(up, a.runs, expect)
        peer = restic_restore(up, a.work) if path == "restore" else None
        up.down()
        subprocess.run(["rm", "-rf", str(work)], check=True)  # 4 GiB cells would fill the disk
        rows.append((runtime, path, size_name, times, peer, first))
        print(f"   p50 {pct(times, 50) * 1000:.0f} ms, p99 {pct(times, 99) * 1000:.0f} ms", flush=True)

    floor = engine_floor(a.image, a.runs, a.work) if "container" in runtimes else None

    defaults = []
    if a.defaults:
        for runtime in runtimes:
            print(f"== shipped defaults, {runtime} tasks, through the HTTPS load balancer", flush=True)
            image = a.image if runtime == "container" else None
            defaults.append((runtime, *defaults_scenario(a.berth, Path(a.work) / f"defaults-{runtime}", a.runs, image)))

    mass = None
    if a.mass:
        print(f"== mass interruption: {a.mass} claims", flush=True)
        up = Up(a.berth, Path(a.work) / "mass", a.mass, adopt=True, health_interval="500ms")
        claims = [f"files-{i}" for i in range(a.mass)]
        t_start = time.monotonic()
        tasks = up.wait_ready(claims)
        started = time.monotonic() - t_start
        for t in tasks.values():
            (volume_dir(up, t) / "data.txt").write_text(t["claim"] * 1000)
        time.sleep(1.1)
        t0 = time.monotonic()
        for t in tasks.values():
            os.kill(t["pid"], signal.SIGKILL)
        up.wait_ready(claims, {c: tasks[c]["generation"] for c in claims})
        mass = (time.monotonic() - t0, started)
        print(f"   all {a.mass} replaced in {mass[0]:.1f} s (first start took {started:.1f} s)", flush=True)
        up.down()
        subprocess.run(["rm", "-rf", str(Path(a.work) / "mass")], check=True)

    with open(a.results, "w") as out:
        out.write(f"runs per cell: {a.runs}; times from `kill -9` of the task to a replacement that passes its health\n")
        out.write("check and lists every file (health check interval 100 ms, so up to 100 ms of each figure is the probe).\n\n")
        out.write("| tasks | path | volume | p50 | p99 | min | max | first failover after writing the data | "
                  "peer: `restic restore` of the same snapshot |\n|---|---|---|---|---|---|---|---|---|\n")
        ms = lambda v: f"{v * 1000:.0f} ms"
        for runtime, path, size, times, peer, first in rows:
            out.write(f"| {runtime} | {path} | {size} | {ms(pct(times, 50))} | {ms(pct(times, 99))} | "
                      f"{ms(min(times))} | {ms(max(times))} | {ms(first)} | {ms(peer) if peer is not None else '–'} |\n")
        for runtime, first_start, times in defaults:
            out.write(f"\nshipped defaults, {runtime} tasks, one task, through the HTTPS load balancer: first `berth up` → "
                      f"200 from /health in {ms(first_start)}; Spot stop → an uploaded file downloads again: "
                      f"p50 {ms(pct(times, 50))}, p99 {ms(pct(times, 99))}, min {ms(min(times))}, max {ms(max(times))} "
                      f"({len(times)} runs)\n")
        if floor:
            out.write(f"\nfloor of a container failover: the engine's own `podman run` of the same image with its "
                      f"volume and port, until /health answers: p50 {ms(pct(floor, 50))}, p99 {ms(pct(floor, 99))}, "
                      f"min {ms(min(floor))}, max {ms(max(floor))} ({len(floor)} runs)\n")
        if mass:
            out.write(f"\nmass interruption: {a.mass} claims killed at once, all replaced and healthy in "
                      f"{mass[0]:.1f} s (their first start took {mass[1]:.1f} s)\n")
    print(open(a.results).read())


if __name__ == "__main__":
    main()
