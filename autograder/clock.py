"""The current time, from the clock or from $AUTOGRADER_NOW so that deadlines can be tested and rehearsed."""

from __future__ import annotations

import datetime as dt
import os

from .errors import GraderError

NOW_VARIABLE = "AUTOGRADER_NOW"


def now() -> dt.datetime:
    """An aware datetime: $AUTOGRADER_NOW (ISO 8601 with an offset, e.g. 2024-05-16T23:58:00+09:00) or the clock."""
    text = os.environ.get(NOW_VARIABLE)
    if not text:
        return dt.datetime.now(dt.timezone.utc)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise GraderError(f"{NOW_VARIABLE}={text!r} is not an ISO 8601 time") from exc
    if moment.tzinfo is None:
        raise GraderError(f"{NOW_VARIABLE}={text!r} needs an offset, e.g. {text}+09:00")
    return moment


def local_text(moment: dt.datetime, tz: dt.tzinfo) -> str:
    """'2024-05-16 23:59 JST' — how deadlines and times are shown to people."""
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def nbgrader_timestamp(moment: dt.datetime) -> str:
    """nbgrader's timestamp.txt format: '2024-05-15 12:00:00.000000 UTC'."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def parse_nbgrader_timestamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S.%f %Z").replace(tzinfo=dt.timezone.utc)
