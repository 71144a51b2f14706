"""Benchmark (not a test): the submission site in the last minutes before a deadline, on loopback.

A copy of the course is made in a temporary folder with assignment3's deadline moved to wall-clock time (now + a
short lead + the window, to the second, in the course's time zone): the server's own clock decides what is on
time, as on the day (AUTOGRADER_NOW is never set). The real server (`python -m autograder serve --device cpu`) runs
as a subprocess with SITE_CHECK_WORKERS check workers; its roster (N students) and their sign-in links are made by
the instructor's commands (`roster import`, `roster links`).

Then N students, each with their own cookie jar, sign in with their link and, each at a random moment within the
window before the deadline, open the assignment page, upload a notebook and open the receipt it redirects to
(and, as the receipt page's meta refresh does in a browser, reload it every 10 s while its check waits). Some
upload twice; a few first upload a notebook that submit's rules refuse and then a valid one; a few try again
10 s after the deadline and must be refused by the server's clock. The notebooks are the assignment's quick
samples (one epoch, or five for submitted-few-epochs) so that the public-check queue drains in bounded time.

Measured per upload: the latency of the POST (request start → response: a 303 to /receipt/… is a receipt, a 4xx
page with a message a refusal with its reason, anything else an error). Then every receipt is checked against the
record: the `attempts` rows of the database, the attempt files under DATA/attempts/ and the clients' receipts must
be the same set, each with the bytes sent, and each student's exchange folder must hold their latest receipted
upload. Finally the check queue is watched until it drains (or --max-drain seconds after the last upload): drain
time from the last upload, check throughput and the checks' states. The server is stopped at the end (also on
Ctrl-C or a failure). Prints a report and writes bench/results/site_load.json.

Usage: python bench/site_load.py [--students 200] [--window 300] [--workers 2] [--max-drain 1800] [--keep DIR]
       python bench/site_load.py --students 20 --window 30 --lead 30      (a short rehearsal: ~6 min on 2 cores)
The default run takes ~40 min on 2 cores (setup ~1 min, the window 5 min, the drain bound 30 min); 200 quick
checks take longer than that to drain on 2 cores (~3–5 checks/min): the report then says how many were left and
the drain rate (--max-drain 3600 lets them finish).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import hashlib
import html
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "reference" / "assignment3" / "samples"
ASSIGNMENT = "assignment3"
RESULTS = ROOT / "bench" / "results" / "site_load.json"

# Notebooks that pass submit's rules and train quickly (one epoch; submitted-few-epochs five).
QUICK = ["submitted-few-epochs", "style-sequential-list", "style-functional-tf-keras", "style-compile-classes",
         "style-activation-layers", "style-keras-input-tf-functions", "style-training-helper",
         "submitted-float16-images", "submitted-test2-digits"]
# Notebooks submit's rules refuse (each with its reason): a student's first, wrong, try.
REFUSED = {"sigmoid-retyped (no release metadata)": SAMPLES / "submitted-sigmoid-output-retyped.ipynb",
           "released, unanswered": ROOT / "assignments" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"}
REASONS = [   # a refusal page's English message → its reason, as counted in the report
    (re.compile(r"deadline .* has passed", re.S), "deadline passed"),
    (re.compile(r"not answered yet"), "cells not answered"),
    (re.compile(r"released assignment's metadata"), "not the released notebook"),
    (re.compile(r"cannot be read as a notebook"), "not a notebook"),
    (re.compile(r"edited"), "given cells edited"),
    (re.compile(r"too large"), "too large"),
    (re.compile(r"form has expired"), "CSRF (form expired)"),
]
ACCESS_LINE = re.compile(r'"(GET|POST) (\S+) HTTP/[\d.]+" (\d{3})')


# --- the course, the server ----------------------------------------------------------------------------------

def clean_env() -> dict:
    env = dict(os.environ)
    env.pop("AUTOGRADER_NOW", None)              # the server's own clock decides
    return env


def copy_course(folder: Path, deadline_local: str, workers: int) -> Path:
    """The course with assignment3 only, its deadline moved to ``deadline_local`` (course time, to the second)."""
    shutil.copy(ROOT / "grader_config.py", folder / "grader_config.py")
    with open(folder / "grader_config.py", "a", encoding="utf-8") as f:
        f.write(f"\n# bench/site_load.py\nDATA_DIR = {str(ROOT / 'data')!r}\nSITE_CHECK_WORKERS = {workers}\n")
    shutil.copytree(ROOT / "reference" / ASSIGNMENT, folder / "reference" / ASSIGNMENT,
                    ignore=shutil.ignore_patterns("__pycache__", "samples"))
    shutil.copytree(ROOT / "assignments" / ASSIGNMENT, folder / "assignments" / ASSIGNMENT)
    settings = folder / "reference" / ASSIGNMENT / "settings.py"
    text, count = re.subn(r'(?m)^DEADLINE = .*$', f'DEADLINE = "{deadline_local}"   # bench/site_load.py',
                          settings.read_text(encoding="utf-8"))
    assert count == 1, "settings.py has no DEADLINE line: update copy_course"
    settings.write_text(text, encoding="utf-8")
    return folder / "grader_config.py"


def course_timezone() -> ZoneInfo:
    sys.path.insert(0, str(ROOT))
    from autograder.course.config import load_config
    return load_config(ROOT / "grader_config.py").timezone


def cli(course: Path, *args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "autograder", "--config", str(course), *args], cwd=ROOT,
                         env=clean_env(), text=True, capture_output=True, timeout=300, check=False)
    if run.returncode:
        raise SystemExit(f"`autograder {' '.join(args)}` failed ({run.returncode}):\n{run.stdout}{run.stderr}")
    return run.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m autograder serve` in its own process group (its check workers and kernels with it)."""

    def __init__(self, course: Path, data: Path, port: int, log: Path):
        self.log_path = log
        self.log = open(log, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "autograder", "--config", str(course), "serve", "--host", "127.0.0.1",
             "--port", str(port), "--data", str(data), "--device", "cpu"],
            cwd=ROOT, env=clean_env(), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float = 120) -> float:
        import httpx
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited ({self.process.returncode}):\n{self.log_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"the server did not answer /healthz within {timeout} s")

    def stop(self) -> dict:
        """SIGINT to the server alone (uvicorn's graceful stop: the check runners stop), then SIGTERM, then SIGKILL
        for what is left of its group. Not SIGINT to the whole group, as a terminal's Ctrl-C would send it: that
        reaches the check workers too, and a check interrupted so is recorded as failed (see the report)."""
        if self.process.poll() is None:
            started = time.monotonic()
            for sig, wait in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    self.process.send_signal(sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            stopped = {"exit_code": self.process.returncode, "stop_s": round(time.monotonic() - started, 1)}
        else:
            stopped = {"exit_code": self.process.returncode, "stop_s": 0.0, "exited_by_itself": True}
        try:
            os.killpg(self.process.pid, signal.SIGKILL)    # what is left of the group: workers, kernels
        except ProcessLookupError:
            pass
        self.log.close()
        return stopped

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")


# --- the students ------------------------------------------------------------------------------------------------

@dataclass
class Upload:
    student: str
    kind: str                    # on time | second | refused first | after deadline
    notebook: str
    sha256: str
    scheduled_s: float           # seconds before (−) or after (+) the deadline it was planned for
    sent_s: float = 0.0          # when the POST started, relative to the deadline
    page_s: float | None = None  # the assignment page's latency (where the CSRF token is read)
    latency_s: float | None = None
    status: int | None = None
    outcome: str = "error"       # receipt | refused | error
    receipt: str = ""
    reason: str = ""
    receipt_page_s: float | None = None
    receipt_page_ok: bool | None = None


@dataclass
class Student:
    id: str
    link: str
    plan: list = field(default_factory=list)     # Upload, in order
    signin_s: float | None = None
    refreshes: list = field(default_factory=list)


def reason_of(page: str) -> str:
    alert = re.search(r'<div class="box bad"[^>]*>.*?<p class="en">(.*?)</p>', page, re.S)
    text = html.unescape(alert.group(1)) if alert else ""
    for pattern, reason in REASONS:
        if pattern.search(text):
            return reason
    return f"other: {text[:80]}" if text else "no message"


def plan_uploads(students: list[Student], window: float, twice: float, refused: float, late: int,
                 late_after: float, rng: random.Random) -> None:
    quick = {name: (SAMPLES / f"{name}.ipynb").read_bytes() for name in QUICK}
    wrong = {name: path.read_bytes() for name, path in REFUSED.items()}

    def upload(s: Student, kind: str, name: str, data: bytes, at: float) -> None:
        s.plan.append((Upload(s.id, kind, name, hashlib.sha256(data).hexdigest(), round(at, 3)), data))

    n = len(students)
    picks = rng.sample(range(n), n)
    twice_ids = set(picks[:round(n * twice)])
    refused_ids = set(picks[round(n * twice):round(n * twice) + round(n * refused)])
    late_ids = set(rng.sample(range(n), min(late, n)))
    for i, s in enumerate(students):
        first = QUICK[i % len(QUICK)]
        if i in twice_ids or i in refused_ids:
            a, b = sorted(rng.uniform(-window, -0.5) for _ in range(2))
            if i in refused_ids:
                name = list(wrong)[i % len(wrong)]
                upload(s, "refused first", name, wrong[name], a)
                upload(s, "on time", first, quick[first], b)
            else:
                second = QUICK[(i + 1) % len(QUICK)]
                upload(s, "on time", first, quick[first], a)
                upload(s, "second", second, quick[second], b)
        else:
            upload(s, "on time", first, quick[first], rng.uniform(-window, -0.5))
        if i in late_ids:
            upload(s, "after deadline", QUICK[0], quick[QUICK[0]], late_after)


async def run_students(students: list[Student], base: str, deadline_mono: float, timeout: float,
                       refresh: bool, phase_end_mono: float) -> None:
    import httpx

    limits = httpx.Limits(max_connections=2, max_keepalive_connections=1)
    tls = ssl.create_default_context()     # one for all: each client's own would load the CA file (~20 ms of CPU)

    async def timed(coro):
        started = time.monotonic()
        r = await coro
        return r, time.monotonic() - started

    async def one(s: Student) -> None:
        async with httpx.AsyncClient(base_url=base, follow_redirects=False, timeout=timeout, limits=limits,
                                     verify=tls) as c:
            try:
                r, s.signin_s = await timed(sign_in(c, s.link.removeprefix(base)))
                if r.status_code != 303 or "session" not in c.cookies:
                    for u, _ in s.plan:
                        u.reason = f"sign-in failed: HTTP {r.status_code}"
                    return
            except httpx.HTTPError as exc:
                for u, _ in s.plan:
                    u.reason = f"sign-in failed: {type(exc).__name__}"
                return
            for k, (u, data) in enumerate(s.plan):
                await asyncio.sleep(max(0.0, deadline_mono + u.scheduled_s - time.monotonic()))
                await upload(c, u, data)
                nxt = deadline_mono + s.plan[k + 1][0].scheduled_s if k + 1 < len(s.plan) else phase_end_mono
                if refresh and u.outcome == "receipt":
                    await keep_receipt_open(c, s, u, min(nxt, phase_end_mono))

    async def sign_in(c, path: str):
        """The link's page (which signs no one in), then its button: → the button's reply."""
        page = await c.get(path)
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        return await c.post(path, data={"csrf": token.group(1)}) if page.status_code == 200 and token else page

    async def upload(c, u: Upload, data: bytes) -> None:
        try:
            page, u.page_s = await timed(c.get(f"/a/{ASSIGNMENT}"))
            token = re.search(r'name="csrf" value="([^"]+)"', page.text)
            if page.status_code != 200 or not token:
                u.reason = f"assignment page: HTTP {page.status_code}"
                return
            u.sent_s = round(time.monotonic() - deadline_mono, 3)
            started = time.monotonic()
            r = await c.post(f"/a/{ASSIGNMENT}/upload", data={"csrf": token.group(1)},
                             files={"notebook": (f"{ASSIGNMENT}.ipynb", data, "application/x-ipynb+json")})
            u.latency_s, u.status = time.monotonic() - started, r.status_code
        except Exception as exc:                 # a timeout, a reset connection: the upload is counted lost
            u.reason = f"{type(exc).__name__}: {exc}"[:200]
            return
        location = r.headers.get("location", "")
        if r.status_code == 303 and location.startswith("/receipt/"):
            u.outcome, u.receipt = "receipt", location.rsplit("/", 1)[1]
            try:
                page, u.receipt_page_s = await timed(c.get(location))
                u.receipt_page_ok = page.status_code == 200 and u.receipt in page.text and u.sha256 in page.text
            except httpx.HTTPError:
                u.receipt_page_ok = False
        elif 400 <= r.status_code < 500 and 'class="box bad"' in r.text:
            u.outcome, u.reason = "refused", reason_of(r.text)
        else:
            u.reason = f"HTTP {r.status_code} {location}".strip()

    async def keep_receipt_open(c, s: Student, u: Upload, until: float) -> None:
        """The receipt page's <meta http-equiv="refresh" content="10">, while the check waits."""
        while time.monotonic() + 10 < until:
            await asyncio.sleep(10)
            try:
                r, seconds = await timed(c.get(f"/receipt/{u.receipt}"))
            except httpx.HTTPError as exc:
                s.refreshes.append((None, type(exc).__name__))
                continue
            s.refreshes.append((seconds, r.status_code))
            if 'http-equiv="refresh"' not in r.text:
                return

    await asyncio.gather(*(one(s) for s in students))


# --- the record -----------------------------------------------------------------------------------------------

def read_db(data: Path, query: str, params=()) -> list:
    db = sqlite3.connect(f"file:{data / 'site.db'}?mode=ro", uri=True, timeout=30)
    try:
        db.row_factory = sqlite3.Row
        return db.execute(query, params).fetchall()
    finally:
        db.close()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify(data: Path, students: list[Student]) -> dict:
    """rows = files = receipts, each with the bytes sent; each student's exchange folder holds their latest."""
    problems = []
    uploads = [u for s in students for u, _ in s.plan]
    sent = {u.receipt: u for u in uploads if u.outcome == "receipt"}
    rows = {r["receipt"]: r for r in read_db(data, "SELECT * FROM attempts")}
    notebooks = {p.stem.split("-", 1)[1]: p for p in (data / "attempts").glob(f"*/{ASSIGNMENT}/*.ipynb")}
    receipts_json = {p.stem.split("-", 1)[1]: p for p in (data / "attempts").glob(f"*/{ASSIGNMENT}/*.json")}
    for name, found in (("database rows", rows), ("attempt notebooks", notebooks),
                        ("attempt receipts (.json)", receipts_json)):
        if set(found) != set(sent):
            problems.append(f"{name} ≠ the clients' receipts: {len(set(sent) - set(found))} receipts without one, "
                            f"{len(set(found) - set(sent))} with no receipt given "
                            f"(e.g. {sorted(set(sent) ^ set(found))[:3]})")
    for receipt, u in sent.items():
        row, path = rows.get(receipt), notebooks.get(receipt)
        if row is not None and (row["student_id"] != u.student or row["sha256"] != u.sha256):
            problems.append(f"row {receipt}: student {row['student_id']}, sha256 {row['sha256'][:12]} ≠ sent "
                            f"({u.student}, {u.sha256[:12]})")
        if row is not None and not (data / row["file"]).is_file():
            problems.append(f"row {receipt}: its file {row['file']} is missing")
        if path is not None and sha(path) != u.sha256:
            problems.append(f"attempt file {path.name}: not the bytes sent")
        if row is not None and row["late"]:
            problems.append(f"row {receipt}: recorded late though the policy rejects late work")
    exchange_ok = 0
    for s in students:
        got = [u for u, _ in s.plan if u.outcome == "receipt"]
        numbers = sorted(rows[u.receipt]["number"] for u in got if u.receipt in rows)
        if numbers != list(range(1, len(numbers) + 1)):
            problems.append(f"{s.id}: attempt numbers {numbers}")
        folder = data / "exchange" / "submitted" / s.id / ASSIGNMENT
        if not got:
            if folder.exists():
                problems.append(f"{s.id}: an exchange folder but no receipt")
            continue
        notebook = folder / f"{ASSIGNMENT}.ipynb"
        if not notebook.is_file():
            problems.append(f"{s.id}: no notebook in the exchange")
        elif sha(notebook) != got[-1].sha256:
            problems.append(f"{s.id}: the exchange holds {sha(notebook)[:12]}, not the latest receipt's "
                            f"{got[-1].sha256[:12]} ({got[-1].receipt})")
        elif not (folder / "timestamp.txt").is_file():
            problems.append(f"{s.id}: no timestamp.txt in the exchange")
        else:
            exchange_ok += 1
        stray = [p.name for p in folder.parent.iterdir() if p.name != ASSIGNMENT]
        if stray:
            problems.append(f"{s.id}: left beside the exchange folder: {stray}")
    leftovers = sorted(p.name for p in (data / "tmp").iterdir()) if (data / "tmp").is_dir() else []
    if leftovers:
        problems.append(f"upload temp files left: {leftovers[:5]}")
    return {"receipts": len(sent), "rows": len(rows), "attempt_notebooks": len(notebooks),
            "attempt_receipt_files": len(receipts_json),
            "students_with_receipt": sum(any(u.outcome == "receipt" for u, _ in s.plan) for s in students),
            "exchange_latest_ok": exchange_ok, "problems": problems, "agree": not problems}


def machine_busy_s() -> float:
    """Seconds of CPU the whole machine spent busy since boot (every process, this run's and anyone else's)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuSampler(threading.Thread):
    """Every ``every`` s, each process's CPU time from /proc: this run's (this process and its descendants: the
    server, its check workers, their kernels) apart from everyone else's, so that a run sharing the machine says
    so. Short-lived processes between two samples are missed; `marks` are totals at named moments."""

    def __init__(self, every: float = 2.0):
        super().__init__(daemon=True)
        self.every, self.me = every, os.getpid()
        self.seen: dict = {}          # (pid, start) → [ours, comm, cpu at first sight, cpu last seen]
        self.marks: dict = {}
        self.halt = threading.Event()
        self.tick = os.sysconf("SC_CLK_TCK")
        self.first = True
        self.sample()
        self.first = False

    def sample(self) -> None:
        procs = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                text = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            comm = text[text.index("(") + 1:text.rindex(")")]
            f = text[text.rindex(")") + 2:].split()
            procs[int(entry.name)] = (int(f[1]), comm, (int(f[11]) + int(f[12])) / self.tick, f[19])
        ours = set()
        for pid in procs:
            chain, p = [], pid
            while p in procs and p not in ours and p != self.me and p > 1:
                chain.append(p)
                p = procs[p][0]
            if p == self.me or p in ours:
                ours.update(chain)
        ours.add(self.me)
        for pid, (_, comm, cpu, start) in procs.items():
            key = (pid, start)
            if key not in self.seen:      # a process already running at the start counts from then on
                self.seen[key] = [pid in ours, comm, cpu if self.first or pid == self.me else 0.0, cpu]
            else:
                self.seen[key][3] = cpu

    def totals(self) -> dict:
        ours = sum(v[3] - v[2] for v in self.seen.values() if v[0])
        others = sum(v[3] - v[2] for v in self.seen.values() if not v[0])
        return {"this_run": round(ours, 1), "others": round(others, 1), "machine_busy": round(machine_busy_s(), 1)}

    def mark(self, name: str) -> None:
        self.sample()
        self.marks[name] = {"t": time.monotonic(), **self.totals()}

    def run(self) -> None:
        while not self.halt.wait(self.every):
            self.sample()

    def report(self, cpus: int) -> dict:
        """CPU seconds spent between consecutive marks: this run's, other processes', the machine's capacity."""
        names, out = list(self.marks), {}
        for a, b in itertools.pairwise(names):
            ma, mb = self.marks[a], self.marks[b]
            wall = mb["t"] - ma["t"]
            out[f"{a} → {b}"] = {"wall_s": round(wall, 1), "capacity_s": round(wall * cpus, 1),
                                 "this_run_s": round(mb["this_run"] - ma["this_run"], 1),
                                 "others_s": round(mb["others"] - ma["others"], 1),
                                 "machine_busy_s": round(mb["machine_busy"] - ma["machine_busy"], 1)}
        top = Counter()
        for ours, comm, first, last in self.seen.values():
            if not ours:
                top[comm] += last - first
        out["others_top"] = {k: round(v, 1) for k, v in top.most_common(6) if v >= 1}
        return out


def queue_counts(data: Path) -> dict:
    return {r[0]: r[1] for r in read_db(data, "SELECT check_state, count(*) FROM attempts GROUP BY check_state")}


def drain(data: Path, last_upload_mono: float, max_drain: float, poll: float, series: list, t0: float) -> dict:
    """Wait until no check is queued or running, at most ``max_drain`` s after the last upload."""
    while True:
        counts = queue_counts(data)
        waiting = counts.get("queued", 0) + counts.get("running", 0)
        now = time.monotonic()
        series.append({"t_s": round(now - t0, 1), "load1": os.getloadavg()[0], **counts})
        if waiting == 0:
            return {"drained": True, "drain_s": round(now - last_upload_mono, 1), "left": 0}
        if now - last_upload_mono >= max_drain:
            return {"drained": False, "drain_s": round(now - last_upload_mono, 1), "left": waiting,
                    "left_queued": counts.get("queued", 0), "left_running": counts.get("running", 0)}
        print(f"  queue: {counts.get('queued', 0)} queued, {counts.get('running', 0)} running, "
              f"{counts.get('done', 0)} done, {counts.get('failed', 0)} failed, "
              f"{counts.get('superseded', 0)} superseded  ({now - last_upload_mono:.0f} s after the last upload)",
              flush=True)
        time.sleep(poll)


def check_stats(data: Path, workers: int) -> dict:
    rows = read_db(data, "SELECT receipt, check_state, submitted_at, check_started_at, check_finished_at, "
                         "check_note FROM attempts")
    finished = [r for r in rows if r["check_finished_at"] and r["check_started_at"]]
    parse = dt.datetime.fromisoformat
    durations = [(parse(r["check_finished_at"]) - parse(r["check_started_at"])).total_seconds() for r in finished]
    stats = {"states": dict(Counter(r["check_state"] for r in rows)), "finished": len(finished),
             "upload_to_result_s": summary([(parse(r["check_finished_at"]) - parse(r["submitted_at"])).total_seconds()
                                            for r in finished if r["check_state"] == "done"]),
             "check_files": sum((data / "checks" / f"{r['receipt']}.json").is_file() for r in rows),
             "notes": dict(Counter(r["check_note"][:120] for r in rows if r["check_note"]))}
    verdicts: dict = {}               # notebook (sha256) → the distinct verdicts its checks gave
    for r in read_db(data, "SELECT receipt, sha256 FROM attempts WHERE check_state = 'done'"):
        path = data / "checks" / f"{r['receipt']}.json"
        if path.is_file():
            result = json.loads(path.read_text(encoding="utf-8"))
            verdicts.setdefault(r["sha256"], set()).add(
                (result.get("score"), tuple((t.get("name"), t.get("status")) for t in result.get("tests", []))))
    stats["notebooks_checked"] = len(verdicts)
    stats["same_verdict_per_notebook"] = all(len(v) == 1 for v in verdicts.values())
    kernel, overhead = [], []         # the notebook's run in its kernel; the rest of the check (worker, graders)
    for r, seconds in zip(finished, durations):
        path = data / "checks" / f"{r['receipt']}.json"
        if r["check_state"] == "done" and path.is_file():
            ran = json.loads(path.read_text(encoding="utf-8")).get("execution", {}).get("seconds")
            if ran is not None:
                kernel.append(ran)
                overhead.append(seconds - ran)
    stats.update(kernel_s=summary(kernel), overhead_s=summary(overhead))
    if finished:
        first = min(parse(r["check_started_at"]) for r in finished)
        last = max(parse(r["check_finished_at"]) for r in finished)
        span = (last - first).total_seconds()
        stats.update(check_s=summary(durations), span_s=round(span, 1),
                     per_minute=round(len(finished) / span * 60, 2) if span else None,
                     per_minute_per_worker=round(len(finished) / span * 60 / workers, 2) if span else None)
    return stats


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    v = sorted(values)

    def q(p):
        k = (len(v) - 1) * p
        lo = int(k)
        return v[lo] + (v[min(lo + 1, len(v) - 1)] - v[lo]) * (k - lo)
    return {"n": len(v), "p50": round(q(0.5), 3), "p95": round(q(0.95), 3), "max": round(v[-1], 3),
            "mean": round(sum(v) / len(v), 3)}


def access_log(text: str) -> dict:
    statuses = Counter()
    for method, path, status in ACCESS_LINE.findall(text):
        route = re.sub(r"/(signin|receipt)/[^/\s?]+", r"/\1/…", path)
        statuses[f"{method} {route} {status}"] += 1
    return {"responses": dict(sorted(statuses.items())), "server_errors": sum(n for k, n in statuses.items()
                                                                              if k.endswith(("500", "502", "503", "504"))),
            "tracebacks": text.count("Traceback (most recent call last)")}


# --- the run --------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--window", type=float, default=300, help="seconds before the deadline the uploads fall in")
    parser.add_argument("--workers", type=int, default=2, help="SITE_CHECK_WORKERS of the course copy (default 2)")
    parser.add_argument("--twice", type=float, default=0.10, help="share of students who upload twice")
    parser.add_argument("--refused", type=float, default=0.03,
                        help="share who first upload a notebook submit refuses, then a valid one")
    parser.add_argument("--late", type=int, default=5, help="students who try again after the deadline")
    parser.add_argument("--late-after", type=float, default=10, help="seconds after the deadline they try")
    parser.add_argument("--lead", type=float, default=45,
                        help="seconds between moving the deadline and the window's start (server start, sign-ins)")
    parser.add_argument("--max-drain", type=float, default=1800, help="seconds after the last upload to wait for "
                                                                      "the check queue to drain")
    parser.add_argument("--timeout", type=float, default=120, help="a request's timeout (then counted lost)")
    parser.add_argument("--no-refresh", action="store_true", help="don't reload receipt pages while checks wait")
    parser.add_argument("--seed", type=int, default=20240516)
    parser.add_argument("--keep", help="the course copy and the site's data here, left afterwards")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)            # stopped by either: the server is still stopped, the report written
    if os.environ.get("AUTOGRADER_NOW"):
        print("note: AUTOGRADER_NOW is set here; the server is started without it (its own clock decides)")

    tz = course_timezone()
    rng = random.Random(args.seed)
    cpus = os.cpu_count()
    report: dict = {"students": args.students, "window_s": args.window, "check_workers": args.workers,
                    "cpu_count": cpus, "cpu_affinity": len(os.sched_getaffinity(0)), "seed": args.seed,
                    "notebooks": QUICK, "refused_notebooks": list(REFUSED), "refresh": not args.no_refresh}
    tmp = tempfile.TemporaryDirectory(prefix="bench-site-load-")
    work = Path(args.keep or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    data = work / "site-data"
    server = None
    t0 = time.monotonic()
    sampler = CpuSampler()
    sampler.start()
    sampler.mark("start")
    try:
        deadline = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=args.lead + args.window)).replace(
            microsecond=0)
        deadline_local = deadline.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
        course = copy_course(work, deadline_local, args.workers)
        deadline_mono = time.monotonic() + (deadline.timestamp() - time.time())
        listing = cli(course, "list")
        print(f"course copy {work}; deadline {deadline_local} {tz.key} (in {args.lead + args.window:.0f} s); "
              f"{cpus} CPUs; {args.workers} check workers")
        print("  " + "\n  ".join(line for line in listing.splitlines() if ASSIGNMENT in line or "deadline" in line.lower()))

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        roster = work / "roster.csv"
        ids = [f"b{i:04d}" for i in range(1, args.students + 1)]
        roster.write_text("student_id,name,email\n" + "".join(f"{s},Student {s},{s}@example.ac.jp\n" for s in ids),
                          encoding="utf-8")
        started = time.monotonic()
        cli(course, "roster", "import", str(roster), "--data", str(data))
        cli(course, "roster", "links", "--url", url, "--out", str(work / "links.csv"), "--data", str(data))
        report["roster_s"] = round(time.monotonic() - started, 2)
        with open(work / "links.csv", encoding="utf-8") as f:
            links = {r["student_id"]: r["link"] for r in csv.DictReader(f)}
        students = [Student(s, links[s]) for s in ids]
        plan_uploads(students, args.window, args.twice, args.refused, args.late, args.late_after, rng)

        server = Server(course, data, port, work / "server.log")
        report["server_start_s"] = round(server.wait_ready(), 2)
        setup_left = deadline_mono - args.window - time.monotonic()
        sampler.mark("window opens")
        print(f"server up in {report['server_start_s']} s; the window opens in {setup_left:.0f} s")
        if setup_left < 5:
            raise SystemExit(f"setup took too long: the window opens in {setup_left:.0f} s (raise --lead)")

        phase_end = deadline_mono + max(args.late_after, 0) + 15
        n_uploads = sum(len(s.plan) for s in students)
        print(f"{len(students)} students, {n_uploads} uploads planned over the last {args.window:.0f} s "
              f"before the deadline ({args.late} after it)...", flush=True)
        bound = phase_end - time.monotonic() + args.timeout * 3 + 60
        try:
            asyncio.run(asyncio.wait_for(run_students(students, url, deadline_mono, args.timeout,
                                                      not args.no_refresh, phase_end), bound))
        except TimeoutError:
            report["client_phase_timed_out_s"] = round(bound)       # the uploads still unanswered count as errors
        last_upload = max((deadline_mono + u.sent_s + u.latency_s for s in students for u, _ in s.plan
                           if u.outcome == "receipt"), default=time.monotonic())
        uploads = [u for s in students for u, _ in s.plan]

        # --- what the clients saw
        lat = [u.latency_s for u in uploads if u.latency_s is not None]
        by_kind = {k: summary([u.latency_s for u in uploads if u.kind == k and u.latency_s is not None])
                   for k in sorted({u.kind for u in uploads})}
        refusals = Counter(u.reason for u in uploads if u.outcome == "refused")
        errors = Counter(u.reason for u in uploads if u.outcome == "error")
        unexpected = [asdict(u) for u in uploads
                      if (u.kind in ("on time", "second") and u.outcome != "receipt")
                      or (u.kind == "after deadline" and (u.outcome, u.reason) != ("refused", "deadline passed"))
                      or (u.kind == "refused first" and u.outcome != "refused")]
        refreshes = [r for s in students for r in s.refreshes]
        report["uploads"] = {
            "planned": n_uploads, "receipts": sum(u.outcome == "receipt" for u in uploads),
            "refused": dict(refusals), "errors": dict(errors), "by_kind": dict(Counter(u.kind for u in uploads)),
            "latency_s": summary(lat), "latency_by_kind_s": by_kind,
            "assignment_page_s": summary([u.page_s for u in uploads if u.page_s is not None]),
            "receipt_page_s": summary([u.receipt_page_s for u in uploads if u.receipt_page_s is not None]),
            "receipt_page_wrong": sum(u.receipt_page_ok is False for u in uploads),
            "signin_s": summary([s.signin_s for s in students if s.signin_s is not None]),
            "refresh_s": summary([r[0] for r in refreshes if r[0] is not None]),
            "refresh_not_200": sum(r[1] != 200 for r in refreshes), "refreshes": len(refreshes),
            "sent_before_deadline_but_refused_late": sum(u.sent_s < 0 and u.reason == "deadline passed"
                                                         for u in uploads),
            "unexpected": unexpected[:20], "unexpected_count": len(unexpected),
            "slowest": sorted(({"student": u.student, "kind": u.kind, "sent_s": u.sent_s,
                                "latency_s": round(u.latency_s, 3)} for u in uploads if u.latency_s), 
                              key=lambda x: -x["latency_s"])[:5],
        }
        report["queue_at_last_upload"] = queue_counts(data)
        sampler.mark("uploads over")

        # --- the record
        report["record"] = verify(data, students)

        # --- the check queue
        series: list = []
        print("waiting for the check queue to drain...", flush=True)
        report["drain"] = drain(data, last_upload, args.max_drain, 10, series, t0)
        report["checks"] = check_stats(data, args.workers)
        if not report["drain"]["drained"] and len(series) > 1:
            a, b = series[0], series[-1]
            finished = lambda p: p.get("done", 0) + p.get("failed", 0)
            rate = (finished(b) - finished(a)) / max(b["t_s"] - a["t_s"], 1e-9) * 60
            report["drain"]["rate_per_minute"] = round(rate, 2)
            report["drain"]["estimated_more_s"] = round(report["drain"]["left"] / rate * 60) if rate else None
        sampler.mark("drained" if report["drain"]["drained"] else "drain bound")
        report["queue_series"] = series
        report["record_after_drain"] = verify(data, students)["agree"]
    except KeyboardInterrupt as exc:
        report["interrupted"] = str(exc) or "SIGINT"
        print(f"interrupted ({report['interrupted']}, at {dt.datetime.now().isoformat(timespec='seconds')})",
              file=sys.stderr)
    finally:
        if server is not None:
            report["server_stop"] = server.stop()
            log = server.log_path.read_text(encoding="utf-8", errors="replace")
            report["server_log"] = access_log(log)
            tracebacks = [m.start() for m in re.finditer(r"Traceback \(most recent call last\)", log)]
            report["server_log"]["first_traceback"] = log[tracebacks[0]:tracebacks[0] + 3000] if tracebacks else ""
        report["wall_s"] = round(time.monotonic() - t0, 1)
        sampler.mark("end")
        sampler.halt.set()
        report["cpu_s"] = sampler.report(cpus or 1)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print_report(report, out)
        if not args.keep:
            tmp.cleanup()


