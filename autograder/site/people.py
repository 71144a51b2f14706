"""Who may sign in: students by a personal link (a random token, kept only as its SHA-256), staff by a password
(argon2id, by argon2-cffi). A new link, a revoke, a sign-out or a new password raises the account's session version,
which ends every session it had (the signed cookie carries the version it was made with)."""

from __future__ import annotations

import csv
import hashlib
import io
import secrets
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from ..classroom.intake import MANIFEST_COLUMNS, column_index
from ..errors import GraderError
from ..lifecycle.submit import STUDENT_ID
from ..reports.csvout import csv_text
from .db import staff, students

# Header names a roster may use for each column, matched as intake matches an LMS manifest's: an LMS's own export
# works as it is.
ROSTER_COLUMNS = {
    "student": MANIFEST_COLUMNS["student"],
    "name": ("name", "full_name", "display_name", "student_name", "氏名", "名前"),
    "email": ("email", "e-mail", "mail", "email_address", "メールアドレス", "メール"),
}
ROLES = ("instructor", "ta")
MIN_PASSWORD = 10
HASHER = PasswordHasher()


def token_hash(token: str) -> str:
    """A link's token as stored: a 256-bit random token needs no slow hash, only not to be kept in the clear."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class RosterRow:
    student: str
    name: str
    email: str


def read_roster(path: Path) -> list[RosterRow]:
    """A roster CSV (UTF-8, a BOM allowed) → its rows; GraderError naming the line of any bad one."""
    try:
        rows = list(csv.reader(io.StringIO(Path(path).read_text(encoding="utf-8-sig"))))
    except FileNotFoundError as exc:
        raise GraderError(f"roster not found: {path}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise GraderError(f"{path}: cannot be read as a UTF-8 CSV: {exc}") from exc
    if not rows:
        raise GraderError(f"{path}: the roster is empty")
    header, *rows = rows
    cols = {role: column_index(header, wanted) for role, wanted in ROSTER_COLUMNS.items()}
    if cols["student"] is None:
        raise GraderError(f"{path}: no student id column; the header is {header!r}, expected one of "
                          f"{', '.join(ROSTER_COLUMNS['student'])}")
    roster, seen = [], set()
    for line, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        cell = {role: (row[i].strip() if i is not None and i < len(row) else "") for role, i in cols.items()}
        if not STUDENT_ID.fullmatch(cell["student"]):
            raise GraderError(f"{path} line {line}: student id {cell['student']!r} may hold only letters, digits, "
                              "'.', '_' and '-' (it names the student's folder in the exchange)")
        if cell["student"] in seen:
            raise GraderError(f"{path} line {line}: student {cell['student']} is listed twice")
        seen.add(cell["student"])
        roster.append(RosterRow(cell["student"], cell["name"], cell["email"]))
    return roster


def import_roster(engine: Engine, roster: list[RosterRow]) -> tuple[int, int, list[str]]:
    """Add new students and update the names and e-mails of known ones (a revoked student stays revoked);
    → (added, updated, the active students this roster omits: they can still sign in until revoked)."""
    added = updated = 0
    with engine.begin() as db:
        known = {r.id: r.active for r in db.execute(select(students.c.id, students.c.active))}
        for row in roster:
            if row.student in known:
                db.execute(update(students).where(students.c.id == row.student).values(name=row.name,
                                                                                          email=row.email))
                updated += 1
            else:
                db.execute(students.insert().values(id=row.student, name=row.name, email=row.email,
                                                    session_version=0, active=True))
                added += 1
    listed = {row.student for row in roster}
    return added, updated, sorted(s for s, active in known.items() if active and s not in listed)


def issue_links(engine: Engine, base_url: str, only: list[str] | None = None, new: bool = False) -> list[dict]:
    """A fresh sign-in link for each active student (or those named, or with ``new`` those who have none yet):
    the earlier link of each stops working, and so do the sessions it opened. → rows for a mail merge (student_id,
    name, email, link). The tokens exist only in what this returns."""
    base = base_url.rstrip("/")
    with engine.begin() as db:
        query = select(students).where(students.c.active.is_(True)).order_by(students.c.id)
        if new:
            query = query.where(students.c.token_hash.is_(None))
        rows = list(db.execute(query))
        if only:
            unknown = sorted(set(only) - {r.id for r in rows})
            if unknown:
                raise GraderError(f"not on the roster (or revoked): {', '.join(unknown)}")
            rows = [r for r in rows if r.id in set(only)]
        links = []
        for r in rows:
            token = secrets.token_urlsafe(32)
            db.execute(update(students).where(students.c.id == r.id).values(
                token_hash=token_hash(token), session_version=students.c.session_version + 1))
            links.append({"student_id": r.id, "name": r.name, "email": r.email, "link": f"{base}/signin/{token}"})
    return links


def write_links(links: list[dict], out: Path) -> None:
    """The links as a CSV for a mail merge, readable by its owner only (each link signs a student in)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = ["student_id", "name", "email", "link"]
    text = csv_text(fields, ([link[f] for f in fields] for link in links))
    out.touch(mode=0o600)
    out.chmod(0o600)
    out.write_text(text, encoding="utf-8")


