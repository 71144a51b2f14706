"""The LMS's own files, both ways: what Moodle's and Canvas's "download all submissions" zips hold, read as the LMS
named it (with the grading worksheet or gradebook CSV that says who each participant is), and the class's grades
written back as the files those LMSs upload (Moodle's grading worksheet and feedback-files zip, Canvas's gradebook
import CSV).

Every string of Moodle's below is Moodle's own, cited where it comes from: the code (moodle/moodle: mod/assign/...)
and the language packs (en: moodle/moodle lang/en/*.php and mod/assign/lang/en/assign.php; ja: the ja pack, as in
projectestac/moodle-langpacks upstream_45 and master, ja/assign.php, ja/moodle.php, ja/langconfig.php,
ja/assignfeedback_comments.php). One job: LMS files ↔ students and grades; intake decides, the batch grades.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..course.config import Config
from ..errors import GraderError, Refusal
from ..files import write_atomic
from ..grading.result import INFRASTRUCTURE, Result
from ..grading.store import file_stem, read_result
from ..reports.report import format_points, unofficial_warning

MOODLE, CANVAS = "Moodle", "Canvas"

# Moodle's "Download all submissions" (mod/assign/locallib.php, download_submissions → the prefix
# clean_filename(str_replace('_', ' ', fullname) . '_' . get_uniqueid_for_user()), then '_' . subtype . '_' . type):
# "Download submissions in folders" on: `{full name}_{participant id}_assignsubmission_file[_]/{file}` (the trailing
# '_' before Moodle 4.1, as mod/assign/feedback/file/importziplib.php says); off: `…_assignsubmission_file_{file}`.
# The full name never holds '_' (Moodle makes it a space).
MOODLE_MEMBER = re.compile(r"(?P<name>[^_/]*)_(?P<participant>\d+)_(?P<plugin>assignsubmission_[a-z0-9]+)"
                           r"(?:_?/(?P<path>.+)|_(?P<file>[^/]+))")
MOODLE_FILE_PLUGIN = "assignsubmission_file"        # the others (onlinetext, comments, …) hold no notebook
# Canvas's submissions.zip: `{name}_{user id}_{attachment id}_{file}`, `LATE_` before the user id of a late one
# (the name is the student's sortable name lower-cased with its punctuation removed; it may be empty).
CANVAS_MEMBER = re.compile(r"(?P<name>[^_/]*)_(?:(?P<late>late)_)?(?P<user>\d+)_(?P<attachment>\d+)_(?P<file>[^/]+)",
                           re.IGNORECASE)
EXPECTED_NAMES = (f"{MOODLE}: `Full name_12345_assignsubmission_file_/notebook.ipynb` (folders) or "
                  f"`Full name_12345_assignsubmission_file_notebook.ipynb`; {CANVAS}: "
                  "`name_12345_67890_notebook.ipynb` (`name_LATE_12345_…` for a late one)")

# The grading worksheet's headers (mod/assign/gradingtable.php, the columns when downloading), each (en, ja):
MOODLE_HEADERS = {
    "identifier": ("Identifier", "ID"),                          # assign: recordid
    "name": ("Full name", "フルネーム"),                           # core: fullname
    "email": ("Email address", "メールアドレス"),                   # core: email (an identity field)
    "idnumber": ("ID number", "IDナンバ"),                        # core: idnumber (an identity field)
    "status": ("Status", "ステータス"),                            # assign: status
    "grade": ("Grade", "評点"),                                   # core: gradenoun (Moodle 4.x)
    "maxgrade": ("Maximum grade", "最大評点"),                     # assign: maxgrade
    "changeable": ("Grade can be changed", "評点変更可"),           # assign: gradecanbechanged
    "submitted": ("Last modified (submission)", "最終更新日時 (提出)"),   # assign: lastmodifiedsubmission
    "graded": ("Last modified (grade)", "最終更新日時 (評定)"),          # assign: lastmodifiedgrade
    "feedback": ("Feedback comments", "フィードバックコメント"),       # assignfeedback_comments: pluginname
}
OLD_GRADE_HEADERS = ("Grade", "評定")                             # core: grade, the header before Moodle 4.0
# The identifier's prefix: assign: hiddenuser ('Participant ' en, '参加者' ja); importgradeslib.php strips it.
PARTICIPANT = ("Participant", "参加者")
NO_TIME = "-"                                                    # gradingtable.php col_timesubmitted, no submission
# userdate()'s default format (lib/moodlelib.php): langconfig strftimedaydatetime, '%d' and '%I' without their
# leading zero (fixday, fixhour). en: '%A, %d %B %Y, %I:%M %p'; ja: '%Y年 %m月 %d日(%A) %H:%M'.
DATE_FORMATS = ("%A, %d %B %Y, %I:%M %p", "%Y年 %m月 %d日(%A) %H:%M")
JA_DATE = re.compile(r"(\d{4})年\s*(\d{1,2})月\s*(\d{1,2})日\s*\([^)]*\)\s*(\d{1,2}):(\d{2})")

# Canvas's gradebook export and import (Grades → Export / Import): these columns, then one per assignment, named
# `{title} ({assignment id})`; the row under the header gives each one's points ("Points Possible").
CANVAS_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
CANVAS_POINTS_ROW = "Points Possible"

WORKSHEET_OUT = "moodle-grading-worksheet.csv"
FEEDBACK_ZIP_OUT = "moodle-feedback-files.zip"
CANVAS_OUT = "canvas-gradebook-import.csv"
FEEDBACK_FILE = "feedback.html"


@dataclass
class Handed:
    """What one participant handed in, as the LMS's files say: their files and (when known) when."""
    student_id: str
    lms_id: str                              # Moodle's participant id, Canvas's user id
    name: str
    files: list[Path] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)     # each file as the zip names it
    submitted_at: dt.datetime | None = None
    timestamp_problem: str = ""
    late: bool | None = None                 # what the LMS says when it gives no time (Canvas's LATE)


