"""The hidden graders' harness: a grader's own failure is never a student's zero, and broken graders stop grading."""

from __future__ import annotations

import json
import shutil

import pytest

import autograder.graders as graders
from autograder.batch import grade_batch
from autograder.cli import main
from autograder.config import CHECK_IDS, load_config
from autograder.graders import GradersBroken, check_graders, run_graders
from autograder.result import GradeResult
from classroom import ON_TIME, answer, exchange_submission, short_config, works
from conftest import write_notebook


@pytest.fixture
def graders_copy(tmp_path, monkeypatch):
    """A copy of the hidden graders that a test may break; the harness runs it instead of the real ones."""
    copy = tmp_path / "graders"
    shutil.copytree(graders.GRADERS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "__init__.py",
                                                                              "plugin.py"))
    monkeypatch.setattr(graders, "GRADERS_DIR", copy)
    return copy / "test_assignment3.py"


def no_kernel(*args, **kwargs):
    raise AssertionError("no notebook may be executed when the graders are broken")


def test_a_grader_that_raises_leaves_its_check_not_graded_and_the_rest_judged(graders_copy, tmp_path, config, mnist):
    source = graders_copy.read_text(encoding="utf-8")
    graders_copy.write_text(source.replace("def test_reshape(student, mnist):\n",
                                           "def test_reshape(student, mnist):\n    raise TypeError('a bug in the grader')\n"),
                            encoding="utf-8")
    (tmp_path / "artifacts").mkdir()
    run = run_graders(tmp_path / "artifacts", config, mnist)          # nothing exported: every other check fails
    by_name = {t.name: t for t in run.tests}
    assert by_name["reshape"].status == "not graded" and by_name["reshape"].score is None
    assert "grader itself failed" in by_name["reshape"].output and "a bug" not in by_name["reshape"].output
    assert run.errors == {"reshape": "TypeError: a bug in the grader"}
    assert all(by_name[c].status == "failed" and by_name[c].score == 0 for c in CHECK_IDS if c != "reshape")
    result = GradeResult("assignment3", "nb.ipynb", run.tests, True)
    data = json.loads(json.dumps(result.to_json()))
    assert data["not_graded"] == ["reshape"] and data["score"] == 0 and data["max_score"] == 12
    assert next(t for t in data["tests"] if t["name"] == "reshape")["score"] is None


@pytest.mark.parametrize("breakage", ["syntax", "import", "duplicate check"])
def test_graders_that_cannot_be_collected_stop_a_single_grade_before_running(graders_copy, tmp_path, monkeypatch,
                                                                             capsys, breakage):
    source = graders_copy.read_text(encoding="utf-8")
    broken = {"syntax": source + "\ndef broken(:\n",
              "import": source.replace("import pytest\n", "import pytest\nimport no_such_module_here\n"),
              "duplicate check": source.replace('@pytest.mark.check("fit")', '@pytest.mark.check("compile")')}
    graders_copy.write_text(broken[breakage], encoding="utf-8")
    with pytest.raises(GradersBroken, match="cannot run"):
        check_graders(load_config())
    monkeypatch.setattr("autograder.grade.execute", no_kernel)
    notebook = write_notebook(tmp_path / "nb.ipynb", "x = 1")
    assert main(["grade", str(notebook), "--device", "cpu", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "the hidden graders" in err and "run the same command again" in err and "Traceback" not in err
    assert {"syntax": "SyntaxError", "import": "no_such_module_here", "duplicate check": "exactly once"}[breakage] in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_broken_graders_make_a_batch_infrastructure_errors_and_the_fix_grades_them(graders_copy, tmp_path):
    exchange_submission(tmp_path / "class", "s001", answer(), ON_TIME)
    config = load_config(short_config(tmp_path))
    good = graders_copy.read_text(encoding="utf-8")
    graders_copy.write_text(good.replace("import pytest\n", "import pytest\nimport no_such_module_here\n"),
                            encoding="utf-8")
    out = tmp_path / "out"
    report = grade_batch(tmp_path / "class", out, config, workers=1, device="cpu", progress=False, grade_fn=no_kernel)
    result = report.results["s001"]
    assert result["status"] == "infrastructure error" and result["score"] is None
    log = (out / "logs" / "s001.log").read_text(encoding="utf-8")
    assert "no_such_module_here" in log
    graders_copy.write_text(good, encoding="utf-8")                       # the fix, then the same command
    again = grade_batch(tmp_path / "class", out, config, workers=1, device="cpu", progress=False, grade_fn=works)
    assert again.results["s001"]["status"] == "graded" and again.graded_now == 1
