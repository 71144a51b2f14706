"""The site's database migrations (Alembic, autograder/site/migrations/): a fresh site gets the head revision,
whose schema is db.py's tables; a database the site made before it had migrations (``create_all``: its tables, no
``alembic_version``) is recognised, upgraded in place with its rows kept, and the site works on it; times come back
timezone-aware."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import sqlite3

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, select
from starlette.testclient import TestClient

from autograder.course.config import load_config
from autograder.errors import GraderError
from autograder.site import people
from autograder.site.core import Site
from autograder.site.db import (FIRST_REVISION, UTCDateTime, alembic_config, attempts, events, jobs, metadata,
                                open_database, releases, students)
from tests.test_site import BEFORE, FINISHED, PASSWORD, app_of, csrf_of, open_link, staff, upload

# The schema as the site's `metadata.create_all` made it on SQLite before there were migrations (its statements,
# reflowed).
LEGACY_SCHEMA = """
CREATE TABLE students (
    id VARCHAR(64) NOT NULL, name VARCHAR(200) NOT NULL, email VARCHAR(200) NOT NULL, token_hash VARCHAR(64),
    session_version INTEGER NOT NULL, active BOOLEAN NOT NULL, PRIMARY KEY (id), UNIQUE (token_hash));
CREATE TABLE staff (
    username VARCHAR(64) NOT NULL, password_hash VARCHAR(200) NOT NULL, role VARCHAR(16) NOT NULL,
    session_version INTEGER NOT NULL, PRIMARY KEY (username));
CREATE TABLE attempts (
    id INTEGER NOT NULL, receipt VARCHAR(32) NOT NULL, student_id VARCHAR(64) NOT NULL,
    assignment VARCHAR(64) NOT NULL, number INTEGER NOT NULL, submitted_at VARCHAR(40) NOT NULL,
    sha256 VARCHAR(64) NOT NULL, size INTEGER NOT NULL, late BOOLEAN NOT NULL, file VARCHAR(400) NOT NULL,
    check_state VARCHAR(16) NOT NULL, check_started_at VARCHAR(40), check_finished_at VARCHAR(40),
    check_note TEXT NOT NULL, PRIMARY KEY (id), UNIQUE (student_id, assignment, number), UNIQUE (receipt));
CREATE INDEX ix_attempts_student_id ON attempts (student_id);
CREATE INDEX ix_attempts_assignment ON attempts (assignment);
CREATE INDEX ix_attempts_check_state ON attempts (check_state);
CREATE TABLE jobs (
    id INTEGER NOT NULL, kind VARCHAR(16) NOT NULL, assignment VARCHAR(64) NOT NULL, state VARCHAR(16) NOT NULL,
    requested_by VARCHAR(64) NOT NULL, created_at VARCHAR(40) NOT NULL, finished_at VARCHAR(40),
    message TEXT NOT NULL, PRIMARY KEY (id));
CREATE TABLE releases (
    assignment VARCHAR(64) NOT NULL, released_at VARCHAR(40) NOT NULL, released_by VARCHAR(64) NOT NULL,
    PRIMARY KEY (assignment));
CREATE TABLE events (
    id INTEGER NOT NULL, at VARCHAR(40) NOT NULL, actor VARCHAR(64) NOT NULL, action VARCHAR(40) NOT NULL,
    detail TEXT NOT NULL, PRIMARY KEY (id));
"""

TOKEN = "a-sign-in-token-made-before-the-upgrade-0123456789"
RECEIPT = "ASSIGNMENT3-0A1B2C3D4E"
SUBMITTED = "2024-05-15T03:00:00.123456+00:00"            # 12:00 JST, as the site wrote its times then
UTC = dt.timezone.utc


def legacy_rows(data, sql) -> None:
    """A class's worth of rows as the site wrote them before migrations (times as ISO 8601 strings), and the
    attempt's notebook on disk: ``sql`` runs a statement on the database."""
    notebook = data / "attempts" / "s001" / "assignment3" / f"1-{RECEIPT}.ipynb"
    notebook.parent.mkdir(parents=True)
    shutil.copyfile(FINISHED, notebook)
    sql("INSERT INTO students VALUES ('s001', 'Student s001', 's001@example.ac.jp', ?, 1, 1)",
        (hashlib.sha256(TOKEN.encode()).hexdigest(),))
    sql("INSERT INTO students VALUES ('s002', 'Student s002', '', NULL, 0, 0)")
    sql("INSERT INTO staff VALUES ('prof', ?, 'instructor', 0)", (people.HASHER.hash(PASSWORD),))
    sql("INSERT INTO attempts VALUES (1, ?, 's001', 'assignment3', 1, ?, ?, ?, 0, ?, 'done', "
        "'2024-05-15T03:00:01.000000+00:00', '2024-05-15T03:04:00.500000+00:00', '')",
        (RECEIPT, SUBMITTED, hashlib.sha256(FINISHED.read_bytes()).hexdigest(), FINISHED.stat().st_size,
         str(notebook.relative_to(data))))
    sql("INSERT INTO jobs VALUES (1, 'grade', 'assignment3', 'done', 'prof', '2024-05-17T01:00:00.000000+00:00', "
        "'2024-05-17T01:30:00.000000+00:00', 'graded')")
    sql("INSERT INTO releases VALUES ('assignment3', '2024-05-17T02:00:00.000000+00:00', 'prof')")
    sql("INSERT INTO events VALUES (1, '2024-05-17T02:00:00.000000+00:00', 'prof', 'released feedback', "
        "'assignment3')")


