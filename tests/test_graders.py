"""The hidden graders' harness: checks declare themselves, a grader's own failure is never a student's zero, and
broken graders (or broken declarations) stop grading."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from classroom import ON_TIME, answer, exchange_submission, load_course, short_config, works
from conftest import write_notebook

from autograder.classroom.batch import grade_batch
from autograder.cli import main
from autograder.grading.checks import CheckSpec, max_score
from autograder.grading.graders import GradersBroken, check_graders, run_graders
from autograder.grading.result import GradeResult
from autograder.reports.feedback import feedback_page
from autograder.reports.report import format_self_check

CHECK_IDS = ["reshape", "one_hot", "param_count", "architecture", "compile", "fit", "val_accuracy", "predict"]


@pytest.fixture
def course(tmp_path):
    """A course folder with its own grader_config.py and a copy of the hidden graders
    (course/reference/assignment3/graders/) that a test may break or extend; its config grades with that copy."""
    return short_config(tmp_path / "course")


def grader_file(course: Path) -> Path:
    return load_course(course).assignment.graders_dir / "test_assignment3.py"


def edit(path: Path, old: str, new: str) -> None:
    source = path.read_text(encoding="utf-8")
    assert old in source, old
    path.write_text(source.replace(old, new), encoding="utf-8")


def no_kernel(*args, **kwargs):
    raise AssertionError("no notebook may be executed when the graders are broken")


def test_the_assignments_graders_declare_its_checks_points_titles_and_visibility(config, checks):
    assert config.assignment.graders_dir == config.root / "reference" / "assignment3" / "graders"
    assert [c.id for c in checks] == CHECK_IDS                    # in the order the tests are defined
    assert [c.points for c in checks] == [1, 1, 2, 2, 1, 1, 2, 2] and max_score(checks) == 12
    assert [c.id for c in checks if c.public] == ["reshape", "one_hot", "param_count"]
    assert checks[0] == CheckSpec("reshape", 1.0, True, "x_train・x_test を (枚数, 784) にして 255 で割る",
                                  "x_train, x_test reshaped to (n, 784), divided by 255")
    assert check_graders(config) is checks                        # collected once while the files are unchanged


def test_a_grader_that_raises_leaves_its_check_not_graded_and_the_rest_judged(course, tmp_path, mnist):
    edit(grader_file(course), "def test_reshape(student, dataset):\n",
         "def test_reshape(student, dataset):\n    raise TypeError('a bug in the grader')\n")
    (tmp_path / "artifacts").mkdir()
    run = run_graders(tmp_path / "artifacts", load_course(course), mnist)   # nothing exported: the rest fail
    by_name = {t.name: t for t in run.tests}
    assert by_name["reshape"].status == "not graded" and by_name["reshape"].score is None
    assert "grader itself failed" in by_name["reshape"].output and "a bug" not in by_name["reshape"].output
    assert run.errors == {"reshape": "TypeError: a bug in the grader"}
    assert all(by_name[c].status == "failed" and by_name[c].score == 0 for c in CHECK_IDS if c != "reshape")
    result = GradeResult("assignment3", "nb.ipynb", run.tests, True)
    data = json.loads(json.dumps(result.to_json()))
    assert data["not_graded"] == ["reshape"] and data["score"] == 0 and data["max_score"] == 12
    assert next(t for t in data["tests"] if t["name"] == "reshape")["score"] is None


EXTRA_HEADER = '''import numpy as np

from autograder.grading.graders import check
from autograder.grading.graders.support import expect_shape, fail, shape_text

N_TEST, N_CLASSES, SAMPLE_INDEX, SAMPLE_DIGIT, SAME_PREDICTION = 10000, 10, 1, 2, 1e-3


@check("bonus", points=3, title=("おまけ", "a bonus"))
def test_bonus():
    pass


'''


def test_graders_in_several_files_are_all_collected_and_grade(course, tmp_path, mnist):
    config = load_course(course)
    assert [c.id for c in check_graders(config)] == CHECK_IDS
    main_file = grader_file(course)
    source = main_file.read_text(encoding="utf-8")
    cut = source.index('@check("predict"')                       # the last check moves to a file of its own
    main_file.write_text(source[:cut], encoding="utf-8")
    (config.assignment.graders_dir / "test_extra.py").write_text(EXTRA_HEADER + source[cut:], encoding="utf-8")

    declared = check_graders(config)                               # the files changed: collected again
    assert [c.id for c in declared] == CHECK_IDS[:-1] + ["bonus", "predict"]
    assert max_score(declared) == 15
    (tmp_path / "artifacts").mkdir()
    run = run_graders(tmp_path / "artifacts", config, mnist)
    assert [t.name for t in run.tests] == [c.id for c in declared] and not run.errors
    by_name = {t.name: t for t in run.tests}
    assert by_name["bonus"].status == "passed" and by_name["bonus"].score == 3
    for name in CHECK_IDS:                                         # nothing exported: each fails, explained
        assert by_name[name].status == "failed" and by_name[name].score == 0 and by_name[name].output
    assert "Variable test2 was not found" in by_name["predict"].output
    result = GradeResult("assignment3", "nb.ipynb", run.tests, True)
    assert (result.score, result.max_score) == (3, 15)



def test_a_data_file_the_graders_read_counts_for_the_declared_checks_as_for_the_grading_fingerprint(course):
    """One digest of the graders folder: a non-Python file a grader reads (here, a check's points) changes both the
    grading fingerprint and the declared checks."""
    from autograder.grading.fingerprint import grading_fingerprint

    config = load_course(course)
    points = config.assignment.graders_dir / "points.json"
    points.write_text('{"reshape": 1}', encoding="utf-8")
    edit(grader_file(course), '@check("reshape", points=1,',
         '@check("reshape", points=__import__("json").loads((__import__("pathlib").Path(__file__).parent / '
         '"points.json").read_text())["reshape"],')
    assert check_graders(config)[0].points == 1
    before = grading_fingerprint(config, True)
    points.write_text('{"reshape": 4}', encoding="utf-8")
    assert grading_fingerprint(config, True) != before
    assert check_graders(config)[0].points == 4                    # collected again, not the points of before

BREAKAGES = {
    # breakage: (what is replaced, by what, what the error says)
    "syntax": ("\nN_TRAIN, N_TEST", "\ndef broken(:\nN_TRAIN, N_TEST", "SyntaxError"),
    "import": ("import numpy as np\n", "import numpy as np\nimport no_such_module_here\n", "no_such_module_here"),
    "duplicate check": ('@check("fit", points=1,', '@check("compile", points=1,',
                        "test_assignment3.py::test_fit: check 'compile' is already declared by "
                        "test_assignment3.py::test_compile"),
    "bad title": ('title=("モデルのパラメータ数が 25,450", "the model has 25,450 parameters")',
                  'title=("モデルのパラメータ数が 25,450", "")',
                  "test_assignment3.py::test_param_count: check 'param_count': title must be a (Japanese, English) "
                  "pair of non-empty strings"),
    "negative points": ('@check("architecture", points=2,', '@check("architecture", points=-1,',
                        "test_assignment3.py::test_architecture: check 'architecture': points must be a number ≥ 0"),
    "bad id": ('@check("one_hot"', '@check("one-hot"',
               "test_assignment3.py::test_one_hot: the check id must be a plain identifier"),
    "undeclared": ('@check("val_accuracy", points=2,\n       title=("学習後の val_accuracy が基準以上", '
                   '"the trained model\'s val_accuracy reaches the threshold"))\n', "",
                   "test_assignment3.py::test_val_accuracy: declares no check"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_graders_that_cannot_be_collected_stop_a_single_grade_before_running(course, tmp_path, monkeypatch, capsys,
                                                                             breakage):
    old, new, said = BREAKAGES[breakage]
    edit(grader_file(course), old, new)
    with pytest.raises(GradersBroken, match="cannot run") as broken:
        check_graders(load_course(course))
    assert said in str(broken.value)
    monkeypatch.setattr("autograder.run.execute.execute", no_kernel)
    notebook = write_notebook(tmp_path / "nb.ipynb", "x = 1")
    assert main(["grade", str(notebook), "--config", str(course), "--device", "cpu", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "the hidden graders" in err and "run the same command again" in err and "Traceback" not in err
    assert said in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_broken_graders_make_a_batch_infrastructure_errors_and_the_fix_grades_them(course, tmp_path):
    exchange_submission(tmp_path / "class", "s001", answer(), ON_TIME)
    config = load_course(course)
    good = grader_file(course).read_text(encoding="utf-8")
    edit(grader_file(course), "import numpy as np\n", "import numpy as np\nimport no_such_module_here\n")
    out = tmp_path / "out"
    report = grade_batch(tmp_path / "class", out, config, workers=1, device="cpu", progress=False, grade_fn=no_kernel)
    result = report.written["s001"]
    assert result["status"] == "infrastructure error" and result["score"] is None
    log = (out / "logs" / "s001.log").read_text(encoding="utf-8")
    assert "no_such_module_here" in log
    grader_file(course).write_text(good, encoding="utf-8")               # the fix, then the same command
    again = grade_batch(tmp_path / "class", out, config, workers=1, device="cpu", progress=False, grade_fn=works)
    assert again.written["s001"]["status"] == "graded" and again.graded_now == 1


def test_a_changed_grader_regrades_a_batch(course, tmp_path):
    exchange_submission(tmp_path / "class", "s001", answer(), ON_TIME)
    config = load_course(course)
    grade = dict(workers=1, device="cpu", progress=False, grade_fn=works)
    assert grade_batch(tmp_path / "class", tmp_path / "out", config, **grade).graded_now == 1
    assert grade_batch(tmp_path / "class", tmp_path / "out", config, **grade).reused == 1
    edit(grader_file(course), "AGREEMENT = 0.002", "AGREEMENT = 0.003")
    again = grade_batch(tmp_path / "class", tmp_path / "out", config, **grade)
    assert again.graded_now == 1 and again.reused == 0


def test_declared_points_titles_and_visibility_reach_results_the_self_check_and_the_feedback_page(course, tmp_path,
                                                                                                  mnist):
    edit(grader_file(course), '@check("predict", points=2,\n       title=("test2 = model.predict(x_test) で x_test[1] を 2 と予測",\n'
                              '              "test2 = model.predict(x_test) predicts x_test[1] as a 2"))',
         '@check("predict", points=5, public=True, title=("予測を確かめる", "the prediction, checked"))')
    config = load_course(course)
    checks = check_graders(config)
    (tmp_path / "artifacts").mkdir()
    run = run_graders(tmp_path / "artifacts", config, mnist)
    result = GradeResult("assignment3", "nb.ipynb", run.tests, True)
    assert result.max_score == max_score(checks) == 15
    assert next(t for t in result.tests if t.name == "predict").max_score == 5

    view = format_self_check(result, checks)
    assert "Variable test2 was not found" in view                     # predict is public now: shown in full
    assert "Variable result was not found" not in view                # fit is still hidden
    assert "public checks: 0 / 9 · whole assignment: 15 points" in view

    page = feedback_page(result.to_json(), config, checks)
    assert "予測を確かめる" in page and "the prediction, checked" in page
    assert "0 <small>/ 15</small>" in page and "0 / 5" in page


def test_a_module_of_this_process_named_like_a_grader_file_is_not_taken_for_it(course, monkeypatch):
    """A project test module `test_assignment3` already imported (as pytest imports the course's own tests) must
    not be collected as the graders' test_assignment3.py — and is left in place afterwards."""
    import types

    impostor = types.ModuleType("test_assignment3")
    impostor.__file__ = "/elsewhere/test_assignment3.py"
    monkeypatch.setitem(sys.modules, "test_assignment3", impostor)
    assert [c.id for c in check_graders(load_course(course))] == CHECK_IDS
    assert sys.modules["test_assignment3"] is impostor


@pytest.mark.parametrize("assignment, expected", [
    ("assignment3", "Dense(32, relu) → Dense(10, softmax)"),
    ("assignment4", "Dense(16, relu) → Dropout(0.2) → Dense(1, sigmoid)"),
])
def test_a_model_with_no_layers_is_told_so_not_that_one_layer_is_missing(assignment, expected, monkeypatch):
    """An empty Sequential, or one holding only its Input: the architecture check says the model has no layers
    and which to add — not "found (no layers). Dropout(0.2) is missing", nor that its inputs are wrong."""
    import importlib.util

    import keras

    from autograder.course.assignment import config_for
    from autograder.course.config import load_config
    from autograder.grading.graders.support import CheckFailed

    config = config_for(load_config(), assignment)
    path = config.assignment.graders_dir / f"test_{assignment}.py"
    spec = importlib.util.spec_from_file_location(f"no_layers_{assignment}", path)
    graders = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, graders)          # its dataclasses look their module up there
    spec.loader.exec_module(graders)
    n_inputs = 784 if assignment == "assignment3" else 30
    for model in (keras.Sequential(), keras.Sequential([keras.Input((n_inputs,))])):
        args = (model,) if assignment == "assignment3" else (model, config.assignment)
        with pytest.raises(CheckFailed) as said:
            graders.test_architecture(*args)
        assert f"The model has no layers: add {expected} with model.add(...) or Sequential([...])." in str(said.value)
        assert "モデルに層がありません" in str(said.value)
        assert "missing" not in str(said.value) and "inputs" not in str(said.value)
