"""What produced a result, as two digests, so that a rerun redoes only what changed.

- The **run** fingerprint: everything that decides what the student's kernel produced — the notebook's bytes, the
  released notebook its given cells are restored from, the harness code (``RUN_CODE``), the dataset's pinned
  digests (in dataset.py), the execution settings (``RUN_SETTINGS``), the assignment's exports, the digests of
  the arrays its graders rebuild (RECOMPUTABLE: an array equal to one is not written) and its training cells, the
  libraries the kernel runs (``LIBRARIES``) and the device kind. Equal run fingerprints: the stored run's
  artifacts are what executing the notebook again would give.
- The **grading** fingerprint: what turns those artifacts into verdicts — the hidden graders and the framework's
  grading code (``GRADING_CODE``), the assignment's settings.py (points, thresholds and titles live there or in
  the graders), grader_config.py, and whether the grade is official. Erring on the side of "changed" costs a
  regrade from stored runs (seconds), never a re-execution.

A third, the **page** fingerprint, says whether a student's feedback page would come out differently: a regrade
whose verdicts did not change (a message reworded in a check the student passed) leaves the page as it was.

A new course setting must be named in ``RUN_SETTINGS`` or ``NOT_RUN_SETTINGS`` (a test holds every field of
``Config`` to that), so that no execution setting is silently left out of the run fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from ..course import dataset
from ..course.config import Config

PACKAGE = Path(__file__).parent.parent            # autograder/: the code lists below are relative to it
RUN_CODE = ("run/execute.py", "run/kernel_side.py", "run/sanitize.py", "run/sandbox.py", "run/cgroups.py",
            "course/dataset.py", "course/notebook.py")
GRADING_CODE = ("grading/graders/*.py", "grading/graders/pytest.ini", "grading/checks.py", "grading/grade.py",
                "run/record.py", "grading/result.py")
PAGE_CODE = ("reports/feedback.py", "reports/figures.py", "reports/pages.py", "reports/report.py", "grading/result.py",
             "reports/templates/*")
RUN_SETTINGS = ("seed", "cell_timeout_s", "training_cell_timeout_s", "notebook_timeout_s", "kernel_cpu_threads",
                "sandbox", "memory_limit_mb", "max_processes", "output_limit_kb", "max_notebook_mb")
# fused_fit_steps counts only in speed mode (see run_context); data_dir only through the digests its files are held
# to; the others decide intake (timezone, missing_timestamp), officialness (device_policy, in the grading
# fingerprint) or where things are; extensions_file decides intake too (each student's own deadline, in the intake
# fingerprint through the decision's detail).
NOT_RUN_SETTINGS = ("fused_fit_steps", "data_dir", "timezone", "missing_timestamp", "device_policy", "exchange_dir",
                    "publish_dir", "site_dir", "site_check_workers", "site_max_attempts", "site_max_stored_mb",
                    "site_min_free_mb", "site_check_time_limit_s", "site_staff_idle_min", "kernels_per_gpu",
                    "slurm_partition", "slurm_gpus_per_task", "slurm_array_parallelism", "slurm_chunk_size",
                    "slurm_time_min", "root", "source", "chosen", "extensions_file",
                    "warm_kernels")           # a warm kernel computes what a cold one does (tests/test_warm.py)
LIBRARIES = ("tensorflow", "keras", "numpy", "scikit-learn", "ipykernel")


def _digest_files(digest, base: Path, patterns) -> None:
    for pattern in patterns:
        for path in sorted(base.glob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(base).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")


@lru_cache(maxsize=None)
def library_versions() -> tuple[tuple[str, str], ...]:
    """The installed versions of what the kernel runs (read from package metadata: nothing is imported)."""
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return ""
    return tuple((name, version(name)) for name in LIBRARIES)


def run_context(config: Config, device: str, fused: bool, data=None) -> str:
    """The digest of every run input but the notebook itself: computed once per batch. ``data``: the assignment's
    dataset if already loaded (read only where RECOMPUTABLE rebuilds arrays from it)."""
    assignment = config.assignment
    digest = hashlib.sha256(b"run v1\0")
    _digest_files(digest, PACKAGE, RUN_CODE)
    release = assignment.release_notebook
    digest.update(b"release\0" + (release.read_bytes() if release.is_file() else b"(none)") + b"\0")
    settings = {name: getattr(config, name) for name in RUN_SETTINGS}
    settings["fused_fit_steps"] = config.fused_fit_steps if fused else 1
    facts = {"settings": settings, "dataset": assignment.dataset, "exports": asdict(assignment.exports),
             "training_cells": list(assignment.training_cells), "libraries": library_versions(), "device": device,
             "recomputable": dataset.expected_digests(config, data)}
    digest.update(json.dumps(facts, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def run_fingerprint(notebook: bytes, context: str) -> str:
    """The run fingerprint of a notebook's bytes under a ``run_context``."""
    return hashlib.sha256(f"{context}\0{hashlib.sha256(notebook).hexdigest()}".encode()).hexdigest()


