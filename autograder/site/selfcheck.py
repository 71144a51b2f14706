"""The public checks of each upload, run in the background: the database is the queue (oldest first, one pending
check per student and assignment), ``SITE_CHECK_WORKERS`` runner threads each hand one attempt at a time to a
worker of the batch's pool (``pool.WorkerPool``: the same sandboxed kernel and graders as ``grade``, a lost worker
replaced and its check retried once), and the whole result is kept for staff. A runner keeps its workers between
checks (one per assignment, ``CheckWorkers``), each reading the dataset from a snapshot the runner writes once per
assignment, as a batch's workers do. Students see ``public_view`` of it: the public checks in full,
the hidden ones only by name and points."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from ..classroom.pool import WorkerPool, pool_key, settings_state
from ..course import dataset
from ..course.assignment import config_for
from ..course.config import Config, load_config
from ..errors import GraderError
from ..files import write_atomic
from ..grading.checks import CheckSpec
from ..grading.grade import GRADER_FAILED, grade_on
from ..grading.result import NOT_GRADED, TIMEOUT, Result
from ..run.infrastructure import infrastructure_problem
from . import records
from .db import DONE, FAILED, QUEUED


def self_check_task(task: dict, config: Config, data) -> dict:
    """In a worker: run and grade one uploaded notebook (nothing kept but the result); in the sandbox or not at
    all, unless the site was started --unsafe-without-sandbox."""
    full = config.notebook_timeout_s
    config = check_config(config, task.get("time_limit_s", config.site_check_time_limit_s))
    if task.get("require_sandbox", True):
        config = dataclasses.replace(config, sandbox="require")
    from ..run import warm                   # the execution machinery, loaded in the worker only

    warm.keep_warming(config)                # the worker's next check finds its kernel started and imported
    result = grade_on(Path(task["path"]), config, task["device"], False, data)
    limits = {"notebook_s": config.notebook_timeout_s, "training_cell_s": config.training_cell_timeout_s,
              "cell_s": config.cell_timeout_s, "grading_s": full}
    return {"result": {**result.to_json(), "check_limits": limits}, "log": "",
            "infrastructure": infrastructure_problem(result.execution)}


def check_config(config: Config, limit_s: int) -> Config:
    """The settings a public check runs under: no cell and no notebook longer than ``limit_s``
    (SITE_CHECK_TIME_LIMIT_S). A check is a quick look for the student; the whole run is the grading's."""
    return dataclasses.replace(config, notebook_timeout_s=min(config.notebook_timeout_s, limit_s),
                               training_cell_timeout_s=min(config.training_cell_timeout_s, limit_s),
                               cell_timeout_s=min(config.cell_timeout_s, limit_s))


@dataclass
class CheckTask:
    attempt_id: int
    receipt: str
    path: Path
    attempts: list = field(default_factory=list)       # infrastructure failures (the pool retries once)


KEPT_WORKERS = 2           # assignments whose worker a runner thread keeps (each holds TensorFlow and a warm kernel)


class CheckWorkers:
    """One runner thread's check workers, kept between checks: a one-worker ``WorkerPool`` per ``pool_key`` (the
    assignment, its settings files as they are on disk, the device, the snapshot), the ``KEPT_WORKERS`` used last.
    A pool whose settings changed on disk is stopped, not reused. Driven by its own thread; ``interrupt`` from
    any."""

    def __init__(self, grade_fn, log_path: Path, keep: int = KEPT_WORKERS):
        self.grade_fn, self.log_path, self.keep = grade_fn, log_path, keep
        self.owner = threading.current_thread()
        self._pools: OrderedDict = OrderedDict()         # PoolKey → WorkerPool, the last used last
        self._lock = threading.Lock()

    def grade(self, task, payload: dict, config: Config, device: str, snapshot: Path | None) -> dict:
        """``task``'s reply from the worker kept for its key (started now when there is none)."""
        return self.pool_for(config, device, snapshot).grade(task, payload)

    def pool_for(self, config: Config, device: str, snapshot: Path | None) -> WorkerPool:
        key = pool_key(config, device, snapshot)
        with self._lock:
            pool = self._pools.pop(key, None)
            dropped = [self._pools.pop(k) for k in list(self._pools) if k.assignment == key.assignment]   # stale
        if pool is not None and not pool.alive:        # interrupted: its workers are gone
            dropped.append(pool)
            pool = None
        if pool is None:
            pool = WorkerPool(config, workers=1, kernel_device=device, log_path=self.log_path,
                              grade_fn=self.grade_fn, snapshot=snapshot)
        with self._lock:
            self._pools[key] = pool
            while len(self._pools) > self.keep:
                dropped.append(self._pools.popitem(last=False)[1])
        for old in dropped:
            old.close()
        return pool

    @property
    def pools(self) -> list[WorkerPool]:
        with self._lock:
            return list(self._pools.values())

    def interrupt(self) -> None:
        for pool in self.pools:
            pool.interrupt()

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), OrderedDict()
        for pool in pools:
            pool.close()


