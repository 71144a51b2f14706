"""Find a class's submissions and decide, per student, which one is graded and whether it is on time.

Four layouts are read, each as its tool writes it:
- nbgrader's course folder: ``submitted/<student>/<assignment>/*.ipynb`` with ``timestamp.txt`` (what ``nbgrader
  collect`` and our ``submit`` write; one submission per student);
- nbgrader's exchange inbound: ``inbound/<student>+<assignment>+<timestamp>[+random]/`` (every submission kept);
- Moodle's and Canvas's "download all submissions" zips, as the LMS names their files (``lms.py``), with the grading
  worksheet or gradebook CSV that joins each participant to the course's student id (and, Moodle's, gives the time);
- an LMS export: a folder or ``.zip`` holding the notebooks and one CSV manifest (student id, file, submitted-at).

One job: turn a folder into ``Submission``s. Nothing here runs or grades a notebook.
"""

from __future__ import annotations

import csv
import datetime as dt
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..course.clock import local_text, parse_time
from ..course.config import Config
from ..course.extensions import deadline_for
from ..course.late_policy import ACCEPT, PENALTY, REJECT, judge
from ..errors import GraderError
from ..grading.store import file_stem
from . import lms

TIMESTAMP_FILE = "timestamp.txt"
# Header names an LMS export may use for each manifest column (compared case-insensitively, spaces as "_").
MANIFEST_COLUMNS = {
    "student": ("student_id", "student", "id", "user", "username", "login", "学籍番号"),
    "file": ("file", "filename", "file_name", "path", "submission", "notebook", "ファイル"),
    "submitted_at": ("submitted_at", "submitted", "timestamp", "time", "submission_time", "提出日時"),
}
ZIP_MEMBER_LIMIT = 2**30               # bytes unpacked; a notebook is far smaller (MAX_NOTEBOOK_MB)

# What a submission's fate is before any notebook runs.
GRADE, LATE, NO_TIMESTAMP, UNUSABLE, MISSING = "grade", "late", "no timestamp", "error", "no submission"
NOTHING_HANDED_IN = ("この課題の提出はありませんでした (0 点)。", "Nothing was handed in for this assignment (0 points).")


@dataclass(frozen=True)
class Candidate:
    """One file a student handed in."""
    student_id: str
    origin: str                              # where it came from, as shown to people (relative path / zip member)
    path: Path | None                        # the notebook on disk; None when it could not be found
    submitted_at: dt.datetime | None         # aware; None when there is no usable timestamp
    timestamp_problem: str = ""              # why submitted_at is None
    problem: str = ""                        # why the file cannot be graded at all
    late: bool | None = None                 # the LMS's word when it gives no time (Canvas's LATE); None: unsaid


@dataclass
class Submission:
    """The submission that counts for one student, and what was set aside."""
    student_id: str
    chosen: Candidate
    fate: str                                # GRADE | LATE | NO_TIMESTAMP | UNUSABLE
    detail: str = ""                         # one line, Japanese / English, for the gradebook and feedback
    superseded: list[tuple[Candidate, str]] = field(default_factory=list)   # (candidate, why not graded)
    extended_until: dt.datetime | None = None    # the student's own deadline, when an extension gives one
    penalty: float = 0.0                         # the fraction of the score the late policy deducts

    @property
    def file_stem(self) -> str:
        return file_stem(self.student_id)


# --- reading the layouts ------------------------------------------------------------------------------------

def find_candidates(root: Path, config: Config, worksheet: Path | None = None) -> list[Candidate]:
    """Every submitted file under ``root`` (a folder already unpacked), whatever the layout; ``worksheet``: the
    LMS's list of students for its download (Moodle's grading worksheet, Canvas's gradebook CSV)."""
    handed = lms.handed_in(root, config, worksheet)
    if handed is not None:
        return [_lms_candidate(h) for h in handed]
    if (root / "submitted").is_dir() or (root / "inbound").is_dir():
        found = []
        if (root / "submitted").is_dir():
            found += _course_folder(root / "submitted", root, config)
        if (root / "inbound").is_dir():
            found += _inbound(root / "inbound", root, config)
        return found
    if any(p.is_dir() for p in root.glob(f"*/{config.assignment.id}")):
        return _course_folder(root, root, config)
    manifests = sorted(root.glob("*.csv"))
    if len(manifests) == 1:
        return _manifest(manifests[0], root, config)
    if len(manifests) > 1:
        raise GraderError(f"{root}: several CSV manifests ({', '.join(m.name for m in manifests)}); keep the one "
                          "the LMS exported")
    raise GraderError(
        f"no submissions found in {root}: expected nbgrader's submitted/<student>/{config.assignment.id}/ "
        f"(or inbound/<student>+{config.assignment.id}+<time>/), Moodle's or Canvas's 'download all submissions' "
        f"zip ({lms.EXPECTED_NAMES}), or an LMS export with a CSV manifest (student id, file, submitted-at)")


