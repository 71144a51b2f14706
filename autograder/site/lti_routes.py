"""The site as an LTI 1.3 tool: its public keys (``/lti/jwks``), the OIDC login initiation (``/lti/login``) and the
launch (``/lti/launch``), after which a learner is signed in as their roster student on their assignment's page, and
an instructor or TA as staff.

The initiation and the launch come cross-site from the LMS (a form POST from its page): no CSRF token can be in
them. They are protected by LTI's own: the login initiation makes a random ``state`` and ``nonce`` and binds the
state to this browser by a cookie (a secret whose hash the database keeps); the launch is accepted only with that
state (once, within LOGIN_TTL_S), from the browser holding its cookie, and with an id_token signed by the
platform that carries that nonce, used once. The cookie is ``SameSite=None; Secure`` on an https site (a launch is
a cross-site POST). Inside an LMS iframe the site does not run (its pages refuse to be framed, and browsers block a
framed site's cookies): the initiation answers, in the frame, with a button that opens the launch in a new window
(README: "LMS (LTI 1.3)").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import urllib.parse

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..grading.checks import max_score
from ..grading.graders import check_graders
from . import lti_store
from .auth import BodyRefused, body_length, checked_form, may, sign_in
from .core import Site
from .lti import (AGS_CLAIM, CLAIM, DEEP_LINKING, DL_CLAIM, LOGIN_TTL_S, NRPS_CLAIM, LaunchRefused, PlatformKeys, jwks,
                  refused, sign, site_role, verify_id_token)
from .lti_services import queue_assignment
from .records import log_event
from .views import message, page, signed_in_as

LOGIN_FIELDS = ("iss", "login_hint", "target_link_uri", "lti_message_hint", "client_id", "lti_deployment_id")
LAUNCH_FORM = 64 * 1024               # bytes: an id_token and its state
LAUNCH_LIMITS = {"max_files": 0, "max_fields": 8, "max_part_size": 60 * 1024}
LOGIN_FORM = 8 * 1024
LOGIN_LIMITS = {"max_files": 0, "max_fields": 10, "max_part_size": 2048}
COOKIE = "lti_state_"                 # + the state's first STATE_IN_NAME characters: one per launch under way
STATE_IN_NAME = 16


def platform_keys(request: Request) -> PlatformKeys:
    state = request.app.state
    if not hasattr(state, "lti_keys"):
        state.lti_keys = PlatformKeys()
    return state.lti_keys


def framable(request: Request, response: Response, also: tuple[str, ...] = ()) -> Response:
    """The LTI pages may be shown inside the registered LMSs' pages (only these, and ``also``: every other page of
    the site refuses to be framed): their refusals and the "open in a new window" button are seen where the LMS
    shows the tool."""
    site: Site = request.app.state.site
    origins = sorted({origin(url) for r in lti_store.registrations(site.engine) for url in (r.issuer, r.auth_url)}
                     .union(also) - {""})
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
        f"frame-ancestors {' '.join(origins) or chr(39) + 'none' + chr(39)}")
    return response


def origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else ""


def refusal(request: Request, exc: LaunchRefused) -> Response:
    return framable(request, message(request, exc.status, exc.ja, exc.en))


async def form_of(request: Request, size: int, limits: dict) -> dict:
    """A POSTed form (without CSRF: it comes from the LMS's page), read only within its limits."""
    body_length(request, size)
    try:
        form = await request.form(**limits)
    except HTTPException as exc:
        raise BodyRefused(400, "送信されたフォームを読めませんでした。", f"The form could not be read ({exc.detail}).") from exc
    return {k: v for k, v in form.items() if isinstance(v, str)}


# --- the tool's keys -------------------------------------------------------------------------------------------

async def jwks_route(request: Request):
    site: Site = request.app.state.site
    return JSONResponse(await run_in_threadpool(jwks, site.data), headers={"Cache-Control": "max-age=300"})


# --- login initiation --------------------------------------------------------------------------------------------

async def login(request: Request):
    """The LMS's third-party login initiation: → a redirect to its authorization endpoint with a new state and
    nonce, the state bound to this browser by a cookie."""
    site: Site = request.app.state.site
    try:
        params = dict(request.query_params) if request.method == "GET" else await form_of(request, LOGIN_FORM,
                                                                                              LOGIN_LIMITS)
        params = {k: params[k][:2048] for k in LOGIN_FIELDS if isinstance(params.get(k), str) and params[k]}
        for needed in ("iss", "login_hint", "target_link_uri"):
            if needed not in params:
                raise refused(f"the login initiation has no {needed}")
        platform = await run_in_threadpool(lti_store.registration_for, site.engine, params["iss"],
                                           params.get("client_id"))
        if platform is None:
            raise refused(f"no platform is registered with issuer {params['iss']!r}"
                          + (f" and client id {params['client_id']!r}" if "client_id" in params else
                             " (or several are, and the initiation names no client_id)"), status=403)
        if origin(params["target_link_uri"]) != origin(site.public_url):
            raise refused(f"the target link {params['target_link_uri']!r} is not this tool's ({site.public_url})")
        if request.headers.get("sec-fetch-dest") == "iframe" and request.query_params.get("window") != "new":
            return framable(request, page(request, "lti_new_window.html.j2", blocked=False,
                                          query=urllib.parse.urlencode({**params, "window": "new"})))
    except (LaunchRefused, BodyRefused) as exc:
        return refusal(request, exc if isinstance(exc, LaunchRefused) else LaunchRefused(exc.status, exc.ja, exc.en))
    state, nonce, secret = (secrets.token_urlsafe(32) for _ in range(3))
    if not await run_in_threadpool(lti_store.start_login, site.engine, state, digest(secret), nonce, platform.id,
                                   params):
        return refusal(request, LaunchRefused(
            429, "いま LMS からの起動が集中しています。少し待ってから、もう一度開いてください。",
            "Too many launches are under way: wait a minute and open the tool from the LMS again."))
    query = {"scope": "openid", "response_type": "id_token", "response_mode": "form_post", "prompt": "none",
             "client_id": platform.client_id, "redirect_uri": f"{site.public_url}/lti/launch",
             "login_hint": params["login_hint"], "state": state, "nonce": nonce,
             **({"lti_message_hint": params["lti_message_hint"]} if "lti_message_hint" in params else {})}
    separator = "&" if "?" in platform.auth_url else "?"
    response = RedirectResponse(f"{platform.auth_url}{separator}{urllib.parse.urlencode(query)}", status_code=302)
    https = site.public_url.startswith("https://")
    response.set_cookie(COOKIE + state[:STATE_IN_NAME], secret, max_age=LOGIN_TTL_S, path="/lti/launch",
                        httponly=True, secure=https, samesite="none" if https else "lax")
    return response


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# --- the launch ------------------------------------------------------------------------------------------------

async def launch(request: Request):
    """The id_token checked (lti.verify_id_token, then state, browser and nonce here); its user signed in as the
    roster student or the staff member they are, on their assignment's page."""
    site: Site = request.app.state.site
    try:
        form = await form_of(request, LAUNCH_FORM, LAUNCH_LIMITS)
        if "error" in form:
            raise refused(f"the platform answered with an error: {form['error'][:200]} "
                          f"{form.get('error_description', '')[:500]}")
        state = form.get("state", "")
        started = await run_in_threadpool(lti_store.take_login, site.engine, state)
        if started is None:
            raise refused("the launch's state is unknown, used already or older than "
                          f"{LOGIN_TTL_S // 60} minutes: open the tool from the LMS again", status=403)
        secret = request.cookies.get(COOKIE + state[:STATE_IN_NAME])
        if secret is None:
            return not_this_browser(request, json.loads(started.params))
        if not hmac.compare_digest(digest(secret), started.browser):
            raise refused("the launch's state belongs to another browser", status=403)
        platform = await run_in_threadpool(lti_store.registration, site.engine, started.platform_id)
        claims = await run_in_threadpool(verify_id_token, form.get("id_token", ""), platform, platform_keys(request))
        if not isinstance(claims["nonce"], str) or not await run_in_threadpool(
                lti_store.use_nonce, site.engine, platform.issuer, claims["nonce"][:255]):
            raise refused("the id_token's nonce was used before (a replayed launch)", status=403)
        if not hmac.compare_digest(claims["nonce"].encode(), started.nonce.encode()):
            raise refused("the id_token's nonce is not the one this login initiation made", status=403)
        response = await signed_in_by(request, site, platform, claims)
    except (LaunchRefused, BodyRefused) as exc:
        return refusal(request, exc if isinstance(exc, LaunchRefused) else LaunchRefused(exc.status, exc.ja, exc.en))
    response.delete_cookie(COOKIE + state[:STATE_IN_NAME], path="/lti/launch")
    return response


def not_this_browser(request: Request, params: dict) -> Response:
    """A launch whose browser holds no cookie of its state: begun in another browser, or (most often) inside an
    LMS iframe whose browser blocks the site's cookies there. No one is signed in; a button begins the launch again
    in a new window, where the cookie is the site's own."""
    return framable(request, page(request, "lti_new_window.html.j2", status=403, blocked=True,
                                  query=urllib.parse.urlencode({**params, "window": "new"})))


async def signed_in_by(request: Request, site: Site, platform, claims: dict) -> Response:
    """Sign the launch's user in, by their role in the course (the signed roles claim alone), and answer with
    their page."""
    role = site_role(claims)
    if role is None:
        raise refused("the launch's user has no role in the course this tool maps (learner, instructor or teaching "
                      "assistant)", ja="あなたのコースでの役割 (学生・教員・TA) が LMS から届きませんでした", status=403)
    if claims[CLAIM + "message_type"] == DEEP_LINKING:
        return await deep_linking_request(request, site, platform, claims, role)
    assignment = await run_in_threadpool(link_assignment, site, platform, claims)
    if role == "student":
        lis = claims.get(CLAIM + "lis") if isinstance(claims.get(CLAIM + "lis"), dict) else {}
        who, _ = await run_in_threadpool(lti_store.student_for, site.engine, platform.issuer, claims["sub"],
                                         text(lis.get("person_sourcedid")), text(claims.get("email")),
                                         text(claims.get("name")))
        if not who.active:
            raise refused(f"student {who.id} may no longer sign in (revoked): ask the instructor",
                          ja="あなたのアカウントは取り消されています。担当教員に連絡してください", status=403)
        sign_in(request, "student", who)
        return RedirectResponse(f"/a/{assignment}" if assignment else "/", status_code=303)
    member = await run_in_threadpool(lti_store.staff_for, site.engine, platform.issuer, claims["sub"], role,
                                     text(claims.get("preferred_username")) or text(claims.get("email")))
    sign_in(request, "staff", member)
    return RedirectResponse(f"/staff/a/{assignment}" if assignment else "/staff", status_code=303)


# --- deep linking: the instructor picks the assignment an activity opens ---------------------------------------------

async def deep_linking_request(request: Request, site: Site, platform, claims: dict, role: str) -> Response:
    """An instructor adding the tool's activity: signed in as staff, then the assignments to choose from
    (``deep_link``). What the LMS asked (where to return, its opaque data) waits in the signed session."""
    settings = claims.get(DL_CLAIM + "deep_linking_settings")
    settings = settings if isinstance(settings, dict) else {}
    back = text(settings.get("deep_link_return_url"), 500)
    if role != "instructor":
        raise refused("only an instructor adds the tool's activities (deep linking)", status=403,
                      ja="課題の追加は担当教員 (instructor) だけが行えます")
    if not origin(back):
        raise refused("the deep linking request has no deep_link_return_url")
    accepted = settings.get("accept_types") if isinstance(settings.get("accept_types"), list) else []
    if "ltiResourceLink" not in accepted:
        raise refused(f"the LMS accepts no LTI resource link here (it accepts {accepted!r})")
    data = settings.get("data")
    member = await run_in_threadpool(lti_store.staff_for, site.engine, platform.issuer, claims["sub"], role,
                                     text(claims.get("preferred_username")) or text(claims.get("email")))
    sign_in(request, "staff", member)
    request.session["lti_dl"] = {"platform": platform.id, "deployment": claims[CLAIM + "deployment_id"],
                                 "back": back, "data": data if len(json.dumps(data)) <= 2000 else None}
    return RedirectResponse("/lti/deep-link", status_code=303)


@signed_in_as("staff")
async def deep_link(request: Request, member):
    """GET: the course's assignments, each with a button; POST (an instructor's, with CSRF): the chosen one goes
    back to the LMS as a resource link with its line item (the assignment's maximum score), in a deep linking
    response signed by the tool, posted by the instructor's browser to the LMS's return URL."""
    site: Site = request.app.state.site
    asked = request.session.get("lti_dl")
    if not isinstance(asked, dict) or "release" not in may(member):
        return message(request, 404, "LMS からの課題の追加は始まっていません。LMS の「活動を追加」からやり直してください。",
                       "No deep linking request from the LMS is under way: add the activity from the LMS again.")
    if request.method == "GET":
        return framable(request, page(request, "lti_deep_link.html.j2", assignments=site.assignments()))
    form = await checked_form(request)
    a = site.assignment(str(form.get("assignment", "")))
    if a is None:
        return framable(request, page(request, "lti_deep_link.html.j2", status=400, assignments=site.assignments(),
                                      error=("その課題はありません。", "There is no such assignment.")))
    platform = await run_in_threadpool(lti_store.registration, site.engine, asked["platform"])
    token = await run_in_threadpool(deep_linking_response, site, platform, asked, a)
    del request.session["lti_dl"]
    response = page(request, "lti_deep_link_return.html.j2", a=a, back=asked["back"], jwt=token)
    framable(request, response)
    response.headers["Content-Security-Policy"] = response.headers["Content-Security-Policy"].replace(
        "form-action 'self'", f"form-action {origin(asked['back'])}")
    return response


def deep_linking_response(site: Site, platform, asked: dict, a) -> str:
    """The signed LtiDeepLinkingResponse holding one resource link: it opens ``a`` (its custom parameter) and
    asks the LMS for a gradebook column of the assignment's maximum score."""
    title = f"{a.title_ja} / {a.title_en}" if a.title_ja != a.title_en else a.title_en
    item = {"type": "ltiResourceLink", "title": title[:200], "url": f"{site.public_url}/lti/launch",
            "custom": {"assignment": a.id},
            "lineItem": {"scoreMaximum": max_score(check_graders(site.config_for(a.id))), "label": title[:200],
                         "resourceId": a.id, "tag": "autograder"}}
    claims = {"iss": platform.client_id, "aud": platform.issuer, "nonce": secrets.token_urlsafe(16),
              CLAIM + "deployment_id": asked["deployment"], CLAIM + "message_type": "LtiDeepLinkingResponse",
              CLAIM + "version": "1.3.0", DL_CLAIM + "content_items": [item],
              **({DL_CLAIM + "data": asked["data"]} if asked.get("data") is not None else {})}
    return sign(site.data, claims, lifetime_s=600)


def text(value, limit: int = 200) -> str:
    """A claim's string, trimmed to ``limit`` (anything else: "")."""
    return value.strip()[:limit] if isinstance(value, str) else ""


def link_assignment(site: Site, platform, claims: dict) -> str | None:
    """The assignment a launch opens: its resource link's (recorded by deep linking or an earlier launch) or its
    custom parameter ``assignment``; the link is recorded with its line item and roster URLs (for grades and the
    roster). None for an assignment the course does not have (released)."""
    link = claims.get(CLAIM + "resource_link") if isinstance(claims.get(CLAIM + "resource_link"), dict) else {}
    custom = claims.get(CLAIM + "custom") if isinstance(claims.get(CLAIM + "custom"), dict) else {}
    link_id = text(link.get("id"))
    known = lti_store.link_of(site.engine, platform.id, link_id) if link_id else None
    assignment = text(custom.get("assignment")) or (known.assignment if known else "")
    if not assignment or site.assignment(assignment) is None:
        return None
    if link_id:
        ags = claims.get(AGS_CLAIM) if isinstance(claims.get(AGS_CLAIM), dict) else {}
        nrps = claims.get(NRPS_CLAIM) if isinstance(claims.get(NRPS_CLAIM), dict) else {}
        context = claims.get(CLAIM + "context") if isinstance(claims.get(CLAIM + "context"), dict) else {}
        lti_store.save_link(site.engine, platform.id, claims[CLAIM + "deployment_id"], link_id, assignment,
                            text(context.get("id")), text(ags.get("lineitem"), 500),
                            text(nrps.get("context_memberships_url"), 500))
    return assignment


# --- staff: the grades' passback --------------------------------------------------------------------------------

@signed_in_as("staff", with_assignment=True)
async def staff_lms(request: Request, member, a):
    """Each student's score and its state on the way to the LMS (sent, waiting, failed with the LMS's words)."""
    site: Site = request.app.state.site
    rows = await run_in_threadpool(lti_store.scores_of, site.engine, a.id)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    return page(request, "staff_lms.html.j2", a=a, rows=rows, counts=counts, can_send="release" in may(member),
                links=await run_in_threadpool(lti_store.links_of, site.engine, a.id))


@signed_in_as("staff", with_assignment=True)
async def staff_lms_send(request: Request, member, a):
    """Send again (an instructor's, as releasing is): the assignment's failed and waiting scores, or one
    student's, at once; the scores are queued again from the gradebook first (a score changed since is sent)."""
    if "release" not in may(member):
        return message(request, 403, "成績の再送は担当教員 (instructor) だけが行えます。",
                       f"Only an instructor may send grades again; your role is {member.role}.")
    form = await checked_form(request)
    site: Site = request.app.state.site
    student = form.get("student") if isinstance(form.get("student"), str) and form.get("student") else None
    await run_in_threadpool(queue_assignment, site, a.id)
    count = await run_in_threadpool(lti_store.send_again, site.engine, a.id, student)
    await run_in_threadpool(log_event, site.engine, member.username, "sent grades again",
                            f"{a.id}: {count}" + (f" ({student})" if student else ""))
    request.app.state.scores.wake()
    return RedirectResponse(f"/staff/a/{a.id}/lms", status_code=303)


ROUTES = [
    Route("/lti/jwks", jwks_route),
    Route("/lti/login", login, methods=["GET", "POST"]),
    Route("/lti/launch", launch, methods=["POST"]),
    Route("/lti/deep-link", deep_link, methods=["GET", "POST"]),
    Route("/staff/a/{assignment}/lms", staff_lms),
    Route("/staff/a/{assignment}/lms/send", staff_lms_send, methods=["POST"]),
]
