"""A course of several assignments: each a folder the framework discovers, graded and joined without touching
``autograder/``."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from classroom import ON_TIME, answer, exchange_submission, lms_export, short_config, works

from autograder import PROJECT_ROOT
from autograder.classroom.batch import grade_classes
from autograder.course.config import load_config
from autograder.errors import ConfigError, GraderError
from autograder.reports.gradebook import course_gradebook, find_gradebooks

ASSIGNMENT4 = PROJECT_ROOT / "reference" / "assignment4"


def autograder(*args, config: Path | None = None, env: dict | None = None):
    config_args = ["--config", str(config)] if config else []
    return subprocess.run([sys.executable, "-m", "autograder", *config_args, *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **(env or {})})


def answered(release: Path, reference: Path) -> str:
    """A student's finished notebook: the release (its metadata and checksums kept) with each answer cell holding
    the reference's solution."""
    from autograder.lifecycle.release import solution_notebook

    solutions = {c.get("id"): c.source for c in solution_notebook(nbformat.read(reference, as_version=4)).cells}
    nb = nbformat.read(release, as_version=4)
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            cell.source = solutions[cell.get("id")]
    return nbformat.writes(nb)


def read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_list_shows_each_assignment_with_its_deadline_and_state(tmp_path):
    run = autograder("list")
    assert run.returncode == 0, run.stderr
    assert "assignment3  課題3 (MLP①)" in run.stdout and "assignment4  課題4 (MLP②)" in run.stdout
    assert "deadline 2024-05-16 23:59 JST · late work refused · released" in run.stdout
    assert "deadline 2024-05-23 23:59 JST · late work refused · released" in run.stdout


def test_a_class_export_of_two_assignments_grades_each_into_its_own_folder_and_joins(tmp_path, capsys):
    """Stand-in grading (no training): the export is split by its assignment folders, each graded with its own
    checks into OUT/<assignment>/, and `gradebook` joins them into one row per student."""
    root = tmp_path / "class"
    exchange_submission(root, "s001", answer(), ON_TIME)
    exchange_submission(root, "s002", answer(), ON_TIME)
    exchange_submission(root, "s001", "{}", ON_TIME, assignment="assignment4")
    exchange_submission(root, "s003", "{}", ON_TIME, assignment="not_an_assignment")   # not the course's: ignored
    reports = grade_classes(root, tmp_path / "out", load_config(), workers=1, device="cpu", regrade=False,
                            exact_fit=False, progress=False, grade_fn=works)
    assert list(reports) == ["assignment3", "assignment4"]
    assert sorted(reports["assignment3"].written) == ["s001", "s002"] and list(reports["assignment4"].written) == ["s001"]
    book4 = read_csv(tmp_path / "out" / "assignment4" / "gradebook.csv")
    checks4 = ["split", "scaling", "param_count", "architecture", "compile", "early_stopping", "test_auc", "sensitivity"]
    assert list(book4[0])[4:4 + len(checks4)] == checks4 and book4[0]["max_score"] == "12"
    assert book4[0]["official"] == "yes"                  # assignment4 allows the CPU (its own DEVICE_POLICY)
    assert read_csv(tmp_path / "out" / "assignment3" / "gradebook.csv")[0]["official"] == "no"

    from autograder.cli import main

    assert main(["gradebook", str(tmp_path / "out"), "--out", str(tmp_path / "course.csv")]) == 0
    said = capsys.readouterr().out
    assert "2 students × 2 assignments (assignment3 /12, assignment4 /12)" in said
    course = read_csv(tmp_path / "course.csv")
    assert [list(row) for row in course][0] == ["student_id", "assignment3", "assignment4", "total", "max_total",
                                                "notes"]
    assert [(r["student_id"], r["assignment3"], r["assignment4"], r["max_total"]) for r in course] == [
        ("s001", "0", "0", "24"), ("s002", "0", "", "24")]
    assert course[0]["notes"] == "assignment3: unofficial"

    # --only across the assignments: s002 handed in assignment3 alone; a typo is named in neither
    s001 = (tmp_path / "out" / "assignment3" / "results" / "s001.json").read_bytes()
    again = grade_classes(root, tmp_path / "out", load_config(), only=["s002"], workers=1, device="cpu",
                          progress=False, grade_fn=works)
    assert (again["assignment3"].executed, again["assignment3"].reused) == (1, 1)
    assert (again["assignment4"].executed, again["assignment4"].reused) == (0, 1)
    assert (tmp_path / "out" / "assignment3" / "results" / "s001.json").read_bytes() == s001
    with pytest.raises(GraderError, match=r"s02 \(did you mean s002\?\)"):
        grade_classes(root, tmp_path / "out", load_config(), only=["s02"], workers=1, device="cpu", progress=False,
                      grade_fn=works)


