"""Staff's pages: the course's assignments at a glance (the roster's states, the check queue), one assignment's
page with its actions (grade the class, upload a GPU runner's results, release feedback, publish the solution,
each allowed by the member's role before anything is read), downloads, the similarity report, students' feedback
pages, any attempt's receipt with its whole check, and a job's log. What the actions do is staff.py's."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from ..classroom.similar import compare_class
from ..course import clock, extensions
from ..errors import Refusal
from ..reports import similarity
from . import records
from .auth import FORM_OVERHEAD, checked_form, may
from .core import Site
from .db import utc_text
from .selfcheck import StoredCheck
from .staff import (GRADE, PUBLISH, WITHHOLD_CHECKBOX, exchange_zip, feedback_page, grant_extension, local_time, queue,
                    queue_counts, receive_results, release_feedback, roster_states, take_back_extension)
from .views import not_found, page, signed_in_as

RESULTS_UPLOAD_LIMIT = 512 * 2**20    # a results folder without its store/ (the runs stay on the GPU runner)


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
                roster=roster_states(site, a.id), queue=queue_counts(site),
                jobs=records.recent_jobs(site.engine, a.id),
                graded=(grades / "gradebook.csv").is_file(), release=release,
                released_time=local_time(site, release.released_at) if release else "",
                published=site.solution_page(a.id).is_file(), error=error,
                past_deadline=clock.now() > a.deadline, extensions=extension_views(site, a),
                withhold_label=WITHHOLD_CHECKBOX, offset=clock.now().astimezone(site.config.timezone).strftime("%z"))


def extension_views(site: Site, a) -> list[dict]:
    """The assignment's extensions as the page lists them, the open ones marked."""
    moment = clock.now()
    return [{"e": e, "until": local_time(site, e.until), "granted": local_time(site, e.granted_at),
             "open": e.until > moment} for e in extensions.extensions_of(site.config, a.id)]



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
    form = await checked_form(request)
    request.app.state.jobs.submit(PUBLISH, a.id, member.username,
                                  withhold_extended=form.get("withhold_extended") == "yes")


async def _release(request, site, a, member):
    form = await checked_form(request)
    release_feedback(site, a.id, member.username, before_deadline=form.get("before_deadline") == "yes",
                     withhold_extended=form.get("withhold_extended") == "yes")


def _field(form, name: str, ja: str, en: str) -> str:
    """A text field of a form, or Refusal naming it (a file or nothing where text belongs)."""
    value = form.get(name)
    if not isinstance(value, str) or (not value.strip() and name != "reason"):
        raise Refusal(f"{ja}を入力してください。\nFill in {en}.")
    return value.strip()


async def _extend(request, site, a, member):
    form = await checked_form(request)
    await run_in_threadpool(grant_extension, site, a.id, member.username,
                            _field(form, "student", "学籍番号", "the student id"),
                            _field(form, "until", "延長後の締め切り", "the extended deadline"),
                            _field(form, "reason", "理由", "the reason") if "reason" in form else "")


async def _unextend(request, site, a, member):
    form = await checked_form(request)
    await run_in_threadpool(take_back_extension, site, a.id, member.username,
                            _field(form, "student", "学籍番号", "the student id"))


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


@signed_in_as("staff", with_assignment=True)
async def staff_similarity(request: Request, member, a):
    """The assignment's similarity report (as ``similarity`` writes it) from the exchange's latest submissions:
    staff only — it names students side by side and holds the accounts found in execution records."""
    site: Site = request.app.state.site
    report = await run_in_threadpool(similarity_of, site, a.id)
    return page(request, "staff_similarity.html.j2", member=member, **similarity.page_context(report))


def similarity_of(site: Site, assignment: str) -> similarity.Report:
    if not any((site.exchange / "submitted").glob(f"*/{assignment}")):
        return similarity.Report(assignment, 0, {}, [])
    return compare_class(site.exchange, site.config_for(assignment), assignment)


@signed_in_as("staff")
async def staff_receipt(request: Request, member):
    """One attempt as staff see it, read-only: its row and its check's whole result (hidden checks, notes)."""
    site: Site = request.app.state.site
    row = site.any_attempt(request.path_params["receipt"])
    if row is None:
        return not_found(request)
    check = StoredCheck.read(site.check_file(row.receipt))
    return page(request, "staff_receipt.html.j2", member=member, row=row, check=check and check.result,
                time=local_time(site, row.submitted_at), utc=utc_text(row.submitted_at),
                started=local_time(site, row.check_started_at) if row.check_started_at else "",
                finished=local_time(site, row.check_finished_at) if row.check_finished_at else "")


@signed_in_as("staff")
async def staff_job_log(request: Request, member):
    path = request.app.state.jobs.log_path(int(request.path_params["job"]))
    if not path.is_file():
        return not_found(request)
    return PlainTextResponse(path.read_text(encoding="utf-8", errors="replace")[-200_000:])


ROUTES = [
    Route("/staff", staff_home),
    Route("/staff/a/{assignment}", staff_assignment),
    Route("/staff/a/{assignment}/grade", staff_action(_grade, "grade"), methods=["POST"]),
    Route("/staff/a/{assignment}/publish", staff_action(_publish, "publish"), methods=["POST"]),
    Route("/staff/a/{assignment}/release", staff_action(_release, "release"), methods=["POST"]),
    Route("/staff/a/{assignment}/results", staff_action(_results, "results"), methods=["POST"]),
    Route("/staff/a/{assignment}/extensions", staff_action(_extend, "extend"), methods=["POST"]),
    Route("/staff/a/{assignment}/extensions/remove", staff_action(_unextend, "extend"), methods=["POST"]),
    Route("/staff/a/{assignment}/feedback/{student}", staff_feedback),
    Route("/staff/a/{assignment}/download/{what}", staff_download),
    Route("/staff/a/{assignment}/similarity", staff_similarity),
    Route("/staff/a/{assignment}/download/feedback/{page}", staff_feedback),
    Route("/staff/jobs/{job:int}/log", staff_job_log),
    Route("/staff/receipt/{receipt}", staff_receipt),
]
