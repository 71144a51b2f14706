"""The site's records besides its people: attempts and their check queue, staff jobs, feedback releases and the
staff's event log. With db.py (the tables) and people.py (students, staff) this is the site's data layer: each
function one query or one transaction, named for what the site asks; the pages, the runners and the commands call
these and run no SQL themselves."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from .db import DONE, FAILED, QUEUED, RUNNING, SUPERSEDED, attempts, events, jobs, releases, utc_now

# --- attempts ----------------------------------------------------------------------------------------------

def record_attempt(engine: Engine, row: dict) -> None:
    """An attempt's row, queued for its public check; the student's earlier attempts still waiting for theirs are
    superseded (one pending check per student and assignment: the queue stays bounded). A row recorded late (by
    ``Site.reconcile``) behind a newer attempt is superseded itself."""
    same = (attempts.c.student_id == row["student_id"], attempts.c.assignment == row["assignment"])
    with engine.begin() as db:
        newer = db.execute(select(attempts.c.id).where(*same, attempts.c.number > row["number"])).first()
        if not newer:
            db.execute(update(attempts).where(*same, attempts.c.check_state == QUEUED).values(
                check_state=SUPERSEDED))
        db.execute(attempts.insert().values(**row, check_state=SUPERSEDED if newer else QUEUED, check_note=""))


def last_number(engine: Engine, student: str, assignment: str) -> int:
    """The highest attempt number recorded for a student and assignment (0 for none)."""
    with engine.connect() as db:
        return db.execute(select(func.max(attempts.c.number)).where(
            attempts.c.student_id == student, attempts.c.assignment == assignment)).scalar() or 0


def usage(engine: Engine, student: str, assignment: str) -> tuple[int, int]:
    """(attempts, bytes) a student has stored for an assignment."""
    with engine.connect() as db:
        count, size = db.execute(select(func.count(), func.coalesce(func.sum(attempts.c.size), 0)).where(
            attempts.c.student_id == student, attempts.c.assignment == assignment)).one()
    return count, size


def attempt_of(engine: Engine, student: str, receipt: str):
    """A student's own attempt by its receipt id (None for anyone else's)."""
    with engine.connect() as db:
        return db.execute(select(attempts).where(attempts.c.receipt == receipt,
                                                 attempts.c.student_id == student)).first()


def attempt_by_receipt(engine: Engine, receipt: str):
    """Any student's attempt by its receipt id: for staff only."""
    with engine.connect() as db:
        return db.execute(select(attempts).where(attempts.c.receipt == receipt)).first()


def attempts_of(engine: Engine, student: str, assignment: str) -> list:
    """A student's attempts at an assignment, the latest first."""
    with engine.connect() as db:
        return list(db.execute(select(attempts).where(
            attempts.c.student_id == student, attempts.c.assignment == assignment).order_by(
            attempts.c.number.desc())))


def attempts_at(engine: Engine, assignment: str | None = None) -> list:
    """Every attempt (at one assignment, or at all), by number: the last of a student's is their latest."""
    query = select(attempts).order_by(attempts.c.number)
    if assignment is not None:
        query = query.where(attempts.c.assignment == assignment)
    with engine.connect() as db:
        return list(db.execute(query))


def receipts(engine: Engine) -> set[str]:
    """Every recorded attempt's receipt id."""
    with engine.connect() as db:
        return {r.receipt for r in db.execute(select(attempts.c.receipt))}


# --- the check queue ------------------------------------------------------------------------------------------

def waiting_before(engine: Engine, row) -> int:
    """How many checks wait before this attempt's (0 when it runs or is done)."""
    if row.check_state != QUEUED:
        return 0
    with engine.connect() as db:
        return db.execute(select(func.count()).where(attempts.c.check_state == QUEUED,
                                                     attempts.c.id < row.id)).scalar()


def check_counts(engine: Engine) -> dict[str, int]:
    """Attempts by the state of their public check."""
    with engine.connect() as db:
        return dict(db.execute(select(attempts.c.check_state, func.count()).group_by(attempts.c.check_state)).all())


