"""LTI Advantage services the site calls on an LMS: grades (Assignment and Grade Services) through an outbox in the
database, and the class list (Names and Role Provisioning Services).

Grades: when feedback is released (staff.release_feedback), and again when a regrade changes a score after the
release (a grade job, or a GPU runner's results uploaded), each linked student's score from the assignment's
gradebook.csv is queued for each course link's line item (``queue_assignment``); a score equal to the one already
there is not queued again. ``ScoreSender`` sends what is due: a score that reaches the LMS is "sent"; no answer,
429 or 5xx: tried again later, backing off (BACKOFF_S, or the LMS's Retry-After); another 4xx: "failed", with the
LMS's words, until staff send it again (the staff page, or ``lti push``). A score is sent with the progress states
its gradebook status means (``score_payload``).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import threading
import urllib.parse

from ..grading.result import INFRASTRUCTURE, NO_SUBMISSION
from . import lti_store
from .db import utc_now
from .lti import MEMBERSHIP_SCOPE, SCORE_SCOPE, AccessTokens, PlatformError, call

SCORE_TYPE = "application/vnd.ims.lis.v1.score+json"
MEMBERS_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
BACKOFF_S = (30, 60, 120, 300, 600, 1800)     # after the 1st, 2nd … failed try; then every hour
MAX_BACKOFF_S = 3600
MEMBER_PAGES = 100                             # a roster's pages followed at most


# --- grades ----------------------------------------------------------------------------------------------------

def gradebook_scores(site, assignment: str) -> dict[str, tuple[float | None, float, str]]:
    """student → (score or None when not graded, the maximum, the status), from the assignment's gradebook.csv."""
    path = site.grades(assignment) / "gradebook.csv"
    if not path.is_file():
        return {}
    found = {}
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            try:
                maximum = float(row.get("max_score") or "nan")
                score = float(row["score"]) if row.get("score") else None
            except ValueError:
                continue
            if row.get("student_id") and math.isfinite(maximum):
                found[row["student_id"]] = (score, maximum, row.get("status") or "")
    return found


def queue_assignment(site, assignment: str) -> int:
    """Queue the assignment's scores for each of its course links with a line item, once its feedback is released
    (before, an LMS's gradebook would show what the feedback does not). → how many were queued (changed)."""
    if not site.released_feedback(assignment):
        return 0
    scores = gradebook_scores(site, assignment)
    queued = 0
    for link in lti_store.links_of(site.engine, assignment):
        if not link.lineitem:
            continue
        for student, (score, maximum, status) in scores.items():
            subject = lti_store.subject_of(site.engine, link.issuer, student)
            if subject is not None:
                queued += lti_store.queue_score(site.engine, link.id, student, subject, score, maximum, status)
    return queued


def after_grading(site, assignment: str) -> None:
    """A regrade (a grade job, or uploaded results) after the release: the changed scores go to the LMS too."""
    try:
        queue_assignment(site, assignment)
    except Exception as exc:                               # noqa: BLE001 (grading itself succeeded; staff look)
        print(f"autograder serve: {assignment}: the LMS scores could not be queued: {exc}", flush=True)


def score_payload(row, timestamp: dt.datetime) -> dict:
    """AGS's score for an outbox row: a graded score as Completed and FullyGraded; nothing handed in as
    Initialized and FullyGraded (0 points); an infrastructure error (no score) as Submitted and Failed, without a
    score (the LMS keeps the cell empty until it is regraded)."""
    payload = {"userId": row.subject, "timestamp": timestamp.isoformat(timespec="milliseconds"),
               "activityProgress": "Initialized" if row.status == NO_SUBMISSION else "Completed",
               "gradingProgress": "FullyGraded"}
    if row.score is None or row.status == INFRASTRUCTURE:
        payload.update(activityProgress="Submitted", gradingProgress="Failed")
    else:
        payload.update(scoreGiven=row.score, scoreMaximum=row.max_score)
    return payload


def scores_url(lineitem: str) -> str:
    """A line item's scores endpoint: ``/scores`` added to its path, its query kept."""
    parts = urllib.parse.urlsplit(lineitem)
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/scores"))


def backoff(tries: int, retry_after: float | None) -> dt.timedelta:
    """How long to wait after the ``tries``-th failed try: the LMS's Retry-After when it said one."""
    wait = BACKOFF_S[tries - 1] if 0 < tries <= len(BACKOFF_S) else MAX_BACKOFF_S
    return dt.timedelta(seconds=min(max(wait, retry_after or 0), MAX_BACKOFF_S))