@dataclass(frozen=True)
class Person:
    """One row of the LMS's list of students (a Moodle worksheet row, a Canvas gradebook row)."""
    lms_id: str
    name: str
    student_id: str
    submitted_at: dt.datetime | None = None
    line: int = 0


# --- reading the zip ---------------------------------------------------------------------------------------------

def kind_of(root: Path) -> str | None:
    """MOODLE or CANVAS when every LMS-named file under ``root`` is that LMS's; None when none is; mixed exports
    refused."""
    names = [p.relative_to(root).as_posix() for p in sorted(root.rglob("*")) if p.is_file()]
    moodle = [n for n in names if MOODLE_MEMBER.fullmatch(n)]
    canvas = [n for n in names if "/" not in n and CANVAS_MEMBER.fullmatch(n)]
    if moodle and canvas:
        raise GraderError(
            f"{MOODLE} と {CANVAS} の提出が混在しています ({moodle[0]}, {canvas[0]})。1 つの LMS の 1 つの課題のダウンロード"
            f"だけを渡してください。\nmixed exports: {MOODLE}'s names ({moodle[0]}) and {CANVAS}'s ({canvas[0]}) in one "
            "download; give one LMS's download of one assignment")
    return MOODLE if moodle else CANVAS if canvas else None


def handed_in(root: Path, config: Config, worksheet: Path | None) -> list[Handed] | None:
    """Each participant's files in an LMS download unpacked at ``root``, joined to the worksheet's students when
    one is given; None when ``root`` is no LMS download (and no worksheet says it should be)."""
    if worksheet is None and any(root.glob("*.csv")):
        return None                          # an export with our CSV manifest: intake reads it
    kind = kind_of(root)
    if kind is None:
        if worksheet is not None:
            raise GraderError(
                f"{root} は Moodle / Canvas の「すべての提出をダウンロード」の ZIP ではありません。期待した名前: "
                f"{EXPECTED_NAMES}\n{root} is neither Moodle's nor Canvas's 'download all submissions' zip; the names "
                f"expected: {EXPECTED_NAMES}")
        return None
    people = read_people(worksheet, config, kind) if worksheet else None
    found = _moodle_files(root) if kind == MOODLE else _canvas_files(root)
    if people is not None:
        _refuse_strangers(found, people, kind, worksheet)
    return [_joined(h, people, kind, worksheet) for h in found.values()]


