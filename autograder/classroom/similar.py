"""A class's notebooks for the similarity report, read as ``grade`` reads the class (intake: an exchange folder,
an LMS export or zip; each student's latest submission), and past cohorts' beside them. Nothing is executed; the
comparing is ``reports.similarity``'s."""

from __future__ import annotations

from pathlib import Path

from ..course.assignment import config_for
from ..course.config import Config
from ..course.notebook import NotebookUnreadable, read_notebook
from ..errors import GraderError
from ..reports import similarity
from . import intake
from .batch import class_assignments, unpacked
from .plan import class_submissions


def class_notebooks(root: Path, config: Config, worksheet: Path | None = None,
                    cohort: str = "") -> tuple[list[similarity.Handed], list[str]]:
    """Each student's chosen notebook under ``root`` (late ones too: similarity is not grading), and a note per
    student whose file cannot be read."""
    handed, notes = [], []
    for sub in class_submissions(root, config, worksheet=worksheet):
        path = sub.chosen.path
        who = f"{cohort}/{sub.student_id}" if cohort else sub.student_id
        if sub.fate == intake.UNUSABLE or path is None:
            notes.append(f"{who}: {sub.chosen.problem or 'no notebook'} (not compared)")
            continue
        try:
            notebook, _ = read_notebook(path, config.max_notebook_mb)
        except NotebookUnreadable as exc:
            notes.append(f"{who}: {exc.en} (not compared)")
            continue
        handed.append(similarity.Handed(sub.student_id, notebook, cohort))
    return handed, notes


def course_notebooks(config: Config) -> tuple[dict, dict | None]:
    """(the reference notebook, the released template or None when it is not released yet)."""
    reference = config.assignment.reference_notebook
    if not reference.is_file():
        raise GraderError(f"the reference notebook is missing: {reference} (the similarity report discounts its "
                          "solution)")
    release = config.assignment.release_notebook
    return (read_notebook(reference)[0], read_notebook(release)[0] if release.is_file() else None)


def cohort_label(source: Path) -> str:
    """A past cohort's name in the report: its folder's (or zip's) name."""
    return Path(source).stem or str(source)


def compare_class(source: Path, config: Config, assignment: str | None = None, against=(),
                  worksheet: Path | None = None) -> similarity.Report:
    """The similarity report of the class at ``source`` (a folder or an LMS .zip), with the past cohorts
    ``against`` (folders or zips of the same assignment) compared to it, never among themselves."""
    with unpacked(source) as (root, refused):
        ids = class_assignments(root, Path(source), config, assignment)
        if len(ids) > 1:
            raise GraderError(f"{source} holds several assignments ({', '.join(ids)}): the similarity report "
                              "compares one; add --assignment ID")
        config = config_for(config, ids[0])
        handed, notes = class_notebooks(root, config, worksheet)
    notes += [f"{source}: {line}" for line in refused]
    for past in against:
        label = cohort_label(past)
        with unpacked(Path(past)) as (root, _):
            more, said = class_notebooks(root, config, cohort=label)
        handed += more
        notes += said or ([] if more else [f"{label}: no submission of {config.assignment.id} found in {past}"])
    reference, template = course_notebooks(config)
    report = similarity.compare(handed, reference, template, config.assignment.id)
    report.notes = notes
    return report
