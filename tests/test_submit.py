"""Students hand in: each refusal and each success, with the clock set through AUTOGRADER_NOW."""

import datetime as dt
import hashlib
import json

import nbformat
import pytest

from autograder.course import clock
from autograder.course.clock import parse_nbgrader_timestamp
from autograder.errors import GraderError, Refusal
from autograder.lifecycle.submit import submit
from tests.conftest import SAMPLES

BEFORE = "2024-05-15T12:00:00+09:00"
FINISHED = SAMPLES / "submitted-few-epochs.ipynb"       # complete, given cells untouched


@pytest.fixture
def exchange(tmp_path):
    return tmp_path / "exchange"


def at(monkeypatch, moment: str):
    monkeypatch.setenv("AUTOGRADER_NOW", moment)


def copy_of(path, tmp_path, edit=None):
    nb = nbformat.read(path, as_version=4)
    if edit:
        edit(nb)
    target = tmp_path / "submission.ipynb"
    nbformat.write(nb, target)
    return target


def test_submission_lands_in_nbgraders_exchange_layout_with_a_receipt(monkeypatch, config, exchange):
    at(monkeypatch, BEFORE)
    receipt = submit(FINISHED, "s001", config, exchange=exchange)
    folder = exchange / "submitted" / "s001" / "assignment3"
    assert sorted(p.name for p in folder.iterdir()) == ["assignment3.ipynb", "receipt.json", "timestamp.txt"]
    assert (folder / "assignment3.ipynb").read_bytes() == FINISHED.read_bytes()
    stamp = (folder / "timestamp.txt").read_text()
    assert stamp == "2024-05-15 03:00:00.000000 UTC\n"
    assert parse_nbgrader_timestamp(stamp).isoformat() == "2024-05-15T03:00:00+00:00"
    saved = json.loads((folder / "receipt.json").read_text())
    assert saved["sha256"] == hashlib.sha256(FINISHED.read_bytes()).hexdigest() == receipt.sha256
    assert saved["student"] == "s001" and saved["submitted_at_local"] == "2024-05-15 12:00 JST"
    assert receipt.replaced is None and not receipt.late


def test_resubmitting_before_the_deadline_replaces_the_earlier_one_and_says_so(monkeypatch, config, exchange,
                                                                              tmp_path):
    at(monkeypatch, BEFORE)
    submit(FINISHED, "s001", config, exchange=exchange)
    at(monkeypatch, "2024-05-16T23:59:59+09:00")           # the last second of the deadline's minute
    second = copy_of(SAMPLES / "submitted-no-validation.ipynb", tmp_path)
    receipt = submit(second, "s001", config, exchange=exchange)
    assert receipt.replaced == "2024-05-15 03:00:00.000000 UTC"
    folder = exchange / "submitted" / "s001" / "assignment3"
    assert (folder / "assignment3.ipynb").read_bytes() == second.read_bytes()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["assignment3"]   # no staging folders left


def test_late_submission_is_refused_naming_the_deadline_and_the_time_in_jst(monkeypatch, config, exchange):
    at(monkeypatch, "2024-05-16T15:00:30+00:00")            # 2024-05-17 00:00:30 JST
    with pytest.raises(Refusal) as refused:
        submit(FINISHED, "s001", config, exchange=exchange)
    assert "2024-05-16 23:59 JST" in str(refused.value) and "2024-05-17 00:00 JST" in str(refused.value)
    assert not exchange.exists()


def test_edited_given_cell_is_refused_naming_it(monkeypatch, config, exchange, tmp_path):
    at(monkeypatch, BEFORE)

    def edit(nb):
        cell = next(c for c in nb.cells if c.get("id") == "load_data")
        cell.source = cell.source.replace("mnist.load_data()", "mnist.load_data()  # mine now")

    with pytest.raises(Refusal, match="load_data"):
        submit(copy_of(FINISHED, tmp_path, edit), "s001", config, exchange=exchange)


def test_deleted_given_cell_is_refused(monkeypatch, config, exchange, tmp_path):
    at(monkeypatch, BEFORE)

    def delete(nb):
        nb.cells = [c for c in nb.cells if c.get("id") != "selfcheck_param_count"]

    with pytest.raises(Refusal, match="selfcheck_param_count"):
        submit(copy_of(FINISHED, tmp_path, delete), "s001", config, exchange=exchange)


