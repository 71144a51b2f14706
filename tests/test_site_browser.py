"""The submission site end to end, in a real browser: `python -m autograder serve` runs as a subprocess on a free
loopback port with its own data folder, and headless Chromium (Debian's /usr/bin/chromium, driven by
/usr/bin/chromedriver through Selenium) does what a student, a TA and an instructor do:

1. before the deadline a student opens the personal link `roster links` wrote and presses its Sign in button,
   uploads the reference notebook, sees the receipt (its id, the file's SHA-256, the server's time) and the public
   checks finishing (the receipt page refreshes itself) and passing;
2. the server restarts after the deadline: the upload from the page opened before it is refused, naming the
   deadline, and the assignment page then says submissions are closed;
3. a TA publishes the solution (the `publish` job trains the reference) and the student can open it;
4. an instructor grades the class on the server (the `grade` job) and downloads gradebook.csv, which lists the
   student.

Every page visited is checked for horizontal overflow at a phone's width (390 CSS px) and saved as a full-page
screenshot into $AUTOGRADER_SCREENSHOTS (default: the test's tmp_path/screens); the student's assignment page is
also saved at a desktop width. The site serves the 2-epoch course (tests/classroom.py, short_config: what the site
does does not depend on the epoch count), whose reference the student hands in: it trains three times (the public
check, publish, grade), 2 epochs each. Skipped, with the reason, where Chromium, chromedriver or Selenium are missing.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from classroom import short_config

from autograder import PROJECT_ROOT

pytestmark = pytest.mark.training

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BEFORE = "2024-05-15T12:00:00+09:00"
AFTER = "2024-05-17T00:00:30+09:00"
DEADLINE = "2024-05-16 23:59 JST"
NOTEBOOK = Path("reference") / "assignment3" / "assignment3.ipynb"   # in the course's folder: submit accepts it
PUBLIC_CHECKS = ("reshape", "one_hot", "param_count")
PASSWORD = "a long enough password"
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
DESKTOP = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
CHECK_TIMEOUT_S = 240        # the public check: a kernel trains the reference (2 epochs) on a busy 2-core CPU
JOB_TIMEOUT_S = 240          # publish or grade, each training once



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: str, data: Path, course: Path, stdin: str | None = None) -> str:
    """One of the site's commands, as staff type it (from the project's folder), for the course at ``course``."""
    done = subprocess.run([sys.executable, "-m", "autograder", "--config", str(course), *args, "--data", str(data)],
                          cwd=PROJECT_ROOT,
                          input=stdin, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


class Server:
    """`python -m autograder serve` in its own process group, with its clock set by AUTOGRADER_NOW."""

    def __init__(self, data: Path, port: int, log: Path, course: Path):
        self.data, self.port, self.log, self.course = data, port, log, course
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{port}"

    def start(self, now: str) -> None:
        env = dict(os.environ, AUTOGRADER_NOW=now)
        env.pop("PYTHONPATH", None)           # as README starts it: from the project's folder, nothing installed
        with open(self.log, "ab") as out:
            out.write(f"\n===== serve, AUTOGRADER_NOW={now} =====\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "autograder", "--config", str(self.course), "serve", "--host", "127.0.0.1",
                 "--port", str(self.port), "--data", str(self.data), "--device", "cpu"],
                cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as r:
                    if r.read() == b"ok":
                        return
            except OSError:
                time.sleep(0.3)
        pytest.fail(f"serve did not answer /healthz within 90 s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Ctrl-C (uvicorn shuts down, the runners stop), then whatever of its process group is left."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        try:
            os.killpg(proc.pid, signal.SIGKILL)         # the group this test started: check workers, a job
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, chars: int = 6000) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-chars:] if self.log.is_file() else ""


class Browser:
    """Headless Chromium: pages opened, checked for horizontal overflow at a phone's width, and screenshot."""

    OVERFLOW_JS = """
        const d = document.documentElement, w = arguments[0];
        const out = [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > w + 1)
            .slice(0, 8).map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '') + ': '
                                  + (e.textContent || '').trim().slice(0, 60));
        const inner = [...document.querySelectorAll('.wide, pre')].filter(e => e.scrollWidth > e.clientWidth + 1)
            .map(e => e.tagName.toLowerCase() + '.' + e.className + ' scrolls ' + e.scrollWidth + '/' + e.clientWidth);
        return {scrollWidth: d.scrollWidth, innerWidth: window.innerWidth, out: out, inner: inner};
    """

    def __init__(self, driver, screens: Path):
        self.driver, self.screens, self.count = driver, screens, 0
        self.overflow: list[str] = []
        self.inner_scroll: list[str] = []
        self.width = PHONE
        self.phone()

    def phone(self) -> None:
        self.width = PHONE
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)

    def desktop(self) -> None:
        self.width = DESKTOP
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", DESKTOP)

    def get(self, url: str) -> None:
        self.driver.get(url)

    def text(self) -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.TAG_NAME, "body").text

    def path(self) -> str:
        return urllib.parse.urlsplit(self.driver.current_url).path

    def page(self, name: str) -> str:
        """The page now shown: its overflow checked (at the phone's width), a full-page screenshot saved; → its
        text."""
        if self.width is PHONE:
            found = self.driver.execute_script(self.OVERFLOW_JS, PHONE["width"])
            if found["innerWidth"] > PHONE["width"] + 1 or found["scrollWidth"] > found["innerWidth"] + 1:
                self.overflow.append(f"{name} ({self.path()}): scrollWidth {found['scrollWidth']}, innerWidth "
                                     f"{found['innerWidth']}; past the right edge: {found['out']}")
            self.inner_scroll += [f"{name}: {x}" for x in found["inner"]]
        self.count += 1
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
        suffix = "phone" if self.width is PHONE else "desktop"
        (self.screens / f"{self.count:02d}-{name}-{suffix}.png").write_bytes(base64.b64decode(shot["data"]))
        return self.text()

    def click(self, css: str, text: str | None = None) -> None:
        """Click the element matching css (and holding text), then wait for the next page to load."""
        from selenium.webdriver.common.by import By

        candidates = [e for e in self.driver.find_elements(By.CSS_SELECTOR, css) if text is None or text in e.text]
        assert candidates, f"nothing matches {css!r} {text!r} on {self.path()}:\n{self.text()}"
        old = self.driver.find_element(By.TAG_NAME, "html")
        candidates[0].click()
        self.wait_for(lambda: self._stale(old), 30, f"the page after clicking {css} {text or ''}")

    @staticmethod
    def _stale(element) -> bool:
        from selenium.common.exceptions import StaleElementReferenceException

        try:
            element.tag_name
            return False
        except StaleElementReferenceException:
            return True

    def wait_for(self, predicate, timeout: float, what: str, every: float = 0.5):
        from selenium.common.exceptions import WebDriverException

        deadline = time.monotonic() + timeout
        while True:
            try:
                value = predicate()
                if value:
                    return value
            except WebDriverException:            # the page was being replaced (a refresh): look again
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"waited {timeout:.0f} s for {what}; the page ({self.path()}) shows:\n{self.text()}")
            time.sleep(every)

    def table_rows(self) -> list[list[str]]:
        return self.driver.execute_script(
            "return [...document.querySelectorAll('tr')].map(tr => [...tr.children].map(c => c.innerText.trim()))")

    def sign_out(self) -> None:
        self.click("nav form button", "Sign out")


