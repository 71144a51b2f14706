"""Assignment 4 (MLP②, breast cancer): the reference scores full marks, the untouched release zero, and each sample
fails exactly the checks its scenario must — graded as one class, side by side, as an instructor would."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from classroom import ON_TIME, exchange_submission

import autograder.demo
from autograder import PROJECT_ROOT
from autograder.classroom.batch import grade_batch
from autograder.cli import main
from autograder.course.assignment import config_for
from autograder.course.config import load_config
from autograder.grading.result import GradeResult

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


@pytest.mark.training
def test_demo_grades_reference_untouched_and_wrong_sample(graded_samples, tmp_path, monkeypatch, capfd):
    """`demo assignment4` on the CPU, its three notebooks answered from the class graded above (the same notebooks,
    graded the same way: the class's results are grade_notebook's), so the demo's own work is what is tested."""
    notebooks = {FOLDER / "assignment4.ipynb": "reference",
                 PROJECT_ROOT / "assignments" / "assignment4" / "assignment4.ipynb": "untouched",
                 **{FOLDER / "samples" / f"{name}.ipynb": name for name in expected_failures()}}
    asked = []

    def graded(path, config, device="auto", data=None, cpu_fallback=False, **options):
        asked.append((notebooks[Path(path)], config.assignment.id, device, cpu_fallback, data is not None))
        return GradeResult.from_json(graded_samples[notebooks[Path(path)]])

    monkeypatch.setattr(autograder.demo, "grade_notebook", graded)
    monkeypatch.chdir(tmp_path)
    code = main(["demo", "assignment4", "--device", "cpu"])
    stdout = capfd.readouterr().out
    assert code == 0, stdout
    assert [name for name, *_ in asked] == ["reference", "untouched", "submitted-leakage"]   # settings' DEMO_SAMPLE
    assert {tuple(rest) for _, *rest in asked} == {("assignment4", "cpu", True, True)}
    assert "assignment4: 課題4 (MLP②)" in stdout
    assert "demo OK: reference 12/12, untouched 0/12, wrong sample 10/12" in stdout
    assert stdout.count("✗ scaling") == 2         # the untouched notebook and the leaking sample


def test_the_samples_match_their_generator():
    """make_samples.py writes every sample it lists and nothing else lies in samples/ unlisted."""
    on_disk = {p.stem for p in (FOLDER / "samples").glob("*.ipynb")}
    assert on_disk == set(expected_failures())
    json.loads((FOLDER / "samples" / "submitted-leakage.ipynb").read_text(encoding="utf-8"))
