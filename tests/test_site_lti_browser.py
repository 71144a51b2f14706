"""A learner's LTI launch in a real browser (Debian's Chromium through Selenium): on the loopback LMS
(tests/lti_platform.py) they click the course's activity, the browser goes through the tool's login initiation,
the LMS's authorization and its auto-submitted launch form (the LMS's script), and lands on the assignment's page
of the site, signed in as their roster entry, where they upload their notebook and get its receipt. The site runs
in this process on uvicorn (no check runs: nothing trains); both servers listen on 127.0.0.1 only."""

from __future__ import annotations

import threading
import time

import pytest
import uvicorn

from autograder.course.config import load_config
from autograder.site import lti, people
from autograder.site.app import create_app
from autograder.site.core import Site
from tests.lti_platform import LEARNER, Platform, free_port
from tests.test_site import BEFORE, FINISHED
from tests.test_site_browser import make_browser


@pytest.fixture
def served_site(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_NOW", BEFORE)
    port = free_port()
    site = Site(load_config(), tmp_path / "site", public_url=f"http://127.0.0.1:{port}")
    people.import_roster(site.engine, [people.RosterRow("s001", "山田 花子", "s001@example.ac.jp")])
    server = uvicorn.Server(uvicorn.Config(create_app(site, run_checks=False, run_jobs=False), host="127.0.0.1",
                                           port=port, log_level="error", lifespan="off"))   # no checks run
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    platform = Platform(site.public_url).start(lti.jwks(site.data))
    platform.register(site.engine)
    platform.user("learner-1", [LEARNER], "山田 花子", "hanako@lms.example", sourcedid="s001")
    try:
        yield site, platform
    finally:
        platform.stop()
        server.should_exit = True


def test_a_learner_clicks_the_activity_in_the_lms_and_uploads_on_the_site(served_site, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    site, platform = served_site
    driver, _ = make_browser(tmp_path)
    try:
        driver.get(f"{platform.url}/course/learner-1?a=assignment3")
        driver.find_element(By.ID, "activity").click()
        WebDriverWait(driver, 20).until(lambda d: d.current_url.endswith("/a/assignment3"))
        text = driver.find_element(By.TAG_NAME, "body").text
        assert "s001" in text and "提出 / Submit" in text        # signed in, on the upload form
        driver.find_element(By.NAME, "notebook").send_keys(str(FINISHED.resolve()))
        driver.find_element(By.CSS_SELECTOR, "form.upload button[type=submit]").click()
        WebDriverWait(driver, 20).until(lambda d: "/receipt/" in d.current_url)
        receipt = driver.current_url.rsplit("/", 1)[1]
        assert receipt in driver.find_element(By.TAG_NAME, "body").text
        assert site.attempt("s001", receipt) is not None
    finally:
        driver.quit()
