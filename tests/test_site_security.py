"""The submission site under attack: what a student's code, a crafted upload or a crafted name could do to the
server, and what each now meets (README "What the site promises")."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import nbformat
import pytest
from sqlalchemy import update

from autograder.cli import main
from autograder.errors import GraderError
from autograder.run import sandbox
from autograder.site.db import attempts
from tests.test_site import (FINISHED, app_of, csrf_of, open_link, rows, site, staff, student,  # noqa: F401 (fixture)
                             upload)

NO_USERNS = ("bwrap: No permissions to creating new namespace, likely because the kernel does not allow "
             "non-privileged user namespaces")


@pytest.fixture
def no_userns(tmp_path, monkeypatch):
    """A host where bwrap is installed but may not create namespaces: a stand-in that fails as it does there."""
    folder = tmp_path / "bin"
    folder.mkdir()
    fake = folder / "bwrap"
    fake.write_text(f'#!/bin/sh\necho "{NO_USERNS}" >&2\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv(sandbox.SITE_REQUIRES_SANDBOX, raising=False)
    sandbox.sandbox_problem.cache_clear()
    yield
    sandbox.sandbox_problem.cache_clear()


# --- 1. no sandbox, no site -------------------------------------------------------------------------------------

def test_serve_refuses_to_start_where_the_sandbox_cannot_run(tmp_path, no_userns, not_served, capsys):
    assert main(["serve", "--data", str(tmp_path / "site")]) == 2
    said = capsys.readouterr().err
    assert not not_served
    assert "serve does not start" in said and NO_USERNS in said
    assert "user.max_user_namespaces" in said and "--unsafe-without-sandbox" in said


def test_serve_runs_without_the_sandbox_only_when_told_so_loudly(tmp_path, no_userns, not_served, capsys):
    assert main(["serve", "--data", str(tmp_path / "site"), "--unsafe-without-sandbox"]) == 0
    assert len(not_served) == 1
    assert "WARNING: serve --unsafe-without-sandbox" in capsys.readouterr().err
    assert os.environ.get(sandbox.SITE_REQUIRES_SANDBOX) is None


def test_where_the_site_requires_the_sandbox_no_kernel_starts_without_it(tmp_path, no_userns, monkeypatch):
    """The check workers and `grade` jobs inherit the site's requirement: SANDBOX = 'auto' or 'off' no longer
    lets a kernel start outside bwrap."""
    import dataclasses

    from autograder.course.assignment import config_for
    from autograder.course.config import load_config
    from autograder.run.warm import Recipe, kernel_manager

    config = config_for(load_config(), "assignment3")
    monkeypatch.setenv(sandbox.SITE_REQUIRES_SANDBOX, "1")
    for mode in ("auto", "off"):
        with pytest.raises(GraderError, match="submission site runs students' notebooks only in the sandbox"):
            kernel_manager(Recipe.of(dataclasses.replace(config, sandbox=mode), "cpu"), tmp_path)
    monkeypatch.delenv(sandbox.SITE_REQUIRES_SANDBOX)
    km, isolated = kernel_manager(Recipe.of(dataclasses.replace(config, sandbox="auto"), "cpu"), tmp_path)
    assert not isinstance(km, sandbox.SandboxKernelManager) and isolated.startswith("none: ")


def test_the_kernels_temporary_folder_may_not_lie_in_the_data_folder(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "site" / "tmp"))
    with pytest.raises(GraderError, match="point TMPDIR elsewhere"):
        sandbox.refuse_exposed_workdirs(tmp_path / "site")
    sandbox.refuse_exposed_workdirs(tmp_path / "elsewhere")


def released_with_answer(site, source: str) -> bytes:
    """The released notebook (nothing trains in it), its first answer cell ``source``."""
    nb = nbformat.read(site.config_for("assignment3").assignment.release_notebook, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution"))
    cell.source = source
    return nbformat.writes(nb).encode()


def leaking_notebook(site, secret: Path, graders: Path) -> bytes:
    """An answer raising the site's key and the hidden graders as its error."""
    return released_with_answer(site, f"raise ValueError(open({str(secret)!r}).read() + open({str(graders)!r}).read())")


def grader_file(site) -> Path:
    return sorted(site.config_for("assignment3").assignment.graders_dir.glob("test_*.py"))[0]


