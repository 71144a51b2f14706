"""Hidden graders: pytest files run in the grader's own process, never released, never in the student's kernel.

An assignment's graders live in its folder (``config.assignment.graders_dir``: ``reference/<id>/graders/test_*.py``, plain
pytest); each test declares the check it decides with ``@check(...)``. This package is the framework around them:
the plugin (``plugin.py``), the fixtures every grader may ask for (``fixtures.py``), what graders import
(``support.py``) and pytest's settings (``pytest.ini``).

``run_graders`` runs them over one submission's exported artifacts and returns one ``CheckResult`` per declared
check. ``check_graders`` collects them without running anything and returns the declared checks, so a grader that
cannot be imported or collected stops grading before any notebook is executed (``GradersBroken``), never as every
student's zero.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ...course.config import Config
from ...errors import GraderError
from ..checks import CheckSpec
from ..fingerprint import graders_digest
from ..result import CheckResult
from . import fixtures
from .plugin import GradingPlugin
from .support import check

FRAMEWORK_DIR = Path(__file__).resolve().parent

__all__ = ["CheckSpec", "FRAMEWORK_DIR", "GraderRun", "GradersBroken", "check", "check_graders", "run_graders"]


class GradersBroken(GraderError):
    """The hidden graders cannot be collected or pytest stopped: no verdict of this run can be trusted."""


@dataclass
class GraderRun:
    tests: list[CheckResult]                             # one per declared check, in order
    measurements: dict = field(default_factory=dict)     # what the graders computed: val_accuracy, param_count, ...
    errors: dict[str, str] = field(default_factory=dict) # check id → a grader's own exception (check not graded)


def _pytest(graders: Path, plugin: GradingPlugin, *extra: str) -> tuple[int, str]:
    """Run pytest over the graders folder with ``plugin``; → (exit code, what pytest printed)."""
    args = [str(graders), "-c", str(FRAMEWORK_DIR / "pytest.ini"), "--rootdir", str(graders),
            "--import-mode=importlib", "--capture=no", "-q", "--tb=short",
            # The graders fail through CheckFailed, not bare asserts: no assertion rewriting (1–2 s of imports).
            "--assert=plain",
            # Not wanted here: a cache folder in the package, the end-of-session gc sweeps (~1 s), and whatever
            # third-party plugins the environment has installed (hypothesis, anyio, …: the graders use none, and
            # loading them costs every notebook ~0.3 s).
            "-p", "no:cacheprovider", "-p", "no:unraisableexception", "-p", "no:threadexception",
            "--disable-plugin-autoload", *extra]
    log = io.StringIO()
    shadowing = _modules_named_like_graders(graders)
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):   # import errors go to stderr
            code = pytest.main(args, plugins=[plugin, fixtures])
    finally:
        _forget_grader_modules(graders)
        sys.modules.update(shadowing)
    return int(code), log.getvalue()


def _modules_named_like_graders(graders: Path) -> dict:
    """Set aside modules of this process named like a grader file but loaded from elsewhere (a project test module
    `test_assignment4`, say): pytest would take such a module for the grader file and collect the wrong tests."""
    stems = {p.stem for p in graders.glob("*.py")} if graders.is_dir() else set()
    aside = {}
    for name in [n for n in sys.modules if n.rsplit(".", 1)[-1] in stems]:
        if not _inside(getattr(sys.modules[name], "__file__", None), graders):
            aside[name] = sys.modules.pop(name)
    return aside


def _inside(file, folder: Path) -> bool:
    """Whether a module's ``__file__`` lies under ``folder`` (a string test: this runs over every loaded module)."""
    return isinstance(file, str) and file.startswith(f"{folder}{os.sep}")


def _forget_grader_modules(graders: Path) -> None:
    """pytest reuses a test module already in sys.modules: forget the graders' files it imported, so the next run
    in this process reads them as they are then (a fixed grader is picked up without a restart)."""
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if _inside(file, graders) and (Path(file).name == "conftest.py" or Path(file).name.startswith("test_")):
            del sys.modules[name]


def _broken(graders: Path, code: int, log: str) -> GradersBroken:
    lines = [line for line in log.splitlines() if line.strip() and not line.startswith(("=", "-", "_", "!"))]
    errors = [line for line in lines if line.startswith(("E ", "ERROR"))]    # pytest's own summary of the error
    why = "\n  ".join((errors or lines)[-12:]) or f"pytest exit status {code}"
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        why = f"no grader tests found (test_*.py files whose tests declare @check(...)): {why}"
    return GradersBroken(f"the hidden graders in {graders} cannot run (pytest exit status {code}); fix them "
                         f"and run the same command again:\n  {why}")


_declared: dict[Path, tuple[str, tuple[CheckSpec, ...]]] = {}    # graders folder → (its digest, its checks)


def check_graders(config: Config) -> tuple[CheckSpec, ...]:
    """The checks the assignment's graders declare, in order. Collected without running anything, once per content
    of the graders folder (a changed file is collected again); ``GradersBroken`` with pytest's reason when that
    fails."""
    graders = config.assignment.graders_dir
    digest = graders_digest(config)                                  # titles read EXPECTED: settings.py counts
    known = _declared.get(graders)
    if known and known[0] == digest:
        return known[1]
    plugin = GradingPlugin(config, graders, None)
    code, log = _pytest(graders, plugin, "--collect-only")
    if code != pytest.ExitCode.OK:
        raise _broken(graders, code, log)
    _declared[graders] = (digest, tuple(plugin.checks))
    return _declared[graders][1]


def run_graders(artifacts: Path, config: Config, data) -> GraderRun:
    """Judge one submission's exported artifacts: one result per declared check, and what the graders measured.
    ``data``: the assignment's dataset (the graders' ``dataset`` fixture)."""
    plugin = GradingPlugin(config, Path(artifacts), data)
    code, log = _pytest(config.assignment.graders_dir, plugin)
    (Path(artifacts) / "graders.log").write_text(log, encoding="utf-8")
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        raise _broken(config.assignment.graders_dir, code, log)
    return GraderRun(plugin.results(), plugin.measurements, plugin.grader_errors)
