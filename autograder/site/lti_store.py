"""The site's LTI records (db.py's lti_* tables and ``identities``): the registered platforms and deployments, the
login initiations waiting for their launch, the nonces used, who a launch is (a roster student or a staff member),
the course links and their line items, and the grade outbox. Like records.py and people.py, the data layer: each
function one query or one transaction, named for what the LTI routes and services ask."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ..lifecycle.submit import STUDENT_ID
from .db import (SCORE_FAILED, SCORE_PENDING, SCORE_SENDING, SCORE_SENT, identities, lti_deployments, lti_links,
                 lti_logins, lti_nonces, lti_platforms, lti_registration_keys, lti_scores, lti_staff, staff, students,
                 utc_now)
from .lti import LOGIN_TTL_S, LOGINS_MAX, Registration

NONCE_KEEP = dt.timedelta(days=2)     # an id_token lives minutes: a nonce older than this cannot come back


# --- registrations ---------------------------------------------------------------------------------------------

def register(engine: Engine, issuer: str, client_id: str, auth_url: str, token_url: str, jwks_url: str,
             deployments: list[str], name: str = "") -> int:
    """A platform registered (or its URLs updated, for the same issuer and client id) with these deployments
    added to those it had. → its id."""
    with engine.begin() as db:
        found = db.execute(select(lti_platforms.c.id).where(lti_platforms.c.issuer == issuer,
                                                            lti_platforms.c.client_id == client_id)).scalar()
        values = {"auth_url": auth_url, "token_url": token_url, "jwks_url": jwks_url, "name": name}
        if found is None:
            found = db.execute(insert(lti_platforms).values(issuer=issuer, client_id=client_id, created_at=utc_now(),
                                                            **values)).inserted_primary_key[0]
        else:
            db.execute(update(lti_platforms).where(lti_platforms.c.id == found).values(**values))
        known = set(db.execute(select(lti_deployments.c.deployment_id).where(
            lti_deployments.c.platform_id == found)).scalars())
        for deployment in dict.fromkeys(deployments):
            if deployment not in known:
                db.execute(insert(lti_deployments).values(platform_id=found, deployment_id=deployment))
    return found


def _registrations(db, *where) -> list[Registration]:
    rows = list(db.execute(select(lti_platforms).where(*where).order_by(lti_platforms.c.id)))
    deployments: dict[int, set] = {}
    for d in db.execute(select(lti_deployments)):
        deployments.setdefault(d.platform_id, set()).add(d.deployment_id)
    return [Registration(r.id, r.issuer, r.client_id, r.auth_url, r.token_url, r.jwks_url,
                         frozenset(deployments.get(r.id, ()))) for r in rows]


def registrations(engine: Engine) -> list[Registration]:
    """Every registered platform, in the order they were registered."""
    with engine.connect() as db:
        return _registrations(db)


def registration(engine: Engine, platform_id: int) -> Registration | None:
    with engine.connect() as db:
        found = _registrations(db, lti_platforms.c.id == platform_id)
    return found[0] if found else None


def registration_for(engine: Engine, issuer: str, client_id: str | None) -> Registration | None:
    """The registration a login initiation names: by issuer and client id, or by issuer alone when it has only one
    (an initiation may leave the client id out); None when there is none, or several and no client id."""
    with engine.connect() as db:
        found = _registrations(db, lti_platforms.c.issuer == issuer,
                               *([lti_platforms.c.client_id == client_id] if client_id else []))
    return found[0] if len(found) == 1 else None


def registration_key(engine: Engine, key_hash: str, hours: float) -> None:
    """A dynamic registration URL's key (its hash), usable once within ``hours``."""
    with engine.begin() as db:
        db.execute(insert(lti_registration_keys).values(key_hash=key_hash,
                                                        expires_at=utc_now() + dt.timedelta(hours=hours)))


def registration_key_valid(engine: Engine, key_hash: str) -> bool:
    with engine.connect() as db:
        row = db.execute(select(lti_registration_keys).where(lti_registration_keys.c.key_hash == key_hash)).first()
    return row is not None and row.used_at is None and row.expires_at > utc_now()


