"""An LTI 1.3 platform (an LMS's side) on loopback for the LTI tests, built on ``lti1p3platform`` (a Python
platform implementation): its Registration signs the launches' id_tokens and the access tokens, its message launch
builds the launch claims (user, roles, resource link, custom parameters, AGS and NRPS endpoints) and checks the
tool's authentication response, its platform configuration checks the tool's signed client assertion at the token
endpoint and the bearer token at the score and roster endpoints. lti1p3platform is a library without a server:
this module serves it (Starlette on uvicorn, 127.0.0.1 only) with the endpoints an LMS has — its keys, its OIDC
authorization endpoint, its token endpoint, a line item's scores and a course's memberships."""

from __future__ import annotations

import html
import json
import re
import socket
import threading
import time
import urllib.parse
import urllib.request

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lti1p3platform.deep_linking import LtiDeepLinking
from lti1p3platform.ltiplatform import LTI1P3PlatformConfAbstract
from lti1p3platform.message_launch import LTIAdvantageMessageLaunchAbstract
from lti1p3platform.registration import Registration
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.routing import Route

SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership"
LEARNER, INSTRUCTOR = f"{MEMBERSHIP}#Learner", f"{MEMBERSHIP}#Instructor"
TA = f"{MEMBERSHIP}/Instructor#TeachingAssistant"


