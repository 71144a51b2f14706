"""The site as an LTI 1.3 tool, against a platform on loopback (tests/lti_platform.py, lti1p3platform served on
127.0.0.1): a learner's launch signs them in as their roster student on their assignment's page and they upload;
staff launch as staff with the LMS's role; every launch that should not sign anyone in is refused with its reason
(another key, issuer, audience, expiry, a replayed nonce, an unknown deployment, a state from another browser), and
a learner's custom claims make no one staff. The login initiation and launch come cross-site from the LMS: they
carry no CSRF token and are protected by state (bound to the browser by a cookie) and nonce instead."""

from __future__ import annotations

import datetime as dt
import html
import os
import stat

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from autograder.cli import main
from autograder.course.config import load_config
from autograder.site import lti, lti_store, people
from autograder.site.app import create_app
from autograder.site.core import Site
from autograder.site.db import identities, lti_nonces
from tests.lti_platform import INSTRUCTOR, LEARNER, TA, Platform, auto_form, browse, query_of, rsa_pem
from tests.test_site import BEFORE, PASSWORD, upload

TOOL = "https://testserver"


@pytest.fixture
def lms(tmp_path, monkeypatch):
    """A site (https, so its LTI cookie is SameSite=None; Secure) with a roster, and a platform registered with it."""
    monkeypatch.setenv("AUTOGRADER_NOW", BEFORE)
    site = Site(load_config(), tmp_path / "site", public_url=TOOL)
    people.import_roster(site.engine, [people.RosterRow(s, f"Student {s}", f"{s}@example.ac.jp")
                                       for s in ("s001", "s002", "s003")])
    people.add_staff(site.engine, "prof", PASSWORD, "instructor")
    platform = Platform(TOOL).start(lti.jwks(site.data))
    platform.register(site.engine)
    platform.user("learner-1", [LEARNER], "Student One", "someone@example.ac.jp", sourcedid="s001")
    platform.user("teacher-1", [INSTRUCTOR], "Prof. Tanaka", "tanaka@example.ac.jp")
    platform.user("ta-1", [INSTRUCTOR, TA], "TA Sato", "sato@example.ac.jp")
    yield site, platform
    platform.stop()


def browser(site) -> TestClient:
    return TestClient(create_app(site, run_checks=False, run_jobs=False), base_url=TOOL, follow_redirects=False)


def login(client, platform, uid, **prepared):
    """The LMS's page sends the browser to the tool's login initiation; → the tool's redirect to the platform."""
    r = client.get("/lti/login", params=platform.initiation(uid, **prepared))
    assert r.status_code == 302, r.text
    assert r.headers["location"].startswith(f"{platform.url}/auth?")
    return r


def launch(client, platform, uid="learner-1", **prepared):
    """A whole launch as a browser makes it: initiation, the platform's authorization, its form posted back."""
    form = auto_form(browse(login(client, platform, uid, **prepared).headers["location"]))
    return client.post("/lti/launch", data=form)


def said(r) -> str:
    """A page's text as a reader sees it (its entities unescaped)."""
    return html.unescape(r.text)


def signed_in_student(client) -> bool:
    return client.get("/a/assignment3").status_code == 200


# --- launches that sign in ---------------------------------------------------------------------------------------

def test_a_learners_launch_lands_on_their_assignment_signed_in_and_they_upload(lms):
    site, platform = lms
    client = browser(site)
    r = launch(client, platform, custom={"assignment": "assignment3"})
    assert r.status_code == 303 and r.headers["location"] == "/a/assignment3"
    page = client.get("/a/assignment3")
    assert page.status_code == 200 and "s001" in page.text           # linked by the student number (sourcedid)
    r = upload(client)
    assert r.status_code == 303 and r.headers["location"].startswith("/receipt/")
    with site.engine.connect() as db:
        assert db.execute(select(identities)).all() == [(platform.url, "learner-1", "s001")]
    again = browser(site)                                            # the next launch: by the link, no custom
    assert launch(again, platform, link="link-1").headers["location"] == "/a/assignment3"
    assert signed_in_student(again)