def assignments_in(root: Path, known: list[str]) -> list[str]:
    """The course's assignments a class folder holds, by its layout's <assignment> folders (nbgrader's
    submitted/<student>/<assignment>/, inbound/<student>+<assignment>+<time>/, or <student>/<assignment>/); []
    for a layout that does not say (an LMS export with a CSV manifest)."""
    found = set()
    for base in (root / "submitted", root):
        found.update(p.name for p in base.glob("*/*") if p.is_dir())
    if (root / "inbound").is_dir():
        found.update(p.name.split("+")[1] for p in (root / "inbound").iterdir() if p.name.count("+") >= 2)
    return sorted(found & set(known))


def _timestamp_of(folder: Path, tz: dt.tzinfo) -> tuple[dt.datetime | None, str]:
    path = folder / TIMESTAMP_FILE
    if not path.is_file():
        return None, f"{TIMESTAMP_FILE} is missing"
    try:
        text = path.read_text(encoding="utf-8")
        return parse_time(text, tz), ""
    except (ValueError, UnicodeDecodeError, OSError):
        return None, f"{TIMESTAMP_FILE} cannot be read as a time: {path.read_bytes()[:60]!r}"


def _notebook_in(folder: Path, config: Config) -> tuple[Path | None, str]:
    canonical = folder / f"{config.assignment.id}.ipynb"
    if canonical.is_file():
        return canonical, ""
    notebooks = sorted(p for p in folder.glob("*.ipynb") if p.is_file())
    if len(notebooks) == 1:
        return notebooks[0], ""
    if not notebooks:
        return None, "no .ipynb file in the submission folder"
    return None, f"several notebooks and none named {canonical.name}: {', '.join(p.name for p in notebooks)}"


def _folder_candidate(student: str, folder: Path, root: Path, config: Config) -> Candidate:
    notebook, problem = _notebook_in(folder, config)
    submitted_at, ts_problem = _timestamp_of(folder, config.timezone)
    origin = str((notebook or folder).relative_to(root))
    return Candidate(student, origin, notebook, submitted_at, ts_problem, problem)


def _lms_candidate(handed: lms.Handed) -> Candidate:
    """A participant's files in an LMS download: the notebook among them (a PDF beside it is not graded)."""
    notebooks = [(path, origin) for path, origin in zip(handed.files, handed.origins)
                 if path.suffix.lower() == ".ipynb"]
    path, origin, problem = None, handed.origins[0] if handed.origins else f"{handed.name} ({handed.lms_id})", ""
    if len(notebooks) == 1:
        path, origin = notebooks[0]
    elif notebooks:
        problem = (f"ノートブックが {len(notebooks)} 冊あり、どれを採点するか決められません。1 冊だけ提出し直して"
                   f"ください / several notebooks handed in ({', '.join(o for _, o in notebooks)}): hand in one")
    elif handed.files:
        problem = (f".ipynb がありません / no .ipynb among the files handed in: "
                   f"{', '.join(p.name for p in handed.files)}")
    else:
        problem = "ファイルの提出がありません / no file handed in (only online text or another plugin's)"
    return Candidate(handed.student_id, origin, path, handed.submitted_at, handed.timestamp_problem, problem,
                     handed.late)


def _course_folder(submitted: Path, root: Path, config: Config) -> list[Candidate]:
    return [_folder_candidate(folder.parent.name, folder, root, config)
            for folder in sorted(submitted.glob(f"*/{config.assignment.id}")) if folder.is_dir()]


def _inbound(inbound: Path, root: Path, config: Config) -> list[Candidate]:
    found = []
    for folder in sorted(inbound.glob(f"*+{config.assignment.id}+*")):
        if folder.is_dir():
            found.append(_folder_candidate(folder.name.split("+", 1)[0], folder, root, config))
    return found