def make_browser(tmp_path: Path):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not (p.is_file() and os.access(p, os.X_OK))]
    if missing:
        pytest.skip(f"no browser to drive: {', '.join(missing)} missing (Debian: apt-get install chromium "
                    "chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        pytest.skip(f"selenium is not installed ({exc}): python -m pip install selenium")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False,
                                              "download.directory_upgrade": True})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log")),
                              options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return driver, downloads


@pytest.fixture
def site_setup(tmp_path):
    """The 2-epoch course (its grader_config.py), and a data folder with a roster (two students), a TA and an
    instructor, made by the site's commands."""
    course = short_config(tmp_path / "course", with_reference=True)
    data = tmp_path / "site"
    roster = tmp_path / "roster.csv"
    roster.write_text("学籍番号,氏名,メールアドレス\ns001,山田 花子,s001@example.ac.jp\ns002,佐藤 次郎,s002@example.ac.jp\n",
                      encoding="utf-8")
    assert "2 students added" in cli("roster", "import", str(roster), data=data, course=course)
    port = free_port()
    links_csv = tmp_path / "links.csv"
    cli("roster", "links", "--url", f"http://127.0.0.1:{port}", "--out", str(links_csv), data=data, course=course)
    links = {row["student_id"]: row["link"] for row in csv.DictReader(io.StringIO(links_csv.read_text("utf-8")))}
    cli("staff", "add", "ta1", "--role", "ta", "--password-stdin", data=data, course=course, stdin=PASSWORD + "\n")
    cli("staff", "add", "prof", "--role", "instructor", "--password-stdin", data=data, course=course,
        stdin=PASSWORD + "\n")
    server = Server(data, port, tmp_path / "serve.log", course)
    try:
        yield server, links
    finally:
        server.stop()
        print(f"--- serve log ({server.log}) ---\n{server.log_tail()}")


