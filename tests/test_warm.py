"""Warm kernels (run/warm.py): started ahead in their own sandboxes, each used for one notebook and destroyed —
nothing crosses from one student to the next, a kernel that died or could not warm gives way to a cold start, and
warm and cold kernels compute the same numbers."""

import dataclasses
from pathlib import Path

import nbformat
import pytest

from autograder.grading.grade import grade_on
from autograder.run import warm
from autograder.run.execute import execute
from autograder import PROJECT_ROOT
from tests.conftest import SAMPLES, write_notebook

FIRST_STUDENT = r'''
import builtins, json, os, pathlib, sys, tempfile, types
import keras
builtins.MARK = json.MARK = "first student"
def fit(*args, **kwargs):
    return "not trained"
fit.MARK = True
keras.Model.fit = fit
sys.modules["mark_module"] = types.ModuleType("mark_module")
os.environ["MARK"] = "first student"
for folder in (pathlib.Path.home(), pathlib.Path(tempfile.gettempdir()), pathlib.Path("/tmp"), pathlib.Path.cwd()):
    (folder / "mark").write_text("first student")
import glob
kernels_in_view = glob.glob("/tmp/autograder-kernel-*")   # its own, and the one warming for the next student?
for folder in kernels_in_view:
    open(os.path.join(folder, "work", "mark"), "w").write("first student")
'''

SECOND_STUDENT = r'''
import builtins, json, os, pathlib, sys, tempfile
import keras
seen = []
if hasattr(builtins, "MARK") or hasattr(json, "MARK"):
    seen.append("module state")
fit = keras.Model.fit
while fit is not None:
    if getattr(fit, "MARK", False):
        seen.append("patched Model.fit")
    fit = getattr(fit, "__wrapped__", None)
if "mark_module" in sys.modules:
    seen.append("sys.modules")
if "MARK" in os.environ:
    seen.append("environment")
for folder in (pathlib.Path.home(), pathlib.Path(tempfile.gettempdir()), pathlib.Path("/tmp"), pathlib.Path.cwd()):
    if (folder / "mark").exists():
        seen.append(f"file in {folder}")
assert not seen, seen
'''


needs_sandbox = pytest.mark.skipif(not warm.sandbox.sandbox_available(),
                                   reason="bubblewrap cannot run here: without it, kernels share /tmp")


@pytest.fixture
def pool():
    """This thread's pool, emptied before and after the test (other tests keep none warming)."""
    pool = warm.pool()
    pool.close()
    yield pool
    pool.size = 0
    pool.close()


def run(tmp_path, config, name, *sources):
    nb = nbformat.read(write_notebook(tmp_path / f"{name}.ipynb", *sources), as_version=4)
    return execute(nb, tmp_path / name, config, "cpu")


@needs_sandbox
def test_nothing_crosses_from_one_student_to_the_next_on_a_warm_worker(tmp_path, config, pool):
    warm.keep_warm(config, "cpu")
    first = run(tmp_path, config, "first", FIRST_STUDENT, "assert kernels_in_view == [str(pathlib.Path.cwd().parent)], kernels_in_view")
    assert first.kernel == "warm" and first.cell_errors == []
    assert len(pool.waiting) == 1                       # the next student's kernel warmed while the first ran
    second = run(tmp_path, config, "second", SECOND_STUDENT)
    assert second.kernel == "warm" and second.kernel_note == ""
    assert second.cell_errors == [], second.cell_errors[0].evalue
    assert not any(tmp_path.glob("*/mark"))            # nothing of the kernels' own folders came back with them


@needs_sandbox
def test_each_kernel_lives_in_its_own_sandbox_and_folder_which_go_with_it(tmp_path, config, pool):
    warm.keep_warm(config, "cpu")
    (waiting,) = pool.waiting
    waiting.wait_ready()                                # it warmed while this process did other things
    record = run(tmp_path, config, "one", "x = 1")
    assert record.kernel == "warm" and record.sandbox.startswith("bwrap")
    assert not waiting.folder.exists()                  # destroyed with its notebook
    (next_one,) = pool.waiting
    assert next_one is not waiting and next_one.alive()
    assert 0 < record.kernel_saved_s <= record.kernel_ready_s


def test_a_warm_kernel_that_died_while_waiting_gives_way_to_a_cold_start_and_is_replaced(tmp_path, config, pool):
    warm.keep_warm(config, "cpu")
    (waiting,) = pool.waiting
    waiting.wait_ready()
    waiting.km.provisioner.process.kill()
    waiting.km.provisioner.process.wait()
    record = run(tmp_path, config, "after-death", "x = 1")
    assert record.kernel == "cold" and "died while waiting" in record.kernel_note
    assert record.cell_errors == [] and record.kernel_saved_s == 0
    assert [k.alive() for k in pool.waiting] == [True]


def test_a_kernel_that_cannot_warm_gives_way_to_a_cold_start_that_says_why(tmp_path, config, pool, monkeypatch):
    monkeypatch.setattr(warm, "WARMUP", "raise ImportError('no TensorFlow here')")
    warm.prewarm(config, "cpu")
    monkeypatch.undo()
    record = run(tmp_path, config, "no-warmup", "import keras\nx = 1")
    assert record.kernel == "cold"
    assert record.kernel_note == "the warm kernel failed its imports (ImportError: no TensorFlow here)"
    assert record.cell_errors == []


