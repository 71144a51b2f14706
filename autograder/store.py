"""A batch's output folder: written by the parent process alone, each file atomically, a student's files the moment
their result is known — so killing a batch loses at most the notebooks in flight, and rerunning it finds what is
already done.

    out/results/<student>.json   the result (with the fingerprint of what produced it)
    out/logs/<student>.log       what happened: the submission chosen, attempts, the grader's table, kernel output
    out/feedback/<student>.html  the student's page
    out/gradebook.csv, summary.html, summary.png   the class files, rewritten at the end of every run
"""

from __future__ import annotations

import json
from pathlib import Path

from .report import write_atomic


class ResultStore:
    def __init__(self, out: Path):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self.out)

    def result_path(self, file_stem: str) -> Path:
        return self.out / "results" / f"{file_stem}.json"

    def feedback_path(self, file_stem: str) -> Path:
        return self.out / "feedback" / f"{file_stem}.html"

    def previous(self, file_stem: str) -> dict | None:
        """The result stored for a student by an earlier run, if it can be read."""
        try:
            previous = json.loads(self.result_path(file_stem).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return previous if isinstance(previous, dict) else None

    def save(self, file_stem: str, result: dict, log: str) -> None:
        """The log first, then the result: a result on disk always has its log."""
        write_atomic(self.out / "logs" / f"{file_stem}.log", log)
        write_atomic(self.result_path(file_stem), json.dumps(result, ensure_ascii=False, indent=2) + "\n")

    def save_feedback(self, file_stem: str, page: str) -> None:
        write_atomic(self.feedback_path(file_stem), page)

    def save_class_files(self, files: dict[str, str | bytes]) -> None:
        for name, content in files.items():
            write_atomic(self.out / name, content)


def remove_leftovers(out: Path) -> None:
    """Temporary files of a batch that was killed mid-write (``write_atomic`` names them ``.name.*.tmp``)."""
    for leftover in list(out.glob(".*.tmp")) + list(out.glob("*/.*.tmp")):
        leftover.unlink(missing_ok=True)