def use_registration_key(engine: Engine, key_hash: str) -> bool:
    """The key used (a conditional update: one registration per key). → whether it was still unused."""
    with engine.begin() as db:
        return bool(db.execute(update(lti_registration_keys).where(
            lti_registration_keys.c.key_hash == key_hash, lti_registration_keys.c.used_at.is_(None),
            lti_registration_keys.c.expires_at > utc_now()).values(used_at=utc_now())).rowcount)


# --- login initiations and nonces --------------------------------------------------------------------------------

def start_login(engine: Engine, state: str, browser: str, nonce: str, platform_id: int, params: dict) -> bool:
    """A login initiation kept until its launch (``take_login``); those older than LOGIN_TTL_S go. False (and
    nothing kept) when LOGINS_MAX are waiting already: a flood of initiations cannot fill the database."""
    now = utc_now()
    with engine.begin() as db:
        db.execute(delete(lti_logins).where(lti_logins.c.created_at < now - dt.timedelta(seconds=LOGIN_TTL_S)))
        if db.execute(select(func.count()).select_from(lti_logins)).scalar() >= LOGINS_MAX:
            return False
        db.execute(insert(lti_logins).values(state=state, browser=browser, nonce=nonce, platform_id=platform_id,
                                             params=json.dumps(params), created_at=now))
    return True


def take_login(engine: Engine, state: str):
    """The login initiation ``state`` names, removed (a state serves one launch), or None (unknown, used, or
    older than LOGIN_TTL_S)."""
    if not isinstance(state, str) or not 0 < len(state) <= 64:
        return None
    with engine.begin() as db:
        row = db.execute(select(lti_logins).where(lti_logins.c.state == state)).first()
        if row is None or not db.execute(delete(lti_logins).where(lti_logins.c.state == state)).rowcount:
            return None
    if row.created_at < utc_now() - dt.timedelta(seconds=LOGIN_TTL_S):
        return None
    return row


def use_nonce(engine: Engine, issuer: str, nonce: str) -> bool:
    """Record a launch's nonce: False when it was used before (a replayed id_token). Nonces older than NONCE_KEEP
    go (their id_tokens expired long ago)."""
    now = utc_now()
    try:
        with engine.begin() as db:
            db.execute(delete(lti_nonces).where(lti_nonces.c.used_at < now - NONCE_KEEP))
            db.execute(insert(lti_nonces).values(issuer=issuer, nonce=nonce, used_at=now))
    except IntegrityError:
        return False
    return True


# --- who a launch is -------------------------------------------------------------------------------------------

def new_student_id(db, issuer: str, subject: str, sourcedid: str) -> str:
    """A new student's id: their student number (LIS person sourcedid) when it is one and free, else one made
    from their LMS identity."""
    if sourcedid and STUDENT_ID.fullmatch(sourcedid) and len(sourcedid) <= 64 and not db.execute(
            select(students.c.id).where(students.c.id == sourcedid)).first():
        return sourcedid
    return "lms-" + hashlib.sha256(f"{issuer}\n{subject}".encode()).hexdigest()[:12]


def student_for(engine: Engine, issuer: str, subject: str, sourcedid: str = "", email: str = "",
                name: str = "") -> tuple[object, str]:
    """The roster student an LMS identity is, linked on its first launch (or roster sync): by its identity if
    linked before; else the roster entry whose id is the student number (LIS person sourcedid), else the one whose
    e-mail it is (one only, case aside), either not yet linked to another identity of this LMS; else a new
    student (README: "LMS (LTI 1.3)"). → (their row, how: "known", "student number", "e-mail" or "new")."""
    with engine.begin() as db:
        linked = db.execute(select(identities.c.student_id).where(identities.c.issuer == issuer,
                                                                  identities.c.subject == subject)).scalar()
        how = "known"
        if linked is None:
            taken = select(identities.c.student_id).where(identities.c.issuer == issuer)
            free = students.c.id.not_in(taken)
            by_number = db.execute(select(students.c.id).where(students.c.id == sourcedid, free)).scalar() \
                if sourcedid else None
            by_mail = list(db.execute(select(students.c.id).where(
                func.lower(students.c.email) == email.strip().lower(), free)).scalars()) if email.strip() else []
            linked, how = (by_number, "student number") if by_number else \
                (by_mail[0], "e-mail") if len(by_mail) == 1 else (None, "new")
            if linked is None:
                linked = new_student_id(db, issuer, subject, sourcedid)
                db.execute(insert(students).values(id=linked, name=name[:200], email=email[:200], session_version=0,
                                                   active=True))
            db.execute(insert(identities).values(issuer=issuer, subject=subject, student_id=linked))
        return db.execute(select(students).where(students.c.id == linked)).first(), how