def check_queue(engine: Engine, limit: int = 50) -> list:
    """The checks running and waiting, in the order they run; then the last ones that could not run."""
    with engine.connect() as db:
        waiting = list(db.execute(select(attempts).where(attempts.c.check_state.in_((QUEUED, RUNNING))).order_by(
            attempts.c.check_state.desc(), attempts.c.id).limit(limit)))
        failed = list(db.execute(select(attempts).where(attempts.c.check_state == FAILED).order_by(
            attempts.c.id.desc()).limit(10)))
    return waiting + failed


def requeue_running_checks(engine: Engine) -> None:
    """Checks a stopped server left running wait again."""
    with engine.begin() as db:
        db.execute(update(attempts).where(attempts.c.check_state == RUNNING).values(check_state=QUEUED))


def claim_check(engine: Engine):
    """The oldest queued attempt, marked running (a conditional update: two runners never take one), or None."""
    with engine.begin() as db:
        row = db.execute(select(attempts).where(attempts.c.check_state == QUEUED).order_by(
            attempts.c.id).limit(1)).first()
        if row is None:
            return None
        taken = db.execute(update(attempts).where(attempts.c.id == row.id, attempts.c.check_state == QUEUED)
                           .values(check_state=RUNNING, check_started_at=utc_now()))
        return row if taken.rowcount else None


def check_finished(engine: Engine, attempt_id: int, state: str, note: str) -> None:
    with engine.begin() as db:
        db.execute(update(attempts).where(attempts.c.id == attempt_id).values(
            check_state=state, check_note=note, check_finished_at=utc_now()))


# --- staff jobs ------------------------------------------------------------------------------------------------

def add_job(engine: Engine, kind: str, assignment: str, actor: str) -> tuple[int, bool]:
    """A job queued, unless the same one is queued or running already: → (its id, whether it is new). One
    transaction: the check and the insert together."""
    with engine.begin() as db:
        busy = db.execute(select(jobs).where(jobs.c.kind == kind, jobs.c.assignment == assignment,
                                             jobs.c.state.in_((QUEUED, RUNNING)))).first()
        if busy:
            return busy.id, False
        return db.execute(jobs.insert().values(kind=kind, assignment=assignment, state=QUEUED, requested_by=actor,
                                               created_at=utc_now(), message="")).inserted_primary_key[0], True


def next_job(engine: Engine):
    """The oldest queued job, or None."""
    with engine.connect() as db:
        return db.execute(select(jobs).where(jobs.c.state == QUEUED).order_by(jobs.c.id).limit(1)).first()


def job_running(engine: Engine, job_id: int) -> None:
    with engine.begin() as db:
        db.execute(update(jobs).where(jobs.c.id == job_id).values(state=RUNNING))


def job_finished(engine: Engine, job_id: int, ok: bool, message: str) -> None:
    with engine.begin() as db:
        db.execute(update(jobs).where(jobs.c.id == job_id).values(
            state=DONE if ok else FAILED, finished_at=utc_now(), message=message))


def fail_running_jobs(engine: Engine, message: str) -> None:
    """Jobs a stopped server left running did not finish: failed, saying ``message``."""
    with engine.begin() as db:
        db.execute(update(jobs).where(jobs.c.state == RUNNING).values(state=FAILED, finished_at=utc_now(),
                                                                      message=message))


def recent_jobs(engine: Engine, assignment: str, limit: int = 10) -> list:
    with engine.connect() as db:
        return list(db.execute(select(jobs).where(jobs.c.assignment == assignment).order_by(
            jobs.c.id.desc()).limit(limit)))


# --- releases and events ---------------------------------------------------------------------------------------

def release_of(engine: Engine, assignment: str):
    """The assignment's feedback release (who, when), or None."""
    with engine.connect() as db:
        return db.execute(select(releases).where(releases.c.assignment == assignment)).first()


def release(engine: Engine, assignment: str, actor: str) -> None:
    """Feedback released (again): one statement, so two staff releasing at once both succeed."""
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    values = {"released_at": utc_now(), "released_by": actor}
    with engine.begin() as db:
        db.execute(insert(releases).values(assignment=assignment, **values)
                   .on_conflict_do_update(index_elements=[releases.c.assignment], set_=values))


def log_event(engine: Engine, actor: str, action: str, detail: str = "") -> None:
    """Who did what, for staff."""
    with engine.begin() as db:
        db.execute(events.insert().values(at=utc_now(), actor=actor, action=action, detail=detail))
