"""What an assignment checks, as its hidden graders declare it: each test's ``@check(id, points=…, title=…)``.

There is no central list of checks: ``autograder.grading.graders.check_graders`` collects the assignment's graders and
returns their ``CheckSpec``s in the order the tests are defined. Everything that shows or scores checks (results,
the self-check view, feedback and summary pages, the gradebook, the published checks page) takes them from there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class CheckSpec:
    id: str              # stable: it names the check in every result, the gradebook's column, the pages
    points: float
    public: bool         # shown in full by `check` before submission
    title_ja: str        # what the check asks, as the assignment states it
    title_en: str

    @property
    def title(self) -> tuple[str, str]:
        return self.title_ja, self.title_en


def max_score(checks: Iterable[CheckSpec]) -> float:
    return float(sum(c.points for c in checks))


def titles(checks: Iterable[CheckSpec]) -> dict[str, tuple[str, str]]:
    """check id → (Japanese, English) title."""
    return {c.id: c.title for c in checks}


def spec_from_marker(args: tuple, kwargs: dict) -> CheckSpec:
    """A ``check`` marker's arguments as a CheckSpec; ValueError saying what is wrong with them."""
    if len(args) != 1:
        raise ValueError(f"@check takes the check id as its one positional argument, got {len(args)}: {args!r}")
    unknown = sorted(set(kwargs) - {"points", "title", "public"})
    if unknown:
        raise ValueError(f"@check has unknown arguments: {', '.join(unknown)} (it takes points, title, public)")
    check_id = args[0]
    if not (isinstance(check_id, str) and check_id.isascii() and check_id.isidentifier()):
        raise ValueError(f"the check id must be a plain identifier like 'val_accuracy', got {check_id!r}")
    if "points" not in kwargs:
        raise ValueError(f"check {check_id!r} declares no points (@check(..., points=N))")
    points = kwargs["points"]
    if isinstance(points, bool) or not isinstance(points, (int, float)) or not math.isfinite(points) or points < 0:
        raise ValueError(f"check {check_id!r}: points must be a number ≥ 0, got {points!r}")
    title = kwargs.get("title")
    if not (isinstance(title, (tuple, list)) and len(title) == 2
            and all(isinstance(t, str) and t.strip() for t in title)):
        raise ValueError(f"check {check_id!r}: title must be a (Japanese, English) pair of non-empty strings, "
                         f"got {title!r}")
    public = kwargs.get("public", False)
    if not isinstance(public, bool):
        raise ValueError(f"check {check_id!r}: public must be True or False, got {public!r}")
    return CheckSpec(check_id, float(points), public, title[0].strip(), title[1].strip())