def test_incomplete_notebook_needs_allow_incomplete(monkeypatch, config, exchange):
    at(monkeypatch, BEFORE)
    with pytest.raises(Refusal, match="reshape, one_hot, model, compile, fit, predict.*--allow-incomplete") as said:
        submit(config.assignment.release_notebook, "s001", config, exchange=exchange)
    assert "--allow-incomplete を付けてください" in str(said.value)              # the command's own flag, in both
    assert "tick" not in str(said.value) and "チェック" not in str(said.value)    # no checkbox on a command line
    receipt = submit(config.assignment.release_notebook, "s001", config, allow_incomplete=True, exchange=exchange)
    assert receipt.sha256 == hashlib.sha256(config.assignment.release_notebook.read_bytes()).hexdigest()


def test_notebook_of_another_assignment_is_refused(monkeypatch, config, exchange, tmp_path):
    at(monkeypatch, BEFORE)

    def other(nb):
        for cell in nb.cells:
            cell.metadata["nbgrader"]["grade_id"] = "a2-" + cell.metadata["nbgrader"]["grade_id"]

    with pytest.raises(Refusal, match="not the one of assignment3"):
        submit(copy_of(FINISHED, tmp_path, other), "s001", config, exchange=exchange)


def test_notebook_without_release_metadata_is_refused(monkeypatch, config, exchange):
    at(monkeypatch, BEFORE)
    with pytest.raises(Refusal, match="none of the released assignment's metadata"):
        submit(SAMPLES / "submitted-sigmoid-output-retyped.ipynb", "s001", config, exchange=exchange)


def test_unreadable_file_is_refused(monkeypatch, config, exchange, tmp_path):
    at(monkeypatch, BEFORE)
    path = tmp_path / "photo.ipynb"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(Refusal, match="cannot be read as a notebook"):
        submit(path, "s001", config, exchange=exchange)


@pytest.mark.parametrize("student", ["", "../s002", "a b", "s/1"])
def test_unsafe_student_ids_are_rejected(config, exchange, student):
    with pytest.raises(GraderError, match="student id"):
        submit(FINISHED, student, config, exchange=exchange)


def test_autograder_now_must_carry_an_offset(monkeypatch, config, exchange):
    at(monkeypatch, "2024-05-15T12:00:00")
    with pytest.raises(GraderError, match="needs an offset"):
        submit(FINISHED, "s001", config, exchange=exchange)


def test_a_rehearsal_clock_runs_on_from_its_start_and_a_late_upload_is_then_refused(monkeypatch, config, exchange):
    """`serve --rehearse`: the time starts where asked and moves with the wall clock, in this process and (through
    the environment) in those it starts."""
    for name in (clock.NOW_VARIABLE, clock.SET_AT_VARIABLE):
        monkeypatch.setenv(name, "")                 # (empty is unset) so that the test's end restores them
    wall = [1_000_000.0]
    monkeypatch.setattr(clock.time, "time", lambda: wall[0])
    start = clock.rehearse("2024-05-16T23:59:58+09:00")
    assert clock.rehearsing() and clock.now() == start
    submit(FINISHED, "s001", config, exchange=exchange)            # two seconds before the deadline
    wall[0] += 2.5
    assert clock.now() == start + dt.timedelta(seconds=2.5)
    with pytest.raises(Refusal, match="締め切り|deadline"):
        submit(FINISHED, "s002", config, exchange=exchange)


def test_a_rehearsal_time_without_an_offset_is_refused_with_the_form_to_use(monkeypatch):
    for name in (clock.NOW_VARIABLE, clock.SET_AT_VARIABLE):
        monkeypatch.setenv(name, "")
    with pytest.raises(GraderError, match=r"--rehearse='2024-05-16T20:00' needs an offset, e.g. 2024-05-16T20:00\+09:00"):
        clock.rehearse("2024-05-16T20:00")
    assert not clock.rehearsing()


def test_another_assignments_released_notebook_is_named_even_where_cell_ids_overlap(monkeypatch, config, exchange):
    """assignment4's notebook shares grade ids with assignment3's (reshape, one_hot, …): its release metadata names
    it, so the refusal says whose it is instead of listing 'edited' cells."""
    at(monkeypatch, BEFORE)
    other = config.root / "assignments" / "assignment4" / "assignment4.ipynb"
    with pytest.raises(Refusal, match="is not the one of assignment3 \\(it is assignment4’s\\)"):
        submit(other, "s001", config, exchange=exchange, allow_incomplete=True)
    assert not exchange.exists()
