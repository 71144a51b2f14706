"""The site's check runner keeps its workers between checks (each with the dataset snapshot the runner wrote once),
replaces one that dies, starts another for another assignment or for settings edited on disk, and stops them all
with the server. Stand-in grading functions (no kernel, no training)."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import fields
from pathlib import Path

import pytest
from classroom import short_config

from autograder.course import dataset
from autograder.course.config import load_config
from autograder.site import people
from autograder.site.core import Site
from autograder.site.selfcheck import CheckRunner
from tests.test_site import BEFORE, FINISHED, rows, site, wait_for  # noqa: F401 (fixture)

ASSIGNMENT4 = Path(__file__).parents[1] / "reference" / "assignment4" / "samples" / "style-functional-strings.ipynb"


def who_checked(task: dict, config, data) -> dict:
    """In a check worker, instead of a kernel: which worker answered (its pid, written beside the notebook too),
    the snapshot its dataset came from and the dataset's size, and the title its settings say. A notebook with a
    ``.die`` file beside it kills its worker once (the file is taken); with a ``.sleep`` file it takes a minute."""
    path = Path(task["path"])
    path.with_suffix(".pid").write_text(str(os.getpid()))
    if path.with_suffix(".die").exists():
        path.with_suffix(".die").unlink()
        os._exit(3)
    if path.with_suffix(".sleep").exists():
        time.sleep(60)
    first = fields(dataset.declared(config).kind)[0].name
    return {"result": {"pid": os.getpid(), "snapshot": str(data._snapshot), "rows": len(getattr(data, first)),
                       "title": config.assignment.title_en}, "log": "", "infrastructure": ""}


def hand_in(site, student: str, assignment: str = "assignment3", notebook: Path = FINISHED):
    return site.accept(student, assignment, notebook.read_bytes())


def checked(site, runner: CheckRunner) -> dict:
    """The next queued check run by ``runner`` (in this thread): what its worker answered."""
    row = runner.claim()
    runner.run(row)
    (done,) = [r for r in rows(site) if r.id == row.id]
    assert done.check_state == "done", done.check_note
    return json.loads(site.check_file(row.receipt).read_text())


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def snapshots_written(monkeypatch) -> list:
    written = []

    def counted(data, folder):
        written.append(Path(folder))
        return saved(data, folder)

    saved = dataset.snapshot
    monkeypatch.setattr(dataset, "snapshot", counted)
    return written


def test_checks_in_a_row_are_served_by_one_worker_reading_a_snapshot_written_once(site, snapshots_written):
    for student in ("s001", "s002", "s003"):
        hand_in(site, student)
    runner = CheckRunner(site, 1, grade_fn=who_checked)
    try:
        replies = [checked(site, runner) for _ in range(3)]
        (snapshot,) = snapshots_written
        assert len({r["pid"] for r in replies}) == 1                       # one worker, not one per check
        assert {r["snapshot"] for r in replies} == {str(snapshot)} and (snapshot / "x_train.npy").is_file()
        assert {r["rows"] for r in replies} == {60000}
    finally:
        runner.stop()
    assert wait_for(lambda: gone(replies[0]["pid"]), 20) and not snapshot.exists()


def test_a_worker_that_dies_between_or_during_checks_is_replaced_and_the_check_retried(site):
    for student in ("s001", "s002", "s003"):
        hand_in(site, student)
    runner = CheckRunner(site, 1, grade_fn=who_checked)
    try:
        first = checked(site, runner)
        os.kill(first["pid"], signal.SIGKILL)                              # between checks (out of memory, …)
        assert wait_for(lambda: gone(first["pid"]), 20)
        second = checked(site, runner)
        assert second["pid"] != first["pid"]
        queued = next(r for r in rows(site) if r.check_state == "queued")
        (site.data / queued.file).with_suffix(".die").write_text("")      # during the next one
        third = checked(site, runner)
        assert third["pid"] != second["pid"] and gone(second["pid"])
    finally:
        runner.stop()


def test_each_assignment_has_its_worker_and_stopping_the_server_stops_them_all_mid_check(site, snapshots_written):
    """The runner's threads, as `serve` starts them: a check of assignment4, then one of assignment3 that is still
    running when the server stops; both workers end with it, and the cut-short check waits in the queue again."""
    hand_in(site, "s001", "assignment4", ASSIGNMENT4)
    runner = CheckRunner(site, 1, grade_fn=who_checked)
    runner.start()
    try:
        assert wait_for(lambda: rows(site)[0].check_state == "done", 60)
        four = json.loads(site.check_file(rows(site)[0].receipt).read_text())
        sleeper = hand_in(site, "s001")
        (site.data / sleeper.file).with_suffix(".sleep").write_text("")
        pid_file = (site.data / sleeper.file).with_suffix(".pid")
        assert wait_for(pid_file.is_file, 60)
        three = int(pid_file.read_text())
        assert three != four["pid"] and not gone(four["pid"])               # another worker, the first one kept
        assert four["rows"] == 569 and [p.name for p in snapshots_written] == ["assignment4-0", "assignment3-1"]
    finally:
        started = time.monotonic()
        runner.stop(timeout=1)
    assert time.monotonic() - started < 10
    assert wait_for(lambda: gone(three) and gone(four["pid"]), 20)
    assert rows(site)[1].check_state == "queued"                          # runs again at the next start


def test_settings_edited_on_disk_get_a_new_worker_with_them(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_NOW", BEFORE)
    config_path = short_config(tmp_path / "course")
    site = Site(load_config(config_path), tmp_path / "site", public_url="http://testserver")
    people.import_roster(site.engine, [people.RosterRow(s, s, f"{s}@example.ac.jp") for s in ("s001", "s002")])
    hand_in(site, "s001")
    hand_in(site, "s002")
    runner = CheckRunner(site, 1, grade_fn=who_checked)
    try:
        before = checked(site, runner)
        settings = tmp_path / "course" / "reference" / "assignment3" / "settings.py"
        settings.write_text(settings.read_text() + '\nTITLE = ("編集した題", "An edited title")\n')
        after = checked(site, runner)
        assert after["title"] == "An edited title" != before["title"]
        assert after["pid"] != before["pid"] and wait_for(lambda: gone(before["pid"]), 20)   # the stale one stopped
    finally:
        runner.stop()
