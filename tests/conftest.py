"""Shared fixtures: the course configuration, the pinned MNIST, and graded sample notebooks (graded once)."""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import PROJECT_ROOT
from autograder.course import clock
from autograder.course.assignment import config_for, which_assignment
from autograder.course.config import load_config
from autograder.course.dataset import load_dataset, load_mnist
from autograder.grading.grade import grade_notebook
from autograder.grading.graders import FRAMEWORK_DIR, check_graders
from autograder.grading.result import GradeResult
from autograder.run.sandbox import SITE_REQUIRES_SANDBOX

SAMPLES = PROJECT_ROOT / "reference" / "assignment3" / "samples"


# What `serve`, run in this process by a test, sets for itself and the processes it starts.
PROCESS_SETTINGS = (SITE_REQUIRES_SANDBOX, clock.NOW_VARIABLE, clock.SET_AT_VARIABLE)


@pytest.fixture(autouse=True)
def process_state_kept():
    """The site's commands set this process's umask (0o077: private data), the site's requirement of the sandbox
    and a rehearsal's clock: each test leaves them as it found them, whatever the order tests run in."""
    before = os.umask(0o022)
    os.umask(before)
    env = {name: os.environ.get(name) for name in PROCESS_SETTINGS}
    yield
    os.umask(before)
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def not_served(monkeypatch):
    """uvicorn.run recorded instead of serving."""
    import uvicorn

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))
    return served


@pytest.fixture(scope="session")
def config():
    """The project's course settings as they apply to assignment3."""
    return config_for(load_config(), "assignment3")


@pytest.fixture(scope="session")
def checks(config):
    """The checks the project's graders declare (reference/assignment3/graders/)."""
    return check_graders(config)


@pytest.fixture(scope="session")
def mnist(config):
    return load_mnist(config.dataset_folder("mnist"))


@pytest.fixture(scope="session")
def short_course(tmp_path_factory):
    """The 2-epoch assignment3 (classroom.short_config: threshold 0.90), built once for the session's tests that
    only read it (never edit it: tests that change a setting or a grader build their own)."""
    from classroom import load_course, short_config

    return load_course(short_config(tmp_path_factory.mktemp("short-course")))


@pytest.fixture(scope="session")
def graded(request, config, mnist, short_course, tmp_path_factory):
    """graded(path) → GradeResult, graded on the CPU once per session however many tests ask; the assignment is
    found as the CLI finds it (release metadata, a folder named after it, the file name).
    graded(path, short=True): the sample as the 2-epoch course's student would hand it in (``sample_text``),
    graded on ``short_course`` — for tests whose point is not the lecture's epoch count or its 0.95 threshold.
    The assignment3 notebooks that the session's selected tests name (sample names as parameters, samples or
    project paths in their ``lecture_course`` or ``short_course`` marker) are graded first, side by side, one class
    per course and once per test run, whatever the number of xdist workers (the batch's workers keep both cores
    busy; each result is the same as grading it alone)."""
    cache, courses = {}, {"assignment3": (config, mnist)}
    wanted = wanted_notebooks(request.session.items)
    folder = tmp_path_factory.mktemp("short-samples")

    def grade(path: Path, short: bool = False):
        path, key = Path(path), (Path(path), short)
        if path in wanted[short] and len(wanted[short]) > 1 and key not in cache:
            graded_class = shared_class(run_folder(tmp_path_factory) / ("short-class" if short else "lecture-class"),
                                        wanted[short], short, short_course if short else config, tmp_path_factory)
            cache.update({(p, short): result for p, result in graded_class.items()})
        if key not in cache and short:
            copy = folder / path.name
            copy.write_bytes(sample_text(path, short))
            cache[key] = grade_notebook(copy, short_course, device="cpu", data=mnist)
        if key not in cache:
            assignment = which_assignment(config, path)
            if assignment not in courses:
                course = config_for(load_config(), assignment)
                courses[assignment] = (course, load_dataset(course))
            course, data = courses[assignment]
            cache[key] = grade_notebook(path, course, device="cpu", data=data)
        return cache[key]

    return grade


def wanted_notebooks(items) -> dict[bool, list[Path]]:
    """short? → the assignment3 notebooks the selected tests grade through ``graded``: their string parameters that
    name a sample, and the samples or project paths in their ``lecture_course`` or ``short_course`` marker (a test
    marked ``short_course`` has its samples, parameters included, graded on the short course). A test that does not
    ask for ``graded`` grades its own way: its parameters add nothing to the shared classes."""
    wanted = {False: set(), True: set()}
    for item in items:
        if "graded" not in getattr(item, "fixturenames", ()):
            continue
        short = item.get_closest_marker("short_course")
        marker = short or item.get_closest_marker("lecture_course")
        values = list(getattr(getattr(item, "callspec", None), "params", {}).values())
        paths = [notebook_named(v) for v in values + (list(marker.args) if marker else []) if isinstance(v, str)]
        wanted[short is not None].update(p for p in paths if p is not None)
    return {short: sorted(paths) for short, paths in wanted.items()}


