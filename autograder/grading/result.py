"""One result model for every stage after grading: the graders' verdict (``GradeResult``, with the execution it was
judged on as ``record.ExecutionRecord`` wrote it), and the written result (``Result``: the verdict with its
``Provenance``) that the store keeps, the batch passes on, and the gradebook and the pages render from — in the shape of Gradescope's
``results.json``, versioned by ``SCHEMA_VERSION``. A worker's reply carries it as that JSON (it crosses processes
and machines); it is typed again where it lands."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace

from ..errors import GraderError

# A check's status. not graded: the grader (or the runner) failed on this check, not the student: no points are
# given or taken, and the instructor is told.
PASSED, FAILED, NOT_GRADED = "passed", "failed", "not graded"
# A submission's status in the gradebook. graded: the checks were judged on a whole run; timeout: a cell or the
# notebook ran out of time (judged on what existed); error: nothing could be judged (unreadable file, dead
# kernel); late / no timestamp: refused at intake; no submission: on the roster, nothing handed in (0 points);
# infrastructure error: the runner failed, not the student (no score is given, regrade it).
GRADED, TIMEOUT, ERROR, LATE, NO_TIMESTAMP, NO_SUBMISSION, INFRASTRUCTURE = (
    "graded", "timeout", "error", "late", "no timestamp", "no submission", "infrastructure error")
# The order pages list statuses in: the graded first, what is not the student's doing after what is.
STATUS_ORDER = (GRADED, LATE, ERROR, TIMEOUT, INFRASTRUCTURE, NO_TIMESTAMP, NO_SUBMISSION)
# How a result was come by (its ``graded_from``): the notebook executed, the graders run again on its stored run
# (no kernel), an earlier result kept as it was, or refused at intake (late, unusable).
EXECUTED, REGRADED, UNCHANGED, REFUSED = "executed", "regraded from the stored run", "unchanged", "refused at intake"


@dataclass(frozen=True)
class CheckResult:
    name: str              # stable check id: reshape, one_hot, param_count, ...
    status: str            # passed | failed | not graded
    score: float | None    # None when not graded
    max_score: float
    output: str = ""       # why it failed (or a note on a pass): Japanese, then English


@dataclass(frozen=True)
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
        """The verdict of a written result (results.json, a batch's results/<id>.json), typed again; what the
        result records about how it was come by (``Provenance``) is not part of it."""
        return Result.from_json(data).verdict()

    def to_json(self) -> dict:
        """The verdict as results.json holds it (``Result.to_json``), with no provenance."""
        return Result.of_grade(self).to_json()


# --- the written result ------------------------------------------------------------------------------------

SCHEMA_VERSION = 1      # results.json's shape; 0: written before the field existed (read as 1, which only named it)


class ResultSchemaError(GraderError):
    """A written result of a shape this version cannot read (written by a newer autograder)."""


def finite(value) -> float | None:
    """A finite number as a float, or None for anything else (missing, NaN, inf, text, a bool): results on disk
    may be malformed or older, and every reader gets the same answer."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _text(value, default: str = "") -> str:
    return default if value is None else str(value)


def _mapping(value) -> dict:
    return dict(value) if isinstance(value, dict) else {}


def _items(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else []


@dataclass(frozen=True)
class Superseded:
    """Another submission of the student's, set aside (not graded), and why."""
    origin: str
    submitted_at: str | None     # ISO 8601, nbgrader's '… UTC', or None: as intake read it
    reason: str = ""

    @classmethod
    def from_json(cls, data) -> Superseded:
        data = _mapping(data)
        moment = data.get("submitted_at")
        return cls(_text(data.get("origin"), "?"), None if moment is None else str(moment), _text(data.get("reason")))


@dataclass(frozen=True)
class Provenance:
    """How a result was come by — who handed it in when, which run and grading produced it. None: not recorded
    (one notebook graded alone has no student, times or intake). The fingerprints decide what a later run may
    keep; ``page_fingerprint`` whether the student's page must be drawn again."""
    student_id: str | None = None
    origin: str | None = None                    # the graded file, as the export names it
    submitted_at: str | None = None              # ISO 8601
    timestamp_problem: str | None = None         # why no submission time could be read ('' when one was)
    superseded: tuple[Superseded, ...] | None = None
    attempts: int | None = None                  # how many times a worker took it (2: retried after a failure)
    graded_at: str | None = None                 # ISO 8601
    graded_from: str | None = None               # EXECUTED, REGRADED, UNCHANGED, REFUSED, or INFRASTRUCTURE
    run_fingerprint: str | None = None
    grading_fingerprint: str | None = None
    intake_fingerprint: str | None = None
    page_fingerprint: str | None = None
    infrastructure_reason: str | None = None     # an infrastructure error's cause, one line
    extended_until: str | None = None            # ISO 8601: the student's own deadline, when it was extended

    @classmethod
    def from_json(cls, data: dict) -> Provenance:
        def text(name: str) -> str | None:
            value = data.get(name)
            return None if value is None else str(value)

        attempts = data.get("attempts")
        superseded = data.get("superseded")
        return cls(**{f.name: text(f.name) for f in fields(cls) if f.name not in ("superseded", "attempts")},
                   superseded=None if superseded is None else tuple(map(Superseded.from_json, _items(superseded))),
                   attempts=attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else None)

    def to_json(self) -> dict:
        """The fields recorded (not None), as results.json holds them."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        if self.superseded is not None:
            data["superseded"] = [asdict(s) for s in self.superseded]
        return data


def _check_from_json(data: dict) -> CheckResult:
    return CheckResult(_text(data.get("name"), "?"), _text(data.get("status")), finite(data.get("score")),
                       finite(data.get("max_score")) or 0.0, _text(data.get("output")))


@dataclass(frozen=True)
class Result:
    """A written result (results.json; a batch's results/<id>.json): the graders' verdict as it was scored, and
    its provenance. What every stage after grading passes on and renders from; ``to_json``/``from_json`` are its
    one schema (README, "results.json"). ``score`` is None for an infrastructure error (no grade was given)."""
    score: float | None
    max_score: float | None
    tests: tuple[CheckResult, ...] = ()
    assignment: str = ""
    notebook: str = ""
    official: bool = True                        # graded on the device the course's policy requires
    status: str = GRADED
    status_detail: str = ""
    not_graded: tuple[str, ...] = ()             # the checks a grader failed on (left out of the score)
    notes: tuple[str, ...] = ()
    measurements: dict = field(default_factory=dict)   # check id → the grader's number (may be anything on disk:
                                                       # read it through ``measured``)
    execution: dict = field(default_factory=dict)      # ExecutionRecord.to_dict(), as written
    provenance: Provenance = Provenance()
    late_deduction: float | None = None          # points a late policy's penalty took off ``score`` (None: none)

    @classmethod
    def of_grade(cls, grade: GradeResult, provenance: Provenance = Provenance()) -> Result:
        """A fresh verdict as it is written: an infrastructure error has no score (the runner failed, not the
        student) and no checks not graded by a grader."""
        infrastructure = grade.status == INFRASTRUCTURE
        return cls(None if infrastructure else grade.score, grade.max_score, tuple(grade.tests), grade.assignment,
                   grade.notebook, grade.official, grade.status, grade.status_detail,
                   () if infrastructure else tuple(grade.not_graded), tuple(grade.notes), dict(grade.measurements),
                   dict(grade.execution), provenance)

    @classmethod
    def from_json(cls, data) -> Result:
        """A result as any version of this project wrote it, typed. Malformed values read as missing (a number
        that is not one: None; a list that is not one: empty); ``official`` is true only when written ``true``, so
        that a malformed grade is never uploaded as final, and a result without it counts as official (older
        ones). A result of a newer schema is refused, with what to do."""
        data = _mapping(data)
        version = data.get("schema_version", 0)
        if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version <= SCHEMA_VERSION:
            raise ResultSchemaError(
                f"この採点結果は新しいバージョンの autograder が書いたものです (schema_version {version!r}; このバージョン"
                f"が読めるのは {SCHEMA_VERSION} まで)。autograder を更新してください。\n"
                f"This result was written by a newer autograder (schema_version {version!r}; this one reads up to "
                f"{SCHEMA_VERSION}): update the autograder to read it, or grade again with this one into another "
                "folder.")
        return cls(
            finite(data.get("score")), finite(data.get("max_score")),
            tuple(_check_from_json(t) for t in _items(data.get("tests")) if isinstance(t, dict)),
            _text(data.get("assignment")), _text(data.get("notebook")), data.get("official", True) is True,
            _text(data.get("status")) or GRADED,       # results written by `grade` alone once had none: graded
            _text(data.get("status_detail")), tuple(map(str, _items(data.get("not_graded")))),
            tuple(map(str, _items(data.get("notes")))), _mapping(data.get("measurements")),
            _mapping(data.get("execution")), Provenance.from_json(data), finite(data.get("late_deduction")))

    @classmethod
    def of(cls, value: Result | dict) -> Result:
        """``value`` typed: a Result as it is, a result's JSON (read from disk, sent by a worker) parsed."""
        return value if isinstance(value, Result) else cls.from_json(value)

    def to_json(self) -> dict:
        """results.json: Gradescope's ``score``, ``max_score``, ``tests[]``, then ours, then the provenance."""
        return {"schema_version": SCHEMA_VERSION, "score": self.score, "max_score": self.max_score,
                "tests": [asdict(t) for t in self.tests], "assignment": self.assignment, "notebook": self.notebook,
                "official": self.official, "status": self.status, "status_detail": self.status_detail,
                "not_graded": list(self.not_graded), "notes": list(self.notes),
                "measurements": dict(self.measurements), "execution": dict(self.execution),
                **({} if self.late_deduction is None else {"late_deduction": self.late_deduction}),
                **self.provenance.to_json()}

    def verdict(self) -> GradeResult:
        """The graders' verdict alone (the table a terminal shows)."""
        return GradeResult(self.assignment, self.notebook, list(self.tests), self.official, dict(self.execution),
                           list(self.notes), dict(self.measurements), self.status, self.status_detail)

    def with_provenance(self, **changes) -> Result:
        return replace(self, provenance=replace(self.provenance, **changes))

    def with_late_penalty(self, fraction: float) -> Result:
        """The score with a late policy's ``fraction`` of it taken off, the points taken kept beside it (the
        checks keep what they earned: the page shows both)."""
        if not fraction or self.score is None or self.status == INFRASTRUCTURE:
            return self
        deduction = round(self.score * fraction, 4)
        return replace(self, score=round(self.score - deduction, 4), late_deduction=deduction)

    # --- readings every page and table shares ------------------------------------------------------------------
    @property
    def student(self) -> str:
        """The student's id, or '' for a notebook graded alone."""
        return self.provenance.student_id or ""

    @property
    def who(self) -> str:
        """Whom the result is for, in a message: the student, else the notebook."""
        return self.student or self.notebook or "?"

    @property
    def points(self) -> float | None:
        """The score as a grade: None when there is none (an infrastructure error, or none recorded)."""
        return None if self.status == INFRASTRUCTURE else self.score

    @property
    def judged(self) -> bool:
        """Counts towards pass rates and measured distributions: the notebook ran and was judged on time (or
        without a time)."""
        return self.status in (GRADED, NO_TIMESTAMP) and bool(self.tests)

    @property
    def seconds(self) -> float | None:
        return finite(self.execution.get("seconds"))

    @property
    def history(self) -> dict:
        return _mapping(self.execution.get("history"))

    def measured(self, name: str | None) -> float | None:
        return finite(self.measurements.get(name)) if name else None

    def test(self, name: str) -> CheckResult | None:
        return next((t for t in self.tests if t.name == name), None)


def infrastructure_reasons(results) -> dict[str, list[str]]:
    """reason → the students whose grading failed for it, over the infrastructure errors among ``results`` (in
    order): one broken runner fails a whole class for one reason, which is said once."""
    groups: dict[str, list[str]] = {}
    for r in map(Result.of, results):
        if r.status == INFRASTRUCTURE:
            why = r.provenance.infrastructure_reason or r.status_detail or "no reason recorded"
            groups.setdefault(why, []).append(r.who)
    return groups


def checks_not_graded(results) -> dict[str, list[str]]:
    """student → the checks a grader failed on (no points given or taken), over written results: what the
    instructor must review before the grades are final."""
    return {r.who: list(r.not_graded) for r in map(Result.of, results) if r.not_graded}


def pass_rates(results: list[Result | dict], checks: tuple[CheckSpec, ...]) -> dict[str, tuple[int, int]]:
    """check id → (passed, judged) over graded submissions, for each declared check in order: the one count both
    the figure and the page show."""
    judged = [r for r in map(Result.of, results) if r.judged]
    rates = {}
    for check in (c.id for c in checks):
        outcomes = [t.status == PASSED for r in judged for t in r.tests if t.name == check and t.status != NOT_GRADED]
        rates[check] = (sum(outcomes), len(outcomes))
    return rates


def status_counts(results: list[Result]) -> dict[str, int]:
    """Statuses in the order of STATUS_ORDER (unknown ones last), each with its count."""
    counts = Counter(r.status for r in results)
    return {s: counts[s] for s in sorted(counts, key=lambda s: STATUS_ORDER.index(s) if s in STATUS_ORDER else 99)}


def timings(results: list[Result]) -> list[tuple[str, float]]:
    """(student, seconds) of each result whose grading time was recorded."""
    return [(r.student or "?", r.seconds) for r in results if r.seconds is not None]
