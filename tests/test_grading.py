"""End to end: notebooks in, scored checks out. Trainings are marked; only the tests that need the lecture's
30 epochs or its 0.95 threshold train them (~1 min each on 2 CPU cores), the others grade the sample as handed in on
the 2-epoch course (conftest's ``short_course``: epochs=2, threshold 0.90)."""

import re

import pytest

from autograder.grading.grade import grade_notebook
from tests.conftest import SAMPLES

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
CHECK_IDS = ("reshape", "one_hot", "param_count", "architecture", "compile", "fit", "val_accuracy", "predict")
MODEL_CHECKS = {"param_count", "architecture", "compile", "reshape", "one_hot", "predict"}

# Each wrong submission fails exactly these checks and passes the others. Without /255 the same MLP trains
# to ~0.92 (measured 0.9177), so it misses the val_accuracy threshold too: that is the lesson, not a side effect
# (it is graded on the lecture's 30 epochs and 0.95 threshold; the other full-length samples on the short course).
WRONG = {
    "submitted-no-normalisation": {"reshape", "val_accuracy"},
    "submitted-dense64-functional": {"param_count", "architecture"},
    "submitted-sigmoid-output-retyped": {"architecture"},
    "submitted-few-epochs": {"fit"},
    "submitted-no-validation": {"fit", "val_accuracy"},
    "submitted-labels-as-test2": {"predict"},
    "submitted-count-params-patched": {"param_count", "architecture"},
    "submitted-forged-history": {"fit", "val_accuracy"},
    "submitted-accuracy-metric-class": {"compile"},      # val_accuracy judged on the grader's evaluation alone
    "submitted-fit-twice": {"fit"},
    "submitted-x-train-cut": {"reshape", "one_hot", "fit", "val_accuracy"},
}
QUICK = {"submitted-few-epochs", "submitted-forged-history"}
LECTURE = QUICK | {"submitted-no-normalisation"}          # graded as the lecture's course; the rest on the short one


def failed(result) -> set[str]:
    return {t.name for t in result.tests if t.status == "failed"}


def assert_explained(result):
    """Every failed check says, in Japanese then English, what was expected and what was found."""
    for t in result.tests:
        if t.status == "failed":
            ja, en = t.output.split("\n", 1)
            assert JAPANESE.search(ja) and not JAPANESE.search(en) and len(en) > 20, (t.name, t.output)
        else:
            assert t.score == t.max_score


@pytest.mark.training
@pytest.mark.lecture_course("reference/assignment3/assignment3.ipynb")
def test_reference_scores_full_marks(graded, config):
    result = graded(config.assignment.reference_notebook)
    assert failed(result) == set()
    assert result.score == result.max_score == 12
    assert [t.name for t in result.tests] == list(CHECK_IDS)
    assert result.notes == []
    assert result.measurements["param_count"] == 25450
    assert result.measurements["predicted_digit_x_test_1"] == 2
    assert 0.955 <= result.measurements["val_accuracy"] <= 0.975   # the lecture's ≈ 0.965
    assert result.execution["device_name"] == "CPU" and not result.official


@pytest.mark.lecture_course("assignments/assignment3/assignment3.ipynb")
def test_untouched_student_notebook_scores_zero_and_finishes(graded, config):
    result = graded(config.assignment.release_notebook)
    assert result.score == 0 and failed(result) == set(CHECK_IDS)
    assert_explained(result)
    assert any("NotImplementedError" in note for note in result.notes)
    assert result.execution["export_ok"] and not result.execution["kernel_died"]


def course_marks(name: str) -> tuple:
    return (() if name in QUICK else (pytest.mark.training,)) + (() if name in LECTURE else (pytest.mark.short_course,))


@pytest.mark.parametrize("name", [pytest.param(n, id=n, marks=course_marks(n)) for n in sorted(WRONG)])
def test_wrong_submission_fails_exactly_its_checks(graded, name):
    result = graded(SAMPLES / f"{name}.ipynb", short=name not in LECTURE)
    assert failed(result) == WRONG[name]
    assert_explained(result)


@pytest.mark.parametrize("style", ["style-sequential-list", "style-functional-tf-keras",
                                   "style-keras-input-tf-functions", "style-activation-layers",
                                   "style-compile-classes", "style-training-helper"])
def test_the_right_model_in_any_keras_style_passes_the_model_checks(graded, style):
    result = graded(SAMPLES / f"{style}.ipynb")       # trains one epoch: only fit and val_accuracy may fail
    assert failed(result) <= {"fit", "val_accuracy"}
    assert MODEL_CHECKS.isdisjoint(failed(result))


def test_forged_history_is_caught_by_the_graders_own_numbers(graded):
    result = graded(SAMPLES / "submitted-forged-history.ipynb")
    outputs = {t.name: t.output for t in result.tests}
    assert "22,500" in outputs["fit"] and "750" in outputs["fit"]
    assert result.measurements["val_accuracy_reported"] == pytest.approx(0.99)
    assert result.measurements["val_accuracy"] < 0.95


