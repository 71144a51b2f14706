"""The submission site's ASGI app (Starlette): server-rendered pages, no JavaScript. This module puts it together:
the security headers every response carries, the exception handlers, the check and job runners that start and stop
with the app, and uvicorn's settings (``SERVER_LIMITS``, ``log_config``). The rest has a module each: auth.py
(sessions, CSRF, the throttle, roles), signin.py (the ways in), student_pages.py, staff_pages.py, views.py (how a
page is answered)."""

from __future__ import annotations

import contextlib
import copy
import traceback

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ..errors import GraderError
from ..grading.graders import check_graders
from . import lti_registration, lti_routes, signin, staff_pages, student_pages
from .auth import BodyRefused, Forbidden, HideSigninTokens, install, session_middleware
from .core import Site
from .lti_services import ScoreSender
from .selfcheck import CheckRunner
from .staff import JobRunner
from .views import message, not_found

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


def log_config() -> dict:
    """uvicorn's logging, its access log passed through ``HideSigninTokens``."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["signin_tokens"] = {"()": HideSigninTokens}
    config["handlers"]["access"]["filters"] = ["signin_tokens"]
    return config


class SecurityHeaders:
    """Headers every response carries (a pure ASGI middleware): HEADERS, and HSTS on an https site; a header the
    response set itself stays as it is (the LTI pages' own frame-ancestors, lti_routes.framable)."""

    def __init__(self, app, https: bool = False):
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in [*HEADERS.items(), *([HSTS] if https else [])]]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(event):
            if event["type"] == "http.response.start":
                own = list(event.get("headers", []))
                named = {k.lower() for k, _ in own}
                event["headers"] = own + [(k, v) for k, v in self.headers if k not in named]
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
            runners += [app.state.jobs, app.state.scores]
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

    routes = [*student_pages.ROUTES, *signin.ROUTES, *staff_pages.ROUTES, *lti_routes.ROUTES,
              *lti_registration.ROUTES, Route("/healthz", lambda request: PlainTextResponse("ok"))]
    https = site.public_url.startswith("https://")
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(SecurityHeaders, https=https), session_middleware(site, https)],
                    exception_handlers={Forbidden: on_forbidden, BodyRefused: on_body_refused,
                                        GraderError: on_grader_error,
                                        404: lambda request, exc: not_found(request)})
    app.state.site = site
    app.state.jobs = JobRunner(site)
    app.state.scores = ScoreSender(site)             # the LMS grade outbox (lti_services)
    install(app)
    return app
