"""The submission site on the open internet: each test plays an attack on sign-in, sessions, request bodies or
staff roles, and shows the site refusing it with a reason (never a 500). The site and its helpers are
test_site.py's."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time

import httpx
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from autograder.course.config import load_config
from autograder.errors import ConfigError
from autograder.site import auth, people
from autograder.site.app import SERVER_LIMITS
from autograder.site.auth import VERIFY_AT_ONCE, LoginThrottle
from autograder.site.db import jobs
from tests.test_config import variant
from tests.test_site import (AFTER, PASSWORD, app_of, csrf_of, open_link, results_zip, rows, site, staff,  # noqa: F401
                             student)

PER_PAIR = LoginThrottle().per_pair


@contextlib.contextmanager
def served(app, **limits):
    """``app`` on a real uvicorn at 127.0.0.1 (a free port), in a thread; → its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **limits))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def counting_verifications(monkeypatch):
    """check_password wrapped: → a dict counting the verifications and the most that ran at once."""
    seen = {"calls": 0, "now": 0, "most": 0}
    lock = threading.Lock()
    real = auth.check_password

    def counted(*args):
        with lock:
            seen["calls"] += 1
            seen["now"] += 1
            seen["most"] = max(seen["most"], seen["now"])
        try:
            time.sleep(0.05)                     # the verifications overlap, as argon2's do on a busy server
            return real(*args)
        finally:
            with lock:
                seen["now"] -= 1

    monkeypatch.setattr(auth, "check_password", counted)
    return seen


# --- 2. parallel password guessing ------------------------------------------------------------------------------

