"""Run a student's notebook in a fresh kernel (nbclient) and export what the graders need.

One job: turn a notebook into artifacts on disk plus an ``ExecutionRecord``. Like ``nbgrader autograde`` an error
or a timeout in one cell does not stop the later cells, so every check is judged on what exists. Before the first
cell the harness pins the assignment's dataset and seeds the kernel; after the last one it exports what the
assignment declares: arrays, the model (``.keras``), the training history, numbers (see ``kernel_side``).
"""

from __future__ import annotations

import atexit
import json
import math
import os
import re
import shutil
import signal
import time
from dataclasses import asdict
from pathlib import Path
from queue import Empty

import nbformat
from jupyter_core.utils import ensure_async, ensure_event_loop
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from ..course import dataset
from ..course.assignment import Exports
from ..course.config import Config
from ..course.notebook import grade_id, is_solution
from . import sandbox, warm
from .record import CellOutcome, ExecutionRecord

KERNEL_SIDE = Path(__file__).with_name("kernel_side.py")
HARNESS_TIMEOUT_S = 300                      # each harness cell (setup, export) has its own budget
TIMEOUT_ENAME = "CellTimeoutError"
TRAINING_CALL = re.compile(r"\.fit\s*\(")
HARNESS_TAG = "autograder-harness"
TRAINING_MIME = "application/vnd.autograder.training+json"   # kernel_side announces Model.fit with it


def is_training_cell(cell, training_cells: tuple[str, ...] = ()) -> bool:
    """Known before it runs to train (the assignment lists its grade id, or its text calls fit); a cell that
    reaches fit otherwise gets the training budget once Keras announces it (``GradingClient``)."""
    return grade_id(cell) in training_cells or bool(TRAINING_CALL.search(cell.source))


def has_release_metadata(nb) -> bool:
    """True when the solution cells still carry the nbgrader metadata that release wrote."""
    return any(is_solution(c) for c in nb.cells)


def is_harness(cell) -> bool:
    return HARNESS_TAG in cell.metadata.get("tags", [])


