"""Grade a whole class: intake → a pool of worker processes (execute + graders) → results, feedback, gradebook.

Loss-free and resumable. The parent process alone writes under the output folder, each file atomically, and a
student's result the moment it is known; a result carries a fingerprint of what produced it (the notebook's
bytes, its submission time, grader_config.py, the graders' code, the device, speed mode), so rerunning the
same command grades only what is missing or changed. Killing the batch loses at most the notebooks in flight.

Each worker grades one notebook at a time in its own kernel. A worker that dies, hangs past every budget, or
returns a GPU/driver failure is retried once on a fresh worker; a second failure is reported as an
``infrastructure error`` (no score), never as the student's zero.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import multiprocessing
import multiprocessing.forkserver
import os
import re
import sys
import tempfile
import time
import traceback
from collections import Counter, deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from . import dataset, intake, sandbox
from .assignment import assignment_ids, unknown_assignment
from .checks import CheckSpec
from .config import Config, load_config
from .device import resolve_device
from .errors import ConfigError, GraderError
from .execute import HARNESS_TIMEOUT_S
from .graders import GradersBroken, check_graders
from .gradebook import gradebook_csv
from .report import format_table, write_atomic
from .result import (ERROR, INFRASTRUCTURE, INFRASTRUCTURE_REASON, LATE, NO_TIMESTAMP, NOT_GRADED, CheckResult,
                     GradeResult)

PACKAGE = Path(__file__).parent
# The code whose change makes every earlier grade stale (a fingerprint input), with the assignment's own graders
# (every .py under config.assignment.graders_dir).
GRADING_CODE = ("graders/*.py", "graders/pytest.ini", "checks.py", "kernel_side.py", "execute.py", "grade.py")
KERNEL_LOG_LIMIT = 1_000_000          # bytes of a kernel's own stdout/stderr kept in the submission's log
MAX_ATTEMPTS = 2                      # an infrastructure failure is retried once
FATE_STATUS = {intake.LATE: LATE, intake.NO_TIMESTAMP: NO_TIMESTAMP, intake.UNUSABLE: ERROR}


@dataclass
class Task:
    submission: intake.Submission
    fingerprint: str
    attempts: list[str] = field(default_factory=list)   # one line per failed attempt


@dataclass
class BatchReport:
    results: dict[str, dict]                             # student id → the result written for them
    graded_now: int
    reused: int
    seconds: float
    out: Path

    @property
    def counts(self) -> Counter:
        return Counter(r.get("status", "?") for r in self.results.values())


# Failures of the runner, not of the student's code: retried once, then reported as an infrastructure error.
INFRASTRUCTURE_SIGNS = re.compile(
    r"CUDA_ERROR|CUDA error|cuInit|CUDNN_STATUS|CUBLAS_STATUS|cudaMalloc|failed to create cublas|"
    r"OOM when allocating|out of memory|Dst tensor is not initialized|driver version is insufficient", re.I)


def infrastructure_problem(execution: dict) -> str:
    """The first sign, in a result's execution record, that the GPU or its driver failed under the student's
    cells, or ''. Only a GPU run can show one (on the CPU a failed allocation is the notebook's own doing)."""
    if execution.get("device") != "gpu":
        return ""
    for cell in execution.get("cells", []):
        text = f"{cell.get('ename', '')}: {cell.get('evalue', '')}"
        if cell.get("status") == "error" and INFRASTRUCTURE_SIGNS.search(text):
            return f"cell {cell.get('index', 0) + 1}: {text[:300]}"
    return ""


# --- fingerprints ------------------------------------------------------------------------------------------

def grading_digest(config: Config) -> str:
    """grader_config.py, the grading code, the assignment's settings and hidden graders: computed once per batch,
    part of every fingerprint (a changed grader or expected value regrades)."""
    digest = hashlib.sha256(config.source.read_bytes())
    for pattern in GRADING_CODE:
        for path in sorted(PACKAGE.glob(pattern)):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    assignment = config.assignment
    digest.update(assignment.settings_path.read_bytes())
    graders = assignment.graders_dir
    for path in sorted(graders.rglob("*.py")) if graders.is_dir() else []:
        digest.update(b"assignment graders/" + path.relative_to(graders).as_posix().encode() + b"\0"
                      + path.read_bytes())
    return digest.hexdigest()


def fingerprint(sub: intake.Submission, config: Config, kernel_device: str, fused: bool, grading: str) -> str:
    """What produced a result; a result with the same fingerprint need not be graded again. ``grading``: the
    ``grading_digest`` of the configuration and code."""
    digest = hashlib.sha256()
    chosen = sub.chosen
    notebook = chosen.path.read_bytes() if chosen.path and chosen.path.is_file() else chosen.problem.encode()
    for part in (hashlib.sha256(notebook).hexdigest(), str(chosen.submitted_at), sub.fate, grading, kernel_device,
                 str(config.fused_fit_steps if fused else 1)):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


# --- the worker side ---------------------------------------------------------------------------------------

def grade_task(task: dict, config: Config, data) -> dict:
    """In a worker: grade one notebook. → {"result": results.json dict, "log": text, "infrastructure": ''|why}."""
    from .grade import grade_on

    with tempfile.TemporaryDirectory(prefix="autograder-batch-") as work:
        pins = {name: Path(path) for name, path in task["pins"].items()}
        result = grade_on(Path(task["path"]), config, task["device"], task["official"], data,
                          fused=task["fused"], pins=pins, work=Path(work))
        kernel_log = Path(work, "kernel.log")
        log = kernel_log.read_bytes()[-KERNEL_LOG_LIMIT:].decode("utf-8", "replace") if kernel_log.is_file() else ""
    return {"result": result.to_json(), "table": format_table(result), "log": log,
            "infrastructure": infrastructure_problem(result.execution)}


def _worker_main(conn, config_path: str, assignment_id: str, grade_fn, log_path: str, kernel_device: str) -> None:
    with open(log_path, "ab") as log:     # TensorFlow's start-up chatter and any crash, off the instructor's screen
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    if kernel_device == "gpu":
        from .device import visible_gpus

        visible_gpus()                   # hides the GPUs from this process (the graders): they are the kernels'
    config = load_config(config_path).for_assignment(assignment_id)
    data = LazyDataset(config)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        try:
            reply = grade_fn(task, config, data)
        except GraderError as exc:       # the grader says why it cannot (a kernel that would not start, ...)
            reply = {"infrastructure": str(exc), "log": traceback.format_exc()}
        except Exception:                # the runner failed otherwise (disk full, ...)
            reply = {"infrastructure": traceback.format_exc(limit=3)[-2000:], "log": traceback.format_exc()}
        conn.send(reply)


class LazyDataset:
    """The assignment's verified dataset, read on first use (a worker that only ever dies need not spend a second
    on it)."""

    def __init__(self, config: Config):
        self.config, self.data = config, None

    def __getattr__(self, name):
        if self.data is None:
            self.data = dataset.load_dataset(self.config)
        return getattr(self.data, name)


class Worker:
    """One spawned process and the task it holds, so a lost worker's submission is known and retried."""

    def __init__(self, config: Config, grade_fn, context, log_path: Path, kernel_device: str):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, daemon=True,
                                       args=(child, str(config.source), config.assignment.id, grade_fn,
                                             str(log_path), kernel_device))
        self.process.start()
        child.close()
        self.task: Task | None = None
        self.started = 0.0

    def assign(self, task: Task, payload: dict) -> None:
        self.task, self.started = task, time.monotonic()
        self.conn.send(payload)

    def lost(self) -> str:
        self.process.join(timeout=10)        # its pipe closes a moment before its exit status is known
        return f"worker lost (exit code {self.process.exitcode})"

    def stop(self) -> None:
        """End the process. An idle worker holds nothing (its kernel is shut down after each notebook), so it is
        killed rather than left to unload TensorFlow (seconds); a busy one loses only its notebook in flight, whose
        kernel exits with it (ipykernel watches its parent)."""
        self.process.kill()
        self.process.join()