@pytest.mark.training                   # the sample trains (it was unmarked, and trained the lecture's 30 epochs)
@pytest.mark.short_course("submitted-sigmoid-output-retyped")
def test_notebook_without_release_metadata_is_graded_and_noted(graded):
    result = graded(SAMPLES / "submitted-sigmoid-output-retyped.ipynb", short=True)
    assert any("no nbgrader metadata" in note for note in result.notes)
    assert result.score > 0


def test_regrading_reproduces_val_accuracy(graded, config, mnist):
    """Seeded: the same notebook on the same machine trains to the same val_accuracy (measured: identical)."""
    path = SAMPLES / "submitted-few-epochs.ipynb"
    first = graded(path).measurements["val_accuracy"]
    again = grade_notebook(path, config, device="cpu", data=mnist).measurements["val_accuracy"]
    assert again == pytest.approx(first, abs=1e-9)


@pytest.mark.parametrize("content, reason", [
    (b"{not json", "not JSON"),
    (b"", "The file is empty"),
    (b'{"cells": [', "The JSON ends early"),
    (b'{"cells": 3}', "not a Jupyter notebook"),
    (b"\xff\xfe\x00binary", "not UTF-8"),
])
def test_unreadable_notebook_scores_zero_with_the_reason(tmp_path, config, mnist, content, reason):
    path = tmp_path / "broken.ipynb"
    path.write_bytes(content)
    result = grade_notebook(path, config, device="cpu", data=mnist)
    assert result.score == 0 and failed(result) == set(CHECK_IDS)
    assert all(reason in t.output for t in result.tests)
    assert_explained(result)


def outputs(result) -> dict[str, str]:
    return {t.name: t.output for t in result.tests}


@pytest.mark.training
@pytest.mark.short_course("style-compile-functions")
def test_the_lecture_compile_written_with_functions_scores_full_marks(graded):
    """loss=keras.losses.categorical_crossentropy is stored as {'class_name': 'function', ...}; the metric function
    records its history as val_categorical_accuracy."""
    result = graded(SAMPLES / "style-compile-functions.ipynb", short=True)
    assert failed(result) == set()
    assert result.measurements["val_accuracy_reported"] == pytest.approx(result.measurements["val_accuracy"],
                                                                         abs=0.002)


@pytest.mark.training
@pytest.mark.short_course("submitted-accuracy-metric-class")
def test_keras_accuracy_metric_costs_the_compile_point_only_and_says_why(graded, short_course):
    result = graded(SAMPLES / "submitted-accuracy-metric-class.ipynb", short=True)
    compile_output = outputs(result)["compile"]
    assert "Accuracy" in compile_output and "CategoricalAccuracy" in compile_output and "'accuracy'" in compile_output
    val = next(t for t in result.tests if t.name == "val_accuracy")
    assert val.status == "passed" and "not compared" in val.output      # the record (≈ 0.01) is not the metric
    assert "val_accuracy_reported" not in result.measurements
    assert result.measurements["val_accuracy"] >= short_course.assignment.expected["val_accuracy_threshold"]


@pytest.mark.training
@pytest.mark.short_course("submitted-fit-twice")
def test_fit_run_twice_says_how_many_epochs_were_trained(graded, short_course):
    output = outputs(graded(SAMPLES / "submitted-fit-twice.ipynb", short=True))["fit"]
    twice = 2 * short_course.assignment.expected["epochs"]           # the lecture's 30: "60 epochs (45,000 updates)"
    assert f"{twice} epochs in total ({twice * 750:,} updates)" in output and "run all cells once" in output
    assert f"合計 {twice} エポック" in output


@pytest.mark.training
@pytest.mark.short_course("submitted-x-train-cut")
def test_x_train_cut_before_fit_is_one_explanation_wherever_it_costs(graded):
    result = graded(SAMPLES / "submitted-x-train-cut.ipynb", short=True)
    out = outputs(result)
    for check in ("reshape", "fit", "val_accuracy"):
        assert out[check].startswith("x_train は 60,000 件のはずですが、48,000 件しかありません。"), out[check]
        assert "x_train should hold 60,000 samples but holds 48,000: it was cut before fit." in out[check]
    assert "y_train should hold 60,000 samples but holds 48,000" in out["one_hot"]


@pytest.mark.lecture_course("submitted-float16-images")
def test_float16_images_are_told_they_lose_precision(graded):
    result = graded(SAMPLES / "submitted-float16-images.ipynb")      # one quick epoch: the model checks only
    assert failed(result) & MODEL_CHECKS == {"reshape"}
    assert "float16, which loses precision" in outputs(result)["reshape"] and "float32" in outputs(result)["reshape"]
    assert_explained(result)


@pytest.mark.lecture_course("submitted-test2-digits")
def test_test2_holding_digits_is_told_it_needs_probabilities(graded):
    result = graded(SAMPLES / "submitted-test2-digits.ipynb")
    assert failed(result) & MODEL_CHECKS == {"predict"}
    assert "shape (10000,): it holds predicted digits" in outputs(result)["predict"]
    assert "without argmax" in outputs(result)["predict"]
    assert_explained(result)
