"""A class's plan, decided before anything runs: who is in the class (each student's chosen submission, and who on
the roster handed nothing in), and for each of them whether a stored result still stands, the submission is
refused (late, unusable, missing), a stored run is judged again (graders only, no kernel), or the notebook must
execute. Pure but for reading the submissions and what the store holds."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..course.config import Config
from ..errors import GraderError
from ..grading.checks import CheckSpec
from ..grading.graders import GradersBroken, check_graders
from ..grading.result import INFRASTRUCTURE, Result
from ..reports.report import count
from . import intake


def class_submissions(root: Path, config: Config, roster: list[str] = (),
                      worksheet: Path | None = None) -> list[intake.Submission]:
    """Each student's chosen submission under ``root`` (``worksheet``: the LMS's list of students for its
    download), and a missing one for each student of ``roster`` who handed nothing in, in student order."""
    submissions = intake.choose(intake.find_candidates(root, config, worksheet), config)
    return sorted(submissions + intake.missing(list(roster), submissions), key=lambda s: s.student_id)


@dataclass
class Task:
    """One submission to grade, and what is known of its runs (those that may stand for it, the one stored)."""
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


def plan_line(assignment: str, students: int, todo: Plan, device: str, workers: str) -> str:
    """The plan in one line, for the instructor's console before the work starts."""
    return (f"{assignment}: {count(students, 'student')} · {len(todo.execute)} to execute on {device} · "
            f"{len(todo.regrade)} to regrade from stored runs · {workers} · {len(todo.reuse)} unchanged")
