"""One result model for every stage after grading, in the shape of Gradescope's ``results.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# A check's status. not graded: the grader (or the runner) failed on this check, not the student: no points are
# given or taken, and the instructor is told.
PASSED, FAILED, NOT_GRADED = "passed", "failed", "not graded"
# A submission's status in the gradebook. graded: the checks were judged on a whole run; timeout: a cell or the
# notebook ran out of time (judged on what existed); error: nothing could be judged (unreadable file, dead
# kernel); late / no timestamp: refused at intake; infrastructure error: the runner failed, not the student
# (no score is given, regrade it).
GRADED, TIMEOUT, ERROR, LATE, NO_TIMESTAMP, INFRASTRUCTURE = (
    "graded", "timeout", "error", "late", "no timestamp", "infrastructure error")
INFRASTRUCTURE_REASON = "infrastructure_reason"
# How a result was come by (its ``graded_from``): the notebook executed, the graders run again on its stored run
# (no kernel), an earlier result kept as it was, or refused at intake (late, unusable).
EXECUTED, REGRADED, UNCHANGED, REFUSED = "executed", "regraded from the stored run", "unchanged", "refused at intake"   # a batch's infrastructure error: why the runner failed, one line


def is_official(result: dict) -> bool:
    """Whether a written result (results.json, results/<id>.json) is an official grade: graded on the device the
    course's policy requires. Anything but ``true`` (a malformed value) counts as unofficial, so that it is never
    uploaded as final by mistake; a result without the field counts as official, as feedback pages always read it."""
    return result.get("official", True) is True


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
