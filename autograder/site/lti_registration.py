"""LTI Dynamic Registration: an LMS administrator pastes one URL (``/lti/register?key=…``, made by ``python -m
autograder lti registration-url``) into the LMS (Moodle 4.x: Site administration → Plugins → Activity modules →
External tool → Manage tools → "Tool URL" → "Add LTI Advantage"); the LMS opens it with its OpenID configuration's
URL and a registration token; the site reads the configuration, registers itself at the LMS's registration
endpoint (its login, launch and keyset URLs, the scopes it uses, deep linking) and records the platform with the
client id and deployment the LMS gave.

The URL's key is random, usable once and for a limited time: a registered platform is trusted to say who its users
are (a launch links a roster student by student number or e-mail), so no one without the key can register one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import urllib.parse

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from ..errors import GraderError
from . import lti_store
from .core import Site
from .lti import MEMBERSHIP_SCOPE, SCORE_SCOPE, PlatformError, call, check_url
from .lti_routes import framable, origin
from .views import message, page

TOOL_CONFIGURATION = "https://purl.imsglobal.org/spec/lti-tool-configuration"
SCOPES = (SCORE_SCOPE, "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly",
          "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly", MEMBERSHIP_SCOPE)
# The registration page tells the LMS it is done (LTI Dynamic Registration's close message): the one script the site
# runs, allowed by its hash on that page alone.
CLOSE_SCRIPT = "(window.opener || window.parent).postMessage({subject: 'org.imsglobal.lti.close'}, '*');"
CLOSE_HASH = base64.b64encode(hashlib.sha256(CLOSE_SCRIPT.encode()).digest()).decode()
KEY_HOURS = 24


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def registration_url(site: Site, hours: float = KEY_HOURS) -> str:
    """A new dynamic registration URL, usable once within ``hours``; only its key's hash is kept."""
    key = secrets.token_urlsafe(32)
    lti_store.registration_key(site.engine, key_hash(key), hours)
    return f"{site.public_url}/lti/register?key={key}"


def tool_configuration(site: Site) -> dict:
    """What the site asks the LMS to register (LTI Dynamic Registration's client registration request)."""
    launch = f"{site.public_url}/lti/launch"
    return {
        "application_type": "web", "response_types": ["id_token"], "grant_types": ["implicit", "client_credentials"],
        "initiate_login_uri": f"{site.public_url}/lti/login", "redirect_uris": [launch],
        "client_name": "Autograder 提出サイト / submission site", "jwks_uri": f"{site.public_url}/lti/jwks",
        "token_endpoint_auth_method": "private_key_jwt", "scope": " ".join(SCOPES),
        TOOL_CONFIGURATION: {
            "domain": urllib.parse.urlsplit(site.public_url).netloc, "target_link_uri": launch,
            "claims": ["iss", "sub", "name", "email"],
            "messages": [{"type": "LtiDeepLinkingRequest", "target_link_uri": launch,
                          "label": "Autograder 課題 / assignment"}],
            "description": "Notebook assignments: upload, public checks, feedback and grades.",
        },
    }


def register_at(site: Site, openid_url: str, registration_token: str) -> dict:
    """Read the LMS's OpenID configuration, register the tool at its registration endpoint, record the platform.
    → what was registered (issuer, client id, deployment). GraderError saying what is wrong."""
    check_url(openid_url, "openid_configuration")
    try:
        config, _ = call(openid_url, headers={"Accept": "application/json"})
    except PlatformError as exc:
        raise GraderError(f"the LMS's configuration could not be read from {openid_url}: {exc}") from exc
    config = config if isinstance(config, dict) else {}
    named = {k: config.get(k) for k in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri",
                                        "registration_endpoint")}
    missing = [k for k, v in named.items() if not isinstance(v, str) or not v]
    if missing:
        raise GraderError(f"the LMS's configuration at {openid_url} lacks {', '.join(missing)}")
    for k, v in named.items():
        check_url(v, k)
    if not openid_url.startswith(named["issuer"]):
        raise GraderError(f"the configuration's issuer {named['issuer']!r} is not the site it came from "
                          f"({openid_url})")
    headers = {"Content-Type": "application/json", "Accept": "application/json",
               **({"Authorization": f"Bearer {registration_token}"} if registration_token else {})}
    try:
        answer, _ = call(named["registration_endpoint"], json.dumps(tool_configuration(site)).encode(), headers,
                         method="POST")
    except PlatformError as exc:
        raise GraderError(f"the LMS refused the registration: {exc}") from exc
    answer = answer if isinstance(answer, dict) else {}
    client_id = answer.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise GraderError("the LMS's answer to the registration holds no client_id")
    tool = answer.get(TOOL_CONFIGURATION) if isinstance(answer.get(TOOL_CONFIGURATION), dict) else {}
    deployment = tool.get("deployment_id")
    deployments = [str(deployment)] if isinstance(deployment, (str, int)) and str(deployment) else []
    lti_store.register(site.engine, named["issuer"], client_id, named["authorization_endpoint"],
                       named["token_endpoint"], named["jwks_uri"], deployments,
                       str(config.get("https://purl.imsglobal.org/spec/lti-platform-configuration", {})
                           .get("product_family_code", ""))[:200] if isinstance(
                           config.get("https://purl.imsglobal.org/spec/lti-platform-configuration"), dict) else "")
    return {"issuer": named["issuer"], "client_id": client_id, "deployment": deployments[0] if deployments else ""}


async def register(request: Request):
    """The URL an LMS administrator pastes: its key used once, then the registration (``register_at``); the page
    says what was registered (or why not) and tells the LMS it may close its registration window."""
    site: Site = request.app.state.site
    key = request.query_params.get("key", "")
    openid_url = request.query_params.get("openid_configuration", "")[:1000]
    if not key or len(key) > 100 or not await run_in_threadpool(lti_store.use_registration_key, site.engine,
                                                                 key_hash(key)):
        return message(request, 403, "この登録用 URL は使えません (使用済みか期限切れです)。新しい URL を作ってください。",
                       "This registration URL does not work (it was used, or it expired): make a new one with "
                       "`python -m autograder lti registration-url`.")
    try:
        done = await run_in_threadpool(register_at, site, openid_url,
                                       request.query_params.get("registration_token", "")[:4000])
    except GraderError as exc:
        response = message(request, 502, "LMS への登録ができませんでした。新しい登録用 URL で、もう一度試してください。",
                           f"The registration with the LMS failed: {exc}. Try again with a new registration URL.")
        return framable(request, response, also=(origin(openid_url),))
    response = framable(request, page(request, "lti_registered.html.j2", done=done, script=CLOSE_SCRIPT))
    response.headers["Content-Security-Policy"] += f"; script-src 'sha256-{CLOSE_HASH}'"
    return response


ROUTES = [Route("/lti/register", register)]