def staff_for(engine: Engine, issuer: str, subject: str, role: str, hint: str = ""):
    """The staff account an LMS instructor or TA is, made on their first launch (no password: they sign in only
    through the LMS) and given the role the LMS says on each launch. ``hint``: a name to make the user name from
    (their LMS user name or e-mail)."""
    with engine.begin() as db:
        username = db.execute(select(lti_staff.c.username).where(lti_staff.c.issuer == issuer,
                                                                 lti_staff.c.subject == subject)).scalar()
        if username is None:
            wanted = "".join(c for c in hint.split("@")[0] if c.isascii() and (c.isalnum() or c in "._-"))[:40]
            username = f"lms-{wanted or hashlib.sha256(subject.encode()).hexdigest()[:8]}"
            base, n = username, 1
            while db.execute(select(staff.c.username).where(staff.c.username == username)).first():
                n += 1
                username = f"{base}-{n}"
            db.execute(insert(staff).values(username=username, password_hash="!lti", role=role, session_version=0))
            db.execute(insert(lti_staff).values(issuer=issuer, subject=subject, username=username))
        else:
            db.execute(update(staff).where(staff.c.username == username).values(role=role))
        return db.execute(select(staff).where(staff.c.username == username)).first()


def subject_of(engine: Engine, issuer: str, student: str) -> str | None:
    """A student's user id at an LMS, once linked."""
    with engine.connect() as db:
        return db.execute(select(identities.c.subject).where(identities.c.issuer == issuer,
                                                             identities.c.student_id == student)).scalar()


# --- course links ---------------------------------------------------------------------------------------------

def save_link(engine: Engine, platform_id: int, deployment_id: str, resource_link: str, assignment: str,
              context_id: str = "", lineitem: str = "", memberships: str = "") -> int:
    """A resource link and the assignment it opens, with its line item and roster URLs (a later launch updates
    them). → its id."""
    values = {"deployment_id": deployment_id, "context_id": context_id, "assignment": assignment,
              "lineitem": lineitem, "memberships": memberships, "updated_at": utc_now()}
    with engine.begin() as db:
        found = db.execute(select(lti_links.c.id).where(lti_links.c.platform_id == platform_id,
                                                        lti_links.c.resource_link == resource_link)).scalar()
        if found is None:
            return db.execute(insert(lti_links).values(platform_id=platform_id, resource_link=resource_link,
                                                       **values)).inserted_primary_key[0]
        db.execute(update(lti_links).where(lti_links.c.id == found).values(**values))
        return found


def link_of(engine: Engine, platform_id: int, resource_link: str):
    with engine.connect() as db:
        return db.execute(select(lti_links).where(lti_links.c.platform_id == platform_id,
                                                  lti_links.c.resource_link == resource_link)).first()


def links_of(engine: Engine, assignment: str | None = None) -> list:
    """The course links (of one assignment, or all) with their platform's issuer."""
    query = select(lti_links, lti_platforms.c.issuer).join(lti_platforms).order_by(lti_links.c.id)
    if assignment is not None:
        query = query.where(lti_links.c.assignment == assignment)
    with engine.connect() as db:
        return list(db.execute(query))


# --- the grade outbox --------------------------------------------------------------------------------------------

