"""Batch grading of a class: one row per student with an honest status, nothing lost, resumable after a kill."""

from __future__ import annotations

import csv
import html
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from classroom import (LATE, ON_TIME, always_lost, answer, echo_options, exchange_submission, gpu_out_of_memory,
                       inbound_submission, load_course, lost_once, short_config, works)
from conftest import assert_no_grader_source, broken_kernelspec, kernel_start_reason

from autograder import PROJECT_ROOT
from autograder.classroom.batch import grade_batch
from autograder.errors import GraderError
from autograder.grading.graders import check_graders
from autograder.grading.store import remove_leftovers
from autograder.reports.gradebook import gradebook_csv
from autograder.run.infrastructure import infrastructure_problem


def read_gradebook(path: Path) -> dict[str, dict]:
    with open(path, encoding="utf-8") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def batch_cli(*args, config: Path, env: dict | None = None):
    return subprocess.run([sys.executable, "-m", "autograder", "--config", str(config), "grade", *args, "--quiet"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **(env or {})})


# --- the worker pool, with stand-in grading functions (no training) -----------------------------------------

@pytest.fixture
def two_students(tmp_path):
    exchange_submission(tmp_path / "class", "s001", answer(), ON_TIME)
    exchange_submission(tmp_path / "class", "s002", answer(), ON_TIME)
    return tmp_path / "class", load_course(short_config(tmp_path))


def test_a_lost_worker_is_retried_once_on_a_fresh_one(tmp_path, two_students):
    source, config = two_students
    report = grade_batch(source, tmp_path / "out", config, workers=2, device="cpu", progress=False,
                         grade_fn=lost_once)
    assert {r["status"] for r in report.written.values()} == {"graded"}
    assert all(r["attempts"] == 2 for r in report.written.values())
    log = (tmp_path / "out" / "logs" / "s001.log").read_text(encoding="utf-8")
    assert "attempt 1 failed: worker lost (exit code 3)" in log


def test_a_second_infrastructure_failure_is_reported_never_a_zero(tmp_path, two_students):
    source, config = two_students
    out = tmp_path / "out"
    report = grade_batch(source, out, config, workers=2, device="cpu", progress=False, grade_fn=always_lost)
    assert report.counts == {"infrastructure error": 2}
    book = read_gradebook(out / "gradebook.csv")
    assert book["s001"]["status"] == "infrastructure error"
    assert book["s001"]["score"] == "" and all(book["s001"][c.id] == "" for c in check_graders(config))
    assert [t["name"] for t in json.loads((out / "results" / "s001.json").read_text(encoding="utf-8"))["tests"]] == [
        c.id for c in check_graders(config)]                               # each declared check, not graded
    result = json.loads((out / "results" / "s001.json").read_text(encoding="utf-8"))
    assert result["score"] is None and result["attempts"] == 2
    assert "not your error" in result["status_detail"]
    # Rerunning the same command grades them again (an infrastructure error is never kept as a result).
    again = grade_batch(source, out, config, workers=1, device="cpu", progress=False, grade_fn=works)
    assert again.graded_now == 2 and again.counts == {"graded": 2}


