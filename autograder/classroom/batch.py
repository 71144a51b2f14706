"""Grade a whole class: intake → plan → a pool of worker processes (execute + graders) → a store of results,
kept runs, feedback pages and the gradebook.

Loss-free, resumable, and no more work than what changed. Each result records what produced it (``fingerprint``:
the run, the grading, and intake's decision), and each execution's artifacts are kept (``store.RunStore``). So the
plan, for each student: keeps a result whose inputs are all unchanged; runs only the graders on the stored run when
just the grading changed (a grader, a threshold: seconds, no kernel, no GPU); executes the notebook when its run
changed (the notebook, the release, the harness, the execution settings, the libraries) or no sound run is stored.
The pool (``pool.py``) does the work and retries a runner's failure once; the store (``store.py``) writes each
file atomically the moment it is known. Killing the batch loses at most the notebooks in flight.

Each job has its home: ``plan.py`` decides (pure), the executor runs, ``outcome.py`` makes each student's typed
result and log, ``class_reports.py`` writes the class's files; ``Batch`` only puts them in order.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..course import dataset
from ..course.assignment import assignment_ids, config_for, unknown_assignment
from ..course.config import Config
from ..errors import ConfigError, GraderError
from ..grading.checks import CheckSpec
from ..grading.fingerprint import grading_fingerprint, page_context, page_fingerprint, run_contexts, run_fingerprints
from ..grading.result import EXECUTED, REFUSED, REGRADED, Result
from ..grading.store import ResultStore, is_class_folder
from ..run.device import official_on
from . import intake
from .executors import Executor, LocalPool
from .outcome import infrastructure_result, log_text, refused_result, with_provenance
from .plan import Plan, Task, check_only, class_submissions, declared_checks, notebook_bytes, plan, plan_line
from .pool import grade_task


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


class Batch:
    """One assignment's submissions under ``root`` (a folder, an export already unpacked) graded into ``out``."""

    def __init__(self, root: Path, out: Path, config: Config, *, workers: int | None, device: str,
                 regrade: bool = False, rerun: bool = False, only: list[str] | None = None, exact_fit: bool = False,
                 progress: bool = True, grade_fn=grade_task, refused: list[str] = (), strict_only: bool = True,
                 executor: Executor | None = None, roster: list[str] = (), worksheet: Path | None = None):
        self.root, self.out, self.config, self.refused = Path(root), Path(out), config, list(refused)
        self.roster = list(roster)               # the students expected: who handed nothing in gets a row too
        self.worksheet = worksheet               # the LMS's list of students for its download (lms.py)
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
        """Plan, refuse and keep what needs no work, grade the rest through the executor, then the class's
        reports."""
        started = time.monotonic()
        data = dataset.load_dataset(self.config)     # verified once, before anything is graded
        store = ResultStore(self.out)
        with self.executor.scratch(self.out) as tmp:
            submissions = class_submissions(self.root, self.config, self.roster, self.worksheet)
            self._check_only(submissions)
            self.checks, broken = declared_checks(self.config)     # once, before any notebook is executed
            self.page_context = page_context(self.config, self.checks)
            todo = self._plan(submissions, store, data)
            self._keep(store, submissions, todo.reuse)
            for task in todo.refuse:
                self._finish(store, task, refused_result(task.submission, self.config, self.checks, self.official),
                             log="", how=REFUSED)
            self.workers = self.workers_asked or self.executor.default_workers(self.kernel_device,
                                                                                executing=bool(todo.execute))
            self._say_plan(len(submissions), todo)
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
        from ..reports.class_reports import write_class_reports  # the pages' code (matplotlib) once they are due

        write_class_reports(store, [self.results[s] for s in sorted(self.results)], self.config, self.checks,
                            wall_seconds=seconds)
        return BatchReport(self.results, len(todo.execute), len(todo.regrade), len(todo.reuse), seconds, self.out)

    def _check_only(self, submissions: list[intake.Submission]) -> None:
        if self.only is not None and self.strict_only:
            check_only(self.only, {sub.student_id for sub in submissions})

    def _plan(self, submissions: list[intake.Submission], store: ResultStore, data) -> Plan:
        contexts = run_contexts(self.config, self.kernel_device, self.fused, data)
        return plan(submissions, lambda sub: Task(sub, run_fingerprints(notebook_bytes(sub), contexts),
                                                  self.kernel_device),
                    self.grading_of, lambda sub: store.previous(sub.file_stem), store.runs.find_first,
                    regrade=self.regrade, rerun=self.rerun, only=self.only)

    def _keep(self, store: ResultStore, submissions: list[intake.Submission], kept: dict[str, Result]) -> None:
        """The results that still stand, as they are (a page lost since is drawn again)."""
        for sub in submissions:
            if sub.student_id in kept:
                self.results[sub.student_id] = kept[sub.student_id]
                if not store.feedback_path(sub.file_stem).exists():
                    self._save_feedback(store, sub, kept[sub.student_id])

    def _grade(self, store: ResultStore, tasks: list[Task], pins: dict[str, Path], snapshot: Path | None,
               scratch: Path) -> None:
        """The tasks through the executor, each reply written the moment it comes, under a progress bar."""
        def payload(task: Task) -> dict:
            return {"path": str(task.submission.chosen.path), "device": self.kernel_device,
                    "official": self.official, "fused": self.fused,
                    "pins": {name: str(path) for name, path in pins.items()},
                    "store": str(store.runs.root), "run_fingerprint": task.run_fingerprint, "stored": task.stored}

        replies = self.executor.graded(tasks, self.config, scratch=scratch, payload=payload, workers=self.workers,
                                       kernel_device=self.kernel_device, log_path=self.out / "logs" / "workers.log",
                                       grade_fn=self.grade_fn, snapshot=snapshot)
        with progress_bar(len(tasks), shown=self.progress) as tick:
            for task, reply in replies:
                self._receive(store, task, reply)
                tick(Counter(r.status for r in self.results.values()))

    def _receive(self, store: ResultStore, task: Task, reply: dict) -> None:
        """A worker's reply: its run kept (before the result that names it), its result written."""
        infrastructure = bool(reply.get("infrastructure"))
        if reply.get("run") and not infrastructure:
            store.runs.save(reply["run"])
        result = self._infrastructure_result(task) if infrastructure else Result.from_json(reply["result"])
        log = "\n".join(filter(None, [reply.get("table", ""), "--- kernel log ---", reply.get("log", "")]))
        self._finish(store, task, result, log, how=None if infrastructure else REGRADED if task.stored else EXECUTED)

    def _infrastructure_result(self, task: Task) -> Result:
        return infrastructure_result(task, self.config, self.checks, self.official)

    def _finish(self, store: ResultStore, task: Task, result: Result, log: str, how: str | None) -> None:
        """Write a student's result, log and page. ``how``: EXECUTED, REGRADED, REFUSED, or None when nothing ran
        (an infrastructure error)."""
        sub = task.submission
        result = with_provenance(result, task, how, self.grading_of(task.run_device))
        result = result.with_provenance(page_fingerprint=page_fingerprint(result.to_json(), self.page_context))
        previous = store.previous(sub.file_stem)
        store.save(sub.file_stem, result, log_text(task, result, log))
        self.results[sub.student_id] = result
        if not (previous and previous.provenance.page_fingerprint == result.provenance.page_fingerprint
                and store.feedback_path(sub.file_stem).exists()):       # the page as it is would come out the same
            self._save_feedback(store, sub, result)

    def _save_feedback(self, store: ResultStore, sub, result: Result) -> None:
        from ..reports.feedback import feedback_page

        store.save_feedback(sub.file_stem, feedback_page(result, self.config, self.checks))

    def _say_plan(self, students: int, todo: Plan) -> None:
        for line in self.refused:            # always said, --quiet or not: the export held something hostile
            print(f"zip member refused: {line}", file=sys.stderr)
        if self.progress:
            print(plan_line(self.config.assignment.id, students, todo, self.kernel_device,
                            self.executor.describe(self.workers, self.kernel_device)), file=sys.stderr)