def test_parallel_guesses_with_the_right_password_among_them_verify_at_most_the_limit(site, monkeypatch):
    """N guesses at once, the right password among them: each is counted before it is verified, so at most the
    limit are verified (at most VERIFY_AT_ONCE at a time) and the rest are refused, the right one too if late."""
    seen = counting_verifications(monkeypatch)
    n = 24
    guesses = [f"guess number {i:02d}" for i in range(n)]
    guesses[n // 2] = PASSWORD
    with served(app_of(site)) as base:
        clients = [httpx.Client(base_url=base, follow_redirects=False, timeout=60) for _ in range(n)]
        tokens = [csrf_of(c.get("/staff/login").text) for c in clients]
        go = threading.Barrier(n)

        def guess(i):
            go.wait()
            return clients[i].post("/staff/login", data={"username": "prof", "password": guesses[i],
                                                         "csrf": tokens[i]}).status_code

        threads_out = [None] * n
        threads = [threading.Thread(target=lambda i=i: threads_out.__setitem__(i, guess(i))) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for c in clients:
            c.close()
    assert seen["calls"] <= PER_PAIR, seen
    assert seen["most"] <= VERIFY_AT_ONCE, seen
    assert set(threads_out) <= {303, 401, 429} and threads_out.count(429) >= n - PER_PAIR, threads_out
    assert threads_out.count(303) <= 1


def test_a_stranger_elsewhere_cannot_lock_staff_out_and_one_address_cannot_try_many_names(site):
    app = app_of(site)
    stranger = TestClient(app, follow_redirects=False, client=("203.0.113.9", 40000))
    token = csrf_of(stranger.get("/staff/login").text)

    def guess(client, username, password="a wrong guess!!"):
        return client.post("/staff/login", data={"username": username, "password": password, "csrf": token})

    assert [guess(stranger, "prof").status_code for _ in range(PER_PAIR)] == [401] * PER_PAIR
    r = guess(stranger, "prof", PASSWORD)
    assert r.status_code == 429 and "15 minutes" in r.text and "15 分間" in r.text    # even the right password
    prof = TestClient(app, follow_redirects=False, client=("192.0.2.1", 40000))
    r = prof.post("/staff/login", data={"username": "prof", "password": PASSWORD,
                                        "csrf": csrf_of(prof.get("/staff/login").text)})
    assert r.status_code == 303 and prof.get("/staff").status_code == 200
    per_address = LoginThrottle().per_address
    statuses = [guess(stranger, f"name{i}").status_code for i in range(per_address)]
    assert statuses.count(401) == per_address - PER_PAIR and statuses[-1] == 429    # the address's own limit


def test_the_throttles_memory_stays_bounded_under_random_names_and_addresses():
    throttle = LoginThrottle(max_keys=100)
    rng = random.Random(7)
    for _ in range(20_000):
        throttle.attempt(f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
                         f"user{rng.randrange(10**9)}")
    assert len(throttle) <= 100
    tries = [throttle.attempt("198.51.100.1", "prof") for _ in range(PER_PAIR + 1)]
    assert tries == [True] * PER_PAIR + [False]                  # the newest keys are kept: the limit holds


# --- 3. links and sessions ------------------------------------------------------------------------------------------

def test_a_new_link_ends_the_sessions_the_old_link_opened(site):
    app = app_of(site)
    client = student(app, site, "s001")
    assert client.get("/a/assignment3").status_code == 200
    (new,) = people.issue_links(site.engine, "http://testserver", ["s001"])
    assert client.get("/a/assignment3").status_code == 401
    fresh = TestClient(app, follow_redirects=False)
    assert open_link(fresh, new["link"]).status_code == 303 and fresh.get("/a/assignment3").status_code == 200
    other = student(app, site, "s002")                   # another student's session is not touched
    people.issue_links(site.engine, "http://testserver", ["s001"])
    assert other.get("/a/assignment3").status_code == 200


@pytest.mark.parametrize("who", ["student", "staff"])
def test_signing_out_ends_a_copied_cookie_too(site, who):
    app = app_of(site)
    client = student(app, site, "s001") if who == "student" else staff(app)
    page = "/a/assignment3" if who == "student" else "/staff"
    thief = TestClient(app, follow_redirects=False)
    thief.cookies.set("session", client.cookies["session"])
    assert thief.get(page).status_code == 200
    r = client.post("/signout", data={"csrf": csrf_of(client.get(page).text)})
    assert r.status_code == 303
    assert thief.get(page).status_code in (401, 303)
    if who == "staff":
        assert thief.get(page).headers["location"] == "/staff/login"


def test_a_revoked_student_is_restored_by_the_command_and_signs_in_with_a_new_link(site, capsys):
    from autograder.cli import main

    app = app_of(site)
    client = student(app, site, "s001")
    data = ["--data", str(site.data)]
    assert main(["roster", "revoke", "s001", *data]) == 0
    assert "roster restore s001" in capsys.readouterr().out
    assert client.get("/a/assignment3").status_code == 401
    assert main(["roster", "restore", "s001", *data]) == 0
    out = capsys.readouterr().out
    assert "restored s001" in out and "roster links s001" in out
    assert open_link(TestClient(app, follow_redirects=False), site.links["s001"]).status_code == 403   # old link
    assert client.get("/a/assignment3").status_code == 401                                               # old session
    (link,) = people.issue_links(site.engine, "http://testserver", new=True)
    assert link["student_id"] == "s001"
    assert open_link(TestClient(app, follow_redirects=False), link["link"]).status_code == 303
    assert main(["roster", "restore", "nobody", *data]) == 2
    assert "no student 'nobody'" in capsys.readouterr().err


def test_a_staff_session_ends_after_the_idle_time(site, monkeypatch):
    wall = [1_000_000.0]
    monkeypatch.setattr(auth, "wall_clock", lambda: wall[0])
    app = app_of(site)
    prof = staff(app)
    idle = site.config.site_staff_idle_min
    monkeypatch.setenv("AUTOGRADER_NOW", AFTER)           # a rehearsal's clock jumping days ends no session
    assert prof.get("/staff").status_code == 200
    for minutes in (idle - 1, idle - 1):                   # each request keeps it alive
        wall[0] += minutes * 60
        assert prof.get("/staff").status_code == 200
    wall[0] += (idle + 1) * 60
    r = prof.get("/staff")
    assert r.status_code == 303 and r.headers["location"] == "/staff/login"
    student_client = student(app, site, "s001")           # a student's session has no idle limit
    wall[0] += 6 * idle * 60
    assert student_client.get("/").status_code == 200


@pytest.mark.parametrize("value, expected", [(0, "SITE_STAFF_IDLE_MIN must be positive"),
                                             ("2h", "SITE_STAFF_IDLE_MIN must be an integer")])
def test_the_idle_time_setting_is_validated(tmp_path, value, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(variant(tmp_path, SITE_STAFF_IDLE_MIN=value))
    assert load_config(variant(tmp_path, SITE_STAFF_IDLE_MIN=30)).site_staff_idle_min == 30


def test_a_roster_import_names_the_students_it_omits_who_can_still_sign_in(site, tmp_path, capsys):
    from autograder.cli import main

    people.revoke(site.engine, "s003")                    # revoked already: not named
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,name\ns001,One\n", encoding="utf-8")
    assert main(["roster", "import", str(roster), "--data", str(site.data)]) == 0
    out = capsys.readouterr().out
    assert "still able to sign in (1): s002" in out and "roster revoke s002" in out
    assert people.import_roster(site.engine, people.read_roster(roster)) == (0, 1, ["s002"])


# --- 5. bodies read before anyone is known ----------------------------------------------------------------------

SMALL_FORMS = ["/staff/login", "/signout", "/signin/TOKEN"]


def small_form_path(site, path):
    return path.replace("TOKEN", site.links["s001"].rsplit("/", 1)[1])


@pytest.mark.parametrize("path", SMALL_FORMS)
def test_a_small_form_refuses_a_large_or_unsized_or_filed_body_before_reading_it(site, path):
    app = app_of(site)
    client = TestClient(app, follow_redirects=False)
    path = small_form_path(site, path)
    token = csrf_of(client.get("/staff/login").text)
    r = client.post(path, data={"csrf": token, "password": "x" * 10_000})
    assert r.status_code == 413 and "at most 4,096" in r.text and "上限" in r.text
    r = client.post(path, content=iter([b"csrf=", token.encode()]),              # chunked: no Content-Length
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 411 and "Content-Length" in r.text
    r = client.post(path, data={"csrf": token}, files={"f": ("a.bin", b"x" * 100)})
    assert r.status_code == 400 and "Too many files" in r.text and "読めませんでした" in r.text
    r = client.post(path, data={"csrf": token, "username": "u" * 2000})
    assert r.status_code == 400 and "could not be read" in r.text


MALFORMED = [
    ("multipart/form-data", b"--x\r\nnot a part"),                       # no boundary in the header
    ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data\r\n\r\nv\r\n--x--\r\n"),  # no name
    ("multipart/form-data; boundary=x", b"\xff\xfe garbage"),
    ("application/x-www-form-urlencoded", b"csrf=%ZZ&&=&\xff"),
    ("application/json", b"{}"),
]


@pytest.mark.parametrize("path", ["/staff/login", "/signout", "/signin/TOKEN", "/a/assignment3/upload",
                                  "/staff/a/assignment3/grade", "/staff/a/assignment3/publish",
                                  "/staff/a/assignment3/release", "/staff/a/assignment3/results"])
def test_a_malformed_body_is_refused_with_a_reason_never_a_500(site, path):
    app = app_of(site)
    client = (staff(app) if path.startswith("/staff/a") else
              student(app, site, "s002") if path.startswith("/a/") else TestClient(app, follow_redirects=False))
    for content_type, body in MALFORMED:
        r = client.post(small_form_path(site, path), content=body, headers={"content-type": content_type})
        assert 400 <= r.status_code < 500 and ("expired" in r.text or "could not be read" in r.text), (
            content_type, body, r.status_code, r.text[:300])
    assert rows(site) == []


def test_an_https_site_sends_hsts_and_serve_runs_uvicorn_with_limits(site, monkeypatch):
    site.public_url = "https://grader.example.ac.jp"
    r = TestClient(app_of(site)).get("/healthz")
    assert r.headers["strict-transport-security"].startswith("max-age=")
    site.public_url = "http://testserver"
    assert "strict-transport-security" not in TestClient(app_of(site)).get("/healthz").headers

    import uvicorn

    from autograder.cli import main
    from autograder.run import sandbox

    given = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: given.update(kwargs))
    monkeypatch.setattr(sandbox, "require", lambda mode: None)
    assert main(["serve", "--data", str(site.data)]) == 0
    assert {k: given[k] for k in SERVER_LIMITS} == SERVER_LIMITS
    assert given["limit_concurrency"] and given["timeout_keep_alive"] <= 10
    assert given["h11_max_incomplete_event_size"] <= 64 * 1024


def raw_request(base: str, *pieces: bytes) -> bytes:
    """The first bytes of the server's reply to a request sent in ``pieces``, a moment apart, as a slow client
    sends it (b"" when the server closed the connection)."""
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            for piece in pieces:
                s.sendall(piece)
                time.sleep(0.3)
            return s.recv(200)
        except OSError:                           # reset while sending: refused
            return b""


def test_uvicorn_with_the_serve_limits_refuses_a_flood_of_headers(site):
    """Headers that keep coming (a slow client holding the server's buffer) are cut off past the limit."""
    pieces = [b"GET /healthz HTTP/1.1\r\nHost: x\r\n", *[b"X-Pad: " + b"a" * 3000 + b"\r\n"] * 4, b"\r\n"]
    with served(app_of(site), **SERVER_LIMITS) as base:
        reply = raw_request(base, *pieces)
        assert reply.startswith(b"HTTP/1.1 4") or reply == b"", reply           # refused or closed, never served
        assert httpx.get(base + "/healthz").text == "ok"


# --- 9. roles ---------------------------------------------------------------------------------------------------

def graded(site):
    (site.grades("assignment3")).mkdir(parents=True)
    (site.grades("assignment3") / "gradebook.csv").write_text("student_id,score\ns001,9\n")


@pytest.mark.parametrize("action", ["grade", "results", "release"])
def test_a_ta_cannot_do_an_instructors_action(site, action):
    graded(site)
    app = app_of(site)
    ta = staff(app, "ta1")
    token = csrf_of(ta.get("/staff/a/assignment3").text)
    files = {"results": ("out.zip", results_zip())} if action == "results" else None
    r = ta.post(f"/staff/a/assignment3/{action}", data={"csrf": token}, files=files)
    assert r.status_code == 403 and "Only an instructor may do this" in r.text and "担当教員" in r.text
    assert site.released_feedback("assignment3") is None
    assert (site.grades("assignment3") / "gradebook.csv").read_text() == "student_id,score\ns001,9\n"
    with site.engine.connect() as db:
        assert list(db.execute(select(jobs))) == []


def test_a_ta_publishes_and_each_role_sees_only_the_buttons_it_may_use(site):
    graded(site)
    app = app_of(site)
    ta_page, prof_page = (staff(app, who).get("/staff/a/assignment3").text for who in ("ta1", "prof"))
    for action in ("grade", "results", "release", "publish"):
        assert f'action="/staff/a/assignment3/{action}"' in prof_page
        assert (f'action="/staff/a/assignment3/{action}"' in ta_page) == (action == "publish")
    assert "exchange.zip" in ta_page and "gradebook.csv" in ta_page       # a TA sees everything
    ta = staff(app, "ta1")
    r = ta.post("/staff/a/assignment3/publish", data={"csrf": csrf_of(ta.get("/staff/a/assignment3").text)})
    assert r.status_code == 409 and "after the deadline" in r.text        # allowed, refused only by the deadline


# --- 11b. login CSRF through a sign-in link --------------------------------------------------------------------

def test_opening_a_link_signs_no_one_in_until_its_button_is_pressed(site):
    app = app_of(site)
    victim = TestClient(app, follow_redirects=False)
    attackers_link = site.links["s003"].removeprefix("http://testserver")
    page = victim.get(attackers_link)                 # another site's <img src>, or a mail scanner's fetch
    assert page.status_code == 200 and "s003" in page.text and 'method="post"' in page.text
    assert victim.get("/a/assignment3").status_code == 401 and victim.get("/").text.count("s003") == 0
    assert victim.post(attackers_link, data={}).status_code == 403                       # no CSRF token
    other = TestClient(app, follow_redirects=False)
    token_of_other = csrf_of(other.get(attackers_link).text)
    assert victim.post(attackers_link, data={"csrf": token_of_other}).status_code == 403  # another browser's
    assert victim.get("/a/assignment3").status_code == 401
    assert victim.post(attackers_link, data={"csrf": csrf_of(page.text)}).status_code == 303   # its own button
    assert victim.get("/a/assignment3").status_code == 200
    assert victim.post("/signin/not-a-token", data={"csrf": csrf_of(page.text)}).status_code in (403,)
