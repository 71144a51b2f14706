"""The site's tables (SQLAlchemy Core): one schema for the embedded SQLite default and for PostgreSQL.

Files are the record of what was handed in (the attempt's notebook and receipt, written durably before a row
names them); rows are the index the pages read, and the check queue. Times are ISO 8601 strings in UTC.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import (Boolean, Column, Integer, MetaData, String, Table, Text, UniqueConstraint, create_engine,
                        event)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError

from ..errors import GraderError

metadata = MetaData()

students = Table(
    "students", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, default=""),
    Column("email", String(200), nullable=False, default=""),
    Column("token_hash", String(64), unique=True, nullable=True),   # SHA-256 of the sign-in link's token
    Column("session_version", Integer, nullable=False, default=0),  # raised on revoke: older cookies stop working
    Column("active", Boolean, nullable=False, default=True),
)

staff = Table(
    "staff", metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", String(200), nullable=False),          # argon2id, as argon2-cffi writes it
    Column("role", String(16), nullable=False),                      # instructor | ta
    Column("session_version", Integer, nullable=False, default=0),
)

# Public-check states of an attempt.
QUEUED, RUNNING, DONE, FAILED, SUPERSEDED = "queued", "running", "done", "failed", "superseded"

attempts = Table(
    "attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("receipt", String(32), unique=True, nullable=False),
    Column("student_id", String(64), nullable=False, index=True),
    Column("assignment", String(64), nullable=False, index=True),
    Column("number", Integer, nullable=False),                       # 1, 2, … per student and assignment
    Column("submitted_at", String(40), nullable=False),              # the server's clock, UTC
    Column("sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("late", Boolean, nullable=False),
    Column("file", String(400), nullable=False),                     # relative to the data folder
    Column("check_state", String(16), nullable=False, default=QUEUED, index=True),
    Column("check_started_at", String(40)),
    Column("check_finished_at", String(40)),
    Column("check_note", Text, nullable=False, default=""),          # why a check could not run (staff only)
    UniqueConstraint("student_id", "assignment", "number"),          # one serve per database numbers them
)

# Staff jobs: grading the class and publishing run as commands, one at a time.
jobs = Table(
    "jobs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),                      # grade | publish
    Column("assignment", String(64), nullable=False),
    Column("state", String(16), nullable=False),                     # queued | running | done | failed
    Column("requested_by", String(64), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("finished_at", String(40)),
    Column("message", Text, nullable=False, default=""),
)

releases = Table(
    "releases", metadata,
    Column("assignment", String(64), primary_key=True),
    Column("released_at", String(40), nullable=False),
    Column("released_by", String(64), nullable=False),
)

events = Table(                                                      # who did what, for staff
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(40), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(40), nullable=False),
    Column("detail", Text, nullable=False, default=""),
)


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def database_url(data: Path, url: str | None) -> str:
    return url or f"sqlite:///{Path(data).resolve() / 'site.db'}"


def shown(url: str) -> str:
    """The URL as it may be printed: its password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1]


def open_database(url: str) -> Engine:
    """An engine on ``url`` with the tables created. SQLite: write-ahead log and a busy timeout, so that pages are
    read while an upload writes, and writers from several threads wait for each other instead of failing."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

            @event.listens_for(engine, "connect")
            def _pragmas(connection, _record):
                cursor = connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=FULL")       # a committed row survives a power loss
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.close()
        else:
            engine = create_engine(url, pool_pre_ping=True)
        metadata.create_all(engine)
    except ArgumentError as exc:
        raise GraderError(f"--db {shown(url)!r} is not a database URL (e.g. postgresql+psycopg://user@host/autograder): "
                          f"{exc}") from exc
    except ModuleNotFoundError as exc:
        raise GraderError(f"--db {url.split(':', 1)[0]}: its driver is not installed ({exc.name}); for "
                          "PostgreSQL: pip install -r requirements-postgres.txt") from exc
    except Exception as exc:                                     # OperationalError: cannot connect, no such folder
        detail = " ".join(str(getattr(exc, "orig", None) or exc).split())     # the driver's words, on one line
        raise GraderError(f"cannot open the site's database {shown(url)!r}: {detail}") from exc
    return engine
