"""A cell's nbgrader metadata, read one way everywhere.

Submissions are untrusted: a student's editor (or a student) may drop a cell's metadata or leave something that is
not a dict where nbgrader's was, so these helpers answer "none" rather than fail. The released and reference
notebooks, which our release wrote, read the same way. nbgrader's own predicates (``nbgrader.utils.is_solution``…)
index ``cell.metadata['nbgrader']`` directly and fail on such cells, so they are left to nbgrader's preprocessors.
"""

from __future__ import annotations


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