def _refuse_strangers(found: dict[str, Handed], people: dict[str, Person], kind: str, worksheet: Path) -> None:
    """A worksheet of another assignment (Moodle's participant ids are the assignment's own) or course lists none
    of the zip's participants, or not all."""
    strangers = [f"{h.lms_id} ({h.name})" for lms_id, h in sorted(found.items(), key=lambda i: int(i[0]))
                 if lms_id not in people]
    if strangers:
        listed = ", ".join(f"{p.lms_id} ({p.name})" for p in list(people.values())[:5]) or "no one"
        raise GraderError(
            f"{worksheet.name} は別の課題のものです: ZIP の参加者 {', '.join(strangers[:5])} がいません。同じ課題の"
            f"{'評定ワークシート' if kind == MOODLE else '成績表 CSV'}を渡してください。\n{worksheet.name} is for another "
            f"assignment or course: its participants do not match — the zip's {', '.join(strangers[:5])}"
            f"{' …' if len(strangers) > 5 else ''} not in it (it lists {listed}{' …' if len(people) > 5 else ''}); "
            f"download the {kind} file of this assignment; nothing was graded")


def _moodle_files(root: Path) -> dict[str, Handed]:
    found: dict[str, Handed] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        match = MOODLE_MEMBER.fullmatch(name)
        if not match:
            continue
        pid = match["participant"]
        handed = found.setdefault(pid, Handed(f"moodle-participant-{pid}", pid, match["name"].strip()))
        if match["plugin"] == MOODLE_FILE_PLUGIN:     # online text and other plugins' files: ignored
            handed.files.append(path)
            handed.origins.append(name)
    return found


def _canvas_files(root: Path) -> dict[str, Handed]:
    found: dict[str, Handed] = {}
    for path in sorted(p for p in root.iterdir() if p.is_file()):
        match = CANVAS_MEMBER.fullmatch(path.name)
        if not match:
            continue
        user = match["user"]
        handed = found.setdefault(user, Handed(f"canvas-{user}", user, match["name"], late=bool(match["late"])))
        handed.files.append(path)
        handed.origins.append(path.name)
        handed.late = handed.late or bool(match["late"])
    return found


def _joined(handed: Handed, people: dict[str, Person] | None, kind: str, worksheet: Path | None) -> Handed:
    """The participant as the course knows them: its student id and submission time from the worksheet."""
    if people is None:
        if kind == MOODLE:
            handed.timestamp_problem = ("Moodle の ZIP には提出時刻がありません (--worksheet で評定ワークシートを"
                                        "渡すと分かります) / Moodle's zip holds no submission times (give its grading "
                                        "worksheet with --worksheet to know them)")
        else:
            handed.timestamp_problem = "Canvas's zip gives no submission time"
        return handed
    person = people[handed.lms_id]
    handed.student_id = person.student_id
    if kind == MOODLE:
        handed.submitted_at = person.submitted_at
        if person.submitted_at is None:
            handed.timestamp_problem = f"{worksheet.name} line {person.line} gives no submission time"
    else:
        handed.timestamp_problem = "Canvas's zip gives no submission time"
    return handed


# --- reading the LMS's list of students ---------------------------------------------------------------------------

