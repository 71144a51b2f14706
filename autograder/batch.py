"""Grade a whole class: intake → plan → a pool of worker processes (execute + graders) → a store of results,
kept runs, feedback pages and the gradebook.

Loss-free, resumable, and no more work than what changed. Each result records what produced it (``fingerprint``:
the run, the grading, and intake's decision), and each execution's artifacts are kept (``store.RunStore``). So the
plan, for each student: keeps a result whose inputs are all unchanged; runs only the graders on the stored run when
just the grading changed (a grader, a threshold: seconds, no kernel, no GPU); executes the notebook when its run
changed (the notebook, the release, the harness, the execution settings, the libraries) or no sound run is stored.
The pool (``pool.py``) does the work and retries a runner's failure once; the store (``store.py``) writes each
file atomically the moment it is known. Killing the batch loses at most the notebooks in flight.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import clock, dataset, intake
from .assignment import assignment_ids, unknown_assignment
from .checks import CheckSpec
from .config import Config
from .device import official_on
from .errors import ConfigError, GraderError
from .fingerprint import grading_fingerprint, page_context, page_fingerprint, run_contexts, run_fingerprints
from .graders import GradersBroken, check_graders
from .executors import Executor, LocalPool
from .pool import grade_task
from .result import (ERROR, EXECUTED, INFRASTRUCTURE, LATE, NO_SUBMISSION, NO_TIMESTAMP, NOT_GRADED, REFUSED,
                     REGRADED, CheckResult, GradeResult, Provenance, Result, Superseded)
from .report import count
from .store import ResultStore, is_class_folder

FATE_STATUS = {intake.LATE: LATE, intake.NO_TIMESTAMP: NO_TIMESTAMP, intake.UNUSABLE: ERROR,
               intake.MISSING: NO_SUBMISSION}


@dataclass
class Task:
    submission: intake.Submission
    runs: dict[str, str]                  # device → the run fingerprint there, of the runs that may stand for it
    device: str                           # where it executes if it must
    stored: dict | None = None            # the stored run to judge again (graders only), or None: execute
    note: str = ""                        # why a stored run of it could not be used
    attempts: list[str] = field(default_factory=list)   # one line per failed attempt

    @property
    def run_fingerprint(self) -> str:
        return self.stored["run_fingerprint"] if self.stored else self.runs[self.device]

    @property
    def run_device(self) -> str:
        return self.stored.get("device", "") if self.stored else self.device


@dataclass
class Plan:
    """What a run does with each student: keep a stored result, refuse (late, unusable), regrade a stored run
    (graders only, no kernel), or execute."""
    reuse: dict[str, Result] = field(default_factory=dict)   # student id → the stored result, still valid
    refuse: list[Task] = field(default_factory=list)
    regrade: list[Task] = field(default_factory=list)
    execute: list[Task] = field(default_factory=list)


@dataclass
class BatchReport:
    results: dict[str, Result]                           # student id → the result written for them
    executed: int
    regraded: int                                        # graded again from stored runs, no kernel
    reused: int
    seconds: float
    out: Path

    @property
    def graded_now(self) -> int:
        return self.executed + self.regraded

    @property
    def written(self) -> dict[str, dict]:
        """student id → the result as results/<id>.json holds it (the schema's JSON)."""
        return {student: result.to_json() for student, result in self.results.items()}

    @property
    def counts(self) -> Counter:
        return Counter(r.status for r in self.results.values())


def intake_fingerprint(sub: intake.Submission) -> str:
    """What intake decided about a submission (its file, time and fate): a result stands only while these hold."""
    chosen = sub.chosen
    facts = [chosen.origin, str(chosen.submitted_at), chosen.timestamp_problem, sub.fate, sub.detail,
             *(f"{c.origin} {c.submitted_at} {why}" for c, why in sub.superseded)]
    return hashlib.sha256("\0".join(map(str, facts)).encode()).hexdigest()


def notebook_bytes(sub: intake.Submission) -> bytes:
    chosen = sub.chosen
    return chosen.path.read_bytes() if chosen.path and chosen.path.is_file() else chosen.problem.encode()


def plan(submissions: list[intake.Submission], task_of, grading_of, stored_result, find_run, *,
         regrade: bool = False, rerun: bool = False, only: set[str] | None = None) -> Plan:
    """Decide, without running anything, what happens to each submission. ``task_of(sub)``: its Task (the run
    fingerprints that may stand for it); ``grading_of(device)``: the grading fingerprint for a run on that device;
    ``stored_result(sub)``: the result an earlier batch wrote, or None; ``find_run(fingerprints)``: (the first
    sound stored run among them, or None; what was wrong with a stored one). A stored result is kept when it came
    from one of the task's runs, the same grading and the same intake (never an infrastructure error); otherwise a
    sound stored run is judged again, and only a submission without one is executed. ``only``: the students to
    grade; everyone else's result is kept as it is. ``regrade``: no result is kept; ``rerun``: nothing stored is
    used."""
    decided = Plan()
    for sub in submissions:
        previous = stored_result(sub)
        if only is not None and sub.student_id not in only:
            if previous is not None:
                decided.reuse[sub.student_id] = previous
            continue
        task = task_of(sub)
        made = previous.provenance if previous else None
        if previous and not (regrade or rerun or only) and previous.status != INFRASTRUCTURE \
                and made.intake_fingerprint == intake_fingerprint(sub) \
                and any(made.run_fingerprint == fp and made.grading_fingerprint == grading_of(d)
                        for d, fp in task.runs.items()):
            decided.reuse[sub.student_id] = previous
        elif sub.fate != intake.GRADE:
            decided.refuse.append(task)
        else:
            if not rerun:
                task.stored, problem = find_run(task.runs.values())
                task.note = f"the stored run could not be used ({problem}): executed again" if problem else ""
            (decided.regrade if task.stored else decided.execute).append(task)
    return decided


class Batch:
    """One assignment's submissions under ``root`` (a folder, an export already unpacked) graded into ``out``."""

    def __init__(self, root: Path, out: Path, config: Config, *, workers: int | None, device: str,
                 regrade: bool = False, rerun: bool = False, only: list[str] | None = None, exact_fit: bool = False,
                 progress: bool = True, grade_fn=grade_task, refused: list[str] = (), strict_only: bool = True,
                 executor: Executor | None = None, roster: list[str] = ()):
        self.root, self.out, self.config, self.refused = Path(root), Path(out), config, list(refused)
        self.roster = list(roster)               # the students expected: who handed nothing in gets a row too
        if workers is not None and workers < 1:
            raise GraderError(f"--workers must be at least 1, got {workers}")
        self.regrade, self.rerun, self.fused, self.progress, self.grade_fn = (regrade, rerun, not exact_fit,
                                                                               progress, grade_fn)
        self.only = set(only) if only else None
        self.strict_only = strict_only           # False: the caller checked --only against several classes
        self.executor = executor or LocalPool()      # where the notebooks run: this machine, Ray or Slurm
        self.executor.prepare(config)
        self.kernel_device, self.official = self.executor.resolve_device(device, config)
        self.workers_asked = workers
        self.results: dict[str, Result] = {}
        self.checks: tuple[CheckSpec, ...] = ()     # as the graders declare them (none known while they are broken)
        self.page_context = ""                       # fingerprint.page_context, once the checks are known
        self._gradings: dict[bool, str] = {}

    def grading_of(self, device: str) -> str:
        """The grading fingerprint of a result from a run on ``device`` (computed once per officialness)."""
        official = official_on(device, self.config)
        if official not in self._gradings:
            self._gradings[official] = grading_fingerprint(self.config, official)
        return self._gradings[official]

    def run(self) -> BatchReport:
        started = time.monotonic()
        data = dataset.load_dataset(self.config)     # verified once, before anything is graded
        store = ResultStore(self.out)
        with self.executor.scratch(self.out) as tmp:
            submissions = intake.choose(intake.find_candidates(self.root, self.config), self.config)
            submissions = sorted(submissions + intake.missing(self.roster, submissions), key=lambda s: s.student_id)
            self._check_only(submissions)
            self.checks, broken = declared_checks(self.config)     # once, before any notebook is executed
            self.page_context = page_context(self.config, self.checks)
            contexts = run_contexts(self.config, self.kernel_device, self.fused)
            todo = plan(submissions, lambda sub: Task(sub, run_fingerprints(notebook_bytes(sub), contexts),
                                                      self.kernel_device),
                        self.grading_of, lambda sub: store.previous(sub.file_stem), store.runs.find_first,
                        regrade=self.regrade, rerun=self.rerun, only=self.only)
            for sub in submissions:
                if sub.student_id in todo.reuse:
                    self.results[sub.student_id] = todo.reuse[sub.student_id]
                    if not store.feedback_path(sub.file_stem).exists():
                        self._save_feedback(store, sub, todo.reuse[sub.student_id])
            for task in todo.refuse:
                self._finish(store, task, self._refused(task.submission), log="", how=REFUSED)
            self.workers = self.workers_asked or self.executor.default_workers(self.kernel_device,
                                                                                executing=bool(todo.execute))
            self._log_batch(len(submissions), todo)
            tasks = todo.execute + todo.regrade         # the long runs first; stored runs fill the other workers
            if broken:
                for task in tasks:           # nothing is run: each is an infrastructure error, graded when the
                    task.attempts.append(broken)      # same command runs again after the fix
                    self._finish(store, task, self._infrastructure_result(task), log=broken, how=None)
            elif tasks:
                pins = dataset.kernel_files(self.config, data, Path(tmp)) if todo.execute else {}
                snapshot = dataset.snapshot(data, Path(tmp) / "dataset") if data is not None else None
                self._grade(store, tasks, pins, snapshot, Path(tmp))
        seconds = round(time.monotonic() - started, 1)     # the same wall time on the summary page and the console
        from .class_reports import write_class_reports      # the pages' code (matplotlib) once they are due

        write_class_reports(store, [self.results[s] for s in sorted(self.results)], self.config, self.checks,
                            wall_seconds=seconds)
        return BatchReport(self.results, len(todo.execute), len(todo.regrade), len(todo.reuse), seconds, self.out)

    def _check_only(self, submissions: list[intake.Submission]) -> None:
        if self.only is not None and self.strict_only:
            check_only(self.only, {sub.student_id for sub in submissions})

    def _grade(self, store: ResultStore, tasks: list[Task], pins: dict[str, Path], snapshot: Path | None,
               scratch: Path) -> None:
        from tqdm import tqdm

        def payload(task: Task) -> dict:
            return {"path": str(task.submission.chosen.path), "device": self.kernel_device,
                    "official": self.official, "fused": self.fused,
                    "pins": {name: str(path) for name, path in pins.items()},
                    "store": str(store.runs.root), "run_fingerprint": task.run_fingerprint, "stored": task.stored}

        bar = tqdm(total=len(tasks), unit="nb", desc="grading", disable=not self.progress or not tasks,
                   file=sys.stderr, dynamic_ncols=True)
        try:
            for task, reply in self.executor.graded(tasks, self.config, scratch=scratch, payload=payload,
                                                    workers=self.workers, kernel_device=self.kernel_device,
                                                    log_path=self.out / "logs" / "workers.log",
                                                    grade_fn=self.grade_fn, snapshot=snapshot):
                infrastructure = bool(reply.get("infrastructure"))
                if reply.get("run") and not infrastructure:
                    store.runs.save(reply["run"])        # the run first, then the result that names it
                result = self._infrastructure_result(task) if infrastructure else Result.from_json(reply["result"])
                log = "\n".join(filter(None, [reply.get("table", ""), "--- kernel log ---", reply.get("log", "")]))
                self._finish(store, task, result, log, how=None if infrastructure else
                             REGRADED if task.stored else EXECUTED)
                bar.update(1)
                bar.set_postfix(dict(Counter(r.status for r in self.results.values())), refresh=False)
        finally:
            bar.close()

    # --- results ----------------------------------------------------------------------------------------------
    def _refused(self, sub) -> Result:
        from .grade import zero_result

        ja, _, en = sub.detail.partition(" / ")
        status = FATE_STATUS[sub.fate]
        notebook = sub.chosen.path.name if sub.chosen.path else sub.chosen.origin
        if sub.fate == intake.MISSING:        # no device graded anything: the 0 is as official as it gets
            return replace(Result.of_grade(zero_result(self.config, self.checks, notebook, ja, en, True,
                                                       status=status)), notes=())
        return Result.of_grade(zero_result(self.config, self.checks, notebook, ja, en or ja, self.official,
                                           status=status))

    def _infrastructure_result(self, task: Task) -> Result:
        why = task.attempts[-1].strip().splitlines()[-1][:300]
        text = ("採点環境の問題で採点できませんでした。あなたの減点ではありません。再採点します。\n"
                f"The grading machine failed ({why}); this is not your error and will be regraded.")
        tests = [CheckResult(c.id, NOT_GRADED, None, c.points, text) for c in self.checks]
        result = GradeResult(self.config.assignment.id, task.submission.chosen.path.name, tests, self.official,
                             notes=[f"attempt {i + 1}: {a.strip()[-500:]}" for i, a in enumerate(task.attempts)],
                             status=INFRASTRUCTURE, status_detail=text.replace("\n", " / "))
        return Result.of_grade(result, Provenance(infrastructure_reason=why))

    def _finish(self, store: ResultStore, task: Task, result: Result, log: str, how: str | None) -> None:
        """Write a student's result, log and page. ``how``: EXECUTED, REGRADED, REFUSED, or None when nothing ran
        (an infrastructure error)."""
        sub = task.submission
        result = replace(result, status_detail=result.status_detail or sub.detail,
                         notes=(*result.notes, *[task.note] * bool(task.note and how == EXECUTED)),
                         provenance=provenance_of(task, how, self.grading_of(task.run_device), result.provenance))
        result = result.with_provenance(page_fingerprint=page_fingerprint(result.to_json(), self.page_context))
        previous = store.previous(sub.file_stem)
        store.save(sub.file_stem, result, self._log_text(task, result, log))
        self.results[sub.student_id] = result
        if not (previous and previous.provenance.page_fingerprint == result.provenance.page_fingerprint
                and store.feedback_path(sub.file_stem).exists()):       # the page as it is would come out the same
            self._save_feedback(store, sub, result)

    def _log_text(self, task: Task, result: Result, log: str) -> str:
        sub = task.submission
        if sub.fate == intake.MISSING:
            return f"student: {sub.student_id}\nstatus: {NO_SUBMISSION} — on the roster, nothing handed in\n"
        lines = [f"student: {sub.student_id}", f"graded file: {sub.chosen.origin}",
                 f"submitted at: {sub.chosen.submitted_at or 'unknown (' + sub.chosen.timestamp_problem + ')'}",
                 f"status: {result.status}" + (f" — {result.status_detail}" if result.status_detail else "")]
        lines += [f"not graded: {c.origin} ({why})" for c, why in sub.superseded]
        if task.stored:
            lines.append(f"regraded from the stored run {task.run_fingerprint[:16]} (executed "
                         f"{task.stored.get('executed_at', '?')} on {task.run_device}): no kernel was started")
        elif task.note:
            lines.append(task.note)
        lines += [f"attempt {i + 1} failed: {a.strip()}" for i, a in enumerate(task.attempts)]
        return "\n".join(lines) + "\n\n" + log + "\n"

    def _save_feedback(self, store: ResultStore, sub, result: Result) -> None:
        from .feedback import feedback_page

        store.save_feedback(sub.file_stem, feedback_page(result, self.config, self.checks))

    def _log_batch(self, students: int, todo: Plan) -> None:
        for line in self.refused:            # always said, --quiet or not: the export held something hostile
            print(f"zip member refused: {line}", file=sys.stderr)
        if self.progress:
            print(f"{self.config.assignment.id}: {count(students, 'student')} · {len(todo.execute)} to execute on "
                  f"{self.kernel_device} · {len(todo.regrade)} to regrade from stored runs · "
                  f"{self.executor.describe(self.workers, self.kernel_device)} · "
                  f"{len(todo.reuse)} unchanged", file=sys.stderr)


def provenance_of(task: Task, how: str | None, grading: str, recorded: Provenance = Provenance()) -> Provenance:
    """How a student's result was come by: intake's choice (the file, its time, what was set aside), the attempts,
    and the fingerprints a later run decides by. ``recorded``: what the result already says (an infrastructure
    error's reason)."""
    sub = task.submission
    chosen = sub.chosen

    def iso(moment) -> str | None:
        return moment.isoformat() if moment else None

    return replace(
        recorded, student_id=sub.student_id, origin=chosen.origin, submitted_at=iso(chosen.submitted_at),
        timestamp_problem=chosen.timestamp_problem,
        superseded=tuple(Superseded(c.origin, iso(c.submitted_at), why) for c, why in sub.superseded),
        attempts=len(task.attempts) + (how in (EXECUTED, REGRADED)),
        graded_at=clock.now().isoformat(timespec="seconds"), graded_from=how or INFRASTRUCTURE,
        run_fingerprint=task.run_fingerprint, grading_fingerprint=grading, intake_fingerprint=intake_fingerprint(sub))


def check_only(only: set[str], known: set[str]) -> None:
    """--only may name only students who handed something in: a typo is said, with the closest id."""
    unknown = sorted(only - known)
    if unknown:
        close = {s: difflib.get_close_matches(s, known, n=1) for s in unknown}
        said = ", ".join(f"{s} (did you mean {close[s][0]}?)" if close[s] else s for s in unknown)
        raise GraderError(f"--only names students with no submission here: {said}; the class has "
                          f"{count(len(known), 'student')}")


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


def grade_batch(source: Path, out: Path, config: Config, **options) -> BatchReport:
    """Grade every submission of ``config``'s assignment under ``source`` (a folder or an LMS .zip) into ``out``;
    ``options``: as ``Batch`` takes them (workers, device, regrade, rerun, only, exact_fit, progress, …)."""
    options.setdefault("workers", None)
    options.setdefault("device", "auto")
    with unpacked(source) as (root, refused):
        return Batch(root, out, config, refused=refused, **options).run()


def grade_classes(source: Path, out: Path, config: Config, assignment: str | None = None,
                  **options) -> dict[str, BatchReport]:
    """Grade a class export holding one assignment or several: each assignment it holds (by its layout's
    <assignment> folders, or ``assignment`` when given) into its own folder, ``out/<assignment>/`` — however many
    it holds, so that the same class always lands in the same place and ``gradebook out/`` finds each once."""
    refuse_class_folder_as_root(Path(out))
    refuse_notebook_folder(Path(out))
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
        configs = {assignment_id: config.for_assignment(assignment_id) for assignment_id in ids}
        if options.get("only") and len(ids) > 1:     # a student named must have handed in one of them
            check_only(set(options["only"]), {sub.student_id for c in configs.values()
                                              for sub in intake.choose(intake.find_candidates(root, c), c)}
                       | set(options.get("roster", ())))
        reports = {}
        for i, (assignment_id, assignment_config) in enumerate(configs.items()):
            target = Path(out) / assignment_id
            refuse_notebook_folder(target)
            reports[assignment_id] = Batch(root, target, assignment_config, refused=refused if i == 0 else [],
                                           strict_only=len(ids) == 1, **options).run()
        return reports


def refuse_class_folder_as_root(out: Path) -> None:
    """``--out`` names the folder of the course's grades; one that is itself a class's folder (graded into directly,
    as before classes always went to OUT/<assignment>/) would nest a second class inside the first."""
    if is_class_folder(out):
        raise GraderError(
            f"{out} は 1 つの課題の採点結果のフォルダです。--out には課題ごとのフォルダを入れる親フォルダを指定して"
            f"ください (クラスは OUT/<課題>/ に書かれます)。\n"
            f"{out} is itself one assignment's graded class (it holds gradebook.csv and results/): --out names the "
            f"folder that holds a folder per assignment, and a class goes into OUT/<assignment>/ — give its parent "
            f"(--out {out.parent}) when the folder is named after its assignment, or move its files into "
            f"{out}/<assignment>/")


def refuse_notebook_folder(target: Path) -> None:
    """A single notebook's results (``grade NOTEBOOK --out``) are never mixed into a class's folder."""
    if (target / "results.json").is_file():
        raise GraderError(f"{target} は 1 冊のノートブックの採点結果を含んでいます。別の --out を指定してください。\n"
                          f"{target} holds one notebook's results (results.json, from `grade NOTEBOOK`): a class is "
                          "not written into it; move that folder or give another --out")

