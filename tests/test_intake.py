"""Intake: which submission counts for each student, whether it is on time, and every layout an instructor gets."""

from __future__ import annotations

import dataclasses
import zipfile

import pytest
from classroom import LATE, ON_TIME, exchange_submission, inbound_submission, lms_export

from autograder.classroom import intake
from autograder.errors import GraderError

NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def decide(root, config):
    return {s.student_id: s for s in intake.choose(intake.find_candidates(root, config), config)}


def test_exchange_layout_on_time_late_and_missing_timestamp(tmp_path, config):
    exchange_submission(tmp_path, "s001", NOTEBOOK, ON_TIME)
    exchange_submission(tmp_path, "s002", NOTEBOOK, LATE)
    exchange_submission(tmp_path, "s003", NOTEBOOK, None)
    subs = decide(tmp_path, config)
    assert subs["s001"].fate == intake.GRADE and subs["s001"].chosen.submitted_at == ON_TIME
    assert subs["s002"].fate == intake.LATE
    assert "2024-05-17 00:30 JST" in subs["s002"].detail and "2024-05-16 23:59 JST" in subs["s002"].detail
    assert subs["s003"].fate == intake.GRADE and "timestamp.txt is missing" in subs["s003"].detail
    strict = dataclasses.replace(config, missing_timestamp="reject")
    assert decide(tmp_path, strict)["s003"].fate == intake.NO_TIMESTAMP
    relaxed = dataclasses.replace(config, chosen=dataclasses.replace(config.assignment, late_policy="accept"))
    assert decide(tmp_path, relaxed)["s002"].fate == intake.GRADE
    assert "LATE_POLICY = 'accept'" in decide(tmp_path, relaxed)["s002"].detail


def test_the_submitted_folder_itself_can_be_given(tmp_path, config):
    exchange_submission(tmp_path, "s001", NOTEBOOK, ON_TIME)
    assert list(decide(tmp_path / "submitted", config)) == ["s001"]


def test_the_latest_on_time_submission_counts_and_the_others_are_listed(tmp_path, config):
    inbound_submission(tmp_path, "s004", NOTEBOOK, ON_TIME)
    inbound_submission(tmp_path, "s004", NOTEBOOK, ON_TIME.replace(hour=13))
    inbound_submission(tmp_path, "s004", NOTEBOOK, LATE)
    sub = decide(tmp_path, config)["s004"]
    assert sub.fate == intake.GRADE and sub.chosen.submitted_at == ON_TIME.replace(hour=13)
    assert sorted(why for _, why in sub.superseded) == ["after the deadline", "an earlier submission"]


def test_only_late_submissions_the_latest_is_refused_as_late(tmp_path, config):
    inbound_submission(tmp_path, "s005", NOTEBOOK, LATE)
    inbound_submission(tmp_path, "s005", NOTEBOOK, LATE.replace(hour=16))
    sub = decide(tmp_path, config)["s005"]
    assert sub.fate == intake.LATE and sub.chosen.submitted_at == LATE.replace(hour=16)
    assert [why for _, why in sub.superseded] == ["after the deadline"]


@pytest.mark.parametrize("text, problem", [
    ("yesterday", "cannot be read as a time"),
    ("", "cannot be read as a time"),
])
def test_an_unreadable_timestamp_is_reported(tmp_path, config, text, problem):
    path = exchange_submission(tmp_path, "s001", NOTEBOOK, ON_TIME)
    (path.parent / "timestamp.txt").write_text(text)
    sub = decide(tmp_path, config)["s001"]
    assert sub.chosen.submitted_at is None and problem in sub.chosen.timestamp_problem
    assert problem in sub.detail


def test_folder_problems_become_unusable_submissions(tmp_path, config):
    exchange_submission(tmp_path, "s001", NOTEBOOK, ON_TIME).unlink()
    two = exchange_submission(tmp_path, "s002", NOTEBOOK, ON_TIME)
    two.rename(two.with_name("mine.ipynb"))
    (two.parent / "copy.ipynb").write_text(NOTEBOOK)
    one_other_name = exchange_submission(tmp_path, "s003", NOTEBOOK, ON_TIME)
    one_other_name.rename(one_other_name.with_name("課題3.ipynb"))
    subs = decide(tmp_path, config)
    assert subs["s001"].fate == intake.UNUSABLE and "no .ipynb" in subs["s001"].detail
    assert subs["s002"].fate == intake.UNUSABLE and "copy.ipynb, mine.ipynb" in subs["s002"].detail
    assert subs["s003"].fate == intake.GRADE and subs["s003"].chosen.path.name == "課題3.ipynb"