def column_index(header: list[str], wanted: tuple[str, ...]) -> int | None:
    """Where a CSV header has the column that any of ``wanted`` names (case-insensitively, spaces read as "_"),
    as LMS exports spell their headers; None if it has none."""
    names = [h.strip().lower().replace(" ", "_") for h in header]
    return next((names.index(w) for w in wanted if w in names), None)


def _column(header: list[str], role: str, manifest: Path) -> int:
    index = column_index(header, MANIFEST_COLUMNS[role])
    if index is not None:
        return index
    raise GraderError(f"{manifest.name}: no {role} column; the header is {header!r}, expected one of "
                      f"{', '.join(MANIFEST_COLUMNS[role])}")


def _manifest(manifest: Path, root: Path, config: Config) -> list[Candidate]:
    try:
        rows = list(csv.reader(manifest.read_text(encoding="utf-8-sig").splitlines()))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise GraderError(f"{manifest}: cannot be read as a UTF-8 CSV manifest: {exc}") from exc
    if not rows:
        raise GraderError(f"{manifest}: the manifest is empty")
    header, *rows = rows
    cols = {role: _column(header, role, manifest) for role in MANIFEST_COLUMNS}
    found = []
    for line, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        cells = {role: (row[i].strip() if i < len(row) else "") for role, i in cols.items()}
        student, name, when = cells["student"], cells["file"], cells["submitted_at"]
        origin = f"{manifest.name}:{line} {name}"
        if not student:
            raise GraderError(f"{manifest.name} line {line}: no student id")
        path, problem = _member(root, name)
        submitted_at, ts_problem = None, ""
        if not when:
            ts_problem = "the manifest gives no submission time"
        else:
            try:
                submitted_at = parse_time(when, config.timezone)
            except ValueError:
                ts_problem = f"the manifest's submission time {when!r} cannot be read"
        found.append(Candidate(student, origin, path, submitted_at, ts_problem, problem))
    return found


