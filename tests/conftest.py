"""Shared fixtures: the course configuration, the pinned MNIST, and graded sample notebooks (graded once)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import PROJECT_ROOT, clock
from autograder.assignment import config_for, which_assignment
from autograder.config import load_config
from autograder.dataset import load_dataset, load_mnist
from autograder.grade import grade_notebook
from autograder.graders import FRAMEWORK_DIR, check_graders
from autograder.result import GradeResult
from autograder.sandbox import SITE_REQUIRES_SANDBOX

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
def graded(request, config, mnist, tmp_path_factory):
    """graded(path) → GradeResult, graded on the CPU once per session however many tests ask; the assignment is
    found as the CLI finds it (release metadata, a folder named after it, the file name).
    The assignment3 samples that the session's selected tests name as parameters are graded first, side by side,
    as one class (the batch's workers keep both cores busy; each result is the same as grading it alone)."""
    cache, courses = {}, {"assignment3": (config, mnist)}
    wanted = sorted({SAMPLES / f"{value}.ipynb" for item in request.session.items
                     for value in getattr(getattr(item, "callspec", None), "params", {}).values()
                     if isinstance(value, str) and (SAMPLES / f"{value}.ipynb").is_file()})

    def grade(path: Path):
        path = Path(path)
        if path in wanted and len(wanted) > 1 and path not in cache:
            cache.update(grade_side_by_side([p for p in wanted if p not in cache], config,
                                            tmp_path_factory.mktemp("samples")))
        if path not in cache:
            assignment = which_assignment(config, path)
            if assignment not in courses:
                course = config_for(load_config(), assignment)
                courses[assignment] = (course, load_dataset(course))
            course, data = courses[assignment]
            cache[path] = grade_notebook(path, course, device="cpu", data=data)
        return cache[path]

    return grade


def grade_side_by_side(paths: list[Path], config, tmp: Path) -> dict[Path, GradeResult]:
    """Grade notebooks of one assignment as one class on the CPU: path → its result, as ``grade_notebook`` gives."""
    from autograder.batch import grade_batch
    from classroom import ON_TIME, exchange_submission

    for path in paths:
        exchange_submission(tmp / "class", path.stem, path.read_bytes(), ON_TIME, assignment=config.assignment.id)
    report = grade_batch(tmp / "class", tmp / "out", config, device="cpu", progress=False)
    return {path: GradeResult.from_json(report.written[path.stem]) for path in paths}


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