def legacy_site_db(data):
    """The data folder of a site made before migrations: its SQLite database made by the old ``create_all``."""
    data.mkdir(parents=True)
    with sqlite3.connect(data / "site.db") as db:
        db.executescript(LEGACY_SCHEMA)
        legacy_rows(data, db.execute)
    return data


def revision_1_site_db(data):
    """The data folder of a site whose database Alembic made at the first revision."""
    data.mkdir(parents=True)
    engine = create_engine(f"sqlite:///{data / 'site.db'}")
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), FIRST_REVISION)
        legacy_rows(data, lambda statement, values=(): connection.exec_driver_sql(statement, values))
    engine.dispose()
    return data


def revision(engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head() -> str:
    with create_engine("sqlite://").connect() as connection:
        return ScriptDirectory.from_config(alembic_config(connection)).get_current_head()


def schema_sql(path) -> list[str]:
    """Each table's and index's CREATE statement, its whitespace and quotes evened out."""
    with sqlite3.connect(path) as db:
        found = db.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name != 'alembic_version'")
        return sorted(" ".join(sql.replace('"', "").split()).replace("( ", "(").replace(" )", ")") for (sql,) in found)


def structure(path) -> dict:
    """Each table's columns (name, type, nullable), primary key, unique constraints and indexes, as the database
    reports them (a table copied by a migration may list its constraints in another order)."""
    engine = create_engine(f"sqlite:///{path}")
    found = inspect(engine)
    tables = {name: ([(c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(name)],
                     found.get_pk_constraint(name)["constrained_columns"],
                     sorted(tuple(u["column_names"]) for u in found.get_unique_constraints(name)),
                     sorted((i["name"], tuple(i["column_names"]), i["unique"]) for i in found.get_indexes(name)))
              for name in found.get_table_names() if name != "alembic_version"}
    engine.dispose()
    return tables


def test_the_first_revision_is_the_schema_the_site_made_before_migrations(tmp_path):
    legacy = legacy_site_db(tmp_path / "legacy")
    migrated = revision_1_site_db(tmp_path / "migrated")
    assert schema_sql(legacy / "site.db") == schema_sql(migrated / "site.db")


def test_a_fresh_site_gets_the_head_revision_whose_schema_is_the_sites_tables(tmp_path):
    site = Site(load_config(), tmp_path / "site")
    assert revision(site.engine) == head() and head() != FIRST_REVISION
    with site.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []
    Site(load_config(), tmp_path / "site")                # opening it again changes nothing
    assert revision(site.engine) == head()


@pytest.mark.parametrize("made_by", [legacy_site_db, revision_1_site_db], ids=["create_all", "revision-1"])
def test_an_old_database_is_upgraded_with_its_rows_and_the_site_works_on_it(tmp_path, monkeypatch, made_by):
    monkeypatch.setenv("AUTOGRADER_NOW", BEFORE)
    data = made_by(tmp_path / "site")
    site = Site(load_config(), data, public_url="http://testserver")
    assert revision(site.engine) == head()
    with site.engine.connect() as db:
        assert [(r.id, r.active, r.session_version) for r in db.execute(select(students).order_by(students.c.id))] \
            == [("s001", True, 1), ("s002", False, 0)]
        row = db.execute(select(attempts)).one()
        job, release = db.execute(select(jobs)).one(), db.execute(select(releases)).one()
        event = db.execute(select(events)).one()
    assert (row.receipt, row.check_state, row.number) == (RECEIPT, "done", 1)
    assert row.submitted_at == dt.datetime.fromisoformat(SUBMITTED) and row.submitted_at.tzinfo is not None
    assert row.check_finished_at == dt.datetime(2024, 5, 15, 3, 4, 0, 500000, tzinfo=UTC)
    assert job.created_at == dt.datetime(2024, 5, 17, 1, tzinfo=UTC) and job.finished_at.tzinfo is not None
    assert release.released_at == event.at == dt.datetime(2024, 5, 17, 2, tzinfo=UTC)

    app = app_of(site)
    with TestClient(app, follow_redirects=False) as s001:            # the app starts: reconcile reads the rows
        assert open_link(s001, f"http://testserver/signin/{TOKEN}").status_code == 303   # the old link still works
        receipt = s001.get(f"/receipt/{RECEIPT}").text
        assert "2024-05-15 12:00 JST" in receipt and "2024-05-15 03:00:00 UTC" in receipt
        again = upload(s001)                                            # a new attempt beside the migrated one
        assert again.status_code == 303
        new = s001.get(again.headers["location"]).text
        assert f"#1 ({RECEIPT}, 2024-05-15 12:00 JST)" in new
        prof = staff(app)
        site.grades("assignment3").mkdir(parents=True)
        (site.grades("assignment3") / "gradebook.csv").write_text("student_id\n")     # the release is shown
        assert f"({SUBMITTED})" in prof.get(f"/staff/receipt/{RECEIPT}").text
        assert "released 2024-05-17 11:00 JST" in prof.get("/staff/a/assignment3").text
    assert (data / "exchange" / "submitted" / "s001" / "assignment3" / "assignment3.ipynb").is_file()
    with site.engine.connect() as db:
        assert [r.number for r in db.execute(select(attempts).order_by(attempts.c.id))] == [1, 2]


def test_downgrading_to_the_first_revision_gives_the_times_back_as_strings(tmp_path):
    data = legacy_site_db(tmp_path / "site")
    engine = open_database(f"sqlite:///{data / 'site.db'}")
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), FIRST_REVISION)
    assert structure(data / "site.db") == structure(legacy_site_db(tmp_path / "legacy") / "site.db")
    with sqlite3.connect(data / "site.db") as db:
        assert db.execute("SELECT submitted_at FROM attempts").fetchone() == (SUBMITTED,)
    assert revision(open_database(f"sqlite:///{data / 'site.db'}")) == head()     # and up again