def revoke(engine: Engine, student: str) -> None:
    """End a student's link and every session it opened; their submissions stay."""
    with engine.begin() as db:
        done = db.execute(update(students).where(students.c.id == student).values(
            token_hash=None, active=False, session_version=students.c.session_version + 1))
    if not done.rowcount:
        raise GraderError(f"no student {student!r} on the roster")


def restore(engine: Engine, student: str) -> None:
    """Let a revoked student back in: they need a new link (``roster links ID``), as the old one stays ended."""
    with engine.begin() as db:
        done = db.execute(update(students).where(students.c.id == student).values(active=True))
    if not done.rowcount:
        raise GraderError(f"no student {student!r} on the roster")


def _accounts(role: str):
    """The table of ``role``'s accounts ("student" or "staff") and the column a session names one by."""
    return (students, students.c.id) if role == "student" else (staff, staff.c.username)


def session_holder(engine: Engine, role: str, who: str | None):
    """The student (role "student", by id) or staff member ("staff", by user name) a session names, or None."""
    table, key = _accounts(role)
    with engine.connect() as db:
        return db.execute(select(table).where(key == who)).first()


def all_students(engine: Engine) -> list:
    """Every student on the roster (revoked ones too), by id."""
    with engine.connect() as db:
        return list(db.execute(select(students).order_by(students.c.id)))


def active_students(engine: Engine) -> list[str]:
    """The ids of the students who may sign in, by id."""
    with engine.connect() as db:
        return list(db.execute(select(students.c.id).where(students.c.active).order_by(students.c.id)).scalars())


def end_sessions(engine: Engine, role: str, who: str) -> None:
    """End every session of a student (role "student", by id) or staff member ("staff", by user name): a
    sign-out, for each browser and any copied cookie."""
    table, key = _accounts(role)
    with engine.begin() as db:
        db.execute(update(table).where(key == who).values(session_version=table.c.session_version + 1))


def student_for_token(engine: Engine, token: str):
    """The active student a link's token belongs to, or None."""
    if not token or len(token) > 200:
        return None
    with engine.connect() as db:
        return db.execute(select(students).where(students.c.token_hash == token_hash(token),
                                                 students.c.active.is_(True))).first()


def add_staff(engine: Engine, username: str, password: str, role: str) -> None:
    if role not in ROLES:
        raise GraderError(f"role {role!r}: choose one of {', '.join(ROLES)}")
    if not STUDENT_ID.fullmatch(username or ""):
        raise GraderError(f"user name {username!r} may hold only letters, digits, '.', '_' and '-'")
    if len(password) < MIN_PASSWORD:
        raise GraderError(f"the password must have at least {MIN_PASSWORD} characters")
    hashed = HASHER.hash(password)
    with engine.begin() as db:
        if db.execute(select(staff.c.username).where(staff.c.username == username)).first():
            db.execute(update(staff).where(staff.c.username == username).values(
                password_hash=hashed, role=role, session_version=staff.c.session_version + 1))
        else:
            db.execute(staff.insert().values(username=username, password_hash=hashed, role=role,
                                             session_version=0))


def staff_accounts(engine: Engine) -> list:
    """The staff accounts (user name, role), by name."""
    with engine.connect() as db:
        return list(db.execute(select(staff.c.username, staff.c.role).order_by(staff.c.username)))


def remove_staff(engine: Engine, username: str) -> None:
    with engine.begin() as db:
        if not db.execute(staff.delete().where(staff.c.username == username)).rowcount:
            raise GraderError(f"no staff account {username!r}")


# Verified against when the user name is unknown, so that a wrong name takes as long as a wrong password.
_DUMMY_HASH = HASHER.hash(secrets.token_urlsafe(16))


def check_password(engine: Engine, username: str, password: str):
    """The staff row when the password is right, else None (in about the same time either way)."""
    with engine.connect() as db:
        row = db.execute(select(staff).where(staff.c.username == username)).first()
    try:
        HASHER.verify(row.password_hash if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return row
