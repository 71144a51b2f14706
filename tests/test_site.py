"""The submission site, through its ASGI app (Starlette's TestClient, on httpx): students' sign-in links, uploads
under submit's rules with the server's clock, durable receipts, background public checks that never show a hidden
check's message, staff pages and jobs, and one student trying to reach another's files."""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import os
import re
import time
import zipfile
from pathlib import Path

import nbformat
import pytest
from sqlalchemy import MetaData, select
from starlette.testclient import TestClient

from autograder.classroom.intake import find_candidates
from autograder.course.config import load_config
from autograder.errors import GraderError
from autograder.grading.graders import check_graders
from autograder.grading.result import FAILED, PASSED, CheckResult, GradeResult
from autograder.site import people
from autograder.site.app import create_app
from autograder.site.core import Site
from autograder.site.db import attempts, jobs, metadata, open_database
from autograder.site.selfcheck import CheckRunner
from tests.conftest import SAMPLES

BEFORE = "2024-05-15T12:00:00+09:00"
AFTER = "2024-05-17T00:00:30+09:00"
FINISHED = SAMPLES / "submitted-few-epochs.ipynb"          # complete, given cells untouched
PASSWORD = "a long enough password"
PUBLIC_WORDS, HIDDEN_WORDS = "PUBLIC-MESSAGE", "HIDDEN-SECRET"


def stand_in_check(task: dict, config, data) -> dict:
    """In a check worker, instead of a kernel: every public check passes with a message, every hidden one fails
    with a message a student must not see before release; one note is the student's, one a grader's failure."""
    tests = [CheckResult(c.id, PASSED if c.public else FAILED, c.points if c.public else 0.0, c.points,
                         f"{PUBLIC_WORDS} {c.id}" if c.public else f"{HIDDEN_WORDS} {c.id}")
             for c in check_graders(config)]
    result = GradeResult(config.assignment.id, Path(task["path"]).name, tests, False,
                         notes=["cell 3 error: NameError: name 'x' is not defined",
                                f"check val_accuracy was not graded: its grader failed ({HIDDEN_WORDS} trace)"])
    return {"result": result.to_json(), "log": "", "infrastructure": ""}


TEST_DB = os.environ.get("AUTOGRADER_TEST_DB")      # e.g. postgresql+psycopg://…: the same tests on PostgreSQL


def broken_check(task: dict, config, data) -> dict:
    """In a check worker: the runner itself fails (not the student's notebook)."""
    raise RuntimeError("the runner's disk is full")


def sigint_disposition(task: dict, config, data) -> dict:
    """In a check worker: what a terminal's Ctrl-C would do to it."""
    import signal

    return {"result": {}, "log": repr(signal.getsignal(signal.SIGINT)), "infrastructure": ""}


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_NOW", BEFORE)
    if TEST_DB:                                      # every table, and the record of the migrations run
        engine, everything = open_database(TEST_DB), MetaData()
        everything.reflect(engine)
        everything.drop_all(engine)
    site = Site(load_config(), tmp_path / "site", TEST_DB, public_url="http://testserver")
    people.import_roster(site.engine, [people.RosterRow(s, f"Student {s}", f"{s}@example.ac.jp")
                                       for s in ("s001", "s002", "s003")])
    site.links = {row["student_id"]: row["link"] for row in people.issue_links(site.engine, "http://testserver")}
    people.add_staff(site.engine, "prof", PASSWORD, "instructor")
    people.add_staff(site.engine, "ta1", PASSWORD, "ta")
    return site


def app_of(site, checks=False, jobs=False):
    runner = CheckRunner(site, 1, grade_fn=stand_in_check) if checks else None
    return create_app(site, run_checks=checks, run_jobs=jobs, check_runner=runner)


def student(app, site, sid) -> TestClient:
    client = TestClient(app, follow_redirects=False)
    r = open_link(client, site.links[sid])
    assert r.status_code == 303 and r.headers["location"] == "/"
    return client


def open_link(client, link: str):
    """Open a sign-in link and press its page's button (opening it alone signs no one in); → the POST's reply, or
    the GET's when the link does not work."""
    path = link.removeprefix("http://testserver")
    page = client.get(path)
    if page.status_code != 200:
        return page
    return client.post(path, data={"csrf": csrf_of(page.text)})


def staff(app, username="prof") -> TestClient:
    client = TestClient(app, follow_redirects=False)
    token = csrf_of(client.get("/staff/login").text)
    r = client.post("/staff/login", data={"username": username, "password": PASSWORD, "csrf": token})
    assert r.status_code == 303, r.text
    return client


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def upload(client, assignment="assignment3", path=FINISHED, data: bytes | None = None, **extra):
    token = csrf_of(client.get(f"/a/{assignment}").text)
    body = path.read_bytes() if data is None else data
    return client.post(f"/a/{assignment}/upload", data={"csrf": token, **extra},
                       files={"notebook": ("assignment3.ipynb", body, "application/x-ipynb+json")})


def rows(site):
    with site.engine.connect() as db:
        return list(db.execute(select(attempts).order_by(attempts.c.id)))


def edited(edit) -> bytes:
    nb = nbformat.read(FINISHED, as_version=4)
    edit(nb)
    return nbformat.writes(nb).encode()


# --- people ------------------------------------------------------------------------------------------------