def test_a_database_holding_only_some_of_the_sites_tables_is_left_alone(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE students (id TEXT PRIMARY KEY, note TEXT)")
        db.execute("INSERT INTO students VALUES ('x', 'kept')")
    with pytest.raises(GraderError, match="holds some of the site's tables"):
        open_database(f"sqlite:///{path}")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == [("students",)]
        assert db.execute("SELECT * FROM students").fetchall() == [("x", "kept")]


def test_times_are_stored_in_utc_and_read_back_aware(tmp_path):
    engine = open_database(f"sqlite:///{tmp_path / 'site.db'}")
    jst = dt.timezone(dt.timedelta(hours=9))
    moment = dt.datetime(2024, 5, 16, 23, 59, 30, 250000, tzinfo=jst)
    with engine.begin() as db:
        db.execute(releases.insert().values(assignment="a", released_at=moment, released_by="prof"))
    with engine.connect() as db:
        back = db.execute(select(releases.c.released_at)).scalar_one()
        raw = db.exec_driver_sql("SELECT released_at FROM releases").scalar_one()
    assert back == moment and back.utcoffset() == dt.timedelta(0)
    assert raw.startswith("2024-05-16 14:59:30.250000")                    # UTC on disk, whatever the zone given
    with pytest.raises(Exception, match="naive datetime"):
        with engine.begin() as db:
            db.execute(releases.insert().values(assignment="b", released_at=dt.datetime(2024, 5, 16),
                                                released_by="prof"))
    assert UTCDateTime().process_result_value(None, engine.dialect) is None


def test_a_migration_that_fails_leaves_the_database_as_it_was(tmp_path, monkeypatch):
    data = legacy_site_db(tmp_path / "site")
    before = structure(data / "site.db")

    def power_lost(self, value, dialect):
        raise OSError("power lost while the times were written back")

    monkeypatch.setattr(UTCDateTime, "process_bind_param", power_lost)
    with pytest.raises(GraderError, match="power lost"):
        open_database(f"sqlite:///{data / 'site.db'}")
    assert structure(data / "site.db") == before                      # no table half-changed, no version stamped
    with sqlite3.connect(data / "site.db") as db:
        assert db.execute("SELECT submitted_at FROM attempts").fetchone() == (SUBMITTED,)
        assert not db.execute("SELECT name FROM sqlite_master WHERE name = 'alembic_version'").fetchall()
    monkeypatch.undo()
    assert revision(open_database(f"sqlite:///{data / 'site.db'}")) == head()      # and next time it goes through


def test_two_commands_opening_an_old_database_at_once_upgrade_it_once(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    data = legacy_site_db(tmp_path / "site")
    url = f"sqlite:///{data / 'site.db'}"
    with ThreadPoolExecutor(4) as pool:
        engines = list(pool.map(lambda _: open_database(url), range(4)))
    assert {revision(engine) for engine in engines} == {head()}
    with engines[0].connect() as db:
        assert db.execute(select(attempts.c.submitted_at)).scalars().all() == [dt.datetime.fromisoformat(SUBMITTED)]