def queue_score(engine: Engine, link_id: int, student: str, subject: str, score: float | None,
                max_score: float, status: str) -> bool:
    """A student's score for a line item, to be sent: a new row, or the row updated when the score differs from
    the one it holds (else nothing: a score already sent is not sent twice). → whether it was queued."""
    now = utc_now()
    values = {"subject": subject, "score": score, "max_score": max_score, "status": status, "state": SCORE_PENDING,
              "tries": 0,
              "next_try_at": now, "scored_at": now, "error": ""}
    with engine.begin() as db:
        row = db.execute(select(lti_scores).where(lti_scores.c.link_id == link_id,
                                                  lti_scores.c.student_id == student)).first()
        if row is None:
            db.execute(insert(lti_scores).values(link_id=link_id, student_id=student, **values))
            return True
        if (row.score, row.max_score, row.status, row.subject) == (score, max_score, status, subject) \
                and row.state != SCORE_FAILED:
            return False
        db.execute(update(lti_scores).where(lti_scores.c.id == row.id).values(**values))
        return True


def claim_scores(engine: Engine, now: dt.datetime, limit: int = 50) -> list:
    """Scores due to be sent, each marked sending (a conditional update: two senders never take one)."""
    with engine.begin() as db:
        due = list(db.execute(select(lti_scores).where(lti_scores.c.state == SCORE_PENDING,
                                                       lti_scores.c.next_try_at <= now)
                              .order_by(lti_scores.c.next_try_at, lti_scores.c.id).limit(limit)))
        taken = []
        for row in due:
            if db.execute(update(lti_scores).where(lti_scores.c.id == row.id, lti_scores.c.state == SCORE_PENDING)
                          .values(state=SCORE_SENDING)).rowcount:
                taken.append(row)
    return taken


def score_sent(engine: Engine, score_id: int) -> None:
    with engine.begin() as db:
        db.execute(update(lti_scores).where(lti_scores.c.id == score_id, lti_scores.c.state == SCORE_SENDING)
                   .values(state=SCORE_SENT, sent_at=utc_now(), error="", tries=lti_scores.c.tries + 1))


def score_later(engine: Engine, score_id: int, next_try: dt.datetime, error: str) -> None:
    """A score the platform could not take now (no answer, 429, 5xx): tried again at ``next_try``."""
    with engine.begin() as db:
        db.execute(update(lti_scores).where(lti_scores.c.id == score_id, lti_scores.c.state == SCORE_SENDING)
                   .values(state=SCORE_PENDING, next_try_at=next_try, error=error[:2000],
                           tries=lti_scores.c.tries + 1))


def score_failed(engine: Engine, score_id: int, error: str) -> None:
    """A score the platform refused (4xx): not tried again until staff send it again."""
    with engine.begin() as db:
        db.execute(update(lti_scores).where(lti_scores.c.id == score_id, lti_scores.c.state == SCORE_SENDING)
                   .values(state=SCORE_FAILED, error=error[:2000], tries=lti_scores.c.tries + 1))


def send_again(engine: Engine, assignment: str, student: str | None = None) -> int:
    """The assignment's scores (or one student's) that failed or wait, sent at once. → how many."""
    links = select(lti_links.c.id).where(lti_links.c.assignment == assignment)
    where = [lti_scores.c.link_id.in_(links), lti_scores.c.state.in_((SCORE_FAILED, SCORE_PENDING))]
    if student is not None:
        where.append(lti_scores.c.student_id == student)
    with engine.begin() as db:
        return db.execute(update(lti_scores).where(*where).values(
            state=SCORE_PENDING, next_try_at=utc_now(), scored_at=utc_now(), tries=0)).rowcount


def requeue_sending(engine: Engine) -> None:
    """Scores a stopped server was sending are sent again (the platform keeps the latest of equal scores)."""
    with engine.begin() as db:
        db.execute(update(lti_scores).where(lti_scores.c.state == SCORE_SENDING).values(state=SCORE_PENDING))


def scores_of(engine: Engine, assignment: str) -> list:
    """The assignment's outbox rows, with their link's resource link and line item, by student."""
    query = (select(lti_scores, lti_links.c.resource_link, lti_links.c.lineitem).join(lti_links)
             .where(lti_links.c.assignment == assignment).order_by(lti_scores.c.student_id, lti_scores.c.id))
    with engine.connect() as db:
        return list(db.execute(query))