class CheckRunner:
    """Threads that take queued attempts and run their public checks until ``stop``, each on its kept workers."""

    def __init__(self, site, workers: int, grade_fn=self_check_task):
        self.site, self.workers, self.grade_fn = site, workers, grade_fn
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._claim = threading.Lock()
        self._mine = threading.local()                   # this thread's CheckWorkers
        self._kept: list[CheckWorkers] = []              # every thread's
        self._snapshots: dict[tuple, Path | None] = {}   # settings_state → the dataset snapshot its workers read
        self._scratch: tempfile.TemporaryDirectory | None = None
        self._lock = threading.Lock()
        self._snapshot_lock = threading.Lock()           # one dataset loaded at a time, each once

    def start(self) -> None:
        records.requeue_running_checks(self.site.engine)       # checks a stopped server left running start again
        self._threads = [threading.Thread(target=self._loop, name=f"check-runner-{i}", daemon=True)
                         for i in range(self.workers)]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 10) -> None:
        """Stop the threads and their workers: a check in flight has ``timeout`` seconds to finish, then is cut
        short (it runs again at the next start)."""
        self._stop.set()
        self.site.new_attempt.set()
        for t in self._threads:
            t.join(timeout)
        for kept in self.kept:
            kept.interrupt()
        for t in self._threads:
            t.join(timeout)
        for kept in self.kept:          # a thread closes its own as it ends; a pool is joined by one thread only
            if not kept.owner.is_alive() or kept.owner is threading.current_thread():
                kept.close()
        with self._snapshot_lock, self._lock:
            if self._scratch is not None:
                self._scratch.cleanup()
            self._scratch, self._snapshots = None, {}

    @property
    def kept(self) -> list[CheckWorkers]:
        with self._lock:
            return list(self._kept)

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                row = self.claim()
                if row is None:
                    self.site.new_attempt.wait(2)
                    self.site.new_attempt.clear()
                    continue
                self.run(row)
        finally:
            if getattr(self._mine, "workers", None) is not None:
                self._mine.workers.close()

    def check_workers(self) -> CheckWorkers:
        """The calling thread's kept workers."""
        if getattr(self._mine, "workers", None) is None:
            self._mine.workers = CheckWorkers(self.grade_fn, self.site.logs / "checks.log")
            with self._lock:
                self._kept.append(self._mine.workers)
        return self._mine.workers

    def snapshot_for(self, config: Config) -> Path | None:
        """The assignment's verified dataset, saved once (``dataset.snapshot``, as a batch saves it) for every
        worker to read instead of verifying it again — loaded from the settings on disk, as the workers read them;
        None for an assignment with no dataset, or one that cannot be loaded now (each worker then says why)."""
        state = settings_state(config)
        with self._snapshot_lock:
            if state not in self._snapshots:
                try:
                    data = dataset.load_dataset(config_for(load_config(config.source), config.assignment.id))
                except GraderError:
                    return None
                folder = self.scratch() / f"{config.assignment.id}-{len(self._snapshots)}"
                self._snapshots[state] = None if data is None else dataset.snapshot(data, folder)
            return self._snapshots[state]

    def scratch(self) -> Path:
        """The runner's temporary folder (the snapshots), removed at ``stop``."""
        with self._lock:
            if self._scratch is None:
                self._scratch = tempfile.TemporaryDirectory(prefix="autograder-checks-")
            return Path(self._scratch.name)

    def claim(self):
        """The oldest queued attempt, marked running (a conditional update: two runners never take one)."""
        with self._claim:
            return records.claim_check(self.site.engine)

    def run(self, row) -> None:
        state, note = FAILED, ""
        try:
            limit = self.site.config.site_check_time_limit_s
            config = check_config(self.site.config_for(row.assignment), limit)     # the pool's watchdog too
            device = self.site.check_device
            required = not self.site.unsafe_without_sandbox
            task = CheckTask(row.id, row.receipt, self.site.data / row.file)
            payload = {"path": str(task.path), "device": device, "require_sandbox": required, "time_limit_s": limit}
            reply = self.check_workers().grade(task, payload, config, device, self.snapshot_for(config))
            if reply.get("infrastructure"):
                note = f"the check could not run (tried {len(task.attempts)} times): {reply['infrastructure']}"
            else:
                write_atomic(self.site.check_file(row.receipt),
                             json.dumps(reply["result"], ensure_ascii=False, indent=2) + "\n")
                state = DONE
        except Exception as exc:                         # the runner's own failure: said to staff, never a crash
            note = f"the check could not run: {type(exc).__name__}: {exc}"
        if state == FAILED and self._stop.is_set():      # cut short by the server stopping: it runs again at start
            state, note = QUEUED, ""
        records.check_finished(self.site.engine, row.id, state, note[-2000:])


