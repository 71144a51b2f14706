"""How the site's handlers answer: a page from its template (with the session's CSRF token and who is signed in),
a message page, "not found", and ``signed_in_as``, which lets only a signed-in student or staff member reach a
handler."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from ..course import clock
from ..reports.pages import render
from .auth import csrf_token, signed_in
from .core import Site


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