def test_a_kernel_that_cannot_start_is_an_infrastructure_error_with_its_reason_everywhere(tmp_path, two_students):
    """Really graded (no training: the kernel never starts); the reason reaches each place an instructor looks."""
    source, config = two_students
    out = tmp_path / "grades" / "assignment3"                     # a class: always OUT/<assignment>/
    run = batch_cli(str(source), "--out", str(out.parent), "--device", "cpu", "--workers", "2", config=config.source,
                    env=broken_kernelspec(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    why = kernel_start_reason()
    for student in ("s001", "s002"):
        result = json.loads((out / "results" / f"{student}.json").read_text(encoding="utf-8"))
        assert result["status"] == "infrastructure error" and result["attempts"] == 2
        assert result["infrastructure_reason"] == why and why in result["status_detail"]
        assert result["notes"] == [f"attempt 1: {why}", f"attempt 2: {why}"]
        log = (out / "logs" / f"{student}.log").read_text(encoding="utf-8")
        assert f"attempt 1 failed: {why}\n" in log and f"attempt 2 failed: {why}\n" in log
    summary = (out / "summary.html").read_text(encoding="utf-8")
    assert f"<li><code>{html.escape(why)}</code>: s001, s002</li>" in summary
    assert f"infrastructure error: s001, s002: {why}" in run.stderr.splitlines()[-2:]   # one line per reason


def test_gpu_failures_reported_by_the_kernel_are_retried_then_reported(tmp_path, two_students):
    source, config = two_students
    report = grade_batch(source, tmp_path / "out", config, workers=2, device="cpu", progress=False,
                         grade_fn=gpu_out_of_memory)
    assert report.counts == {"infrastructure error": 2}
    assert "OOM when allocating" in report.written["s002"]["notes"][1]


def test_exact_fit_reaches_the_workers_and_counts_as_another_configuration(tmp_path, two_students):
    source, config = two_students
    out = tmp_path / "out"
    fused = grade_batch(source, out, config, workers=1, device="cpu", progress=False, grade_fn=echo_options)
    assert fused.written["s001"]["notes"] == ["device=cpu fused=True"]
    exact = grade_batch(source, out, config, workers=1, device="cpu", progress=False, grade_fn=echo_options,
                        exact_fit=True)
    assert exact.graded_now == 2 and exact.written["s001"]["notes"] == ["device=cpu fused=False"]


def test_cuda_errors_are_told_apart_from_student_errors():
    oom = {"status": "error", "index": 8, "ename": "ResourceExhaustedError", "evalue": "OOM when allocating tensor"}
    student = {"status": "error", "index": 2, "ename": "NameError", "evalue": "name 'x' is not defined"}
    assert "cell 9: ResourceExhaustedError" in infrastructure_problem({"device": "gpu", "cells": [student, oom]})
    assert infrastructure_problem({"device": "gpu", "cells": [student]}) == ""
    assert infrastructure_problem({"device": "cpu", "cells": [oom]}) == ""     # on the CPU: the notebook's own


def test_device_gpu_without_a_gpu_stops_before_grading(tmp_path, two_students):
    source, config = two_students
    with pytest.raises(GraderError, match="no GPU is visible"):
        grade_batch(source, tmp_path / "out", config, device="gpu", progress=False)
    assert not (tmp_path / "out").exists()


def test_leftover_temporary_files_of_a_killed_batch_are_removed(tmp_path):
    (tmp_path / "results").mkdir()
    leftovers = [tmp_path / ".gradebook.csv.x1.tmp", tmp_path / "results" / ".s001.json.x2.tmp"]
    for path in leftovers:
        path.write_text("half")
    (tmp_path / "results" / "s001.json").write_text("{}")
    remove_leftovers(tmp_path)
    assert not any(p.exists() for p in leftovers) and (tmp_path / "results" / "s001.json").exists()


def test_gradebook_columns(config, checks):
    ids = [c.id for c in checks]
    row = {"student_id": "s1", "score": 3.0, "status": "graded", "submitted_at": "2024-05-15T12:00:00+00:00",
           "origin": "a.ipynb", "official": True,
           "tests": [{"name": c, "score": 1.0 if c == "predict" else 0.0} for c in ids]}
    flagged = {**row, "student_id": "s3", "not_graded": ["compile"],
               "tests": [{"name": c, "score": None if c == "compile" else 1.0} for c in ids]}
    rows = gradebook_csv([row, {**row, "student_id": "s2", "official": False}, flagged], config, checks).splitlines()
    assert rows[0].split(",") == ["student_id", "score", "max_score", "official", *ids, "status", "not_graded",
                                  "submitted_at", "file", "detail", "late_deduction", "extended_until"]
    assert rows[1] == "s1,3,12,yes,0,0,0,0,0,0,0,1,graded,,2024-05-15T21:00:00+09:00,a.ipynb,,,"
    assert rows[2].startswith("s2,3,12,no,")                  # a CPU grade under require-gpu: not for the LMS
    assert ",1,1,1,1,,1,1,1,graded,compile," in rows[3]      # a grader failed on compile: no points, flagged


def test_cpu_grades_under_require_gpu_are_unofficial_in_the_gradebook_and_the_summary(tmp_path, two_students):
    source, config = two_students
    assert config.device_policy == "require-gpu"
    out = tmp_path / "out"
    report = grade_batch(source, out, config, workers=1, device="cpu", progress=False, grade_fn=works)
    assert {row["official"] for row in read_gradebook(out / "gradebook.csv").values()} == {"no"}
    summary = (out / "summary.html").read_text(encoding="utf-8")
    assert "2 件中 2 件は非公式の採点です" in summary and "2 of 2 grades are unofficial" in summary
    assert f"Wall time of this run</dt><dd>{report.seconds:.0f} s" in summary


def test_result_files_keep_japanese_readable(tmp_path):
    """results/<id>.json are UTF-8 text a TA can read (and grep), not \\uXXXX escapes: a late refusal's reason and
    a graded result's explanations alike."""
    exchange_submission(tmp_path / "class", "s001", answer(), ON_TIME)
    exchange_submission(tmp_path / "class", "s002", answer(), LATE)
    config = load_course(short_config(tmp_path))
    grade_batch(tmp_path / "class", tmp_path / "out", config, workers=1, device="cpu", progress=False,
                grade_fn=works)
    graded, late = (tmp_path / "out" / "results" / "s001.json").read_bytes(), (
        tmp_path / "out" / "results" / "s002.json").read_bytes()
    assert "テスト".encode("utf-8") in graded and "を過ぎた提出".encode("utf-8") in late
    assert b"\\u" not in graded + late
    assert json.loads(late)["status"] == "late"


def test_a_cpu_class_grade_ends_by_saying_its_grades_are_unofficial(tmp_path):
    """From the command line, a class where nobody needs a kernel (one late submission): the last lines warn."""
    exchange_submission(tmp_path / "class", "s001", answer(), LATE)
    run = batch_cli(str(tmp_path / "class"), "--out", str(tmp_path / "out"), "--device", "cpu",
                    config=short_config(tmp_path))
    assert run.returncode == 0, run.stderr
    assert "1 student: 1 late" in run.stdout
    assert "警告: 1 件中 1 件は非公式の採点です" in run.stderr
    assert "WARNING: 1 of 1 grades are unofficial" in run.stderr and "do not upload them to the LMS" in run.stderr
    assert (tmp_path / "out" / "logs" / "grader.log").is_file()


# --- a small class, really graded ---------------------------------------------------------------------------

def build_class(root: Path) -> None:
    """correct, wrong, late, duplicate (three submissions), broken, no timestamp."""
    exchange_submission(root, "s001", answer(), ON_TIME)
    exchange_submission(root, "s002", answer(normalise=False), ON_TIME)
    exchange_submission(root, "s003", answer(), LATE)
    inbound_submission(root, "s004", answer(normalise=False), ON_TIME)
    inbound_submission(root, "s004", answer(), ON_TIME.replace(hour=13))
    inbound_submission(root, "s004", answer(), LATE)
    exchange_submission(root, "s005", '{"cells": [', ON_TIME)
    exchange_submission(root, "s006", answer(), None)


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    """The class graded in one uninterrupted run from the command line."""
    tmp = tmp_path_factory.mktemp("class")
    build_class(tmp / "class")
    config = short_config(tmp)
    started = time.monotonic()
    run = batch_cli(str(tmp / "class"), "--out", str(tmp / "grades"), "--device", "cpu", "--workers", "2",
                    config=config)
    assert run.returncode == 0, run.stderr[-3000:]
    return tmp, config, run, time.monotonic() - started


@pytest.mark.training
def test_one_row_per_student_with_the_right_status(graded_class):
    tmp, _, run, _ = graded_class
    book = read_gradebook(tmp / "grades" / "assignment3" / "gradebook.csv")
    assert list(book) == ["s001", "s002", "s003", "s004", "s005", "s006"]
    status = {s: (row["status"], row["score"]) for s, row in book.items()}
    assert status == {"s001": ("graded", "12"), "s002": ("graded", status["s002"][1]), "s003": ("late", "0"),
                      "s004": ("graded", "12"), "s005": ("error", "0"), "s006": ("graded", "12")}
    assert book["s002"]["reshape"] == "0" and float(book["s002"]["score"]) < 12        # no /255
    assert "13:00:00.000000 UTC" in book["s004"]["file"] and "2 other submission(s) not graded" in book["s004"]["detail"]
    assert book["s003"]["submitted_at"] == "2024-05-17T00:30:00+09:00" and "not accepted" in book["s003"]["detail"]
    assert "The JSON ends early" in book["s005"]["detail"]
    assert "timestamp.txt is missing" in book["s006"]["detail"] and book["s006"]["submitted_at"] == ""
    assert "6 students" in run.stdout and "(0 regraded from stored runs, 5 executed, 0 unchanged)" in run.stdout


@pytest.mark.training
def test_each_student_gets_a_result_a_log_and_a_feedback_page(graded_class):
    tmp, config_path, _, _ = graded_class
    config = load_course(config_path)
    out = tmp / "grades" / "assignment3"
    for student in ["s001", "s002", "s003", "s004", "s005", "s006"]:
        result = json.loads((out / "results" / f"{student}.json").read_text(encoding="utf-8"))
        assert {"score", "max_score", "tests", "status", "student_id", "run_fingerprint", "grading_fingerprint",
                "intake_fingerprint", "graded_from"} <= set(result)
        page = (out / "feedback" / f"{student}.html").read_text(encoding="utf-8")
        assert student in page and result["status"] in page
        assert_no_grader_source(page)
        assert (out / "logs" / f"{student}.log").is_file()
    s001 = json.loads((out / "results" / "s001.json").read_text(encoding="utf-8"))
    assert s001["execution"]["device_name"] == "CPU" and s001["execution"]["fused_fit"] == config.fused_fit_steps
    assert len(s001["execution"]["history"]["val_accuracy"]) == 2
    assert "data:image/png;base64," in (out / "feedback" / "s001.html").read_text(encoding="utf-8")
    summary = (out / "summary.html").read_text(encoding="utf-8")
    assert all(f"feedback/{s}.html" in summary for s in ["s001", "s005"])
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.rglob("*.tmp"))


@pytest.mark.training
def test_rerunning_keeps_what_is_done_and_regrade_forces(graded_class):
    tmp, config, _, _ = graded_class
    out = tmp / "grades" / "assignment3"
    before = (out / "gradebook.csv").read_text(encoding="utf-8")
    graded_at = json.loads((out / "results" / "s001.json").read_text())["graded_at"]
    run = batch_cli(str(tmp / "class"), "--out", str(out.parent), "--device", "cpu", config=config)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "(0 regraded from stored runs, 0 executed, 6 unchanged)" in run.stdout
    assert (out / "gradebook.csv").read_text(encoding="utf-8") == before
    assert json.loads((out / "results" / "s001.json").read_text())["graded_at"] == graded_at
    # A changed submission is graded again, alone; byte for byte s001's notebook, it is s001's run (no kernel).
    exchange_submission(tmp / "class", "s002", answer(), ON_TIME)
    run = batch_cli(str(tmp / "class"), "--out", str(out.parent), "--device", "cpu", config=config)
    assert "(1 regraded from stored runs, 0 executed, 5 unchanged)" in run.stdout, run.stdout
    assert read_gradebook(out / "gradebook.csv")["s002"]["score"] == "12"
    exchange_submission(tmp / "class", "s002", answer().replace("MNIST", "MNIST (s002)"), ON_TIME)
    run = batch_cli(str(tmp / "class"), "--out", str(out.parent), "--device", "cpu", config=config)
    assert "(0 regraded from stored runs, 1 executed, 5 unchanged)" in run.stdout, run.stdout
    assert read_gradebook(out / "gradebook.csv")["s002"]["score"] == "12"


@pytest.mark.training
def test_a_batch_killed_midway_finishes_on_rerun_with_the_same_gradebook(graded_class, tmp_path):
    tmp, config, _, _ = graded_class
    build_class(tmp_path / "class")
    exchange_submission(tmp_path / "class", "s002", answer(), ON_TIME)     # as the class now stands
    reference = batch_cli(str(tmp / "class"), "--out", str(tmp / "grades"), "--device", "cpu", config=config)
    assert reference.returncode == 0
    out = tmp_path / "grades" / "assignment3"
    command = [sys.executable, "-m", "autograder", "--config", str(config), "grade", str(tmp_path / "class"),
               "--out", str(out.parent), "--device", "cpu", "--workers", "2", "--quiet"]
    batch = subprocess.Popen(command, cwd=PROJECT_ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    deadline = time.monotonic() + 300
    graded_before_kill = []
    while time.monotonic() < deadline and batch.poll() is None:
        graded_before_kill = [p for p in (out / "results").glob("*.json")
                              if json.loads(p.read_text(encoding="utf-8")).get("status") == "graded"]
        if graded_before_kill:
            break
        time.sleep(0.2)
    assert batch.poll() is None, "the batch finished before it could be killed"
    os.killpg(batch.pid, signal.SIGKILL)
    batch.wait()
    assert graded_before_kill and not (out / "gradebook.csv").exists()
    kept = {p.name: p.read_bytes() for p in graded_before_kill}
    run = batch_cli(str(tmp_path / "class"), "--out", str(out.parent), "--device", "cpu", config=config)
    assert run.returncode == 0, run.stderr[-2000:]
    regraded, executed, unchanged = map(int, re.search(
        r"(\d+) regraded from stored runs, (\d+) executed, (\d+) unchanged", run.stdout).groups())
    assert unchanged >= len(kept) and regraded + executed == 6 - unchanged
    for name, data in kept.items():
        assert (out / "results" / name).read_bytes() == data          # not graded again
    assert read_gradebook(out / "gradebook.csv") == read_gradebook(tmp / "grades" / "assignment3" / "gradebook.csv")
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("visible, expected", [("3,5", ["3", "5", "3"]), ("0", ["0", "0", "0"]), (None, [None] * 3)])
def test_each_worker_s_kernels_see_one_gpu_of_several(monkeypatch, visible, expected):
    """A machine or a Slurm job with several GPUs: worker slot i and its kernels get GPU i (in turn), not all of
    them on the first; one GPU, or none named, is left as it is."""
    from autograder.classroom.pool import one_gpu_per_slot

    seen = []
    for slot in range(3):
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        one_gpu_per_slot(slot)
        seen.append(os.environ.get("CUDA_VISIBLE_DEVICES"))
    assert seen == expected