# --- the parent side ---------------------------------------------------------------------------------------

class Batch:
    """One assignment's submissions under ``root`` (a folder, an export already unpacked) graded into ``out``."""

    def __init__(self, root: Path, out: Path, config: Config, *, workers: int | None, device: str,
                 regrade: bool, exact_fit: bool, progress: bool, grade_fn=grade_task, refused: list[str] = ()):
        self.root, self.out, self.config, self.refused = Path(root), Path(out), config, list(refused)
        if workers is not None and workers < 1:
            raise GraderError(f"--workers must be at least 1, got {workers}")
        self.regrade, self.fused, self.progress, self.grade_fn = regrade, not exact_fit, progress, grade_fn
        self.kernel_device, self.official = resolve_device(device, config)
        sandbox.require(config.sandbox)
        self.workers = workers or default_workers(self.kernel_device)
        self.results: dict[str, dict] = {}
        self.checks: tuple[CheckSpec, ...] = ()     # as the graders declare them (none known while they are broken)

    # paths
    def result_path(self, sub) -> Path:
        return self.out / "results" / f"{sub.file_stem}.json"

    def run(self) -> BatchReport:
        started = time.monotonic()
        worker_context()                     # the fork server imports Keras while intake reads the class
        data = dataset.load_dataset(self.config)     # verified once, before anything is graded
        self.out.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self.out)
        with tempfile.TemporaryDirectory(prefix="autograder-class-") as tmp:
            submissions = intake.choose(intake.find_candidates(self.root, self.config), self.config)
            self.checks, broken = declared_checks(self.config)     # once, before any notebook is executed
            grading = grading_digest(self.config)
            tasks, reused = [], 0
            for sub in submissions:
                fp = fingerprint(sub, self.config, self.kernel_device, self.fused, grading)
                previous = None if self.regrade else self._previous(sub, fp)
                if previous:
                    self.results[sub.student_id] = previous
                    self._write_feedback(sub, previous, only_if_missing=True)
                    reused += 1
                elif sub.fate != intake.GRADE:
                    self._finish(Task(sub, fp), self._refused(sub), log="", ran=False)
                else:
                    tasks.append(Task(sub, fp))
            pins = dataset.kernel_files(self.config, data, Path(tmp))
            self._log_batch(len(submissions), len(tasks), reused, self.refused)
            if broken:
                self._not_run(tasks, broken)
            else:
                self._grade(tasks, pins)
        seconds = round(time.monotonic() - started, 1)     # the same wall time on the summary page and the console
        self._write_class_files(seconds)
        return BatchReport(self.results, len(tasks), reused, seconds, self.out)

    def _previous(self, sub, fp: str) -> dict | None:
        try:
            previous = json.loads(self.result_path(sub).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if previous.get("fingerprint") != fp or previous.get("status") == INFRASTRUCTURE:
            return None
        return previous

    def _refused(self, sub) -> dict:
        from .grade import zero_result

        ja, _, en = sub.detail.partition(" / ")
        status = FATE_STATUS[sub.fate]
        notebook = sub.chosen.path.name if sub.chosen.path else sub.chosen.origin
        return zero_result(self.config, self.checks, notebook, ja, en or ja, self.official, status=status).to_json()

    def _payload(self, task: Task, pins: dict[str, Path]) -> dict:
        return {"path": str(task.submission.chosen.path), "device": self.kernel_device, "official": self.official,
                "fused": self.fused, "pins": {name: str(path) for name, path in pins.items()}}

    def _grade(self, tasks: list[Task], pins: dict[str, Path]) -> None:
        if not tasks:
            return
        from tqdm import tqdm

        context = worker_context()
        pending = deque(tasks)
        log_path = self.out / "logs" / "workers.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)

        def new_worker() -> Worker:
            return Worker(self.config, self.grade_fn, context, log_path, self.kernel_device)

        pool = [new_worker() for _ in range(min(self.workers, len(tasks)))]
        hard_limit = self.config.notebook_timeout_s + 2 * HARNESS_TIMEOUT_S + 600
        bar = tqdm(total=len(tasks), unit="nb", desc="grading", disable=not self.progress, file=sys.stderr,
                   dynamic_ncols=True)
        try:
            while pending or any(w.task for w in pool):
                for w in pool:
                    if w.task is None and pending:
                        task = pending.popleft()
                        w.assign(task, self._payload(task, pins))
                busy = [w for w in pool if w.task]
                wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=5)
                for i, w in enumerate(pool):
                    if w.task is None:
                        continue
                    reply, lost = None, ""
                    if w.conn.poll():
                        try:
                            reply = w.conn.recv()
                        except (EOFError, OSError):
                            lost = w.lost()
                    elif not w.process.is_alive():
                        lost = w.lost()
                    elif time.monotonic() - w.started > hard_limit:
                        lost = f"no answer from the worker within {hard_limit} s"
                    else:
                        continue
                    task = w.task
                    w.task = None
                    if lost:
                        w.stop()
                        pool[i] = new_worker()
                        reply = {"infrastructure": lost, "log": ""}
                    if self._settle(task, reply, pending):
                        bar.update(1)
                        bar.set_postfix(dict(Counter(r["status"] for r in self.results.values())), refresh=False)
        finally:
            bar.close()
            for w in pool:
                w.stop()

    def _not_run(self, tasks: list[Task], why: str) -> None:
        """The graders cannot run: nothing is executed, every submission waiting is an infrastructure error (no
        score), graded when the same command is run again after the fix."""
        for task in tasks:
            task.attempts.append(why)
            self._finish(task, self._infrastructure_result(task), log=why, ran=False)

    def _settle(self, task: Task, reply: dict, pending: deque) -> bool:
        """Record a worker's answer; → False when the task went back in the queue for another attempt."""
        problem = reply.get("infrastructure", "")
        if problem:
            task.attempts.append(problem)
            if len(task.attempts) < MAX_ATTEMPTS:
                pending.append(task)
                return False
            result = self._infrastructure_result(task)
        else:
            result = reply["result"]
        log = "\n".join(filter(None, [reply.get("table", ""), "--- kernel log ---", reply.get("log", "")]))
        self._finish(task, result, log)
        return True

    def _infrastructure_result(self, task: Task) -> dict:
        why = task.attempts[-1].strip().splitlines()[-1][:300]
        text = ("採点環境の問題で採点できませんでした。あなたの減点ではありません。再採点します。\n"
                f"The grading machine failed ({why}); this is not your error and will be regraded.")
        tests = [CheckResult(c.id, NOT_GRADED, None, c.points, text) for c in self.checks]
        result = GradeResult(self.config.assignment.id, task.submission.chosen.path.name, tests, self.official,
                             notes=[f"attempt {i + 1}: {a.strip()[-500:]}" for i, a in enumerate(task.attempts)],
                             status=INFRASTRUCTURE, status_detail=text.replace("\n", " / "))
        return {**result.to_json(), INFRASTRUCTURE_REASON: why}

    def _finish(self, task: Task, result: dict, log: str, ran: bool = True) -> None:
        sub = task.submission
        chosen = sub.chosen
        if sub.detail and not result.get("status_detail"):
            result["status_detail"] = sub.detail
        result.update(
            student_id=sub.student_id,
            origin=chosen.origin,
            submitted_at=chosen.submitted_at.isoformat() if chosen.submitted_at else None,
            timestamp_problem=chosen.timestamp_problem,
            superseded=[{"origin": c.origin, "submitted_at": c.submitted_at.isoformat() if c.submitted_at else None,
                         "reason": why} for c, why in sub.superseded],
            attempts=len(task.attempts) + (ran and result.get("status") != INFRASTRUCTURE),
            graded_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            fingerprint=task.fingerprint,
        )
        write_atomic(self.out / "logs" / f"{sub.file_stem}.log", self._log_text(task, result, log))
        write_atomic(self.result_path(sub), json.dumps(result, ensure_ascii=False, indent=2) + "\n")
        self.results[sub.student_id] = result
        self._write_feedback(sub, result)

    def _log_text(self, task: Task, result: dict, log: str) -> str:
        sub = task.submission
        lines = [f"student: {sub.student_id}", f"graded file: {sub.chosen.origin}",
                 f"submitted at: {sub.chosen.submitted_at or 'unknown (' + sub.chosen.timestamp_problem + ')'}",
                 f"status: {result.get('status')}" + (f" — {result.get('status_detail')}" if result.get("status_detail") else "")]
        lines += [f"not graded: {c.origin} ({why})" for c, why in sub.superseded]
        lines += [f"attempt {i + 1} failed: {a.strip()}" for i, a in enumerate(task.attempts)]
        return "\n".join(lines) + "\n\n" + log + "\n"

    def _write_feedback(self, sub, result: dict, only_if_missing: bool = False) -> None:
        from .feedback import feedback_page

        path = self.out / "feedback" / f"{sub.file_stem}.html"
        if not (only_if_missing and path.exists()):
            write_atomic(path, feedback_page(result, self.config, self.checks))

    def _log_batch(self, students: int, to_grade: int, reused: int, refused: list[str]) -> None:
        for line in refused:                 # always said, --quiet or not: the export held something hostile
            print(f"zip member refused: {line}", file=sys.stderr)
        if self.progress:
            print(f"{self.config.assignment.id}: {students} students · {to_grade} to grade on {self.kernel_device} "
                  f"with {self.workers} workers · {reused} already graded (unchanged)", file=sys.stderr)

    def _write_class_files(self, wall_seconds: float) -> None:
        from .feedback import summary_figure, summary_page

        results = [self.results[s] for s in sorted(self.results)]
        write_atomic(self.out / "gradebook.csv", gradebook_csv(results, self.config, self.checks))
        write_atomic(self.out / "summary.png", summary_figure(results, self.config, self.checks))
        write_atomic(self.out / "summary.html", summary_page(results, self.config, self.checks,
                                                             wall_seconds=wall_seconds))


