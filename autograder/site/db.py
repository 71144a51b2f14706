"""The site's tables (SQLAlchemy Core): one schema for the embedded SQLite default and for PostgreSQL.

Files are the record of what was handed in (the attempt's notebook and receipt, written durably before a row
names them); rows are the index the pages read, and the check queue. Times are timezone-aware (``UTCDateTime``:
stored in UTC, read back aware). This module, people.py and records.py are the site's data layer: no other module
of the project runs SQL on these tables. The schema's history is ``migrations/`` (Alembic): ``open_database``
brings any database to its head, so a column added later reaches every running site with its next start.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (Boolean, Column, DateTime, Float, ForeignKey, Integer, MetaData, String, Table, Text,
                        TypeDecorator, UniqueConstraint, create_engine, event, inspect)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError

from ..errors import GraderError


class UTCDateTime(TypeDecorator):
    """A moment, timezone-aware both ways: PostgreSQL keeps it as ``timestamptz``; SQLite, which has no zones,
    keeps its UTC wall time and gets UTC back. A naive datetime is refused (it would be read as UTC, silently)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"a naive datetime ({value}) cannot be stored: give it a timezone")
        value = value.astimezone(dt.timezone.utc)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


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
    Column("submitted_at", UTCDateTime(), nullable=False),              # the server's clock, UTC
    Column("sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("late", Boolean, nullable=False),
    Column("file", String(400), nullable=False),                     # relative to the data folder
    Column("check_state", String(16), nullable=False, default=QUEUED, index=True),
    Column("check_started_at", UTCDateTime()),
    Column("check_finished_at", UTCDateTime()),
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
    Column("created_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    Column("message", Text, nullable=False, default=""),
)

releases = Table(
    "releases", metadata,
    Column("assignment", String(64), primary_key=True),
    Column("released_at", UTCDateTime(), nullable=False),
    Column("released_by", String(64), nullable=False),
)

events = Table(                                                      # who did what, for staff
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(40), nullable=False),
    Column("detail", Text, nullable=False, default=""),
)


# A student's identity at an LMS (LTI 1.3: the platform's issuer and its user id, ``sub``): where an LMS launch
# (lti_routes.py) finds the roster's student.
identities = Table(
    "identities", metadata,
    Column("issuer", String(200), primary_key=True),
    Column("subject", String(255), primary_key=True),
    Column("student_id", String(64), ForeignKey("students.id"), nullable=False, index=True),
)


# --- LTI 1.3 (lti.py, lti_store.py): the LMSs this site is a tool of, and what it keeps of their launches ----------

lti_platforms = Table(                                               # one registration: an LMS and its client id
    "lti_platforms", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("issuer", String(200), nullable=False),
    Column("client_id", String(200), nullable=False),
    Column("auth_url", String(500), nullable=False),                 # its OIDC authorization endpoint
    Column("token_url", String(500), nullable=False),                # its OAuth 2 token endpoint (grades, roster)
    Column("jwks_url", String(500), nullable=False),                 # its public keys
    Column("name", String(200), nullable=False, default=""),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("issuer", "client_id"),
)

lti_deployments = Table(                                             # the deployments a registration may launch from
    "lti_deployments", metadata,
    Column("platform_id", Integer, ForeignKey("lti_platforms.id"), primary_key=True),
    Column("deployment_id", String(255), primary_key=True),
)

lti_logins = Table(                                                  # a login initiation waiting for its launch
    "lti_logins", metadata,
    Column("state", String(64), primary_key=True),
    Column("browser", String(64), nullable=False),                   # SHA-256 of the browser's cookie secret
    Column("nonce", String(64), nullable=False),
    Column("platform_id", Integer, ForeignKey("lti_platforms.id"), nullable=False),
    Column("params", Text, nullable=False),                          # the initiation's parameters (JSON)
    Column("created_at", UTCDateTime(), nullable=False, index=True),
)

lti_nonces = Table(                                                  # every id_token's nonce, used once
    "lti_nonces", metadata,
    Column("issuer", String(200), primary_key=True),
    Column("nonce", String(255), primary_key=True),
    Column("used_at", UTCDateTime(), nullable=False, index=True),
)

lti_staff = Table(                                                   # a staff member's identity at an LMS
    "lti_staff", metadata,
    Column("issuer", String(200), primary_key=True),
    Column("subject", String(255), primary_key=True),
    Column("username", String(64), ForeignKey("staff.username"), nullable=False, index=True),
)

