"""Deadlines as courses run them: a student's own deadline (an extension: 公欠, illness, an accommodation) read by
submit, grade, publish and the site; late policies, a penalty schedule among them, judged at its edges. No test here
trains: grading uses a stand-in grader that gives full marks."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
from pathlib import Path

import pytest
from classroom import exchange_submission, load_course, short_config

from autograder.classroom import intake
from autograder.cli import main
from autograder.course import extensions
from autograder.course.late_policy import PenaltySchedule, judge, read_late_policy
from autograder.errors import ConfigError, Refusal
from autograder.lifecycle.submit import submit
from tests.conftest import SAMPLES
from tests.test_site import site  # noqa: F401 — the site fixture, for ext_site

JST = dt.timezone(dt.timedelta(hours=9))
DEADLINE = dt.datetime(2024, 5, 16, 23, 59, 59, 999999, tzinfo=JST)      # assignment3's "2024-05-16 23:59"
FINISHED = SAMPLES / "submitted-few-epochs.ipynb"
SCHEDULE = PenaltySchedule(0.10, 3)
NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


@pytest.fixture
def course(config, tmp_path):
    """The project's assignment3 with its extensions kept in this test's own file."""
    return dataclasses.replace(config, extensions_file=tmp_path / "extensions.json")


def at(monkeypatch, moment: dt.datetime | str):
    monkeypatch.setenv("AUTOGRADER_NOW", moment if isinstance(moment, str) else moment.isoformat())


def penalised(config, schedule=SCHEDULE):
    return dataclasses.replace(config, chosen=dataclasses.replace(config.assignment, late_policy="penalty",
                                                                  late_penalty=schedule))


# --- the penalty schedule ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("late_by, accepted, days, fraction", [
    (dt.timedelta(0), True, 0, 0.0),                                   # at the deadline: on time
    (dt.timedelta(seconds=1), True, 1, 0.1),                           # one second late: day 1 begun
    (dt.timedelta(days=1), True, 1, 0.1),                              # exactly 24 h: still day 1
    (dt.timedelta(days=1, seconds=1), True, 2, 0.2),
    (dt.timedelta(days=2, hours=5), True, 3, 0.3),
    (dt.timedelta(days=3), True, 3, 0.3),                              # the last moment taken
    (dt.timedelta(days=3, seconds=1), False, 4, 0.0),                  # past the last day: refused
])
def test_a_penalty_schedule_at_its_edges(late_by, accepted, days, fraction):
    lateness = judge("penalty", SCHEDULE, DEADLINE, DEADLINE + late_by)
    assert (lateness.accepted, lateness.days, lateness.fraction) == (accepted, days, pytest.approx(fraction))


def test_reject_and_accept_as_before():
    assert not judge("reject", None, DEADLINE, DEADLINE + dt.timedelta(seconds=1)).accepted
    late = judge("accept", None, DEADLINE, DEADLINE + dt.timedelta(days=30))
    assert late.accepted and late.late and late.fraction == 0


@pytest.mark.parametrize("value, said", [
    ({"per_started_day": 0.1}, "needs exactly the keys per_started_day, max_days"),
    ({"per_started_day": "10%", "max_days": 3}, "['per_started_day'] must be a fraction"),
    ({"per_started_day": 10, "max_days": 3}, "above 0 and at most 1"),
    ({"per_started_day": 0.1, "max_days": 0}, "['max_days'] must be a whole number of days"),
    ({"per_started_day": 0.1, "max_days": 2.5}, "['max_days'] must be a whole number"),
    ("10% per day", "'10% per day' is unknown"),
    (0.1, "must be 'reject', 'accept' or a penalty schedule"),
])
def test_a_schedule_that_does_not_parse_is_refused_saying_the_form(value, said):
    with pytest.raises(ValueError, match=None) as refused:
        read_late_policy(value)
    assert said in str(refused.value)


def test_an_assignment_with_a_broken_schedule_is_refused_on_load_in_both_languages(tmp_path):
    path = short_config(tmp_path, assignment={"LATE_POLICY": "{'per_started_day': 0.1, 'days': 3}"})
    with pytest.raises(ConfigError) as refused:
        load_course(path)
    assert "LATE_POLICY を読めません" in str(refused.value)
    assert "setting LATE_POLICY" in str(refused.value) and "needs exactly the keys" in str(refused.value)
    good = load_course(short_config(tmp_path / "good", assignment={
        "LATE_POLICY": "{'per_started_day': 0.25, 'max_days': 2}"}))
    assert good.assignment.late_policy == "penalty" and good.assignment.late_penalty == PenaltySchedule(0.25, 2)


# --- the extensions file and its commands ------------------------------------------------------------------------

def test_extension_commands_add_list_and_remove_with_who_and_when(tmp_path, capsys, monkeypatch):
    config_path = short_config(tmp_path)
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id\ns001\ns002\n", encoding="utf-8")
    monkeypatch.setenv("USER", "prof")
    assert main(["--config", str(config_path), "extension", "add", "s001", "assignment3", "--until",
                 "2024-05-23T23:59+09:00", "--reason", "公欠 (大会出場)", "--roster", str(roster)]) == 0
    assert "s001 may hand in assignment3 until 2024-05-23 23:59 JST" in capsys.readouterr().out
    written = json.loads((tmp_path / "extensions.json").read_text(encoding="utf-8"))["extensions"]
    assert [(e["student"], e["until"], e["reason"]) for e in written] == [
        ("s001", "2024-05-23T23:59:59.999999+09:00", "公欠 (大会出場)")]
    assert written[0]["granted_by"] and dt.datetime.fromisoformat(written[0]["granted_at"]).tzinfo
    assert main(["--config", str(config_path), "extension", "list", "assignment3"]) == 0
    listed = capsys.readouterr().out
    assert "assignment3  s001  until 2024-05-23 23:59 JST" in listed and "公欠" in listed
    assert main(["--config", str(config_path), "extension", "remove", "s001", "assignment3"]) == 0
    assert json.loads((tmp_path / "extensions.json").read_text(encoding="utf-8")) == {"extensions": []}
    assert main(["--config", str(config_path), "extension", "remove", "s001", "assignment3"]) == 1
    assert "has no extension for assignment3" in capsys.readouterr().err


@pytest.mark.parametrize("student, assignment, until, said", [
    ("s999", "assignment3", "2024-05-23T23:59+09:00", "There is no student 's999' on the roster"),
    ("../s1", "assignment3", "2024-05-23T23:59+09:00", "There is no student"),
    ("s001", "assignment9", "2024-05-23T23:59+09:00", "unknown assignment 'assignment9'"),
    ("s001", "assignment3", "2024-05-23 23:59", "has no offset: write the zone too, e.g. 2024-05-23 23:59+09:00"),
    ("s001", "assignment3", "next friday", "is not a time"),
    ("s001", "assignment3", "2024-05-16T12:00+09:00", "is not after assignment3's deadline (2024-05-16 23:59 JST)"),
])
def test_bad_extensions_are_refused_with_the_reason_in_both_languages(course, student, assignment, until, said):
    with pytest.raises(Refusal) as refused:
        extensions.add(course, student, assignment, until, "", "prof", known_students=["s001", "s002"])
    ja, _, en = str(refused.value).partition("\n")
    assert said in en and ja and not ja.isascii()
    assert not course.extensions_file.exists()


def test_an_extension_replaces_the_students_earlier_one(course):
    extensions.add(course, "s001", "assignment3", "2024-05-20T12:00+09:00", "illness", "prof")
    extensions.add(course, "s001", "assignment3", "2024-05-22T12:00+09:00", "illness, longer", "prof")
    assert extensions.deadline_for(course, "s001") == dt.datetime(2024, 5, 22, 12, 0, 59, 999999, tzinfo=JST)
    assert extensions.deadline_for(course, "s002") == DEADLINE
    assert len(extensions.load(course)) == 1


def test_a_hand_edited_file_that_does_not_parse_is_refused_naming_it(course):
    course.extensions_file.write_text('{"extensions": [{"student": "s001"}]}', encoding="utf-8")
    with pytest.raises(ConfigError, match="extension #1 must hold"):
        extensions.deadline_for(course, "s001")


# --- submit ------------------------------------------------------------------------------------------------------

def test_an_extended_student_submits_after_the_class_deadline_not_late_and_after_their_own_refused(
        course, monkeypatch, tmp_path):
    extensions.add(course, "s001", "assignment3", "2024-05-20T23:59+09:00", "公欠", "prof")
    at(monkeypatch, "2024-05-18T10:00:00+09:00")        # the rehearsal clock: after the class's deadline
    receipt = submit(FINISHED, "s001", course, exchange=tmp_path / "exchange")
    assert not receipt.late
    with pytest.raises(Refusal, match=r"The deadline \(2024-05-16 23:59 JST\) has passed"):
        submit(FINISHED, "s002", course, exchange=tmp_path / "exchange")            # no extension
    at(monkeypatch, "2024-05-21T00:00:01+09:00")
    with pytest.raises(Refusal) as refused:
        submit(FINISHED, "s001", course, exchange=tmp_path / "exchange")
    assert "Your extended deadline (2024-05-20 23:59 JST) has passed" in str(refused.value)
    assert "あなたの延長された締め切り" in str(refused.value)


def test_a_penalty_takes_late_work_until_its_last_day(course, monkeypatch, tmp_path):
    config = penalised(course)
    at(monkeypatch, DEADLINE + dt.timedelta(days=3))
    assert submit(FINISHED, "s001", config, exchange=tmp_path / "exchange").late
    at(monkeypatch, DEADLINE + dt.timedelta(days=3, seconds=1))
    with pytest.raises(Refusal, match="more than 3 days past"):
        submit(FINISHED, "s001", config, exchange=tmp_path / "exchange")


# --- grade: intake, one grading, the gradebook -------------------------------------------------------------------

def test_intake_judges_each_student_against_their_own_deadline(course, tmp_path):
    extensions.add(course, "s001", "assignment3", "2024-05-20T23:59+09:00", "公欠", "prof")
    late = DEADLINE + dt.timedelta(days=2)
    exchange_submission(tmp_path / "class", "s001", NOTEBOOK, late)
    exchange_submission(tmp_path / "class", "s002", NOTEBOOK, late)
    subs = {s.student_id: s for s in intake.choose(intake.find_candidates(tmp_path / "class", course), course)}
    assert subs["s001"].fate == intake.GRADE and subs["s001"].extended_until is not None
    assert "extended deadline 2024-05-20 23:59 JST" in subs["s001"].detail
    assert subs["s002"].fate == intake.LATE and subs["s002"].extended_until is None


def full_marks(task: dict, config, mnist) -> dict:
    """A stand-in worker: every check passes with full points (nothing runs)."""
    from autograder.grading.graders import check_graders
    from autograder.grading.result import PASSED, CheckResult, GradeResult

    tests = [CheckResult(c.id, PASSED, c.points, c.points) for c in check_graders(config)]
    result = GradeResult(config.assignment.id, Path(task["path"]).name, tests, task["official"])
    return {"result": result.to_json(), "table": "stand-in", "log": "", "infrastructure": ""}


def test_a_class_graded_with_a_penalty_and_an_extension(tmp_path):
    """One grading across the schedule's edges: on time, one second late, a day and a second late, past the last
    day, and a student whose extension makes the same late time on time."""
    import csv

    from autograder.classroom.batch import grade_batch

    config = load_course(short_config(tmp_path, assignment={
        "LATE_POLICY": "{'per_started_day': 0.10, 'max_days': 3}"}))
    extensions.add(config, "s005", "assignment3", "2024-05-25T23:59+09:00", "公欠", "prof")
    times = {"s001": DEADLINE, "s002": DEADLINE + dt.timedelta(seconds=1),
             "s003": DEADLINE + dt.timedelta(days=1, seconds=1), "s004": DEADLINE + dt.timedelta(days=3, seconds=1),
             "s005": DEADLINE + dt.timedelta(days=3, seconds=1)}
    for student, moment in times.items():
        exchange_submission(tmp_path / "class", student, NOTEBOOK, moment)
    report = grade_batch(tmp_path / "class", tmp_path / "out", config, workers=1, device="cpu", progress=False,
                         grade_fn=full_marks)
    most = report.results["s001"].max_score
    scores = {s: (r.status, r.score, r.late_deduction) for s, r in report.results.items()}
    assert scores == {"s001": ("graded", most, None), "s002": ("graded", pytest.approx(most * 0.9),
                                                               pytest.approx(most * 0.1)),
                      "s003": ("graded", pytest.approx(most * 0.8), pytest.approx(most * 0.2)),
                      "s004": ("late", 0.0, None), "s005": ("graded", most, None)}
    with open(tmp_path / "out" / "gradebook.csv", encoding="utf-8", newline="") as f:
        book = {row["student_id"]: row for row in csv.DictReader(f)}
    assert book["s002"]["late_deduction"] == f"{most * 0.1:g}" and book["s001"]["late_deduction"] == ""
    assert book["s005"]["extended_until"] == "2024-05-25T23:59:59+09:00" and book["s002"]["extended_until"] == ""
    assert "10% off the score" in book["s002"]["detail"] and "past the 3 days" in book["s004"]["detail"]
    page = (tmp_path / "out" / "feedback" / "s003.html").read_text(encoding="utf-8")
    assert "Late penalty" in page and f"{most:g} − 減点 / late {most * 0.2:g} = {most * 0.8:g}" in page
    assert "(延長 / extended)" in (tmp_path / "out" / "feedback" / "s005.html").read_text(encoding="utf-8")
    summary = (tmp_path / "out" / "summary.html").read_text(encoding="utf-8")
    assert "extended to 2024-05-25 23:59 JST" in summary and f"late −{most * 0.1:g}" in summary
    course_book = tmp_path / "course.csv"
    assert main(["gradebook", str(tmp_path / "out"), "--out", str(course_book)]) == 0
    notes = {row["student_id"]: row["notes"] for row in csv.DictReader(course_book.open(encoding="utf-8"))}
    assert f"assignment3: late −{most * 0.1:g}" in notes["s002"] and "extended until" in notes["s005"]
    extensions.add(config, "s004", "assignment3", "2024-05-25T23:59+09:00", "illness", "prof")   # granted later
    again = grade_batch(tmp_path / "class", tmp_path / "out", config, workers=1, device="cpu", progress=False,
                        grade_fn=full_marks)
    assert (again.results["s004"].status, again.results["s004"].score) == ("graded", most)
    assert again.reused == 4                    # the others' decisions stand as they were


# --- publish -----------------------------------------------------------------------------------------------------

class PastTheRefusals(Exception):
    """Raised where publishing starts its work: the refusals let it through."""


def test_publish_is_refused_while_an_extension_is_open_and_allowed_after_it_or_withheld(course, monkeypatch):
    import autograder.lifecycle.publish as publishing

    def got_through(config):
        raise PastTheRefusals

    monkeypatch.setattr(publishing, "check_graders", got_through)
    extensions.add(course, "s001", "assignment3", "2024-05-20T23:59+09:00", "公欠", "prof")
    at(monkeypatch, "2024-05-18T10:00:00+09:00")
    with pytest.raises(Refusal) as refused:
        publishing.publish(course)
    assert "s001 (2024-05-20 23:59 JST)" in str(refused.value) and "--withhold-extended" in str(refused.value)
    assert "延長中の学生" in str(refused.value)
    with pytest.raises(PastTheRefusals):
        publishing.publish(course, withhold_extended=True)
    assert publishing.withheld(course) == ["s001 until 2024-05-20 23:59 JST"]
    at(monkeypatch, "2024-05-21T00:00:00+09:00")
    with pytest.raises(PastTheRefusals):
        publishing.publish(course)
    assert publishing.withheld(course) == []


# --- the site ----------------------------------------------------------------------------------------------------

@pytest.fixture
def ext_site(site, tmp_path):  # noqa: F811 — the fixture imported above
    """test_site's site (s001–s003, prof the instructor, ta1 a TA; the clock before the deadline) with its
    extensions in this test's own file."""
    site.config = dataclasses.replace(site.config, extensions_file=tmp_path / "extensions.json")
    site._configs.clear()
    return site


