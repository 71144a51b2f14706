"""Per-student deadlines: an official absence (公欠), illness or an accommodation gives one student a later deadline
for one assignment. One file holds them (EXTENSIONS_FILE, JSON beside grader_config.py), each with who granted it
and when; the ``extension`` commands and the site's staff page write it (atomically, one writer at a time), and
every place a deadline is judged reads it through ``deadline_for``: ``submit`` and the site's uploads, ``grade``'s
intake, publishing the solution and releasing feedback (refused while an extension is open: ``refuse_while_open``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, Refusal
from ..files import write_json
from . import clock
from .assignment import Assignment, assignment_ids, load_assignment, unknown_assignment
from .config import Config

# A student id names the student's folder in the exchange (and so may hold nothing a path could misread).
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
FIELDS = ("student", "assignment", "until", "reason", "granted_by", "granted_at")
REASON_LIMIT = 500


@dataclass(frozen=True)
class Extension:
    student: str
    assignment: str
    until: dt.datetime          # aware: the student's own deadline
    reason: str
    granted_by: str
    granted_at: dt.datetime     # aware

    def to_json(self) -> dict:
        return {"student": self.student, "assignment": self.assignment, "until": self.until.isoformat(),
                "reason": self.reason, "granted_by": self.granted_by,
                "granted_at": self.granted_at.isoformat(timespec="seconds")}


# --- the file --------------------------------------------------------------------------------------------------

def load(config: Config) -> list[Extension]:
    """Every extension the course's file holds ([] when there is none); ConfigError naming the file and the entry
    when it was edited into something unreadable (a deadline is never guessed)."""
    path = config.extensions_file
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: the extensions file cannot be read as JSON ({exc}); fix it or restore it") from exc
    entries = data.get("extensions") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected {{\"extensions\": [...]}}, got {str(data)[:80]!r}")
    return [_entry(path, i, e) for i, e in enumerate(entries)]


def _entry(path: Path, i: int, entry) -> Extension:
    if not (isinstance(entry, dict) and set(entry) == set(FIELDS) and all(isinstance(entry[f], str) for f in FIELDS)):
        raise ConfigError(f"{path}: extension #{i + 1} must hold the text fields {', '.join(FIELDS)}, got {entry!r}")
    try:
        until, granted_at = clock.read_time(entry["until"]), clock.read_time(entry["granted_at"])
    except ValueError as exc:
        raise ConfigError(f"{path}: extension #{i + 1} ({entry['student']}): a time cannot be read ({exc})") from exc
    if until.tzinfo is None or granted_at.tzinfo is None:
        raise ConfigError(f"{path}: extension #{i + 1} ({entry['student']}): its times need an offset")
    return Extension(entry["student"], entry["assignment"], until, entry["reason"], entry["granted_by"], granted_at)


def _save(config: Config, extensions: list[Extension]) -> None:
    ordered = sorted(extensions, key=lambda e: (e.assignment, e.student))
    write_json(config.extensions_file, {"extensions": [e.to_json() for e in ordered]})


@contextlib.contextmanager
def _one_writer(config: Config):
    """The commands and the site may write at once: each read-change-write holds the file's lock."""
    path = config.extensions_file
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --- reading ---------------------------------------------------------------------------------------------------

def extensions_of(config: Config, assignment_id: str | None = None) -> list[Extension]:
    """The extensions of one assignment (all when None), by student."""
    return sorted((e for e in load(config) if assignment_id in (None, e.assignment)), key=lambda e: e.student)


def extension_for(config: Config, student: str, assignment: Assignment | None = None) -> Extension | None:
    assignment = assignment or config.assignment
    return next((e for e in load(config) if e.student == student and e.assignment == assignment.id), None)


def deadline_for(config: Config, student: str, assignment: Assignment | None = None) -> dt.datetime:
    """The student's own deadline: the assignment's, or their extension's when they have one."""
    assignment = assignment or config.assignment
    extension = extension_for(config, student, assignment)
    return max(assignment.deadline, extension.until) if extension else assignment.deadline


def open_extensions(config: Config, moment: dt.datetime | None = None) -> list[Extension]:
    """The assignment's extensions still running at ``moment`` (now, by the course's clock)."""
    moment = moment or clock.now()
    return [e for e in extensions_of(config, config.assignment.id) if e.until > moment]