def declared_checks(config: Config) -> tuple[tuple[CheckSpec, ...], str]:
    """(the checks the hidden graders declare, '') or, when they cannot be collected, ((), why)."""
    try:
        return check_graders(config), ""
    except GradersBroken as exc:
        return (), str(exc)


def worker_context():
    """Workers are forked from a fork server that has imported Keras once (``worker_preload``); never from this
    process, which may hold TensorFlow's device state (``--device auto``). Started at once, it loads in the
    background."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["autograder.worker_preload"])
    multiprocessing.forkserver.ensure_running()
    return context


def default_workers(kernel_device: str) -> int:
    """One kernel per core, and on the CPU one more: each kernel trains on one thread (KERNEL_CPU_THREADS), and
    the extra one keeps the cores busy while another kernel starts, exports or is being graded."""
    cores = os.cpu_count() or 1
    return cores + 1 if kernel_device == "cpu" else cores


def remove_leftovers(out: Path) -> None:
    """Temporary files of a batch that was killed mid-write (``write_atomic`` names them ``.name.*.tmp``)."""
    for leftover in list(out.glob(".*.tmp")) + list(out.glob("*/.*.tmp")):
        leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def unpacked(source: Path):
    """→ (the folder of submissions to read, the zip members refused): ``source`` itself, or an LMS export .zip
    unpacked into a temporary folder for as long as the block runs."""
    source = Path(source)
    if not source.exists():
        raise GraderError(f"submissions not found: {source}")
    if not source.is_file():
        yield source, []
        return
    if source.suffix.lower() != ".zip":
        raise GraderError(f"{source}: give a folder of submissions or an LMS export .zip")
    with tempfile.TemporaryDirectory(prefix="autograder-export-") as tmp:
        root = Path(tmp) / "export"
        yield root, intake.unpack_zip(source, root)


def grade_batch(source: Path, out: Path, config: Config, *, workers: int | None = None, device: str = "auto",
                regrade: bool = False, exact_fit: bool = False, progress: bool = True,
                grade_fn=grade_task) -> BatchReport:
    """Grade every submission of ``config``'s assignment under ``source`` (a folder or an LMS .zip) into ``out``."""
    with unpacked(source) as (root, refused):
        return Batch(root, out, config, workers=workers, device=device, regrade=regrade, exact_fit=exact_fit,
                     progress=progress, grade_fn=grade_fn, refused=refused).run()


def grade_classes(source: Path, out: Path, config: Config, assignment: str | None = None,
                  **options) -> dict[str, BatchReport]:
    """Grade a class export holding one assignment or several: each assignment it holds (by its layout's
    <assignment> folders, or ``assignment`` when given) into its own folder, ``out/<assignment>/`` — or ``out``
    itself when there is just one."""
    known = assignment_ids(config)
    with unpacked(source) as (root, refused):
        if assignment:
            if assignment not in known:
                raise unknown_assignment(config, assignment)
            ids = [assignment]
        else:
            ids = intake.assignments_in(root, known) or known[:1] * (len(known) == 1)
        if not ids:
            raise ConfigError(f"cannot tell which assignment the submissions in {source} are for (their layout "
                              f"names none of {', '.join(known) or 'no assignments'}): add --assignment ID")
        reports = {}
        for i, assignment_id in enumerate(ids):
            target = Path(out) if len(ids) == 1 else Path(out) / assignment_id
            reports[assignment_id] = Batch(root, target, config.for_assignment(assignment_id),
                                           refused=refused if i == 0 else [], **options).run()
        return reports