def test_without_warm_kernels_every_kernel_is_cold_and_says_so(tmp_path, config, pool):
    record = run(tmp_path, config, "cold", "x = 1")
    assert record.kernel == "cold" and "no kernel had been started ahead" in record.kernel_note
    assert record.kernel_ready_s > 0 and record.kernel_saved_s == 0 and pool.waiting == []


@pytest.mark.training
@pytest.mark.parametrize("name", ["reference", "submitted-no-normalisation", "submitted-dense64-functional",
                                  "submitted-labels-as-test2"])
def test_warm_and_cold_kernels_give_bit_identical_numbers_and_verdicts(name, short_course, mnist, tmp_path, pool):
    """Same seeds, fused fit, one thread: the 2-epoch course's val_accuracy, history and verdicts, warm and cold."""
    from tests.classroom import short_epochs

    source = PROJECT_ROOT / "reference" / "assignment3" / "assignment3.ipynb" if name == "reference" \
        else SAMPLES / f"{name}.ipynb"
    path = tmp_path / source.name
    path.write_text(short_epochs(source.read_text(encoding="utf-8")), encoding="utf-8")
    if name == "reference":
        from autograder.lifecycle.release import solution_notebook

        nbformat.write(solution_notebook(nbformat.read(path, as_version=4)), path)
    results = {}
    for how in ("cold", "warm"):
        if how == "warm":
            warm.prewarm(short_course, "cpu")
            pool.waiting[0].wait_ready()
        result = grade_on(path, short_course, "cpu", False, mnist)
        assert result.execution["kernel"] == how
        results[how] = result
    cold, hot = results["cold"], results["warm"]
    assert [(t.name, t.status, t.score) for t in cold.tests] == [(t.name, t.status, t.score) for t in hot.tests]
    assert cold.measurements == hot.measurements and cold.measurements.get("val_accuracy") is not None
    assert cold.execution["history"] == hot.execution["history"]
    assert cold.execution["arrays"] == hot.execution["arrays"]


def test_warm_kernels_are_bounded_in_the_settings(tmp_path):
    from autograder.course.config import ConfigError, load_config

    text = (PROJECT_ROOT / "grader_config.py").read_text(encoding="utf-8")
    for value, accepted in ((0, True), (4, True), (5, False), (-1, False)):
        path = tmp_path / f"config{value}.py"
        path.write_text(text.replace("WARM_KERNELS = 1", f"WARM_KERNELS = {value}"), encoding="utf-8")
        if accepted:
            assert load_config(path).warm_kernels == value
        else:
            with pytest.raises(ConfigError, match=f"setting WARM_KERNELS must be from 0 to 4, got {value}"):
                load_config(path)


def test_a_kernel_is_only_swapped_for_one_started_the_same_way(config):
    recipe = warm.Recipe.of(config, "cpu")
    assert recipe == warm.Recipe.of(config, "cpu")
    assert recipe != warm.Recipe.of(config, "gpu")
    assert recipe != warm.Recipe.of(dataclasses.replace(config, memory_limit_mb=1024), "cpu")
    assert recipe != warm.Recipe.of(dataclasses.replace(config, seed=1), "cpu")


def kernel_waiting_in_the_worker(task: dict, config, data) -> dict:
    """A worker's grading function that leaves a warm kernel waiting, and says where its folder and cgroups are."""
    warm.keep_warm(config, "cpu")
    (kernel,) = warm.pool().waiting
    kernel.wait_ready()
    return {"folder": str(kernel.folder), "cgroups": [str(p) for p in getattr(kernel.km, "cgroups", {}).values()],
            "alive": kernel.alive()}


def test_a_worker_stopped_by_its_pool_stops_its_warm_kernel_with_its_folder_and_cgroups(config, tmp_path):
    from types import SimpleNamespace

    from autograder.classroom.pool import graded

    ((_, reply),) = graded([SimpleNamespace(attempts=[])], config, payload=lambda task: {}, workers=1,
                           kernel_device="cpu", log_path=tmp_path / "workers.log", grade_fn=kernel_waiting_in_the_worker)
    assert reply["alive"] and reply["folder"]
    assert not Path(reply["folder"]).exists()
    assert not [p for p in reply["cgroups"] if Path(p).exists()]


def says_whether_more_will_come(task: dict, config, data) -> dict:
    from autograder.classroom.pool import MORE_TO_COME

    return {"more": task[MORE_TO_COME]}


def test_a_batchs_workers_warm_a_next_kernel_only_while_the_queue_can_give_each_another(config, tmp_path):
    """Six notebooks on two workers: the first four are handed out while two or more wait (a kernel warming behind
    them will be used), the last two when fewer do (none is started that nobody would take)."""
    from types import SimpleNamespace

    from autograder.classroom.pool import graded

    tasks = [SimpleNamespace(attempts=[]) for _ in range(6)]
    replies = [reply for _, reply in graded(tasks, config, payload=lambda task: {}, workers=2, kernel_device="cpu",
                                            log_path=tmp_path / "workers.log", grade_fn=says_whether_more_will_come)]
    assert sorted(r["more"] for r in replies) == [False, False, True, True, True, True]
