"""What a batch writes for one student, made from intake's choice and what the worker replied: the typed
result (a refusal's zero, an infrastructure error, or the graders' verdict) with its provenance, and the student's
log."""

from __future__ import annotations

from dataclasses import replace

from ..course import clock
from ..course.config import Config
from ..grading.checks import CheckSpec
from ..grading.grade import zero_result
from ..grading.result import (ERROR, EXECUTED, INFRASTRUCTURE, LATE, NO_SUBMISSION, NO_TIMESTAMP, NOT_GRADED, REGRADED,
                              CheckResult, GradeResult, Provenance, Result, Superseded)
from . import intake
from .plan import Task, intake_fingerprint

FATE_STATUS = {intake.LATE: LATE, intake.NO_TIMESTAMP: NO_TIMESTAMP, intake.UNUSABLE: ERROR,
               intake.MISSING: NO_SUBMISSION}


def refused_result(sub: intake.Submission, config: Config, checks: tuple[CheckSpec, ...], official: bool) -> Result:
    """A submission intake refused (late, no timestamp, unusable) or a student who handed nothing in: every check
    failed with intake's reason."""
    ja, _, en = sub.detail.partition(" / ")
    status = FATE_STATUS[sub.fate]
    notebook = sub.chosen.path.name if sub.chosen.path else sub.chosen.origin
    if sub.fate == intake.MISSING:        # no device graded anything: the 0 is as official as it gets
        return replace(Result.of_grade(zero_result(config, checks, notebook, ja, en, True, status=status)), notes=())
    return Result.of_grade(zero_result(config, checks, notebook, ja, en or ja, official, status=status))


def infrastructure_result(task: Task, config: Config, checks: tuple[CheckSpec, ...], official: bool) -> Result:
    """The runner failed on every attempt: no check is graded, no points are given or taken, and the last
    failure is the reason."""
    why = task.attempts[-1].strip().splitlines()[-1][:300]
    text = ("採点環境の問題で採点できませんでした。あなたの減点ではありません。再採点します。\n"
            f"The grading machine failed ({why}); this is not your error and will be regraded.")
    tests = [CheckResult(c.id, NOT_GRADED, None, c.points, text) for c in checks]
    result = GradeResult(config.assignment.id, task.submission.chosen.path.name, tests, official,
                         notes=[f"attempt {i + 1}: {a.strip()[-500:]}" for i, a in enumerate(task.attempts)],
                         status=INFRASTRUCTURE, status_detail=text.replace("\n", " / "))
    return Result.of_grade(result, Provenance(infrastructure_reason=why))


def with_provenance(result: Result, task: Task, how: str | None, grading: str) -> Result:
    """``result`` as it is written for ``task``'s student: intake's reason as its detail when it has none, the
    note on a stored run that could not be used, how it was come by (``provenance_of``), and a late penalty's
    deduction (intake decided its fraction)."""
    return replace(result, status_detail=result.status_detail or task.submission.detail,
                   notes=(*result.notes, *[task.note] * bool(task.note and how == EXECUTED)),
                   provenance=provenance_of(task, how, grading, result.provenance)
                   ).with_late_penalty(task.submission.penalty)


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
        run_fingerprint=task.run_fingerprint, grading_fingerprint=grading, intake_fingerprint=intake_fingerprint(sub),
        extended_until=iso(sub.extended_until))


def log_text(task: Task, result: Result, log: str) -> str:
    """The student's log: which file was graded and why, what was set aside, how the result was come by, each
    failed attempt, then ``log`` (the check table and the kernel's output)."""
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