def test_the_course_gradebook_refuses_what_it_cannot_join(tmp_path):
    with pytest.raises(Exception, match="no graded classes found"):
        find_gradebooks([tmp_path])
    for name in ("a", "b"):                            # two classes of the same assignment: which one counts?
        folder = tmp_path / name
        (folder / "results").mkdir(parents=True)
        (folder / "results" / "s001.json").write_text(json.dumps({"assignment": "assignment3"}), encoding="utf-8")
        (folder / "gradebook.csv").write_text("student_id,score,max_score,status\ns001,3,12,graded\n", encoding="utf-8")
    with pytest.raises(Exception, match="two gradebooks for assignment3"):
        find_gradebooks([tmp_path])
    text, maxima = course_gradebook(find_gradebooks([tmp_path / "a"]))
    assert text.splitlines()[1] == "s001,3,3,12," and maxima == {"assignment3": 12.0}


def test_an_export_that_does_not_say_its_assignment_needs_one_named(tmp_path):
    export = lms_export(tmp_path / "export", [("s001", "a.ipynb", answer(), "2024-05-15 12:00:00 UTC")])
    with pytest.raises(ConfigError, match="cannot tell which assignment .* add --assignment ID"):
        grade_classes(export, tmp_path / "out", load_config(), workers=1, device="cpu", regrade=False,
                      exact_fit=False, progress=False, grade_fn=works)
    reports = grade_classes(export, tmp_path / "out", load_config(), "assignment3", workers=1, device="cpu",
                            regrade=False, exact_fit=False, progress=False, grade_fn=works)
    assert list(reports) == ["assignment3"] and (tmp_path / "out" / "assignment3" / "gradebook.csv").is_file()


def test_a_class_lands_in_out_assignment_however_many_assignments_the_exchange_holds(tmp_path, capsys):
    """One rule: one assignment in the exchange or two, each class goes into grades/<id>/, so `gradebook grades/`
    finds each assignment once after both; a single notebook's folder and a class's are never mixed."""
    from autograder.cli import main

    grades = tmp_path / "grades"
    one = tmp_path / "one"
    exchange_submission(one, "s001", answer(), ON_TIME, assignment="assignment4")
    reports = grade_classes(one, grades, load_config(), workers=1, device="cpu", progress=False, grade_fn=works)
    assert reports["assignment4"].out == grades / "assignment4" and (grades / "assignment4" / "gradebook.csv").is_file()
    assert not (grades / "gradebook.csv").exists() and not (grades / "results").exists()
    assert main(["gradebook", str(grades), "--out", str(tmp_path / "course.csv")]) == 0
    assert "1 student × 1 assignment (assignment4 /12)" in capsys.readouterr().out

    two = tmp_path / "two"
    for assignment in ("assignment3", "assignment4"):
        exchange_submission(two, "s002", answer(), ON_TIME, assignment=assignment)
    reports = grade_classes(two, grades, load_config(), workers=1, device="cpu", progress=False, grade_fn=works)
    assert [r.out for r in reports.values()] == [grades / "assignment3", grades / "assignment4"]
    assert main(["gradebook", str(grades), "--out", str(tmp_path / "course.csv")]) == 0
    assert "1 student × 2 assignments" in capsys.readouterr().out     # the same folder, graded again

    with pytest.raises(GraderError, match=r"is itself one assignment's graded class .*\(--out " + str(grades) + r"\)"):
        grade_classes(one, grades / "assignment4", load_config(), workers=1, device="cpu", progress=False,
                      grade_fn=works)
    assert main(["grade", str(answered_notebook(tmp_path)), "--out", str(grades / "assignment4")]) == 2
    assert "one notebook's results are not mixed into it" in capsys.readouterr().err
    assert main(["grade", str(answered_notebook(tmp_path)), "--out", str(grades)]) == 2      # the classes' root
    assert "one notebook's results are not mixed into it" in capsys.readouterr().err
    assert not (grades / "results.json").exists() and not (grades / "grader.log").exists()
    single = tmp_path / "single"                                  # one notebook's folder, as `grade NOTEBOOK` left it
    single.mkdir()
    (single / "results.json").write_text("{}", encoding="utf-8")
    with pytest.raises(GraderError, match="holds one notebook's results"):
        grade_classes(one, single, load_config(), workers=1, device="cpu", progress=False, grade_fn=works)
    assert sorted(p.name for p in single.iterdir()) == ["results.json"]


