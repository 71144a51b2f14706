"""Decide where a student's kernel trains: the GPU for official grading, the CPU only when the policy allows.
Also keeps TensorFlow's native start-up output off the grader's terminal (``native_output_to``)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sys
from pathlib import Path
from typing import Iterator

from ..course.config import Config
from ..errors import GraderError

DEVICES = ("auto", "cpu", "gpu")


class NativeLog:
    """Where the native libraries' output of one command went, and whether they said anything there."""

    def __init__(self, path: Path, start: int):
        self.path, self.start = path, start

    def said_something(self) -> bool:
        try:
            return self.path.stat().st_size > self.start
        except OSError:
            return False


def _writes_to_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):    # replaced (pytest's capsys, a StringIO): not fd 2
        return False


@contextlib.contextmanager
def native_output_to(path: Path) -> Iterator[NativeLog]:
    """Send what is written straight to file descriptor 2 to the log ``path`` (appended), and keep Python's
    ``sys.stderr`` — the grader's own messages: the sandbox warning, the progress bar, errors — on the terminal.

    Why: TensorFlow's C++ logging (absl's "All log messages before absl::InitializeLog()", oneDNN,
    cpu_feature_guard, and on a machine without a GPU "failed call to cuInit: ... UNKNOWN ERROR") bypasses Python
    and reads like a failure on a CPU runner; redirecting ``sys.stderr`` alone would not catch it. It is kept in
    the log, which says why CUDA did not start when that matters. Python's own logging goes there too
    (``python_logging_to_fd2``): TensorFlow's Python warnings, such as a tf.function retracing. Both are restored on
    exit. The terminal stream made for ``sys.stderr`` is left open on exit: loggers created meanwhile hold on to
    it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        log = open(path, "ab")
    except OSError as exc:
        raise GraderError(f"ログを書けません / cannot write the grader's log {path}: {exc}") from exc
    previous, saved = sys.stderr, os.dup(2)
    try:
        with log:
            log.write(f"--- {dt.datetime.now().astimezone().isoformat(timespec='seconds')} · pid {os.getpid()} · "
                      f"autograder {' '.join(sys.argv[1:])}\n".encode())
            log.flush()
            record = NativeLog(path, log.tell())
            if _writes_to_fd2(previous):
                previous.flush()
                sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding=previous.encoding,
                                       errors=previous.errors)
            os.dup2(log.fileno(), 2)
        with python_logging_to_fd2():
            yield record
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        sys.stderr = previous


@contextlib.contextmanager
def python_logging_to_fd2() -> Iterator[None]:
    """Python's logging, for loggers that do not say otherwise, written to file descriptor 2 (the log, inside
    ``native_output_to``). A handler on the root logger also keeps TensorFlow from giving its own logger one of
    its own on ``sys.stderr`` (the terminal), which it does only while the root logger has none. Loggers with
    handlers of their own (uvicorn's, Ray's) are left as they are."""
    stream = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        stream.close()


def visible_gpus() -> list[str]:
    """GPUs TensorFlow sees. The grader's own process then hides them, leaving the GPU to the kernels (its own
    work — reloading a model, predicting 22,000 samples — is small)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TensorFlow already initialised its devices in this process
        pass
    return [g.name for g in gpus]


def official_on(device: str, config: Config) -> bool:
    """Whether a run on ``device`` gives an official grade under the course's policy."""
    return device == "gpu" or config.device_policy == "allow-cpu"


def resolve_device(requested: str, config: Config, gpus: list[str] | None = None,
                   cpu_fallback: bool = False) -> tuple[str, bool]:
    """→ (device for the kernel, whether the grade is official under the course's device policy).

    ``cpu_fallback`` is for runs that are no official grade (a student's self-check, the demo, publishing the
    solution): there ``auto`` quietly uses the CPU when no GPU is visible."""
    if requested not in DEVICES:
        raise GraderError(f"unknown device {requested!r}; choose one of {', '.join(DEVICES)}")
    cpu_official = config.device_policy == "allow-cpu"
    if requested == "cpu":
        return "cpu", cpu_official
    gpus = visible_gpus() if gpus is None else gpus
    if requested == "gpu":
        if not gpus:
            raise GraderError("--device gpu: no GPU is visible to TensorFlow on this machine "
                              "(check `nvidia-smi` and the GPU requirements in README.md)")
        return "gpu", True
    if gpus:
        return "gpu", True
    if not (cpu_official or cpu_fallback):
        raise GraderError("official grading requires a GPU (DEVICE_POLICY = 'require-gpu' in grader_config.py) "
                          "and none is visible; pass --device cpu for an unofficial grade on the CPU")
    return "cpu", cpu_official
