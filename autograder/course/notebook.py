"""Reading a submitted notebook, and a cell's nbgrader metadata, one way everywhere.

Submissions are untrusted: a student's editor (or a student) may drop a cell's metadata or leave something that is
not a dict where nbgrader's was, so these helpers answer "none" rather than fail. The released and reference
notebooks, which our release wrote, read the same way. nbgrader's own predicates (``nbgrader.utils.is_solution``…)
index ``cell.metadata['nbgrader']`` directly and fail on such cells, so they are left to nbgrader's preprocessors.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from ..errors import GraderError


def nbgrader_metadata(cell) -> dict:
    """The cell's nbgrader metadata, or {} where it is missing or malformed."""
    meta = cell.get("metadata")
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    return meta if isinstance(meta, dict) else {}


def grade_id(cell):
    """The cell's nbgrader grade id as stored (normally a str), or None: the name the release gave the cell, by
    which a submitted cell is matched to the released one."""
    return nbgrader_metadata(cell).get("grade_id")


def is_solution(cell) -> bool:
    """Whether the release marked the cell as one the student answers in."""
    return bool(nbgrader_metadata(cell).get("solution"))


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
    except RecursionError as exc:
        raise NotebookUnreadable("JSON の入れ子が深すぎます (ノートブックではありません)。",
                                 "The JSON is nested too deeply to be a notebook.") from exc
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
