"""Make the student notebook from the reference with nbgrader's own preprocessors.

The order matters, as in ``nbgrader generate_assignment``: solutions are cleared and outputs dropped first, then
cells are locked, and the checksums are computed last, over the cells as the student receives them (nbgrader's
autograde compares against these to tell whether a given cell was edited).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbgrader.preprocessors import ClearOutput, ClearSolutions, ComputeChecksums, LockCells

from ..course.assignment import RELEASE_METADATA
from ..course.config import Config
from ..errors import GraderError

NBFORMAT_VERSION = 4


def release_pipeline():
    return [
        ClearSolutions(),     # '### BEGIN/END SOLUTION' regions → '# YOUR CODE HERE' + raise NotImplementedError()
        ClearOutput(),        # students start with empty outputs and execution counts
        LockCells(),          # given cells: not deletable, not editable
        ComputeChecksums(),   # last: checksums of the cells exactly as released
    ]


def make_student_notebook(reference: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(reference)  # a deep copy: the reference stays as it was
    resources: dict = {}
    for preprocessor in release_pipeline():
        nb, resources = preprocessor.preprocess(nb, resources)
    nbformat.validate(nb)
    return nb


def solution_notebook(reference: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The reference as a solution to hand out: solution markers gone, outputs cleared."""
    nb = nbformat.from_dict(reference)
    for cell in nb.cells:
        cell.source = "\n".join(line for line in cell.source.splitlines()
                                if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def solved_with(reference: Path, **sources: str) -> nbformat.NotebookNode:
    """A sample submission: the reference solved (``solution_notebook``), the named cells' code (by cell id)
    replaced by ``sources`` — how each assignment's samples/make_samples.py writes its scenarios."""
    nb = solution_notebook(nbformat.read(reference, as_version=NBFORMAT_VERSION))
    cells = {c.get("id"): c for c in nb.cells}
    for cell_id, source in sources.items():
        cells[cell_id].source = source.strip("\n")
    return nb


def release(config: Config, out: Path | None = None) -> Path:
    """Write assignments/<id>/<id>.ipynb from reference/<id>/<id>.ipynb. Deterministic: same input, same bytes."""
    source = config.assignment.reference_notebook
    if not source.is_file():
        raise GraderError(f"reference notebook not found: {source}")
    reference = nbformat.read(source, as_version=NBFORMAT_VERSION)
    student = make_student_notebook(reference)
    student.metadata[RELEASE_METADATA] = {"assignment": config.assignment.id}   # how grade/check/submit tell
    target = Path(out) if out else config.assignment.release_notebook
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(nbformat.writes(student) + "\n", encoding="utf-8")
    return target