def test_lms_folder_with_manifest(tmp_path, config):
    lms_export(tmp_path / "lms", [
        ("s001", "s001_assignment3.ipynb", NOTEBOOK, "2024-05-15 21:00"),            # naive: course time (JST)
        ("s002", "s002.ipynb", NOTEBOOK, "2024-05-17T00:00:30+09:00"),
        ("s002", "s002_v1.ipynb", NOTEBOOK, "2024-05-16T23:00:00+09:00"),
        ("s003", "missing.ipynb", NOTEBOOK, "2024-05-15 21:00"),
    ])
    (tmp_path / "lms" / "missing.ipynb").unlink()
    subs = decide(tmp_path / "lms", config)
    assert subs["s001"].chosen.submitted_at == ON_TIME
    assert subs["s002"].fate == intake.GRADE and subs["s002"].chosen.path.name == "s002_v1.ipynb"
    assert [why for _, why in subs["s002"].superseded] == ["after the deadline"]
    assert subs["s003"].fate == intake.UNUSABLE and "missing.ipynb is not in the export" in subs["s003"].detail


def test_manifest_header_names_and_excel_bom(tmp_path, config):
    folder = tmp_path / "lms"
    folder.mkdir()
    (folder / "a.ipynb").write_text(NOTEBOOK)
    (folder / "export.csv").write_text("\ufeffUsername,File Name,Timestamp\nstu1,a.ipynb,2024-05-15 12:00:00.000000 UTC\n",
                                       encoding="utf-8")
    assert decide(folder, config)["stu1"].chosen.submitted_at == ON_TIME


def test_manifest_without_a_needed_column_names_it(tmp_path, config):
    folder = tmp_path / "lms"
    folder.mkdir()
    (folder / "export.csv").write_text("name,grade\nstu1,5\n", encoding="utf-8")
    with pytest.raises(GraderError, match="no student column"):
        intake.find_candidates(folder, config)


def test_no_submissions_names_the_layouts(tmp_path, config):
    with pytest.raises(GraderError, match="no submissions found.*submitted/<student>/assignment3"):
        intake.find_candidates(tmp_path, config)


def test_zip_members_outside_the_export_are_refused(tmp_path, config):
    archive = lms_export(tmp_path / "export.zip", [("s001", "s001.ipynb", NOTEBOOK, "2024-05-15 21:00"),
                                                   ("s002", "../../evil.ipynb", NOTEBOOK, "2024-05-15 21:00")],
                         as_zip=True, extra_members={"/abs/path.ipynb": b"x"})
    into = tmp_path / "unpacked" / "root"
    refused = intake.unpack_zip(archive, into)
    assert len(refused) == 2 and all("not extracted" in line for line in refused)
    assert not (tmp_path / "evil.ipynb").exists() and not (tmp_path / "unpacked" / "evil.ipynb").exists()
    subs = decide(into, config)
    assert subs["s001"].fate == intake.GRADE
    assert subs["s002"].fate == intake.UNUSABLE and "points outside the export" in subs["s002"].detail


def test_a_broken_zip_is_a_clear_error(tmp_path):
    bad = tmp_path / "export.zip"
    bad.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(GraderError, match="not a readable zip"):
        intake.unpack_zip(bad, tmp_path / "x")
    assert zipfile.is_zipfile(bad) is False


@pytest.mark.parametrize("student, safe", [("s001", True), ("yamada.taro@example.ac.jp", True),
                                           ("../../etc", False), (".hidden", False), ("a/b", False), ("", False)])
def test_output_file_names_never_leave_their_folder(student, safe):
    stem = intake.file_stem(student)
    assert (stem == student) is safe
    assert "/" not in stem and not stem.startswith(".") and stem