def harness_cell(code: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(code)
    cell.metadata["tags"] = [HARNESS_TAG]
    return cell


def harness_code(function: str, *args: str) -> str:
    """Kernel code: run kernel_side.py in a private namespace, call ``function(*args)`` (each arg a Python
    expression), and leave no names behind in the student's namespace."""
    source = KERNEL_SIDE.read_text(encoding="utf-8")
    return (f"exec(compile({source!r}, '<autograder>', 'exec'), __autograder__ := {{}})\n"
            f"__autograder__[{function!r}]({', '.join(args)})\n"
            "del __autograder__")


class GradingClient(NotebookClient):
    """nbclient with per-cell budgets, a whole-notebook deadline, and a record of each cell's outcome.

    A cell gets ``CELL_TIMEOUT_S``, or ``TRAINING_CELL_TIMEOUT_S`` when it trains: known from its text, or learnt
    while it runs — the harness's Model.fit announces itself (``TRAINING_MIME``), so a cell that trains through a
    helper function defined elsewhere is not cut off at the ordinary budget. (A student could send the
    announcement without training: that buys their own cell at most the training budget, within the notebook's.)
    """

    def __init__(self, nb, config: Config, **kw):
        super().__init__(nb, allow_errors=True, interrupt_on_timeout=True, kernel_name="python3",
                         shutdown_kernel="immediate",        # the kernel is thrown away: no graceful goodbye
                         error_on_timeout={"ename": TIMEOUT_ENAME, "evalue": "",
                                           "traceback": [f"{TIMEOUT_ENAME}: cell ran past its time limit"]},
                         timeout_func=self._budget, **kw)
        self.grading_config = config
        self.deadline: float | None = None          # set when the student's first cell starts
        self.outcomes: list[CellOutcome] = []
        self.harness_s: dict[str, float] = {}       # the harness's own cells: "setup", "export"
        self.notebook_timed_out = False
        self.output_truncated: list[int] = []       # code cells, numbered as CellOutcome.index
        self._timed_out_after: int | None = None
        self._output_bytes = 0
        self._code_cell = 0                         # CellOutcome.index of the cell running
        self._cell_started = 0.0
        self._trained = False                       # Keras announced training in the cell running
        self._awaiting: str | None = None           # msg_id of the execute request awaiting its reply

    async def _async_poll_for_reply(self, msg_id, cell, timeout, *args, **kwargs):
        self._awaiting = msg_id
        return await super()._async_poll_for_reply(msg_id, cell, timeout, *args, **kwargs)

    async def _async_handle_timeout(self, timeout, cell=None):
        if cell is not None and not is_harness(cell):
            reply = await self._training_reply()
            if reply is not None:
                return reply                         # nbclient takes it as the cell's reply
        self._timed_out_after = round(time.monotonic() - self._cell_started) if self._trained else timeout
        # the kernel is interrupted; its KeyboardInterrupt is not the story
        return await super()._async_handle_timeout(timeout, cell)

    async def _training_reply(self) -> dict | None:
        """The ordinary budget ran out while Keras trains: wait for the cell's reply until the training budget
        (from the cell's start, within the notebook's deadline) is spent; None when it is."""
        if not self._trained:
            return None
        until = min(self._cell_started + self.grading_config.training_cell_timeout_s, self.deadline)
        while (left := until - time.monotonic()) > 0:
            try:
                msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=min(left, 1.0)))
            except Empty:
                await self._async_check_alive()          # a kernel that dies meanwhile is reported as dead
                continue
            if msg["parent_header"].get("msg_id") == self._awaiting:
                return msg
        return None

    def output(self, outs, msg, display_id, cell_index):
        """Keep a cell's output up to OUTPUT_LIMIT_KB as it arrives (a print loop cannot fill the grader's
        memory); beyond it, one line says what was dropped. The harness's training announcement is noted, not
        kept."""
        content = msg.get("content", {})
        if msg.get("msg_type") == "display_data" and TRAINING_MIME in (content.get("data") or {}):
            self._trained = True
            return None
        limit = self.grading_config.output_limit_kb * 1024
        self._output_bytes += len(str(content.get("text", ""))) + sum(
            len(str(v)) for v in (content.get("data") or {}).values()) + len(str(content.get("traceback", "")))
        if self._output_bytes <= limit or msg.get("msg_type") == "error":
            return super().output(outs, msg, display_id, cell_index)
        if not self.output_truncated or self.output_truncated[-1] != self._code_cell:
            self.output_truncated.append(self._code_cell)
            outs.append(nbformat.v4.new_output(
                "stream", name="stderr", text=f"[autograder: output beyond {self.grading_config.output_limit_kb} kB "
                                              "was dropped / 出力が多すぎるため以降を省略しました]\n"))
        return None

    @property
    def student_started(self) -> bool:
        """Whether a cell of the student's ran (or was skipped): before that, a failure is the runner's."""
        return self.deadline is not None

    def _budget(self, cell) -> int:
        if is_harness(cell):
            return HARNESS_TIMEOUT_S
        cfg = self.grading_config
        training = is_training_cell(cell, cfg.assignment.training_cells)
        budget = cfg.training_cell_timeout_s if training else cfg.cell_timeout_s
        return max(1, min(budget, round(self.deadline - time.monotonic())))

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        if is_harness(cell):
            started = time.monotonic()
            await super().async_execute_cell(cell, cell_index, execution_count, store_history=False)
            self.code_cells_executed -= 1            # nbclient numbers the cells it runs: the student's keep 1, 2, …
            self.harness_s["export" if self.outcomes else "setup"] = round(time.monotonic() - started, 2)
            return cell
        if cell.cell_type != "code":
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        index = self._code_cell = len(self.outcomes)
        if self.deadline is None:
            self.deadline = time.monotonic() + self.grading_config.notebook_timeout_s
        if time.monotonic() >= self.deadline:
            self.notebook_timed_out = True
            self.outcomes.append(CellOutcome(index, cell.get("id"), "skipped"))
            return cell
        self._timed_out_after = None
        self._output_bytes = 0
        self._trained = False
        self._cell_started = time.monotonic()
        await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        seconds = round(time.monotonic() - self._cell_started, 2)
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if self._timed_out_after is not None:
            outcome = CellOutcome(index, cell.get("id"), "timeout", TIMEOUT_ENAME,
                                  f"no reply within {self._timed_out_after} s")
        elif errors:
            err = errors[-1]
            outcome = CellOutcome(index, cell.get("id"), "error", err.ename, str(err.evalue)[:500])
        else:
            outcome = CellOutcome(index, cell.get("id"), "ok")
        outcome.seconds = seconds
        self.outcomes.append(outcome)
        return cell


def prepare(student_nb, pins: dict[str, Path], artifacts: Path, seed: int, exports: Exports, fused_steps: int = 1,
            expected: dict[str, dict] | None = None):
    """The notebook actually run: setup cell, the student's cells (markdown kept, not run), export cell
    (``expected``: the digests of the arrays the graders rebuild, see kernel_side's ``export``)."""
    nb = nbformat.from_dict(student_nb)                     # a copy: the submission stays as it was
    pins = {name: str(path) for name, path in pins.items()}
    nb.cells = [harness_cell(harness_code("setup", repr(pins), repr(seed), repr(fused_steps), repr(TRAINING_MIME))),
                *nb.cells,
                harness_cell(harness_code("export", "globals()", repr(str(artifacts)), repr(asdict(exports)),
                                         repr(expected or {})))]
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    return nb


def without_harness(nb) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(nb)
    nb.cells = [c for c in nb.cells if not is_harness(c)]
    return nb