@pytest.fixture
def browser(tmp_path, request):
    failed_before = request.session.testsfailed
    driver, downloads = make_browser(tmp_path)
    screens = Path(os.environ.get("AUTOGRADER_SCREENSHOTS") or tmp_path / "screens")
    screens.mkdir(parents=True, exist_ok=True)
    for old in screens.glob("*.png"):
        old.unlink()
    b = Browser(driver, screens)
    b.downloads = downloads
    try:
        yield b
    finally:
        if request.session.testsfailed > failed_before:          # the page the test failed on
            try:
                b.page("failed-here")
            except Exception:
                pass
        driver.quit()
        print(f"screenshots: {screens}")


def sign_in_by_link(b: Browser, link: str) -> None:
    """Open a personal link: its page signs no one in until its button is pressed."""
    b.get(link)
    assert "This link is the personal link of" in b.page("signin-link"), b.text()
    b.click("form button[type=submit]", "Sign in")


def staff_sign_in(b: Browser, server: Server, username: str) -> None:
    from selenium.webdriver.common.by import By

    b.get(f"{server.url}/staff/login")
    assert "Staff sign-in" in b.page(f"staff-login-{username}")
    b.driver.find_element(By.NAME, "username").send_keys(username)
    b.driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    b.click("form button[type=submit]", "Sign in")
    assert b.path() == "/staff", b.text()
    text = b.page(f"staff-home-{username}")
    assert username in text and "assignment3" in text and DEADLINE in text


def run_job(b: Browser, server: Server, kind: str, button: str, who: str) -> list[str]:
    """Click the job's button on the staff assignment page, reload until its row says done; → that row."""
    b.click("form button", button)
    assert b.path() == "/staff/a/assignment3", b.text()
    b.page(f"staff-{kind}-started-{who}")

    def job_row():
        b.driver.refresh()
        rows = [r for r in b.table_rows() if len(r) >= 3 and r[1].startswith(f"{kind} ·")]
        assert rows, f"no {kind} job listed:\n{b.text()}"
        state = rows[0][2]                                   # the newest job first
        assert "failed" not in state, f"the {kind} job failed: {rows[0]}\n{server.log_tail()}"
        return rows[0] if "done" in state else None

    row = b.wait_for(job_row, JOB_TIMEOUT_S, f"the {kind} job to finish", every=5)
    assert who in row[1]
    return row


