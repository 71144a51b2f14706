"""Time, read and written in one place: every form of a time the project accepts, the current time (the clock or
$AUTOGRADER_NOW, so that deadlines can be tested and rehearsed), and how times are shown and stamped.

$AUTOGRADER_NOW alone stops the clock at that time (a command's rehearsal); with $AUTOGRADER_NOW_SET_AT (the Unix
time it was set at) the clock runs on from it, as the wall clock does: ``rehearse`` sets both, for ``serve
--rehearse`` and every process the site starts (its checks and jobs inherit the environment).

Accepted, by ``read_time``: ISO 8601 with or without an offset (``Z`` included), with slashes for dashes as LMS
exports write dates (2024/05/15 21:00), and nbgrader's timestamp.txt form (2024-05-15 12:00:00.000000 UTC). What a
time without an offset means depends on where it comes from, hence the entry points: ``parse_time`` (the course's
zone), ``parse_deadline`` (the same, and a deadline to the minute includes that minute) and ``now`` (an offset is
required: a rehearsal must not depend on the machine's zone).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time

from ..errors import GraderError

NOW_VARIABLE = "AUTOGRADER_NOW"
SET_AT_VARIABLE = "AUTOGRADER_NOW_SET_AT"
NBGRADER_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"       # what nbgrader writes to timestamp.txt, always in UTC
# a time given to the minute, with or without an offset: as a deadline it means up to the end of that minute
TO_THE_MINUTE = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}([+-]\d{2}:?\d{2}|Z)?")


def read_time(text: str) -> dt.datetime:
    """The one parser: nbgrader's timestamp form, else ISO 8601 with slashes read as dashes. The answer is naive
    when the text names no zone; the entry points below say what that means. ValueError when it is no time."""
    text = text.strip()
    try:
        return parse_nbgrader_timestamp(text)
    except ValueError:
        return dt.datetime.fromisoformat(_dashed(text))


def _dashed(text: str) -> str:
    """LMS exports write dates as 2024/05/15; ISO 8601 wants dashes."""
    return text.replace("/", "-")


def parse_nbgrader_timestamp(text: str) -> dt.datetime:
    """nbgrader's timestamp.txt form, '2024-05-15 12:00:00.000000 UTC', strictly (microseconds and zone name
    included), as an aware UTC datetime."""
    return dt.datetime.strptime(text.strip(), NBGRADER_FORMAT).replace(tzinfo=dt.timezone.utc)


def parse_time(text: str, tz: dt.tzinfo) -> dt.datetime:
    """A submission time (timestamp.txt, a manifest's column, a result) → an aware datetime; a time without an
    offset is in the course's zone ``tz``, as the people who wrote it read it."""
    moment = read_time(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def parse_deadline(text: str, tz: dt.tzinfo) -> dt.datetime:
    """A deadline ('2024-05-16 23:59' local to ``tz``, or with an offset) → an aware datetime.

    A deadline given to the minute includes that whole minute ("23:59 まで" means up to 23:59:59.999999), as
    students read it; give seconds to be exact."""
    moment = parse_time(text, tz)
    if TO_THE_MINUTE.fullmatch(_dashed(text.strip())):
        moment = moment.replace(second=59, microsecond=999999)
    return moment


def now() -> dt.datetime:
    """An aware datetime: $AUTOGRADER_NOW (a time with an offset, e.g. 2024-05-16T23:58:00+09:00), running on
    since $AUTOGRADER_NOW_SET_AT when that is set, or the clock."""
    text = os.environ.get(NOW_VARIABLE)
    if not text:
        return dt.datetime.now(dt.timezone.utc)
    moment = rehearsal_time(text, NOW_VARIABLE)
    set_at = os.environ.get(SET_AT_VARIABLE)
    if set_at:
        try:
            moment += dt.timedelta(seconds=max(0.0, time.time() - float(set_at)))
        except ValueError as exc:
            raise GraderError(f"{SET_AT_VARIABLE}={set_at!r} is not a Unix time") from exc
    return moment


def rehearsal_time(text: str, given_as: str) -> dt.datetime:
    """A rehearsal's time as ``given_as`` gave it (a time with an offset); GraderError saying the form when it is
    not one."""
    try:
        moment = read_time(text)
    except ValueError as exc:
        raise GraderError(f"{given_as}={text!r} is not an ISO 8601 time, e.g. 2024-05-16T23:58:00+09:00") from exc
    if moment.tzinfo is None:
        raise GraderError(f"{given_as}={text!r} needs an offset, e.g. {text.strip()}+09:00")
    return moment


def rehearse(start: str) -> dt.datetime:
    """From now on, this process and those it starts read a clock that runs from ``start`` (``serve
    --rehearse``: a site tried before or after a real deadline). → the start, as read."""
    moment = rehearsal_time(start, "--rehearse")
    os.environ[NOW_VARIABLE] = moment.isoformat()
    os.environ[SET_AT_VARIABLE] = repr(time.time())
    return moment


def rehearsing() -> bool:
    """Whether the time is a rehearsal's (pages say so: nothing handed in then counts)."""
    return bool(os.environ.get(NOW_VARIABLE))


def still_before(deadline: dt.datetime, tz: dt.tzinfo) -> tuple[str, str] | None:
    """(the deadline, the time now), as people read them, while ``deadline`` has not passed; else None. What
    may wait for a deadline (a solution, feedback) is refused with both."""
    moment = now()
    if moment >= deadline:
        return None
    return local_text(deadline, tz), local_text(moment, tz)


def local_text(moment: dt.datetime, tz: dt.tzinfo) -> str:
    """'2024-05-16 23:59 JST' — how deadlines and times are shown to people."""
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def nbgrader_timestamp(moment: dt.datetime) -> str:
    """nbgrader's timestamp.txt format: '2024-05-15 12:00:00.000000 UTC'."""
    return moment.astimezone(dt.timezone.utc).strftime(NBGRADER_FORMAT)     # %Z of UTC is 'UTC'
