"""A throwaway nbgrader course for 課題3, graded by nbgrader itself (used by bench/vs_nbgrader.py).

What an instructor using nbgrader alone would set up:
- ``source/assignment3/assignment3.ipynb``: our reference notebook plus one autograder test cell per check
  (nbgrader metadata grade=true, points as our graders declare them, the asserts inside ``### BEGIN HIDDEN TESTS``),
  written as plain asserts on the kernel's variables, the way an nbgrader course checks its notebooks;
- ``nbgrader_config.py`` (course root and id, a generous execution timeout) and ``gradebook.db`` with the
  assignment (due date = the course's deadline) and the students;
- ``nbgrader generate_assignment`` → ``release/``; each student's submission is that released notebook with the
  student's code in the solution cells, at ``submitted/<student>/assignment3/`` with ``timestamp.txt``;
- ``nbgrader autograde assignment3`` (one command, every student), then the scores of the test cells are read from
  nbgrader's gradebook (``nbgrader.api.Gradebook``).

MNIST offline: nbgrader's kernels call the student's unchanged ``mnist.load_data()``, which would download. The
autograde process gets ``PYTHONPATH=<work>/kernel_site`` whose ``sitecustomize.py`` (inherited by every kernel
nbgrader starts, since kernels inherit its environment) installs a lazy import hook: nothing is imported at start;
only when ``keras.src.datasets.mnist`` is first imported is its ``get_file`` replaced by one that returns a
``mnist.npz`` written from the pinned ``data/mnist`` (the same arrays our harness serves), and on that first call it
seeds Python, NumPy and TensorFlow with ``keras.utils.set_random_seed(SEED)``, as our harness does before the first
cell (nothing between kernel start and ``load_data`` draws random numbers, so the model starts from the same state).
The hook is active only where ``NBGRADER_EXECUTION=autograde`` (nbgrader sets it for the kernels it runs while
autograding), so the notebooks stay exactly as students write them.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ASSIGNMENT = "assignment3"
COURSE_ID = "mlp1-bench"
SOLUTION_IDS = ("reshape", "one_hot", "model", "compile", "fit", "predict")

# One autograder test cell per check of ours: (check id, the cell it follows, the hidden asserts).
# The asserts use only what the student's kernel holds, as an nbgrader course's tests do.
TEST_CELLS = [
    ("reshape", "selfcheck_reshape", """
assert x_train.shape == (60000, 784), f"x_train has shape {x_train.shape}, expected (60000, 784)"
assert x_test.shape == (10000, 784), f"x_test has shape {x_test.shape}, expected (10000, 784)"
assert x_train.max() <= 1.0 and x_test.max() <= 1.0, "x_train / x_test are not divided by 255"
"""),
    ("one_hot", "selfcheck_one_hot", """
import numpy as np

assert y_train.shape == (60000, 10), f"y_train has shape {y_train.shape}, expected (60000, 10)"
assert y_test.shape == (10000, 10), f"y_test has shape {y_test.shape}, expected (10000, 10)"
assert np.all(y_train.sum(axis=1) == 1) and np.all(y_test.sum(axis=1) == 1), "rows are not one-hot"
"""),
    ("param_count", "selfcheck_param_count", """
assert model.count_params() == 25450, f"{model.count_params()} parameters, expected 25450"
"""),
    ("architecture", "selfcheck_param_count", """
import keras

dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
assert len(dense) == 2, f"{len(dense)} Dense layers, expected 2"
assert dense[0].units == 32 and dense[0].activation.__name__.removesuffix("_v2") == "relu", "hidden layer"
assert dense[1].units == 10 and dense[1].activation.__name__.removesuffix("_v2") == "softmax", "output layer"
"""),
    ("compile", "compile", """
def plain_name(item):
    if isinstance(item, dict):
        item = item.get("class_name", "")
    return str(item).replace("_", "").lower()