def test_a_notebook_reading_the_sites_key_and_graders_finds_neither_in_its_sandbox(site):
    """The real thing: the check runs the notebook in its kernel; the key and the graders are not in there."""
    if not sandbox.sandbox_available():
        pytest.skip(f"the sandbox cannot run here: {sandbox.unsandboxed_reason()}")
    from autograder.site.selfcheck import CheckRunner

    app = app_of(site)
    client = student(app, site, "s001")
    key_file = site.data / "secret_key"
    site.secret_key                                     # noqa: B018 (made on first use)
    r = upload(client, data=leaking_notebook(site, key_file, grader_file(site)), allow_incomplete="yes")
    assert r.status_code == 303
    site._configs.clear()
    runner = CheckRunner(site, 1)
    try:
        runner.run(runner.claim())
    finally:
        runner.stop()                   # its worker, kept for the next check, ends here
    (row,) = rows(site)
    assert row.check_state == "done", row.check_note
    whole = site.check_file(row.receipt).read_text()
    assert "FileNotFoundError" in whole or "No such file" in whole        # the notebook ran, and found nothing
    page = client.get(r.headers["location"]).text
    assert site.secret_key not in whole and site.secret_key not in page
    graders_text = grader_file(site).read_text()
    assert not [line for line in graders_text.splitlines() if len(line.strip()) > 30 and line.strip() in page]


def test_what_a_cells_error_carries_reaches_the_student_bounded_and_without_the_key_or_graders(site):
    """Defence in depth: were the sandbox to fail, a note holding the key and the graders' source shows
    neither, and no note shows more than NOTE_LIMIT characters."""
    from autograder.site.selfcheck import NOTE_LIMIT

    app = app_of(site)
    client = student(app, site, "s001")
    receipt = upload(client).headers["location"]
    (row,) = rows(site)
    graders_text = grader_file(site).read_text()
    leaked = f"cell 5 error: ValueError: {site.secret_key}{graders_text}"
    site.check_file(row.receipt).parent.mkdir(parents=True, exist_ok=True)
    site.check_file(row.receipt).write_text(json.dumps({"tests": [], "notes": [leaked, "x" * 5000]}))
    with site.engine.begin() as db:
        db.execute(update(attempts).where(attempts.c.id == row.id).values(check_state="done"))
    page = client.get(receipt).text
    assert "cell 5 error: ValueError" in page and site.secret_key not in page
    assert not [line for line in graders_text.splitlines() if len(line.strip()) > 30 and line.strip() in page]
    assert "x" * (NOTE_LIMIT - 1) in page and "x" * (NOTE_LIMIT + 1) not in page


# --- the size limit, in one unit ----------------------------------------------------------------------------

def test_a_file_one_byte_over_the_limit_is_said_in_mib_with_different_numbers(site):
    import dataclasses

    site.config = dataclasses.replace(site.config, max_notebook_mb=1)
    site._configs.clear()
    client = student(app_of(site), site, "s001")
    r = upload(client, data=b" " * (2**20 + 1))
    assert r.status_code == 413
    assert "1,048,577 bytes; the limit is 1,048,576 bytes (1 MiB)" in r.text and " MB" not in r.text
    with pytest.raises(Exception, match=r"\(3\.0 MiB; the limit is 1 MiB\)"):
        site.accept("s001", "assignment3", b" " * (3 * 2**20))


# --- 8. feedback released before the deadline -----------------------------------------------------------------

def graded_class(site) -> None:
    grades = site.grades("assignment3")
    (grades / "feedback").mkdir(parents=True)
    (grades / "gradebook.csv").write_text("student_id,score\ns001,9\n")
    (grades / "feedback" / "s001.html").write_text("<p>HIDDEN CHECK SAID: try harder</p>")


def test_feedback_is_not_released_while_uploads_are_open_unless_staff_say_so(site, monkeypatch):
    app = app_of(site)
    s1 = student(app, site, "s001")
    upload(s1)
    graded_class(site)
    prof = staff(app)
    page = prof.get("/staff/a/assignment3").text
    assert "students will see the hidden checks' messages while uploads are open" in html.unescape(page)
    r = prof.post("/staff/a/assignment3/release", data={"csrf": csrf_of(page)})
    assert r.status_code == 409 and "released after the deadline (2024-05-16 23:59 JST)" in r.text
    assert "hidden checks' messages while uploads are still open" in html.unescape(r.text)
    assert site.released_feedback("assignment3") is None
    assert s1.get("/a/assignment3/feedback").status_code == 404
    r = prof.post("/staff/a/assignment3/release", data={"csrf": csrf_of(page), "before_deadline": "yes"})
    assert r.status_code == 303 and "HIDDEN CHECK SAID" in s1.get("/a/assignment3/feedback").text


