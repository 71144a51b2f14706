"""Before a submission runs: unreadable files explained one by one, edited given cells restored, kernels fixed."""

from __future__ import annotations

import json

import nbformat
import pytest
from hostile_corpus import duplicate_ids, huge_notebook, nbformat3, notebook
from nbformat.warnings import DuplicateCellId

from autograder.course.notebook import NotebookUnreadable, read_notebook
from autograder.run.sanitize import sanitize


@pytest.fixture(scope="module")
def released(config):
    return nbformat.read(config.assignment.release_notebook, as_version=4)


@pytest.mark.parametrize("data, says", [
    (b"", "empty"),
    (b"hello", "not JSON"),
    (notebook("x = 1")[:40], "JSON ends early"),
    (b'{"cells": 3}', "not a Jupyter notebook"),
    (b"\x89PNG\r\n\x1a\n\xff\xfe", "not UTF-8"),
    (notebook("# 日本語").decode().encode("cp932"), "not UTF-8"),
    (huge_notebook(3), "over the 2 MB limit"),
], ids=["empty", "not-json", "json-ends-early", "not-a-notebook", "binary", "cp932", "over-2mb"])
def test_each_unreadable_file_has_its_own_explanation(tmp_path, data, says):
    path = tmp_path / "s.ipynb"
    path.write_bytes(data)
    with pytest.raises(NotebookUnreadable) as caught:
        read_notebook(path, max_mb=2)
    assert says in caught.value.en and caught.value.ja


def test_old_formats_and_repeated_ids_are_read_with_a_note(tmp_path):
    old = tmp_path / "v3.ipynb"
    old.write_bytes(nbformat3())
    nb, notes = read_notebook(old)
    assert nb.nbformat == 4 and nb.cells[0].source.startswith("x = 1") and "nbformat 3" in notes[0]
    dup = tmp_path / "dup.ipynb"
    dup.write_bytes(duplicate_ids())
    with pytest.warns(DuplicateCellId):                    # nbformat repairs them, and says so
        nb, notes = read_notebook(dup)
    assert len({c.id for c in nb.cells}) == 2 and "duplicate cell ids" in notes[0]


def test_edited_given_cells_are_restored_and_answers_kept(released):
    nb = nbformat.from_dict(released)
    for i, cell in enumerate(nb.cells):
        if cell.get("id") == "selfcheck_param_count":
            cell.source = "pass"
        if cell.get("id") == "load_data":
            nb.cells[i] = nbformat.v4.new_markdown_cell(cell.source, metadata=cell.metadata, id="load_data")
        if cell.get("id") == "model":
            cell.source = "model = None  # my answer"
    clean = sanitize(nb, released)
    by_id = {c.get("id"): c for c in clean.nb.cells}
    original = {c.get("id"): c for c in released.cells}
    assert clean.restored == ["load_data", "selfcheck_param_count"]
    assert by_id["load_data"].cell_type == "code" and by_id["load_data"].source == original["load_data"].source
    assert by_id["selfcheck_param_count"].source == original["selfcheck_param_count"].source
    assert by_id["model"].source == "model = None  # my answer"
    assert "restored from the release" in clean.notes[-1]


def test_an_untouched_release_passes_unchanged(released):
    clean = sanitize(released, released)
    assert clean.restored == [] and clean.notes == []
    assert [c.source for c in clean.nb.cells] == [c.source for c in released.cells]


def test_outputs_are_dropped_and_the_kernel_is_python(released):
    nb = nbformat.from_dict(released)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text=json.dumps({"score": 12}))]
    nb.metadata["kernelspec"] = {"name": "ir", "language": "R", "display_name": "R"}
    clean = sanitize(nb, released)
    assert all(not c.get("outputs") for c in clean.nb.cells if c.cell_type == "code")
    assert clean.nb.metadata.kernelspec.name == "python3" and "R kernel 'ir'" in clean.notes[0]


def test_without_the_release_nothing_is_restored_and_it_says_so(released):
    clean = sanitize(released, None)
    assert clean.restored == [] and "could not be checked" in clean.notes[0]


@pytest.mark.parametrize("metadata", [None, [], "solution", {"grade_id": ["reshape"], "solution": True}])
def test_malformed_nbgrader_metadata_is_ignored_with_a_note(released, metadata):
    nb = nbformat.from_dict(released)
    answer = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
    answer.metadata["nbgrader"] = metadata
    clean = sanitize(nb, released)
    assert "nbgrader" not in next(c for c in clean.nb.cells if c.get("id") == answer.get("id")).metadata
    assert clean.notes == [f"malformed nbgrader metadata was ignored in the cells with ids {answer.get('id')}"]
