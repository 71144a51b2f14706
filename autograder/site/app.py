"""The submission site's ASGI app (Starlette): server-rendered pages, no JavaScript.

Sessions are signed cookies (Starlette's SessionMiddleware, itsdangerous) carrying who signed in and the session
version they signed in with; every POST carries the session's CSRF token. A student's pages are found from the
session alone: an id in a URL (a receipt) is looked up together with the signed-in student, so another student's
is "not found". Hidden checks' messages and grader source never reach a student: the check view is
``public_view`` of a result, and the feedback page only after staff release it.
"""

from __future__ import annotations

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

from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
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
from .people import check_password, student_for_token
from .selfcheck import CheckRunner, public_view
from .staff import (GRADE, PUBLISH, JobRunner, exchange_zip, feedback_page, local_time, queue, queue_counts,
                    receive_results, recent_jobs, release_feedback, roster_states)

SESSION_DAYS = 14
FORM_OVERHEAD = 2**20                 # bytes of a multipart body besides the notebook itself
RESULTS_UPLOAD_LIMIT = 512 * 2**20    # a results folder without its store/ (the runs stay on the GPU runner)
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


async def checked_form(request: Request, **limits):
    """The POSTed form, once its CSRF token matches the session's (else 403)."""
    form = await request.form(**limits)
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
    if row is None or row.session_version != session.get("v") or (role == "student" and not row.active):
        session.clear()
        return None
    return row


def sign_in(request: Request, role: str, row) -> None:
    request.session.clear()
    request.session.update(role=role, id=row.id if role == "student" else row.username, v=row.session_version,
                           csrf=secrets.token_urlsafe(24))


class LoginThrottle:
    """After ``limit`` wrong passwords for one user name within ``window`` seconds, that name is refused until the
    window has passed: a password cannot be guessed at argon2's speed from the sign-in form."""

    def __init__(self, limit: int = 5, window: float = 900):
        self.limit, self.window = limit, window
        self._failures: dict[str, list[float]] = {}

    def _recent(self, username: str) -> list[float]:
        now = time.monotonic()
        recent = [t for t in self._failures.get(username, []) if now - t < self.window]
        self._failures[username] = recent
        return recent

    def blocked(self, username: str) -> bool:
        return len(self._recent(username)) >= self.limit

    def failed(self, username: str) -> None:
        self._recent(username).append(time.monotonic())

    def clear(self, username: str) -> None:
        self._failures.pop(username, None)


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

def page(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
    site: Site = request.app.state.site
    session = request.session
    who = session.get("id") if session.get("role") else None
    context.setdefault("error", None)
    return HTMLResponse(render(f"site/{template}", csrf=csrf_token(request), who=who, role=session.get("role"),
                               now=clock.local_text(clock.now(), site.config.timezone), **context),
                        status_code=status)


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
    site: Site = request.app.state.site
    student = await run_in_threadpool(student_for_token, site.engine, request.path_params["token"])
    if student is None:
        return message(request, 403, "このリンクは使えません (取り消されたか、新しいリンクに置き換えられました)。担当教員に連絡してください。",
                       "This link does not work (it was revoked or replaced by a newer one): ask your instructor.")
    sign_in(request, "student", student)
    return RedirectResponse("/", status_code=303)


async def signout(request: Request):
    await checked_form(request)
    role = request.session.get("role")
    request.session.clear()
    return RedirectResponse("/staff/login" if role == "staff" else "/", status_code=303)


def check_view(site: Site, row) -> dict | None:
    """The public view of an attempt's check, when it is done."""
    path = site.check_file(row.receipt)
    if row.check_state != DONE or not path.is_file():
        return None
    config = site.config_for(row.assignment)
    return public_view(json.loads(path.read_text(encoding="utf-8")), check_graders(config))


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
            "limit_mb": site.config_for(a.id).max_notebook_mb, "incomplete_label": INCOMPLETE_CHECKBOX}


@signed_in_as("student", with_assignment=True)
async def assignment_page(request: Request, student, a):
    site: Site = request.app.state.site
    return page(request, "assignment.html.j2", student=student, **assignment_context(site, student, a))


