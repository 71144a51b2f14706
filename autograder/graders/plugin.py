"""A small pytest plugin: hands the graders their context and turns test outcomes into scored check results.

Points come from POINTS in grader_config.py via each test's ``@pytest.mark.check(id)`` marker, so the course sets
them in one place and the graders stay plain tests. A check is failed only by ``CheckFailed`` (a verdict with its
explanation); any other exception is the grader's own failure: the check is "not graded", no points are given or
taken, and the instructor is told.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..config import CHECK_IDS, Config
from ..dataset import Mnist
from ..result import FAILED, NOT_GRADED, PASSED, CheckResult
from .support import NOTE_PROPERTY, CheckFailed

GRADER_FAILED = ("採点プログラム自身のエラーのため、この項目は採点していません (点は与えも引きもしません)。担当教員が確認します。",
                 "This check was not graded because the grader itself failed; no points were given or taken. "
                 "Your instructor will look at it.")


class GradingPlugin:
    def __init__(self, config: Config, artifacts: Path, mnist: Mnist):
        self._config, self._artifacts, self._mnist = config, artifacts, mnist
        self._outcomes: dict[str, tuple[str, str]] = {}     # check id → (status, output)
        self.measurements: dict[str, object] = {}    # what graders computed, via pytest's record_property
        self.grader_errors: dict[str, str] = {}      # check id → the exception a grader raised (for the instructor)

    # --- fixtures: what every grader may ask for ----------------------------------------------------------
    @pytest.fixture(scope="session")
    def config(self) -> Config:
        return self._config

    @pytest.fixture(scope="session")
    def artifacts(self) -> Path:
        return self._artifacts

    @pytest.fixture(scope="session")
    def mnist(self) -> Mnist:
        return self._mnist

    # --- hooks --------------------------------------------------------------------------------------------
    def pytest_collection_modifyitems(self, session, items):
        if session.testsfailed:                  # a grader file failed to import: pytest reports that error
            return
        seen = [check_id(item) for item in items]
        if sorted(seen) != sorted(CHECK_IDS):
            raise pytest.UsageError(f"graders must decide each check exactly once; found {seen}")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = (yield).get_result()
        name = check_id(item)
        properties = dict(report.user_properties)
        note = properties.pop(NOTE_PROPERTY, "")
        self.measurements.update(properties)
        if report.when == "call" and report.passed:
            self._outcomes[name] = (PASSED, note)
        elif report.failed and name not in self._outcomes:
            error = call.excinfo.value if call.excinfo else None
            if isinstance(error, CheckFailed):
                self._outcomes[name] = (FAILED, str(error))
            else:
                self.grader_errors[name] = f"{type(error).__name__}: {str(error)[:300]}"
                self._outcomes[name] = (NOT_GRADED, "\n".join(GRADER_FAILED))

    def results(self) -> list[CheckResult]:
        results = []
        for name in CHECK_IDS:
            points = self._config.points[name]
            if name not in self._outcomes:
                self.grader_errors.setdefault(name, "the grader did not run (skipped or stopped early)")
            status, output = self._outcomes.get(name, (NOT_GRADED, "\n".join(GRADER_FAILED)))
            score = {PASSED: points, FAILED: 0.0}.get(status)
            results.append(CheckResult(name, status, score, points, output))
        return results


def check_id(item) -> str:
    marker = item.get_closest_marker("check")
    if marker is None:
        raise pytest.UsageError(f"{item.nodeid} has no @pytest.mark.check(id)")
    return marker.args[0]