def run_contexts(config: Config, kernel_device: str, fused: bool, data=None) -> dict[str, str]:
    """device → ``run_context`` for each device whose stored run stands for a run on ``kernel_device`` now, the
    preferred first: a GPU run stands for a CPU one (it is what official grading asks for, and regrading it needs
    no GPU), never the other way."""
    devices = ("gpu",) if kernel_device == "gpu" else ("gpu", kernel_device)
    return {device: run_context(config, device, fused, data) for device in devices}


def run_fingerprints(notebook: bytes, contexts: dict[str, str]) -> dict[str, str]:
    """device → the notebook's run fingerprint there, in the order of ``contexts``."""
    return {device: run_fingerprint(notebook, context) for device, context in contexts.items()}


def grading_fingerprint(config: Config, official: bool) -> str:
    """The graders, the framework's grading code, the assignment's settings and the course's, and officialness."""
    digest = hashlib.sha256(b"grading v1\0")
    _digest_graders(digest, config)
    digest.update(b"official" if official else b"unofficial")
    return digest.hexdigest()


def graders_digest(config: Config) -> str:
    """What the assignment's declared checks are made of (``graders.check_graders`` collects them again when it
    changes): the same inputs as the grading fingerprint's, officialness aside, so the two never disagree about
    whether the graders changed."""
    digest = hashlib.sha256(b"graders v1\0")
    _digest_graders(digest, config)
    return digest.hexdigest()


def _digest_graders(digest, config: Config) -> None:
    """The framework's grading code, every file of the assignment's hidden graders folder (a data file a grader
    reads included), the assignment's settings.py and the course's grader_config.py."""
    _digest_files(digest, PACKAGE, GRADING_CODE)
    graders = config.assignment.graders_dir
    if graders.is_dir():
        digest.update(b"assignment graders\0")
        _digest_files(digest, graders, ("**/*",))
    _digest_settings(digest, config)


def _digest_settings(digest, config: Config) -> None:
    """The assignment's settings.py and the course's grader_config.py, as written."""
    for path in (config.assignment.settings_path, config.source):
        digest.update(path.read_bytes() + b"\0")


# What a result records about how it was come by, not what it says: no page shows them (but the time).
BOOKKEEPING = ("graded_at", "graded_from", "attempts", "run_fingerprint", "grading_fingerprint", "intake_fingerprint",
               "page_fingerprint")


def page_context(config: Config, checks) -> str:
    """The digest of what every student's page is made of but the result: the declared checks (titles, points), the
    assignment's and the course's settings (curve, threshold, time zone), the page code. Computed once per batch."""
    digest = hashlib.sha256(b"page v1\0")
    _digest_files(digest, PACKAGE, PAGE_CODE)
    digest.update(repr(tuple(checks)).encode())
    _digest_settings(digest, config)
    return digest.hexdigest()


def page_fingerprint(result: dict, context: str) -> str:
    """What a student's feedback page is made of: the result (but its bookkeeping) under a ``page_context``."""
    shown = {key: value for key, value in result.items() if key not in BOOKKEEPING}
    return hashlib.sha256(f"{context}\0{json.dumps(shown, sort_keys=True, default=str)}".encode()).hexdigest()