compile_config = model.get_compile_config()
assert plain_name(compile_config["loss"]) == "categoricalcrossentropy", compile_config["loss"]
assert plain_name(compile_config["optimizer"]) == "adam", compile_config["optimizer"]
assert {plain_name(m) for m in compile_config["metrics"] or []} & {"accuracy", "acc", "categoricalaccuracy"}
"""),
    ("fit", "fit", """
assert result.params["epochs"] == 30, f"epochs={result.params['epochs']}, expected 30"
assert result.params["steps"] == 750, f"{result.params['steps']} steps per epoch, expected 750"
assert "val_loss" in result.history, "no validation data (validation_split=0.2)"
"""),
    ("val_accuracy", "fit", """
assert result.history["val_accuracy"][-1] >= 0.95, f"val_accuracy {result.history['val_accuracy'][-1]:.4f} < 0.95"
"""),
    ("predict", "predict", """
import numpy as np

assert np.argmax(test2[1]) == 2, f"x_test[1] predicted as {np.argmax(test2[1])}, expected 2"
"""),
]


def test_cell_id(check: str) -> str:
    return f"test_{check}"


# The kernels' sitecustomize.py (see the module's docstring). Reads its settings from the environment.
SITECUSTOMIZE = '''\
"""Benchmark only (bench/nbgrader_course.py): pin MNIST and the seed in nbgrader's autograde kernels, lazily."""
import os
import sys

_TARGET = "keras.src.datasets.mnist"


class _PinMnist:
    """A meta-path finder that lets keras.src.datasets.mnist load as usual, then swaps its get_file."""

    def find_spec(self, name, path=None, target=None):
        if name != _TARGET:
            return None
        import importlib.util

        sys.meta_path.remove(self)                 # one module, once: step aside for the real finders
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_pin(module):
            exec_module(module)
            _pin(module)

        spec.loader.exec_module = exec_and_pin
        return spec


def _pin(module):
    npz, seed, seeded = os.environ["BENCH_MNIST_NPZ"], int(os.environ["BENCH_SEED"]), []

    def pinned_get_file(*args, **kwargs):
        if not seeded:                             # first load_data(): seed as our harness does
            import keras

            keras.utils.set_random_seed(seed)
            seeded.append(seed)
        return npz

    module.get_file = pinned_get_file


if os.environ.get("NBGRADER_EXECUTION") == "autograde" and os.environ.get("BENCH_MNIST_NPZ"):
    sys.meta_path.insert(0, _PinMnist())
