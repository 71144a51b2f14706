"""Grade one notebook: read → execute → hidden graders → one GradeResult.

Any failure of the student's notebook becomes a scored result (zero where nothing could be judged), never a crash;
only problems of the grader itself (configuration, dataset, an unreadable path) raise ``GraderError``.
"""

from __future__ import annotations

import importlib
import tempfile
import threading
from pathlib import Path

import nbformat

from . import dataset
from .config import Config
from .device import resolve_device
from .errors import GraderError
from .execute import ExecutionRecord, execute
from .graders import run_graders
from .result import ERROR, FAILED, GRADED, TIMEOUT, CheckResult, GradeResult


class NotebookUnreadable(Exception):
    """The submission is not a notebook we can run (the student's problem, graded as zero)."""


def read_notebook(path: Path) -> nbformat.NotebookNode:
    path = Path(path)
    if not path.is_file():
        raise GraderError(f"notebook not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except PermissionError as exc:
        raise GraderError(f"cannot read {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise NotebookUnreadable(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        return nbformat.reads(text, as_version=4)
    except Exception as exc:
        raise NotebookUnreadable(f"not a Jupyter notebook: {type(exc).__name__}: {str(exc)[:200]}") from exc


def zero_result(config: Config, notebook: str, why_ja: str, why_en: str, official: bool,
                status: str = ERROR) -> GradeResult:
    output = f"{why_ja}\n{why_en}"
    tests = [CheckResult(name, FAILED, 0.0, points, output) for name, points in config.points.items()]
    return GradeResult(config.assignment_id, notebook, tests, official, notes=[why_en], status=status,
                       status_detail=f"{why_ja} / {why_en}")


def status_of(record: ExecutionRecord) -> str:
    """graded, or why the checks were judged on less than a whole run."""
    if record.kernel_died or not record.export_ok:
        return ERROR
    if record.notebook_timed_out or any(c.status == "timeout" for c in record.cells):
        return TIMEOUT
    return GRADED


def notes_for(record: ExecutionRecord) -> list[str]:
    notes = []
    if not record.has_release_metadata:
        notes.append("the notebook carries no nbgrader metadata from the released assignment (retyped or saved "
                     "from another tool?); it was graded on what it defines")
    if record.kernel_died:
        notes.append("the kernel died while running the notebook; checks were judged on nothing exported")
    elif not record.export_ok:
        notes.append("the harness could not export the notebook's variables; checks were judged on nothing")
    if record.notebook_timed_out:
        notes.append("the notebook ran past its whole-notebook time limit; later cells were skipped")
    for cell in record.cell_errors:
        label = f"cell {cell.index + 1}" + (f" ({cell.cell_id})" if cell.cell_id else "")
        detail = f": {cell.ename}" + (f": {cell.evalue}" if cell.evalue else "") if cell.ename else ""
        notes.append(f"{label} {cell.status}{detail}")
    return notes


def grade_notebook(path: Path, config: Config, device: str = "auto", mnist: dataset.Mnist | None = None,
                   gpus: list[str] | None = None, cpu_fallback: bool = False, fused: bool = True) -> GradeResult:
    """Grade one notebook file: choose the device under the course's policy, then ``grade_on`` it."""
    kernel_device, official = resolve_device(device, config, gpus, cpu_fallback)
    return grade_on(Path(path), config, kernel_device, official, mnist, fused=fused)


def grade_on(path: Path, config: Config, kernel_device: str, official: bool, mnist: dataset.Mnist | None = None,
             *, fused: bool = True, npz: Path | None = None, work: Path | None = None) -> GradeResult:
    """Run and grade ``path`` on a device already chosen. ``work``: a folder to keep the artifacts and the
    kernel's log in (default: a temporary one)."""
    mnist = mnist or dataset.load_mnist(config.dataset_dir)
    try:
        nb = read_notebook(path)
    except NotebookUnreadable as exc:
        return zero_result(config, path.name, f"ノートブックを読み込めませんでした: {exc}",
                           f"The notebook could not be read: {exc}", official)
    # The graders need Keras in this process; importing it (~3 s) while the kernel trains costs no wall time.
    threading.Thread(target=importlib.import_module, args=("keras",), daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="autograder-artifacts-") as tmp:
        artifacts = Path(work) if work else Path(tmp)
        record = execute(nb, artifacts, config, kernel_device, mnist, fused=fused, npz=npz)
        tests, measurements = run_graders(artifacts, config, mnist)
    return GradeResult(config.assignment_id, path.name, tests, official, record.to_dict(), notes_for(record),
                       measurements, status=status_of(record))