def test_a_students_link_signs_them_in_and_only_a_hash_of_it_is_stored(site):
    app = app_of(site)
    client = student(app, site, "s001")
    home = client.get("/")
    assert home.status_code == 200 and "s001" in home.text and "/a/assignment3" in home.text
    assert "2024-05-16 23:59 JST" in home.text
    token = site.links["s001"].rsplit("/", 1)[1]
    if TEST_DB:                                      # every stored value, as text
        with site.engine.connect() as db:
            db_bytes = repr([list(r) for t in metadata.sorted_tables for r in db.execute(select(t))]).encode()
    else:
        db_bytes = b"".join(p.read_bytes() for p in site.data.glob("site.db*"))    # the database and its WAL
    assert token.encode() not in db_bytes and people.token_hash(token).encode() in db_bytes
    stranger = TestClient(app, follow_redirects=False)
    assert stranger.get("/signin/not-a-token").status_code == 403
    assert stranger.get("/a/assignment3").status_code == 401
    assert home.headers["referrer-policy"] == "no-referrer"


def test_new_links_replace_the_old_and_revoking_ends_the_session(site):
    app = app_of(site)
    client = student(app, site, "s001")
    old = site.links["s001"].removeprefix("http://testserver")
    new = people.issue_links(site.engine, "http://testserver", ["s001"])[0]["link"]
    assert TestClient(app, follow_redirects=False).get(old).status_code == 403
    assert client.get("/a/assignment3").status_code == 401       # the new link ended the old link's sessions
    client = TestClient(app, follow_redirects=False)
    assert open_link(client, new).status_code == 303
    people.revoke(site.engine, "s001")
    assert client.get("/a/assignment3").status_code == 401
    assert TestClient(app, follow_redirects=False).get(new.removeprefix("http://testserver")).status_code == 403
    with pytest.raises(GraderError, match="no student 'nobody'"):
        people.revoke(site.engine, "nobody")


def test_roster_reads_an_lms_export_and_says_what_is_wrong(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text("\ufeff学籍番号,氏名,メールアドレス\nA001,山田 太郎,a@example.ac.jp\n\nA002,佐藤,b@example.ac.jp\n",
                    encoding="utf-8")
    assert people.read_roster(path) == [people.RosterRow("A001", "山田 太郎", "a@example.ac.jp"),
                                        people.RosterRow("A002", "佐藤", "b@example.ac.jp")]
    path.write_text("Name,Email\nX,x@example\n", encoding="utf-8")
    with pytest.raises(GraderError, match="no student id column"):
        people.read_roster(path)
    path.write_text("student_id,name\nA001,x\nA001,y\n", encoding="utf-8")
    with pytest.raises(GraderError, match="line 3: student A001 is listed twice"):
        people.read_roster(path)
    path.write_text("student_id,name\n../etc,x\n", encoding="utf-8")
    with pytest.raises(GraderError, match="line 2: student id '../etc'"):
        people.read_roster(path)


def test_staff_passwords_are_argon2_hashes_and_a_wrong_one_is_refused(site):
    with site.engine.connect() as db:
        stored = db.execute(select(people.staff.c.password_hash)).scalars().all()
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in stored)
    app = app_of(site)
    client = TestClient(app, follow_redirects=False)
    token = csrf_of(client.get("/staff/login").text)
    r = client.post("/staff/login", data={"username": "prof", "password": "wrong password!", "csrf": token})
    assert r.status_code == 401 and "Wrong user name or password" in r.text
    r = client.post("/staff/login", data={"username": "nobody", "password": PASSWORD, "csrf": token})
    assert r.status_code == 401
    assert client.get("/staff").status_code == 303                       # to the sign-in page
    with pytest.raises(GraderError, match="at least 10 characters"):
        people.add_staff(site.engine, "x", "short", "ta")


def test_a_password_cannot_be_guessed_at_the_forms_speed(site):
    app = app_of(site)
    client = TestClient(app, follow_redirects=False)
    token = csrf_of(client.get("/staff/login").text)
    for _ in range(5):
        assert client.post("/staff/login", data={"username": "ta1", "password": "guess guess guess",
                                                 "csrf": token}).status_code == 401
    r = client.post("/staff/login", data={"username": "ta1", "password": PASSWORD, "csrf": token})
    assert r.status_code == 429 and "15 minutes" in r.text
    assert staff(app, "prof").get("/staff").status_code == 200          # another name is not affected


def test_the_access_log_never_holds_a_sign_in_token():
    import logging

    from autograder.site.auth import HideSigninTokens

    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", "/signin/Iirjpwvu4N2xOZaM9adL?next=/", "1.1", 303), None)
    assert HideSigninTokens().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /signin/…?next=/ HTTP/1.1" 303'


def test_every_form_needs_the_sessions_csrf_token(site):
    app = app_of(site)
    client = student(app, site, "s001")
    r = client.post("/a/assignment3/upload", data={"csrf": "forged"},
                    files={"notebook": ("a.ipynb", FINISHED.read_bytes())})
    assert r.status_code == 403 and "expired" in r.text
    other = student(app, site, "s002")
    token_of_other = csrf_of(other.get("/a/assignment3").text)
    r = client.post("/a/assignment3/upload", data={"csrf": token_of_other},
                    files={"notebook": ("a.ipynb", FINISHED.read_bytes())})
    assert r.status_code == 403
    prof = staff(app)
    assert prof.post("/staff/a/assignment3/release", data={}).status_code == 403
    assert rows(site) == []


