"""Before a submission runs: the steps of ``nbgrader autograde``'s pipeline that apply here, with nbgrader's own
preprocessors, in nbgrader's order (``nbgrader/converters/autograde.py``):

1. ``DeduplicateIds`` — cells copied with their nbgrader ids: the last copy counts, as in nbgrader (repeated
   cell ids themselves are repaired by nbformat when the file is read);
2. ``ClearOutput`` — nothing the student's own run printed (fake scores, fake JSON) is kept or read;
3. the kernelspec is the release's (python3), as nbgrader's ``OverwriteKernelspec`` does;
4. ``OverwriteCells`` — given (locked) cells the student edited are restored from the release, found by their
   nbgrader checksums. nbgrader asks its database for the released cells; here the released notebook answers.

One job: a ``NotebookNode`` in, the notebook to run out, plus what was changed (for the result's notes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import nbformat
from nbgrader.api import MissingEntry
from nbgrader.preprocessors import ClearOutput, DeduplicateIds, OverwriteCells
from nbgrader.preprocessors.base import NbGraderPreprocessor

from ..course.notebook import grade_id, nbgrader_metadata

PYTHON_KERNELSPEC = {"name": "python3", "language": "python", "display_name": "Python 3"}


@dataclass
class Sanitized:
    nb: nbformat.NotebookNode
    restored: list[str] = field(default_factory=list)     # grade ids of given cells put back as released
    notes: list[str] = field(default_factory=list)


class ReleasedCells:
    """What ``OverwriteCells`` asks nbgrader's gradebook, answered from the released notebook."""

    def __init__(self, released: nbformat.NotebookNode):
        self.cells = {}
        for cell in released.cells:
            if grade_id(cell):
                self.cells[grade_id(cell)] = (cell, nbgrader_metadata(cell))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def find_source_cell(self, grade_id, notebook, assignment):
        if grade_id not in self.cells:
            raise MissingEntry()
        cell, meta = self.cells[grade_id]
        return SimpleNamespace(name=grade_id, cell_type=cell.cell_type, source=cell.source,
                               locked=bool(meta.get("locked")), checksum=meta.get("checksum"))

    def find_graded_cell(self, grade_id, notebook, assignment):
        return SimpleNamespace(max_score=self.cells[grade_id][1].get("points", 0))


class RestoreGivenCells(OverwriteCells):
    """nbgrader's ``OverwriteCells`` against the released notebook; remembers which cells it put back."""

    def __init__(self, released: nbformat.NotebookNode, **kw):
        super().__init__(**kw)
        self.released = ReleasedCells(released)
        self.changed: list[tuple[str, str]] = []

    def preprocess(self, nb, resources):
        self.gradebook, self.notebook_id, self.assignment_id = self.released, "", ""
        return NbGraderPreprocessor.preprocess(self, nb, resources)    # OverwriteCells' own opens the database

    def report_change(self, name: str, attr: str, old, new) -> None:
        self.changed.append((name, attr))


def sanitize(nb: nbformat.NotebookNode, released: nbformat.NotebookNode | None) -> Sanitized:
    """The notebook as it will run. ``released``: the student notebook of the release (None: nothing to restore
    against, e.g. when the release file is missing)."""
    nb = nbformat.from_dict(nb)
    notes = drop_malformed_metadata(nb)
    graded_ids = [grade_id(c) for c in nb.cells]
    nb, _ = DeduplicateIds().preprocess(nb, {})
    if graded_ids != [grade_id(c) for c in nb.cells]:
        notes.append("cells copied with their nbgrader ids: the last copy of each counts (nbgrader's DeduplicateIds)")
    nb, _ = ClearOutput().preprocess(nb, {})
    spec = nb.metadata.get("kernelspec") or {}
    language = str(spec.get("language") or nb.metadata.get("language_info", {}).get("name") or "python")
    if language.lower() != "python":
        notes.append(f"the notebook was saved for the {language} kernel {spec.get('name', '?')!r}; it was run "
                     "with Python 3, the assignment's kernel")
    nb.metadata["kernelspec"] = dict(PYTHON_KERNELSPEC)
    restored = []
    if released is None:
        notes.append("the released notebook was not found, so given cells could not be checked for edits")
    else:
        restore = RestoreGivenCells(released)
        nb, _ = restore.preprocess(nb, {})
        restored = sorted({name for name, attr in restore.changed if attr in ("checksum", "cell_type")})
        if restored:
            notes.append("given cells edited in the submission were restored from the release before running: "
                         + ", ".join(restored))
    return Sanitized(nb, restored, notes)


def drop_malformed_metadata(nb: nbformat.NotebookNode) -> list[str]:
    """nbgrader's preprocessors read a cell's ``nbgrader`` metadata as a dict with a text grade id; a submission
    may carry anything there (hand-edited, another tool). Such metadata is dropped (the cell runs as the student's
    own), and the notes say which cells."""
    dropped = []
    for cell in nb.cells:
        if "nbgrader" not in cell.metadata:
            continue
        meta = cell.metadata["nbgrader"]
        if not isinstance(meta, dict) or not isinstance(meta.get("grade_id", ""), str):
            del cell.metadata["nbgrader"]
            dropped.append(str(cell.get("id") or "?"))
    return [f"malformed nbgrader metadata was ignored in the cells with ids {', '.join(dropped)}"] if dropped else []


def read_released(path: Path) -> nbformat.NotebookNode | None:
    try:
        return nbformat.read(path, as_version=4)
    except (OSError, ValueError):
        return None