def print_report(r: dict, out: Path) -> None:
    up = r.get("uploads")
    print(f"\n=== site load: {r['students']} students, last {r['window_s']:.0f} s before the deadline, "
          f"{r['check_workers']} check workers, {r['cpu_count']} CPUs ===")
    if up:
        lat = up["latency_s"]
        print(f"uploads:        {up['planned']} planned · {up['receipts']} receipts · "
              f"{sum(up['refused'].values())} refused · {sum(up['errors'].values())} errors")
        for reason, n in sorted(up["refused"].items()):
            print(f"  refused: {reason}: {n}")
        for reason, n in sorted(up["errors"].items()):
            print(f"  ERROR:   {reason}: {n}")
        print(f"upload latency: p50 {lat.get('p50', '-')} s · p95 {lat.get('p95', '-')} s · max {lat.get('max', '-')} s "
              f"(n={lat['n']})")
        for name in ("assignment_page_s", "receipt_page_s", "refresh_s", "signin_s"):
            s = up[name]
            if s["n"]:
                print(f"  {name[:-2].replace('_', ' '):15s} p50 {s['p50']} s · p95 {s['p95']} s · max {s['max']} s "
                      f"(n={s['n']})")
        if up["sent_before_deadline_but_refused_late"]:
            print(f"  sent before the deadline but refused as late: {up['sent_before_deadline_but_refused_late']}")
        if up["unexpected_count"]:
            print(f"  UNEXPECTED outcomes: {up['unexpected_count']} (see the JSON)")
    rec = r.get("record")
    if rec:
        print(f"record:         rows {rec['rows']} · attempt files {rec['attempt_notebooks']} (+{rec['attempt_receipt_files']}"
              f" .json) · receipts {rec['receipts']} · exchange latest ok {rec['exchange_latest_ok']}/"
              f"{rec['students_with_receipt']} → {'AGREE' if rec['agree'] else 'DISAGREE'}")
        for p in rec["problems"][:10]:
            print(f"  PROBLEM: {p}")
    d, c = r.get("drain"), r.get("checks")
    if d:
        state = (f"drained {d['drain_s']} s after the last upload" if d["drained"] else
                 f"NOT drained after {d['drain_s']} s: {d['left']} left, {d.get('rate_per_minute')} checks/min, "
                 f"~{d.get('estimated_more_s')} s more")
        print(f"check queue:    {state}")
    if c:
        print(f"checks:         {c['states']} · {c['finished']} finished, {c['check_files']} result files · "
              f"{c['notebooks_checked']} distinct notebooks, "
              f"{'each with one verdict' if c['same_verdict_per_notebook'] else 'VERDICTS DIFFER for one notebook'}")
        if c.get("check_s"):
            print(f"  one check:    p50 {c['check_s']['p50']} s · p95 {c['check_s']['p95']} s · max "
                  f"{c['check_s']['max']} s; throughput {c['per_minute']} checks/min "
                  f"({c['per_minute_per_worker']} per worker) over {c['span_s']} s")
        if c.get("upload_to_result_s", {}).get("n"):
            w = c["upload_to_result_s"]
            print(f"  a student waits from upload to their check's result: p50 {w['p50']:.0f} s · p95 {w['p95']:.0f} s"
                  f" · max {w['max']:.0f} s (checks finished)")
        if c.get("kernel_s", {}).get("n"):
            print(f"  of which the notebook's run p50 {c['kernel_s']['p50']} s, the rest (worker start, dataset, "
                  f"graders) p50 {c['overhead_s']['p50']} s · p95 {c['overhead_s']['p95']} s")
        for note, n in c["notes"].items():
            print(f"  note ×{n}: {note}")
    log = r.get("server_log")
    if log:
        print(f"server log:     {log['server_errors']} 5xx responses · {log['tracebacks']} tracebacks · stop "
              f"{r.get('server_stop')}")
    for phase, c in r.get("cpu_s", {}).items():
        if phase == "others_top":
            if c:
                print(f"  other processes' CPU: {c}")
            continue
        print(f"CPU {phase:27s} {c['wall_s']:7.1f} s wall · this run {c['this_run_s']} CPU-s · other processes "
              f"{c['others_s']} CPU-s · machine busy {c['machine_busy_s']} of {c['capacity_s']}")
    print(f"wall {r['wall_s']} s; JSON: {out}")


if __name__ == "__main__":
    main()
