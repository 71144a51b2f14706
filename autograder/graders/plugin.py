"""A small pytest plugin: hands the graders their context and turns test outcomes into scored check results.

Points come from POINTS in grader_config.py via each test's ``@pytest.mark.check(id)`` marker, so the course sets
them in one place and the graders stay plain tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..config import CHECK_IDS, Config
from ..dataset import Mnist
from ..result import FAILED, PASSED, CheckResult
from .support import CheckFailed

NOT_RUN = ("この項目は採点されませんでした (採点プログラムの内部エラー)。",
           "This check did not run (an internal error of the grader).")


class GradingPlugin:
    def __init__(self, config: Config, artifacts: Path, mnist: Mnist):
        self._config, self._artifacts, self._mnist = config, artifacts, mnist
        self._outcomes: dict[str, tuple[bool, str]] = {}
        self.measurements: dict[str, object] = {}    # what graders computed, via pytest's record_property

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
    def pytest_collection_modifyitems(self, items):
        seen = [check_id(item) for item in items]
        if sorted(seen) != sorted(CHECK_IDS):
            raise pytest.UsageError(f"graders must decide each check exactly once; found {seen}")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = (yield).get_result()
        name = check_id(item)
        self.measurements.update(dict(report.user_properties))
        if report.when == "call" and report.passed:
            self._outcomes[name] = (True, "")
        elif report.failed and name not in self._outcomes:
            self._outcomes[name] = (False, explain(call.excinfo))

    def results(self) -> list[CheckResult]:
        results = []
        for name in CHECK_IDS:
            points = self._config.points[name]
            passed, output = self._outcomes.get(name, (False, "\n".join(NOT_RUN)))
            results.append(CheckResult(name, PASSED if passed else FAILED, points if passed else 0.0, points,
                                       output))
        return results


def check_id(item) -> str:
    marker = item.get_closest_marker("check")
    if marker is None:
        raise pytest.UsageError(f"{item.nodeid} has no @pytest.mark.check(id)")
    return marker.args[0]


def explain(excinfo) -> str:
    error = excinfo.value if excinfo else None
    if isinstance(error, CheckFailed):
        return str(error)
    return ("採点中に予期しないエラーが起きました: " f"{type(error).__name__}: {error}\n"
            "The grader met an unexpected error while checking this: " f"{type(error).__name__}: {error}")
