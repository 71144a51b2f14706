"""The submission site's ASGI app (Starlette): server-rendered pages, no JavaScript.

Sessions are signed cookies (Starlette's SessionMiddleware, itsdangerous) carrying who signed in and the session
version they signed in with (raised by a new link, a revoke or a sign-out: the older cookies stop working); every
POST carries the session's CSRF token, and no form is read before its size is known and within its own limits.
Staff's roles are checked before an action reads anything (``INSTRUCTOR_ACTIONS``). A student's pages are found
from the session alone: an id in a URL (a receipt) is looked up together with the signed-in student, so another
student's is "not found". Hidden checks' messages and grader source never reach a student: the check view is
``public_view`` of a result, and the feedback page only after staff release it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import copy
import hmac
import json
import logging
import re
import secrets
import time
import traceback
from collections import OrderedDict

from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from .. import clock
from ..errors import GraderError, Refusal
from ..graders import check_graders
from ..pages import render
from ..submit import INCOMPLETE_CHECKBOX
from .core import Site
from .db import DONE, QUEUED, RUNNING, attempts, staff, students
from .people import check_password, end_sessions, student_for_token
from .selfcheck import CheckRunner, public_view
from .staff import (GRADE, PUBLISH, JobRunner, exchange_zip, feedback_page, local_time, queue, queue_counts,
                    receive_results, recent_jobs, release_feedback, roster_states)

SESSION_DAYS = 14
FORM_OVERHEAD = 2**20                 # bytes of a multipart body besides the notebook itself
RESULTS_UPLOAD_LIMIT = 512 * 2**20    # a results folder without its store/ (the runs stay on the GPU runner)
SMALL_FORM = 4096                     # bytes: a CSRF token, a user name, a password, with room to spare
SMALL_FORM_LIMITS = {"max_files": 0, "max_fields": 4, "max_part_size": 1024}
VERIFY_AT_ONCE = 2                    # argon2 verifications at once (each takes ≈64 MiB for a moment)
VERIFY_WAIT_S = 10                    # how long a sign-in waits for one of them before "busy, try again"
STAFF_ACTIONS = {"grade", "results", "release", "publish"}     # the staff pages' POSTs
INSTRUCTOR_ACTIONS = {"grade", "results", "release"}             # a TA sees everything and publishes, no more
SERVER_LIMITS = {                     # uvicorn's: connections, idle keep-alive, one request's headers
    "http": "h11", "limit_concurrency": 512, "timeout_keep_alive": 5, "h11_max_incomplete_event_size": 8 * 1024,
}
HSTS = ("Strict-Transport-Security", "max-age=31536000")
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",      # a sign-in link's token never leaves in a Referer header
    "Cache-Control": "no-store",
}


# --- sessions, CSRF ---------------------------------------------------------------------------------------

def csrf_token(request: Request) -> str:
    if "csrf" not in request.session:
        request.session["csrf"] = secrets.token_urlsafe(24)
    return request.session["csrf"]


class BodyRefused(Exception):
    """A request body refused before (or while) it is read: a status and the reason, in Japanese and English."""

    def __init__(self, status: int, ja: str, en: str):
        super().__init__(en)
        self.status, self.ja, self.en = status, ja, en


def body_length(request: Request, limit: int) -> int:
    """The body's declared size, when it is declared (no chunked body where a form is expected) and at most
    ``limit``; else BodyRefused (411, 413), before a byte of it is read."""
    length = request.headers.get("content-length", "")
    if not length.isdigit() or "transfer-encoding" in request.headers:
        raise BodyRefused(411, "送信の大きさ (Content-Length) が分かりません。ページを読み込み直してから、もう一度送信してください。",
                          "The request did not say its size (Content-Length; a chunked body is not accepted "
                          "here): reload the page and send it again.")
    if int(length) > limit:
        raise BodyRefused(413, f"送信されたデータが大きすぎます (このフォームの上限は {limit:,} バイト)。",
                          f"The request is too large ({int(length):,} bytes; this form takes at most {limit:,}).")
    return int(length)


async def checked_form(request: Request, size_limit: int = SMALL_FORM, **limits):
    """The POSTed form, read only when its size is declared and within ``size_limit`` and its parts within
    ``limits`` (by default a small form's: no file, a few short fields), else BodyRefused; then only when its CSRF
    token matches the session's (else 403)."""
    body_length(request, size_limit)
    try:
        form = await request.form(**{**SMALL_FORM_LIMITS, **limits})
    except HTTPException as exc:                        # Starlette's words for a malformed or oversized part
        raise BodyRefused(400, "送信されたフォームを読めませんでした。ページを読み込み直してから、もう一度送信してください。",
                          f"The form could not be read ({exc.detail}): reload the page and send it again.") from exc
    sent = form.get("csrf")
    if not (isinstance(sent, str) and request.session.get("csrf")
            and hmac.compare_digest(sent, request.session["csrf"])):
        raise Forbidden()
    return form


class Forbidden(Exception):
    pass


def signed_in(request: Request, role: str):
    """The signed-in student or staff row, if the session is one of ``role`` and still valid."""
    session = request.session
    if session.get("role") != role:
        return None
    site: Site = request.app.state.site
    table, key = (students, students.c.id) if role == "student" else (staff, staff.c.username)
    with site.engine.connect() as db:
        row = db.execute(select(table).where(key == session.get("id"))).first()
    if row is None or row.session_version != session.get("v") or (role == "student" and not row.active) or (
            role == "staff" and idle(site, session)):
        session.clear()
        return None
    if role == "staff":
        session["seen"] = wall_clock()
    return row


def wall_clock() -> float:
    """The real time, for sessions: a rehearsal's clock (``clock.now``) moves deadlines, never a session's age."""
    return time.time()


def idle(site: Site, session) -> bool:
    """A staff session unused for longer than SITE_STAFF_IDLE_MIN (a staff browser left open is not a key)."""
    return wall_clock() - session.get("seen", 0) > site.config.site_staff_idle_min * 60


def sign_in(request: Request, role: str, row) -> None:
    request.session.clear()
    request.session.update(role=role, id=row.id if role == "student" else row.username, v=row.session_version,
                           csrf=secrets.token_urlsafe(24))
    if role == "staff":
        request.session["seen"] = wall_clock()


class LoginThrottle:
    """Staff sign-in attempts, each counted *before* its password is verified (so parallel guesses count too): at
    most ``per_pair`` within ``window`` seconds for one (client address, user name) and ``per_address`` for one
    address, whatever the names. A stranger's guesses use up the stranger's attempts, not those of the staff member
    signing in from elsewhere. At most ``max_keys`` keys are kept, the least recently used dropped first: random
    names or addresses cannot grow it without bound."""

    def __init__(self, per_pair: int = 5, per_address: int = 20, window: float = 900, max_keys: int = 10_000):
        self.per_pair, self.per_address, self.window, self.max_keys = per_pair, per_address, window, max_keys
        self._attempts: OrderedDict[tuple, list[float]] = OrderedDict()

    def attempt(self, address: str, username: str) -> bool:
        """Count an attempt of ``username`` from ``address``; False, and nothing counted, when either has no
        attempt left."""
        keys = (("address", address), ("pair", address, username))
        now = time.monotonic()
        recent = [[t for t in self._attempts.pop(key, ()) if now - t < self.window] for key in keys]
        allowed = len(recent[0]) < self.per_address and len(recent[1]) < self.per_pair
        for key, times in zip(keys, recent):
            if allowed:
                times.append(now)
            self._keep(key, times)
        return allowed

    def succeeded(self, address: str, username: str) -> None:
        """A right password: its pair starts afresh, and it does not count against its address."""
        self._attempts.pop(("pair", address, username), None)
        times = self._attempts.get(("address", address))
        if times:
            times.pop()

    def _keep(self, key: tuple, times: list[float]) -> None:
        if times:
            self._attempts[key] = times
        while len(self._attempts) > self.max_keys:
            self._attempts.popitem(last=False)

    def __len__(self) -> int:
        return len(self._attempts)


class HideSigninTokens(logging.Filter):
    """The access log names a sign-in link's path without its token (a token there would be a key in the log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(record.args[2], str):
            record.args = (*record.args[:2], SIGNIN_PATH.sub("/signin/…", record.args[2]), *record.args[3:])
        return True


SIGNIN_PATH = re.compile(r"/signin/[^/?#\s]+")


def log_config() -> dict:
    """uvicorn's logging, its access log passed through ``HideSigninTokens``."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["signin_tokens"] = {"()": HideSigninTokens}
    config["handlers"]["access"]["filters"] = ["signin_tokens"]
    return config


# --- pages -------------------------------------------------------------------------------------------------

def page(request: Request, template: str, status: int = 200, headers: dict | None = None,
         **context) -> HTMLResponse:
    site: Site = request.app.state.site
    session = request.session
    who = session.get("id") if session.get("role") else None
    context.setdefault("error", None)
    return HTMLResponse(render(f"site/{template}", csrf=csrf_token(request), who=who, role=session.get("role"),
                               now=clock.local_text(clock.now(), site.config.timezone), **context),
                        status_code=status, headers=headers)


def message(request: Request, status: int, ja: str, en: str) -> HTMLResponse:
    return page(request, "message.html.j2", status=status, ja=ja, en=en, level="bad" if status >= 400 else "info")


def not_found(request: Request) -> HTMLResponse:
    return message(request, 404, "ページが見つかりません。", "Not found.")


def signed_in_as(role: str, with_assignment: bool = False):
    """A page for a signed-in ``role`` ("student": else a sign-in message; "staff": else the sign-in page), called
    as ``handler(request, who)``, or ``handler(request, who, assignment)`` for a page of one of the course's
    released assignments (an unknown one is "not found")."""
    def decorate(handler):
        async def wrapped(request: Request):
            who = signed_in(request, role)
            if who is None:
                if role == "staff":
                    return RedirectResponse("/staff/login", status_code=303)
                return message(request, 401, "サインインしてください: メールで届いた個人用リンクを開いてください。",
                               "Please sign in: open the personal link you received by e-mail.")
            if not with_assignment:
                return await handler(request, who)
            a = request.app.state.site.assignment(request.path_params["assignment"])
            return await handler(request, who, a) if a else not_found(request)
        return wrapped
    return decorate


async def home(request: Request):
    if signed_in(request, "staff"):
        return RedirectResponse("/staff", status_code=303)
    student = signed_in(request, "student")
    if student is None:
        return page(request, "welcome.html.j2")
    site: Site = request.app.state.site
    rows = []
    for a in site.assignments():
        tries = site.attempts_of(student.id, a.id)
        rows.append({"a": a, "latest": tries[0] if tries else None, "count": len(tries)})
    return page(request, "home.html.j2", student=student, rows=rows)


async def signin(request: Request):
    """Opening a link (GET) signs no one in: it shows whose link it is and a button, whose POST (with this
    browser's CSRF token) signs in. Someone else's link opened in your browser by another site, or a mail
    scanner fetching the link, signs no one in."""
    if request.method == "POST":
        await checked_form(request)
    site: Site = request.app.state.site
    student = await run_in_threadpool(student_for_token, site.engine, request.path_params["token"])
    if student is None:
        return message(request, 403, "このリンクは使えません (取り消されたか、新しいリンクに置き換えられました)。担当教員に連絡してください。",
                       "This link does not work (it was revoked or replaced by a newer one): ask your instructor.")
    if request.method == "GET":
        return page(request, "signin.html.j2", student=student)
    sign_in(request, "student", student)
    return RedirectResponse("/", status_code=303)


async def signout(request: Request):
    """Ends every session of the signed-in student or staff member (its session version is raised), not only
    this browser's cookie: a copied cookie stops working too."""
    await checked_form(request)
    role = request.session.get("role")
    who = signed_in(request, role) if role in ("student", "staff") else None
    if who is not None:
        site: Site = request.app.state.site
        await run_in_threadpool(end_sessions, site.engine, role, who.id if role == "student" else who.username)
    request.session.clear()
    return RedirectResponse("/staff/login" if role == "staff" else "/", status_code=303)


def check_view(site: Site, row) -> dict | None:
    """The public view of an attempt's check, when it is done."""
    path = site.check_file(row.receipt)
    if row.check_state != DONE or not path.is_file():
        return None
    config = site.config_for(row.assignment)
    return public_view(json.loads(path.read_text(encoding="utf-8")), check_graders(config),
                       site.never_shown(row.assignment))


def attempt_views(site: Site, rows: list) -> list[dict]:
    return [{"row": r, "time": local_time(site, r.submitted_at), "counts": i == 0} for i, r in enumerate(rows)]


def assignment_context(site: Site, student, a) -> dict:
    tries = site.attempts_of(student.id, a.id)
    moment = clock.now()
    return {"a": a, "attempts": attempt_views(site, tries),
            "check": check_view(site, tries[0]) if tries else None,
            "open": moment <= a.deadline or a.late_policy != "reject",
            "late_now": moment > a.deadline,
            "released": bool(site.released_feedback(a.id)) and (feedback_page(site, a.id, student.id) is not None
                                                                 or not tries),
            "published": site.solution_page(a.id).is_file(),
            "limit_mb": site.config_for(a.id).max_notebook_mb, "used": site.usage(student.id, a.id),
            "quota": (site.config.site_max_attempts, site.config.site_max_stored_mb),
            "incomplete_label": INCOMPLETE_CHECKBOX}


@signed_in_as("student", with_assignment=True)
async def assignment_page(request: Request, student, a):
    site: Site = request.app.state.site
    return page(request, "assignment.html.j2", student=student, **assignment_context(site, student, a))


@signed_in_as("student", with_assignment=True)
async def upload(request: Request, student, a):
    site: Site = request.app.state.site
    limit = site.config_for(a.id).max_notebook_mb * 2**20
    try:
        form = await checked_form(request, limit + FORM_OVERHEAD, max_files=1, max_fields=5)
    except BodyRefused as exc:
        if exc.status != 413:
            raise
        return _refused(request, site, student, a, 413, Refusal(
            f"ファイルが大きすぎます (上限 {limit // 2**20} MiB)。出力を消去してから保存し直してください。\n"
            f"The file is too large (the limit is {limit // 2**20} MiB): clear the outputs, save and upload again."))
    notebook = form.get("notebook")
    if not isinstance(notebook, UploadFile) or not notebook.filename:
        return _refused(request, site, student, a, 400, Refusal(
            "ファイルが選ばれていません。.ipynb ファイルを選んでください。\nNo file was chosen: choose your .ipynb file."))
    data = await notebook.read(limit + 1)
    try:
        row = await run_in_threadpool(site.accept, student.id, a.id, data, form.get("allow_incomplete") == "yes")
    except Refusal as exc:
        return _refused(request, site, student, a, 413 if len(data) > limit else 422, exc)
    return RedirectResponse(f"/receipt/{row.receipt}", status_code=303)


def _refused(request, site, student, a, status: int, exc: Refusal) -> HTMLResponse:
    ja, _, en = str(exc).partition("\n")
    return page(request, "assignment.html.j2", status=status, student=student, error=(ja, en),
                **assignment_context(site, student, a))


@signed_in_as("student")
async def receipt(request: Request, student):
    site: Site = request.app.state.site
    row = site.attempt(student.id, request.path_params["receipt"])
    if row is None:
        return not_found(request)
    tries = site.attempts_of(student.id, row.assignment)
    replaced = next((t for t in tries if t.number == row.number - 1), None)
    return page(request, "receipt.html.j2", student=student, row=row, a=site.assignment(row.assignment),
                time=local_time(site, row.submitted_at), replaced=replaced,
                utc_time=dt.datetime.fromisoformat(row.submitted_at).strftime("%Y-%m-%d %H:%M:%S UTC"),
                replaced_time=local_time(site, replaced.submitted_at) if replaced else "",
                latest=tries[0].receipt == row.receipt, check=check_view(site, row),
                waiting=row.check_state in (QUEUED, RUNNING), position=_position(site, row))


def _position(site: Site, row) -> int:
    """How many checks wait before this one (0 when it runs or is done)."""
    if row.check_state != QUEUED:
        return 0
    with site.engine.connect() as db:
        return db.execute(select(func.count()).where(attempts.c.check_state == QUEUED,
                                                     attempts.c.id < row.id)).scalar()


@signed_in_as("student", with_assignment=True)
async def feedback(request: Request, student, a):
    site: Site = request.app.state.site
    released = site.released_feedback(a.id)
    path = feedback_page(site, a.id, student.id) if released else None
    if path is not None:
        return FileResponse(path, media_type="text/html; charset=utf-8")
    if released and not site.attempts_of(student.id, a.id):      # graded without the roster (an uploaded zip)
        return message(request, 200, "この課題の提出はありませんでした。採点結果は 0 点です。",
                       "You handed nothing in for this assignment: there is no feedback, and your score is 0.")
    return message(request, 404, "フィードバックはまだ公開されていません。", "Your feedback is not released yet.")


@signed_in_as("student", with_assignment=True)
async def solution(request: Request, student, a):
    site: Site = request.app.state.site
    name = {"solution": site.solution_page(a.id).name, "checks": "checks.html"}.get(request.path_params["what"])
    path = site.published(a.id) / name if name else None
    if path is None or not path.is_file():
        return message(request, 404, "解答はまだ公開されていません。", "The solution is not published yet.")
    return FileResponse(path, media_type="text/html; charset=utf-8")


# --- staff ---------------------------------------------------------------------------------------------------

async def staff_login(request: Request):
    if request.method == "GET":
        return page(request, "staff_login.html.j2")
    form = await checked_form(request)
    site: Site = request.app.state.site
    username = str(form.get("username", ""))[:64]
    address = request.client.host if request.client else ""
    throttle: LoginThrottle = request.app.state.throttle
    if not throttle.attempt(address, username):
        return page(request, "staff_login.html.j2", status=429, error="throttled")
    member = await verify(request, username, str(form.get("password", "")))
    if member is False:
        return page(request, "staff_login.html.j2", status=429, error="busy", headers={"Retry-After": "10"})
    if member is None:
        return page(request, "staff_login.html.j2", status=401, error="wrong")
    throttle.succeeded(address, username)
    sign_in(request, "staff", member)
    return RedirectResponse("/staff", status_code=303)


async def verify(request: Request, username: str, password: str):
    """``check_password`` with at most VERIFY_AT_ONCE at once (argon2's memory is the server's); False when none
    was free within VERIFY_WAIT_S."""
    verifying: asyncio.Semaphore = request.app.state.verifying
    try:
        await asyncio.wait_for(verifying.acquire(), VERIFY_WAIT_S)
    except TimeoutError:
        return False
    try:
        return await run_in_threadpool(check_password, request.app.state.site.engine, username, password)
    finally:
        verifying.release()


@signed_in_as("staff")
async def staff_home(request: Request, member):
    site: Site = request.app.state.site
    rows = []
    for a in site.assignments():
        states = roster_states(site, a.id)
        rows.append({"a": a, "on_time": sum(s.state == "on time" for s in states),
                     "late": sum(s.state == "late" for s in states), "none": sum(s.state == "none" for s in states),
                     "released": bool(site.released_feedback(a.id))})
    return page(request, "staff_home.html.j2", member=member, rows=rows, queue=queue_counts(site),
                checks=[{"row": r, "time": local_time(site, r.submitted_at)} for r in queue(site)])


@signed_in_as("staff", with_assignment=True)
async def staff_assignment(request: Request, member, a):
    return staff_assignment_page(request, member, a)


def staff_assignment_page(request: Request, member, a, error: tuple[str, str] | None = None, status: int = 200):
    site: Site = request.app.state.site
    release = site.released_feedback(a.id)
    grades = site.grades(a.id)
    return page(request, "staff_assignment.html.j2", status=status, member=member, may=may(member), a=a,
                roster=roster_states(site, a.id), queue=queue_counts(site), jobs=recent_jobs(site, a.id),
                graded=(grades / "gradebook.csv").is_file(), release=release,
                released_time=local_time(site, release.released_at) if release else "",
                published=site.solution_page(a.id).is_file(), error=error,
                past_deadline=clock.now() > a.deadline)


def may(member) -> set[str]:
    """The staff actions ``member``'s role allows (README: the role table): an instructor all, a TA all but
    INSTRUCTOR_ACTIONS."""
    return STAFF_ACTIONS if member.role == "instructor" else STAFF_ACTIONS - INSTRUCTOR_ACTIONS


def staff_action(action, name: str):
    """The POST of a staff action ``name``: refused (403, nothing read) unless the member's role allows it."""
    @signed_in_as("staff", with_assignment=True)
    async def wrapped(request: Request, member, a):
        site: Site = request.app.state.site
        if name not in may(member):
            return staff_assignment_page(request, member, a, (
                f"この操作 ({name}) は担当教員 (instructor) だけが行えます。あなたの役割は {member.role} です。",
                f"Only an instructor may do this ({name}); your role is {member.role}."), 403)
        try:
            await action(request, site, a, member)
        except Refusal as exc:
            return staff_assignment_page(request, member, a, str(exc).partition("\n")[::2], 409)
        return RedirectResponse(f"/staff/a/{a.id}", status_code=303)
    return wrapped


async def _grade(request, site, a, member):
    await checked_form(request)
    request.app.state.jobs.submit(GRADE, a.id, member.username)


async def _publish(request, site, a, member):
    await checked_form(request)
    request.app.state.jobs.submit(PUBLISH, a.id, member.username)


async def _release(request, site, a, member):
    form = await checked_form(request)
    release_feedback(site, a.id, member.username, before_deadline=form.get("before_deadline") == "yes")


async def _results(request, site, a, member):
    length = request.headers.get("content-length", "")
    if not length.isdigit() or int(length) > RESULTS_UPLOAD_LIMIT:
        raise Refusal(f"zip が大きすぎるか、大きさが分かりません (上限 {RESULTS_UPLOAD_LIMIT // 2**20} MB)。store/ を除いて zip "
                      "にしてください。\n"
                      f"The zip is too large or did not say its size (the limit is {RESULTS_UPLOAD_LIMIT // 2**20} MB): "
                      "leave out store/ (zip -r out.zip out -x 'out/store/*').")
    form = await checked_form(request, RESULTS_UPLOAD_LIMIT + FORM_OVERHEAD, max_files=1, max_fields=5)
    upload_file = form.get("results")
    if not isinstance(upload_file, UploadFile) or not upload_file.filename:
        raise Refusal("zip ファイルを選んでください。\nChoose the results folder's zip.")
    await run_in_threadpool(receive_results, site, a.id, await upload_file.read(), member.username)


@signed_in_as("staff", with_assignment=True)
async def staff_download(request: Request, member, a):
    site: Site = request.app.state.site
    what = request.path_params["what"]
    if what == "exchange.zip":
        data = await run_in_threadpool(exchange_zip, site, a.id)
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{a.id}-exchange.zip"'})
    media = {"gradebook.csv": "text/csv; charset=utf-8", "summary.html": "text/html; charset=utf-8",
             "summary.png": "image/png"}.get(what)
    if media is None or not (site.grades(a.id) / what).is_file():
        return not_found(request)
    disposition = {"Content-Disposition": f'attachment; filename="{a.id}-{what}"'} if what.endswith(".csv") else {}
    return FileResponse(site.grades(a.id) / what, media_type=media, headers=disposition)


@signed_in_as("staff", with_assignment=True)
async def staff_feedback(request: Request, member, a):
    """A student's feedback page: by student id (the roster's links), or by its file name (the summary's links,
    feedback/<file>.html beside summary.html)."""
    site: Site = request.app.state.site
    if "page" in request.path_params:
        name = request.path_params["page"]
        path = site.grades(a.id) / "feedback" / name
        path = path if name.endswith(".html") and not name.startswith(".") and path.is_file() else None
    else:
        path = feedback_page(site, a.id, request.path_params["student"])
    return FileResponse(path, media_type="text/html; charset=utf-8") if path else not_found(request)


@signed_in_as("staff")
async def staff_receipt(request: Request, member):
    """One attempt as staff see it, read-only: its row and its check's whole result (hidden checks, notes)."""
    site: Site = request.app.state.site
    with site.engine.connect() as db:
        row = db.execute(select(attempts).where(attempts.c.receipt == request.path_params["receipt"])).first()
    if row is None:
        return not_found(request)
    path = site.check_file(row.receipt)
    check = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    return page(request, "staff_receipt.html.j2", member=member, row=row, check=check,
                time=local_time(site, row.submitted_at),
                started=local_time(site, row.check_started_at) if row.check_started_at else "",
                finished=local_time(site, row.check_finished_at) if row.check_finished_at else "")


@signed_in_as("staff")
async def staff_job_log(request: Request, member):
    path = request.app.state.jobs.log_path(int(request.path_params["job"]))
    if not path.is_file():
        return not_found(request)
    return PlainTextResponse(path.read_text(encoding="utf-8", errors="replace")[-200_000:])


# --- the app ------------------------------------------------------------------------------------------------

class SecurityHeaders:
    """Headers every response carries (a pure ASGI middleware): HEADERS, and HSTS on an https site."""

    def __init__(self, app, https: bool = False):
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in [*HEADERS.items(), *([HSTS] if https else [])]]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(event):
            if event["type"] == "http.response.start":
                event["headers"] = list(event.get("headers", [])) + self.headers
            await send(event)
        await self.app(scope, receive, send_with_headers)