@contextlib.contextmanager
def progress_bar(total: int, shown: bool = True):
    """A bar on stderr over ``total`` notebooks; the block gets ``tick(statuses)``: one more done, the counts so
    far beside the bar."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="nb", desc="grading", disable=not shown or not total, file=sys.stderr,
               dynamic_ncols=True)

    def tick(statuses: Counter) -> None:
        bar.update(1)
        bar.set_postfix(dict(statuses), refresh=False)

    try:
        yield tick
    finally:
        bar.close()


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
    with unpacked(source) as (root, refused):
        ids = class_assignments(root, source, config, assignment)
        configs = {assignment_id: config_for(config, assignment_id) for assignment_id in ids}
        if options.get("only") and len(ids) > 1:     # a student named must have handed in one of them
            check_only(set(options["only"]), {sub.student_id for c in configs.values()
                                              for sub in intake.choose(intake.find_candidates(
                                                  root, c, options.get("worksheet")), c)}
                       | set(options.get("roster", ())))
        reports = {}
        for i, (assignment_id, assignment_config) in enumerate(configs.items()):
            target = Path(out) / assignment_id
            refuse_notebook_folder(target)
            reports[assignment_id] = Batch(root, target, assignment_config, refused=refused if i == 0 else [],
                                           strict_only=len(ids) == 1, **options).run()
        return reports


def class_assignments(root: Path, source: Path, config: Config, assignment: str | None = None) -> list[str]:
    """The assignments a class export unpacked at ``root`` holds (by its layout's <assignment> folders; the
    course's only one when the layout names none), or ``assignment`` when given."""
    known = assignment_ids(config)
    if assignment:
        if assignment not in known:
            raise unknown_assignment(config, assignment)
        return [assignment]
    ids = intake.assignments_in(root, known) or known[:1] * (len(known) == 1)
    if not ids:
        raise ConfigError(f"cannot tell which assignment the submissions in {source} are for (their layout "
                          f"names none of {', '.join(known) or 'no assignments'}): add --assignment ID")
    return ids


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