def test_the_roster_and_staff_commands_from_import_to_a_working_link(tmp_path, capsys, monkeypatch):
    from autograder.cli import main

    data = tmp_path / "site"
    roster = tmp_path / "roster.csv"
    roster.write_text("Student ID,Full Name,E-mail\nA001,山田 太郎,a@example.ac.jp\nA002,佐藤 花子,b@example.ac.jp\n",
                      encoding="utf-8")
    assert main(["roster", "import", str(roster), "--data", str(data)]) == 0
    assert "2 students added, 0 updated" in capsys.readouterr().out
    assert main(["roster", "links", "--data", str(data)]) == 2
    assert "needs --url" in capsys.readouterr().err
    links = tmp_path / "links.csv"
    assert main(["roster", "links", "--url", "https://grader.example.ac.jp/", "--out", str(links),
                 "--data", str(data)]) == 0
    assert links.stat().st_mode & 0o777 == 0o600
    written = links.read_text(encoding="utf-8").splitlines()
    assert written[0] == "student_id,name,email,link" and written[1].startswith(
        "A001,山田 太郎,a@example.ac.jp,https://grader.example.ac.jp/signin/")
    site = Site(load_config(), data)
    app = create_app(site, run_checks=False, run_jobs=False)
    r = open_link(TestClient(app, follow_redirects=False), "/signin/" + written[1].rsplit("/", 1)[1])
    assert r.status_code == 303
    roster.write_text("Student ID,Full Name,E-mail\nA001,山田 太郎,a@example.ac.jp\nA003,新入 生,c@example.ac.jp\n",
                      encoding="utf-8")
    assert main(["roster", "import", str(roster), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "1 student added, 1 updated" in out and "roster revoke A002" in out
    assert main(["roster", "links", "--new", "--url", "https://x", "--out", str(links), "--data", str(data)]) == 0
    assert [line.split(",")[0] for line in links.read_text().splitlines()[1:]] == ["A003"]
    said = capsys.readouterr().out
    assert "wrote 1 sign-in link to" in said and "earlier link" not in said      # A003 had none
    assert r.status_code == 303 and open_link(TestClient(app, follow_redirects=False),
                                              "/signin/" + written[1].rsplit("/", 1)[1]).status_code == 303
    # A001's link still works
    assert main(["roster", "revoke", "A002", "--data", str(data)]) == 0
    assert main(["roster", "revoke", "Z999", "--data", str(data)]) == 2
    assert "no student 'Z999'" in capsys.readouterr().err
    assert main(["roster", "import", str(tmp_path / "missing.csv"), "--data", str(data)]) == 2
    assert "roster not found" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("too short\n"))
    assert main(["staff", "add", "ta1", "--password-stdin", "--data", str(data)]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["staff", "add", "ta1", "--role", "ta", "--password-stdin", "--data", str(data)]) == 0
    capsys.readouterr()
    assert main(["staff", "list", "--data", str(data)]) == 0
    assert capsys.readouterr().out == "ta1  ta\n"


def test_staff_add_reads_a_piped_password_with_password_stdin_and_no_warning(tmp_path):
    """As an instructor's script runs it: a real pipe, a fresh process. Without --password-stdin there is no
    terminal to ask on: said plainly (not Python's GetPassWarning with the password echoed)."""
    import subprocess
    import sys

    from autograder import PROJECT_ROOT

    def staff_add(*extra):
        return subprocess.run([sys.executable, "-m", "autograder", "staff", "add", "prof", "--role", "instructor",
                               "--data", str(tmp_path / "site"), *extra], input=PASSWORD + "\n", text=True,
                              capture_output=True, cwd=PROJECT_ROOT, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})

    refused = staff_add()
    assert refused.returncode == 2 and "pipe it with --password-stdin" in refused.stderr
    assert "GetPassWarning" not in refused.stderr and PASSWORD not in refused.stdout + refused.stderr
    done = staff_add("--password-stdin")
    assert done.returncode == 0 and "GetPassWarning" not in done.stderr and done.stderr == "", done.stderr
    assert "prof (instructor) can sign in at /staff/login" in done.stdout
    site = Site(load_config(), tmp_path / "site")
    assert staff(create_app(site, run_checks=False, run_jobs=False)).get("/staff").status_code == 200


# --- uploads -------------------------------------------------------------------------------------------------

def test_an_upload_is_stored_durably_in_the_exchange_before_its_receipt(site):
    app = app_of(site)
    client = student(app, site, "s001")
    r = upload(client)
    assert r.status_code == 303
    page = client.get(r.headers["location"])
    (row,) = rows(site)
    digest = hashlib.sha256(FINISHED.read_bytes()).hexdigest()
    assert row.sha256 == digest and row.receipt in page.text and digest in page.text
    assert "2024-05-15 12:00 JST" in page.text and not row.late and row.check_state == "queued"
    folder = site.exchange / "submitted" / "s001" / "assignment3"
    assert (folder / "assignment3.ipynb").read_bytes() == FINISHED.read_bytes()
    assert (folder / "timestamp.txt").read_text() == "2024-05-15 03:00:00.000000 UTC\n"
    assert (site.data / row.file).read_bytes() == FINISHED.read_bytes()
    (candidate,) = find_candidates(site.exchange, site.config_for("assignment3"))      # what `grade` reads
    assert candidate.student_id == "s001" and candidate.path.read_bytes() == FINISHED.read_bytes()


