"""Who is signed in, and how one signs in: the site's sessions, CSRF, the staff sign-in throttle and role checks.

Sessions are signed cookies (Starlette's SessionMiddleware, itsdangerous, ``session_middleware``) carrying who
signed in and the session version they signed in with (raised by a new link, a revoke or a sign-out: the older
cookies stop working); staff sessions also end after SITE_STAFF_IDLE_MIN unused. Every POST carries the session's
CSRF token, and no form is read before its size is known and within its own limits (``checked_form``). Staff's
roles are checked before an action reads anything (``may``, ``INSTRUCTOR_ACTIONS``).

A sign-in method finds who someone is (a student by their link's token, people.student_for_token; a staff member
by a password, ``verify_password``, throttled by ``LoginThrottle``) and then calls ``sign_in``: another method (an
LMS's LTI 1.3 launch) plugs in beside them the same way, its route in signin.py. Nothing here renders a page.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request

from .core import Site
from .people import check_password, session_holder

SESSION_DAYS = 14
FORM_OVERHEAD = 2**20                 # bytes of a multipart body besides the file it carries
SMALL_FORM = 4096                     # bytes: a CSRF token, a user name, a password, with room to spare
SMALL_FORM_LIMITS = {"max_files": 0, "max_fields": 4, "max_part_size": 1024}
VERIFY_AT_ONCE = 2                    # argon2 verifications at once (each takes ≈64 MiB for a moment)
VERIFY_WAIT_S = 10                    # how long a sign-in waits for one of them before "busy, try again"
STAFF_ACTIONS = {"grade", "results", "release", "publish", "extend"}     # the staff pages' POSTs
INSTRUCTOR_ACTIONS = {"grade", "results", "release", "extend"}             # a TA sees everything and publishes


# --- sessions ------------------------------------------------------------------------------------------------

def session_middleware(site: Site, https: bool) -> Middleware:
    """The session cookie: signed with the site's key, SESSION_DAYS at most, Secure on an https site."""
    return Middleware(SessionMiddleware, secret_key=site.secret_key, session_cookie="session",
                      max_age=SESSION_DAYS * 86400, same_site="lax", https_only=https)


def install(app) -> None:
    """What sign-in keeps in the app: the staff throttle, and the argon2 verifications allowed at once."""
    app.state.throttle = LoginThrottle()
    app.state.verifying = asyncio.Semaphore(VERIFY_AT_ONCE)


def signed_in(request: Request, role: str):
    """The signed-in student or staff row, if the session is one of ``role`` and still valid."""
    session = request.session
    if session.get("role") != role:
        return None
    site: Site = request.app.state.site
    row = session_holder(site.engine, role, session.get("id"))
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
    """A new session for ``row`` (a student or staff row, found by any sign-in method): whatever this browser's
    session held before is dropped, and it gets a fresh CSRF token."""
    request.session.clear()
    request.session.update(role=role, id=account_id(role, row), v=row.session_version,
                           csrf=secrets.token_urlsafe(24))
    if role == "staff":
        request.session["seen"] = wall_clock()


def account_id(role: str, row) -> str:
    """How a session names its account: a student by id, a staff member by user name."""
    return row.id if role == "student" else row.username


# --- CSRF and forms --------------------------------------------------------------------------------------------

def csrf_token(request: Request) -> str:
    if "csrf" not in request.session:
        request.session["csrf"] = secrets.token_urlsafe(24)
    return request.session["csrf"]


class Forbidden(Exception):
    """A POST whose CSRF token is not its session's."""


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
    token matches the session's (else Forbidden)."""
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


# --- staff passwords --------------------------------------------------------------------------------------------

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


THROTTLED, BUSY, WRONG = "throttled", "busy", "wrong"     # why a password sign-in failed (the page says which)


async def staff_by_password(request: Request, username: str, password: str):
    """The staff row a user name and password sign in, or why not: THROTTLED (too many attempts, nothing
    verified), BUSY (no verification free in time) or WRONG."""
    address = request.client.host if request.client else ""
    throttle: LoginThrottle = request.app.state.throttle
    if not throttle.attempt(address, username):
        return THROTTLED
    member = await verify_password(request, username, password)
    if member is False:
        return BUSY
    if member is None:
        return WRONG
    throttle.succeeded(address, username)
    return member


async def verify_password(request: Request, username: str, password: str):
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


# --- roles, and keys kept out of the logs ------------------------------------------------------------------------

def may(member) -> set[str]:
    """The staff actions ``member``'s role allows (README: the role table): an instructor all, a TA all but
    INSTRUCTOR_ACTIONS."""
    return STAFF_ACTIONS if member.role == "instructor" else STAFF_ACTIONS - INSTRUCTOR_ACTIONS


SIGNIN_PATH = re.compile(r"/signin/[^/?#\s]+")


class HideSigninTokens(logging.Filter):
    """The access log names a sign-in link's path without its token (a token there would be a key in the log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(record.args[2], str):
            record.args = (*record.args[:2], SIGNIN_PATH.sub("/signin/…", record.args[2]), *record.args[3:])
        return True
