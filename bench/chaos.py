#!/usr/bin/env python3
"""Chaos soak of `berth up` (called by bench/chaos.sh; see there).

Bounded load through the HTTPS load balancer (uploads, overwrites, deletes,
downloads; every acknowledged operation recorded with its SHA-256) while a
seeded random schedule of faults runs: kill -9 of tasks and of `berth up`
itself (restarted at once), Spot, health and user stops, backups now,
deployments and scaling. At the end, with the load stopped: every
acknowledged write is there with its SHA-256 and every acknowledged delete
stays deleted (read through the load balancer), `berth snapshot check
--read-data` passes, no orphan volume is left, and the ledger agrees with
the repository (`berth ledger check`). Everything runs on loopback.

An operation that got no answer (a reset while berth up was killed, a
timeout) or a 502/504 (the proxy lost its target mid-request) is
*uncertain*: its name may hold either version, and is left out of the loss
count (reported apart). A 503 was refused before anything was written: the
name keeps its acknowledged state and is checked. Answers 502/503/504 while
a claim is being replaced are *unavailable*, not losses.
"""

import argparse
import hashlib
import json
import os
import random
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

FAULTS = ["kill-task", "spot", "health", "user", "kill-up", "backup", "deploy", "scale"]


class Up:
    """`berth up` on one state folder, restartable, driven through its admin API."""

    def __init__(self, berth, work):
        self.berth, self.work = berth, Path(work)
        self.state = self.work / ".berth"
        self.config = self.work / "berth.toml"
        self.replica = self.work / "replica"
        self.config.write_text(
            f"""
[controller]
resync_interval = "2s"
sweep_grace = "5s"
down_timeout = "60s"
[lb]
http_port = 0
https_port = 0
health_interval = "200ms"
health_timeout = "2s"
grace_period = "0s"
deregistration_delay = "1s"
[[service]]
name = "files"
desired_count = 2
stop_timeout = "5s"
[service.autoscaling]
enabled = false
[service.health_check]
interval = "300ms"
timeout = "2s"
retries = 2
start_period = "3s"
[service.retention]
keep_last = 5
keep_daily = 0
[service.backup]
interval = "20s"
[[service.backup.replica]]
name = "dr"
repo = "{self.replica}"
"""
        )
        self.env = dict(os.environ, BERTH_PASSWORD="chaos", BERTH_LOG_FORMAT="json")
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        log = open(self.work / f"up-{self.starts}.log", "wb")
        for stale in ["admin.json", "lb.json"]:
            (self.state / stale).unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [self.berth, "up", "--state", str(self.state), "--config", str(self.config)],
            stdout=log, stderr=log, env=self.env,
        )
        deadline = time.time() + 120
        while not all((self.state / f).exists() for f in ["admin.json", "admin.token", "lb.json"]):
            if time.time() > deadline or self.proc.poll() is not None:
                sys.exit(f"berth up did not start; see {self.work}/up-{self.starts}.log")
            time.sleep(0.05)
        time.sleep(0.2)
        self.url = json.loads((self.state / "admin.json").read_text())["url"]
        self.token = (self.state / "admin.token").read_text().strip()
        lb = json.loads((self.state / "lb.json").read_text())
        self.lb = lb["https"].rstrip("/")
        self.tls = ssl.create_default_context(cafile=lb["cert"])

    def api(self, path, body=None, timeout=10):
        req = urllib.request.Request(self.url + path, method="POST" if body is not None else "GET",
                                     data=json.dumps(body).encode() if body is not None else None)
        req.add_header("Authorization", "Bearer " + self.token)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"null")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def down(self):
        try:
            self.api("/v1/down", {})
        except Exception:
            pass
        try:
            return self.proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None

    def serving(self, count):
        """Whether `count` claims are running with a healthy task and no handoff."""
        try:
            claims = [c for c in self.api("/v1/claims") if c["desired"] == "running"]
            tasks = {t["arn"]: t for t in self.api("/v1/tasks")}
        except Exception:
            return False
        ok = [c for c in claims if c.get("handoff") is None and c.get("task") in tasks
              and tasks[c["task"]]["health"] == "HEALTHY"]
        return len(ok) >= count

    def cli(self, *args):
        return subprocess.run([self.berth, *args, "--state", str(self.state)], env=self.env,
                              capture_output=True, text=True)


