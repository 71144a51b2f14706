"""Errors that mean the grader itself cannot grade (as opposed to a student's notebook failing a check)."""


class GraderError(Exception):
    """The grader cannot go on: bad configuration, missing dataset, unreadable path. The CLI exits non-zero."""


class ConfigError(GraderError):
    """A setting in grader_config.py is missing or invalid; the message names the setting."""


class DatasetError(GraderError):
    """A pinned dataset's files are missing or do not match their SHA-256 digests."""


class Refusal(Exception):
    """A request understood and refused by the course's rules (late submission, edited given cells, publishing
    before the deadline). The CLI prints the message and exits 1."""


class KernelStartError(GraderError):
    """The notebook's kernel could not start (a broken sandbox, kernelspec or interpreter): no student cell ran, so
    this is the grader's failure, never a student's zero. The message says why, in the kernel's own words."""


LINE_LIMIT = 200


def meaningful_lines(text: str) -> list[str]:
    """The lines of a failed process's stderr that say what went wrong: not blank lines, not a traceback's header
    or its indented frames and source lines (the exception's own line is kept), each cut to LINE_LIMIT."""
    lines = []
    for line in text.splitlines():
        if line.strip() and not line[0].isspace() and line != "Traceback (most recent call last):":
            lines.append(line.rstrip() if len(line) <= LINE_LIMIT else line[:LINE_LIMIT - 1] + "…")
    return lines