@signed_in_as("student", with_assignment=True)
async def upload(request: Request, student, a):
    site: Site = request.app.state.site
    limit = site.config_for(a.id).max_notebook_mb * 2**20
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        return message(request, 411, "ファイルの大きさが分かりません。もう一度アップロードしてください。",
                       "The upload did not say its size (Content-Length): please upload again.")
    if int(length) > limit + FORM_OVERHEAD:
        return _refused(request, site, student, a, 413, Refusal(
            f"ファイルが大きすぎます (上限 {limit // 2**20} MB)。出力を消去してから保存し直してください。\n"
            f"The file is too large (the limit is {limit // 2**20} MB): clear the outputs, save and upload again."))
    form = await checked_form(request, max_files=1, max_fields=5)
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
    throttle: LoginThrottle = request.app.state.throttle
    if throttle.blocked(username):
        return page(request, "staff_login.html.j2", status=429, error="throttled")
    member = await run_in_threadpool(check_password, site.engine, username, str(form.get("password", "")))
    if member is None:
        throttle.failed(username)
        return page(request, "staff_login.html.j2", status=401, error="wrong")
    throttle.clear(username)
    sign_in(request, "staff", member)
    return RedirectResponse("/staff", status_code=303)


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
    return page(request, "staff_assignment.html.j2", status=status, member=member, a=a,
                roster=roster_states(site, a.id), queue=queue_counts(site), jobs=recent_jobs(site, a.id),
                graded=(grades / "gradebook.csv").is_file(), release=release,
                released_time=local_time(site, release.released_at) if release else "",
                published=site.solution_page(a.id).is_file(), error=error,
                past_deadline=clock.now() > a.deadline)


def staff_action(action):
    @signed_in_as("staff", with_assignment=True)
    async def wrapped(request: Request, member, a):
        site: Site = request.app.state.site
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
    await checked_form(request)
    release_feedback(site, a.id, member.username)


async def _results(request, site, a, member):
    length = request.headers.get("content-length", "")
    if not length.isdigit() or int(length) > RESULTS_UPLOAD_LIMIT:
        raise Refusal(f"zip が大きすぎるか、大きさが分かりません (上限 {RESULTS_UPLOAD_LIMIT // 2**20} MB)。store/ を除いて zip "
                      "にしてください。\n"
                      f"The zip is too large or did not say its size (the limit is {RESULTS_UPLOAD_LIMIT // 2**20} MB): "
                      "leave out store/ (zip -r out.zip out -x 'out/store/*').")
    form = await checked_form(request, max_files=1, max_fields=5)
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
    """Headers every response carries (a pure ASGI middleware)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(event):
            if event["type"] == "http.response.start":
                event["headers"] = list(event.get("headers", [])) + [
                    (k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
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

    async def on_grader_error(request: Request, exc: GraderError):
        traceback.print_exception(exc)                  # for staff, in the server's log
        return message(request, 500, "サーバー側で問題が起きました。提出物は失われていません。担当教員に連絡してください。",
                       "Something went wrong on the server; nothing you handed in was lost. Please tell your "
                       "instructor.")

    routes = [
        Route("/", home),
        Route("/signin/{token}", signin),
        Route("/signout", signout, methods=["POST"]),
        Route("/a/{assignment}", assignment_page),
        Route("/a/{assignment}/upload", upload, methods=["POST"]),
        Route("/a/{assignment}/feedback", feedback),
        Route("/a/{assignment}/{what:str}", solution),
        Route("/receipt/{receipt}", receipt),
        Route("/staff/login", staff_login, methods=["GET", "POST"]),
        Route("/staff", staff_home),
        Route("/staff/a/{assignment}", staff_assignment),
        Route("/staff/a/{assignment}/grade", staff_action(_grade), methods=["POST"]),
        Route("/staff/a/{assignment}/publish", staff_action(_publish), methods=["POST"]),
        Route("/staff/a/{assignment}/release", staff_action(_release), methods=["POST"]),
        Route("/staff/a/{assignment}/results", staff_action(_results), methods=["POST"]),
        Route("/staff/a/{assignment}/feedback/{student}", staff_feedback),
        Route("/staff/a/{assignment}/download/{what}", staff_download),
        Route("/staff/a/{assignment}/download/feedback/{page}", staff_feedback),
        Route("/staff/jobs/{job:int}/log", staff_job_log),
        Route("/staff/receipt/{receipt}", staff_receipt),
        Route("/healthz", lambda request: PlainTextResponse("ok")),
    ]
    https = site.public_url.startswith("https://")
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(SecurityHeaders),
                                Middleware(SessionMiddleware, secret_key=site.secret_key, session_cookie="session",
                                           max_age=SESSION_DAYS * 86400, same_site="lax", https_only=https)],
                    exception_handlers={Forbidden: on_forbidden, GraderError: on_grader_error,
                                        404: lambda request, exc: not_found(request)})
    app.state.site = site
    app.state.jobs = JobRunner(site)
    app.state.throttle = LoginThrottle()
    return app