def test_the_site_shows_a_student_their_own_deadline_and_takes_their_upload_after_the_class_deadline(
        ext_site, monkeypatch):
    from tests.test_site import app_of, student, upload

    extensions.add(ext_site.config, "s001", "assignment3", "2024-05-20T23:59+09:00", "公欠", "prof")
    at(monkeypatch, "2024-05-18T10:00:00+09:00")
    app = app_of(ext_site)
    s1, s2 = student(app, ext_site, "s001"), student(app, ext_site, "s002")
    page = s1.get("/a/assignment3").text
    assert "2024-05-20 23:59 JST" in page and "your deadline is extended" in page and 'name="notebook"' in page
    assert "2024-05-20 23:59 JST" in s1.get("/").text
    assert upload(s1).status_code == 303
    assert not ext_site.attempts_of("s001", "assignment3")[0].late
    assert "2024-05-16 23:59 JST" in s2.get("/a/assignment3").text and "submissions are closed" in s2.get(
        "/a/assignment3").text
    assert upload(s2).status_code == 422


def test_publish_and_release_on_the_site_are_refused_while_an_extension_is_open_then_withheld_from_them(
        ext_site, monkeypatch):
    from tests.test_site import app_of, csrf_of, results_zip, staff, student

    extensions.add(ext_site.config, "s001", "assignment3", "2024-05-20T23:59+09:00", "公欠", "prof")
    at(monkeypatch, "2024-05-18T10:00:00+09:00")
    app = app_of(ext_site)
    prof = staff(app)
    page = prof.get("/staff/a/assignment3").text
    assert "s001" in page and "2024-05-20 23:59 JST" in page and 'name="withhold_extended"' in page
    refused = prof.post("/staff/a/assignment3/publish", data={"csrf": csrf_of(page)})
    assert refused.status_code == 409 and "s001 (2024-05-20 23:59 JST)" in refused.text
    withheld = prof.post("/staff/a/assignment3/publish", data={"csrf": csrf_of(page), "withhold_extended": "yes"})
    assert withheld.status_code == 303
    from autograder.site.staff import PUBLISH, job_command
    assert "--withhold-extended" in job_command(ext_site, PUBLISH, "assignment3")
    # what the publish job would have written, and the class's results from a GPU runner
    solution = ext_site.solution_page("assignment3")
    solution.parent.mkdir(parents=True)
    solution.write_text("<p>THE SOLUTION</p>", encoding="utf-8")
    zipped = results_zip(extra={"out/feedback/s002.html": "<p>s002's feedback</p>"})
    assert prof.post("/staff/a/assignment3/results", data={"csrf": csrf_of(page)},
                     files={"results": ("out.zip", zipped)}).status_code == 303
    refused = prof.post("/staff/a/assignment3/release", data={"csrf": csrf_of(page)})
    assert refused.status_code == 409 and "s001 (2024-05-20 23:59 JST)" in refused.text
    assert not ext_site.released_feedback("assignment3")
    assert prof.post("/staff/a/assignment3/release",
                     data={"csrf": csrf_of(page), "withhold_extended": "yes"}).status_code == 303
    s1, s2 = student(app, ext_site, "s001"), student(app, ext_site, "s002")
    assert "THE SOLUTION" in s2.get("/a/assignment3/solution").text
    assert "s002's feedback" in s2.get("/a/assignment3/feedback").text
    for path in ("/a/assignment3/solution", "/a/assignment3/checks", "/a/assignment3/feedback"):
        kept = s1.get(path)
        assert kept.status_code == 404 and "after your own deadline (2024-05-20 23:59 JST)" in kept.text
    assert "THE SOLUTION" not in s1.get("/a/assignment3").text and "/a/assignment3/solution" not in s1.get(
        "/a/assignment3").text
    at(monkeypatch, "2024-05-21T00:00:00+09:00")          # their own deadline has passed
    assert "THE SOLUTION" in s1.get("/a/assignment3/solution").text
    assert "graded on the GPU runner" in s1.get("/a/assignment3/feedback").text


