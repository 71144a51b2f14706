"""What a run exports of the arrays an assignment's graders can rebuild (RECOMPUTABLE): kernel_side's ``export`` on a
namespace of our own (no kernel, no training) and the graders on what it wrote, fresh and from the store."""

import json

import numpy as np
import pytest

from autograder import PROJECT_ROOT
from autograder.course.dataset import array_digest, expected_digests
from autograder.grading.grade import Run, kept_files, regrade_kept
from autograder.grading.graders import run_graders
from autograder.grading.graders.fixtures import Student
from autograder.grading.store import RunStore
from autograder.run.execute import KERNEL_SIDE
from autograder.run.record import ExecutionRecord

ARRAYS = ("x_train", "x_test", "y_train", "y_test", "test2")
SAMPLES = PROJECT_ROOT / "reference" / "assignment3" / "samples"


def kernel_export():
    """kernel_side's ``export`` as the kernel gets it: its text run in a namespace of its own."""
    namespace = {}
    exec(compile(KERNEL_SIDE.read_text(encoding="utf-8"), "<autograder>", "exec"), namespace)
    return namespace["export"]


def lecture_arrays(mnist) -> dict:
    """The lecture's answer to the preprocessing cells (test2 aside: it needs the trained model)."""
    return {"x_train": mnist.x_train.reshape(60000, 784) / 255, "x_test": mnist.x_test.reshape(10000, 784) / 255,
            "y_train": np.eye(10)[mnist.y_train], "y_test": np.eye(10)[mnist.y_test]}


def export(folder, namespace, expected):
    folder.mkdir(parents=True, exist_ok=True)
    kernel_export()(namespace, str(folder), {"arrays": ARRAYS}, expected)
    return json.loads((folder / "kernel_record.json").read_text(encoding="utf-8"))["arrays"]


def verdicts(artifacts, config, mnist) -> dict[str, tuple[str, str]]:
    return {t.name: (t.status, t.output) for t in run_graders(artifacts, config, mnist).tests}


@pytest.fixture(scope="module")
def expected(config, mnist):
    return expected_digests(config, mnist)


def test_the_kernel_and_the_grader_digest_an_array_alike(tmp_path, config, mnist, expected):
    """The grader's expected digests are what kernel_side records of the same array, field for field."""
    assert set(expected) == set(config.assignment.recomputable) == {"x_train", "x_test"}
    odd = np.asfortranarray(np.arange(12.0).reshape(3, 4))[:, ::2]          # neither C- nor F-contiguous
    kernel_export()({"x": odd}, str(tmp_path), {"arrays": ("x",)}, {})
    entry = json.loads((tmp_path / "kernel_record.json").read_text())["arrays"]["x"]
    assert {k: entry[k] for k in ("sha256", "shape", "dtype")} == array_digest(odd)
    assert expected["x_train"] == array_digest(mnist.x_train.reshape(60000, 784) / 255)


def test_the_lecture_s_x_train_is_not_written_and_the_graders_judge_the_course_s_own(tmp_path, config, mnist,
                                                                                   expected):
    arrays = export(tmp_path, lecture_arrays(mnist), expected)
    for name in ("x_train", "x_test"):
        assert arrays[name]["expected"] is True and not (tmp_path / f"{name}.npy").exists()
        assert arrays[name]["shape"] == expected[name]["shape"] and arrays[name]["max"] == 1.0   # summary kept
    assert (tmp_path / "y_train.npy").is_file() and "expected" not in arrays["y_train"]     # not RECOMPUTABLE
    assert arrays["test2"] == {"defined": False}
    found = verdicts(tmp_path, config, mnist)
    assert found["reshape"][0] == "passed" and found["one_hot"][0] == "passed"
    student = Student(tmp_path, {"arrays": arrays}, config.assignment, expected, mnist)
    assert student.defined_arrays() == {"x_train", "x_test", "y_train", "y_test"}
    rebuilt = student.array("x_train")
    assert np.array_equal(rebuilt, mnist.x_train.reshape(60000, 784) / 255) and not rebuilt.flags.writeable
    assert student.array("x_train") is rebuilt                                # rebuilt once per grading


@pytest.mark.parametrize("change, verdict", [
    (lambda x: x.astype(np.float32), "passed"),                               # float32: close, accepted as before
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 5000, 0.5, x), "does not equal the MNIST images"),
    (lambda x: x[:48000], "should hold 60,000 samples but holds 48,000"),
    (lambda x: x * 255, "should hold values within [0, 1], found [0, 255]"),
])
def test_any_other_x_train_is_exported_and_judged_as_before(tmp_path, config, mnist, expected, change, verdict):
    namespace = lecture_arrays(mnist)
    namespace["x_train"] = change(namespace["x_train"])
    arrays = export(tmp_path, namespace, expected)
    assert "expected" not in arrays["x_train"] and arrays["x_test"]["expected"] is True
    assert np.array_equal(np.load(tmp_path / "x_train.npy"), namespace["x_train"])
    status, output = verdicts(tmp_path, config, mnist)["reshape"]
    assert status == "passed" if verdict == "passed" else (status == "failed" and verdict in output), output


