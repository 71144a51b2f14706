"""LTI 1.3 as this site speaks it, a tool of one or more LMSs (platforms): the tool's keys, the checks of a
launch's signed id_token, the LMS roles mapped to the site's, and the calls the tool makes to a platform (its keys,
an access token for LTI Advantage's services). A small core on PyJWT (with ``cryptography``) instead of a library
(README: "LMS (LTI 1.3)" says why): the site is an async Starlette app with its own database and sessions, and a
launch needs only a handful of checks, each named here with the reason a refusal gives.

The routes (login initiation, launch, JWKS, deep linking) are lti_routes.py; the tables lti_store.py; grades and
the roster (AGS, NRPS) lti_services.py. Nothing here reads the database or renders a page.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..errors import GraderError
from ..files import write_atomic

CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
DL_CLAIM = "https://purl.imsglobal.org/spec/lti-dl/claim/"
AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
RESOURCE_LINK, DEEP_LINKING = "LtiResourceLinkRequest", "LtiDeepLinkingRequest"
SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
MEMBERSHIP_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
LEEWAY_S = 60                  # clocks of the LMS and the site may differ this much
LOGIN_TTL_S = 600              # a login initiation waits this long for its launch
FETCH_LIMIT = 2**20            # bytes of a platform's answer read at most (keys, tokens, a roster page)
FETCH_TIMEOUT_S = 10
KEYS_TTL_S = 300               # a platform's keys are fetched again after this, or at once for an unknown key id
KEYS_REFETCH_S = 10            # … but not more often than this (a token naming random key ids fetches no more)
LOGINS_MAX = 20_000            # login initiations waiting at once at most (each is a row for LOGIN_TTL_S)


class LaunchRefused(Exception):
    """A login initiation or launch refused: its status and the reason, in Japanese and English."""

    def __init__(self, status: int, ja: str, en: str):
        super().__init__(en)
        self.status, self.ja, self.en = status, ja, en


def refused(en: str, ja: str = "LMS からの起動を受け付けられませんでした", status: int = 400) -> LaunchRefused:
    """A refusal whose Japanese is general and whose English names the check (for the LMS's admin)."""
    return LaunchRefused(status, f"{ja}。もう一度 LMS から開いてください。解決しない場合は担当教員に次の英文を伝えてください。",
                         f"The launch from the LMS was refused: {en}")


# --- the tool's keys -------------------------------------------------------------------------------------------

def keys_dir(data: Path) -> Path:
    return Path(data) / "lti" / "keys"


def key_files(data: Path) -> list[Path]:
    """The tool's private keys, oldest first (a key's name is its id, and begins with when it was made)."""
    return sorted(keys_dir(data).glob("*.pem"))


def new_key(data: Path) -> str:
    """A new RSA key, readable by its owner only; → its key id. The newest key signs; the older ones stay published
    (``jwks``) until removed, so that what they signed still verifies while an LMS refreshes its copy."""
    folder = keys_dir(data)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    kid = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}-{secrets.token_hex(3)}"
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    umask = os.umask(0o077)
    try:
        write_atomic(folder / f"{kid}.pem", pem, durable=True)
    finally:
        os.umask(umask)
    (folder / f"{kid}.pem").chmod(0o600)
    return kid


def rotate_keys(data: Path, keep: int = 2) -> tuple[str, list[str]]:
    """A new signing key; the oldest beyond ``keep`` removed. → (the new key id, the removed ones)."""
    kid = new_key(data)
    removed = []
    for path in key_files(data)[:-keep]:
        path.unlink()
        removed.append(path.stem)
    return kid, removed


def signing_key(data: Path) -> tuple[str, object]:
    """(key id, private key) of the newest key, made on first use."""
    files = key_files(data) or [keys_dir(data) / f"{new_key(data)}.pem"]
    path = files[-1]
    return path.stem, serialization.load_pem_private_key(path.read_bytes(), password=None)


def jwks(data: Path) -> dict:
    """The tool's public keys as a JSON Web Key Set (what its JWKS URL answers)."""
    if not key_files(data):
        new_key(data)
    keys = []
    for path in key_files(data):
        public = serialization.load_pem_private_key(path.read_bytes(), password=None).public_key()
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
        keys.append({**jwk, "kid": path.stem, "alg": "RS256", "use": "sig"})
    return {"keys": keys}


def sign(data: Path, claims: dict, lifetime_s: int = 300) -> str:
    """``claims`` as a JWT signed by the tool's newest key, issued now and expiring after ``lifetime_s``."""
    kid, key = signing_key(data)
    now = int(time.time())
    return jwt.encode({"iat": now, "exp": now + lifetime_s, "jti": secrets.token_urlsafe(16), **claims}, key,
                      algorithm="RS256", headers={"kid": kid})


# --- what the tool fetches from a platform ------------------------------------------------------------------------

