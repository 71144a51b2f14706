"""Hidden graders: pytest files run in the grader's own process, never released, never in the student's kernel.

``run_graders`` runs them over one submission's exported artifacts and returns one ``CheckResult`` per check id.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from ..config import Config
from ..dataset import Mnist
from ..result import CheckResult
from .plugin import GradingPlugin

GRADERS_DIR = Path(__file__).resolve().parent


def run_graders(artifacts: Path, config: Config, mnist: Mnist) -> tuple[list[CheckResult], dict]:
    """→ (one result per check id, the numbers the graders measured: val_accuracy, param_count, ...)."""
    plugin = GradingPlugin(config, Path(artifacts), mnist)
    args = [str(GRADERS_DIR), "-c", str(GRADERS_DIR / "pytest.ini"), "--rootdir", str(GRADERS_DIR),
            "--import-mode=importlib", "--capture=no", "-q", "--tb=short",
            # The graders fail through CheckFailed, not bare asserts: no assertion rewriting (1–2 s of imports).
            "--assert=plain",
            # Not wanted here: a cache folder in the package, and the end-of-session gc sweeps (~1 s).
            "-p", "no:cacheprovider", "-p", "no:unraisableexception", "-p", "no:threadexception"]
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        pytest.main(args, plugins=[plugin])
    (Path(artifacts) / "graders.log").write_text(log.getvalue(), encoding="utf-8")
    return plugin.results(), plugin.measurements