def test_a_new_upload_replaces_the_last_says_so_and_every_attempt_is_listed(site, monkeypatch):
    app = app_of(site)
    client = student(app, site, "s001")
    first = upload(client).headers["location"].rsplit("/", 1)[1]
    monkeypatch.setenv("AUTOGRADER_NOW", "2024-05-16T20:00:00+09:00")
    second_data = edited(lambda nb: nb.cells.append(nbformat.v4.new_markdown_cell("my notes")))
    r = upload(client, data=second_data)
    page = client.get(r.headers["location"]).text
    assert f"replaced your attempt #1 ({first}" in page
    listing = client.get("/a/assignment3").text
    assert first in listing and listing.count("/receipt/") == 2
    assert [r.check_state for r in rows(site)] == ["superseded", "queued"]   # one pending check per student
    folder = site.exchange / "submitted" / "s001" / "assignment3"
    assert (folder / "assignment3.ipynb").read_bytes() == second_data
    assert len(list((site.data / "attempts" / "s001" / "assignment3").glob("*.ipynb"))) == 2


def test_a_late_upload_is_refused_by_the_servers_clock_with_the_deadline_shown(site, monkeypatch):
    app = app_of(site)
    client = student(app, site, "s001")
    page = client.get("/a/assignment3").text
    monkeypatch.setenv("AUTOGRADER_NOW", AFTER)
    token = csrf_of(page)                                  # the page was opened before the deadline
    r = client.post("/a/assignment3/upload", data={"csrf": token},
                    files={"notebook": ("assignment3.ipynb", FINISHED.read_bytes())})
    assert r.status_code == 422
    assert "2024-05-16 23:59 JST" in r.text and "2024-05-17 00:00 JST" in r.text and "not accepted" in r.text
    assert rows(site) == [] and not site.exchange.exists()
    assert "submissions are closed" in client.get("/a/assignment3").text


def test_every_page_says_when_the_sites_clock_is_a_rehearsal(site, monkeypatch):
    app = app_of(site)
    client = student(app, site, "s001")
    assert "Rehearsal: this site's clock is not the real time" in client.get("/a/assignment3").text
    monkeypatch.delenv("AUTOGRADER_NOW")
    for page in ("/", "/a/assignment3", "/staff/login"):
        assert "Rehearsal" not in client.get(page).text


@pytest.mark.parametrize("case, expected", [
    ("not a notebook", "cannot be read as a notebook"),
    ("other assignment", "is not the one of assignment3"),
    ("edited given cell", "Cells you must not change were edited"),
    ("unfinished", "tick “Submit even though some cells are unfinished”"),
])
def test_submits_rules_refuse_with_a_kind_reason_and_store_nothing(site, case, expected):
    def edit_given(nb):
        given = next(c for c in nb.cells if c.cell_type == "code" and not c.metadata["nbgrader"].get("solution"))
        given.source += "\nprint('changed')"

    data = {"not a notebook": b"%PDF-1.4 not json",
            "other assignment": (Path(site.config.root) / "assignments" / "assignment4" / "assignment4.ipynb")
            .read_bytes(),
            "edited given cell": edited(edit_given),
            "unfinished": (Path(site.config.root) / "assignments" / "assignment3" / "assignment3.ipynb")
            .read_bytes()}[case]
    app = app_of(site)
    client = student(app, site, "s001")
    r = upload(client, data=data)
    assert r.status_code == 422 and expected in r.text
    assert rows(site) == [] and not (site.exchange / "submitted").exists()


def test_an_unfinished_notebook_is_accepted_with_the_same_opt_in_as_submit(site):
    app = app_of(site)
    client = student(app, site, "s001")
    released = (Path(site.config.root) / "assignments" / "assignment3" / "assignment3.ipynb").read_bytes()
    refused = upload(client, data=released)
    said = html.unescape(refused.text)
    assert refused.status_code == 422 and "--allow-incomplete" not in said      # the site has a checkbox, no flag
    assert "「未完成のセルがあっても提出する」にチェックを入れてください" in said
    assert "tick “Submit even though some cells are unfinished”" in said
    assert 'name="allow_incomplete" value="yes"> 未完成のセルがあっても提出する' in refused.text   # the box it names
    keep_screenshot_source(refused.text, "unfinished-refused.html")
    assert upload(client, data=released, allow_incomplete="yes").status_code == 303
    assert len(rows(site)) == 1


def test_an_upload_over_the_size_limit_is_refused_before_it_is_read(site, monkeypatch):
    import dataclasses

    site.config = dataclasses.replace(site.config, max_notebook_mb=1)
    app = app_of(site)
    client = student(app, site, "s001")
    r = upload(client, data=b" " * (3 * 2**20))
    assert r.status_code == 413 and "limit is 1 MiB" in r.text and rows(site) == []
    r = upload(client, data=b"{" + b" " * (2**20 + 10))                # under the form's overhead, over the limit
    assert r.status_code == 413 and rows(site) == []