class PlatformError(Exception):
    """A platform's service answered with an error or not at all: ``status`` (0: no answer), its words."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None):
        super().__init__(f"HTTP {status}: {detail}" if status else detail)
        self.status, self.detail, self.retry_after = status, detail, retry_after

    @property
    def temporary(self) -> bool:
        """Worth trying again later: no answer, too many requests, or the platform's own failure."""
        return self.status == 0 or self.status == 429 or self.status >= 500


def call(url: str, data: bytes | None = None, headers: dict | None = None, method: str | None = None):
    """One HTTP request to a platform: → (its JSON or None, its headers); PlatformError for an error status or no
    answer. At most FETCH_LIMIT bytes are read; only http(s) URLs (an admin registered them) are opened."""
    if not url.startswith(("https://", "http://")):
        raise PlatformError(0, f"not an http(s) URL: {url!r}")
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:
            body = response.read(FETCH_LIMIT + 1)
            found = dict(response.headers)
    except urllib.error.HTTPError as exc:
        text = exc.read(2000).decode("utf-8", "replace")
        retry = exc.headers.get("Retry-After", "")
        raise PlatformError(exc.code, " ".join(text.split())[:500] or exc.reason,
                            float(retry) if retry.isdigit() else None) from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise PlatformError(0, f"{url}: no answer ({getattr(exc, 'reason', exc)})") from exc
    if len(body) > FETCH_LIMIT:
        raise PlatformError(0, f"{url}: the answer is larger than {FETCH_LIMIT} bytes")
    if not body.strip():
        return None, found
    try:
        return json.loads(body), found
    except ValueError as exc:
        raise PlatformError(0, f"{url}: the answer is not JSON") from exc


class PlatformKeys:
    """Each platform's public keys (its JWKS URL's), kept KEYS_TTL_S and fetched again at once for a key id it
    did not hold (the platform rotated its keys)."""

    def __init__(self, fetch=call):
        self.fetch = fetch
        self._sets: dict[str, tuple[float, jwt.PyJWKSet]] = {}
        self._lock = threading.Lock()

    def key(self, url: str, kid: str | None):
        for fresh in (False, True):
            keys = self._keys(url, fresh)
            found = [k for k in keys.keys if kid is None or k.key_id == kid]
            if len(found) == 1 or (found and kid is not None):
                return found[0].key
            if kid is None and len(keys.keys) > 1:
                raise refused("the id_token names no key id (kid) and the platform publishes several keys")
        raise refused(f"the id_token's key id {kid!r} is not among the platform's keys ({url})")

    def _keys(self, url: str, fresh: bool) -> jwt.PyJWKSet:
        with self._lock:
            kept = self._sets.get(url)
            age = time.monotonic() - kept[0] if kept else None
            if age is not None and (age < KEYS_REFETCH_S or not fresh and age < KEYS_TTL_S):
                return kept[1]
        try:
            found, _ = self.fetch(url)
            keys = jwt.PyJWKSet.from_dict(found)
        except PlatformError as exc:
            raise refused(f"the platform's keys could not be fetched from {url}: {exc}", status=502) from exc
        except (jwt.PyJWKSetError, jwt.InvalidKeyError, TypeError, AttributeError) as exc:
            raise refused(f"the platform's keys at {url} are not a key set: {exc}", status=502) from exc
        with self._lock:
            self._sets[url] = (time.monotonic(), keys)
        return keys


# --- a launch's id_token ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Registration:
    """What a launch is checked against: one registration (lti_platforms) and its deployments."""
    id: int
    issuer: str
    client_id: str
    auth_url: str
    token_url: str
    jwks_url: str
    deployments: frozenset


def unverified_header(token: str) -> dict:
    try:
        return jwt.get_unverified_header(token)
    except jwt.DecodeError as exc:
        raise refused(f"the id_token is not a JWT ({exc})") from exc