def notebook_named(name: str) -> Path | None:
    """An assignment3 sample's name, or a notebook's path in the project (the reference, the release) → its path."""
    for path in (SAMPLES / f"{name}.ipynb", PROJECT_ROOT / name):
        if path.suffix == ".ipynb" and path.is_file():
            return path
    return None


def sample_text(path: Path, short: bool) -> bytes:
    """A sample's bytes as handed in on the lecture's course, or on the short one (its code trains 2 epochs:
    everything else, its mistake included, is kept)."""
    from classroom import short_epochs

    return short_epochs(path.read_text(encoding="utf-8")).encode("utf-8") if short else path.read_bytes()


def run_folder(tmp_path_factory) -> Path:
    """A folder this test run shares: with ``-n`` (pytest-xdist) every worker's base folder is in it."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def shared_class(folder: Path, paths: list[Path], short: bool, config, tmp_path_factory) -> dict[Path, GradeResult]:
    """``paths`` graded side by side once per test run: the first process to ask grades them and keeps each
    result in ``folder``; with ``-n``, another worker asking waits for it (a lock) and reads them, so the class
    is not trained once per worker."""
    folder.mkdir(exist_ok=True)
    kept = {p: folder / (str(p.relative_to(PROJECT_ROOT)).replace("/", "__") + ".json") for p in paths}
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)        # released when the file closes
        todo = [p for p, file in kept.items() if not file.is_file()]
        if todo:
            results = grade_side_by_side([sample_text(p, short) for p in todo], config,
                                         tmp_path_factory.mktemp("samples"))
            for p, result in zip(todo, results):
                kept[p].write_text(json.dumps(result.to_json()), encoding="utf-8")
    return {p: GradeResult.from_json(json.loads(file.read_text(encoding="utf-8"))) for p, file in kept.items()}


def grade_side_by_side(notebooks: list[bytes], config, tmp: Path) -> list[GradeResult]:
    """Grade notebooks of one assignment as one class on the CPU → their results in order, as ``grade_notebook``
    gives them."""
    from classroom import ON_TIME, exchange_submission

    from autograder.classroom.batch import grade_batch

    students = [f"n{i:03d}" for i in range(len(notebooks))]
    for student, data in zip(students, notebooks):
        exchange_submission(tmp / "class", student, data, ON_TIME, assignment=config.assignment.id)
    report = grade_batch(tmp / "class", tmp / "out", config, device="cpu", progress=False)
    return [GradeResult.from_json(report.written[student]) for student in students]


def write_notebook(path: Path, *sources: str, metadata: dict | None = None) -> Path:
    """A small notebook with one code cell per source (for execution tests that need no training)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"
        if metadata:
            cell.metadata.update(metadata)
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nbformat.writes(nb), encoding="utf-8")
    return path


BROKEN_KERNEL_WORDS = "this kernelspec exits at once"


def broken_kernelspec(folder: Path) -> dict[str, str]:
    """Environment variables under which the python3 kernel cannot start: its kernelspec (found first, through
    JUPYTER_PATH) runs an interpreter that prints BROKEN_KERNEL_WORDS and exits, as a broken installation would."""
    spec = folder / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-c", f"import sys; sys.exit({BROKEN_KERNEL_WORDS!r})", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"}))
    return {"JUPYTER_PATH": str(folder / "jupyter")}


def kernel_start_reason(words: str = BROKEN_KERNEL_WORDS) -> str:
    """What the grader says of a kernel that died at start after printing ``words``."""
    return f"the notebook's kernel could not start: Kernel died before replying to kernel_info; its last output: {words}"


def grader_source_lines() -> list[tuple[str, str]]:
    """Distinctive lines of the hidden graders' source (every assignment's graders and the framework's plugin,
    fixtures and support): none may appear in anything students receive."""
    lines = []
    graders = sorted((PROJECT_ROOT / "reference").glob("*/graders/*.py"))
    for source in graders + sorted(FRAMEWORK_DIR.glob("*.py")):
        for line in source.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if len(line) > 25 and not line.startswith(("#", "from ", "import ")):
                lines.append((source.name, line))
    return lines


def assert_no_grader_source(text: str) -> None:
    for name, line in grader_source_lines():
        assert line not in text, f"{name}: {line!r}"
