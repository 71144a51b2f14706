"""A student's pages: the home page (their assignments), one assignment's page with its upload form, an attempt's
receipt with its public check, their released feedback and the published solution. A student's pages are found
from the session alone: an id in a URL (a receipt) is looked up together with the signed-in student, so another
student's is "not found". Hidden checks' messages and grader source never reach a student: the check view is
``public_view`` of a result, and the feedback page only after staff release it."""

from __future__ import annotations

import datetime as dt

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse
from starlette.routing import Route

from ..course import clock
from ..course.late_policy import judge
from ..errors import Refusal
from ..grading.graders import check_graders
from ..lifecycle.submit import INCOMPLETE_CHECKBOX
from .auth import FORM_OVERHEAD, BodyRefused, checked_form, signed_in
from .core import Site
from .db import DONE, QUEUED, RUNNING
from .selfcheck import StoredCheck, public_view
from .staff import feedback_page, local_time
from .views import message, not_found, page, signed_in_as


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
        rows.append({"a": a, "latest": tries[0] if tries else None, "count": len(tries),
                     "deadline_text": local_time(site, site.deadline_of(student.id, a.id))})
    return page(request, "home.html.j2", student=student, rows=rows)



def check_view(site: Site, row) -> dict | None:
    """The public view of an attempt's check, when it is done."""
    check = StoredCheck.read(site.check_file(row.receipt)) if row.check_state == DONE else None
    if check is None:
        return None
    return public_view(check, check_graders(site.config_for(row.assignment)), site.never_shown(row.assignment))


def attempt_views(site: Site, rows: list) -> list[dict]:
    return [{"row": r, "time": local_time(site, r.submitted_at), "counts": i == 0} for i, r in enumerate(rows)]


def assignment_context(site: Site, student, a) -> dict:
    tries = site.attempts_of(student.id, a.id)
    own = site.deadline_of(student.id, a.id)          # an extension's, when they have one
    schedule = site.config_for(a.id).assignment.late_penalty
    lateness = judge(a.late_policy, schedule, own, clock.now())
    withheld = site.withheld_until(student.id, a.id) is not None
    return {"a": a, "attempts": attempt_views(site, tries),
            "check": check_view(site, tries[0]) if tries else None,
            "open": lateness.accepted, "late_now": lateness.late,
            "deadline_text": local_time(site, own), "extended": own != a.deadline,
            "penalty": schedule.describe() if schedule else None,
            "released": not withheld and bool(site.released_feedback(a.id)) and (
                feedback_page(site, a.id, student.id) is not None or not tries),
            "published": not withheld and site.solution_page(a.id).is_file(),
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
                utc_time=row.submitted_at.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
                replaced_time=local_time(site, replaced.submitted_at) if replaced else "",
                latest=tries[0].receipt == row.receipt, check=check_view(site, row),
                waiting=row.check_state in (QUEUED, RUNNING), position=site.waiting_before(row))


@signed_in_as("student", with_assignment=True)
async def feedback(request: Request, student, a):
    site: Site = request.app.state.site
    if site.withheld_until(student.id, a.id):
        return _after_your_deadline(request, site, student, a, "フィードバック", "Your feedback")
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
    if site.withheld_until(student.id, a.id):
        return _after_your_deadline(request, site, student, a, "解答", "The solution")
    name = {"solution": site.solution_page(a.id).name, "checks": "checks.html"}.get(request.path_params["what"])
    path = site.published(a.id) / name if name else None
    if path is None or not path.is_file():
        return message(request, 404, "解答はまだ公開されていません。", "The solution is not published yet.")
    return FileResponse(path, media_type="text/html; charset=utf-8")


def _after_your_deadline(request, site: Site, student, a, ja: str, en: str):
    """What waits for the class's deadline waits for a student's own extended one (nothing says it exists)."""
    own = local_time(site, site.deadline_of(student.id, a.id))
    return message(request, 404, f"{ja}はあなたの締め切り ({own}) の後に見られます。",
                   f"{en} is shown after your own deadline ({own}).")


ROUTES = [
    Route("/", home),
    Route("/a/{assignment}", assignment_page),
    Route("/a/{assignment}/upload", upload, methods=["POST"]),
    Route("/a/{assignment}/feedback", feedback),
    Route("/a/{assignment}/{what:str}", solution),
    Route("/receipt/{receipt}", receipt),
]