def collect_checks(site: Site) -> None:
    """Each assignment's checks collected once at start (pytest collects the graders; assignment modules may import
    TensorFlow), not by the first student's page; a broken grader is said here, and on staff's grading."""
    for a in site.assignments():
        try:
            check_graders(site.config_for(a.id))
        except GraderError as exc:
            print(f"autograder serve: {a.id}: its graders cannot be collected: {exc}", flush=True)


def create_app(site: Site, *, run_checks: bool = True, run_jobs: bool = True, check_runner=None) -> Starlette:
    """The ASGI app for ``site``. The check runners and the job runner start with the app and stop with it;
    ``reconcile`` runs first, so a crash's leftovers are recorded before any page is served."""

    @contextlib.asynccontextmanager
    async def lifespan(app):
        for line in await run_in_threadpool(site.reconcile):
            print(f"autograder serve: {line}", flush=True)
        await run_in_threadpool(collect_checks, site)
        runners = []
        if run_checks:
            runners.append(check_runner or CheckRunner(site, site.config.site_check_workers))
        if run_jobs:
            runners.append(app.state.jobs)
        for r in runners:
            r.start()
        try:
            yield
        finally:
            for r in runners:
                r.stop()

    async def on_forbidden(request: Request, exc: Forbidden):
        return message(request, 403, "フォームの有効期限が切れました。ページを読み込み直してから、もう一度送信してください。",
                       "This form has expired: reload the page and send it again.")

    async def on_body_refused(request: Request, exc: BodyRefused):
        return message(request, exc.status, exc.ja, exc.en)

    async def on_grader_error(request: Request, exc: GraderError):
        traceback.print_exception(exc)                  # for staff, in the server's log
        return message(request, 500, "サーバー側で問題が起きました。提出物は失われていません。担当教員に連絡してください。",
                       "Something went wrong on the server; nothing you handed in was lost. Please tell your "
                       "instructor.")

    routes = [
        Route("/", home),
        Route("/signin/{token}", signin, methods=["GET", "POST"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/a/{assignment}", assignment_page),
        Route("/a/{assignment}/upload", upload, methods=["POST"]),
        Route("/a/{assignment}/feedback", feedback),
        Route("/a/{assignment}/{what:str}", solution),
        Route("/receipt/{receipt}", receipt),
        Route("/staff/login", staff_login, methods=["GET", "POST"]),
        Route("/staff", staff_home),
        Route("/staff/a/{assignment}", staff_assignment),
        Route("/staff/a/{assignment}/grade", staff_action(_grade, "grade"), methods=["POST"]),
        Route("/staff/a/{assignment}/publish", staff_action(_publish, "publish"), methods=["POST"]),
        Route("/staff/a/{assignment}/release", staff_action(_release, "release"), methods=["POST"]),
        Route("/staff/a/{assignment}/results", staff_action(_results, "results"), methods=["POST"]),
        Route("/staff/a/{assignment}/feedback/{student}", staff_feedback),
        Route("/staff/a/{assignment}/download/{what}", staff_download),
        Route("/staff/a/{assignment}/download/feedback/{page}", staff_feedback),
        Route("/staff/jobs/{job:int}/log", staff_job_log),
        Route("/staff/receipt/{receipt}", staff_receipt),
        Route("/healthz", lambda request: PlainTextResponse("ok")),
    ]
    https = site.public_url.startswith("https://")
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(SecurityHeaders, https=https),
                                Middleware(SessionMiddleware, secret_key=site.secret_key, session_cookie="session",
                                           max_age=SESSION_DAYS * 86400, same_site="lax", https_only=https)],
                    exception_handlers={Forbidden: on_forbidden, BodyRefused: on_body_refused,
                                        GraderError: on_grader_error,
                                        404: lambda request, exc: not_found(request)})
    app.state.site = site
    app.state.jobs = JobRunner(site)
    app.state.throttle = LoginThrottle()
    app.state.verifying = asyncio.Semaphore(VERIFY_AT_ONCE)
    return app
