"""Grade one notebook: read → execute → hidden graders → one GradeResult.

Any failure of the student's notebook becomes a scored result (zero where nothing could be judged), never a crash;
only problems of the grader itself (configuration, dataset, an unreadable path) raise ``GraderError``.
"""

from __future__ import annotations

import importlib
import json
import tempfile
import threading
from pathlib import Path

import nbformat

from . import dataset, sandbox
from .checks import CheckSpec
from .config import Config
from .device import resolve_device
from .errors import GraderError
from .execute import ExecutionRecord, execute
from .graders import check_graders, run_graders
from .result import ERROR, FAILED, GRADED, TIMEOUT, CheckResult, GradeResult
from .sanitize import read_released, sanitize


class NotebookUnreadable(Exception):
    """The submission is not a notebook we can run (the student's problem, graded as zero)."""

    def __init__(self, ja: str, en: str):
        super().__init__(en)
        self.ja, self.en = ja, en


def read_notebook(path: Path, max_mb: int = 50) -> tuple[nbformat.NotebookNode, list[str]]:
    """→ (the notebook as nbformat 4, notes on what was converted). Each way a file can fail to be a notebook
    gets its own explanation."""
    path = Path(path)
    if not path.is_file():
        raise GraderError(f"notebook not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise NotebookUnreadable("空のファイルです。", "The file is empty (0 bytes).")
    if size > max_mb * 2**20:
        mb = size / 2**20
        raise NotebookUnreadable(f"ファイルが大きすぎます ({mb:.0f} MB、上限 {max_mb} MB)。出力を消して保存し直してください。",
                                 f"The file is {mb:.0f} MB, over the {max_mb} MB limit (MAX_NOTEBOOK_MB); clear "
                                 "the outputs and save it again.")
    try:
        text = path.read_bytes().decode("utf-8")
    except PermissionError as exc:
        raise GraderError(f"cannot read {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise NotebookUnreadable("UTF-8 のテキストではありません (別のファイルの名前を .ipynb にしたものでは?)。",
                                 f"The file is not UTF-8 text ({exc.reason} at byte {exc.start}): is it another "
                                 "kind of file renamed to .ipynb?") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        if exc.pos >= len(text.rstrip()) - 1:
            raise NotebookUnreadable("JSON が途中で終わっています (保存が途中で切れたのでは?)。",
                                     f"The JSON ends early ({exc.msg}): was the file cut off while saving?") from exc
        raise NotebookUnreadable("JSON として読めません。", f"The file is not JSON ({exc.msg} at line {exc.lineno}, "
                                                            f"column {exc.colno}).") from exc
    version = data.get("nbformat") if isinstance(data, dict) else None
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:
        raise NotebookUnreadable("Jupyter ノートブックの形式ではありません。",
                                 f"The JSON is not a Jupyter notebook ({type(exc).__name__}: {str(exc)[:200]}).") from exc
    notes = [f"an nbformat {version} notebook, converted to nbformat 4"] if version != 4 else []
    ids = [c.get("id") for c in data.get("cells", []) if isinstance(c, dict) and c.get("id")]
    if len(ids) != len(set(ids)):
        notes.append("duplicate cell ids were renumbered (nbformat repairs them on reading)")
    return nb, notes


def zero_result(config: Config, checks: tuple[CheckSpec, ...], notebook: str, why_ja: str, why_en: str,
                official: bool, status: str = ERROR) -> GradeResult:
    """Every declared check failed with the same reason (nothing of the notebook could be judged)."""
    output = f"{why_ja}\n{why_en}"
    tests = [CheckResult(c.id, FAILED, 0.0, c.points, output) for c in checks]
    return GradeResult(config.assignment.id, notebook, tests, official, notes=[why_en], status=status,
                       status_detail=f"{why_ja} / {why_en}")


def status_of(record: ExecutionRecord) -> str:
    """graded, or why the checks were judged on less than a whole run."""
    if record.kernel_died or not record.export_ok:
        return ERROR
    if record.notebook_timed_out or any(c.status == "timeout" for c in record.cells):
        return TIMEOUT
    return GRADED


def notes_for(record: ExecutionRecord, config: Config) -> list[str]:
    notes = []
    if record.sandbox.startswith("none"):
        notes.append(f"ran without a sandbox: {record.sandbox}")
    if record.limits_hit.get("oom_kills"):
        notes.append(f"the kernel went over its memory limit ({config.memory_limit_mb} MB, MEMORY_LIMIT_MB) and "
                     "was stopped")
    if record.limits_hit.get("forks_refused"):
        notes.append(f"the notebook tried to start more than {config.max_processes} processes/threads "
                     "(MAX_PROCESSES); further ones were refused")
    for index in record.output_truncated:
        notes.append(f"cell {index + 1} printed more than {config.output_limit_kb} kB (OUTPUT_LIMIT_KB); the rest "
                     "of its output was dropped")
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


def grade_notebook(path: Path, config: Config, device: str = "auto", data=None,
                   gpus: list[str] | None = None, cpu_fallback: bool = False, fused: bool = True) -> GradeResult:
    """Grade one notebook file: choose the device under the course's policy, then ``grade_on`` it."""
    if not Path(path).is_file():
        raise GraderError(f"notebook not found: {path}")
    check_graders(config)                    # a broken grader stops here, before minutes of training
    kernel_device, official = resolve_device(device, config, gpus, cpu_fallback)
    sandbox.require(config.sandbox, warn=not cpu_fallback)
    return grade_on(Path(path), config, kernel_device, official, data, fused=fused)


def grade_on(path: Path, config: Config, kernel_device: str, official: bool, data=None,
             *, fused: bool = True, pins: dict[str, Path] | None = None, work: Path | None = None) -> GradeResult:
    """Run and grade ``path`` on a device already chosen. ``data``: the assignment's dataset, already loaded
    (default: loaded and verified here); ``pins``: its files for the kernel, already written; ``work``: a folder
    to keep the artifacts and the kernel's log in (default: a temporary one)."""
    data = data if data is not None else dataset.load_dataset(config)
    try:
        nb, read_notes = read_notebook(path, config.max_notebook_mb)
    except NotebookUnreadable as exc:
        return zero_result(config, check_graders(config), path.name,
                           f"ノートブックを読み込めませんでした: {exc.ja}", f"The notebook could not be read: {exc.en}",
                           official)
    clean = sanitize(nb, read_released(config.assignment.release_notebook))
    if not any(c.cell_type == "code" and c.source.strip() for c in clean.nb.cells):
        return zero_result(config, check_graders(config), path.name,
                           "コードセルがありません。課題のノートブックに答えを書いて提出してください。",
                           "The notebook has no code cells: hand in the assignment's notebook with your answers.",
                           official)
    # The graders need Keras in this process; importing it (~3 s) while the kernel trains costs no wall time.
    threading.Thread(target=importlib.import_module, args=("keras",), daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="autograder-artifacts-") as tmp:
        artifacts = Path(work) if work else Path(tmp)
        record = execute(clean.nb, artifacts, config, kernel_device, data, fused=fused, pins=pins)
        graders = run_graders(artifacts, config, data)
    notes = read_notes + clean.notes + notes_for(record, config) + grader_error_notes(graders.errors)
    return GradeResult(config.assignment.id, path.name, graders.tests, official, record.to_dict(), notes,
                       graders.measurements, status=status_of(record))


def grader_error_notes(errors: dict[str, str]) -> list[str]:
    """For the instructor: which checks a grader failed on, and with what (fix the grader, then regrade)."""
    return [f"check {check} was not graded: its grader failed ({why}); fix the grader and grade again"
            for check, why in errors.items()]
