"""Train once, regrade in seconds: each run's artifacts are kept, and a change of the graders alone is applied to
them without executing anything; a change of what the kernel ran executes again; nothing stored is trusted
blindly."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from classroom import (LATE, ON_TIME, answer, exchange_submission, grades_without_a_kernel, keeps_runs, load_course,
                       short_config)

import autograder.grading.fingerprint as fingerprint
from autograder.classroom.batch import grade_batch
from autograder.classroom.single import grade_into
from autograder.cli import main
from autograder.course.config import Config
from autograder.grading.fingerprint import (NOT_RUN_SETTINGS, RUN_SETTINGS, grading_fingerprint, run_context,
                                            run_fingerprint)
from autograder.grading.result import EXECUTED, REGRADED, UNCHANGED
from autograder.grading.store import RunStore, referenced_runs

BATCH = dict(workers=2, device="cpu", progress=False)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def settings_of(course: Path) -> Path:
    return course.parent / "reference" / "assignment3" / "settings.py"


def grader_of(course: Path) -> Path:
    return course.parent / "reference" / "assignment3" / "graders" / "test_assignment3.py"


def release_of(course: Path) -> Path:
    return course.parent / "assignments" / "assignment3" / "assignment3.ipynb"


def files_of(out: Path, student: str) -> dict[str, bytes]:
    return {name: (out / name.format(s=student)).read_bytes()
            for name in ("results/{s}.json", "logs/{s}.log", "feedback/{s}.html")}


def how(report, student: str) -> tuple[str, list[str]]:
    result = report.written[student]
    return result["graded_from"], result["notes"]


# --- the two fingerprints --------------------------------------------------------------------------------------

def test_every_course_setting_counts_for_the_run_or_is_said_not_to():
    names = {f.name for f in dataclasses.fields(Config)}
    assert set(RUN_SETTINGS) | set(NOT_RUN_SETTINGS) == names
    assert not set(RUN_SETTINGS) & set(NOT_RUN_SETTINGS)


def test_the_run_fingerprint_follows_what_the_kernel_ran_and_the_grading_one_what_judged_it(tmp_path, monkeypatch):
    course = short_config(tmp_path / "course")
    config = load_course(course)
    run, grading = run_context(config, "cpu", True), grading_fingerprint(config, False)
    assert run_context(config, "cpu", True) == run                                  # stable
    assert run_context(config, "gpu", True) != run                                  # the device
    assert run_context(config, "cpu", False) != run                                 # speed mode
    assert run_context(dataclasses.replace(config, seed=1), "cpu", True) != run     # an execution setting
    assert run_context(dataclasses.replace(config, memory_limit_mb=1024), "cpu", True) != run
    assert grading_fingerprint(config, True) != grading                              # official or not

    edit(settings_of(course), "'val_accuracy_threshold': 0.90", "'val_accuracy_threshold': 0.95")
    config = load_course(course)
    assert run_context(config, "cpu", True) == run                                  # a threshold: grading only
    assert grading_fingerprint(config, False) != grading
    grading = grading_fingerprint(config, False)

    edit(grader_of(course), "AGREEMENT = 0.002", "AGREEMENT = 0.003")
    assert run_context(config, "cpu", True) == run                                  # a grader: grading only
    assert grading_fingerprint(config, False) != grading
    grading = grading_fingerprint(config, False)

    release = release_of(course)
    release.write_text(release.read_text(encoding="utf-8").replace("MNIST", "MNIST "), encoding="utf-8")
    assert run_context(config, "cpu", True) != run                                  # a re-release: the run
    assert grading_fingerprint(config, False) == grading
    run = run_context(config, "cpu", True)

    harness = tmp_path / "package"                   # the harness as it would be after an edit of the sanitizer
    shutil.copytree(fingerprint.PACKAGE, harness, ignore=shutil.ignore_patterns("__pycache__"))
    sanitize = harness / "run" / "sanitize.py"
    sanitize.write_text(sanitize.read_text() + "\n# changed\n")
    monkeypatch.setattr(fingerprint, "PACKAGE", harness)
    assert run_context(config, "cpu", True) != run
    assert grading_fingerprint(config, False) == grading


# --- the store ---------------------------------------------------------------------------------------------------

def stored_run(store: RunStore, folder: Path, fingerprint_: str, **files: bytes) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    manifest = store.keep({f"{name}.npy": folder / name for name in files}, fingerprint_, {"device": "cpu", "run": {}})
    store.save(manifest)
    return manifest


def test_identical_files_are_stored_once_and_a_run_comes_back_byte_for_byte(tmp_path):
    store = RunStore(tmp_path / "store")
    one = stored_run(store, tmp_path / "a", "a" * 64, x_train=b"0" * 5000, model=b"model A")
    stored_run(store, tmp_path / "b", "b" * 64, x_train=b"0" * 5000, model=b"model B")
    assert len(store.objects()) == 3                           # x_train once, two models
    usage = store.usage({"a" * 64})
    assert (usage.runs, usage.referenced, usage.objects) == (2, 1, 3)
    assert usage.disk_bytes == 5000 + 14 and usage.logical_bytes == 2 * 5000 + 14
    manifest, problem = store.find("a" * 64)
    assert manifest == one and problem == ""
    laid = store.restore(manifest, tmp_path / "restored")
    assert laid["x_train.npy"].read_bytes() == b"0" * 5000 and laid["model.npy"].read_bytes() == b"model A"
    assert store.find("c" * 64) == (None, "")                  # never stored: nothing wrong, nothing found


def test_a_corrupt_missing_or_unreadable_store_entry_is_not_used_and_says_why(tmp_path):
    store = RunStore(tmp_path / "store")
    manifest = stored_run(store, tmp_path / "a", "a" * 64, x_train=b"0" * 5000, model=b"model A")
    model = store.object_path(manifest["files"]["model.npy"]["sha256"])
    model.chmod(0o644)
    model.write_bytes(b"model Z")                              # one byte changed, same size
    assert RunStore(store.root).find("a" * 64) == (None, "model.npy failed its SHA-256 check")
    assert not model.exists()                                  # removed, so that the next run stores it afresh
    assert RunStore(store.root).find("a" * 64) == (None, "model.npy is missing from the store")

    store.manifest_path("b" * 64).write_text("{not json", encoding="utf-8")
    assert RunStore(store.root).find("b" * 64) == (None, f"its manifest {'b' * 64}.json cannot be read")
    sneaky = {"run_fingerprint": "c" * 64, "run": {}, "files": {"../../escape.npy": {"sha256": "0" * 64, "size": 1}}}
    store.manifest_path("c" * 64).write_text(json.dumps(sneaky), encoding="utf-8")
    assert RunStore(store.root).find("c" * 64) == (None, f"its manifest {'c' * 64}.json cannot be read")  # no paths


def test_store_gc_removes_what_no_result_refers_to_and_du_reports_sizes(tmp_path, capsys):
    out = tmp_path / "out"
    store = RunStore(out / "store")
    stored_run(store, tmp_path / "a", "a" * 64, x_train=b"0" * 5000, model=b"model A")
    stored_run(store, tmp_path / "b", "b" * 64, x_train=b"0" * 5000, model=b"model B")
    (out / "results").mkdir()
    (out / "results" / "s001.json").write_text(json.dumps({"run_fingerprint": "a" * 64}), encoding="utf-8")
    assert referenced_runs(out) == {"a" * 64}

    assert main(["store", "du", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "2 runs (1 referenced by results) · 3 files" in said and "x_train.npy" in said and "held by 2 runs" in said
    assert main(["store", "gc", "--out", str(out)]) == 0
    assert "removed 1 run no result refers to and 1 file no run holds" in capsys.readouterr().out
    assert store.find("a" * 64)[0] is not None and not store.manifest_path("b" * 64).exists()
    assert len(store.objects()) == 2                           # the shared x_train stays, model B is gone

    assert main(["store", "du", "--out", str(tmp_path / "nothing")]) == 2
    assert "no stored runs under" in capsys.readouterr().err


def test_store_du_on_the_grades_folder_finds_the_classes_and_the_single_notebooks(tmp_path, capsys):
    """grades/ holds a class per assignment (grades/<id>/) and single notebooks apart (grades/single/<name>/)."""
    grades = tmp_path / "grades"
    for folder, fingerprint in ((grades / "assignment3", "a" * 64), (grades / "single" / "mine", "b" * 64)):
        stored_run(RunStore(folder / "store"), tmp_path / fingerprint[:1], fingerprint, x_train=b"0" * 10, model=b"m")
    assert main(["store", "du", "--out", str(grades)]) == 0
    said = capsys.readouterr().out
    for folder in (grades / "assignment3", grades / "single" / "mine"):
        assert f"{folder / 'store'}: 1 run (0 referenced by results)" in said


# --- the batch: what is executed, what is regraded, what is kept --------------------------------------------------

@pytest.fixture
def small_class(tmp_path):
    course = short_config(tmp_path / "course")
    for student in ("s001", "s002", "s003"):
        exchange_submission(tmp_path / "class", student, answer().replace("MNIST", f"MNIST {student}"), ON_TIME)
    exchange_submission(tmp_path / "class", "s004", answer(), LATE)
    return tmp_path / "class", tmp_path / "out", course


def test_a_grader_change_regrades_stored_runs_and_a_release_change_executes_again(small_class):
    source, out, course = small_class
    first = grade_batch(source, out, load_course(course), grade_fn=keeps_runs, **BATCH)
    assert (first.executed, first.regraded, first.reused) == (3, 0, 0)
    assert first.written["s004"]["status"] == "late"
    store = RunStore(out / "store")
    assert len(store.manifests()) == 3 and len(store.objects()) == 4      # three notebooks, one shared file

    again = grade_batch(source, out, load_course(course), grade_fn=keeps_runs, **BATCH)
    assert (again.executed, again.regraded, again.reused) == (0, 0, 4)

    edit(grader_of(course), "AGREEMENT = 0.002", "AGREEMENT = 0.003")
    regraded = grade_batch(source, out, load_course(course), grade_fn=keeps_runs, **BATCH)
    assert (regraded.executed, regraded.regraded, regraded.reused) == (0, 3, 0)
    assert how(regraded, "s001") == (REGRADED, ["regraded, intact=True"])
    assert "regraded from the stored run" in (out / "logs" / "s001.log").read_text(encoding="utf-8")
    assert regraded.written["s004"]["status"] == "late"                  # refused again, as before

    page, figure = (out / "feedback" / "s002.html").read_bytes(), (out / "summary.png").read_bytes()
    edit(grader_of(course), "AGREEMENT = 0.003", "AGREEMENT = 0.004")
    assert grade_batch(source, out, load_course(course), grade_fn=keeps_runs, **BATCH).regraded == 3
    assert (out / "feedback" / "s002.html").read_bytes() == page          # nothing it shows changed: kept as it was
    assert (out / "summary.png").read_bytes() == figure

    edit(grader_of(course), '"the model has 25,450 parameters"', '"the model has exactly 25,450 parameters"')
    retitled = grade_batch(source, out, load_course(course), grade_fn=keeps_runs, **BATCH)
    assert retitled.regraded == 3 and "exactly 25,450" in (out / "feedback" / "s002.html").read_text(encoding="utf-8")

    edit(release_of(course), "MNIST", "MNIST ")                            # a re-release: the runs are stale
    rerun = grade_batch(source, out, load_course(course), grade_fn=keeps_runs, **BATCH)
    assert (rerun.executed, rerun.regraded) == (3, 0) and how(rerun, "s001") == (EXECUTED, ["executed"])

    forced = grade_batch(source, out, load_course(course), grade_fn=keeps_runs, rerun=True, **BATCH)
    assert (forced.executed, forced.regraded) == (3, 0)


def test_a_harness_change_executes_again(small_class, tmp_path, monkeypatch):
    source, out, course = small_class
    assert grade_batch(source, out, load_course(course), grade_fn=keeps_runs, **BATCH).executed == 3
    harness = tmp_path / "package"                   # the harness as it would be after an upgrade of the export
    shutil.copytree(fingerprint.PACKAGE, harness, ignore=shutil.ignore_patterns("__pycache__"))
    kernel_side = harness / "run" / "kernel_side.py"
    kernel_side.write_text(kernel_side.read_text() + "\n# changed\n")
    monkeypatch.setattr(fingerprint, "PACKAGE", harness)
    again = grade_batch(source, out, load_course(course), grade_fn=keeps_runs, **BATCH)
    assert (again.executed, again.regraded, again.reused) == (3, 0, 0)
    assert again.written["s004"]["status"] == "late"                      # refused again, as before


def test_a_corrupt_store_entry_is_executed_again_with_a_note(small_class):
    source, out, course = small_class
    first = grade_batch(source, out, load_course(course), grade_fn=keeps_runs, **BATCH)
    store = RunStore(out / "store")
    manifest = store.find(first.written["s002"]["run_fingerprint"])[0]
    copy = store.object_path(manifest["files"]["copy.ipynb"]["sha256"])
    copy.chmod(0o644)
    data = bytearray(copy.read_bytes())
    data[100] ^= 1
    copy.write_bytes(bytes(data))
    edit(grader_of(course), "AGREEMENT = 0.002", "AGREEMENT = 0.003")

    report = grade_batch(source, out, load_course(course), grade_fn=keeps_runs, **BATCH)
    assert (report.executed, report.regraded) == (1, 2)
    graded_from, notes = how(report, "s002")
    assert graded_from == EXECUTED
    assert notes[-1] == "the stored run could not be used (copy.ipynb failed its SHA-256 check): executed again"
    assert "failed its SHA-256 check" in (out / "logs" / "s002.log").read_text(encoding="utf-8")
    assert store.find(report.written["s002"]["run_fingerprint"])[1] == ""        # stored afresh, sound


def test_only_regrades_the_chosen_students_and_leaves_the_others_byte_identical(small_class, capsys):
    source, out, course = small_class
    grade_batch(source, out, load_course(course), grade_fn=keeps_runs, **BATCH)
    before = {s: files_of(out, s) for s in ("s001", "s003", "s004")}
    gradebook = (out / "gradebook.csv").read_text(encoding="utf-8")
    edit(grader_of(course), "AGREEMENT = 0.002", "AGREEMENT = 0.003")

    report = grade_batch(source, out, load_course(course), grade_fn=keeps_runs, only=["s002"], **BATCH)
    assert (report.executed, report.regraded, report.reused) == (0, 1, 3)
    assert how(report, "s002")[0] == REGRADED
    assert {s: files_of(out, s) for s in before} == before
    assert (out / "gradebook.csv").read_text(encoding="utf-8").splitlines()[1:] == gradebook.splitlines()[1:]

    with pytest.raises(Exception, match=r"s0002 \(did you mean s002\?\)"):
        grade_batch(source, out, load_course(course), grade_fn=keeps_runs, only=["s0002"], **BATCH)
    assert main(["grade", str(source / "submitted" / "s001" / "assignment3" / "assignment3.ipynb"), "--only", "s001",
                 "--config", str(course), "--out", str(out / "one"), "--device", "cpu"]) == 2
    assert "--only chooses students of a class" in capsys.readouterr().err


# --- the real thing: training, a threshold changed, graders only ------------------------------------------------

@pytest.mark.training
def test_a_changed_threshold_is_applied_to_stored_runs_without_a_kernel_as_a_full_rerun_would(tmp_path):
    course = short_config(tmp_path / "course")
    source = tmp_path / "class"
    exchange_submission(source, "s001", answer(), ON_TIME)
    exchange_submission(source, "s002", answer(normalise=False), ON_TIME)      # wrong: no / 255
    exchange_submission(source, "s003", answer(), LATE)
    first = grade_batch(source, tmp_path / "out", load_course(course), **BATCH)
    assert (first.executed, first.regraded) == (2, 0)
    s001 = first.written["s001"]
    accuracy = s001["measurements"]["val_accuracy"]
    assert s001["score"] == 12 and 0.90 <= accuracy

    threshold = round(accuracy + 0.01, 2)              # now s001's trained model falls short of it
    edit(settings_of(course), "'val_accuracy_threshold': 0.90", f"'val_accuracy_threshold': {threshold}")
    regraded = grade_batch(source, tmp_path / "out", load_course(course), grade_fn=grades_without_a_kernel, **BATCH)
    assert (regraded.executed, regraded.regraded, regraded.reused) == (0, 2, 0)
    assert {s: r["status"] for s, r in regraded.written.items()} == {"s001": "graded", "s002": "graded",
                                                                     "s003": "late"}
    verdict = {t["name"]: t["status"] for t in regraded.written["s001"]["tests"]}
    assert verdict["val_accuracy"] == "failed" and regraded.written["s001"]["score"] == 10
    assert regraded.written["s001"]["execution"] == s001["execution"]       # the same run, judged again

    full = grade_batch(source, tmp_path / "full", load_course(course), **BATCH)
    assert (full.executed, full.regraded) == (2, 0)
    for student in ("s001", "s002", "s003"):
        assert [(t["name"], t["status"], t["score"]) for t in regraded.written[student]["tests"]] == \
               [(t["name"], t["status"], t["score"]) for t in full.written[student]["tests"]], student

    objects = RunStore(tmp_path / "out" / "store").objects()
    assert len(objects) < 2 * 9                        # the arrays both students share are stored once


@pytest.mark.training
def test_one_notebook_graded_into_a_folder_is_kept_regraded_and_rerun(tmp_path, monkeypatch):
    course = short_config(tmp_path / "course")
    notebook = tmp_path / "mine.ipynb"
    notebook.write_text(answer(), encoding="utf-8")
    out = tmp_path / "out"
    result, how_ = grade_into(notebook, out, load_course(course), device="cpu")
    assert how_ == EXECUTED and result.score == 12
    written = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert written["graded_from"] == EXECUTED and written["run_fingerprint"] in referenced_runs(out)
    assert grade_into(notebook, out, load_course(course), device="cpu")[1] == UNCHANGED

    def no_kernel(*args, **kwargs):
        raise AssertionError("a kernel was started")

    edit(settings_of(course), "'val_accuracy_threshold': 0.90", "'val_accuracy_threshold': 0.999")
    with monkeypatch.context() as patch:
        patch.setattr("autograder.run.execute.execute", no_kernel)
        regraded, how_ = grade_into(notebook, out, load_course(course), device="cpu")
    assert how_ == REGRADED and regraded.score == 10
    assert json.loads((out / "results.json").read_text(encoding="utf-8"))["graded_from"] == REGRADED

    store = RunStore(out / "store")
    model = store.object_path(store.find(written["run_fingerprint"])[0]["files"]["model.keras"]["sha256"])
    model.unlink()                                     # a store entry gone: executed again, never trusted
    rerun, how_ = grade_into(notebook, out, load_course(course), device="cpu")
    assert how_ == EXECUTED and rerun.score == 10
    assert "the stored run could not be used (model.keras is missing from the store): executed again" in rerun.notes


def test_a_stored_gpu_run_is_regraded_officially_on_a_machine_without_a_gpu(small_class):
    """A class graded on the GPU runner, regraded with --device cpu after a grader change: the GPU runs stand for
    CPU ones (no kernel), and the grades stay official under require-gpu."""
    source, out, course = small_class
    config = load_course(course)
    first = grade_batch(source, out, config, grade_fn=keeps_runs, **BATCH)
    store = RunStore(out / "store")
    gpu = run_context(config, "gpu", True)
    for student in ("s001", "s002", "s003"):      # the runs as the GPU runner would have stored them
        cpu_run = first.written[student]["run_fingerprint"]
        manifest = store.find(cpu_run)[0]
        notebook = (source / "submitted" / student / "assignment3" / "assignment3.ipynb").read_bytes()
        store.save({**manifest, "device": "gpu", "run_fingerprint": run_fingerprint(notebook, gpu)})
        store.manifest_path(cpu_run).unlink()
    edit(grader_of(course), "AGREEMENT = 0.002", "AGREEMENT = 0.003")

    report = grade_batch(source, out, load_course(course), grade_fn=keeps_runs, **BATCH)
    assert (report.executed, report.regraded) == (0, 3)
    notebook = (source / "submitted" / "s001" / "assignment3" / "assignment3.ipynb").read_bytes()
    assert report.written["s001"]["run_fingerprint"] == run_fingerprint(notebook, gpu)
    assert report.written["s001"]["grading_fingerprint"] == grading_fingerprint(load_course(course), True)
    assert report.written["s004"]["official"] is False         # refused on this CPU machine: unofficial as ever
