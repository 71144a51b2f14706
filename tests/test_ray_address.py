"""README's Ray commands as a user types them: `ray start --head` in one shell, then `grade … --executor ray
--address HEAD:PORT`. Ray 2.60 turns token authentication on for a head once this machine holds a token (any local
``ray.init()`` writes ~/.ray/auth_token), but a driver given an explicit address does not send it by itself.

Everything runs in subprocesses with their own HOME (the token) and Ray temp folder, and the head is stopped by
its own process group — never `ray stop`, which would end every Ray cluster on the machine."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from classroom import ON_TIME, answer, exchange_submission

from autograder import PROJECT_ROOT

ray = pytest.importorskip("ray")

RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head_with_token(tmp_path_factory):
    """`ray start --head` with a token in its HOME, as a machine that once ran a local Ray has; → (address, env)."""
    tmp_path = tmp_path_factory.mktemp("head")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0")
    subprocess.run([str(RAY), "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
    assert (home / ".ray" / "auth_token").is_file()
    port = free_port()
    temp = tempfile.mkdtemp(prefix="rh", dir="/tmp")               # short: Ray's unix sockets live there
    head = subprocess.Popen([str(RAY), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", f"--temp-dir={temp}"],
                            env=env, stdout=open(tmp_path / "head.log", "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert head.poll() is None, (tmp_path / "head.log").read_text(errors="replace")[-3000:]
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "the head did not listen within 90 s"
            time.sleep(0.5)
        assert "Token authentication is enabled" in (tmp_path / "head.log").read_text(errors="replace")
        yield f"127.0.0.1:{port}", env
    finally:
        if head.poll() is None:                     # a test's head: killed, its raylet and workers with it
            os.killpg(os.getpgid(head.pid), signal.SIGKILL)
            head.wait(30)
        subprocess.run(["pkill", "-KILL", "-f", temp], check=False)      # any of its processes in another group
        shutil.rmtree(temp, ignore_errors=True)


GRADE_ON_THE_HEAD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from autograder.classroom.batch import grade_batch
    from autograder.classroom.executors import make_executor
    from classroom import ON_TIME, answer, exchange_submission, load_course, short_config, works

    folder, address = Path(sys.argv[1]), sys.argv[2]
    for student in ("s001", "s002"):
        exchange_submission(folder / "class", student, answer(), ON_TIME)
    config = load_course(short_config(folder))
    report = grade_batch(folder / "class", folder / "out", config, executor=make_executor("ray", address=address),
                         device="cpu", progress=False, grade_fn=works)
    print("executed", report.executed)
""")


def test_a_head_started_with_ray_start_is_reached_by_its_address_with_its_token(tmp_path, head_with_token):
    address, env = head_with_token
    env = {**env, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), str(PROJECT_ROOT / "tests")])}
    done = subprocess.run([sys.executable, "-c", GRADE_ON_THE_HEAD, str(tmp_path), address], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "executed 2"
    book = (tmp_path / "out" / "gradebook.csv").read_text(encoding="utf-8")
    assert "s001" in book and "s002" in book


def test_a_refused_connection_says_rays_own_reason_on_the_terminal(tmp_path, head_with_token):
    """RAY_AUTH_MODE=disabled: the driver sends no token, the head refuses it; the terminal says why and what to
    do, not only "Failed to connect" with the cause in the log."""
    address, env = head_with_token
    exchange_submission(tmp_path / "class", "s001", answer(), ON_TIME)
    env = {**env, "RAY_AUTH_MODE": "disabled"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", str(tmp_path / "class"), "--out",
                           str(tmp_path / "out"), "--executor", "ray", "--address", address, "--device", "cpu"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"cannot connect to the Ray cluster {address}" in done.stderr
    assert "InvalidAuthToken" in done.stderr and "RAY_AUTH_MODE=token" in done.stderr, done.stderr[-3000:]