def test_feedback_is_released_after_the_deadline_without_the_override(site, monkeypatch):
    from tests.test_site import AFTER

    app = app_of(site)
    graded_class(site)
    prof = staff(app)
    monkeypatch.setenv("AUTOGRADER_NOW", AFTER)
    r = prof.post("/staff/a/assignment3/release", data={"csrf": csrf_of(prof.get("/staff/a/assignment3").text)})
    assert r.status_code == 303 and site.released_feedback("assignment3").released_by == "prof"


# --- 6. malformed input: a refusal with a reason, nothing stored ------------------------------------------------

def test_a_notebook_nested_too_deeply_is_refused_with_a_reason(site):
    client = student(app_of(site), site, "s001")
    r = upload(client, data=b"[" * 100_000)
    assert r.status_code == 422 and "nested too deeply" in r.text and "入れ子が深すぎます" in r.text
    assert rows(site) == [] and not (site.data / "attempts").exists()
    r = upload(client, data=b'{"nbformat": 4, "cells": ' + b"[" * 5000 + b"]" * 5000 + b"}")
    assert r.status_code == 422 and rows(site) == []


def corrupted(data: bytes, text: bytes) -> bytes:
    """``data`` (a stored zip) with one byte of ``text``'s member changed: its CRC no longer matches."""
    at = data.index(text)
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]


def results_with(files: dict[str, str], stored: bool = True) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buffer.getvalue()


GRADED = {"out/gradebook.csv": "student_id,score\ns001,7\n",
          "out/results/s001.json": json.dumps({"assignment": "assignment3", "score": 7})}


@pytest.mark.parametrize("data, expected", [
    (corrupted(results_with(GRADED), b"student_id,score"), "The zip is damaged (out/gradebook.csv: Bad CRC-32"),
    (results_with({**GRADED, "out/feedback/s001.html": "x", "out/feedback/s001.html/more.html": "y"}),
     "one name both as a file and as a folder (out/feedback/s001.html/more.html)"),
    (results_with({**GRADED, "out/feedback/s001.html/more.html": "y", "out/feedback/s001.html": "x"}),
     "one name both as a file and as a folder (out/feedback/s001.html)"),
], ids=["bad CRC", "file then folder", "folder then file"])
def test_a_damaged_or_impossible_results_zip_is_refused_and_leaves_nothing(site, data, expected):
    prof = staff(app_of(site))
    r = prof.post("/staff/a/assignment3/results", data={"csrf": csrf_of(prof.get("/staff/a/assignment3").text)},
                  files={"results": ("out.zip", data)})
    assert r.status_code == 409 and expected in r.text and "Traceback" not in r.text
    assert not (site.data / "grades").exists() or not list((site.data / "grades").iterdir())


# --- 4. one student cannot fill the disk ----------------------------------------------------------------------

def with_settings(site, **settings) -> None:
    import dataclasses

    site.config = dataclasses.replace(site.config, **settings)
    site._configs.clear()


def stored_files(site) -> list[Path]:
    return sorted(p for p in (site.data / "attempts").rglob("*") if p.is_file())


def test_a_student_may_upload_an_assignment_only_so_many_times(site):
    with_settings(site, site_max_attempts=2)
    client = student(app_of(site), site, "s001")
    assert "Up to 2 uploads and 200 MiB in all (so far 0 uploads" in client.get("/a/assignment3").text
    assert upload(client).status_code == 303 and upload(client).status_code == 303
    files = stored_files(site)
    r = upload(client)
    assert r.status_code == 422 and "handed in this assignment 2 times, the limit" in r.text and "上限" in r.text
    assert len(rows(site)) == 2 and stored_files(site) == files
    assert upload(student(app_of(site), site, "s002")).status_code == 303          # another student: their own


def test_a_student_may_store_only_so_many_bytes_for_an_assignment(site):
    import nbformat as nbf

    with_settings(site, site_max_stored_mb=1)
    client = student(app_of(site), site, "s001")
    big = nbformat.reads(FINISHED.read_text(), as_version=4)
    big.cells.append(nbf.v4.new_markdown_cell("x" * 600_000))
    data = nbformat.writes(big).encode()
    assert upload(client, data=data).status_code == 303
    r = upload(client, data=data)
    assert r.status_code == 422 and "would take more than 1 MiB" in r.text and len(rows(site)) == 1


def test_no_upload_is_taken_when_the_disk_is_nearly_full(site, capsys):
    with_settings(site, site_min_free_mb=10**9)                   # more than any disk here has free
    client = student(app_of(site), site, "s001")
    r = upload(client)
    assert r.status_code == 422 and "disk is nearly full" in r.text and "NOT handed in" in r.text
    assert rows(site) == [] and stored_files(site) == [] and not (site.exchange / "submitted").exists()
    assert "under SITE_MIN_FREE_MB" in capsys.readouterr().err