class Book:
    """What the load was told: the acknowledged state of each name."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {}          # name -> sha256 of the acknowledged content
        self.deleted = set()     # names whose delete was acknowledged
        self.uncertain = set()   # names with an operation that got no answer
        self.counts = {k: 0 for k in ["upload", "overwrite", "delete", "download", "read-mismatch",
                                      "unavailable", "no-answer", "other-error"]}

    def count(self, key):
        with self.lock:
            self.counts[key] += 1


def request(up, method, name, body=None, timeout=15):
    url = f"{up.lb}/files/{name}" if method != "GET" else f"{up.lb}/download/{name}"
    req = urllib.request.Request(url, method=method, data=body)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=up.tls) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception:
        return None, b""


def worker(up, book, wid, rng, stop):
    mine = []  # names this worker owns: no two writers race on one name
    n = 0
    while not stop.is_set():
        roll = rng.random()
        if roll < 0.35 or not mine:
            name, kind = f"w{wid}-{n}.bin", "upload"
            n += 1
        elif roll < 0.55:
            name, kind = rng.choice(mine), "overwrite"
        elif roll < 0.7:
            name, kind = rng.choice(mine), "delete"
        else:
            name, kind = rng.choice(mine), "download"
        if kind in ("upload", "overwrite"):
            data = rng.randbytes(rng.randint(1, 256 * 1024))
            status, _ = request(up, "PUT", name, data)
            if status in (200, 201):
                with book.lock:
                    book.acked[name] = hashlib.sha256(data).hexdigest()
                    book.deleted.discard(name)
                    book.uncertain.discard(name)
                if name not in mine:
                    mine.append(name)
                book.count(kind)
            else:
                note_failure(book, name, status)
        elif kind == "delete":
            status, _ = request(up, "DELETE", name)
            if status in (200, 204):
                with book.lock:
                    book.acked.pop(name, None)
                    book.deleted.add(name)
                    book.uncertain.discard(name)
                mine.remove(name)
                book.count("delete")
            else:
                note_failure(book, name, status)
        else:
            status, body = request(up, "GET", name)
            with book.lock:
                want = book.acked.get(name)
                sure = name not in book.uncertain
            if status == 200 and sure and want and hashlib.sha256(body).hexdigest() != want:
                book.count("read-mismatch")
            elif status == 200:
                book.count("download")
            elif status in (404,) and sure and want:
                # Offline while its claim is parked by a user stop; judged at the end.
                book.count("unavailable")
            elif status in (502, 503, 504) or status is None:
                book.count("unavailable" if status else "no-answer")


def note_failure(book, name, status):
    if status == 503:
        # Refused before anything was written (no healthy target, or berth
        # serve's retry-later): the name keeps its acknowledged state.
        book.count("unavailable")
    elif status is None or status >= 500:
        # No answer, or the proxy lost its target mid-request: the write
        # may or may not have happened.
        with book.lock:
            book.uncertain.add(name)
        book.count("no-answer" if status is None else "unavailable")
    else:
        book.count("other-error")


def fault(up, kind, rng, counts):
    tasks = [t for t in up.api("/v1/tasks") if t["last_status"] == "RUNNING" and t.get("claim")]
    if kind in ("kill-task", "spot", "health", "user") and not tasks:
        return
    t = rng.choice(tasks) if tasks else None
    if kind == "kill-task" and t.get("pid"):
        os.kill(t["pid"], signal.SIGKILL)
    elif kind in ("spot", "health", "user"):
        up.api(f"/v1/tasks/{urllib.parse.quote(t['arn'], safe='')}/stop", {"reason": kind})
        if kind == "user":
            # A user's stop parks the claim; scaling out and back in brings it back.
            time.sleep(1)
            up.api("/v1/services/files/scale", {"count": 3})
            time.sleep(2)
            up.api("/v1/services/files/scale", {"count": 2})
    elif kind == "kill-up":
        up.kill9()
        up.start()
    elif kind == "backup":
        up.api(f"/v1/claims/{t['claim'] if t else 'files-0'}/backup", {}, timeout=60)
    elif kind == "deploy":
        try:
            up.api("/v1/services/files/deploy", {"env": {"CHAOS_REV": str(rng.randint(0, 1 << 30))}})
        except urllib.error.HTTPError as e:
            if e.code != 409:  # a deployment is already under way
                raise
    elif kind == "scale":
        up.api("/v1/services/files/scale", {"count": 3})
        time.sleep(3)
        up.api("/v1/services/files/scale", {"count": 2})
    counts[kind] = counts.get(kind, 0) + 1


def wait_serving(up, count, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if up.serving(count):
            return True
        time.sleep(0.2)
    return False


def verify(up, book):
    """Every acknowledged write there with its SHA-256, every acknowledged delete gone."""
    lost, resurrected = [], []
    for name, want in sorted(book.acked.items()):
        if name in book.uncertain:
            continue
        for _ in range(50):
            status, body = request(up, "GET", name)
            if status not in (502, 503, 504, None):
                break
            time.sleep(0.2)
        if status != 200 or hashlib.sha256(body).hexdigest() != want:
            lost.append((name, status))
    for name in sorted(book.deleted - book.uncertain - set(book.acked)):
        status, _ = request(up, "GET", name)
        if status != 404:
            resurrected.append((name, status))
    return lost, resurrected


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--berth", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--minutes", type=float, default=5)
    p.add_argument("--seed", type=int, default=20)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--faults", default=",".join(FAULTS), help="the kinds of fault to draw from")
    a = p.parse_args()
    work = Path(a.work)
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    rng = random.Random(a.seed)
    kinds = [k for k in a.faults.split(",") if k]
    unknown = [k for k in kinds if k not in FAULTS]
    if unknown or not kinds:
        sys.exit(f"--faults: {unknown or 'none given'}; the kinds are {','.join(FAULTS)}")
    up = Up(a.berth, work)
    up.start()
    if not wait_serving(up, 2):
        sys.exit("the claims did not start")
    book, stop = Book(), threading.Event()
    threads = [threading.Thread(target=worker, args=(up, book, w, random.Random(a.seed * 100 + w), stop))
               for w in range(a.workers)]
    for t in threads:
        t.start()
    faults, failed_faults = {}, []
    started = time.time()
    end = started + a.minutes * 60
    while time.time() < end:
        time.sleep(rng.uniform(6, 14))
        kind = rng.choice(kinds)
        try:
            fault(up, kind, rng, faults)
        except Exception as e:  # the admin API of a restarting berth up, say
            failed_faults.append(f"{kind}: {e}")
        print(f"[{time.time() - started:6.0f} s] {kind}; ops {book.counts}", flush=True)
    stop.set()
    for t in threads:
        t.join()
    # Every claim that ever ran, running: a claim parked by a scale-in
    # keeps its files offline (404) until it runs again; they are not lost.
    up.api("/v1/services/files/scale", {"count": 3})
    serving = wait_serving(up, 3)
    lost, resurrected = verify(up, book)
    code = up.down()
    check = up.cli("snapshot", "check", "--read-data")
    ledger = subprocess.run([a.berth, "ledger", "check", "--state", str(up.state), "--config", str(up.config)],
                            env=up.env, capture_output=True, text=True)
    volumes = json.loads(up.cli("volume", "list", "--json").stdout or "[]")
    per_claim = {}
    for v in volumes:
        per_claim.setdefault(v["claim"], []).append(v["id"])
    orphans = {c: ids for c, ids in per_claim.items() if len(ids) > 1}
    ops = sum(book.counts[k] for k in ["upload", "overwrite", "delete", "download"])
    report = [
        f"## chaos soak, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, seed {a.seed}, {a.minutes:g} min, "
        f"{a.workers} writers, faults {','.join(kinds)}",
        "",
        f"- acknowledged operations: {ops} ({book.counts['upload']} uploads, {book.counts['overwrite']} overwrites, "
        f"{book.counts['delete']} deletes, {book.counts['download']} verified downloads)",
        f"- faults: {sum(faults.values())} ({', '.join(f'{k} {v}' for k, v in sorted(faults.items()))}); "
        f"berth up started {up.starts} times; {len(failed_faults)} fault(s) could not be applied",
        f"- answers 502/503/504 while a claim was replaced: {book.counts['unavailable']}; no answer: "
        f"{book.counts['no-answer']}; names left uncertain by those: {len(book.uncertain)} "
        f"(checked: {len(set(book.acked) - book.uncertain)} acknowledged names, "
        f"{len(book.deleted - book.uncertain - set(book.acked))} acknowledged deletes)",
        f"- **lost acknowledged writes: {len(lost)}**; acknowledged deletes back: {len(resurrected)}; "
        f"reads that did not match their acknowledged content: {book.counts['read-mismatch']}",
        f"- every claim serving at the end (scaled to 3, so parked claims' files are online): {serving}; "
        f"berth down exit code: {code}",
        f"- `berth snapshot check --read-data`: exit {check.returncode}; `berth ledger check`: exit "
        f"{ledger.returncode}; claims with more than one volume (orphans): {len(orphans)}",
        "",
    ]
    if lost or resurrected or orphans or failed_faults:
        report += [f"    lost: {lost[:20]}", f"    resurrected: {resurrected[:20]}", f"    orphans: {orphans}",
                   f"    faults not applied: {failed_faults[:10]}", ""]
    print("\n".join(report))
    with open(a.results, "a") as f:
        f.write("\n".join(report) + "\n")
    bad = lost or resurrected or book.counts["read-mismatch"] or check.returncode or ledger.returncode or orphans
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
