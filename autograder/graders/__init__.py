"""Hidden graders: pytest files run in the grader's own process, never released, never in the student's kernel.

``run_graders`` runs them over one submission's exported artifacts and returns one ``CheckResult`` per check id.
``check_graders`` collects them without running anything, so a grader that cannot be imported or collected stops
grading before any notebook is executed (``GradersBroken``), never as every student's zero.
"""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ..config import Config
from ..dataset import Mnist
from ..errors import GraderError
from ..result import CheckResult
from .plugin import GradingPlugin

GRADERS_DIR = Path(__file__).resolve().parent


class GradersBroken(GraderError):
    """The hidden graders cannot be collected or pytest stopped: no verdict of this run can be trusted."""


@dataclass
class GraderRun:
    tests: list[CheckResult]                             # one per check id
    measurements: dict = field(default_factory=dict)     # what the graders computed: val_accuracy, param_count, ...
    errors: dict[str, str] = field(default_factory=dict) # check id → a grader's own exception (check not graded)


def _pytest(plugin: GradingPlugin, *extra: str) -> tuple[int, str]:
    """Run pytest over the graders with ``plugin``; → (exit code, what pytest printed)."""
    args = [str(GRADERS_DIR), "-c", str(GRADERS_DIR / "pytest.ini"), "--rootdir", str(GRADERS_DIR),
            "--import-mode=importlib", "--capture=no", "-q", "--tb=short",
            # The graders fail through CheckFailed, not bare asserts: no assertion rewriting (1–2 s of imports).
            "--assert=plain",
            # Not wanted here: a cache folder in the package, and the end-of-session gc sweeps (~1 s).
            "-p", "no:cacheprovider", "-p", "no:unraisableexception", "-p", "no:threadexception", *extra]
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):   # import errors go to stderr
            code = pytest.main(args, plugins=[plugin])
    finally:
        _forget_grader_modules()
    return int(code), log.getvalue()


def _forget_grader_modules() -> None:
    """pytest reuses a test module already in sys.modules: forget the graders' files it imported, so the next run
    in this process reads them as they are then (a fixed grader is picked up without a restart)."""
    for name, module in list(sys.modules.items()):
        path = Path(getattr(module, "__file__", None) or "")
        if path.parent == GRADERS_DIR and (path.name == "conftest.py" or path.name.startswith("test_")):
            del sys.modules[name]


def _broken(code: int, log: str) -> GradersBroken:
    lines = [line for line in log.splitlines() if line.strip() and not line.startswith(("=", "-", "_", "!"))]
    errors = [line for line in lines if line.startswith(("E ", "ERROR"))]    # pytest's own summary of the error
    why = "\n  ".join((errors or lines)[-12:]) or f"pytest exit status {code}"
    return GradersBroken(f"the hidden graders in {GRADERS_DIR} cannot run (pytest exit status {code}); fix them "
                         f"and run the same command again:\n  {why}")


def check_graders(config: Config) -> None:
    """Collect the graders without running them; raise ``GradersBroken`` with pytest's reason when that fails."""
    code, log = _pytest(GradingPlugin(config, GRADERS_DIR, None), "--collect-only")
    if code != pytest.ExitCode.OK:
        raise _broken(code, log)


def run_graders(artifacts: Path, config: Config, mnist: Mnist) -> GraderRun:
    """Judge one submission's exported artifacts: one result per check id, and what the graders measured."""
    plugin = GradingPlugin(config, Path(artifacts), mnist)
    code, log = _pytest(plugin)
    (Path(artifacts) / "graders.log").write_text(log, encoding="utf-8")
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        raise _broken(code, log)
    return GraderRun(plugin.results(), plugin.measurements, plugin.grader_errors)
