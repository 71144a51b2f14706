"""Grade a whole class: intake → plan → a pool of worker processes (execute + graders) → a store of results,
feedback pages and the gradebook.

Loss-free and resumable. The plan compares each submission with what the store already holds: a result carries a
fingerprint of what produced it (the notebook's bytes, its submission time, grader_config.py, the assignment's
settings and graders, the grading code, the device, speed mode), so rerunning the same command grades only what is
missing or changed. The pool (``pool.py``) runs the notebooks and retries a runner's failure once; the store
(``store.py``) writes each file atomically the moment it is known. Killing the batch loses at most the notebooks
in flight.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import clock, dataset, intake, sandbox
from .assignment import assignment_ids, unknown_assignment
from .checks import CheckSpec
from .config import Config
from .device import resolve_device
from .errors import ConfigError, GraderError
from .gradebook import gradebook_csv
from .graders import GradersBroken, check_graders
from .pool import default_workers, grade_task, graded, worker_context
from .result import ERROR, INFRASTRUCTURE, INFRASTRUCTURE_REASON, LATE, NO_TIMESTAMP, NOT_GRADED, CheckResult, GradeResult
from .store import ResultStore

PACKAGE = Path(__file__).parent
# The code whose change makes every earlier grade stale (a fingerprint input), with the assignment's own settings
# and graders (every .py under its graders/).
GRADING_CODE = ("graders/*.py", "graders/pytest.ini", "checks.py", "kernel_side.py", "execute.py", "grade.py")
FATE_STATUS = {intake.LATE: LATE, intake.NO_TIMESTAMP: NO_TIMESTAMP, intake.UNUSABLE: ERROR}


@dataclass
class Task:
    submission: intake.Submission
    fingerprint: str
    attempts: list[str] = field(default_factory=list)   # one line per failed attempt


@dataclass
class Plan:
    """What a run does with each student: reuse a stored result, refuse (late, unusable), or grade."""
    reuse: dict[str, dict] = field(default_factory=dict)     # student id → the stored result, still valid
    refuse: list[Task] = field(default_factory=list)
    grade: list[Task] = field(default_factory=list)


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


def plan(submissions: list[intake.Submission], fingerprint_of, stored, regrade: bool) -> Plan:
    """Decide, without running anything, what happens to each submission. ``fingerprint_of(sub)``: what would
    produce its result now; ``stored(sub)``: the result an earlier run wrote, or None. A stored result is reused
    when it was produced the same way and is a grade (an infrastructure error is always retried)."""
    decided = Plan()
    for sub in submissions:
        task = Task(sub, fingerprint_of(sub))
        previous = None if regrade else stored(sub)
        if previous and previous.get("fingerprint") == task.fingerprint and previous.get("status") != INFRASTRUCTURE:
            decided.reuse[sub.student_id] = previous
        elif sub.fate != intake.GRADE:
            decided.refuse.append(task)
        else:
            decided.grade.append(task)
    return decided


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

    def run(self) -> BatchReport:
        started = time.monotonic()
        worker_context()                     # the fork server imports Keras while intake reads the class
        data = dataset.load_dataset(self.config)     # verified once, before anything is graded
        store = ResultStore(self.out)
        with tempfile.TemporaryDirectory(prefix="autograder-class-") as tmp:
            submissions = intake.choose(intake.find_candidates(self.root, self.config), self.config)
            self.checks, broken = declared_checks(self.config)     # once, before any notebook is executed
            grading = grading_digest(self.config)
            todo = plan(submissions, lambda sub: fingerprint(sub, self.config, self.kernel_device, self.fused, grading),
                        lambda sub: store.previous(sub.file_stem), self.regrade)
            for sub in submissions:
                if sub.student_id in todo.reuse:
                    self.results[sub.student_id] = todo.reuse[sub.student_id]
                    if not store.feedback_path(sub.file_stem).exists():
                        self._save_feedback(store, sub, todo.reuse[sub.student_id])
            for task in todo.refuse:
                self._finish(store, task, self._refused(task.submission), log="", ran=False)
            pins = dataset.kernel_files(self.config, data, Path(tmp))
            self._log_batch(len(submissions), len(todo.grade), len(todo.reuse))
            if broken:
                for task in todo.grade:      # nothing is executed: each is an infrastructure error, graded when the
                    task.attempts.append(broken)      # same command runs again after the fix
                    self._finish(store, task, self._infrastructure_result(task), log=broken, ran=False)
            else:
                self._grade(store, todo.grade, pins)
        seconds = round(time.monotonic() - started, 1)     # the same wall time on the summary page and the console
        self._write_class_files(store, seconds)
        return BatchReport(self.results, len(todo.grade), len(todo.reuse), seconds, self.out)

    def _grade(self, store: ResultStore, tasks: list[Task], pins: dict[str, Path]) -> None:
        from tqdm import tqdm

        def payload(task: Task) -> dict:
            return {"path": str(task.submission.chosen.path), "device": self.kernel_device,
                    "official": self.official, "fused": self.fused,
                    "pins": {name: str(path) for name, path in pins.items()}}

        bar = tqdm(total=len(tasks), unit="nb", desc="grading", disable=not self.progress or not tasks,
                   file=sys.stderr, dynamic_ncols=True)
        try:
            for task, reply in graded(tasks, self.config, payload=payload, workers=self.workers,
                                      kernel_device=self.kernel_device, log_path=self.out / "logs" / "workers.log",
                                      grade_fn=self.grade_fn):
                result = self._infrastructure_result(task) if reply.get("infrastructure") else reply["result"]
                log = "\n".join(filter(None, [reply.get("table", ""), "--- kernel log ---", reply.get("log", "")]))
                self._finish(store, task, result, log)
                bar.update(1)
                bar.set_postfix(dict(Counter(r["status"] for r in self.results.values())), refresh=False)
        finally:
            bar.close()

    # --- results ----------------------------------------------------------------------------------------------
    def _refused(self, sub) -> dict:
        from .grade import zero_result

        ja, _, en = sub.detail.partition(" / ")
        status = FATE_STATUS[sub.fate]
        notebook = sub.chosen.path.name if sub.chosen.path else sub.chosen.origin
        return zero_result(self.config, self.checks, notebook, ja, en or ja, self.official, status=status).to_json()

    def _infrastructure_result(self, task: Task) -> dict:
        why = task.attempts[-1].strip().splitlines()[-1][:300]
        text = ("採点環境の問題で採点できませんでした。あなたの減点ではありません。再採点します。\n"
                f"The grading machine failed ({why}); this is not your error and will be regraded.")
        tests = [CheckResult(c.id, NOT_GRADED, None, c.points, text) for c in self.checks]
        result = GradeResult(self.config.assignment.id, task.submission.chosen.path.name, tests, self.official,
                             notes=[f"attempt {i + 1}: {a.strip()[-500:]}" for i, a in enumerate(task.attempts)],
                             status=INFRASTRUCTURE, status_detail=text.replace("\n", " / "))
        return {**result.to_json(), INFRASTRUCTURE_REASON: why}

    def _finish(self, store: ResultStore, task: Task, result: dict, log: str, ran: bool = True) -> None:
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
            graded_at=clock.now().isoformat(timespec="seconds"),
            fingerprint=task.fingerprint,
        )
        store.save(sub.file_stem, result, self._log_text(task, result, log))
        self.results[sub.student_id] = result
        self._save_feedback(store, sub, result)

    def _log_text(self, task: Task, result: dict, log: str) -> str:
        sub = task.submission
        lines = [f"student: {sub.student_id}", f"graded file: {sub.chosen.origin}",
                 f"submitted at: {sub.chosen.submitted_at or 'unknown (' + sub.chosen.timestamp_problem + ')'}",
                 f"status: {result.get('status')}" + (f" — {result.get('status_detail')}" if result.get("status_detail") else "")]
        lines += [f"not graded: {c.origin} ({why})" for c, why in sub.superseded]
        lines += [f"attempt {i + 1} failed: {a.strip()}" for i, a in enumerate(task.attempts)]
        return "\n".join(lines) + "\n\n" + log + "\n"

    def _save_feedback(self, store: ResultStore, sub, result: dict) -> None:
        from .feedback import feedback_page

        store.save_feedback(sub.file_stem, feedback_page(result, self.config, self.checks))

    def _log_batch(self, students: int, to_grade: int, reused: int) -> None:
        for line in self.refused:            # always said, --quiet or not: the export held something hostile
            print(f"zip member refused: {line}", file=sys.stderr)
        if self.progress:
            print(f"{self.config.assignment.id}: {students} students · {to_grade} to grade on {self.kernel_device} "
                  f"with {self.workers} workers · {reused} already graded (unchanged)", file=sys.stderr)

    def _write_class_files(self, store: ResultStore, wall_seconds: float) -> None:
        from .feedback import summary_figure, summary_page

        results = [self.results[s] for s in sorted(self.results)]
        store.save_class_files({
            "gradebook.csv": gradebook_csv(results, self.config, self.checks),
            "summary.png": summary_figure(results, self.config, self.checks),
            "summary.html": summary_page(results, self.config, self.checks, wall_seconds=wall_seconds),
        })


def declared_checks(config: Config) -> tuple[tuple[CheckSpec, ...], str]:
    """(the checks the hidden graders declare, '') or, when they cannot be collected, ((), why)."""
    try:
        return check_graders(config), ""
    except GradersBroken as exc:
        return (), str(exc)


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