def verify_id_token(token: str, platform: Registration, keys: PlatformKeys) -> dict:
    """The id_token's claims, once its signature (by one of the platform's keys, RS256 only), issuer, audience
    (the client id; ``azp`` too when there are several), expiry, LTI version, message type and deployment are
    checked; else LaunchRefused naming the first check that failed. The nonce and state are the caller's (they
    need the database)."""
    if not isinstance(token, str) or not token or len(token) > 64_000:
        raise refused("no id_token was sent (or it is too large)")
    header = unverified_header(token)
    if header.get("alg") != "RS256":
        raise refused(f"the id_token is signed with {header.get('alg')!r}; only RS256 is accepted")
    key = keys.key(platform.jwks_url, header.get("kid"))
    try:
        claims = jwt.decode(token, key, algorithms=["RS256"], audience=platform.client_id, issuer=platform.issuer,
                            leeway=LEEWAY_S, options={"require": ["exp", "iat", "iss", "aud", "sub", "nonce"]})
    except jwt.InvalidSignatureError as exc:
        raise refused("the id_token's signature is not the platform's") from exc
    except jwt.ExpiredSignatureError as exc:
        raise refused("the id_token has expired (is the server's clock right?)") from exc
    except jwt.InvalidIssuerError as exc:
        raise refused(f"the id_token's issuer is not {platform.issuer!r}") from exc
    except jwt.InvalidAudienceError as exc:
        raise refused(f"the id_token is not meant for this tool (its audience is not {platform.client_id!r})") from exc
    except jwt.PyJWTError as exc:
        raise refused(f"the id_token is not valid: {exc}") from exc
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != platform.client_id:
        raise refused(f"the id_token has several audiences and its azp is not {platform.client_id!r}")
    if claims.get(CLAIM + "version") != "1.3.0":
        raise refused(f"LTI version {claims.get(CLAIM + 'version')!r}; this tool speaks 1.3.0")
    if claims.get(CLAIM + "message_type") not in (RESOURCE_LINK, DEEP_LINKING):
        raise refused(f"message type {claims.get(CLAIM + 'message_type')!r} is not one this tool handles")
    deployment = claims.get(CLAIM + "deployment_id")
    if not isinstance(deployment, str) or deployment not in platform.deployments:
        raise refused(f"deployment {deployment!r} is not registered for {platform.issuer} (client "
                      f"{platform.client_id}): `python -m autograder lti register … --deployment ID` adds it",
                      status=403)
    if not isinstance(claims["sub"], str) or not 0 < len(claims["sub"]) <= 255:
        raise refused("the id_token names no user (sub)")
    return claims


# --- roles ------------------------------------------------------------------------------------------------------

MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership"
INSTRUCTOR = {f"{MEMBERSHIP}#Instructor", f"{MEMBERSHIP}#ContentDeveloper", "Instructor"}
TEACHING_ASSISTANT = {f"{MEMBERSHIP}/Instructor#TeachingAssistant", f"{MEMBERSHIP}#TeachingAssistant",
                      "TeachingAssistant"}
LEARNER = {f"{MEMBERSHIP}#Learner", "Learner"}


def site_role(claims: dict) -> str | None:
    """The site's role for a launch, from the signed roles claim (the course membership roles) alone, never from
    custom parameters or any other claim: "instructor", "ta" (a teaching assistant, even with Instructor beside
    it, as LTI sends a sub-role with its principal role), "student", or None (no role in the course: an
    administrator who is no member, a guest)."""
    roles = claims.get(CLAIM + "roles")
    roles = {r for r in roles if isinstance(r, str)} if isinstance(roles, list) else set()
    if roles & TEACHING_ASSISTANT:
        return "ta"
    if roles & INSTRUCTOR:
        return "instructor"
    if roles & LEARNER:
        return "student"
    return None


# --- LTI Advantage: an access token for the platform's services -------------------------------------------------

class AccessTokens:
    """Access tokens for a platform's services (client credentials with the tool's signed assertion), kept until a
    minute before they expire."""

    def __init__(self, data: Path, fetch=call):
        self.data, self.fetch = Path(data), fetch
        self._tokens: dict[tuple, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def token(self, platform: Registration, scopes: tuple[str, ...]) -> str:
        key = (platform.token_url, platform.client_id, scopes)
        with self._lock:
            kept = self._tokens.get(key)
            if kept and kept[0] > time.monotonic():
                return kept[1]
        assertion = sign(self.data, {"iss": platform.client_id, "sub": platform.client_id,
                                     "aud": platform.token_url})
        body = urllib.parse.urlencode({
            "grant_type": "client_credentials", "scope": " ".join(scopes),
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion}).encode()
        found, _ = self.fetch(platform.token_url, body, {"Content-Type": "application/x-www-form-urlencoded",
                                                         "Accept": "application/json"})
        if not isinstance(found, dict) or not isinstance(found.get("access_token"), str):
            raise PlatformError(0, f"{platform.token_url}: the answer holds no access_token")
        lifetime = found.get("expires_in") if isinstance(found.get("expires_in"), int) else 3600
        with self._lock:
            self._tokens[key] = (time.monotonic() + max(lifetime - 60, 0), found["access_token"])
        return found["access_token"]

    def forget(self, platform: Registration) -> None:
        """Drop the platform's tokens (a 401: the token was revoked or expired early)."""
        with self._lock:
            for key in [k for k in self._tokens if k[:2] == (platform.token_url, platform.client_id)]:
                del self._tokens[key]


def check_url(url: str, what: str) -> str:
    """A platform URL given at registration: https (http only for a loopback address, in tests)."""
    parsed = urllib.parse.urlsplit(url or "")
    loopback = parsed.hostname in ("127.0.0.1", "localhost", "::1")
    if parsed.scheme != "https" and not (parsed.scheme == "http" and loopback) or not parsed.hostname:
        raise GraderError(f"{what} {url!r} is not an https:// URL")
    return url