def read_csv(path: Path) -> tuple[list[list[str]], bool, str]:
    """→ (rows, whether it began with a UTF-8 BOM, its line ending): read as the LMSs write them (UTF-8, a BOM for
    Excel, quoted fields holding commas and line breaks)."""
    try:
        data = Path(path).read_bytes()
        text = data.decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise GraderError(f"{path} を UTF-8 の CSV として読めません / cannot be read as a UTF-8 CSV: {exc}") from exc
    if not rows:
        raise GraderError(f"{path} は空です / {path} is empty")
    return rows, data.startswith(b"\xef\xbb\xbf"), "\r\n" if b"\r\n" in data else "\n"


def worksheet_kind(header: list[str]) -> str | None:
    if header[:1] and header[0].strip() in MOODLE_HEADERS["identifier"]:
        return MOODLE
    if all(c in header for c in ("Student", "ID")):
        return CANVAS
    return None


def read_people(path: Path, config: Config, expected: str | None = None) -> dict[str, Person]:
    """LMS id → the student, from a Moodle grading worksheet or a Canvas gradebook CSV (``expected``: the kind the
    zip is, a worksheet of the other kind refused)."""
    rows, _, _ = read_csv(path)
    kind = worksheet_kind(rows[0])
    if kind is None:
        raise GraderError(
            f"{path.name} は Moodle の評定ワークシートでも Canvas の成績表 CSV でもありません。\n{path.name} is "
            f"neither Moodle's grading worksheet (its first column {MOODLE_HEADERS['identifier'][0]!r} or "
            f"{MOODLE_HEADERS['identifier'][1]!r}) nor Canvas's gradebook CSV (columns {', '.join(CANVAS_COLUMNS)}); "
            f"its header is {rows[0][:6]!r}")
    if expected and kind != expected:
        raise GraderError(f"{expected} の ZIP に {kind} のファイル {path.name} が渡されました。\nmixed exports: "
                          f"{path.name} is {kind}'s, the zip is {expected}'s; give the same LMS's files")
    people = _moodle_people(rows, config, path) if kind == MOODLE else _canvas_people(rows, path)
    _refuse_shared_ids(people, path)
    return people


def moodle_columns(header: list[str]) -> dict[str, int]:
    """role → column, in the worksheet's own language (its identifier header says which)."""
    lang = MOODLE_HEADERS["identifier"].index(header[0].strip())
    names = [h.strip() for h in header]
    found = {role: names.index(words[lang]) for role, words in MOODLE_HEADERS.items() if words[lang] in names}
    if "grade" not in found and OLD_GRADE_HEADERS[lang] in names:
        found["grade"] = names.index(OLD_GRADE_HEADERS[lang])
    return found


def _moodle_people(rows: list[list[str]], config: Config, path: Path) -> dict[str, Person]:
    header = rows[0]
    cols = moodle_columns(header)
    lang = MOODLE_HEADERS["identifier"].index(header[0].strip())
    for role in ("grade", "submitted"):           # 'Full name' is absent under blind marking
        if role not in cols:
            raise GraderError(f"{path.name}: 評定ワークシートに「{MOODLE_HEADERS[role][1]}」列がありません / no "
                              f"{MOODLE_HEADERS[role][0]!r} column in the grading worksheet; its header is {header!r}")
    people = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        pid = participant_id(row[0], lang, path, line)
        identity = student_id_of(_cell(row, cols, "idnumber"), _cell(row, cols, "email"), f"moodle-participant-{pid}")
        people[pid] = Person(pid, _cell(row, cols, "name"), identity,
                             moodle_time(_cell(row, cols, "submitted"), config.timezone, path, line), line)
    return people


def _cell(row: list[str], cols: dict[str, int], role: str) -> str:
    """A row's cell of a column the header may lack (a short row's missing cells are blank)."""
    index = cols.get(role)
    return row[index].strip() if index is not None and index < len(row) else ""


def participant_id(identifier: str, lang: int, path: Path, line: int) -> str:
    """'Participant 12345' → '12345' (assign: hiddenuser, stripped as importgradeslib.php strips it)."""
    text = identifier.strip()
    prefix = PARTICIPANT[lang]
    number = text[len(prefix):].strip() if text.startswith(prefix) else ""
    if not number.isdigit():
        raise GraderError(f"{path.name} {line} 行目: 識別子 {text!r} は「{PARTICIPANT[lang]}12345」の形ではありません / "
                          f"line {line}: the identifier {text!r} is not {PARTICIPANT[lang]!r} and a number")
    return number


