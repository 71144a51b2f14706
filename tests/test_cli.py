"""The command line as a user meets it: exit 0 whenever grading completed, 2 when the grader cannot grade."""

import json
import os
import subprocess
import sys

import pytest
from conftest import broken_kernelspec, kernel_start_reason

from autograder import PROJECT_ROOT
from autograder.cli import main
from autograder.run.device import visible_gpus

# TensorFlow's native start-up lines (C++ logging, straight to fd 2), as measured on the 2-core CPU machine: on a
# CPU runner they read like failures, so they belong in the grader's log, never on the terminal.
TENSORFLOW_CHATTER = ("cuInit", "oneDNN", "absl", "cpu_feature_guard", "cudart_stub")


def autograder(*args, env=None, cwd=PROJECT_ROOT):
    return subprocess.run([sys.executable, "-m", "autograder", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **(env or {})}, timeout=900)


def test_grade_writes_results_json_and_a_table(tmp_path, config, checks):
    run = autograder("grade", str(config.assignment.release_notebook), "--device", "cpu", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert "reshape" in run.stdout and "0 / 12" in run.stdout
    data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert data["score"] == 0 and data["max_score"] == 12
    assert [t["name"] for t in data["tests"]] == [c.id for c in checks]
    assert {"name", "status", "score", "max_score", "output"} <= set(data["tests"][0])
    assert data["execution"]["device_name"] == "CPU" and data["execution"]["tensorflow"]
    assert data["official"] is False
    # The grader's own process imported TensorFlow (the graders need Keras): its start-up lines went to the log.
    assert not [line for line in TENSORFLOW_CHATTER if line in run.stderr], run.stderr
    log = (tmp_path / "grader.log").read_text(encoding="utf-8")
    assert [line for line in TENSORFLOW_CHATTER if line in log], log
    # The student's page, as a class's students get it, beside results.json; its path is said.
    page = (tmp_path / "feedback.html").read_text(encoding="utf-8")
    assert f"feedback: {tmp_path / 'feedback.html'}" in run.stdout
    assert "0 <small>/ 12</small>" in page and all(f"<code>{c.id}</code>" in page for c in checks)
    assert "assignment3.ipynb" in page and "Student:" not in page        # one notebook: no student id to show


def test_broken_notebook_is_graded_zero_not_a_crash(tmp_path):
    broken = tmp_path / "broken.ipynb"
    broken.write_text('{"cells": [', encoding="utf-8")
    run = autograder("grade", str(broken), "--device", "cpu", "--out", str(tmp_path / "out"))
    assert run.returncode == 2                      # nothing in it says which of the course's assignments it is
    assert "cannot tell which assignment" in run.stderr and "add --assignment ID (one of assignment3, assignment4)" \
        in run.stderr and not (tmp_path / "out").exists()
    run = autograder("grade", str(broken), "--assignment", "assignment3", "--device", "cpu", "--out",
                     str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "out" / "results.json").read_text())["score"] == 0
    raw = (tmp_path / "out" / "results.json").read_bytes()
    assert "JSON が途中で終わっています".encode("utf-8") in raw and b"\\u" not in raw   # readable, not \uXXXX


@pytest.mark.parametrize("args, env, message", [
    (["grade", "no-such.ipynb", "--device", "cpu"], {}, "not found: no-such.ipynb"),
    (["grade", "assignments/assignment3/assignment3.ipynb", "--device", "cpu"],
     {"AUTOGRADER_MNIST_DIR": "/nonexistent/mnist"}, "MNIST file missing: /nonexistent/mnist/train-images"),
])
def test_grader_problems_exit_2_with_the_reason(args, env, message, tmp_path):
    run = autograder(*args, "--out", str(tmp_path), env=env)
    assert run.returncode == 2
    assert message in run.stderr


@pytest.mark.parametrize("command", [["grade", "--device", "cpu"], ["check"]])
def test_a_kernel_that_cannot_start_exits_2_with_the_reason_and_no_traceback(tmp_path, command):
    out = tmp_path / "out"
    run = autograder(command[0], "assignments/assignment3/assignment3.ipynb", *command[1:],
                     *(["--out", str(out)] if command[0] == "grade" else []), env=broken_kernelspec(tmp_path))
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"autograder: error: {kernel_start_reason()}\n" in run.stderr
    assert "Traceback" not in run.stderr and not (out / "results.json").exists()


@pytest.mark.parametrize("missing", ["no-such.ipynb", "no-such-class/", "no-such-export.zip"])
def test_a_missing_path_is_said_first_before_tensorflow_or_the_gpu(missing):
    """Without --device cpu, under DEVICE_POLICY 'require-gpu', on a machine without a GPU: still 'not found'."""
    probe = ("import sys\nfrom autograder.cli import main\ncode = main(['grade', sys.argv[1]])\n"
             "print('tensorflow imported' if 'tensorflow' in sys.modules else 'tensorflow not imported')\n"
             "sys.exit(code)")
    run = subprocess.run([sys.executable, "-c", probe, missing], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, timeout=120)
    assert run.returncode == 2
    assert f"autograder: error: 見つかりません / not found: {missing.rstrip('/')}" in run.stderr
    assert "GPU" not in run.stderr and "tensorflow not imported" in run.stdout
    assert not (PROJECT_ROOT / "grades" / "no-such").exists()


