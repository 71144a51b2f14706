"""Gradebooks: one assignment's (``gradebook.csv`` beside a batch's results) and the course's, joined from them.

The course gradebook reads what the batches wrote, nothing else: one row per student, a column per assignment
with the score it counts (blank when there is none: not submitted, or an infrastructure error), the total.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..course import clock
from ..course.config import Config
from ..errors import GraderError
from ..grading.checks import CheckSpec, max_score
from ..grading.result import INFRASTRUCTURE, Result
from ..grading.store import read_result
from .csvout import csv_text
from .report import format_points


def gradebook_csv(results: list[Result | dict], config: Config, checks: tuple[CheckSpec, ...]) -> str:
    """One row per student for an LMS import: points per declared check; no score for an infrastructure error. ``official``
    (yes/no) beside the score: a CPU grade under DEVICE_POLICY 'require-gpu' is no final grade. ``not_graded``: the
    checks a grader failed on (blank points, left out of the score) — review them before uploading.
    ``late_deduction``: the points a late policy's penalty took off ``score`` (the checks' columns keep what they
    earned); ``extended_until``: the student's own deadline, when an extension gave them one."""
    ids = [c.id for c in checks]
    header = ["student_id", "score", "max_score", "official", *ids, "status", "not_graded", "submitted_at", "file",
              "detail", "late_deduction", "extended_until"]
    return csv_text(header, (_gradebook_row(Result.of(r), config, checks, ids) for r in results))


def _gradebook_row(r: Result, config: Config, checks: tuple[CheckSpec, ...], ids: list[str]) -> list:
    """One student's row of ``gradebook_csv``."""
    scored = r.status != INFRASTRUCTURE
    by_check = {t.name: t.score for t in r.tests}
    return [r.provenance.student_id, _points(r.score) if scored else "", _points(max_score(checks)),
            "yes" if r.official else "no",
            *[_points(by_check.get(c)) if scored else "" for c in ids],
            r.status, " ".join(r.not_graded), _local(r.provenance.submitted_at, config), r.provenance.origin or "",
            _detail(r), _points(r.late_deduction), _local(r.provenance.extended_until, config)]


def _local(moment: str | None, config: Config) -> str:
    """A recorded time in the course's zone, to the second ('' when none was recorded)."""
    if not moment:
        return ""
    return clock.parse_time(moment, config.timezone).astimezone(config.timezone).isoformat(timespec="seconds")


def _points(value) -> str:
    return "" if value is None else format_points(float(value))


def _detail(result: Result) -> str:
    parts = [result.status_detail]
    if result.provenance.superseded:
        parts.append(f"{len(result.provenance.superseded)} other submission(s) not graded")
    return " · ".join(p for p in parts if p)


def assignment_of(folder: Path) -> str | None:
    """The assignment a batch's output folder holds, as its results say."""
    for path in sorted((folder / "results").glob("*.json")):
        named = read_result(path)
        if named and named.assignment:
            return named.assignment
    return None


def find_gradebooks(folders: list[Path]) -> dict[str, Path]:
    """assignment id → its gradebook.csv, from the batch output folders under ``folders``. Two folders grading
    the same assignment are refused (which one counts is the instructor's decision)."""
    found: dict[str, Path] = {}
    for folder in folders:
        if not Path(folder).is_dir():
            raise GraderError(f"not a folder of graded classes: {folder}")
        for gradebook in sorted(Path(folder).rglob("gradebook.csv")):
            assignment = assignment_of(gradebook.parent)
            if assignment is None:
                continue                     # a class with no results yet
            if assignment in found and found[assignment] != gradebook:
                raise GraderError(f"two gradebooks for {assignment}: {found[assignment]} and {gradebook}; give the "
                                  "folders of the one that counts")
            found[assignment] = gradebook
    if not found:
        raise GraderError(f"no graded classes found under {', '.join(map(str, folders))} (each has a gradebook.csv "
                          "and results/ written by `grade`)")
    return dict(sorted(found.items()))


def course_gradebook(gradebooks: dict[str, Path]) -> tuple[str, dict[str, float]]:
    """→ (the course CSV: student_id, one score column per assignment, total, max_total, notes; the maximum of
    each assignment). A status other than graded is named in notes (late, error, unofficial ...)."""
    scores: dict[str, dict[str, str]] = {}
    notes: dict[str, list[str]] = {}
    maxima: dict[str, float] = {}
    for assignment, path in gradebooks.items():
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                student = row.get("student_id") or ""
                scores.setdefault(student, {})[assignment] = row.get("score") or ""
                if row.get("max_score"):
                    maxima[assignment] = float(row["max_score"])
                status = row.get("status") or ""
                if status not in ("graded", ""):
                    notes.setdefault(student, []).append(f"{assignment}: {status}")
                if row.get("official") == "no":
                    notes.setdefault(student, []).append(f"{assignment}: unofficial")
                if row.get("late_deduction"):
                    notes.setdefault(student, []).append(f"{assignment}: late −{row['late_deduction']}")
                if row.get("extended_until"):
                    notes.setdefault(student, []).append(f"{assignment}: extended until {row['extended_until']}")
    most = sum(maxima.values())
    rows = []
    for student in sorted(scores):
        row = [scores[student].get(a, "") for a in gradebooks]
        total = sum(float(s) for s in row if s)
        rows.append([student, *row, format_points(total), format_points(most), "; ".join(notes.get(student, []))])
    return csv_text(["student_id", *gradebooks, "total", "max_total", "notes"], rows), maxima