def send_due(site, tokens: AccessTokens, now: dt.datetime | None = None) -> dict[str, int]:
    """Send the scores due at ``now``: → how many were sent, put off and refused."""
    now = now or utc_now()
    counts = {"sent": 0, "later": 0, "failed": 0}
    links = {link.id: link for link in lti_store.links_of(site.engine)}
    platforms = {}
    for row in lti_store.claim_scores(site.engine, now):
        link = links.get(row.link_id)
        if link.platform_id not in platforms:
            platforms[link.platform_id] = lti_store.registration(site.engine, link.platform_id)
        platform = platforms[link.platform_id]
        try:
            token = tokens.token(platform, (SCORE_SCOPE,))
            call(scores_url(link.lineitem), json.dumps(score_payload(row, row.scored_at)).encode(),
                 {"Content-Type": SCORE_TYPE, "Authorization": f"Bearer {token}"}, method="POST")
        except PlatformError as exc:
            if exc.status == 401:
                tokens.forget(platform)                     # a stale token: a new one next time
            if exc.temporary or exc.status == 401:
                lti_store.score_later(site.engine, row.id, now + backoff(row.tries + 1, exc.retry_after),
                                      f"{exc} (tried {row.tries + 1} time(s); trying again later)")
                counts["later"] += 1
            else:
                lti_store.score_failed(site.engine, row.id, f"the LMS refused the score: {exc}")
                counts["failed"] += 1
            continue
        lti_store.score_sent(site.engine, row.id)
        counts["sent"] += 1
    return counts


class ScoreSender:
    """Sends the grade outbox while the site runs: every ``every`` seconds, or at once when woken."""

    def __init__(self, site, every: float = 5.0):
        self.site, self.every = site, every
        self.tokens = AccessTokens(site.data)
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lti-scores", daemon=True)

    def start(self) -> None:
        lti_store.requeue_sending(self.site.engine)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                send_due(self.site, self.tokens)
            except Exception as exc:                        # noqa: BLE001 (the database was busy: next round)
                print(f"autograder serve: sending LMS scores: {exc}", flush=True)
            self._wake.wait(self.every)
            self._wake.clear()


# --- the class list ----------------------------------------------------------------------------------------------

LEARNER_ROLES = ("http://purl.imsglobal.org/vocab/lis/v2/membership#Learner", "Learner")


def sync_roster(site, tokens: AccessTokens | None = None) -> dict[str, int]:
    """Every course's members (NRPS, the memberships URL of each course link) who are learners become roster
    students, linked to existing entries by student number or e-mail as a launch links them
    (lti_store.student_for). → how many were already linked, linked by each way, or new; and the inactive ones
    left as they are."""
    tokens = tokens or AccessTokens(site.data)
    counts: dict[str, int] = {}
    seen = set()
    for link in lti_store.links_of(site.engine):
        if not link.memberships or link.memberships in seen:
            continue
        seen.add(link.memberships)
        platform = lti_store.registration(site.engine, link.platform_id)
        for member in members(link.memberships, tokens.token(platform, (MEMBERSHIP_SCOPE,))):
            roles = member.get("roles") if isinstance(member.get("roles"), list) else []
            if not any(r in LEARNER_ROLES for r in roles) or not isinstance(member.get("user_id"), str):
                continue
            if member.get("status", "Active") != "Active":
                counts["inactive"] = counts.get("inactive", 0) + 1
                continue
            _, how = lti_store.student_for(site.engine, platform.issuer, member["user_id"][:255],
                                           text(member.get("lis_person_sourcedid")), text(member.get("email")),
                                           text(member.get("name")))
            counts[how] = counts.get(how, 0) + 1
    return counts


def members(url: str, token: str) -> list[dict]:
    """A course's members, every page (the ``Link: <…>; rel="next"`` header), at most MEMBER_PAGES."""
    found = []
    for _ in range(MEMBER_PAGES):
        answer, headers = call(url, headers={"Accept": MEMBERS_TYPE, "Authorization": f"Bearer {token}"})
        page = answer.get("members") if isinstance(answer, dict) else None
        found.extend(m for m in page or [] if isinstance(m, dict))
        url = next_page(headers.get("Link", "") or headers.get("link", ""))
        if not url:
            break
    return found


def next_page(link_header: str) -> str | None:
    for part in link_header.split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") or "rel=next" in params.replace(" ", ""):
            return target.strip().strip("<>")
    return None


def text(value) -> str:
    return value.strip()[:200] if isinstance(value, str) else ""