def moodle_time(text: str, tz: dt.tzinfo, path: Path, line: int) -> dt.datetime | None:
    """A worksheet's 'Last modified (submission)' as Moodle's userdate() wrote it in the course's zone; None for
    '-' (nothing submitted)."""
    if text in ("", NO_TIME):
        return None
    match = JA_DATE.fullmatch(text)
    if match:
        year, month, day, hour, minute = map(int, match.groups())
        try:
            return dt.datetime(year, month, day, hour, minute, tzinfo=tz)
        except ValueError:
            pass
    else:
        try:
            return dt.datetime.strptime(text, DATE_FORMATS[0]).replace(tzinfo=tz)
        except ValueError:
            pass
    raise GraderError(
        f"{path.name} {line} 行目: 提出日時 {text!r} を読めません (Moodle の形式 '2024年 05月 15日(水曜日) 21:00' か "
        f"'Wednesday, 15 May 2024, 9:00 PM')。\n{path.name} line {line}: the submission time {text!r} does not "
        f"parse as Moodle writes it ({DATE_FORMATS[0]!r} in English, {DATE_FORMATS[1]!r} in Japanese); download "
        "the worksheet again from Moodle rather than saving it from a spreadsheet")


def student_id_of(identity: str, email: str, fallback: str) -> str:
    """The course's id for a student: the LMS's identity field (the student number), else the e-mail's local part
    (a university's address is its student number), else the LMS's own id."""
    if identity:
        return identity
    if "@" in email:
        return email.split("@", 1)[0].lower()
    return fallback


def _canvas_people(rows: list[list[str]], path: Path) -> dict[str, Person]:
    header = [h.strip() for h in rows[0]]
    col = {name: header.index(name) for name in CANVAS_COLUMNS if name in header}
    people = {}
    for line, row in enumerate(rows[1:], start=2):
        if _cell(row, col, "Student") == CANVAS_POINTS_ROW or not _cell(row, col, "ID"):
            continue
        user = _cell(row, col, "ID")
        identity = student_id_of(_cell(row, col, "SIS User ID"), _cell(row, col, "SIS Login ID"), f"canvas-{user}")
        people[user] = Person(user, _cell(row, col, "Student"), identity, line=line)
    return people


def _refuse_shared_ids(people: dict[str, Person], path: Path) -> None:
    seen: dict[str, Person] = {}
    for person in people.values():
        other = seen.setdefault(person.student_id, person)
        if other is not person:
            raise GraderError(f"{path.name}: {other.line} 行目と {person.line} 行目が同じ学生 ID {person.student_id} に"
                              f"なります / lines {other.line} and {person.line} give the same student id "
                              f"{person.student_id!r}; fix the identity field in the LMS")


# --- writing back -------------------------------------------------------------------------------------------------

def class_results(folder: Path) -> dict[str, Result]:
    """student id → result, as a graded class's folder holds them."""
    results = {}
    for path in sorted((Path(folder) / "results").glob("*.json")):
        result = read_result(path)
        if result and result.provenance.student_id:
            results[result.provenance.student_id] = result
    if not results:
        raise GraderError(f"{folder} に採点結果がありません / no graded results in {folder} (results/*.json, "
                          "written by `grade`)")
    return results


def refuse_unofficial(results: dict[str, Result]) -> None:
    """Only official grades go back to the LMS: a CPU grade under 'require-gpu' is no final grade."""
    unofficial = sorted(s for s, r in results.items() if not r.official)
    if unofficial:
        ja, en = unofficial_warning(len(unofficial), len(results))
        raise Refusal(f"LMS 用のファイルは書きません: {ja}\nthe LMS's files are not written: {en} "
                      f"({', '.join(unofficial[:5])}{' …' if len(unofficial) > 5 else ''}); grade them again on the GPU "
                      "(grade … --only …) and write them then")


