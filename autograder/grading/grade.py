"""Grade one notebook: read → execute → hidden graders → one GradeResult.

Any failure of the student's notebook becomes a scored result (zero where nothing could be judged), never a crash;
only problems of the grader itself (configuration, dataset, an unreadable path) raise ``GraderError``.
"""

from __future__ import annotations

import importlib
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..course import clock, dataset
from ..course.config import Config
from ..errors import GraderError
from ..run import sandbox
from ..run.device import official_on, resolve_device
from ..run.record import ExecutionRecord
from .checks import CheckSpec
from .graders import check_graders, run_graders
from .result import ERROR, FAILED, GRADED, TIMEOUT, CheckResult, GradeResult
from .store import RunStore


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
    from ..run import warm                       # the execution machinery, loaded only where a notebook runs

    warm.prewarm(config, kernel_device)          # the kernel starts while the dataset loads and the notebook is read
    return grade_on(Path(path), config, kernel_device, official, data, fused=fused)


def grade_on(path: Path, config: Config, kernel_device: str, official: bool, data=None,
             *, fused: bool = True, pins: dict[str, Path] | None = None, work: Path | None = None) -> GradeResult:
    """Run and grade ``path`` on a device already chosen. ``data``: the assignment's dataset, already loaded
    (default: loaded and verified here); ``pins``: its files for the kernel, already written; ``work``: a folder
    to keep the artifacts and the kernel's log in (default: a temporary one)."""
    data = dataset.for_assignment(config, data)
    with tempfile.TemporaryDirectory(prefix="autograder-artifacts-") as tmp:
        artifacts = Path(work or tmp)
        run = run_notebook(path, config, kernel_device, data, artifacts, fused=fused, pins=pins)
        return judge(run, artifacts, config, data, official, path.name)


@dataclass
class Run:
    """What running a submission gave besides its artifacts: the kernel's record and the notes on reading the
    notebook — or, for a notebook that could not be run, why (ja, en). Kept with the artifacts (``RunStore``), so
    that the graders can judge the run again without a kernel."""
    notes: list[str] = field(default_factory=list)
    record: ExecutionRecord | None = None
    not_run: tuple[str, str] | None = None

    def to_json(self) -> dict:
        return {"notes": list(self.notes), "record": asdict(self.record) if self.record else None,
                "not_run": list(self.not_run) if self.not_run else None}

    @classmethod
    def from_json(cls, data: dict) -> Run:
        record, not_run = data.get("record"), data.get("not_run")
        return cls(list(data.get("notes") or []), ExecutionRecord.from_json(record) if record else None,
                   tuple(not_run) if not_run else None)


def run_notebook(path: Path, config: Config, kernel_device: str, data, artifacts: Path, *, fused: bool = True,
                 pins: dict[str, Path] | None = None, executed_out: Path | None = None) -> Run:
    """Read, sanitize and execute ``path``: its exports land in ``artifacts``, the notebook with its outputs in
    ``executed_out`` (if given)."""
    # The execution machinery (nbformat, nbgrader, nbclient: ~3 s of imports) is loaded only when a notebook is
    # run: a worker that only regrades stored runs never needs it.
    from ..course.notebook import NotebookUnreadable, read_notebook
    from ..run.execute import execute
    from ..run.sanitize import read_released, sanitize

    try:
        nb, read_notes = read_notebook(path, config.max_notebook_mb)
    except NotebookUnreadable as exc:
        return Run(not_run=(f"ノートブックを読み込めませんでした: {exc.ja}", f"The notebook could not be read: {exc.en}"))
    clean = sanitize(nb, read_released(config.assignment.release_notebook))
    if not any(c.cell_type == "code" and c.source.strip() for c in clean.nb.cells):
        return Run(not_run=("コードセルがありません。課題のノートブックに答えを書いて提出してください。",
                            "The notebook has no code cells: hand in the assignment's notebook with your answers."))
    # The graders need Keras in this process; importing it (~3 s) while the kernel trains costs no wall time.
    threading.Thread(target=importlib.import_module, args=("keras",), daemon=True).start()
    record = execute(clean.nb, artifacts, config, kernel_device, data, fused=fused, pins=pins,
                     executed_out=executed_out, expected=dataset.expected_digests(config, data))
    return Run(read_notes + clean.notes, record)


def judge(run: Run, artifacts: Path, config: Config, data, official: bool, notebook: str) -> GradeResult:
    """The hidden graders' verdicts on a run's artifacts (fresh, or restored from the store)."""
    if run.not_run:
        return zero_result(config, check_graders(config), notebook, *run.not_run, official)
    graders = run_graders(artifacts, config, data)
    notes = run.notes + notes_for(run.record, config) + grader_error_notes(graders.errors)
    return GradeResult(config.assignment.id, notebook, graders.tests, official, run.record.to_dict(), notes,
                       graders.measurements, status=status_of(run.record))


# --- runs kept for regrading ---------------------------------------------------------------------------------

EXECUTED_NOTEBOOK = "executed.ipynb"


def kept_files(config: Config, artifacts: Path, executed: Path) -> dict[str, Path]:
    """The files of a run worth keeping: the declared exports, the kernel's record and log, the executed notebook
    (whatever else the kernel left in its folder is not kept; an array equal to the one the graders rebuild has
    no .npy, and the record says so)."""
    exports = config.assignment.exports
    names = [f"{name}.npy" for name in exports.arrays] + ["model.keras", "kernel_record.json", "kernel.log"]
    return {**{name: artifacts / name for name in names}, EXECUTED_NOTEBOOK: executed}


def grade_and_keep(path: Path, config: Config, kernel_device: str, official: bool, data, store: RunStore,
                   fingerprint: str, work: Path, *, fused: bool = True,
                   pins: dict[str, Path] | None = None) -> tuple[GradeResult, dict]:
    """``grade_on``, keeping the run in ``store`` under ``fingerprint`` (before the graders run: a grader that
    fails leaves a run to regrade once it is fixed); → (the result, the run's manifest, for the caller to save)."""
    artifacts = Path(work) / "artifacts"
    run = run_notebook(path, config, kernel_device, data, artifacts, fused=fused, pins=pins,
                       executed_out=Path(work) / EXECUTED_NOTEBOOK)
    manifest = store.keep(kept_files(config, artifacts, Path(work) / EXECUTED_NOTEBOOK), fingerprint,
                          {"device": kernel_device, "executed_at": clock.now().isoformat(timespec="seconds"),
                           "run": run.to_json()})
    return judge(run, artifacts, config, data, official, path.name), manifest


def regrade_kept(manifest: dict, store: RunStore, config: Config, data, notebook: str, work: Path) -> GradeResult:
    """The graders on a stored run, no kernel: the grade is official as the run's device was."""
    artifacts = Path(work) / "artifacts"
    store.restore(manifest, artifacts)
    return judge(Run.from_json(manifest.get("run") or {}), artifacts, config, data,
                 official_on(manifest.get("device", ""), config), notebook)


GRADER_FAILED = "was not graded: its grader failed"      # how such a note reads: the site keeps it from students


def grader_error_notes(errors: dict[str, str]) -> list[str]:
    """For the instructor: which checks a grader failed on, and with what (fix the grader, then regrade)."""
    return [f"check {check} {GRADER_FAILED} ({why}); fix the grader and grade again"
            for check, why in errors.items()]