def test_a_student_ta_and_instructor_use_the_real_site_in_a_browser(site_setup, browser, tmp_path):
    from selenium.webdriver.common.by import By

    server, links = site_setup
    b = browser
    started = time.monotonic()
    notebook_path = server.course.parent / NOTEBOOK
    notebook = notebook_path.read_bytes()

    # --- 1. before the deadline: sign in by the link, upload, receipt, public checks ------------------------
    server.start(BEFORE)
    b.get(server.url)
    assert "Hand in your assignment" in b.page("welcome")
    sign_in_by_link(b, links["s001"])
    assert b.path() == "/", b.driver.current_url
    home = b.page("student-home")
    assert "山田 花子" in home and "s001" in home and DEADLINE in home and "未提出 / none" in home
    b.click("a[href='/a/assignment3']")
    page = b.page("assignment-before-upload")
    assert DEADLINE in page and "2024-05-15 12:00 JST" in page and "You have not handed in anything yet" in page
    b.driver.find_element(By.CSS_SELECTOR, "form.upload input[type=file][name=notebook]").send_keys(str(notebook_path))
    b.click("form.upload button[type=submit]", "Submit")
    assert b.path().startswith("/receipt/"), b.text()
    receipt_id = b.path().rsplit("/", 1)[1]
    receipt = b.page("receipt-waiting")
    values = dict(zip(*[[e.text for e in b.driver.find_elements(By.CSS_SELECTOR, f"dl {t}")] for t in ("dt", "dd")]))
    assert values["受付番号 / Receipt"] == receipt_id and re.fullmatch(r"ASSIGNMENT3-[0-9A-F]{10}", receipt_id)
    assert values["SHA-256"] == hashlib.sha256(notebook).hexdigest()
    assert values["受付時刻 / Received"].startswith("2024-05-15 12:00 JST")      # the server's clock
    assert values["提出者 / Student"] == "s001" and values["大きさ / Size"] == f"{len(notebook):,} bytes"
    assert "received and stored" in receipt
    assert ("待機中 / queued" in receipt or "実行中 / running" in receipt)
    assert b.driver.find_elements(By.CSS_SELECTOR, "meta[http-equiv=refresh][content='10']")

    def checks_done() -> bool:          # the page refreshes itself (meta refresh, every 10 s): only watch it
        text = b.text()
        assert "実行できず" not in text, f"the public check could not run:\n{text}\n{server.log_tail()}"
        return "完了 / done" in text

    b.wait_for(checks_done, CHECK_TIMEOUT_S, "the public checks to finish", every=1)
    done = b.page("receipt-checks-done")
    assert not b.driver.find_elements(By.CSS_SELECTOR, "meta[http-equiv=refresh]")
    rows = {r[1].split()[0]: r for r in b.table_rows() if len(r) == 3 and r[1]}
    for check in PUBLIC_CHECKS:
        assert rows[check][0] == "✓", rows[check]
    assert "公開チェックの合計" in done and re.search(r"Public checks\s+4 / 4", done), done
    assert "hidden: graded after the deadline" in done and "✗" not in done
    check_seconds = time.monotonic() - started

    b.click("a[href='/a/assignment3']", "Back to the assignment")
    page = b.page("assignment-after-upload")
    assert receipt_id in page and "採点対象 / counts" in page and "Public checks of your latest upload" in page
    b.desktop()
    b.driver.refresh()
    b.page("assignment-after-upload")
    b.phone()
    b.driver.refresh()

    # --- 2. the server restarts after the deadline: the form opened before it is refused --------------------
    server.stop()
    server.start(AFTER)
    b.driver.find_element(By.CSS_SELECTOR, "form.upload input[type=file][name=notebook]").send_keys(str(notebook_path))
    b.click("form.upload button[type=submit]", "Submit")
    refused = b.page("late-upload-refused")
    alert = b.driver.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert f"The deadline ({DEADLINE}) has passed" in alert and "2024-05-17 00:00 JST" in alert
    assert "Late work is not accepted" in alert and "締め切り" in alert
    assert "submissions are closed" not in refused and not b.driver.find_elements(By.CSS_SELECTOR, "input[type=file]")
    b.get(f"{server.url}/a/assignment3")
    closed = b.page("assignment-closed")
    assert f"The deadline ({DEADLINE}) has passed: submissions are closed." in closed
    assert not b.driver.find_elements(By.CSS_SELECTOR, "input[type=file]")
    assert [r[0].split()[0] for r in b.table_rows() if r and r[0][:1].isdigit()] == ["1"]   # nothing new recorded
    b.sign_out()
    assert b.path() == "/" and "Hand in your assignment" in b.text()

    # --- 3. a TA publishes the solution; the student opens it --------------------------------------------------
    staff_sign_in(b, server, "ta1")
    b.click("a[href='/staff/a/assignment3']")
    page = b.page("staff-assignment-ta1")
    assert "締め切り済み / closed" in page
    roster = {r[0].split()[0]: r for r in b.table_rows() if r and r[0].startswith("s00")}
    assert "on time" in roster["s001"][1] and "done" in roster["s001"][1] and receipt_id in roster["s001"][2]
    assert "none" in roster["s002"][1]
    run_job(b, server, "publish", "Publish", "ta1")
    assert "公開済み / published" in b.page("staff-publish-done-ta1")
    b.sign_out()
    assert b.path() == "/staff/login"
    sign_in_by_link(b, links["s001"])
    b.get(f"{server.url}/a/assignment3")
    page = b.page("assignment-published")
    assert "The solution" in page
    b.click("a[href='/a/assignment3/solution']")
    assert b.path() == "/a/assignment3/solution"
    solution = b.page("solution")
    assert "Dense" in solution and "model.fit" in solution, solution[:2000]
    b.get(f"{server.url}/a/assignment3/checks")
    assert "param_count" in b.page("solution-checks")
    b.get(server.url)
    b.sign_out()

    # --- 4. an instructor grades the class on the server and downloads the gradebook -----------------------
    staff_sign_in(b, server, "prof")
    b.click("a[href='/staff/a/assignment3']")
    b.page("staff-assignment-prof")
    run_job(b, server, "grade", "Grade the class here", "prof")
    page = b.page("staff-graded-prof")
    assert "gradebook.csv" in page and "Release feedback" in page
    b.driver.find_element(By.CSS_SELECTOR, "a.button[href$='/download/gradebook.csv']").click()   # a download
    saved = b.downloads / "assignment3-gradebook.csv"
    b.wait_for(lambda: saved.is_file() and not list(b.downloads.glob("*.crdownload")), 30,
               "the gradebook download")
    gradebook = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert [r["student_id"] for r in gradebook] == ["s001", "s002"], gradebook     # the roster: s002 too
    row, nothing = gradebook
    assert (nothing["status"], nothing["score"]) == ("no submission", "0"), nothing
    assert row["score"] == row["max_score"] == "12" and row["official"] == "no", row     # on the CPU: unofficial
    b.click("a[href$='/download/summary.html']")
    b.page("class-summary")

    print(f"public check after {check_seconds:.0f} s; whole scenario {time.monotonic() - started:.0f} s")
    if b.inner_scroll:
        print("boxes that scroll sideways at 390 px:\n" + "\n".join(b.inner_scroll))
    assert not b.overflow, "pages wider than a phone (390 px):\n" + "\n".join(b.overflow)
    log = server.log.read_text(encoding="utf-8", errors="replace")
    assert "GET /signin/… HTTP" in log                                  # the access log names the sign-in
    assert not [sid for sid, link in links.items() if link.rsplit("/", 1)[1] in log]   # but holds no token