def write_back(folder: Path, worksheet: Path, config: Config) -> list[Path]:
    """The LMS's upload files for the class graded in ``folder``, made from its results and the LMS's own list
    (``worksheet``), into ``folder``/lms/. → the files written."""
    people = read_people(worksheet, config)            # checked as intake checks it (ids, times, shared ids)
    listed = {p.student_id for p in people.values()}
    results = {s: r for s, r in class_results(folder).items() if s in listed}     # not an id since replaced
    refuse_unofficial(results)
    rows, bom, newline = read_csv(worksheet)
    out, kind = Path(folder) / "lms", worksheet_kind(rows[0])
    if kind == MOODLE:
        write_atomic(out / WORKSHEET_OUT, _csv_text(moodle_worksheet(rows, results, people, worksheet), bom, newline))
        write_atomic(out / FEEDBACK_ZIP_OUT, feedback_zip(Path(folder), results, people))
        return [out / WORKSHEET_OUT, out / FEEDBACK_ZIP_OUT]
    write_atomic(out / CANVAS_OUT, _csv_text(canvas_import(rows, results, people, config, worksheet), bom, newline))
    return [out / CANVAS_OUT]


def _csv_text(rows: list[list[str]], bom: bool, newline: str) -> str:
    """CSV written as the LMS wrote the file it came from (its BOM, its line ending)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=newline).writerows(rows)
    return ("\ufeff" if bom else "") + buffer.getvalue()


def _score(result: Result | None) -> str:
    """The points an LMS gets: none for an infrastructure error (no grade given)."""
    if result is None or result.status == INFRASTRUCTURE or result.score is None:
        return ""
    return format_points(result.score)


def feedback_comment(result: Result) -> str:
    """A line or two for Moodle's 'Feedback comments': the score and what happened; the details are the page."""
    line = f"{format_points(result.score or 0)} / {format_points(result.max_score or 0)} ({result.status})"
    detail = f"\n{result.status_detail}" if result.status_detail else ""
    return f"{line}{detail}\n詳細はフィードバックファイル {FEEDBACK_FILE} / details: the feedback file {FEEDBACK_FILE}"


def moodle_worksheet(rows: list[list[str]], results: dict[str, Result], people: dict[str, Person],
                     path: Path) -> list[list[str]]:
    """The worksheet as downloaded, every row and column kept (the identifiers and 'Last modified (grade)' Moodle
    checks on upload), with 'Grade' and 'Feedback comments' filled for each student graded; a row of a student
    with no result (nothing submitted) is left exactly as it was."""
    header = rows[0]
    cols = moodle_columns(header)
    lang = MOODLE_HEADERS["identifier"].index(header[0].strip())
    _refuse_other_maximum(rows, cols, results, path)
    out = [list(header)]
    for line, row in enumerate(rows[1:], start=2):
        row = list(row)
        if any(c.strip() for c in row):
            person = people[participant_id(row[0], lang, path, line)]
            result = results.get(person.student_id)
            score = _score(result)
            if score:
                row += [""] * (len(header) - len(row))
                row[cols["grade"]] = score
                if "feedback" in cols:
                    row[cols["feedback"]] = feedback_comment(result)
        out.append(row)
    return out


