"""The record of one execution of a notebook, as the kernel's runner keeps it: the device, the libraries, the
time, each code cell's outcome, the limits hit, the history Keras recorded. Kept whole with a stored run, and in a
result's ``execution`` as ``to_dict`` writes it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class CellOutcome:
    index: int                               # position among the notebook's code cells (0-based): the n-th code
                                             # cell is In [n + 1] after "Restart & Run All"
    cell_id: str | None
    status: str                              # ok | error | timeout | skipped
    ename: str = ""
    evalue: str = ""
    seconds: float = 0.0                     # from the request to the reply


@dataclass
class ExecutionRecord:
    device: str                              # "cpu" or "gpu" (what the kernel was allowed to use)
    device_name: str = "CPU"                 # the GPU's name when one was used
    seed: int = 0
    seconds: float = 0.0
    tensorflow: str = ""
    keras: str = ""
    has_release_metadata: bool = True
    kernel_died: bool = False
    notebook_timed_out: bool = False
    export_ok: bool = False
    fused_fit: int = 1                       # training steps fused per call (1 = Keras's own loop)
    sandbox: str = ""                        # how the kernel was isolated ("bwrap …" or why it was not)
    kernel: str = "cold"                     # "warm": started and imported before the notebook came (run.warm)
    kernel_note: str = ""                    # why it was cold
    kernel_ready_s: float = 0.0              # the kernel's start and imports
    kernel_saved_s: float = 0.0              # of them, the seconds the notebook did not wait for (warm)
    harness_s: dict = field(default_factory=dict)    # the harness's cells: {"setup": s, "export": s}
    limits_hit: dict = field(default_factory=dict)   # {"oom_kills": n, "forks_refused": n} from the sandbox
    output_truncated: list[int] = field(default_factory=list)   # code cells (as CellOutcome.index) whose output
                                                                # passed the limit
    history: dict = field(default_factory=dict)  # the per-epoch metrics Keras recorded in the kernel (for the
                                                 # feedback plot; the graders recompute what they score)
    cells: list[CellOutcome] = field(default_factory=list)
    arrays: dict = field(default_factory=dict)   # the kernel's summary of each variable (shape, dtype, range,
                                                 # SHA-256): shown to people, never used to score

    @property
    def cell_errors(self) -> list[CellOutcome]:
        return [c for c in self.cells if c.status != "ok"]

    @classmethod
    def from_json(cls, data: dict) -> ExecutionRecord:
        """A record kept whole (``asdict``) with a stored run, typed again."""
        known = {f.name for f in fields(cls)}
        record = cls(**{k: v for k, v in data.items() if k in known and k != "cells"})
        record.cells = [CellOutcome(**cell) for cell in data.get("cells", [])]
        return record

    def to_dict(self) -> dict:
        data = asdict(self)
        data["cells"] = [asdict(c) for c in self.cell_errors]   # only the cells that went wrong
        data["cells_run"] = sum(c.status != "skipped" for c in self.cells)
        return data