def test_the_course_gradebook_goes_under_grades_by_default_and_no_root_csv_is_committed(tmp_path, monkeypatch,
                                                                                         capsys):
    """course.csv is student data: by default beside the classes in grades/ (ignored), and a CSV written at the
    checkout's root as README's examples do (course.csv, roster.csv, links.csv) is ignored by git too."""
    from autograder.cli import main

    exchange_submission(tmp_path / "class", "s001", answer(), ON_TIME)
    grade_classes(tmp_path / "class", tmp_path / "grades", load_config(), workers=1, device="cpu", progress=False,
                  grade_fn=works)
    monkeypatch.chdir(tmp_path)
    assert main(["gradebook"]) == 0
    assert read_csv(tmp_path / "grades" / "course.csv")[0]["student_id"] == "s001"
    assert "1 student × 1 assignment" in capsys.readouterr().out
    for name in ("course.csv", "roster.csv", "links.csv", "grades/course.csv"):
        ignored = subprocess.run(["git", "check-ignore", "-q", name], cwd=PROJECT_ROOT)
        assert ignored.returncode == 0, f"{name} is not ignored by git"


def answered_notebook(folder: Path) -> Path:
    path = folder / "assignment4.ipynb"
    path.write_text(answer(), encoding="utf-8")
    return path


@pytest.mark.training
def test_a_copied_assignment_folder_is_a_new_assignment_end_to_end(tmp_path):
    """reference/assignment4/ copied to reference/assignment9/ (the notebook renamed) in a course beside the
    2-epoch assignment3: released, self-checked, submitted, graded with assignment3 from one exchange, joined,
    and published — with nothing else changed."""
    course = short_config(tmp_path, EXCHANGE_DIR="'exchange'", PUBLISH_DIR="'published'")
    nine = tmp_path / "reference" / "assignment9"
    shutil.copytree(ASSIGNMENT4, nine, ignore=shutil.ignore_patterns("__pycache__", "samples"))
    (nine / "assignment4.ipynb").rename(nine / "assignment9.ipynb")

    run = autograder("release", "assignment9", config=course)
    assert run.returncode == 0, run.stderr
    release = tmp_path / "assignments" / "assignment9" / "assignment9.ipynb"
    assert release.is_file()
    listed = autograder("list", config=course).stdout
    assert "assignment9  課題4" in listed and "assignment3" in listed

    mine = tmp_path / "work" / "mine.ipynb"                 # the student's own file name: the metadata says which
    mine.parent.mkdir()
    mine.write_text(answered(release, nine / "assignment9.ipynb"), encoding="utf-8")
    run = autograder("check", str(mine), "--device", "cpu", config=course)
    assert run.returncode == 0, run.stderr
    assert "public checks: 4 / 4" in run.stdout, run.stdout

    before = {"AUTOGRADER_NOW": "2024-05-20T12:00:00+09:00"}
    run = autograder("submit", str(mine), "--student", "s001", config=course, env=before)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "exchange" / "submitted" / "s001" / "assignment9" / "assignment9.ipynb").is_file()
    exchange_submission(tmp_path / "exchange", "s001", answer(), ON_TIME)            # and assignment3, 2 epochs

    run = autograder("grade", str(tmp_path / "exchange"), "--device", "cpu", "--out", str(tmp_path / "grades"),
                     "--quiet", config=course)
    assert run.returncode == 0, run.stderr
    assert "== assignment3" in run.stdout and "== assignment9" in run.stdout
    for assignment in ("assignment3", "assignment9"):
        result = json.loads((tmp_path / "grades" / assignment / "results" / "s001.json").read_text(encoding="utf-8"))
        assert result["assignment"] == assignment
        assert (result["score"], result["max_score"]) == (12, 12), [t for t in result["tests"] if t["score"] != t["max_score"]]
    page = (tmp_path / "grades" / "assignment9" / "feedback" / "s001.html").read_text(encoding="utf-8")
    assert "課題4" in page and "test_auc" in page

    run = autograder("gradebook", str(tmp_path / "grades"), "--out", str(tmp_path / "course.csv"))
    assert run.returncode == 0, run.stderr
    assert read_csv(tmp_path / "course.csv")[0] == {"student_id": "s001", "assignment3": "12", "assignment9": "12",
                                                    "total": "24", "max_total": "24", "notes": "assignment3: unofficial"}

    after = {"AUTOGRADER_NOW": "2024-05-24T09:00:00+09:00"}
    run = autograder("publish", "assignment9", "--device", "cpu", config=course, env=after)
    assert run.returncode == 0, run.stderr
    published = tmp_path / "published" / "assignment9"
    assert {p.name for p in published.iterdir()} >= {"assignment9-solution.ipynb", "assignment9-solution.html",
                                                     "checks.html"}