def rsa_pem() -> tuple[str, str]:
    """(private, public) PEM of a new RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


class PlatformConf(LTI1P3PlatformConfAbstract):
    def init_platform_config(self, **kwargs):
        self._registration = kwargs["registration"]

    def get_registration_by_params(self, **kwargs):
        return self._registration


class Launch(LTIAdvantageMessageLaunchAbstract):
    def render_launch_form(self, launch_data, **kwargs):
        return launch_data


class FakeRequest:
    def __init__(self, get_data=None, form_data=None):
        self.get_data, self.form_data = get_data or {}, form_data or {}


class Platform:
    """The LMS: its users (id → name, e-mail, student number, roles), the launches prepared by ``initiation`` (the
    lti_message_hint names one), the scores its line items received, and ``down`` (how many of the next score posts
    it answers 503)."""

    def __init__(self, tool: str = "https://testserver", client_id: str = "tool-client-1",
                 deployment: str = "deployment-1"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.private, self.public = rsa_pem()
        self.registration = (Registration().set_iss(self.url).set_client_id(client_id)
                             .set_deployment_id(deployment).set_oidc_login_url(f"{tool}/lti/login")
                             .set_launch_url(f"{tool}/lti/launch").set_platform_private_key(self.private)
                             .set_platform_public_key(self.public))
        self.conf = PlatformConf(registration=self.registration)
        self.tool = tool
        self.users: dict[str, dict] = {}
        self.launches: dict[str, dict] = {}
        self.scores: list[tuple[str, dict]] = []
        self.members: list[dict] = []
        self.deep_links: list[tuple[dict, list]] = []
        self.registered: list[dict] = []
        self.registration_token = "a-registration-token"
        self.down = 0
        self.server = None

    # --- what the LMS knows --------------------------------------------------------------------------------
    def user(self, uid: str, roles: list[str], name: str = "", email: str = "", sourcedid: str = "") -> str:
        self.users[uid] = {"roles": roles, "name": name, "email": email, "sourcedid": sourcedid}
        return uid

    def initiation(self, uid: str, link: str = "link-1", custom: dict | None = None, ags: bool = True,
                   extra: dict | None = None, deep_link: bool = False) -> dict:
        """The login initiation's parameters for ``uid`` opening resource link ``link`` (what the LMS's page sends
        to the tool's login URL)."""
        hint = f"launch-{len(self.launches)}"
        self.launches[hint] = {"link": link, "custom": custom or {}, "ags": ags, "extra": extra or {},
                               "deep_link": deep_link}
        return {"iss": self.url, "login_hint": uid, "target_link_uri": f"{self.tool}/lti/launch",
                "lti_message_hint": hint, "client_id": self.registration.get_client_id(),
                "lti_deployment_id": self.registration.get_deployment_id()}

    def claims(self, uid: str, hint: str, nonce: str) -> dict:
        """A launch's claims, as lti1p3platform's message launch makes them."""
        user, prepared = self.users[uid], self.launches[hint]
        message = Launch(FakeRequest(), self.conf)
        message._registration = self.registration
        message.set_user_data(uid, user["roles"], user["name"] or None, user["email"] or None)
        message.set_resource_link_claim(prepared["link"], title="Assignment")
        message.set_launch_context_claim("course-1", context_title="Deep learning")
        message.set_custom_parameters_claim(prepared["custom"])
        if prepared["ags"]:
            message.set_ags(f"{self.url}/lineitems", f"{self.url}/lineitems/{prepared['link']}",
                            allow_creating_lineitems=False)
        message.set_nrps(f"{self.url}/memberships")
        extra = dict(prepared["extra"])
        if user["sourcedid"]:
            extra["https://purl.imsglobal.org/spec/lti/claim/lis"] = {"person_sourcedid": user["sourcedid"]}
        if prepared["deep_link"]:                   # an instructor adding the tool's activity: no resource link yet
            message.lti_claim_resource_link = None
            extra.update(LtiDeepLinking(f"{self.url}/deep_link_return").get_lti_deep_linking_launch_claim(
                "Add an activity", "", {"ltiResourceLink"}, {"opaque": "platform-data"}))
            extra["https://purl.imsglobal.org/spec/lti/claim/message_type"] = "LtiDeepLinkingRequest"
        message.set_extra_claims(extra)
        return {**message.get_launch_message(), "nonce": nonce}

    def sign(self, claims: dict, key: str | None = None, lifetime: int = 300, kid: str | None = None) -> str:
        """Claims signed as the platform signs an id_token (or by another ``key``), expiring after ``lifetime``."""
        now = int(time.time())
        return jwt.encode({"iat": now, "exp": now + lifetime, **claims}, key or self.private, algorithm="RS256",
                          headers={"kid": kid or self.registration.get_kid()})

    # --- its endpoints -------------------------------------------------------------------------------------
    async def course_page(self, request: Request):
        """The course's activity as the LMS shows it to a signed-in user: a link that starts the tool's login
        (the user named in the path stands in for the LMS's own session)."""
        query = urllib.parse.urlencode(self.initiation(request.path_params["uid"],
                                                       custom={"assignment": request.query_params["a"]}))
        return HTMLResponse(f'<h1>Deep learning</h1><a id="activity" href="{self.tool}/lti/login?'
                            f'{html.escape(query)}">Assignment</a>')

    async def jwks(self, request: Request):
        return JSONResponse({"keys": self.registration.get_jwks()})

    async def auth(self, request: Request):
        """The OIDC authorization endpoint: the tool's authentication request checked by lti1p3platform, then a
        page whose form posts the signed launch to the tool (a browser would submit it by script)."""
        params = dict(request.query_params)
        launch = Launch(FakeRequest(get_data=params), self.conf)
        launch._registration = self.registration
        try:
            launch.validate_preflight_response(params)
        except Exception as exc:                        # noqa: BLE001 (the LMS says so)
            return PlainTextResponse(f"bad authentication request: {exc!r}", status_code=400)
        if params.get("redirect_uri") != f"{self.tool}/lti/launch" or params.get("scope") != "openid":
            return PlainTextResponse("bad redirect_uri or scope", status_code=400)
        token = self.sign(self.claims(params["login_hint"], params["lti_message_hint"], params["nonce"]))
        return HTMLResponse(
            f'<form id="launch" method="post" action="{html.escape(params["redirect_uri"])}">'
            f'<input type="hidden" name="id_token" value="{token}">'
            f'<input type="hidden" name="state" value="{html.escape(params["state"])}">'
            '<button type="submit">Launch</button></form>'
            '<script>document.getElementById("launch").submit()</script>')

    async def deep_link_return(self, request: Request):
        """The deep linking response, checked by lti1p3platform (the tool's signature, its message type, the
        content items' types): the items become the course's activities."""
        form = dict(await request.form())
        try:
            items = self.conf.validate_deeplinking_resp(form)
        except Exception as exc:                        # noqa: BLE001
            return PlainTextResponse(f"refused: {exc!r}", status_code=400)
        claims = jwt.decode(form["JWT"], options={"verify_signature": False})
        self.deep_links.append((claims, items))
        return PlainTextResponse(f"added {len(items)} item(s)")

    # Dynamic registration: lti1p3platform has none, so these two endpoints are a stub written here (the
    # OpenID configuration and the registration endpoint, as LTI Dynamic Registration and Moodle 4.x have them).
    async def openid_configuration(self, request: Request):
        return JSONResponse({
            "issuer": self.url, "authorization_endpoint": f"{self.url}/auth", "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks", "registration_endpoint": f"{self.url}/register",
            "scopes_supported": [SCORE_SCOPE, NRPS_SCOPE], "response_types_supported": ["id_token"],
            "https://purl.imsglobal.org/spec/lti-platform-configuration": {
                "product_family_code": "moodle", "version": "4.3",
                "messages_supported": [{"type": "LtiResourceLinkRequest"}, {"type": "LtiDeepLinkingRequest"}]}})

    async def register_tool(self, request: Request):
        if request.headers.get("authorization") != f"Bearer {self.registration_token}":
            return JSONResponse({"error": "invalid registration token"}, status_code=401)
        self.registered.append(await request.json())
        return JSONResponse({**self.registered[-1], "client_id": "dynamic-client-7",
                             "https://purl.imsglobal.org/spec/lti-tool-configuration": {
                                 **self.registered[-1]["https://purl.imsglobal.org/spec/lti-tool-configuration"],
                                 "deployment_id": "12"}})

    async def token(self, request: Request):
        form = dict(await request.form())
        try:
            return JSONResponse(self.conf.get_access_token(form))
        except Exception as exc:                        # noqa: BLE001
            return JSONResponse({"error": "invalid_client", "error_description": repr(exc)}, status_code=401)

    def bearer(self, request: Request, scope: str) -> bool:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        try:
            return self.conf.validate_token(token, allowed_scopes=[scope])
        except Exception:                               # noqa: BLE001
            return False

    async def score(self, request: Request):
        if not self.bearer(request, SCORE_SCOPE):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        if request.headers.get("content-type") != "application/vnd.ims.lis.v1.score+json":
            return JSONResponse({"error": "wrong content type"}, status_code=415)
        if self.down > 0:
            self.down -= 1
            return JSONResponse({"error": "maintenance"}, status_code=503)
        payload = await request.json()
        if payload.get("userId") not in self.users:
            return JSONResponse({"error": f"no user {payload.get('userId')}"}, status_code=400)
        self.scores.append((request.path_params["item"], payload))
        return JSONResponse({})

    async def memberships(self, request: Request):
        if not self.bearer(request, NRPS_SCOPE):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        page = int(request.query_params.get("page", "1"))             # two members a page: the tool follows Link
        headers = {"Link": f'<{self.url}/memberships?page={page + 1}>; rel="next"'} \
            if len(self.members) > 2 * page else {}
        return JSONResponse({"id": f"{self.url}/memberships", "context": {"id": "course-1"},
                             "members": self.members[2 * (page - 1):2 * page]}, headers=headers,
                            media_type="application/vnd.ims.lti-nrps.v2.membershipcontainer+json")

    # --- serving ---------------------------------------------------------------------------------------------
    def start(self, tool_jwks: dict) -> Platform:
        """Serve on 127.0.0.1, trusting the tool's public keys ``tool_jwks`` (as a registration copies them)."""
        self.registration.set_tool_key_set(tool_jwks)
        app = Starlette(routes=[Route("/jwks", self.jwks), Route("/auth", self.auth),
                                Route("/course/{uid}", self.course_page),
                                Route("/token", self.token, methods=["POST"]),
                                Route("/deep_link_return", self.deep_link_return, methods=["POST"]),
                                Route("/.well-known/openid-configuration", self.openid_configuration),
                                Route("/register", self.register_tool, methods=["POST"]),
                                Route("/lineitems/{item}/scores", self.score, methods=["POST"]),
                                Route("/memberships", self.memberships)])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        threading.Thread(target=self.server.run, daemon=True).start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True

    def register(self, engine, deployments: list[str] | None = None) -> int:
        """The tool's side of a manual registration of this platform."""
        from autograder.site import lti_store

        return lti_store.register(engine, self.url, self.registration.get_client_id(), f"{self.url}/auth",
                                  f"{self.url}/token", f"{self.url}/jwks",
                                  deployments or [self.registration.get_deployment_id()], "Test LMS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def auto_form(page: str) -> dict:
    """The fields of the platform's auto-submitting launch form."""
    return {name: html.unescape(value) for name, value in re.findall(r'name="(\w+)" value="([^"]*)"', page)}


def browse(url: str) -> str:
    """A GET on the platform, as the browser's redirect would make it."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def query_of(url: str) -> dict:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def json_of(data: bytes) -> dict:
    return json.loads(data)