'''

NBGRADER_CONFIG = '''\
c = get_config()  # noqa: F821
c.CourseDirectory.root = {root!r}
c.CourseDirectory.course_id = {course!r}
# 30 epochs on a 2-core CPU take about a minute; never cut a cell short.
c.Execute.timeout = {timeout}
c.ExecutePreprocessor.timeout = {timeout}
# Epoch seconds on every log line, so per-student times can be read back from the log.
c.NbGrader.log_format = "%(created).3f [%(name)s | %(levelname)s] %(message)s"
'''


def source_notebook(reference: Path, points: dict[str, float]) -> nbformat.NotebookNode:
    """The reference plus one hidden autograder test cell per check, each after the cell it tests."""
    nb = nbformat.read(reference, as_version=4)
    ids = [(c.metadata.get("nbgrader") or {}).get("grade_id") for c in nb.cells]
    for check, after, code in reversed(TEST_CELLS):   # reversed: cells sharing an anchor keep TEST_CELLS' order
        cell = nbformat.v4.new_code_cell(
            f"# 採点用テスト (hidden test): {check}\n### BEGIN HIDDEN TESTS\n{code.strip()}\n### END HIDDEN TESTS")
        cell.id = test_cell_id(check).replace("_", "-")
        cell.metadata = {"deletable": False, "editable": False, "nbgrader": {
            "grade": True, "grade_id": test_cell_id(check), "locked": True, "points": points[check],
            "schema_version": 3, "solution": False, "task": False}}
        nb.cells.insert(ids.index(after) + 1, cell)
        ids.insert(ids.index(after) + 1, test_cell_id(check))
    nbformat.validate(nb)
    return nb


def answers_of(nb: nbformat.NotebookNode) -> dict[str, str]:
    """The student's code: the source of each solution cell, by nbgrader grade_id."""
    found = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader") or {}
        if meta.get("solution") and meta.get("grade_id") in SOLUTION_IDS:
            found[meta["grade_id"]] = "\n".join(line for line in cell.source.splitlines()
                                                if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))
    missing = set(SOLUTION_IDS) - set(found)
    if missing:
        raise ValueError(f"no solution cell for {sorted(missing)}")
    return found


def fill(released: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    """A submission: the released notebook with the student's code in its solution cells, the rest untouched."""
    nb = nbformat.from_dict(released)
    done = set()
    for cell in nb.cells:
        gid = (cell.metadata.get("nbgrader") or {}).get("grade_id")
        if gid in answers and cell.metadata["nbgrader"].get("solution"):
            cell.source = answers[gid]
            done.add(gid)
    if done != set(answers):
        raise ValueError(f"the released notebook lacks solution cells {sorted(set(answers) - done)}")
    return nb


def kernel_environment(work: Path, npz: Path, seed: int) -> dict[str, str]:
    """The environment of `nbgrader autograde` (its kernels inherit it): CPU only, like `--device cpu`."""
    env = dict(os.environ)
    site_dir = work / "kernel_site"
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in (str(site_dir), os.environ.get("PYTHONPATH", "")) if p),
        BENCH_MNIST_NPZ=str(npz),
        BENCH_SEED=str(seed),
        PYTHONHASHSEED=str(seed),
        TF_CPP_MIN_LOG_LEVEL="2",
        KERAS_HOME=str(work / ".keras"),
        CUDA_VISIBLE_DEVICES="-1",
    )
    return env


@dataclass
class CheckOutcome:
    score: float
    max_score: float
    error: str = ""           # the test cell's error (ename: evalue), from the autograded notebook

    @property
    def passed(self) -> bool:
        return self.score >= self.max_score


@dataclass
class NbgraderRun:
    wall_s: float
    returncode: int
    log: Path
    startup_s: float | None                        # process start → first student's first log line
    per_student_s: dict[str, float] = field(default_factory=dict)
    execute_s: dict[str, float] = field(default_factory=dict)   # "Autograding …" → next student (kernel run + save)
    checks: dict[str, dict[str, CheckOutcome]] = field(default_factory=dict)
    late_seconds: dict[str, float] = field(default_factory=dict)


class Course:
    """The course folder under ``root`` (created empty)."""

    def __init__(self, root: Path, reference: Path, points: dict[str, float], deadline: dt.datetime,
                 npz: Path, seed: int, timeout_s: int = 1800):
        self.root, self.points, self.deadline = Path(root), dict(points), deadline
        self.work = self.root.parent
        self.env = kernel_environment(self.work, npz, seed)
        self.reference, self.timeout_s = reference, timeout_s

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.root / 'gradebook.db'}"

    def nbgrader(self, *args: str, log: Path | None = None) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "nbgrader", *args]
        if log is None:
            done = subprocess.run(cmd, cwd=self.root, env=self.env, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"{' '.join(cmd[2:])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
            return done
        with open(log, "w", encoding="utf-8") as out:
            return subprocess.run(cmd, cwd=self.root, env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def setup(self, students: list[str]) -> nbformat.NotebookNode:
        """Config, source, db (assignment with due date, students), generate_assignment. Returns the release."""
        from nbgrader.api import Gradebook

        self.root.mkdir(parents=True)
        site = self.work / "kernel_site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
        (self.root / "nbgrader_config.py").write_text(
            NBGRADER_CONFIG.format(root=str(self.root), course=COURSE_ID, timeout=self.timeout_s), encoding="utf-8")
        source = self.root / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        source.parent.mkdir(parents=True)
        source.write_text(nbformat.writes(source_notebook(self.reference, self.points)), encoding="utf-8")
        due = self.deadline.astimezone(dt.timezone.utc).replace(tzinfo=None)   # nbgrader stores naive UTC
        with Gradebook(self.db_url, COURSE_ID) as gb:
            gb.update_or_create_assignment(ASSIGNMENT, duedate=due)
            for student in students:
                gb.update_or_create_student(student)
        self.nbgrader("generate_assignment", ASSIGNMENT, "--force")
        return nbformat.read(self.root / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)

    def add_submission(self, student: str, nb: nbformat.NotebookNode, timestamp: str) -> Path:
        folder = self.root / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / f"{ASSIGNMENT}.ipynb").write_text(nbformat.writes(nb), encoding="utf-8")
        (folder / "timestamp.txt").write_text(timestamp + "\n", encoding="utf-8")
        return folder

    def autograde(self, students: list[str]) -> NbgraderRun:
        """Time `nbgrader autograde assignment3` (every student, one command), then read the gradebook."""
        log = self.work / "nbgrader-autograde.log"
        started = time.time()
        t0 = time.perf_counter()
        done = self.nbgrader("autograde", ASSIGNMENT, log=log)
        wall = time.perf_counter() - t0
        run = NbgraderRun(wall, done.returncode, log, None)
        self._times_from_log(run, started, started + wall)
        self._read_gradebook(run, students)
        return run

    def _times_from_log(self, run: NbgraderRun, started: float, ended: float) -> None:
        events = []    # (time, student, kind)
        pattern = re.compile(r"^(\d+\.\d+) \[[^]]*\] (.*)$")
        for line in run.log.read_text(encoding="utf-8", errors="replace").splitlines():
            m = pattern.match(line)
            if not m:
                continue
            at, message = float(m.group(1)), m.group(2)
            if s := re.match(r"Creating/updating student with ID '([^']+)'", message):
                events.append((at, s.group(1), "start"))
            elif s := re.match(r"Autograding (.*)", message):
                events.append((at, Path(s.group(1)).parts[-3], "execute"))
        starts = [(at, student) for at, student, kind in events if kind == "start"]
        if starts:
            run.startup_s = round(starts[0][0] - started, 2)
        for i, (at, student) in enumerate(starts):
            end = starts[i + 1][0] if i + 1 < len(starts) else ended
            run.per_student_s[student] = round(end - at, 2)
            executes = [t for t, s, kind in events if kind == "execute" and s == student]
            if executes:
                run.execute_s[student] = round(end - executes[0], 2)

    def _read_gradebook(self, run: NbgraderRun, students: list[str]) -> None:
        from nbgrader.api import Gradebook, MissingEntry

        with Gradebook(self.db_url, COURSE_ID) as gb:
            for student in students:
                try:
                    submission = gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
                except MissingEntry:
                    continue
                errors = self._test_errors(student)
                run.checks[student] = {
                    check: CheckOutcome(float(grade.score), float(grade.max_score), errors.get(test_cell_id(check), ""))
                    for grade in submission.grades
                    for check in [grade.name.removeprefix("test_")]}
                run.late_seconds[student] = float(gb.find_submission(ASSIGNMENT, student).total_seconds_late)

    def _test_errors(self, student: str) -> dict[str, str]:
        path = self.root / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        if not path.is_file():
            return {}
        errors = {}
        for cell in nbformat.read(path, as_version=4).cells:
            gid = (cell.metadata.get("nbgrader") or {}).get("grade_id", "")
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    errors[gid] = f"{output.get('ename')}: {output.get('evalue')}"[:300]
        return errors


def outcome_dict(outcome: CheckOutcome) -> dict:
    return {"score": outcome.score, "max_score": outcome.max_score, "passed": outcome.passed,
            **({"error": outcome.error} if outcome.error else {})}


if __name__ == "__main__":   # print the hidden test cells, to review them
    for check, after, code in TEST_CELLS:
        print(f"--- {test_cell_id(check)} (after cell {after})\n{code.strip()}\n")
