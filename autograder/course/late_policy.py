"""Late work, as an assignment's LATE_POLICY says: ``"reject"`` (refused, 0 points), ``"accept"`` (graded, marked
late) or a penalty schedule, ``{"per_started_day": 0.10, "max_days": 3}``: each day begun after the deadline takes
that fraction of the score, and work later than ``max_days`` days is refused like ``"reject"``.

``judge`` is the one place lateness is decided: ``submit``, the site and ``grade`` all ask it, each with the
student's own deadline (``extensions.deadline_for``).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

REJECT, ACCEPT, PENALTY = "reject", "accept", "penalty"
LATE_POLICIES = (REJECT, ACCEPT)
SCHEDULE_KEYS = ("per_started_day", "max_days")
SCHEDULE_EXAMPLE = '{"per_started_day": 0.10, "max_days": 3}'
DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class PenaltySchedule:
    per_started_day: float      # the fraction of the score each started day late takes
    max_days: int               # later than this many days: refused

    def describe(self) -> tuple[str, str]:
        """(ja, en), as pages and messages say the schedule."""
        pct = f"{self.per_started_day * 100:g}%"
        return (f"締切後は 1 日 (開始した日ごと) につき {pct} 減点、{self.max_days} 日を過ぎた提出は受理しません",
                f"{pct} off per started day late; nothing accepted after {self.max_days} days")


def read_late_policy(value) -> tuple[str, PenaltySchedule | None]:
    """LATE_POLICY's value → (REJECT | ACCEPT | PENALTY, the schedule when PENALTY). ValueError saying what was
    expected when it is none of these: a schedule that does not parse is never guessed at."""
    if isinstance(value, str):
        if value in LATE_POLICIES:
            return value, None
        raise ValueError(f"= {value!r} is unknown; choose one of {', '.join(LATE_POLICIES)}, or a penalty schedule "
                         f"{SCHEDULE_EXAMPLE}")
    if not isinstance(value, dict):         # one error type for every wrong value: the caller says it as one
        raise ValueError(  # noqa: TRY004
            f"must be 'reject', 'accept' or a penalty schedule {SCHEDULE_EXAMPLE}, got {value!r}")
    if set(value) != set(SCHEDULE_KEYS):
        raise ValueError(f"= {value!r} is no penalty schedule: it needs exactly the keys {', '.join(SCHEDULE_KEYS)} "
                         f"(e.g. {SCHEDULE_EXAMPLE})")
    per_day, max_days = value["per_started_day"], value["max_days"]
    if isinstance(per_day, bool) or not isinstance(per_day, (int, float)) or not 0 < per_day <= 1:
        raise ValueError(f"['per_started_day'] must be a fraction of the score above 0 and at most 1 (0.10 for "
                         f"10%), got {per_day!r}")
    if isinstance(max_days, bool) or not isinstance(max_days, int) or max_days < 1:
        raise ValueError(f"['max_days'] must be a whole number of days, at least 1, got {max_days!r}")
    return PENALTY, PenaltySchedule(float(per_day), max_days)


@dataclass(frozen=True)
class Lateness:
    """How late a submission is against its deadline, and what the policy makes of it."""
    late_by: dt.timedelta       # 0 or less: on time
    accepted: bool
    days: int = 0               # days begun after the deadline (0: on time)
    fraction: float = 0.0       # of the score deducted

    @property
    def late(self) -> bool:
        return self.late_by > dt.timedelta(0)


def started_days(late_by: dt.timedelta) -> int:
    """Days begun after the deadline: one second late is day 1, exactly 24 h late still day 1."""
    return max(0, math.ceil(late_by / DAY))


def judge(policy: str, schedule: PenaltySchedule | None, deadline: dt.datetime, moment: dt.datetime) -> Lateness:
    """A submission at ``moment`` against ``deadline`` (the student's own) under the policy."""
    late_by = moment - deadline
    if late_by <= dt.timedelta(0):
        return Lateness(late_by, True)
    days = started_days(late_by)
    if policy == ACCEPT:
        return Lateness(late_by, True, days)
    if policy == PENALTY and schedule is not None and days <= schedule.max_days:
        return Lateness(late_by, True, days, min(1.0, round(schedule.per_started_day * days, 6)))
    return Lateness(late_by, False, days)


def last_accepted(policy: str, schedule: PenaltySchedule | None, deadline: dt.datetime) -> dt.datetime | None:
    """The last moment work is accepted (None: late work is always accepted)."""
    if policy == ACCEPT:
        return None
    if policy == PENALTY and schedule is not None:
        return deadline + schedule.max_days * DAY
    return deadline
