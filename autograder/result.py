"""One result model for every stage after grading, in the shape of Gradescope's ``results.json``, and the record of
the execution it was judged on."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

# A check's status. not graded: the grader (or the runner) failed on this check, not the student: no points are
# given or taken, and the instructor is told.
PASSED, FAILED, NOT_GRADED = "passed", "failed", "not graded"
# A submission's status in the gradebook. graded: the checks were judged on a whole run; timeout: a cell or the
# notebook ran out of time (judged on what existed); error: nothing could be judged (unreadable file, dead
# kernel); late / no timestamp: refused at intake; no submission: on the roster, nothing handed in (0 points);
# infrastructure error: the runner failed, not the student (no score is given, regrade it).
GRADED, TIMEOUT, ERROR, LATE, NO_TIMESTAMP, NO_SUBMISSION, INFRASTRUCTURE = (
    "graded", "timeout", "error", "late", "no timestamp", "no submission", "infrastructure error")
INFRASTRUCTURE_REASON = "infrastructure_reason"
# How a result was come by (its ``graded_from``): the notebook executed, the graders run again on its stored run
# (no kernel), an earlier result kept as it was, or refused at intake (late, unusable).
EXECUTED, REGRADED, UNCHANGED, REFUSED = "executed", "regraded from the stored run", "unchanged", "refused at intake"   # a batch's infrastructure error: why the runner failed, one line


def is_official(result: dict) -> bool:
    """Whether a written result (results.json, results/<id>.json) is an official grade: graded on the device the
    course's policy requires. Anything but ``true`` (a malformed value) counts as unofficial, so that it is never
    uploaded as final by mistake; a result without the field counts as official, as feedback pages always read it."""
    return result.get("official", True) is True


@dataclass
class CellOutcome:
    index: int                               # position among the notebook's code cells (0-based): the n-th code
                                             # cell is In [n + 1] after "Restart & Run All"
    cell_id: str | None
    status: str                              # ok | error | timeout | skipped
    ename: str = ""
    evalue: str = ""


@dataclass
class ExecutionRecord:
    device: str                              # "cpu" or "gpu" (what the kernel was allowed to use)
    device_name: str = "CPU"                 # the GPU's name when one was used
    seed: int = 0
    seconds: float = 0.0
    tensorflow: str = ""
    keras: str = ""
    has_release_metadata: bool = True
    kernel_died: bool = False
    notebook_timed_out: bool = False
    export_ok: bool = False
    fused_fit: int = 1                       # training steps fused per call (1 = Keras's own loop)
    sandbox: str = ""                        # how the kernel was isolated ("bwrap …" or why it was not)
    limits_hit: dict = field(default_factory=dict)   # {"oom_kills": n, "forks_refused": n} from the sandbox
    output_truncated: list[int] = field(default_factory=list)   # code cells (as CellOutcome.index) whose output
                                                                # passed the limit
    history: dict = field(default_factory=dict)  # the per-epoch metrics Keras recorded in the kernel (for the
                                                 # feedback plot; the graders recompute what they score)
    cells: list[CellOutcome] = field(default_factory=list)
    arrays: dict = field(default_factory=dict)   # the kernel's summary of each variable (shape, dtype, range,
                                                 # SHA-256): shown to people, never used to score

    @property
    def cell_errors(self) -> list[CellOutcome]:
        return [c for c in self.cells if c.status != "ok"]

    @classmethod
    def from_json(cls, data: dict) -> ExecutionRecord:
        """A record kept whole (``asdict``) with a stored run, typed again."""
        known = {f.name for f in fields(cls)}
        record = cls(**{k: v for k, v in data.items() if k in known and k != "cells"})
        record.cells = [CellOutcome(**cell) for cell in data.get("cells", [])]
        return record

    def to_dict(self) -> dict:
        data = asdict(self)
        data["cells"] = [asdict(c) for c in self.cell_errors]   # only the cells that went wrong
        data["cells_run"] = sum(c.status != "skipped" for c in self.cells)
        return data


@dataclass(frozen=True)
class CheckResult:
    name: str              # stable check id: reshape, one_hot, param_count, ...
    status: str            # passed | failed | not graded
    score: float | None    # None when not graded
    max_score: float
    output: str = ""       # why it failed (or a note on a pass): Japanese, then English


@dataclass
class GradeResult:
    assignment: str
    notebook: str
    tests: list[CheckResult]
    official: bool                                   # graded on the device the course's policy requires
    execution: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)   # things worth knowing that are no check's verdict
    measurements: dict = field(default_factory=dict) # numbers the graders computed (val_accuracy, ...)
    status: str = GRADED
    status_detail: str = ""                          # why the status is not plain "graded" (ja / en)

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests if t.score is not None)

    @property
    def max_score(self) -> float:
        return sum(t.max_score for t in self.tests)

    @property
    def not_graded(self) -> list[str]:
        """Checks a grader failed on: the score leaves them out, and the instructor must look."""
        return [t.name for t in self.tests if t.status == NOT_GRADED]

    @classmethod
    def from_json(cls, data: dict) -> GradeResult:
        """A result written by ``to_json`` (results.json, a batch's results/<id>.json), typed again; the fields a
        batch adds (student, times, fingerprint) are not part of it."""
        tests = [CheckResult(t["name"], t["status"], t.get("score"), t["max_score"], t.get("output", ""))
                 for t in data.get("tests", [])]
        return cls(data.get("assignment", ""), data.get("notebook", ""), tests, data.get("official", True) is True,
                   data.get("execution") or {}, list(data.get("notes") or []), dict(data.get("measurements") or {}),
                   data.get("status", GRADED), data.get("status_detail") or "")

    def to_json(self) -> dict:
        """Gradescope's results.json (score, max_score, tests[]) plus our execution record and notes. An
        infrastructure error has no score: the runner failed, not the student."""
        return {
            "score": None if self.status == INFRASTRUCTURE else self.score,
            "max_score": self.max_score,
            "tests": [asdict(t) for t in self.tests],
            "assignment": self.assignment,
            "notebook": self.notebook,
            "official": self.official,
            "status": self.status,
            "status_detail": self.status_detail,
            "not_graded": [] if self.status == INFRASTRUCTURE else self.not_graded,
            "notes": list(self.notes),
            "measurements": dict(self.measurements),
            "execution": self.execution,
        }


def infrastructure_reasons(results) -> dict[str, list[str]]:
    """reason → the students whose grading failed for it, over the infrastructure errors among ``results`` (dicts,
    in order): one broken runner fails a whole class for one reason, which is said once."""
    groups: dict[str, list[str]] = {}
    for r in results:
        if isinstance(r, dict) and r.get("status") == INFRASTRUCTURE:
            why = str(r.get(INFRASTRUCTURE_REASON) or r.get("status_detail") or "no reason recorded")
            groups.setdefault(why, []).append(str(r.get("student_id") or r.get("notebook") or "?"))
    return groups


def checks_not_graded(results) -> dict[str, list[str]]:
    """student → the checks a grader failed on (no points given or taken), over written results: what the
    instructor must review before the grades are final."""
    return {str(r.get("student_id") or r.get("notebook") or "?"): list(r["not_graded"])
            for r in results if isinstance(r, dict) and isinstance(r.get("not_graded"), list) and r["not_graded"]}