def _refuse_other_maximum(rows: list[list[str]], cols: dict[str, int], results: dict[str, Result], path: Path) -> None:
    """Moodle skips, saying nothing, a grade above the assignment's 'Maximum grade' (assignfeedback_offline's
    process_import_grades: out of range): the two maxima must agree before any grade is written."""
    ours = next((r.max_score for r in results.values() if r.max_score is not None), None)
    theirs = {_cell(row, cols, "maxgrade") for row in rows[1:]} - {""}
    try:
        other = [float(t) for t in theirs]
    except ValueError:
        return                               # a scale, not points: Moodle's own check applies
    if ours is not None and any(abs(o - ours) > 1e-9 for o in other):
        shown = ", ".join(sorted(theirs))
        raise GraderError(
            f"{path.name}: Moodle の最大評点 ({shown}) が採点の満点 {format_points(ours)} と違います。Moodle は最大評点を"
            f"超える評点を黙って無視します。課題の設定 → 評点 → 最大評点を {format_points(ours)} にして、ワークシートを"
            f"ダウンロードし直してください。\n{path.name}: Moodle's 'Maximum grade' is {shown}, the grading's maximum is "
            f"{format_points(ours)}; Moodle silently skips a grade above its maximum. Set the assignment's Settings → "
            f"Grade → Maximum grade to {format_points(ours)} and download the worksheet again")


def feedback_zip(folder: Path, results: dict[str, Result], people: dict[str, Person]) -> bytes:
    """Each graded student's feedback page, named as Moodle's "Upload multiple feedback files in a zip" reads
    names (mod/assign/feedback/file/importziplib.php: explode('_', name, 5) → full name, participant id, plugin
    type, plugin name, file): `{full name}_{participant id}_assignfeedback_file_feedback.html`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for person in sorted(people.values(), key=lambda p: int(p.lms_id)):
            page = folder / "feedback" / f"{file_stem(person.student_id)}.html"
            if person.student_id in results and page.is_file():
                name = re.sub(r"[_/\\]", " ", person.name) or "participant"
                zf.writestr(f"{name}_{person.lms_id}_assignfeedback_file_{FEEDBACK_FILE}", page.read_bytes())
    return buffer.getvalue()


def canvas_column(header: list[str], config: Config, path: Path) -> int:
    """The gradebook's column of this assignment: `{title} ({id})` whose title is the assignment's id or title."""
    a = config.assignment
    wanted = {a.id.lower(), a.title_en.lower(), a.title_ja.lower()}
    found = [i for i, h in enumerate(header) if re.sub(r"\s*\(\d+\)$", "", h.strip()).lower() in wanted]
    if len(found) == 1:
        return found[0]
    columns = [h for h in header[len(CANVAS_COLUMNS):] if re.search(r"\(\d+\)$", h.strip())]
    raise GraderError(
        f"{path.name}: 課題 {a.id} の列が{'複数' if found else '見つかりません'}。Canvas の課題名を {a.id} か "
        f"「{a.title_ja}」か {a.title_en!r} にしてください。\n{path.name}: {'several columns' if found else 'no column'} "
        f"for {a.id}: a column is `{{title}} ({{assignment id}})` with the title {a.id!r}, {a.title_en!r} or "
        f"{a.title_ja!r}; the gradebook has {', '.join(columns) or 'no assignment columns'}")


def canvas_import(rows: list[list[str]], results: dict[str, Result], people: dict[str, Person], config: Config,
                  path: Path) -> list[list[str]]:
    """Canvas's gradebook import: its student columns, the assignment's column, 'Points Possible', one row per
    student listed (blank where nothing was graded: Canvas then changes nothing)."""
    header = [h.strip() for h in rows[0]]
    column = canvas_column(header, config, path)
    cols = [header.index(c) for c in CANVAS_COLUMNS if c in header]
    pick = lambda row: [row[i] if i < len(row) else "" for i in cols]
    table = [[header[i] for i in cols] + [header[column]]]
    points = next((r for r in rows[1:] if r and r[0].strip() == CANVAS_POINTS_ROW), None)
    maximum = next((format_points(r.max_score) for r in results.values() if r.max_score is not None), "")
    table.append(pick(points or [f"    {CANVAS_POINTS_ROW}"]) + [points[column] if points else maximum])
    for row in rows[1:]:
        user = _cell(row, {"ID": header.index("ID")}, "ID")
        if user in people:
            table.append(pick(row) + [_score(results.get(people[user].student_id))])
    return table

