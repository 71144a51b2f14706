"""A class of hostile and broken submissions graded in one batch: every one ends with an honest status and a
specific explanation, the batch finishes within its limits, nothing leaks and nothing lands outside the output."""

from __future__ import annotations

import csv
import re
import time
from collections import Counter

import pytest
from classroom import load_course, short_config
from conftest import assert_no_grader_source
from hostile_corpus import cases, write_export

from autograder.classroom.batch import grade_batch
from autograder.run.cgroups import cgroup_limits_available
from autograder.run.sandbox import sandbox_available

pytestmark = [pytest.mark.training,
              pytest.mark.skipif(not (sandbox_available() and cgroup_limits_available()),
                                 reason="needs bubblewrap (apt-get install bubblewrap) and writable memory/pids "
                                        "cgroups: a fork loop and a memory bomb are run for real")]
# CELL_TIMEOUT_S: long enough for the memory bomb to reach its limit and be killed while two other hostile
# notebooks load the two cores (alone it takes ~4 s; with the batch's load it once took longer than 15 s).
LIMITS = {"CELL_TIMEOUT_S": "30", "NOTEBOOK_TIMEOUT_S": "120", "MEMORY_LIMIT_MB": "3072", "MAX_PROCESSES": "256",
          "OUTPUT_LIMIT_KB": "256", "SANDBOX": "'require'"}


CELL_ID = re.compile(r" \([0-9a-f]{8}\)")          # the corpus is written anew for each class, with new cell ids


def grade_hostile(tmp, **settings):
    out = tmp / "out"
    corpus = cases(tmp / "never-extracted", out)
    export = write_export(tmp / "export.zip", corpus)
    config = load_course(short_config(tmp / "course", **LIMITS, **settings))
    before = sorted(p.relative_to(tmp) for p in tmp.rglob("*"))
    started = time.monotonic()
    report = grade_batch(export, out, config, workers=3, device="cpu", progress=False)
    wall = time.monotonic() - started
    after = sorted(p.relative_to(tmp) for p in tmp.rglob("*") if not p.is_relative_to(out))
    return corpus, config, report, out, wall, before, after


@pytest.fixture(scope="module")
def hostile_batch(tmp_path_factory):
    """The corpus graded as the course grades (WARM_KERNELS = 1: after each worker's first, warm kernels)."""
    return grade_hostile(tmp_path_factory.mktemp("hostile"))


def test_the_corpus_ends_the_same_on_warm_kernels_as_on_cold_ones(hostile_batch, tmp_path_factory):
    corpus, _, warm_report, _, _, _, _ = hostile_batch
    _, _, cold_report, _, _, _, _ = grade_hostile(tmp_path_factory.mktemp("hostile-cold"), WARM_KERNELS="0")

    def rows(report):
        return {student: (r["status"], r["score"], sorted((t["name"], t["status"]) for t in r["tests"]),
                          sorted(CELL_ID.sub("", n) for n in r.get("notes", [])))
                for student, r in report.written.items()}

    def kernels(report):
        return Counter(r.get("execution", {}).get("kernel") for r in report.written.values() if r.get("execution"))

    assert rows(warm_report) == rows(cold_report)
    assert kernels(warm_report)["warm"] >= 3, kernels(warm_report)
    assert kernels(cold_report)["warm"] == 0 and kernels(cold_report)["cold"] > 0


def test_every_submission_gets_one_row_with_its_status_and_explanation(hostile_batch):
    corpus, _, report, out, _, _, _ = hostile_batch
    with open(out / "gradebook.csv", encoding="utf-8") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == sorted(c.student for c in corpus)
    for case in corpus:
        result = report.written[case.student]
        explained = " ".join([rows[case.student]["detail"], *result.get("notes", [])])
        assert (rows[case.student]["status"], case.says in explained) == (case.status, True), \
            (case.student, rows[case.student]["status"], explained[:600])
        if case.clean_run:
            assert not [n for n in result["notes"] if n.startswith("cell ")], (case.student, result["notes"])
        if case.failing is not None:
            failed = {t["name"] for t in result["tests"] if t["status"] != "passed"}
            assert failed == case.failing, (case.student, failed)


def test_limits_held_and_the_batch_finished_in_time(hostile_batch):
    _, config, report, _, wall, _, _ = hostile_batch
    loop = report.written["h01"]["execution"]
    assert loop["seconds"] < config.cell_timeout_s + 60, loop["seconds"]
    for result in report.written.values():
        seconds = result.get("execution", {}).get("seconds", 0)
        assert seconds < config.notebook_timeout_s + 60, (result["student_id"], seconds)
    assert wall < 3 * (config.notebook_timeout_s + 60)
    assert report.written["h02"]["execution"]["limits_hit"].get("oom_kills")
    assert report.written["h04"]["execution"]["limits_hit"].get("forks_refused")


def test_no_grader_source_or_forgery_reaches_any_output(hostile_batch):
    _, _, report, out, _, _, _ = hostile_batch
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".html", ".log", ".csv"):
            text = path.read_text(encoding="utf-8", errors="replace")
            assert_no_grader_source(text)
            assert "LEAKED" not in text and "NETWORK REACHABLE" not in text, path
    forger = report.written["h09"]
    assert forger["score"] == 4 and forger["measurements"]["param_count"] == 50890


def test_nothing_is_written_outside_the_output_folder(hostile_batch):
    _, _, _, _, _, before, after = hostile_batch
    assert after == before