def refuse_while_open(config: Config, what: tuple[str, str], way_out: tuple[str, str]) -> None:
    """Refusal naming each student whose extension is still open (and until when): ``what`` (ja, en) would show
    them what their classmates' deadline already passed for. ``way_out``: how to go on without them."""
    still = open_extensions(config)
    if not still:
        return
    names = ", ".join(f"{e.student} ({clock.local_text(e.until, config.timezone)})" for e in still)
    raise Refusal(f"締切を延長中の学生がいるため{what[0]}できません: {names}。{way_out[0]}\n"
                  f"Students still have an extended deadline, so {what[1]} is refused: {names}. {way_out[1]}")


# --- changing --------------------------------------------------------------------------------------------------

def read_until(text: str) -> dt.datetime:
    """An extension's end as given (a time with its offset: the file and the site must not depend on the zone of
    the machine that typed it); to the minute, it includes that minute, as a deadline does."""
    try:
        moment = clock.read_time(text or "")
    except ValueError as exc:
        raise Refusal(f"期限 {text!r} を時刻として読めません。2024-05-23T23:59+09:00 のように書いてください。\n"
                      f"{text!r} is not a time: write it as 2024-05-23T23:59+09:00.") from exc
    if moment.tzinfo is None:
        raise Refusal(f"期限 {text!r} にタイムゾーンのオフセットがありません。{text.strip()}+09:00 のように書いてください。\n"
                      f"{text!r} has no offset: write the zone too, e.g. {text.strip()}+09:00.")
    return clock.parse_deadline(text, dt.UTC).astimezone(moment.tzinfo)


def _assignment(config: Config, assignment_id: str) -> Assignment:
    if assignment_id not in assignment_ids(config):
        raise Refusal(f"課題 {assignment_id!r} はこのコースにありません。\n{unknown_assignment(config, assignment_id)}")
    return load_assignment(config, assignment_id)


def _student(student: str, known: Collection[str] | None) -> None:
    if not STUDENT_ID.fullmatch(student or "") or (known is not None and student not in known):
        raise Refusal(f"学生 {student!r} は名簿にいません。学籍番号を確かめてください。\n"
                      f"There is no student {student!r} on the roster: check the student id.")


def add(config: Config, student: str, assignment_id: str, until: str, reason: str, granted_by: str,
        known_students: Collection[str] | None = None) -> Extension:
    """Give ``student`` their own deadline ``until`` (a time with an offset, after the assignment's deadline),
    replacing any earlier extension of theirs for it. ``known_students``: the roster, when there is one."""
    _student(student, known_students)
    assignment = _assignment(config, assignment_id)
    moment = read_until(until)
    if moment <= assignment.deadline:
        shown = clock.local_text(assignment.deadline, config.timezone)
        raise Refusal(f"延長後の期限 ({clock.local_text(moment, config.timezone)}) が {assignment_id} の締切 ({shown}) "
                      f"より前です。締切より後の時刻を指定してください。\n"
                      f"The extended deadline ({clock.local_text(moment, config.timezone)}) is not after "
                      f"{assignment_id}'s deadline ({shown}): give a later time.")
    reason = " ".join((reason or "").split())
    if len(reason) > REASON_LIMIT:
        raise Refusal(f"理由が長すぎます ({REASON_LIMIT} 文字まで)。\nThe reason is too long (at most {REASON_LIMIT} "
                      "characters).")
    granted = Extension(student, assignment_id, moment, reason, granted_by,
                        dt.datetime.now(dt.UTC).astimezone(config.timezone))
    with _one_writer(config):
        kept = [e for e in load(config) if (e.student, e.assignment) != (student, assignment_id)]
        _save(config, [*kept, granted])
    return granted


def remove(config: Config, student: str, assignment_id: str) -> Extension:
    """Take a student's extension back: the assignment's deadline is theirs again. → what was removed."""
    with _one_writer(config):
        found = load(config)
        gone = next((e for e in found if (e.student, e.assignment) == (student, assignment_id)), None)
        if gone is None:
            raise Refusal(f"{student} には {assignment_id} の締切延長がありません。\n"
                          f"{student} has no extension for {assignment_id}.")
        _save(config, [e for e in found if e is not gone])
    return gone
