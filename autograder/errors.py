"""Errors that mean the grader itself cannot grade (as opposed to a student's notebook failing a check)."""


class GraderError(Exception):
    """The grader cannot go on: bad configuration, missing dataset, unreadable path. The CLI exits non-zero."""


class ConfigError(GraderError):
    """A setting in grader_config.py is missing or invalid; the message names the setting."""


class DatasetError(GraderError):
    """The pinned MNIST files are missing or do not match their SHA-256 digests."""


class Refusal(Exception):
    """A request understood and refused by the course's rules (late submission, edited given cells, publishing
    before the deadline). The CLI prints the message and exits 1."""
