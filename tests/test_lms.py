"""The LMS's own files: Moodle's and Canvas's "download all submissions" zips and their worksheets, built here as the
LMSs name and write them (a UTF-8 BOM, PHP's quoting, localized headers and dates, names with spaces and in
Japanese), read by intake, and the grades written back read again as Moodle and Canvas read them."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from classroom import answer, load_course, short_config, works

from autograder.classroom import intake, lms
from autograder.classroom.batch import grade_batch
from autograder.errors import GraderError, Refusal

NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
JST = ZoneInfo("Asia/Tokyo")
ON_TIME = dt.datetime(2024, 5, 15, 21, 0, tzinfo=JST)
LATE = dt.datetime(2024, 5, 17, 0, 30, tzinfo=JST)
JA_WEEKDAYS = ("月曜日", "火曜日", "水曜日", "木曜日", "金曜日", "土曜日", "日曜日")   # strftime %A in ja_JP.UTF-8

# The worksheet's headers as Moodle writes them (lms.MOODLE_HEADERS cites where each comes from).
EN_HEADER = ["Identifier", "Full name", "Email address", "Status", "Grade", "Maximum grade", "Grade can be changed",
             "Last modified (submission)", "Online text", "Last modified (grade)", "Feedback comments"]
JA_HEADER = ["ID", "フルネーム", "IDナンバ", "メールアドレス", "ステータス", "評点", "最大評点", "評点変更可",
             "最終更新日時 (提出)", "最終更新日時 (評定)", "フィードバックコメント"]


# --- the LMSs' files, as they write them ---------------------------------------------------------------------------

def php_csv(rows: list[list[str]], bom: bool = True) -> bytes:
    """CSV as Moodle's download writes it (PHP's fputcsv: a field quoted when it holds a comma, a quote, a line
    break, a tab or a space; OpenSpout's UTF-8 BOM first)."""
    def field(value: str) -> str:
        return f'"{value.replace(chr(34), chr(34) * 2)}"' if any(c in value for c in ',"\n\r\t ') else value
    text = "".join(",".join(field(v) for v in row) + "\n" for row in rows)
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")


def moodle_date(moment: dt.datetime | None, ja: bool) -> str:
    """userdate(): strftimedaydatetime of en or ja, '%d' and '%I' without a leading zero; '-' for no time."""
    if moment is None:
        return "-"
    if ja:
        return f"{moment:%Y}年 {moment:%m}月 {moment.day}日({JA_WEEKDAYS[moment.weekday()]}) {moment:%H:%M}"
    return f"{moment:%A}, {moment.day} {moment:%B %Y}, {int(moment.strftime('%I'))}:{moment:%M} {moment:%p}"


def ja_worksheet(path: Path, people: list[tuple[str, str, str, dt.datetime | None]]) -> Path:
    """A Japanese Moodle's grading worksheet: (participant id, full name, ID number, submitted)."""
    rows = [JA_HEADER] + [[f"参加者{pid}", name, number, f"{number}@example.ac.jp",
                           "評定のために提出済み" if when else "提出なし", "", "12.00", "はい", moodle_date(when, True),
                           "-", ""] for pid, name, number, when in people]
    path.write_bytes(php_csv(rows))
    return path


def en_worksheet(path: Path, people: list[tuple[str, str, str, dt.datetime | None]]) -> Path:
    """An English Moodle's grading worksheet (no ID number shown: the e-mail is the identity field)."""
    rows = [EN_HEADER] + [[f"Participant {pid}", name, email, "Submitted for grading" if when else "No submission",
                           "", "12.00", "Yes", moodle_date(when, False), "", "-", ""]
                          for pid, name, email, when in people]
    path.write_bytes(php_csv(rows))
    return path


