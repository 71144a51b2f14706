"""The class's reports, written from its typed results at the end of every batch: the gradebook for the LMS
(``gradebook.csv``), the instructor's summary page and its figure. A batch calls ``write_class_reports`` and writes
no class file itself; another class report (a similarity report, …) is one more entry in ``CLASS_REPORTS``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

from ..course.config import Config
from ..grading.checks import CheckSpec
from ..grading.result import Result
from ..grading.store import ResultStore
from .figures import figure_fingerprint, summary_figure
from .gradebook import gradebook_csv
from .summary import summary_page


def gradebook_report(results: list[Result], config: Config, checks: tuple[CheckSpec, ...], out: Path,
                     wall_seconds: float | None) -> dict[str, str | bytes]:
    return {"gradebook.csv": gradebook_csv(results, config, checks)}


def summary_report(results: list[Result], config: Config, checks: tuple[CheckSpec, ...], out: Path,
                   wall_seconds: float | None) -> dict[str, str | bytes]:
    """The summary page, and its figure when what the students' pages are drawn from changed (the figure takes
    seconds; ``figure_fingerprint`` says what the one on disk was drawn from)."""
    files: dict[str, str | bytes] = {"summary.html": summary_page(results, config, checks, wall_seconds=wall_seconds)}
    drawn_from = hashlib.sha256(" ".join(str(r.provenance.page_fingerprint) for r in results).encode()).hexdigest()
    if figure_fingerprint(out / "summary.png") != drawn_from:
        files["summary.png"] = summary_figure(results, config, checks, drawn_from)
    return files


# Each class report: (the class's results in student order, config, the declared checks, the class's folder, the
# batch's wall time) → file name → content.
ClassReport = Callable[[list[Result], Config, tuple[CheckSpec, ...], Path, "float | None"], dict[str, str | bytes]]
CLASS_REPORTS: tuple[ClassReport, ...] = (gradebook_report, summary_report)


def write_class_reports(store: ResultStore, results: list[Result], config: Config, checks: tuple[CheckSpec, ...],
                        wall_seconds: float | None = None) -> None:
    """Every class report of ``results`` (the class, in student order) into the batch's folder."""
    for report in CLASS_REPORTS:
        store.save_class_files(report(results, config, checks, store.out, wall_seconds))