@pytest.mark.parametrize("where", ["before the subcommand", "after the subcommand"])
def test_config_is_accepted_before_and_after_the_subcommand(tmp_path, capsys, where):
    bad = tmp_path / "grader_config.py"
    bad.write_text((PROJECT_ROOT / "grader_config.py").read_text(encoding="utf-8")
                   .replace('SANDBOX = "auto"', 'SANDBOX = "sometimes"'), encoding="utf-8")
    notebook = str(PROJECT_ROOT / "assignments" / "assignment3" / "assignment3.ipynb")
    command = ["grade", notebook, "--out", str(tmp_path / "out")]
    argv = ["--config", str(bad), *command] if where == "before the subcommand" else [*command, "--config", str(bad)]
    assert main(argv) == 2                 # the configuration is read (and refused) before anything is graded
    assert "SANDBOX = 'sometimes' is unknown" in capsys.readouterr().err


def test_bad_configuration_exits_2_naming_the_setting(tmp_path):
    bad = tmp_path / "grader_config.py"
    bad.write_text((PROJECT_ROOT / "grader_config.py").read_text(encoding="utf-8")
                   .replace('SANDBOX = "auto"', 'SANDBOX = "sometimes"'), encoding="utf-8")
    run = autograder("--config", str(bad), "grade", "assignments/assignment3/assignment3.ipynb")
    assert run.returncode == 2
    assert "SANDBOX = 'sometimes' is unknown" in run.stderr


@pytest.mark.skipif(bool(visible_gpus()), reason="checks the refusals of a machine without a GPU")
@pytest.mark.parametrize("device, messages", [
    ("gpu", ["--device gpu: no GPU is visible"]),
    ("auto", ["official grading requires a GPU", "pass --device cpu for an unofficial grade"]),
])
def test_without_a_gpu_official_grading_is_refused_unless_cpu_is_asked_for(device, messages, tmp_path):
    run = autograder("grade", "assignments/assignment3/assignment3.ipynb", "--device", device, "--out", str(tmp_path))
    assert run.returncode == 2
    for message in messages:
        assert message in run.stderr
    # The refusal alone on the terminal; why CUDA did not start (cuInit) is in the log it names.
    assert not [line for line in TENSORFLOW_CHATTER if line in run.stderr], run.stderr
    assert f"TensorFlow's own messages (e.g. why CUDA did not start): {tmp_path / 'grader.log'}" in run.stderr
    assert "cuInit" in (tmp_path / "grader.log").read_text(encoding="utf-8")


@pytest.mark.training
def test_demo_grades_reference_untouched_and_wrong_sample_for_real(tmp_path):
    """README's first command, as a user runs it: a fresh process grades the three notebooks itself (the in-process
    test in test_assignment4.py checks what the demo asks for; this one, that the grading behind it is real)."""
    run = autograder("demo", "assignment4", "--device", "cpu", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "assignment4: 課題4 (MLP②)" in run.stdout
    assert "demo OK: reference 12/12, untouched 0/12, wrong sample 10/12" in run.stdout
    assert run.stdout.count("✗ scaling") == 2         # the untouched notebook and the leaking sample


def test_check_shows_public_checks_in_full_and_hidden_ones_only_by_points(config):
    run = autograder("check", str(config.assignment.release_notebook))          # auto: no GPU needed for a self-check
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "x_train should have shape (60000, 784), found (60000, 28, 28)." in run.stdout   # public: in full
    for hidden in ("architecture", "compile", "fit", "val_accuracy", "predict"):
        line = next(line for line in lines if line.strip().startswith(f"· {hidden} "))
        assert line.endswith("hidden: graded after submission")
    for secret in ("Variable result was not found", "Variable test2", "22,500", "threshold"):
        assert secret not in run.stdout
    assert "public checks: 0 / 4 · whole assignment: 12 points" in run.stdout


def test_serve_keeps_tensorflows_start_up_lines_off_the_terminal(tmp_path):
    """The real server on a free loopback port, stopped once uvicorn says it runs: the terminal holds the site's
    start line and uvicorn's, and TensorFlow's own lines (cuInit, oneDNN…) are in the data folder's server log."""
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        server = subprocess.Popen([sys.executable, "-m", "autograder", "serve", "--port", str(port), "--data",
                                   str(tmp_path / "site")], cwd=PROJECT_ROOT, stdout=stdout, stderr=stderr,
                                  env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
        try:
            deadline = time.monotonic() + 120
            while "Uvicorn running" not in err.read_text() and server.poll() is None and time.monotonic() < deadline:
                time.sleep(0.3)
        finally:
            server.terminate()
            server.wait(timeout=60)
    said = out.read_text() + err.read_text()
    assert "Uvicorn running" in said and "autograder serve: data" in said, said
    assert not [line for line in TENSORFLOW_CHATTER if line in said], said
    log = (tmp_path / "site" / "logs" / "server.log").read_text(encoding="utf-8")
    assert [line for line in TENSORFLOW_CHATTER if line in log], log


def test_tensorflows_python_warnings_go_to_the_log_too(tmp_path):
    """A tf.function retracing warning (the demo's) comes through TensorFlow's Python logger, not its C++ logging:
    in a fresh process, inside the commands' log context, it lands in the log and not on the terminal."""
    log = tmp_path / "grader.log"
    code = ("import sys\nfrom pathlib import Path\nfrom autograder.run.device import native_output_to\n"
            f"with native_output_to(Path({str(log)!r})):\n"
            "    import tensorflow as tf\n"
            "    tf.get_logger().warning('5 out of the last 5 calls triggered tf.function retracing')\n"
            "    print('the grader speaks', file=sys.stderr)\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert run.returncode == 0, run.stderr
    assert "retracing" not in run.stderr + run.stdout and "the grader speaks" in run.stderr
    assert "WARNING:tensorflow:5 out of the last 5 calls triggered tf.function retracing" in log.read_text()