lti_links = Table(                                                   # a resource link in a course: its assignment
    "lti_links", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("platform_id", Integer, ForeignKey("lti_platforms.id"), nullable=False),
    Column("deployment_id", String(255), nullable=False),
    Column("resource_link", String(255), nullable=False),
    Column("context_id", String(255), nullable=False, default=""),
    Column("assignment", String(64), nullable=False, index=True),
    Column("lineitem", String(500), nullable=False, default=""),     # AGS: where its scores go
    Column("memberships", String(500), nullable=False, default=""),  # NRPS: the course's members
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("platform_id", "resource_link"),
)

lti_registration_keys = Table(                                       # one-time keys of dynamic registration URLs
    "lti_registration_keys", metadata,
    Column("key_hash", String(64), primary_key=True),                # SHA-256 of the URL's key
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime()),
)

# The grade outbox's states: waiting to be sent (again), being sent, arrived, refused by the LMS (4xx: staff look).
SCORE_PENDING, SCORE_SENDING, SCORE_SENT, SCORE_FAILED = "pending", "sending", "sent", "failed"

lti_scores = Table(                                                  # the grade outbox: a score per line item, student
    "lti_scores", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("link_id", Integer, ForeignKey("lti_links.id"), nullable=False),
    Column("student_id", String(64), nullable=False),
    Column("subject", String(255), nullable=False),                  # the student's user id at the LMS
    Column("score", Float),                                          # None: not graded (infrastructure error)
    Column("max_score", Float, nullable=False),
    Column("status", String(32), nullable=False, default=""),        # the gradebook's (graded, no submission …)
    Column("state", String(16), nullable=False, index=True),
    Column("tries", Integer, nullable=False, default=0),
    Column("next_try_at", UTCDateTime(), nullable=False),
    Column("scored_at", UTCDateTime(), nullable=False),              # the score's timestamp at the LMS
    Column("sent_at", UTCDateTime()),
    Column("error", Text, nullable=False, default=""),
    UniqueConstraint("link_id", "student_id"),
)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def utc_text(moment: dt.datetime) -> str:
    """A moment as the attempts' receipt files and the staff's receipt page write it (ISO 8601, UTC)."""
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")


def database_url(data: Path, url: str | None) -> str:
    return url or f"sqlite:///{Path(data).resolve() / 'site.db'}"


def shown(url: str) -> str:
    """The URL as it may be printed: its password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1]


def open_database(url: str) -> Engine:
    """An engine on ``url``, its schema upgraded to the head of ``migrations`` (a database made before migrations
    is recognised and upgraded in place, its rows kept). SQLite: write-ahead log and a busy timeout, so that pages are
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
        upgrade(engine)
    except GraderError:
        raise
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



MIGRATIONS = Path(__file__).with_name("migrations")      # Alembic's script folder: env.py and versions/
FIRST_REVISION = "0001"                                  # the schema `create_all` made before there were migrations
FIRST_TABLES = {"students", "staff", "attempts", "jobs", "releases", "events"}


def alembic_config(connection) -> AlembicConfig:
    """Alembic's settings for the site, made here (no alembic.ini): the script folder inside the package, and the
    connection its env.py runs the migrations on."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine) -> None:
    """The database at the head revision, in one transaction: a migration that fails leaves it as it was. A
    database made by the site before it had migrations (its tables, no ``alembic_version``) is the first revision:
    stamped so, then upgraded like any other; one that holds only some of those tables is no database of the
    site's, and is left alone (GraderError). SQLite's driver would commit each table change on its own, and two
    commands starting at once would both upgrade: there the transaction is begun by hand, holding the write lock
    from its start (the other waits, then finds the database at the head)."""
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        if MigrationContext.configure(connection).get_current_revision() is None:
            found = FIRST_TABLES & set(inspect(connection).get_table_names())
            if found == FIRST_TABLES:
                command.stamp(alembic_config(connection), FIRST_REVISION)
            elif found:
                raise GraderError(f"the database {shown(str(engine.url))!r} holds some of the site's tables "
                                  f"({', '.join(sorted(found))}) but not all, and no migration record: it is not one "
                                  "the site made; give the site an empty database or its own")
        command.upgrade(alembic_config(connection), "head")
        connection.commit()