def test_a_crash_between_upload_and_receipt_leaves_a_whole_submission_that_is_recorded_at_start(site, monkeypatch):
    app = app_of(site)
    client = student(app, site, "s001")

    def crash(self, row):
        raise OSError("power lost")

    monkeypatch.setattr(Site, "_record", crash)
    with pytest.raises(OSError):
        upload(client)
    monkeypatch.undo()
    monkeypatch.setenv("AUTOGRADER_NOW", BEFORE)
    assert rows(site) == []
    folder = site.exchange / "submitted" / "s001" / "assignment3"
    assert (folder / "assignment3.ipynb").read_bytes() == FINISHED.read_bytes()   # whole, or absent: never part
    second = edited(lambda nb: nb.cells.append(nbformat.v4.new_markdown_cell("tried again")))
    assert upload(client, data=second).status_code == 303         # the server goes on: numbered past the lost row
    restarted = Site(load_config(), site.data, TEST_DB)
    with TestClient(app_of(restarted), follow_redirects=False):
        pass                                                          # the app's start reconciles
    first, again = sorted(rows(restarted), key=lambda r: r.number)
    assert (again.number, again.sha256, again.check_state) == (2, hashlib.sha256(second).hexdigest(), "queued")
    assert (first.number, first.sha256) == (1, hashlib.sha256(FINISHED.read_bytes()).hexdigest())
    assert first.check_state == "superseded"                 # recorded late: the newer attempt is the one checked
    assert (folder / "assignment3.ipynb").read_bytes() == second                 # the exchange holds the latest
    assert not list((site.data / "tmp").iterdir())


def test_the_exchange_is_written_again_from_the_attempts_when_a_crash_left_it_short(site):
    app = app_of(site)
    upload(student(app, site, "s001"))
    folder = site.exchange / "submitted" / "s001" / "assignment3"
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()                                   # the moment between submit's two renames
    repaired = Site(load_config(), site.data, TEST_DB).reconcile()
    assert repaired == [f"wrote s001's assignment3 to the exchange again (attempt {rows(site)[0].receipt})"]
    assert (folder / "assignment3.ipynb").read_bytes() == FINISHED.read_bytes()


# --- isolation ------------------------------------------------------------------------------------------------

def test_a_student_never_reaches_another_students_receipt_check_or_feedback(site):
    app = app_of(site)
    first, second = student(app, site, "s001"), student(app, site, "s002")
    receipt = upload(first).headers["location"]
    assert first.get(receipt).status_code == 200
    r = second.get(receipt)
    assert r.status_code == 404 and "s001" not in r.text
    grades = site.grades("assignment3")
    (grades / "feedback").mkdir(parents=True)
    (grades / "gradebook.csv").write_text("student_id,score\ns001,9\n")
    (grades / "feedback" / "s001.html").write_text("<p>FEEDBACK OF s001</p>")
    prof = staff(app)
    prof.post("/staff/a/assignment3/release", data={"csrf": csrf_of(prof.get("/staff/a/assignment3").text),
                                                    "before_deadline": "yes"})
    assert "FEEDBACK OF s001" in first.get("/a/assignment3/feedback").text
    for path in ("/a/assignment3/feedback", "/a/assignment3/feedback?student=s001",
                 "/staff/a/assignment3/feedback/s001", "/staff/a/assignment3/download/gradebook.csv",
                 "/a/assignment3/../staff/a/assignment3/feedback/s001"):
        r = second.get(path)
        assert "FEEDBACK OF s001" not in r.text and "s001,9" not in r.text, path
    assert "s001" not in second.get("/a/assignment3").text


# --- public checks ---------------------------------------------------------------------------------------------