def test_a_forged_claim_gets_no_more_than_the_course_s_own_array(tmp_path, config, mnist, expected):
    """The kernel's record is the student's word. Claiming a wrong x_train equals the course's (its digest copied,
    no .npy, or the wrong .npy beside it) is judged exactly as the lecture's code is: on the course's array. A
    claim that does not carry the course's digest is not taken: the .npy is read, or the array is unreadable."""
    honest = export(tmp_path / "honest", lecture_arrays(mnist), expected)
    wrong = lecture_arrays(mnist)
    wrong["x_train"] = wrong["x_train"] * 255
    found = {}
    for how in ("no file", "wrong file beside it", "own digest", "own digest, no file"):
        folder = tmp_path / how.replace(" ", "-").replace(",", "")
        arrays = export(folder, wrong, expected)
        arrays["x_train"]["expected"] = True
        if "own digest" not in how:
            arrays["x_train"].update(honest["x_train"])
        if "no file" in how:
            (folder / "x_train.npy").unlink()
        record = json.loads((folder / "kernel_record.json").read_text())
        (folder / "kernel_record.json").write_text(json.dumps({**record, "arrays": arrays}))
        found[how] = verdicts(folder, config, mnist)
    lecture = verdicts(tmp_path / "honest", config, mnist)
    assert found["no file"] == found["wrong file beside it"] == lecture
    assert found["own digest"]["reshape"][0] == "failed" and "[0, 255]" in found["own digest"]["reshape"][1]
    assert found["own digest, no file"]["reshape"][0] == "failed"
    assert "could not be read as a numeric array" in found["own digest, no file"]["reshape"][1]


def keep_and_regrade(tmp_path, artifacts, config, mnist):
    (tmp_path / "executed.ipynb").write_text("{}")
    store = RunStore(tmp_path / "store")
    run = Run(record=ExecutionRecord("cpu", export_ok=True))
    manifest = store.keep(kept_files(config, artifacts, tmp_path / "executed.ipynb"), "a" * 64,
                          {"device": "cpu", "run": run.to_json()})
    result = regrade_kept(manifest, store, config, mnist, "nb.ipynb", tmp_path / "regrade")
    return manifest, {t.name: t.status for t in result.tests}


def test_stored_runs_regrade_with_and_without_the_npy(tmp_path, config, mnist, expected):
    """A run kept after this change has no x_train.npy (nothing to store); one kept before has it and no claim:
    both regrade to the same verdicts."""
    new = tmp_path / "new" / "artifacts"
    export(new, lecture_arrays(mnist), expected)
    old = tmp_path / "old" / "artifacts"
    export(old, lecture_arrays(mnist), None)                              # as the harness exported before
    assert (old / "x_train.npy").is_file()
    manifest_new, new_verdicts = keep_and_regrade(tmp_path / "new", new, config, mnist)
    manifest_old, old_verdicts = keep_and_regrade(tmp_path / "old", old, config, mnist)
    assert "x_train.npy" not in manifest_new["files"] and "x_train.npy" in manifest_old["files"]
    assert new_verdicts == old_verdicts and new_verdicts["reshape"] == "passed"


def test_the_run_fingerprint_holds_the_digests_the_kernel_compares_with(config, mnist):
    """Another RECOMPUTABLE changes what the kernel writes: its runs are not those stored under the old one."""
    import dataclasses

    from autograder.grading.fingerprint import run_context

    run = run_context(config, "cpu", True, mnist)
    assert run_context(config, "cpu", True) == run                          # the dataset loaded when not given
    float32 = {"x_train": lambda data: (data.x_train.reshape(60000, 784) / 255).astype(np.float32)}
    other = dataclasses.replace(config, chosen=dataclasses.replace(config.assignment, recomputable=float32))
    assert run_context(other, "cpu", True, mnist) != run


@pytest.mark.training
@pytest.mark.short_course("style-compile-functions")
def test_a_graded_lecture_style_notebook_writes_no_x_train_and_scores_full_marks(graded):
    """End to end (the short course's one grading of this sample, shared with test_grading): the kernel found the
    lecture's x_train and x_test equal to the course's, and the graders, reading the course's, pass every check —
    val_accuracy recomputed on its validation rows."""
    result = graded(SAMPLES / "style-compile-functions.ipynb", short=True)
    arrays = result.execution["arrays"]
    assert arrays["x_train"]["expected"] is True and arrays["x_test"]["expected"] is True
    assert "expected" not in arrays["y_train"]
    assert {t.name for t in result.tests if t.status != "passed"} == set(), [t.output for t in result.tests]
    assert result.measurements["val_accuracy"] >= 0.9