def test_a_launch_links_the_roster_entry_by_e_mail_or_makes_a_new_student(lms):
    site, platform = lms
    platform.user("learner-3", [LEARNER], "Three", "S003@Example.ac.jp")
    platform.user("learner-9", [LEARNER], "New Student", "new@example.ac.jp", sourcedid="A0999")
    for uid, expected in (("learner-3", "s003"), ("learner-9", "A0999")):
        client = browser(site)
        assert launch(client, platform, uid, custom={"assignment": "assignment3"}).status_code == 303
        assert expected in client.get("/").text
    assert "A0999" in {r.id for r in people.all_students(site.engine)}


@pytest.mark.parametrize("uid, role", [("teacher-1", "instructor"), ("ta-1", "ta")])
def test_instructors_and_tas_launch_as_staff_with_the_lms_role(lms, uid, role):
    site, platform = lms
    client = browser(site)
    r = launch(client, platform, uid, custom={"assignment": "assignment3"})
    assert r.status_code == 303 and r.headers["location"] == "/staff/a/assignment3"
    page = client.get("/staff/a/assignment3")
    assert page.status_code == 200
    assert ("/staff/a/assignment3/grade" in page.text) == (role == "instructor")
    assert {a.role for a in people.staff_accounts(site.engine) if a.username.startswith("lms-")} == {role}
    # an LMS account has no password: the password form never signs it in
    username = next(a.username for a in people.staff_accounts(site.engine) if a.username.startswith("lms-"))
    assert people.check_password(site.engine, username, "!lti") is None


# --- launches refused ------------------------------------------------------------------------------------------

def forged(client, platform, tamper, uid="learner-1", **sign):
    """A launch whose id_token the test signs after ``tamper`` changed its claims (the browser's state and nonce
    are the real ones)."""
    params = platform.initiation(uid, custom={"assignment": "assignment3"})
    r = client.get("/lti/login", params=params)
    asked = query_of(r.headers["location"])
    claims = platform.claims(uid, params["lti_message_hint"], asked["nonce"])
    tamper(claims)
    return client.post("/lti/launch", data={"id_token": platform.sign(claims, **sign), "state": asked["state"]})