def test_only_an_instructor_edits_extensions_on_the_site(ext_site):
    from starlette.testclient import TestClient

    from tests.test_site import app_of, csrf_of, staff, student

    app = app_of(ext_site)
    prof, ta = staff(app), staff(app, "ta1")
    token = csrf_of(prof.get("/staff/a/assignment3").text)
    form = {"csrf": token, "student": "s001", "until": "2024-05-20T23:59+09:00", "reason": "公欠"}
    assert 'action="/staff/a/assignment3/extensions"' not in ta.get("/staff/a/assignment3").text
    by_ta = ta.post("/staff/a/assignment3/extensions", data={**form, "csrf": csrf_of(ta.get("/staff/a/assignment3").text)})
    assert by_ta.status_code == 403 and "Only an instructor may do this (extend)" in by_ta.text
    s1 = student(app, ext_site, "s001")
    assert s1.post("/staff/a/assignment3/extensions", data=form).status_code == 303            # to staff sign-in
    assert TestClient(app, follow_redirects=False).post("/staff/a/assignment3/extensions",
                                                        data=form).status_code == 303
    assert prof.post("/staff/a/assignment3/extensions", data={**form, "csrf": "forged"}).status_code == 403
    assert not ext_site.config.extensions_file.exists()
    granted = prof.post("/staff/a/assignment3/extensions", data=form)
    assert granted.status_code == 303
    (e,) = extensions.load(ext_site.config)
    assert (e.student, e.granted_by, e.reason) == ("s001", "prof", "公欠")
    assert "公欠" in prof.get("/staff/a/assignment3").text
    ta_page = ta.get("/staff/a/assignment3").text          # a TA sees who and until when, not why
    assert "2024-05-20 23:59 JST" in ta_page and "公欠" not in ta_page
    removed = prof.post("/staff/a/assignment3/extensions/remove", data={"csrf": token, "student": "s001"})
    assert removed.status_code == 303 and extensions.load(ext_site.config) == []