@pytest.mark.parametrize("settings, named", [
    ({"SITE_MAX_ATTEMPTS": 0}, "SITE_MAX_ATTEMPTS must be positive"),
    ({"SITE_MAX_STORED_MB": "200"}, "SITE_MAX_STORED_MB must be an integer"),
    ({"SITE_MIN_FREE_MB": -1}, "SITE_MIN_FREE_MB must be 0 or more"),
])
def test_the_sites_limits_are_validated(tmp_path, settings, named):
    from autograder.course.config import load_config
    from autograder.errors import ConfigError
    from tests.test_config import variant

    with pytest.raises(ConfigError, match=named):
        load_config(variant(tmp_path, **settings))


# --- 11a. a public check has its own, shorter time -------------------------------------------------------------

def test_a_public_check_runs_under_its_own_time_limit_and_says_so_kindly(site):
    """A notebook that would hold a check worker for minutes is stopped at SITE_CHECK_TIME_LIMIT_S (here 5 s),
    and the student is told what happened and that their grade is not this."""
    import time

    if not sandbox.sandbox_available():
        pytest.skip(f"the sandbox cannot run here: {sandbox.unsandboxed_reason()}")
    from autograder.classroom.pool import task_time_limit
    from autograder.site.selfcheck import CheckRunner, check_config

    with_settings(site, site_check_time_limit_s=5)
    assert task_time_limit(check_config(site.config_for("assignment3"), 5)) < task_time_limit(site.config) - 1700
    client = student(app_of(site), site, "s001")
    receipt = upload(client, data=released_with_answer(site, "import time\ntime.sleep(100)"),
                     allow_incomplete="yes").headers["location"]
    runner = CheckRunner(site, 1)
    started = time.monotonic()
    try:
        runner.run(runner.claim())
    finally:
        runner.stop()
    assert time.monotonic() - started < 90
    (row,) = rows(site)
    assert row.check_state == "done", row.check_note
    page = html.unescape(client.get(receipt).text)
    assert "Out of time in the public check" in page and "公開チェックの時間切れ" in page
    assert "the grading runs your whole notebook for up to 30 minutes" in page


def test_the_check_time_limit_is_validated(tmp_path):
    from autograder.course.config import load_config
    from autograder.errors import ConfigError
    from tests.test_config import variant

    assert load_config().site_check_time_limit_s == 600
    with pytest.raises(ConfigError, match="SITE_CHECK_TIME_LIMIT_S must be positive"):
        load_config(variant(tmp_path, SITE_CHECK_TIME_LIMIT_S=0))


# --- 7. CSV injection: no cell a spreadsheet runs ---------------------------------------------------------------

FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"click\")", "+SUM(A1:A9)", "@SUM(1+1)", "-2+3", "\tTAB", "\rCR"]


def cells_of(text: str) -> list[list[str]]:
    import csv
    import io

    return list(csv.reader(io.StringIO(text, newline="")))


def assert_inert(text: str, values: list[str]) -> None:
    """Each value is in a cell of its own, as text that begins with ' (a CR inside read as LF); no CRLF."""
    flat = [cell for row in cells_of(text) for cell in row]
    for value in values:
        assert value not in flat and "'" + value.replace("\r", "\n") in flat, value
    assert "\r" not in text


def test_the_gradebook_neutralises_formulas_and_keeps_numbers(config, checks):
    from autograder.reports.gradebook import gradebook_csv

    results = [{"student_id": sid, "score": -1.5, "status": "graded", "origin": sid, "official": True, "tests": []}
               for sid in FORMULAS]
    text = gradebook_csv(results, config, checks)
    assert_inert(text, FORMULAS)
    assert all(row[1] == "-1.5" for row in cells_of(text)[1:])               # a number stays a number