DEPLOYMENT = "https://purl.imsglobal.org/spec/lti/claim/deployment_id"
REFUSED = {
    "another key": (lambda c: None, {"key": rsa_pem()[0]}, 400, "signature is not the platform"),
    "wrong issuer": (lambda c: c.update(iss="https://evil.example"), {}, 400, "issuer is not"),
    "wrong audience": (lambda c: c.update(aud="another-tool"), {}, 400, "not meant for this tool"),
    "expired": (lambda c: None, {"lifetime": -600}, 400, "has expired"),
    "unknown deployment": (lambda c: c.update({DEPLOYMENT: "deployment-9"}), {}, 403,
                           "deployment 'deployment-9' is not registered"),
    "unknown key id": (lambda c: None, {"kid": "not-a-key"}, 400, "is not among the platform's keys"),
    "no role": (lambda c: c.update({lti.CLAIM + "roles": []}), {}, 403, "no role in the course"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_launch_that_fails_a_check_signs_no_one_in_and_says_which(lms, case):
    site, platform = lms
    tamper, sign, status, words = REFUSED[case]
    client = browser(site)
    r = forged(client, platform, tamper, **sign)
    assert r.status_code == status and words in said(r), r.text
    assert not signed_in_student(client)


def test_a_replayed_id_token_is_refused_by_its_nonce(lms):
    site, platform = lms
    victim = browser(site)
    form = auto_form(browse(login(victim, platform, "learner-1", custom={"assignment": "assignment3"})
                            .headers["location"]))
    assert victim.post("/lti/launch", data=form).status_code == 303
    attacker = browser(site)                   # a fresh state of their own, the victim's id_token
    asked = query_of(login(attacker, platform, "learner-1").headers["location"])
    r = attacker.post("/lti/launch", data={"id_token": form["id_token"], "state": asked["state"]})
    assert r.status_code == 403 and "nonce was used before" in said(r)
    assert not signed_in_student(attacker)
    assert attacker.post("/lti/launch", data=form).status_code == 403          # the victim's state: used
    with site.engine.connect() as db:
        assert len(db.execute(select(lti_nonces)).all()) == 1


def test_a_nonce_not_made_by_this_login_is_refused(lms):
    site, platform = lms
    client = browser(site)
    r = forged(client, platform, lambda c: c.update(nonce="a-nonce-the-tool-never-made"))
    assert r.status_code == 403 and "not the one this login initiation made" in said(r)


def test_a_state_from_another_browser_signs_no_one_in(lms):
    site, platform = lms
    victim, attacker = browser(site), browser(site)
    form = auto_form(browse(login(attacker, platform, "learner-1").headers["location"]))
    r = victim.post("/lti/launch", data=form)                 # no cookie of that state in this browser
    assert r.status_code == 403 and "new window" in said(r).lower() and not signed_in_student(victim)
    form = auto_form(browse(login(attacker, platform, "learner-1").headers["location"]))
    victim.cookies.set(f"lti_state_{form['state'][:16]}", "a-forged-secret")
    r = victim.post("/lti/launch", data=form)
    assert r.status_code == 403 and "belongs to another browser" in said(r) and not signed_in_student(victim)


def test_a_learner_claiming_staff_roles_through_custom_claims_stays_a_student(lms):
    site, platform = lms
    client = browser(site)
    custom = {"assignment": "assignment3", "roles": INSTRUCTOR, "role": "instructor", "lti_roles": "Instructor"}
    extra = {"https://purl.imsglobal.org/spec/lti/claim/role_scope_mentor": ["x"], "roles": [INSTRUCTOR]}
    r = launch(client, platform, custom=custom, extra=extra)
    assert r.headers["location"] == "/a/assignment3"
    assert client.get("/staff").headers["location"] == "/staff/login"
    assert not [a for a in people.staff_accounts(site.engine) if a.username.startswith("lms-")]


def test_login_initiation_refuses_an_unknown_platform_a_foreign_target_and_missing_fields(lms):
    site, platform = lms
    client = browser(site)
    params = platform.initiation("learner-1")
    for changed, status, words in (({"iss": "https://other-lms.example"}, 403, "no platform is registered"),
                                   ({"client_id": "someone-else"}, 403, "no platform is registered"),
                                   ({"target_link_uri": "https://evil.example/x"}, 400, "is not this tool's"),
                                   ({"login_hint": ""}, 400, "has no login_hint")):
        r = client.get("/lti/login", params={**params, **changed})
        assert r.status_code == status and words in said(r) and "lti_state" not in r.headers.get("set-cookie", "")


def test_the_launch_refuses_malformed_or_oversized_bodies_with_a_reason(lms):
    site, platform = lms
    client = browser(site)
    assert client.post("/lti/launch", data={"state": "nothing", "id_token": "x"}).status_code == 403
    r = client.post("/lti/launch", content=b"--x\r\nbroken", headers={
        "content-type": "multipart/form-data; boundary=x"})
    assert r.status_code in (400, 403) and "Traceback" not in r.text
    r = client.post("/lti/launch", content=b"a" * (70 * 1024),
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    r = client.post("/lti/launch", content=iter([b"state=x"]),
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 411
    asked = query_of(login(client, platform, "learner-1").headers["location"])
    for token in ("not-a-jwt", "e30.e30.", "a" * 70_000):
        r = client.post("/lti/launch", data={"id_token": token, "state": asked["state"]})
        assert r.status_code in (400, 403, 413) and "Traceback" not in r.text
        asked = query_of(login(client, platform, "learner-1").headers["location"])
    r = client.post("/lti/login", data=platform.initiation("learner-1"))        # some LMSs POST the initiation
    assert r.status_code == 302 and r.headers["location"].startswith(f"{platform.url}/auth?")
    r = client.post("/lti/login", content=b"iss=" + b"x" * 9000,
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413 and "Traceback" not in r.text
    unsigned = "eyJhbGciOiJub25lIn0." + "eyJpc3MiOiJ4In0."              # alg none
    r = client.post("/lti/launch", data={"id_token": unsigned, "state": asked["state"]})
    assert r.status_code == 400 and "only RS256" in said(r)


def test_a_flood_of_login_initiations_cannot_fill_the_database(lms, monkeypatch):
    site, platform = lms
    monkeypatch.setattr(lti_store, "LOGINS_MAX", 3)
    client = browser(site)
    for _ in range(3):
        login(client, platform, "learner-1")
    r = client.get("/lti/login", params=platform.initiation("learner-1"))
    assert r.status_code == 429 and "Too many launches" in said(r)


def test_the_state_cookie_is_secure_cross_site_http_only_and_scoped_to_the_launch(lms):
    site, platform = lms
    r = login(browser(site), platform, "learner-1")
    cookie = r.headers["set-cookie"].lower()
    assert "samesite=none" in cookie and "secure" in cookie and "httponly" in cookie and "path=/lti/launch" in cookie
    asked = query_of(r.headers["location"])
    assert asked["response_mode"] == "form_post" and asked["prompt"] == "none" and asked["scope"] == "openid"
    assert asked["redirect_uri"] == f"{TOOL}/lti/launch" and len(asked["state"]) >= 40 and len(asked["nonce"]) >= 40


def test_inside_an_lms_iframe_the_login_offers_a_new_window_and_only_the_lms_may_frame_it(lms):
    site, platform = lms
    client = browser(site)
    params = platform.initiation("learner-1", custom={"assignment": "assignment3"})
    r = client.get("/lti/login", params=params, headers={"Sec-Fetch-Dest": "iframe"})
    assert r.status_code == 200 and 'target="_blank"' in said(r) and "lti_state" not in r.headers.get("set-cookie", "")
    assert r.headers["content-security-policy"].endswith(f"frame-ancestors {platform.url}")
    assert client.get("/").headers["content-security-policy"].count("frame-ancestors 'none'") == 1
    href = r.text.split('href="', 2)[2].split('"')[0].replace("&amp;", "&")
    assert href.startswith("/lti/login?") and "window=new" in href
    form = auto_form(browse(client.get(href, headers={"Sec-Fetch-Dest": "iframe"}).headers["location"]))
    assert client.post("/lti/launch", data=form).headers["location"] == "/a/assignment3"


# --- the tool's keys and registration ---------------------------------------------------------------------------

def test_the_tools_keys_are_private_files_published_without_their_secret_and_rotate(lms):
    site, _ = lms
    client = browser(site)
    first = client.get("/lti/jwks").json()["keys"]
    assert len(first) == 1 and first[0]["alg"] == "RS256" and "d" not in first[0] and "p" not in first[0]
    for path in lti.key_files(site.data):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(lti.keys_dir(site.data)).st_mode) == 0o700
    kid, removed = lti.rotate_keys(site.data)
    assert [k["kid"] for k in client.get("/lti/jwks").json()["keys"]] == [first[0]["kid"], kid] and not removed
    kid2, removed = lti.rotate_keys(site.data)
    assert removed == [first[0]["kid"]] and lti.signing_key(site.data)[0] == kid2


def test_manual_registration_by_the_command_several_platforms_and_deployments(tmp_path, capsys):
    data = tmp_path / "site"
    for issuer, client_id in (("https://moodle.example.ac.jp", "abc"), ("https://canvas.example.edu", "10000")):
        assert main(["lti", "register", "--data", str(data), "--issuer", issuer, "--client-id", client_id,
                     "--deployment", "1", "--deployment", "2", "--auth-url", f"{issuer}/auth",
                     "--token-url", f"{issuer}/token", "--jwks-url", f"{issuer}/certs",
                     "--public-url", "https://grader.example.ac.jp"]) == 0
    out = capsys.readouterr().out
    assert "https://grader.example.ac.jp/lti/login" in out and "https://grader.example.ac.jp/lti/jwks" in out
    assert main(["lti", "platforms", "--data", str(data)]) == 0
    listed = capsys.readouterr().out
    assert "moodle.example.ac.jp  client abc  deployments 1, 2" in listed and "canvas.example.edu" in listed
    assert main(["lti", "register", "--data", str(data), "--issuer", "http://lms.example", "--client-id", "x",
                 "--deployment", "1", "--auth-url", "http://lms.example/a", "--token-url", "http://lms.example/t",
                 "--jwks-url", "http://lms.example/k"]) == 2
    assert "is not an https:// URL" in capsys.readouterr().err
    assert main(["lti", "register", "--data", str(data), "--issuer", "https://x.example"]) == 2
    assert "needs --client-id" in capsys.readouterr().err
    site = Site(load_config(), data)
    assert lti_store.registration_for(site.engine, "https://moodle.example.ac.jp", None).client_id == "abc"


# --- grades to the LMS (AGS) --------------------------------------------------------------------------------------

GRADEBOOK = ("student_id,score,max_score,official,status\n"
             "s001,{s001},10,yes,graded\ns002,0,10,yes,no submission\ns003,5,10,yes,graded\n")


def staff_client(site, username="prof") -> TestClient:
    from tests.test_site import csrf_of

    client = browser(site)
    token = csrf_of(client.get("/staff/login").text)
    assert client.post("/staff/login", data={"username": username, "password": PASSWORD,
                                             "csrf": token}).status_code == 303
    return client


def form_token(client, path) -> str:
    from tests.test_site import csrf_of

    return csrf_of(client.get(path).text)


def linked_class(site, platform):
    """Two learners launched from the course (s001 by student number, s002 by e-mail; s003 never did), the class
    graded."""
    platform.user("learner-2", [LEARNER], "Two", "s002@example.ac.jp")
    for uid in ("learner-1", "learner-2"):
        assert launch(browser(site), platform, uid, custom={"assignment": "assignment3"}).status_code == 303
    grades = site.grades("assignment3")
    grades.mkdir(parents=True)
    (grades / "gradebook.csv").write_text(GRADEBOOK.format(s001=9), encoding="utf-8")


def release(site):
    prof = staff_client(site)
    r = prof.post("/staff/a/assignment3/release", data={"csrf": form_token(prof, "/staff/a/assignment3"),
                                                        "before_deadline": "yes"})
    assert r.status_code == 303
    return prof


def test_released_scores_reach_the_line_item_with_their_progress_after_the_lms_comes_back_and_none_twice(lms):
    from autograder.site.lti_services import send_due
    from autograder.site.staff import receive_results
    from tests.test_site_security import results_with

    site, platform = lms
    linked_class(site, platform)
    tokens = lti.AccessTokens(site.data)
    assert send_due(site, tokens) == {"sent": 0, "later": 0, "failed": 0}          # nothing before the release
    release(site)
    now = lti_store.utc_now()
    platform.down = 2                                                              # the LMS is down for two posts
    assert send_due(site, tokens, now) == {"sent": 0, "later": 2, "failed": 0} and platform.scores == []
    assert send_due(site, tokens, now + dt.timedelta(seconds=10))["sent"] == 0     # backing off
    assert send_due(site, tokens, now + dt.timedelta(seconds=31)) == {"sent": 2, "later": 0, "failed": 0}
    got = {p["userId"]: p for _, p in platform.scores}
    assert [item for item, _ in platform.scores] == ["link-1", "link-1"]
    assert got["learner-1"]["scoreGiven"] == 9 and got["learner-1"]["scoreMaximum"] == 10
    assert got["learner-1"]["activityProgress"] == "Completed" and got["learner-1"]["gradingProgress"] == "FullyGraded"
    assert got["learner-2"]["scoreGiven"] == 0 and got["learner-2"]["activityProgress"] == "Initialized"
    assert send_due(site, tokens, now + dt.timedelta(hours=2))["sent"] == 0 and len(platform.scores) == 2
    prof = staff_client(site)                                    # a regrade uploaded: only the changed score goes
    receive_results(site, "assignment3", results_with({"out/gradebook.csv": GRADEBOOK.format(s001=10)}), "prof")
    assert send_due(site, tokens, now + dt.timedelta(hours=3)) == {"sent": 1, "later": 0, "failed": 0}
    assert platform.scores[-1][1]["userId"] == "learner-1" and platform.scores[-1][1]["scoreGiven"] == 10
    assert platform.scores[-1][1]["timestamp"] > platform.scores[0][1]["timestamp"]
    page = said(prof.get("/staff/a/assignment3/lms"))
    assert page.count("送信済み / sent") == 2 and "link-1" in page


def test_a_score_the_lms_refuses_is_failed_with_its_words_and_an_instructor_sends_it_again(lms):
    from autograder.site.db import identities as ids
    from autograder.site.lti_services import send_due

    site, platform = lms
    linked_class(site, platform)
    with site.engine.begin() as db:                             # s003 is someone the LMS does not know
        db.execute(ids.insert().values(issuer=platform.url, subject="ghost", student_id="s003"))
    prof = release(site)
    tokens = lti.AccessTokens(site.data)
    assert send_due(site, tokens) == {"sent": 2, "later": 0, "failed": 1}
    page = said(prof.get("/staff/a/assignment3/lms"))
    assert "失敗 / failed" in page and "the LMS refused the score: HTTP 400" in page and "no user ghost" in page
    assert send_due(site, tokens, lti_store.utc_now() + dt.timedelta(days=1))["failed"] == 0      # not retried alone
    ta = browser(site)
    launch(ta, platform, "ta-1", custom={"assignment": "assignment3"})
    r = ta.post("/staff/a/assignment3/lms/send", data={"csrf": form_token(ta, "/staff/a/assignment3/lms")})
    assert r.status_code == 403 and "Only an instructor" in said(r)
    assert "再送 / Send again" not in said(ta.get("/staff/a/assignment3/lms"))
    learner = browser(site)
    launch(learner, platform, "learner-1", custom={"assignment": "assignment3"})
    assert learner.get("/staff/a/assignment3/lms").headers["location"] == "/staff/login"
    assert learner.post("/staff/a/assignment3/lms/send", data={}).headers["location"] == "/staff/login"
    assert browser(site).get("/staff/a/assignment3/lms").headers["location"] == "/staff/login"
    assert prof.post("/staff/a/assignment3/lms/send", data={"csrf": "forged", "student": "s003"}).status_code == 403
    platform.user("ghost", [LEARNER])                            # the LMS now knows them: sent again, it arrives
    r = prof.post("/staff/a/assignment3/lms/send", data={"csrf": form_token(prof, "/staff/a/assignment3/lms"),
                                                          "student": "s003"})
    assert r.status_code == 303
    assert send_due(site, tokens) == {"sent": 1, "later": 0, "failed": 0}
    assert platform.scores[-1][1] == {**platform.scores[-1][1], "userId": "ghost", "scoreGiven": 5}


def test_the_push_command_sends_one_assignment_and_refuses_before_the_release(lms, capsys):
    site, platform = lms
    linked_class(site, platform)
    assert main(["lti", "push", "--data", str(site.data)]) == 2
    assert "lti push needs the assignment (lti push ID): one of assignment3, assignment4" in capsys.readouterr().err
    args = ["lti", "push", "assignment3", "--data", str(site.data)]
    assert main(args) == 2 and "not released" in capsys.readouterr().err
    from autograder.site.records import release as released

    released(site.engine, "assignment3", "prof")
    assert main(args) == 0
    assert "2 sent" in capsys.readouterr().out and len(platform.scores) == 2
    assert main(args) == 0 and len(platform.scores) == 2          # nothing changed: nothing sent twice


# --- the class list from the LMS (NRPS) ---------------------------------------------------------------------------

def test_the_roster_syncs_from_the_lms_linking_by_student_number_or_e_mail_and_links_still_work(lms, capsys):
    from tests.test_site import open_link

    site, platform = lms
    assert launch(browser(site), platform, "teacher-1", custom={"assignment": "assignment3"}).status_code == 303
    platform.members = [
        {"user_id": "m-1", "roles": [LEARNER], "lis_person_sourcedid": "s001", "name": "One", "email": "x@y"},
        {"user_id": "m-2", "roles": [LEARNER], "email": "S002@example.ac.jp", "name": "Two"},
        {"user_id": "m-3", "roles": [LEARNER], "lis_person_sourcedid": "B0123", "name": "New", "email": "n@x.jp"},
        {"user_id": "teacher-1", "roles": [INSTRUCTOR], "name": "Prof."},
        {"user_id": "m-5", "roles": [LEARNER], "status": "Inactive", "lis_person_sourcedid": "B9999"},
    ]
    assert main(["lti", "sync-roster", "--data", str(site.data)]) == 0
    out = capsys.readouterr().out
    assert "1 student number" in out and "1 e-mail" in out and "1 new" in out and "1 inactive" in out
    with site.engine.connect() as db:
        linked = {r.subject: r.student_id for r in db.execute(select(identities))}
    assert linked == {"m-1": "s001", "m-2": "s002", "m-3": "B0123"}
    assert {r.id for r in people.all_students(site.engine)} == {"s001", "s002", "s003", "B0123"}
    assert main(["lti", "sync-roster", "--data", str(site.data)]) == 0 and "3 known" in capsys.readouterr().out
    platform.user("m-3", [LEARNER])                              # their launch finds the synced student
    client = browser(site)
    launch(client, platform, "m-3", custom={"assignment": "assignment3"})
    assert "B0123" in client.get("/").text
    link = people.issue_links(site.engine, "http://testserver", ["s003"])[0]["link"]    # no LMS for s003: a link
    plain = browser(site)
    assert open_link(plain, link).status_code == 303 and "s003" in plain.get("/").text


# --- deep linking -----------------------------------------------------------------------------------------------

def test_an_instructor_adding_the_activity_picks_the_assignment_and_the_lms_gets_its_link_and_line_item(lms):
    import urllib.parse
    import urllib.request

    from tests.test_site import csrf_of

    site, platform = lms
    prof = browser(site)
    r = launch(prof, platform, "teacher-1", deep_link=True)
    assert r.status_code == 303 and r.headers["location"] == "/lti/deep-link"
    choose = prof.get("/lti/deep-link")
    assert choose.status_code == 200 and 'value="assignment3"' in choose.text
    assert platform.url in choose.headers["content-security-policy"]                 # the LMS may frame it
    r = prof.post("/lti/deep-link", data={"csrf": csrf_of(choose.text), "assignment": "no-such"})
    assert r.status_code == 400
    r = prof.post("/lti/deep-link", data={"csrf": csrf_of(choose.text), "assignment": "assignment3"})
    assert r.status_code == 200 and f"form-action {platform.url}" in r.headers["content-security-policy"]
    back = r.text.split('action="', 2)[2].split('"')[0]
    token = r.text.split('name="JWT" value="')[1].split('"')[0]
    with urllib.request.urlopen(urllib.request.Request(html.unescape(back), urllib.parse.urlencode(
            {"JWT": token}).encode()), timeout=10) as answer:                  # the browser's button, to the LMS
        assert answer.read() == b"added 1 item(s)"
    claims, items = platform.deep_links[0]
    assert claims["https://purl.imsglobal.org/spec/lti-dl/claim/data"] == {"opaque": "platform-data"}
    assert claims["aud"] == platform.url and claims["iss"] == platform.registration.get_client_id()
    item = items[0]
    assert item["url"] == f"{TOOL}/lti/launch" and item["custom"] == {"assignment": "assignment3"}
    assert item["lineItem"]["scoreMaximum"] > 0 and item["lineItem"]["resourceId"] == "assignment3"
    assert prof.get("/lti/deep-link").status_code == 404                     # the request is used up
    learner = browser(site)                                                  # the new activity opens the assignment
    r = launch(learner, platform, "learner-1", link="link-new", custom=item["custom"])
    assert r.headers["location"] == "/a/assignment3"


@pytest.mark.parametrize("uid", ["learner-1", "ta-1"])
def test_only_an_instructor_may_add_the_activity(lms, uid):
    site, platform = lms
    client = browser(site)
    r = launch(client, platform, uid, deep_link=True)
    assert r.status_code == 403 and "only an instructor adds" in said(r)
    assert client.get("/lti/deep-link").status_code in (303, 404)
    stranger = browser(site)
    assert stranger.get("/lti/deep-link").headers["location"] == "/staff/login"
    assert stranger.post("/lti/deep-link", data={"assignment": "assignment3"}).headers["location"] == "/staff/login"


# --- dynamic registration -----------------------------------------------------------------------------------------

def test_dynamic_registration_by_a_one_time_url_then_a_learner_launches(tmp_path, monkeypatch, capsys):
    from autograder.site.lti_registration import CLOSE_HASH

    monkeypatch.setenv("AUTOGRADER_NOW", BEFORE)
    data = tmp_path / "site"
    assert main(["lti", "registration-url", "--data", str(data)]) == 2           # without the site's https address
    assert main(["lti", "registration-url", "--data", str(data), "--public-url", TOOL]) == 0
    url = capsys.readouterr().out.split()[0]
    assert url.startswith(f"{TOOL}/lti/register?key=")
    site = Site(load_config(), data, public_url=TOOL)
    people.import_roster(site.engine, [people.RosterRow("s001", "One", "s001@example.ac.jp")])
    platform = Platform(TOOL).start(lti.jwks(site.data))
    try:
        client = browser(site)
        asked = {"openid_configuration": f"{platform.url}/.well-known/openid-configuration",
                 "registration_token": platform.registration_token}
        forged = client.get("/lti/register", params={**asked, "key": "guessed"})
        assert forged.status_code == 403 and lti_store.registrations(site.engine) == []
        key = query_of(url)["key"]
        r = client.get("/lti/register", params={**asked, "key": key})
        assert r.status_code == 200 and "dynamic-client-7" in r.text, r.text
        assert f"script-src 'sha256-{CLOSE_HASH}'" in r.headers["content-security-policy"]
        assert f"frame-ancestors {platform.url}" in r.headers["content-security-policy"]
        sent = platform.registered[0]
        assert sent["initiate_login_uri"] == f"{TOOL}/lti/login" and sent["jwks_uri"] == f"{TOOL}/lti/jwks"
        assert sent["redirect_uris"] == [f"{TOOL}/lti/launch"] and "lti-ags/scope/score" in sent["scope"]
        [registered] = lti_store.registrations(site.engine)
        assert (registered.issuer, registered.client_id, registered.deployments) == (
            platform.url, "dynamic-client-7", frozenset({"12"}))
        assert client.get("/lti/register", params={**asked, "key": key}).status_code == 403      # once only
        platform.registration.set_client_id("dynamic-client-7").set_deployment_id("12")
        platform.user("learner-1", [LEARNER], "One", sourcedid="s001")
        assert launch(client, platform, custom={"assignment": "assignment3"}).headers["location"] == "/a/assignment3"
    finally:
        platform.stop()


def test_a_dynamic_registration_the_lms_refuses_says_why(lms):
    from autograder.site.lti_registration import registration_url

    site, platform = lms
    client = browser(site)
    r = client.get("/lti/register", params={**query_of(registration_url(site)), "registration_token": "wrong",
                                            "openid_configuration": f"{platform.url}/.well-known/openid-configuration"})
    assert r.status_code == 502 and "the LMS refused the registration: HTTP 401" in said(r)
    nowhere = "https://127.0.0.1:9/.well-known/openid-configuration"                  # nothing listens there
    r = client.get("/lti/register", params={**query_of(registration_url(site)), "openid_configuration": nowhere})
    assert r.status_code == 502 and "could not be read" in said(r)


def test_a_grade_job_after_the_release_sends_the_changed_scores(lms, monkeypatch):
    from autograder.site import records, staff
    from autograder.site.lti_services import send_due

    site, platform = lms
    linked_class(site, platform)
    release(site)
    tokens = lti.AccessTokens(site.data)
    assert send_due(site, tokens)["sent"] == 2

    def regrade(command, **kwargs):                  # the `grade` job's command, standing in: s001's score changes
        (site.grades("assignment3") / "gradebook.csv").write_text(GRADEBOOK.format(s001=7), encoding="utf-8")
        return 0

    monkeypatch.setattr(staff.subprocess, "call", regrade)
    records.add_job(site.engine, staff.GRADE, "assignment3", "prof")
    staff.JobRunner(site)._run(records.next_job(site.engine))
    assert send_due(site, tokens) == {"sent": 1, "later": 0, "failed": 0}
    assert platform.scores[-1][1]["userId"] == "learner-1" and platform.scores[-1][1]["scoreGiven"] == 7
