"""The public checks of each upload, run in the background: the database is the queue (oldest first, one pending
check per student and assignment), ``SITE_CHECK_WORKERS`` runner threads each hand one attempt at a time to the
batch's worker pool (``pool.graded``: the same sandboxed kernel and graders as ``grade``, a lost worker retried
once), and the whole result is kept for staff. Students see ``public_view`` of it: the public checks in full,
the hidden ones only by name and points."""

from __future__ import annotations

import dataclasses
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..classroom.pool import graded
from ..course.config import Config
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
    attempts: list = field(default_factory=list)       # infrastructure failures (pool.graded retries once)


class CheckRunner:
    """Threads that take queued attempts and run their public checks until ``stop``."""

    def __init__(self, site, workers: int, grade_fn=self_check_task):
        self.site, self.workers, self.grade_fn = site, workers, grade_fn
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._claim = threading.Lock()

    def start(self) -> None:
        records.requeue_running_checks(self.site.engine)       # checks a stopped server left running start again
        self._threads = [threading.Thread(target=self._loop, name=f"check-runner-{i}", daemon=True)
                         for i in range(self.workers)]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self.site.new_attempt.set()
        for t in self._threads:
            t.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            row = self.claim()
            if row is None:
                self.site.new_attempt.wait(2)
                self.site.new_attempt.clear()
                continue
            self.run(row)

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
            payload = {"device": device, "require_sandbox": required, "time_limit_s": limit}
            for _, reply in graded([task], config, payload=lambda t: {"path": str(t.path), **payload},
                                   workers=1, kernel_device=device, log_path=self.site.logs / "checks.log",
                                   grade_fn=self.grade_fn):
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