def wait_for(predicate, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_public_checks_run_in_the_background_and_no_hidden_message_reaches_the_student(site):
    app = app_of(site, checks=True)
    with TestClient(app, follow_redirects=False) as server:
        client = student(server.app, site, "s001")
        client.cookies.update(server.cookies)
        receipt = upload(client).headers["location"]
        first = client.get(receipt).text
        assert ("queued" in first or "running" in first) and 'http-equiv="refresh"' in first
        assert wait_for(lambda: rows(site)[0].check_state == "done")
        page = client.get(receipt).text
        for spec in check_graders(site.config_for("assignment3")):
            assert html.escape(spec.title_en) in page
            assert (f"{PUBLIC_WORDS} {spec.id}" in page) == spec.public
        assert HIDDEN_WORDS not in page and "its grader failed" not in page
        assert "NameError" in page and 'http-equiv="refresh"' not in page
        assert HIDDEN_WORDS not in client.get("/a/assignment3").text
        whole = json.loads(site.check_file(rows(site)[0].receipt).read_text())
        assert HIDDEN_WORDS in json.dumps(whole)                       # kept for staff
        assert HIDDEN_WORDS not in client.get("/").text
        assert "No check is waiting" in staff(server.app).get("/staff").text


def test_staff_follow_a_receipt_id_to_the_attempt_and_its_whole_check_which_students_cannot(site):
    """Receipt ids on the staff pages are links to a read-only view of the attempt: its row and its check's whole
    result, hidden checks' messages included; staff only."""
    app = app_of(site, checks=True)
    with TestClient(app, follow_redirects=False) as server:
        s1 = student(server.app, site, "s001")
        s1.cookies.update(server.cookies)
        upload(s1)
        prof = staff(server.app)
        receipt = rows(site)[0].receipt
        link = f'href="/staff/receipt/{receipt}"'
        assert link in prof.get("/staff").text or rows(site)[0].check_state == "done"    # the queue, while it waits
        assert wait_for(lambda: rows(site)[0].check_state == "done")
        assert link in prof.get("/staff/a/assignment3").text                              # the roster
        view = prof.get(f"/staff/receipt/{receipt}")
        assert view.status_code == 200 and receipt in view.text and rows(site)[0].sha256 in view.text
        assert "s001" in view.text and f"{HIDDEN_WORDS} architecture" in view.text and "its grader failed" in view.text
        keep_screenshot_source(view.text, "staff-receipt.html")
        assert prof.get("/staff/receipt/0123456789abcdef").status_code == 404
        assert s1.get(f"/staff/receipt/{receipt}").headers["location"] == "/staff/login"      # a student: no
        stranger = TestClient(app, follow_redirects=False)
        assert stranger.get(f"/staff/receipt/{receipt}").headers["location"] == "/staff/login"   # nor a stranger


def test_a_check_the_runner_cannot_run_is_retried_then_shown_to_staff_never_as_a_students_zero(site):
    app = create_app(site, run_jobs=False, check_runner=CheckRunner(site, 1, grade_fn=broken_check))
    with TestClient(app, follow_redirects=False):
        client = student(app, site, "s001")
        receipt = upload(client).headers["location"]
        assert wait_for(lambda: rows(site)[0].check_state == "failed")
        page = client.get(receipt).text
        assert "could not run" in page and "disk is full" not in page and "0 / " not in page
        assert "disk is full" in staff(app).get("/staff").text
        assert rows(site)[0].check_note.startswith("the check could not run (tried 2 times)")


def test_a_terminals_ctrl_c_does_not_reach_the_check_workers(site, tmp_path):
    """Ctrl-C on `serve` goes to its whole process group: the workers must leave it to the server (which puts an
    interrupted check back in the queue) instead of dying with it and recording the check as failed."""
    from autograder.classroom.pool import graded
    from autograder.site.selfcheck import CheckTask

    config = site.config_for("assignment3")
    ((_, reply),) = graded([CheckTask(1, "R", tmp_path / "x.ipynb")], config, payload=lambda t: {}, workers=1,
                           kernel_device="cpu", log_path=tmp_path / "workers.log", grade_fn=sigint_disposition)
    assert reply["log"] == "<Handlers.SIG_IGN: 1>"


# --- staff ---------------------------------------------------------------------------------------------------

def test_the_roster_shows_each_students_state(site, monkeypatch):
    app = app_of(site)
    upload(student(app, site, "s001"))
    import dataclasses
    late_ok = dataclasses.replace(site.config_for("assignment3").chosen, late_policy="accept")
    site._configs["assignment3"] = dataclasses.replace(site.config_for("assignment3"), chosen=late_ok)
    monkeypatch.setenv("AUTOGRADER_NOW", AFTER)
    assert upload(student(app, site, "s002")).status_code == 303
    page = staff(app, "ta1").get("/staff/a/assignment3").text
    states = re.findall(r"<tr><td>(s\d+)<br>.*?<td>.*?(on time|late|none)</span>", page, re.S)
    assert states == [("s001", "on time"), ("s002", "late"), ("s003", "none")]
    assert TestClient(app).get("/staff/a/assignment3", follow_redirects=False).status_code == 303
    assert student(app, site, "s001").get("/staff/a/assignment3").status_code == 303   # not staff


def test_publishing_is_refused_before_the_deadline_as_the_command_refuses_it(site):
    app = app_of(site)
    prof = staff(app, "ta1")
    token = csrf_of(prof.get("/staff/a/assignment3").text)
    r = prof.post("/staff/a/assignment3/publish", data={"csrf": token})
    assert r.status_code == 409 and "published after the deadline (2024-05-16 23:59 JST)" in r.text


def test_the_exchange_goes_out_as_a_zip_that_grade_reads(site, tmp_path):
    app = app_of(site)
    upload(student(app, site, "s001"))
    upload(student(app, site, "s002"))
    r = staff(app).get("/staff/a/assignment3/download/exchange.zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    zipfile.ZipFile(io.BytesIO(r.content)).extractall(tmp_path / "unpacked")
    found = find_candidates(tmp_path / "unpacked", site.config_for("assignment3"))
    assert sorted(c.student_id for c in found) == ["s001", "s002"] and all(c.submitted_at for c in found)


def results_zip(assignment="assignment3", extra: dict | None = None, folder: str = "out") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr(f"{folder}/gradebook.csv", "student_id,score\ns001,7\n")
        z.writestr(f"{folder}/results/s001.json", json.dumps({"assignment": assignment, "score": 7}))
        z.writestr(f"{folder}/feedback/s001.html", "<p>graded on the GPU runner</p>")
        z.writestr(f"{folder}/summary.html", '<a href="feedback/s001.html">s001</a>')
        z.writestr(f"{folder}/store/objects/ab/abcdef", "a stored run: it stays on the runner")
        for name, text in (extra or {}).items():
            z.writestr(name, text)
    return buffer.getvalue()


def test_a_gpu_runners_results_come_back_and_feedback_is_released_to_each_student(site):
    app = app_of(site)
    s1 = student(app, site, "s001")
    upload(s1)
    prof = staff(app)
    page = prof.get("/staff/a/assignment3").text
    r = prof.post("/staff/a/assignment3/results", data={"csrf": csrf_of(page)},
                  files={"results": ("out.zip", results_zip())})
    assert r.status_code == 303
    assert s1.get("/a/assignment3/feedback").status_code == 404              # not released yet
    assert not (site.grades("assignment3") / "store").exists()
    summary = prof.get("/staff/a/assignment3/download/summary.html").text
    assert 'href="feedback/s001.html"' in summary
    assert "GPU runner" in prof.get("/staff/a/assignment3/download/feedback/s001.html").text
    assert prof.get("/staff/a/assignment3/download/feedback/..%2Fgradebook.csv").status_code == 404
    gradebook = prof.get("/staff/a/assignment3/download/gradebook.csv")
    assert gradebook.text == "student_id,score\ns001,7\n" and "attachment" in gradebook.headers["content-disposition"]
    prof.post("/staff/a/assignment3/release", data={"csrf": csrf_of(page), "before_deadline": "yes"})
    assert "graded on the GPU runner" in s1.get("/a/assignment3/feedback").text
    assert "/a/assignment3/feedback" in s1.get("/a/assignment3").text
    again = prof.post("/staff/a/assignment3/results", data={"csrf": csrf_of(page)},
                      files={"results": ("out.zip", results_zip())})
    assert again.status_code == 303
    assert len(list(site.grades("assignment3").parent.glob("assignment3.before-*"))) == 1   # nothing graded is lost


def test_a_student_who_handed_nothing_in_gets_a_row_and_after_release_a_page_that_says_so(site, monkeypatch):
    """The grade job's own command (its --roster: the active students), run through the CLI with stand-in grading:
    s002 handed nothing in and gets a gradebook row (no submission, 0) and, once released, a page saying so;
    s003, revoked, is not expected."""
    import functools

    from classroom import works

    import autograder.classroom.batch
    from autograder.cli import main
    from autograder.site.staff import GRADE, job_command, write_roster

    app = app_of(site)
    s1, s2 = student(app, site, "s001"), student(app, site, "s002")
    upload(s1)
    people.revoke(site.engine, "s003")
    site.device = "cpu"
    command = job_command(site, GRADE, "assignment3")
    assert command[command.index("--roster") + 1] == str(write_roster(site))
    assert write_roster(site).read_text().split() == ["student_id", "s001", "s002"]
    monkeypatch.setattr(autograder.classroom.batch, "grade_classes",
                        functools.partial(autograder.classroom.batch.grade_classes, grade_fn=works))
    assert main(command[3:]) == 0
    book = {row["student_id"]: row for row in csv.DictReader(io.StringIO(
        (site.grades("assignment3") / "gradebook.csv").read_text(encoding="utf-8")))}
    assert sorted(book) == ["s001", "s002"]
    assert (book["s002"]["status"], book["s002"]["score"]) == ("no submission", "0")

    assert s2.get("/a/assignment3/feedback").status_code == 404              # not released yet
    prof = staff(app)
    prof.post("/staff/a/assignment3/release", data={"csrf": csrf_of(prof.get("/staff/a/assignment3").text),
                                                        "before_deadline": "yes"})
    assert "/a/assignment3/feedback" in s2.get("/a/assignment3").text
    page = s2.get("/a/assignment3/feedback")
    assert page.status_code == 200 and "s002" in page.text
    assert "No submission" in page.text and "Nothing was handed in for this assignment (0 points)." in page.text
    assert "not released yet" not in page.text and "NotImplementedError" not in page.text
    keep_screenshot_source(page.text, "no-submission-feedback.html")


def test_a_runners_out_folder_zipped_whole_holds_the_class_in_out_assignment_and_is_taken_from_there(site):
    """`grade exchange.zip --out out/` on the runner writes out/assignment3/ (and out/logs/): that zip is taken."""
    app = app_of(site)
    prof = staff(app)
    data = results_zip(folder="out/assignment3", extra={"out/logs/grader.log": "TensorFlow's lines"})
    r = prof.post("/staff/a/assignment3/results", data={"csrf": csrf_of(prof.get("/staff/a/assignment3").text)},
                  files={"results": ("out.zip", data)})
    assert r.status_code == 303
    grades = site.grades("assignment3")
    assert (grades / "gradebook.csv").is_file() and (grades / "feedback" / "s001.html").is_file()
    assert not (grades / "store").exists() and not (grades / "logs").exists()


def test_released_results_without_a_student_say_they_handed_nothing_in(site):
    """Results uploaded from a GPU runner that was given no roster: a student with no attempt is told they
    handed nothing in, not that their feedback is unreleased."""
    app = app_of(site)
    s1, s2 = student(app, site, "s001"), student(app, site, "s002")
    upload(s1)
    prof = staff(app)
    token = csrf_of(prof.get("/staff/a/assignment3").text)
    prof.post("/staff/a/assignment3/results", data={"csrf": token}, files={"results": ("out.zip", results_zip())})
    assert prof.post("/staff/a/assignment3/release", data={"csrf": token, "before_deadline": "yes"}).status_code == 303
    said = s2.get("/a/assignment3/feedback")
    assert said.status_code == 200 and "You handed nothing in for this assignment" in said.text
    assert "not released yet" not in said.text


def keep_screenshot_source(text: str, name: str) -> None:
    """With AUTOGRADER_SCREENSHOTS=DIR, keep a page the site served (its CSS is inline) to look at in a browser."""
    folder = os.environ.get("AUTOGRADER_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / name).write_text(text, encoding="utf-8")


@pytest.mark.parametrize("data, expected", [
    (b"not a zip", "not a zip"),
    (results_zip("assignment4"), "not of assignment3"),
    (results_zip(extra={"../evil.txt": "x"}), "unsafe path"),
])
def test_a_results_zip_that_is_not_this_assignments_is_refused(site, data, expected):
    app = app_of(site)
    prof = staff(app)
    r = prof.post("/staff/a/assignment3/results", data={"csrf": csrf_of(prof.get("/staff/a/assignment3").text)},
                  files={"results": ("out.zip", data)})
    assert r.status_code == 409 and expected in r.text
    assert not site.grades("assignment3").exists() and not (site.data / "evil.txt").exists()


def test_staff_clicking_at_once_queue_one_job_and_release_once(site):
    from concurrent.futures import ThreadPoolExecutor

    from autograder.errors import Refusal
    from autograder.site.staff import JobRunner, release_feedback

    runner = JobRunner(site)                         # not started: the jobs stay queued

    def grade(_):
        try:
            return runner.submit("grade", "assignment3", "prof")
        except Refusal:
            return None

    with ThreadPoolExecutor(8) as pool:
        queued = [j for j in pool.map(grade, range(8)) if j]
    assert len(queued) == 1 and job_states(site) == ["queued"]
    (site.grades("assignment3")).mkdir(parents=True)
    (site.grades("assignment3") / "gradebook.csv").write_text("student_id\n")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: release_feedback(site, "assignment3", f"ta{i}", before_deadline=True), range(8)))
    assert site.released_feedback("assignment3").released_by.startswith("ta")


def test_release_before_any_grading_is_refused(site):
    app = app_of(site)
    prof = staff(app)
    r = prof.post("/staff/a/assignment3/release", data={"csrf": csrf_of(prof.get("/staff/a/assignment3").text)})
    assert r.status_code == 409 and "Nothing is graded yet" in r.text


def test_a_database_url_that_cannot_be_used_is_said_plainly(tmp_path):
    with pytest.raises(GraderError, match="is not a database URL"):
        open_database("not a url")
    with pytest.raises(GraderError, match=r"driver is not installed|cannot open") as info:
        open_database("postgresql+psycopg://grader:s3cret@127.0.0.1:1/autograder")
    assert "s3cret" not in str(info.value) and "\n" not in str(info.value)


# --- the real thing: a kernel, the graders, the class graded by the `grade` command --------------------------------

def grader_source_lines(config) -> list[str]:
    """Distinctive lines of the hidden graders' source (long enough not to occur by chance)."""
    lines = []
    for path in (config.assignment.folder / "graders").glob("*.py"):
        lines += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if len(line.strip()) > 40]
    return lines


