"""Assignment 4 (MLP②, breast cancer): the reference scores full marks, the untouched release zero, and each sample
fails exactly the checks its scenario must — graded as one class, side by side, as an instructor would."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest

from autograder import PROJECT_ROOT
from autograder.assignment import config_for
from autograder.batch import grade_batch
from autograder.config import load_config
from classroom import ON_TIME, exchange_submission

FOLDER = PROJECT_ROOT / "reference" / "assignment4"
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def expected_failures() -> dict[str, set[str]]:
    spec = importlib.util.spec_from_file_location("assignment4_samples", FOLDER / "samples" / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EXPECTED_FAILURES


@pytest.fixture(scope="module")
def graded_samples(tmp_path_factory):
    """The reference, the untouched release and every sample, each handed in by a 'student' named after it."""
    tmp = tmp_path_factory.mktemp("assignment4")
    notebooks = {"reference": FOLDER / "assignment4.ipynb",
                 "untouched": PROJECT_ROOT / "assignments" / "assignment4" / "assignment4.ipynb",
                 **{name: FOLDER / "samples" / f"{name}.ipynb" for name in expected_failures()}}
    for student, path in notebooks.items():
        exchange_submission(tmp / "class", student, path.read_bytes(), ON_TIME, assignment="assignment4")
    config = config_for(load_config(), "assignment4")
    report = grade_batch(tmp / "class", tmp / "out", config, device="auto", progress=False)
    return report.written


def failed(result: dict) -> set[str]:
    return {t["name"] for t in result["tests"] if t["status"] == "failed"}


@pytest.mark.training
def test_the_reference_scores_full_marks_on_the_cpu_officially(graded_samples):
    result = graded_samples["reference"]
    assert (result["score"], result["max_score"]) == (12, 12), result["tests"]
    assert result["official"] is True                        # DEVICE_POLICY "allow-cpu": a CPU grade counts
    assert result["measurements"]["param_count"] == 513
    assert result["measurements"]["test_auc"] >= 0.97 and result["measurements"]["sensitivity"] >= 0.90


@pytest.mark.training
def test_the_untouched_release_scores_zero_with_every_check_explained(graded_samples):
    result = graded_samples["untouched"]
    assert result["score"] == 0 and failed(result) == {t["name"] for t in result["tests"]}
    assert not result.get("not_graded")                      # every check judged, none crashed


@pytest.mark.training
@pytest.mark.parametrize("sample", sorted(expected_failures()))
def test_each_sample_fails_exactly_its_checks_and_says_why(graded_samples, sample):
    result = graded_samples[sample]
    assert result["status"] == "graded" and not result.get("not_graded")
    assert failed(result) == expected_failures()[sample]
    for test in result["tests"]:
        if test["status"] == "failed":
            ja, en = test["output"].split("\n", 1)
            assert JAPANESE.search(ja) and not JAPANESE.search(en) and len(en) > 20, (test["name"], test["output"])


@pytest.mark.training
def test_leakage_and_training_set_sensitivity_are_named_as_such(graded_samples):
    outputs = {name: {t["name"]: t["output"] for t in graded_samples[name]["tests"]}
               for name in ("submitted-leakage", "submitted-leakage-test-fit", "submitted-sensitivity-on-train",
                            "submitted-no-restore-best-weights")}
    assert "leakage" in outputs["submitted-leakage"]["scaling"] and "all of X" in outputs["submitted-leakage"]["scaling"]
    assert "leakage" in outputs["submitted-leakage-test-fit"]["scaling"]
    assert "training" in outputs["submitted-sensitivity-on-train"]["sensitivity"]
    assert "restore_best_weights" in outputs["submitted-no-restore-best-weights"]["early_stopping"]


def test_the_samples_match_their_generator():
    """make_samples.py writes every sample it lists and nothing else lies in samples/ unlisted."""
    on_disk = {p.stem for p in (FOLDER / "samples").glob("*.ipynb")}
    assert on_disk == set(expected_failures())
    json.loads((FOLDER / "samples" / "submitted-leakage.ipynb").read_text(encoding="utf-8"))
