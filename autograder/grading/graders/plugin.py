"""A small pytest plugin: hands the graders their context and turns test outcomes into scored check results.

Each test declares the check it decides with ``@check(id, points=…, title=…, public=…)``; the plugin reads and
validates those declarations at collection (``checks``, in the order the tests are defined): a bad one, or an id
declared twice, is a usage error that stops grading. A check is failed only by ``CheckFailed`` (a verdict with its
explanation); any other exception is the grader's own failure: the check is "not graded", no points are given or
taken, and the instructor is told.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ...course.assignment import Assignment
from ...course.config import Config
from ..checks import CheckSpec, spec_from_marker
from ..result import FAILED, NOT_GRADED, PASSED, CheckResult
from .support import NOTE_PROPERTY, CheckFailed

GRADER_FAILED = ("採点プログラム自身のエラーのため、この項目は採点していません (点は与えも引きもしません)。担当教員が確認します。",
                 "This check was not graded because the grader itself failed; no points were given or taken. "
                 "Your instructor will look at it.")


class GradingPlugin:
    def __init__(self, config: Config, artifacts: Path, data):
        self._config, self._artifacts, self._data = config, artifacts, data
        self.checks: list[CheckSpec] = []            # what the graders declare, in the order they are defined
        self._check_of: dict[str, str] = {}          # test node id → the check id it decides
        self._outcomes: dict[str, tuple[str, str]] = {}     # check id → (status, output)
        self.measurements: dict[str, object] = {}    # what graders computed, via pytest's record_property
        self.grader_errors: dict[str, str] = {}      # check id → the exception a grader raised (for the instructor)

    # --- fixtures: the grading context (fixtures.py builds the rest on them) ------------------------------
    @pytest.fixture(scope="session")
    def config(self) -> Config:
        """The course's settings as they apply to this assignment."""
        return self._config

    @pytest.fixture(scope="session")
    def assignment(self) -> Assignment:
        """The assignment's settings: ``assignment.expected[...]`` holds the values its graders check against."""
        return self._config.assignment

    @pytest.fixture(scope="session")
    def artifacts(self) -> Path:
        return self._artifacts

    @pytest.fixture(scope="session")
    def dataset(self):
        """The assignment's pinned dataset, verified (e.g. ``dataset.x_train`` for mnist)."""
        return self._data

    # --- hooks --------------------------------------------------------------------------------------------
    def pytest_collection_modifyitems(self, session, items):
        if session.testsfailed:                  # a grader file failed to import: pytest reports that error
            return
        problems, declared_by = [], {}
        for item in items:
            try:
                spec = declared_check(item, self._config.assignment.expected)
            except ValueError as exc:
                problems.append(f"{item.nodeid}: {exc}")
                continue
            if spec.id in declared_by:
                problems.append(f"{item.nodeid}: check {spec.id!r} is already declared by {declared_by[spec.id]}; "
                                "each check is decided by exactly one test")
                continue
            declared_by[spec.id] = item.nodeid
            self._check_of[item.nodeid] = spec.id
            self.checks.append(spec)
        if problems:
            raise pytest.UsageError(*problems)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = (yield).get_result()
        name = self._check_of[item.nodeid]
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
        """One result per declared check, in order; a check whose test did not run is not graded."""
        results = []
        for spec in self.checks:
            name, points = spec.id, spec.points
            if name not in self._outcomes:
                self.grader_errors.setdefault(name, "the grader did not run (skipped or stopped early)")
            status, output = self._outcomes.get(name, (NOT_GRADED, "\n".join(GRADER_FAILED)))
            score = {PASSED: points, FAILED: 0.0}.get(status)
            results.append(CheckResult(name, status, score, points, output))
        return results


def declared_check(item, expected: dict) -> CheckSpec:
    """The check a grader test declares, its title filled in from the assignment's expected values
    (``title=("epochs={epochs} で学習", …)``); ValueError when it declares none, several, or a malformed one."""
    markers = list(item.iter_markers("check"))
    if not markers:
        raise ValueError("declares no check: decorate it with @check(id, points=…, title=(ja, en))")
    if len(markers) > 1:
        raise ValueError(f"declares {len(markers)} checks; a test decides exactly one")
    spec = spec_from_marker(markers[0].args, markers[0].kwargs)
    try:
        return dataclasses.replace(spec, title_ja=spec.title_ja.format_map(expected),
                                   title_en=spec.title_en.format_map(expected))
    except (KeyError, ValueError, IndexError) as exc:
        raise ValueError(f"check {spec.id!r}: its title names {exc} in braces, which is not among the assignment's "
                         f"EXPECTED values ({', '.join(expected) or 'none'}); write a literal brace as {{{{ }}}}") from exc