def _member(root: Path, name: str) -> tuple[Path | None, str]:
    """The manifest's file, only if it lies inside the export."""
    if not name:
        return None, "the manifest names no file"
    relative = PurePosixPath(name.replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts:
        return None, f"the manifest's path {name!r} points outside the export; refused"
    path = root / relative
    if not path.is_file():
        return None, f"{name} is not in the export"
    return path, ""


def unpack_zip(archive: Path, into: Path) -> list[str]:
    """Extract an LMS export, refusing members that would land outside ``into`` (``../``, absolute paths,
    links). Returns one line per refused member."""
    refused = []
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                name = PurePosixPath(info.filename.replace("\\", "/"))
                is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
                if name.is_absolute() or ".." in name.parts or is_link:
                    refused.append(f"{info.filename!r}: outside the export or a link; not extracted")
                    continue
                if info.file_size > ZIP_MEMBER_LIMIT:
                    refused.append(f"{info.filename!r}: {info.file_size / 2**30:.1f} GiB unpacked (a zip bomb?); "
                                   "not extracted")
                    continue
                zf.extract(info, into)
    except zipfile.BadZipFile as exc:
        raise GraderError(f"{archive}: not a readable zip file ({exc})") from exc
    return refused


# --- deciding ----------------------------------------------------------------------------------------------

def missing(roster: list[str], submissions: list[Submission]) -> list[Submission]:
    """A Submission of nothing for each student on the roster who handed nothing in: they get a row and a page
    (0 points) instead of being absent from the gradebook."""
    handed_in = {sub.student_id for sub in submissions}
    nothing = Candidate("", "", None, None, problem="no submission")
    return [Submission(student, nothing, MISSING, " / ".join(NOTHING_HANDED_IN))
            for student in dict.fromkeys(roster) if student not in handed_in]


def choose(candidates: list[Candidate], config: Config) -> list[Submission]:
    """One Submission per student: the latest on-time file counts; the others are listed, not graded."""
    by_student: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_student.setdefault(c.student_id, []).append(c)
    return [_decide(sid, cs, config) for sid, cs in sorted(by_student.items())]


def _decide(student: str, candidates: list[Candidate], config: Config) -> Submission:
    a = config.assignment
    deadline = deadline_for(config, student)                  # theirs: an extension's, when they have one
    accepted = lambda c: judge(a.late_policy, a.late_penalty, deadline, c.submitted_at).accepted  # noqa: E731
    timed = [c for c in candidates if c.submitted_at is not None]
    on_time = [c for c in timed if accepted(c)]
    untimed = [c for c in candidates if c.submitted_at is None]
    by_time = lambda c: (c.submitted_at, c.origin)  # noqa: E731 — ties broken by name, deterministically
    if on_time:
        chosen = max(on_time, key=by_time)
    elif untimed:
        chosen = max(untimed, key=lambda c: c.origin)
    else:
        chosen = max(timed, key=by_time)

    superseded = []
    for c in sorted(candidates, key=lambda c: c.origin):
        if c is chosen:
            continue
        if c.submitted_at is None:
            why = "no usable timestamp"
        elif not accepted(c):
            why = "after the deadline"
        elif chosen.submitted_at is not None and c.submitted_at <= chosen.submitted_at:
            why = "an earlier submission"
        else:
            why = "not chosen"
        superseded.append((c, why))

    fate, detail, penalty = _fate(chosen, config, deadline)
    extended = deadline if deadline != a.deadline else None
    if extended is not None:
        said = local_text(extended, config.timezone)
        detail = " · ".join(filter(None, [f"締切延長 {said} まで / extended deadline {said}", detail]))
    return Submission(student, chosen, fate, detail, superseded, extended, penalty)


def _fate(chosen: Candidate, config: Config, deadline: dt.datetime) -> tuple[str, str, float]:
    """(the fate, why, the fraction of the score a penalty takes) of the chosen file, against ``deadline``, the
    student's own."""
    if chosen.problem:
        return UNUSABLE, f"提出ファイルを採点できません / the submission cannot be graded: {chosen.problem}", 0.0
    if chosen.submitted_at is None and chosen.late is not None:
        if chosen.late and deadline != config.assignment.deadline:
            return GRADE, ("LMS の判定では期限後ですが、この学生の締切は延長されています (時刻不明のため採点しました) / late by "
                           "the LMS's due date, but this student's deadline is extended (no time to judge by): graded"), 0.0
        return (*_lms_fate(chosen.late, config), 0.0)
    if chosen.submitted_at is None:
        if config.missing_timestamp == "reject":
            return NO_TIMESTAMP, (f"提出時刻が確認できないため受理されません / no submission time, so not accepted "
                                  f"({chosen.timestamp_problem})"), 0.0
        return GRADE, f"提出時刻が確認できません (採点はしました) / submission time unknown, graded anyway " \
                      f"({chosen.timestamp_problem})", 0.0
    a = config.assignment
    lateness = judge(a.late_policy, a.late_penalty, deadline, chosen.submitted_at)
    if not lateness.late:
        return GRADE, "", 0.0
    shown, when = local_text(deadline, config.timezone), local_text(chosen.submitted_at, config.timezone)
    if not lateness.accepted:
        past = (f" ({lateness.days} 日目、{a.late_penalty.max_days} 日を過ぎています)",
                f" ({lateness.days} days late, past the {a.late_penalty.max_days} days late work is taken)"
                ) if a.late_policy == PENALTY else ("", "")
        return LATE, f"締切 {shown} を過ぎた提出 ({when}){past[0]} は受理されません / submitted {when}, after the " \
                     f"deadline {shown}{past[1]}: not accepted", 0.0
    if a.late_policy == ACCEPT:
        return GRADE, f"締切後の提出 ({when}) ですが、設定により採点しました / submitted {when}, after the " \
                      f"deadline {shown}; graded (LATE_POLICY = 'accept')", 0.0
    pct = f"{lateness.fraction * 100:g}%"
    return GRADE, f"締切後 {lateness.days} 日目の提出 ({when}): 得点から {pct} 減点 / submitted {when}, " \
                  f"{lateness.days} started day(s) after the deadline {shown}: {pct} off the score", lateness.fraction


def _lms_fate(late: bool, config: Config) -> tuple[str, str]:
    """When the LMS gives no time but says whether it was late (by its own due date)."""
    if not late:
        return GRADE, "提出時刻は不明、LMS の判定では期限内 / no submission time; on time by the LMS's due date"
    if config.assignment.late_policy == REJECT:
        return LATE, "LMS の判定で期限後の提出のため受理されません / late by the LMS's due date: not accepted"
    if config.assignment.late_policy == PENALTY:      # no time, no days to count: staff decide the deduction
        return GRADE, ("LMS の判定では期限後の提出です。提出時刻がないため減点は計算していません (手で確認してください) / "
                       "late by the LMS's due date; with no time, no penalty was computed: check it by hand")
    return GRADE, ("LMS の判定では期限後の提出ですが、設定により採点しました / late by the LMS's due date; graded "
                   "(LATE_POLICY = 'accept')")