NOTE_LIMIT = 300                     # characters of a note (a cell's error message) a student sees
HIDDEN_MARK = "[…]"


@dataclass(frozen=True)
class StoredCheck:
    """A check's file (checks/<receipt>.json): the result in results.json's schema, plus the limits it ran under."""
    result: Result
    limits: dict

    @classmethod
    def read(cls, path: Path) -> StoredCheck | None:
        """The check kept at ``path``, typed, or None where there is none readable."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        limits = data.get("check_limits")
        return cls(Result.from_json(data), limits if isinstance(limits, dict) else {})


def public_view(check: StoredCheck, checks: tuple[CheckSpec, ...], hide: tuple[str, ...] = ()) -> dict:
    """What a student may see of a check result before the grades are released: each public check's verdict,
    points and message; each hidden check only by its title and points; the notes about their own notebook (a
    grader's failure is for staff), each cut to NOTE_LIMIT. A cell's error message is the student's own text,
    but a notebook running where it should not could put anything in it: ``hide`` (the site's key, the graders'
    source) never shows."""
    tests = {t.name: t for t in check.result.tests}
    rows = []
    for spec in checks:
        test = tests.get(spec.id)
        row = {"id": spec.id, "title_ja": spec.title_ja, "title_en": spec.title_en, "points": spec.points,
               "public": spec.public}
        if spec.public:
            not_graded = test is None or test.status == NOT_GRADED
            row.update(status=test.status if test else NOT_GRADED, score=None if not_graded else test.score,
                       output="" if not_graded else hidden(test.output, hide))
        rows.append(row)
    shown = [r for r in rows if r["public"]]
    return {"rows": rows, "score": sum(r["score"] or 0 for r in shown), "max": sum(r["points"] for r in shown),
            "notes": [student_note(n, hide) for n in check.result.notes if GRADER_FAILED not in n],
            "out_of_time": out_of_time(check)}


def out_of_time(check: StoredCheck) -> dict | None:
    """For a check that ran out of its time: its limits in minutes (the page says them, and that the grading
    runs the whole notebook longer), else None."""
    if check.result.status != TIMEOUT or not check.limits:
        return None
    return {name: f"{value / 60:g}" for name, value in check.limits.items() if isinstance(value, (int, float))}


def hidden(text: str, hide: tuple[str, ...]) -> str:
    for secret in hide:
        if secret:
            text = text.replace(secret, HIDDEN_MARK)
    return text


def student_note(note: str, hide: tuple[str, ...]) -> str:
    """A note as a student sees it: ``hide`` taken out, then cut to NOTE_LIMIT characters."""
    note = hidden(note, hide)
    return note if len(note) <= NOTE_LIMIT else note[:NOTE_LIMIT - 1] + "…"
