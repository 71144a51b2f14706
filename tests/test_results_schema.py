"""results.json's one schema (``result.Result``): results written before it was versioned still load, whole; a
result of a newer schema is refused with what to do; what is written now carries its version and reads back equal.

tests/results_v0/ holds files as the code before ``schema_version`` wrote them (captured from its runs): a class's
results/<id>.json — graded, an infrastructure error, refused as late — and one notebook's results.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autograder.grading.result import (INFRASTRUCTURE, LATE, SCHEMA_VERSION, CheckResult, GradeResult, Provenance,
                                       Result, ResultSchemaError, Superseded)
from autograder.grading.store import read_result, referenced_runs
from autograder.reports.gradebook import gradebook_csv

BEFORE = Path(__file__).with_name("results_v0")
WRITTEN_BEFORE = sorted(BEFORE.glob("*.json"))


@pytest.mark.parametrize("path", WRITTEN_BEFORE, ids=lambda p: p.stem)
def test_a_result_written_before_the_schema_was_versioned_loads_whole(path):
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert "schema_version" not in raw
    result = read_result(path)
    assert result.to_json() == {"schema_version": SCHEMA_VERSION, **raw}     # every field, as it was written
    assert result.score == raw["score"] and result.status == raw["status"] and result.official is raw["official"]
    assert [t.name for t in result.tests] == [t["name"] for t in raw["tests"]]
    assert result.provenance.run_fingerprint == raw["run_fingerprint"]
    assert result.provenance.graded_from == raw["graded_from"]


def test_older_results_keep_their_provenance_and_meaning(config, checks):
    late, infra, single = (read_result(BEFORE / f"{name}.json") for name in ("late", "infrastructure", "results"))
    assert late.status == LATE and late.student == "s002" and late.provenance.attempts == 0
    assert late.provenance.submitted_at == "2024-05-16T15:30:00+00:00" and late.provenance.superseded == ()
    assert infra.status == INFRASTRUCTURE and infra.points is None
    assert infra.provenance.infrastructure_reason.startswith("cell 9: ResourceExhaustedError")
    assert single.student == "" and single.provenance.student_id is None         # one notebook: no student
    assert referenced_runs(BEFORE) == {single.provenance.run_fingerprint}
    rows = gradebook_csv([late, infra], config, checks).splitlines()
    assert rows[1].startswith("s002,0,12,no,") and rows[2].startswith("s001,,12,no,")


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, "2", None, -1])
def test_a_result_of_an_unknown_schema_is_refused_with_what_to_do(tmp_path, version):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema_version": version, "score": 1, "max_score": 1, "tests": []}))
    with pytest.raises(ResultSchemaError) as refused:
        read_result(path)
    said = str(refused.value)
    assert f"schema_version {version!r}" in said and f"reads up to {SCHEMA_VERSION}" in said
    assert "newer autograder" in said and "update the autograder" in said and "autograder を更新" in said


def test_a_result_written_now_carries_its_version_and_reads_back_equal():
    grade = GradeResult("assignment3", "nb.ipynb", [CheckResult("reshape", "passed", 1.0, 1.0),
                                                    CheckResult("fit", "not graded", None, 2.0, "grader failed")],
                        True, {"device": "cpu", "seconds": 3.5}, ["a note"], {"val_accuracy": 0.96})
    made = Provenance(student_id="山田", origin="submitted/山田/nb.ipynb", submitted_at=None, timestamp_problem="none",
                      superseded=(Superseded("old.ipynb", "2024-05-14 03:00:00.000000 UTC", "earlier"),), attempts=1,
                      graded_from="executed", run_fingerprint="r" * 64)
    result = Result.of_grade(grade, made)
    written = json.loads(json.dumps(result.to_json()))
    assert written["schema_version"] == SCHEMA_VERSION and written["score"] == 1 and written["not_graded"] == ["fit"]
    assert "submitted_at" not in written and written["superseded"][0]["reason"] == "earlier"
    assert Result.from_json(written) == result
    assert Result.from_json(written).verdict() == grade