def execute(student_nb, artifacts: Path, config: Config, device: str, data=None,
            executed_out: Path | None = None, fused: bool = True, pins: dict[str, Path] | None = None,
            expected: dict[str, dict] | None = None) -> ExecutionRecord:
    """Run ``student_nb`` (a NotebookNode) on a kernel of its own (warm where this thread's pool has one ready: see
    ``warm``); write artifacts under ``artifacts`` and, if asked, the notebook with its outputs to
    ``executed_out``. ``fused``: speed mode (config.fused_fit_steps); ``pins``: the dataset's files for the kernel,
    ready (a batch writes them once), else written from ``data`` (the assignment's dataset, loaded if not given);
    ``expected``: the digests of the arrays the graders can rebuild (``kernel_side.export``)."""
    artifacts = Path(artifacts)
    artifacts.mkdir(parents=True, exist_ok=True)
    fused_steps = config.fused_fit_steps if fused else 1
    record = ExecutionRecord(device=device, seed=config.seed, fused_fit=fused_steps,
                             has_release_metadata=has_release_metadata(student_nb))
    started = time.monotonic()
    kernel, start = warm.pool().take(warm.Recipe.of(config, device))
    record.sandbox = kernel.sandbox
    record.kernel, record.kernel_note = start.how, start.note
    record.kernel_ready_s, record.kernel_saved_s = start.ready_s, start.saved_s
    try:
        pins = place_pins(kernel.pins, config, data, pins)
        nb = prepare(student_nb, pins, kernel.artifacts, config.seed, config.assignment.exports, fused_steps,
                     expected)
        client = GradingClient(nb, config, km=kernel.km, resources={"metadata": {"path": str(kernel.work)}})
        try:
            client.execute(cleanup_kc=True)
        except Exception as exc:
            if not client.student_started:
                _forget_setup(client)
                raise warm.start_error(exc, kernel.log) from exc
            if not isinstance(exc, DeadKernelError):
                raise
            record.kernel_died = True
        if isinstance(kernel.km, sandbox.SandboxKernelManager):
            record.limits_hit = {k: v for k, v in kernel.km.limit_hits().items() if v}
        record.cells = client.outcomes
        record.harness_s = client.harness_s
        record.notebook_timed_out = client.notebook_timed_out
        record.output_truncated = client.output_truncated
        if executed_out:
            nbformat.write(without_harness(client.nb), executed_out)
        collect(kernel, artifacts)
    finally:
        kernel.destroy()
    record.seconds = round(time.monotonic() - started, 2)
    _read_kernel_record(artifacts, record)
    return record


def place_pins(folder: Path, config: Config, data, pins: dict[str, Path] | None) -> dict[str, Path]:
    """The dataset's files in the kernel's own ``folder`` (bound read-only in its sandbox): ``pins`` linked there
    (copied across filesystems), or written from ``data``."""
    if pins is None:
        return dataset.kernel_files(config, data, folder)
    placed = {}
    for name, path in pins.items():
        placed[name] = Path(folder) / Path(path).name
        try:
            os.link(path, placed[name])
        except OSError:
            shutil.copyfile(path, placed[name])
    return placed


def collect(kernel: warm.Kernel, artifacts: Path) -> None:
    """What the kernel exported, moved from its folder to ``artifacts`` (plain files only: see ``drop_links``),
    and its log appended to artifacts/kernel.log."""
    drop_links(kernel.artifacts)
    for path in kernel.artifacts.iterdir():
        shutil.move(path, artifacts / path.name)
    if kernel.log.is_file():
        with open(kernel.log, "rb") as source, open(artifacts / "kernel.log", "ab") as log:
            shutil.copyfileobj(source, log)


def _forget_setup(client: NotebookClient) -> None:
    """Undo what nbclient's kernel setup leaves behind when the start fails: its exit hook (which would clean up a
    kernel manager it has already dropped, an AssertionError at exit) and its SIGINT/SIGTERM handlers (which
    would swallow Ctrl-C in this process from then on)."""
    atexit.unregister(client._cleanup_kernel)
    loop = ensure_event_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.remove_signal_handler(sig)
        except (RuntimeError, ValueError):       # not the main thread: nbclient could not have added them
            pass


def drop_links(artifacts: Path) -> None:
    """The kernel could write into the artifacts folder: anything there that is not a plain file (a link to the
    graders' source, say) is removed before the grader's process reads it."""
    for path in artifacts.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_symlink() or not path.is_file():
            path.unlink(missing_ok=True)


def _read_kernel_record(artifacts: Path, record: ExecutionRecord) -> None:
    path = artifacts / "kernel_record.json"
    if not path.is_file():
        return
    try:
        exported = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return                                   # written by a process we do not trust: unreadable = not exported
    record.export_ok = True
    record.arrays = exported.get("arrays", {})
    record.history = _recorded_history(exported.get("history", {}))
    env = exported.get("environment", {})
    record.tensorflow = str(env.get("tensorflow", ""))
    record.keras = str(env.get("keras", ""))
    gpus = env.get("gpus") or []
    if record.device == "gpu" and gpus:
        record.device_name = str(gpus[0])


MAX_EPOCHS_KEPT = 1000
MAX_CURVES_KEPT = 32


def _recorded_history(exported) -> dict[str, list[float | None]]:
    """The per-epoch metrics the kernel claimed, as plain floats (None for NaN: JSON has none), within bounds."""
    history = exported.get("history") if isinstance(exported, dict) else None
    if not isinstance(history, dict):
        return {}
    return {str(name)[:100]: [float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None
                              for v in values[:MAX_EPOCHS_KEPT]]
            for name, values in list(history.items())[:MAX_CURVES_KEPT] if isinstance(values, list)}