@pytest.mark.parametrize("fields, status, said", [
    ({"student": "s001", "until": "2024-05-20 23:59"}, 409, "has no offset"),
    ({"student": "s001", "until": "soon"}, 409, "is not a time"),
    ({"student": "s999", "until": "2024-05-20T23:59+09:00"}, 409, "There is no student 's999' on the roster"),
    ({"student": "s001", "until": "2024-05-10T23:59+09:00"}, 409, "is not after assignment3's deadline"),
    ({"student": "s001"}, 409, "Fill in the extended deadline"),
    ({"until": "2024-05-20T23:59+09:00"}, 409, "Fill in the student id"),
    ({"student": "s001", "until": "2024-05-20T23:59+09:00", "reason": "x" * 2000}, 400, "could not be read"),
    ({"student": "s001", "until": "2024-05-20T23:59+09:00", "a": "1", "b": "2"}, 400, "could not be read"),
])
def test_malformed_extension_forms_are_refused_with_a_reason_never_a_500(ext_site, fields, status, said):
    from tests.test_site import app_of, csrf_of, staff

    app = app_of(ext_site)
    prof = staff(app)
    r = prof.post("/staff/a/assignment3/extensions",
                  data={"csrf": csrf_of(prof.get("/staff/a/assignment3").text), **fields})
    assert r.status_code == status and said in html.unescape(r.text), r.text[-2000:]
    assert not ext_site.config.extensions_file.exists()


def test_a_file_where_the_form_wants_text_is_refused(ext_site):
    from tests.test_site import app_of, csrf_of, staff

    prof = staff(app_of(ext_site))
    r = prof.post("/staff/a/assignment3/extensions", data={"csrf": csrf_of(prof.get("/staff/a/assignment3").text)},
                  files={"student": ("s001", b"s001")})
    assert r.status_code == 400 and "could not be read" in r.text


def test_serve_does_not_start_on_an_extensions_file_that_does_not_parse(tmp_path, capsys, not_served):
    """Every upload's deadline reads the file: a broken one is said when the server starts, not later as an error
    page in front of the students."""
    config_path = short_config(tmp_path)
    (tmp_path / "extensions.json").write_text('{"extensions": [{"student": "s001"', encoding="utf-8")
    args = ["--config", str(config_path), "serve", "--data", str(tmp_path / "site"), "--unsafe-without-sandbox"]
    assert main(args) == 2
    said = capsys.readouterr().err
    assert not not_served
    assert "serve does not start" in said and "extensions.json" in said and "cannot be read as JSON" in said
    (tmp_path / "extensions.json").write_text('{"extensions": []}', encoding="utf-8")
    assert main(args) == 0 and len(not_served) == 1