def job_states(site) -> list[str]:
    with site.engine.connect() as db:
        return [row.state for row in db.execute(select(jobs).order_by(jobs.c.id))]


@pytest.mark.training
def test_a_real_upload_is_checked_in_a_kernel_then_graded_released_and_shown_to_its_student_only(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_NOW", BEFORE)
    site = Site(load_config(), tmp_path / "site", public_url="http://testserver", device="cpu")
    people.import_roster(site.engine, [people.RosterRow(s, s, "") for s in ("s001", "s002")])
    site.links = {row["student_id"]: row["link"] for row in people.issue_links(site.engine, "http://testserver")}
    people.add_staff(site.engine, "prof", PASSWORD, "instructor")
    app = create_app(site)
    with TestClient(app, follow_redirects=False):
        s1, s2 = student(app, site, "s001"), student(app, site, "s002")
        receipt = upload(s1).headers["location"]
        assert wait_for(lambda: rows(site)[0].check_state not in ("queued", "running"), timeout=600)
        assert rows(site)[0].check_state == "done", rows(site)[0].check_note
        page = s1.get(receipt).text
        config = site.config_for("assignment3")
        whole = json.loads(site.check_file(rows(site)[0].receipt).read_text())
        hidden = {c.id for c in check_graders(config) if not c.public}
        for test in whole["tests"]:
            if test["name"] in hidden and test["output"]:
                assert html.escape(test["output"]) not in page and test["output"] not in page
            if test["name"] not in hidden:
                assert test["status"] == "passed"            # the few-epochs notebook passes every public check
        assert page.count("✓") == len(check_graders(config)) - len(hidden)
        assert not [line for line in grader_source_lines(config) if html.escape(line) in page or line in page]

        prof = staff(app)
        token = csrf_of(prof.get("/staff/a/assignment3").text)
        assert prof.post("/staff/a/assignment3/grade", data={"csrf": token}).status_code == 303
        assert wait_for(lambda: job_states(site) not in (["queued"], ["running"]), timeout=900)
        assert job_states(site) == ["done"], prof.get("/staff/jobs/1/log").text
        gradebook = prof.get("/staff/a/assignment3/download/gradebook.csv").text
        assert gradebook.splitlines()[1].startswith("s001,")
        assert s1.get("/a/assignment3/feedback").status_code == 404
        prof.post("/staff/a/assignment3/release", data={"csrf": token, "before_deadline": "yes"})
        feedback = s1.get("/a/assignment3/feedback")
        assert feedback.status_code == 200 and "s001" in feedback.text
        nothing = s2.get("/a/assignment3/feedback")                       # s002 handed in nothing: says so
        assert nothing.status_code == 200 and "Nothing was handed in for this assignment" in nothing.text
        assert "s001" not in nothing.text
