"""A cell's nbgrader metadata is read one way everywhere, and a submission's missing or malformed metadata reads as
none rather than failing."""

import nbformat
import pytest

from autograder.course.notebook import grade_id, is_solution, nbgrader_metadata


def test_release_metadata_is_read_as_written():
    cell = nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {"grade_id": "reshape", "solution": True}})
    assert nbgrader_metadata(cell) == {"grade_id": "reshape", "solution": True}
    assert grade_id(cell) == "reshape" and is_solution(cell)


@pytest.mark.parametrize("metadata", [{}, {"nbgrader": None}, {"nbgrader": [1]}, {"nbgrader": "x"}, []])
def test_missing_or_malformed_metadata_reads_as_none(metadata):
    cell = nbformat.v4.new_code_cell("x = 1")
    cell["metadata"] = metadata
    assert nbgrader_metadata(cell) == {} and grade_id(cell) is None and not is_solution(cell)
