"""README's own commands, as a new user types them: the "Try it first" path of the submission site (a roster, the
links, `serve --rehearse`), then what README says a student does there (open the link, sign in, upload the named
sample) and sees (a receipt at once, the public checks done and passing). Only the folder (/tmp/ → this test's)
and the port (8000 → a free one) differ from README's text."""

from __future__ import annotations

import csv
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from autograder import PROJECT_ROOT
from autograder.run.sandbox import sandbox_available, unsandboxed_reason

README = PROJECT_ROOT / "README.md"
CHECKS_TIMEOUT_S = 400            # the public check trains the sample's 5 epochs on a busy 2-core CPU


def try_it_first_commands() -> list[str]:
    """The bash block that follows README's "Try it first" paragraph, one command a line."""
    text = README.read_text(encoding="utf-8")
    start = text.index("**Try it first")
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_readme_names_the_commands_and_the_notebook_this_test_follows():
    commands = try_it_first_commands()
    assert [c.split()[:4] for c in commands if c.startswith("python")] == [
        ["python", "-m", "autograder", "roster"], ["python", "-m", "autograder", "roster"],
        ["python", "-m", "autograder", "serve"]]
    assert "--rehearse" in commands[-1]
    assert "reference/assignment3/samples/submitted-few-epochs.ipynb" in README.read_text(encoding="utf-8")


@pytest.mark.training
@pytest.mark.skipif(not sandbox_available(), reason=f"serve needs the sandbox: {unsandboxed_reason()}")
def test_the_try_it_first_path_gives_a_receipt_and_passing_public_checks(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AUTOGRADER_NOW")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"    # README's venv, activated
    commands = [c.replace("/tmp/", f"{tmp_path}/").replace("127.0.0.1:8000", f"127.0.0.1:{port}")
                for c in try_it_first_commands()]
    *setup, serve = commands
    for command in setup:
        done = subprocess.run(["bash", "-c", command], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                              timeout=180)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(shlex.split(serve) + ["--port", str(port)], cwd=PROJECT_ROOT, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=False, timeout=30)
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text(errors="replace")[-3000:]
            try:
                if client.get("/healthz").text == "ok":
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not answer within 120 s"
            time.sleep(0.5)
        assert "REHEARSAL" in log.read_text(errors="replace")

        link = next(csv.DictReader(open(tmp_path / "demo-links.csv", encoding="utf-8")))["link"]
        path = link.removeprefix(f"http://127.0.0.1:{port}")
        page = client.get(path)
        assert page.status_code == 200 and "Rehearsal" in page.text
        assert client.post(path, data={"csrf": csrf_of(page.text)}).status_code == 303        # the Sign in button
        form = client.get("/a/assignment3")
        notebook = PROJECT_ROOT / "reference" / "assignment3" / "samples" / "submitted-few-epochs.ipynb"
        r = client.post("/a/assignment3/upload", data={"csrf": csrf_of(form.text)},
                        files={"notebook": ("assignment3.ipynb", notebook.read_bytes())})
        assert r.status_code == 303 and r.headers["location"].startswith("/receipt/"), r.text[-2000:]
        receipt = r.headers["location"]
        deadline = time.monotonic() + CHECKS_TIMEOUT_S
        while "http-equiv=\"refresh\"" in (page := client.get(receipt).text):           # queued → running
            assert time.monotonic() < deadline, f"the checks did not finish:\n{log.read_text(errors='replace')[-3000:]}"
            time.sleep(3)
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
        assert re.search(r"Public checks 4 / 4", text), text[-3000:]
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