def moodle_zip(path: Path, members: dict[str, str | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def folder(name: str, pid: str, plugin: str = "file") -> str:
    """'Download submissions in folders' on: one folder per participant and plugin."""
    return f"{name}_{pid}_assignsubmission_{plugin}_/"


def flat(name: str, pid: str, file: str, plugin: str = "file") -> str:
    return f"{name}_{pid}_assignsubmission_{plugin}_{file}"


def canvas_gradebook(path: Path, students: list[tuple[str, str, str]], title: str = "assignment3") -> Path:
    """Canvas's gradebook export: (name 'Last, First', user id, SIS user id); 'Points Possible' under the header."""
    header = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", f"{title} (4242)", "Quiz 1 (77)",
              "Current Score", "Final Score"]
    rows = [header, ["    Points Possible", "", "", "", "", "12.00", "5.00", "(read only)", "(read only)"]]
    rows += [[name, user, sis, f"{sis}@example.ac.jp", "医療AI 2024", "", "4.00", "", ""] for name, user, sis in students]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"))
    return path


def unpacked(archive: Path, tmp: Path) -> Path:
    root = tmp / "unpacked"
    assert intake.unpack_zip(archive, root) == []
    return root


def decide(root: Path, config, worksheet: Path | None = None) -> dict[str, intake.Submission]:
    return {s.student_id: s for s in intake.choose(intake.find_candidates(root, config, worksheet), config)}


def read_as_moodle(text: str, lang: int = 0) -> dict[str, tuple[str, str, str]]:
    """The worksheet read back as assignfeedback_offline's importer reads it: its columns found by Moodle's exact
    strings (recordid, gradenoun, lastmodifiedgrade, the feedback plugin's name), the participant id what follows
    hiddenuser. → participant id → (grade, last modified (grade), feedback)."""
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline="")))
    header = rows[0]
    idx = {role: header.index(lms.MOODLE_HEADERS[role][lang]) for role in ("identifier", "grade", "graded", "feedback")}
    return {row[idx["identifier"]][len(lms.PARTICIPANT[lang]):].strip(): (row[idx["grade"]], row[idx["graded"]],
                                                                          row[idx["feedback"]]) for row in rows[1:]}