def test_the_course_gradebook_neutralises_formulas(tmp_path):
    import csv

    from autograder.reports.gradebook import course_gradebook

    gradebook = tmp_path / "gradebook.csv"
    with open(gradebook, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([["student_id", "score", "max_score", "status"],
                                 *[[sid, "-1.5", "12", "=cmd|' /C calc'!A0"] for sid in FORMULAS]])
    text, _ = course_gradebook({"assignment3": gradebook})
    assert_inert(text, FORMULAS)
    assert all(row[1] == "-1.5" for row in cells_of(text)[1:])
    assert "'assignment3: =cmd" not in text and "assignment3: =cmd" in text      # inside a cell: not at its start


def test_the_sign_in_links_neutralise_formulas_in_names_and_are_lf(site, tmp_path):
    from autograder.site import people

    people.import_roster(site.engine, [people.RosterRow(f"x{i}", name, f"{name}@example.ac.jp")
                                       for i, name in enumerate(FORMULAS)])
    links = people.issue_links(site.engine, "http://testserver", [f"x{i}" for i in range(len(FORMULAS))])
    people.write_links(links, tmp_path / "links.csv")
    text = (tmp_path / "links.csv").read_bytes().decode()
    assert_inert(text, FORMULAS)
    assert len(cells_of(text)) == len(FORMULAS) + 1 and text.endswith("\n")


# --- 10. the data folder is its owner's alone -----------------------------------------------------------------

@pytest.fixture
def restore_umask(monkeypatch):
    """serve sets this process's umask (and the site's requirement of the sandbox): put both back after."""
    monkeypatch.setenv(sandbox.SITE_REQUIRES_SANDBOX, "")      # (not "1": unset) and removed again after the test
    before = os.umask(0o022)
    yield
    os.umask(before)


def open_modes(folder: Path) -> list[str]:
    """Everything under ``folder`` that others may read, write or enter, with its mode."""
    return [f"{p} {p.stat().st_mode & 0o777:o}" for p in [folder, *folder.rglob("*")]
            if not p.is_symlink() and p.stat().st_mode & 0o077]


def test_what_serve_keeps_is_its_owners_alone(tmp_path, restore_umask, not_served, monkeypatch):
    from starlette.testclient import TestClient

    from autograder.site import people
    from tests.test_site import BEFORE

    monkeypatch.setenv("AUTOGRADER_NOW", BEFORE)

    if not sandbox.sandbox_available():
        pytest.skip(f"the sandbox cannot run here: {sandbox.unsandboxed_reason()}")
    data = tmp_path / "site"
    assert main(["serve", "--data", str(data)]) == 0
    (app,) = not_served
    site = app.state.site
    people.import_roster(site.engine, [people.RosterRow("s001", "s001", "")])
    link = people.issue_links(site.engine, "http://testserver")[0]["link"]
    site.links = {"s001": link}
    people.add_staff(site.engine, "prof", "a long enough password", "instructor")
    client = TestClient(app, follow_redirects=False)
    assert open_link(client, link).status_code == 303
    assert upload(client).status_code == 303
    site.secret_key                                      # noqa: B018 (made on first use)
    assert (data / "site.db").is_file() and (data / "attempts").is_dir() and (data / "exchange").is_dir()
    assert open_modes(data) == []


def test_the_jobs_write_what_only_the_owner_reads_and_run_kernels_only_in_the_sandbox(site, monkeypatch):
    import sys

    from autograder.site import staff as staff_module

    monkeypatch.delenv(sandbox.SITE_REQUIRES_SANDBOX, raising=False)
    script = ("import os; os.makedirs('grades/assignment3/feedback'); "
              "open('grades/assignment3/feedback/a.html', 'w').write("
              f"os.environ.get({sandbox.SITE_REQUIRES_SANDBOX!r}, 'unset'))")
    monkeypatch.setattr(staff_module, "job_command", lambda *args: [sys.executable, "-c", script])
    runner = staff_module.JobRunner(site)
    job = runner.submit("grade", "assignment3", "prof")
    _run_job(runner, site, job)
    made = site.data / "grades" / "assignment3"
    assert (made / "feedback" / "a.html").read_text() == "1" and open_modes(made) == []


def _run_job(runner, site, job_id: int) -> None:
    from sqlalchemy import select

    from autograder.site.db import jobs

    with site.engine.connect() as db:
        runner._run(db.execute(select(jobs).where(jobs.c.id == job_id)).one())


def test_serve_says_when_what_it_finds_is_open_to_others(tmp_path, restore_umask, not_served, capsys):
    if not sandbox.sandbox_available():
        pytest.skip(f"the sandbox cannot run here: {sandbox.unsandboxed_reason()}")
    data = tmp_path / "site"
    (data / "attempts").mkdir(parents=True)
    data.chmod(0o755)
    (data / "attempts").chmod(0o755)
    assert main(["serve", "--data", str(data)]) == 0
    said = capsys.readouterr().err
    assert f"WARNING: {data / 'attempts'} is open to others (mode 755" in said and "chmod -R go-rwx" in said
    assert data.stat().st_mode & 0o777 == 0o700
