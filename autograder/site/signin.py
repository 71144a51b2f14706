"""The sign-in pages, one route per way in: a student's personal link (``/signin/{token}``), a staff member's
password (``/staff/login``), and signing out of either. Another way in (an LMS's LTI 1.3 launch) is one more
route here: it finds its student (the ``identities`` table) and calls ``auth.sign_in`` as these do."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from .auth import BUSY, THROTTLED, WRONG, account_id, checked_form, sign_in, signed_in, staff_by_password
from .core import Site
from .people import end_sessions, student_for_token
from .views import message, page


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


REFUSED = {THROTTLED: (429, None), BUSY: (429, {"Retry-After": "10"}), WRONG: (401, None)}   # status, headers


async def staff_login(request: Request):
    if request.method == "GET":
        return page(request, "staff_login.html.j2")
    form = await checked_form(request)
    member = await staff_by_password(request, str(form.get("username", ""))[:64], str(form.get("password", "")))
    if isinstance(member, str):                        # why not: the page says it
        status, headers = REFUSED[member]
        return page(request, "staff_login.html.j2", status=status, error=member, headers=headers)
    sign_in(request, "staff", member)
    return RedirectResponse("/staff", status_code=303)


async def signout(request: Request):
    """Ends every session of the signed-in student or staff member (its session version is raised), not only
    this browser's cookie: a copied cookie stops working too."""
    await checked_form(request)
    role = request.session.get("role")
    who = signed_in(request, role) if role in ("student", "staff") else None
    if who is not None:
        site: Site = request.app.state.site
        await run_in_threadpool(end_sessions, site.engine, role, account_id(role, who))
    request.session.clear()
    return RedirectResponse("/staff/login" if role == "staff" else "/", status_code=303)


ROUTES = [
    Route("/signin/{token}", signin, methods=["GET", "POST"]),
    Route("/staff/login", staff_login, methods=["GET", "POST"]),
    Route("/signout", signout, methods=["POST"]),
]