def moodle_import_names(archive: bytes) -> dict[str, tuple[str, str, str, str]]:
    """Each member as importziplib.php reads its name: explode('_', name, 5) → (full name, participant id, plugin
    type, plugin name, the rest)."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        return {parts[1]: (parts[0], parts[2], parts[3], parts[4])
                for parts in (name.split("_", 4) for name in zf.namelist())}


@pytest.fixture
def ja_class(tmp_path):
    """A Japanese Moodle's download in folders: a notebook and a PDF; two notebooks; online text only; a late one;
    and a student who handed in nothing (in the worksheet only)."""
    archive = moodle_zip(tmp_path / "download.zip", {
        folder("山田 太郎", "1001") + "課題3.ipynb": NOTEBOOK,
        folder("山田 太郎", "1001") + "report.pdf": b"%PDF-1.4",
        folder("Anna Maria Smith", "1002") + "a.ipynb": NOTEBOOK,
        folder("Anna Maria Smith", "1002") + "b.ipynb": NOTEBOOK,
        folder("佐藤 花子", "1003", "onlinetext") + "onlinetext.html": "<p>提出します</p>",
        folder("鈴木 一郎", "1004") + "sub/assignment3.ipynb": NOTEBOOK,
    })
    worksheet = ja_worksheet(tmp_path / "評定ワークシート.csv", [
        ("1001", "山田 太郎", "s001", ON_TIME), ("1002", "Anna Maria Smith", "s002", ON_TIME),
        ("1003", "佐藤 花子", "s003", ON_TIME), ("1004", "鈴木 一郎", "s004", LATE), ("1005", "高橋 次郎", "s005", None)])
    return archive, worksheet


# --- Moodle in ---------------------------------------------------------------------------------------------------

def test_a_japanese_moodle_download_in_folders_is_joined_to_its_worksheet(tmp_path, config, ja_class):
    archive, worksheet = ja_class
    subs = decide(unpacked(archive, tmp_path), config, worksheet)
    assert sorted(subs) == ["s001", "s002", "s003", "s004"]          # by the worksheet's ID number
    assert subs["s001"].fate == intake.GRADE and subs["s001"].chosen.path.name == "課題3.ipynb"     # not the PDF
    assert subs["s001"].chosen.submitted_at == ON_TIME
    assert subs["s002"].fate == intake.UNUSABLE and "several notebooks" in subs["s002"].detail
    assert "a.ipynb" in subs["s002"].detail and "b.ipynb" in subs["s002"].detail
    assert subs["s003"].fate == intake.UNUSABLE and "online text" in subs["s003"].detail
    assert subs["s004"].fate == intake.LATE and subs["s004"].chosen.path.name == "assignment3.ipynb"
    assert subs["s004"].chosen.origin == "鈴木 一郎_1004_assignsubmission_file_/sub/assignment3.ipynb"


def test_an_english_moodle_download_without_folders_takes_the_e_mail_as_the_student_id(tmp_path, config):
    archive = moodle_zip(tmp_path / "d.zip", {
        flat("Anna Maria Smith", "77", "my notebook.ipynb"): NOTEBOOK,
        flat("Anna Maria Smith", "77", "onlinetext.html", "onlinetext"): "<p>hi</p>",
        flat("Ken O'Brien", "78", "nb.ipynb"): NOTEBOOK,
        flat("Mary Lee", "79", "scan.pdf"): b"%PDF-1.4",
    })
    worksheet = en_worksheet(tmp_path / "Grades-Assignment 3.csv", [
        ("77", "Anna Maria Smith", "S1234567@example.ac.jp", dt.datetime(2024, 5, 16, 9, 5, tzinfo=JST)),
        ("78", "Ken O'Brien", "ken@example.ac.jp", LATE), ("79", "Mary Lee", "mary@example.ac.jp", ON_TIME)])
    assert b'"Participant 77","Anna Maria Smith"' in worksheet.read_bytes()      # PHP's quoting, as Moodle's
    subs = decide(unpacked(archive, tmp_path), config, worksheet)
    assert subs["s1234567"].fate == intake.GRADE and subs["s1234567"].chosen.path.name.endswith("my notebook.ipynb")
    assert subs["s1234567"].chosen.submitted_at == dt.datetime(2024, 5, 16, 9, 5, tzinfo=JST)   # '9:05 AM'
    assert subs["ken"].fate == intake.LATE
    assert subs["mary"].fate == intake.UNUSABLE and "no .ipynb among the files handed in: " in subs["mary"].detail


def test_without_a_worksheet_the_zip_alone_grades_with_times_unknown_said_plainly(tmp_path, config, ja_class):
    archive, _ = ja_class
    subs = decide(unpacked(archive, tmp_path), config)
    assert subs["moodle-participant-1001"].fate == intake.GRADE
    assert "Moodle's zip holds no submission times" in subs["moodle-participant-1001"].detail
    assert "--worksheet" in subs["moodle-participant-1001"].detail


# --- Canvas in ---------------------------------------------------------------------------------------------------

def test_canvas_submissions_zip_with_late_ones_and_its_gradebook(tmp_path, config):
    archive = moodle_zip(tmp_path / "submissions.zip", {
        "yamadataro_501_9001_assignment3.ipynb": NOTEBOOK,
        "smithanna_LATE_502_9002_assignment3-1.ipynb": NOTEBOOK,
        "_503_9003_hw.ipynb": NOTEBOOK,              # a Japanese sortable name loses every character
    })
    gradebook = canvas_gradebook(tmp_path / "2024-05-20T1200_Grades-AI.csv", [
        ("山田, 太郎", "501", "s001"), ("Smith, Anna Maria", "502", "s002"), ("佐藤, 花子", "503", "s003")])
    subs = decide(unpacked(archive, tmp_path), config, gradebook)
    assert subs["s001"].fate == intake.GRADE and "on time by the LMS's due date" in subs["s001"].detail
    assert subs["s002"].fate == intake.LATE and "late by the LMS's due date" in subs["s002"].detail
    assert subs["s003"].chosen.path.name == "_503_9003_hw.ipynb"
    without = decide(tmp_path / "unpacked", config)
    assert sorted(without) == ["canvas-501", "canvas-502", "canvas-503"]


# --- bad input: refused with a reason, nothing lost ---------------------------------------------------------------

def test_a_zip_that_is_neither_lms_names_what_was_expected(tmp_path, config):
    archive = moodle_zip(tmp_path / "x.zip", {"homework/taro.ipynb": NOTEBOOK})
    root = unpacked(archive, tmp_path)
    worksheet = ja_worksheet(tmp_path / "w.csv", [("1", "山田 太郎", "s001", ON_TIME)])
    with pytest.raises(GraderError, match="(?s)ではありません.*neither Moodle's nor Canvas's.*assignsubmission_file"):
        intake.find_candidates(root, config, worksheet)
    with pytest.raises(GraderError, match="no submissions found.*Moodle's or Canvas's.*_assignsubmission_file_"):
        intake.find_candidates(root, config)


def test_a_worksheet_of_another_assignment_is_refused_naming_the_participant(tmp_path, config, ja_class):
    archive, _ = ja_class
    other = ja_worksheet(tmp_path / "other.csv", [("2001", "山田 太郎", "s001", ON_TIME)])
    with pytest.raises(GraderError, match="(?s)別の課題.*participants do not match.*1001 \\(山田 太郎\\), 1002 .*2001 \\(山田 太郎\\)"):
        intake.find_candidates(unpacked(archive, tmp_path), config, other)


@pytest.mark.parametrize("when", ["2024/05/15 21:00", "15 May 2024", "2024年 05月 15日(水曜日)"])
def test_a_worksheet_time_that_does_not_parse_names_its_row_and_the_format(tmp_path, config, when):
    rows = [JA_HEADER, ["参加者1", "山田 太郎", "s001", "", "", "", "12.00", "はい", when, "-", ""]]
    (tmp_path / "w.csv").write_bytes(php_csv(rows))
    archive = moodle_zip(tmp_path / "d.zip", {flat("山田 太郎", "1", "nb.ipynb"): NOTEBOOK})
    with pytest.raises(GraderError, match=r"(?s)2 行目.*line 2: the submission time .* does not parse.*%A, %d %B"):
        intake.find_candidates(unpacked(archive, tmp_path), config, tmp_path / "w.csv")


def test_mixed_exports_are_refused(tmp_path, config):
    archive = moodle_zip(tmp_path / "d.zip", {flat("山田 太郎", "1", "nb.ipynb"): NOTEBOOK,
                                              "smithanna_502_9002_nb.ipynb": NOTEBOOK})
    root = unpacked(archive, tmp_path)
    with pytest.raises(GraderError, match="(?s)混在.*mixed exports: Moodle's names"):
        intake.find_candidates(root, config)
    only_moodle = moodle_zip(tmp_path / "m.zip", {flat("山田 太郎", "1", "nb.ipynb"): NOTEBOOK})
    gradebook = canvas_gradebook(tmp_path / "g.csv", [("山田, 太郎", "1", "s001")])
    with pytest.raises(GraderError, match="mixed exports: g.csv is Canvas's, the zip is Moodle's"):
        intake.find_candidates(unpacked(only_moodle, tmp_path / "2"), config, gradebook)


@pytest.mark.parametrize("rows, message", [
    ([["name", "grade"], ["a", "1"]], "neither Moodle's grading worksheet"),
    ([["Identifier", "Full name", "Grade"], ["Participant 1", "A", ""]], "no 'Last modified \\(submission\\)' column"),
    ([EN_HEADER, ["User 1", "A", "", "", "", "", "", "-", "", "-", ""]], "line 2: the identifier 'User 1'"),
    ([EN_HEADER, ["Participant 1", "A", "a@x.jp", "", "", "", "", "-", "", "-", ""],
      ["Participant 2", "B", "a@y.jp", "", "", "", "", "-", "", "-", ""]], "lines 2 and 3 give the same student id"),
])
def test_worksheets_that_cannot_be_read_say_why(tmp_path, config, rows, message):
    (tmp_path / "w.csv").write_bytes(php_csv(rows))
    with pytest.raises(GraderError, match=message):
        lms.read_people(tmp_path / "w.csv", config)


def test_a_worksheet_that_is_not_utf8_is_refused(tmp_path, config):
    (tmp_path / "w.csv").write_bytes("ID,フルネーム\n".encode("cp932"))
    with pytest.raises(GraderError, match="cannot be read as a UTF-8 CSV"):
        lms.read_people(tmp_path / "w.csv", config)


# --- out, with a stand-in grade (no training) -------------------------------------------------------------------

@pytest.fixture
def allow_cpu_course(tmp_path):
    return load_course(short_config(tmp_path / "course", DEVICE_POLICY="'allow-cpu'"))


def test_moodle_worksheet_and_feedback_zip_written_back_as_moodle_reads_them(tmp_path, allow_cpu_course, ja_class):
    archive, worksheet = ja_class
    out = tmp_path / "grades" / "assignment3"
    grade_batch(archive, out, allow_cpu_course, workers=1, device="cpu", progress=False, grade_fn=works,
                worksheet=worksheet)
    written = lms.write_back(out, worksheet, allow_cpu_course)
    assert [p.name for p in written] == [lms.WORKSHEET_OUT, lms.FEEDBACK_ZIP_OUT]
    data = written[0].read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")                           # as downloaded
    back = read_as_moodle(data.decode("utf-8"), lang=1)
    assert set(back) == {"1001", "1002", "1003", "1004", "1005"}       # every row kept
    assert back["1001"][0] == "0" and "0 / 12 (graded)" in back["1001"][2] and back["1001"][1] == "-"
    assert back["1002"][0] == "0" and "several notebooks" in back["1002"][2]       # refused: 0 points, said why
    assert back["1004"][0] == "0" and "late" in back["1004"][2]
    assert back["1005"] == ("", "-", "")                              # handed nothing in: left as Moodle wrote it
    original = list(csv.reader(io.StringIO(worksheet.read_text(encoding="utf-8-sig"), newline="")))
    again = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert [r[:5] + r[6:10] for r in again] == [r[:5] + r[6:10] for r in original]   # only grade, feedback changed
    names = moodle_import_names(written[1].read_bytes())
    assert names["1001"] == ("山田 太郎", "assignfeedback", "file", "feedback.html")
    assert "1005" not in names and set(names) == {"1001", "1002", "1003", "1004"}
    with zipfile.ZipFile(written[1]) as zf:
        assert zf.read("山田 太郎_1001_assignfeedback_file_feedback.html") == (out / "feedback" / "s001.html").read_bytes()


def test_a_worksheet_whose_maximum_grade_differs_is_refused_before_moodle_would_skip_grades(tmp_path, allow_cpu_course,
                                                                                              ja_class):
    archive, worksheet = ja_class
    out = tmp_path / "grades" / "assignment3"
    grade_batch(archive, out, allow_cpu_course, workers=1, device="cpu", progress=False, grade_fn=works,
                worksheet=worksheet)
    hundred = tmp_path / "w100.csv"
    hundred.write_bytes(worksheet.read_bytes().replace(b",12.00,", b",100.00,"))
    with pytest.raises(GraderError, match="(?s)最大評点.*'Maximum grade' is 100.00, the grading's maximum is 12"):
        lms.write_back(out, hundred, allow_cpu_course)
    assert not (out / "lms").exists()


def test_unofficial_grades_are_not_written_for_the_lms(tmp_path, short_course, ja_class):
    archive, worksheet = ja_class
    out = tmp_path / "grades" / "assignment3"
    grade_batch(archive, out, short_course, workers=1, device="cpu", progress=False, grade_fn=works,
                worksheet=worksheet)                 # DEVICE_POLICY 'require-gpu', graded on the CPU: unofficial
    with pytest.raises(Refusal, match="(?s)LMS 用のファイルは書きません.*4 of 4 grades are unofficial.*s001"):
        lms.write_back(out, worksheet, short_course)
    assert not (out / "lms").exists()


def test_canvas_gradebook_import_written_back(tmp_path, allow_cpu_course):
    archive = moodle_zip(tmp_path / "submissions.zip", {"yamadataro_501_9001_assignment3.ipynb": NOTEBOOK,
                                                        "smithanna_LATE_502_9002_assignment3.ipynb": NOTEBOOK})
    gradebook = canvas_gradebook(tmp_path / "grades.csv", [("山田, 太郎", "501", "s001"),
                                                          ("Smith, Anna Maria", "502", "s002"),
                                                          ("高橋, 次郎", "503", "s003")])
    out = tmp_path / "grades" / "assignment3"
    grade_batch(archive, out, allow_cpu_course, workers=1, device="cpu", progress=False, grade_fn=works,
                worksheet=gradebook)
    (path,) = lms.write_back(out, gradebook, allow_cpu_course)
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline="")))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "assignment3 (4242)"]
    assert rows[1][0].strip() == "Points Possible" and rows[1][-1] == "12.00"
    assert rows[2] == ["山田, 太郎", "501", "s001", "s001@example.ac.jp", "医療AI 2024", "0"]
    assert rows[3][-1] == "0" and rows[4][-1] == ""                   # late: 0; nothing handed in: no change


def test_a_canvas_gradebook_without_the_assignment_s_column_names_those_it_has(tmp_path, allow_cpu_course):
    gradebook = canvas_gradebook(tmp_path / "g.csv", [("山田, 太郎", "501", "s001")], title="Homework 9")
    header = lms.read_csv(gradebook)[0][0]
    with pytest.raises(GraderError, match="(?s)列が見つかりません.*no column for assignment3.*Homework 9 \\(4242\\)"):
        lms.canvas_column(header, allow_cpu_course, gradebook)


# --- end to end on the short course -----------------------------------------------------------------------------

@pytest.mark.training
def test_a_moodle_download_graded_end_to_end_and_uploaded_back(tmp_path):
    """grade MOODLE.zip --worksheet W --assignment ID: the notebooks trained, the worksheet and feedback zip
    written, read back as Moodle reads them."""
    from test_batch import batch_cli

    config = short_config(tmp_path / "course", DEVICE_POLICY="'allow-cpu'")
    archive = moodle_zip(tmp_path / "download.zip", {
        folder("山田 太郎", "1001") + "課題3.ipynb": answer(),
        folder("山田 太郎", "1001") + "report.pdf": b"%PDF-1.4",
        folder("Anna Maria Smith", "1002") + "a.ipynb": answer(),
        folder("Anna Maria Smith", "1002") + "b.ipynb": answer(),
    })
    worksheet = ja_worksheet(tmp_path / "評定ワークシート.csv", [
        ("1001", "山田 太郎", "s001", ON_TIME), ("1002", "Anna Maria Smith", "s002", ON_TIME),
        ("1003", "高橋 次郎", "s003", None)])
    run = batch_cli(str(archive), "--worksheet", str(worksheet), "--assignment", "assignment3", "--out",
                    str(tmp_path / "grades"), "--device", "cpu", config=config)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "grades" / "assignment3"
    assert f"for the LMS: {out / 'lms' / lms.WORKSHEET_OUT}" in run.stdout
    back = read_as_moodle((out / "lms" / lms.WORKSHEET_OUT).read_text(encoding="utf-8"), lang=1)
    assert back["1001"][0] == "12" and "12 / 12 (graded)" in back["1001"][2]
    assert back["1002"][0] == "0" and "several notebooks" in back["1002"][2]
    assert back["1003"] == ("", "-", "")
    names = moodle_import_names((out / "lms" / lms.FEEDBACK_ZIP_OUT).read_bytes())
    assert names["1001"][1:] == ("assignfeedback", "file", "feedback.html")
    book = (out / "gradebook.csv").read_text(encoding="utf-8")
    assert "s001,12," in book and "2024-05-15T21:00:00+09:00" in book


def test_the_lms_command_writes_the_files_again_from_a_graded_class(tmp_path, ja_class, capsys):
    from autograder.cli import main

    archive, worksheet = ja_class
    config_path = short_config(tmp_path / "course", DEVICE_POLICY="'allow-cpu'")
    out = tmp_path / "grades" / "assignment3"
    grade_batch(archive, out, load_course(config_path), workers=1, device="cpu", progress=False, grade_fn=works,
                worksheet=worksheet)
    assert main(["--config", str(config_path), "lms", str(out), "--worksheet", str(worksheet)]) == 0
    assert f"for the LMS: {out / 'lms' / lms.FEEDBACK_ZIP_OUT}" in capsys.readouterr().out
    assert main(["--config", str(config_path), "lms", str(tmp_path), "--worksheet", str(worksheet)]) == 2
    assert "no graded class in" in capsys.readouterr().err
    notebook = tmp_path / "one.ipynb"
    notebook.write_text(NOTEBOOK)
    assert main(["--config", str(config_path), "grade", str(notebook), "--worksheet", str(worksheet)]) == 2
    assert "--worksheet lists students of a class" in capsys.readouterr().err


@pytest.mark.training
def test_a_canvas_download_graded_end_to_end_and_its_import_written(tmp_path):
    """grade submissions.zip --worksheet GRADES.csv: one notebook trained, a LATE one refused, the import CSV."""
    from test_batch import batch_cli

    config = short_config(tmp_path / "course", DEVICE_POLICY="'allow-cpu'")
    archive = moodle_zip(tmp_path / "submissions.zip", {"yamadataro_501_9001_assignment3.ipynb": answer(),
                                                        "smithanna_LATE_502_9002_assignment3.ipynb": answer()})
    gradebook = canvas_gradebook(tmp_path / "grades.csv", [("山田, 太郎", "501", "s001"),
                                                          ("Smith, Anna Maria", "502", "s002")])
    run = batch_cli(str(archive), "--worksheet", str(gradebook), "--assignment", "assignment3", "--out",
                    str(tmp_path / "grades"), "--device", "cpu", config=config)
    assert run.returncode == 0, run.stderr[-3000:]
    path = tmp_path / "grades" / "assignment3" / "lms" / lms.CANVAS_OUT
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline="")))
    assert [(r[2], r[-1]) for r in rows[2:]] == [("s001", "12"), ("s002", "0")]
    assert "1 executed" in run.stdout
