"""The course's settings (``grader_config.py``), validated on load, and the ``Config`` every stage reads.

A ``Config`` holds what is course-wide (time zone, sandbox and limits, device policy, folders). An assignment's
own settings (``reference/<id>/settings.py``: title, deadline, dataset, exports, expected values) are read by
``autograder.course.assignment``, which builds on this module (never the other way round): its ``config_for`` joins the
two, the assignment's overrides of course defaults applied, and that joined ``Config`` is what grading, release,
submit and publish receive.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .. import PROJECT_ROOT
from ..errors import ConfigError

if TYPE_CHECKING:
    from .assignment import Assignment

MISSING_TIMESTAMP_POLICIES = ("grade", "reject")
SANDBOX_MODES = ("auto", "require", "off")
MAX_WARM_KERNELS = 4                 # a worker holds 1 + WARM_KERNELS kernels, each up to MEMORY_LIMIT_MB
DEVICE_POLICIES = ("require-gpu", "allow-cpu")
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "grader_config.py"
# Settings that moved: each check declares its points and visibility (@check in the graders), and each assignment
# its deadline, late policy and expected values (reference/<id>/settings.py).
RETIRED_SETTINGS = {
    "POINTS": "each check declares its points where it is written, @check(id, points=…) in reference/<id>/graders/",
    "PUBLIC_CHECKS": "each check declares its visibility where it is written, @check(id, public=True)",
    **{name: "it is an assignment's setting now: write it in reference/<id>/settings.py"
       for name in ("ASSIGNMENT_ID", "DEADLINE", "LATE_POLICY", "VAL_ACCURACY_THRESHOLD", "EXPECTED_EPOCHS",
                    "EXPECTED_BATCH_SIZE", "EXPECTED_VALIDATION_SPLIT")},
    "DATASET_DIR": "datasets live under DATA_DIR/<name>/ (e.g. data/mnist); set DATA_DIR instead",
}


class SettingsFile:
    """The settings of one Python file, read one by one with the rule each must follow; every error names the
    file and the setting."""

    def __init__(self, values: dict, path: Path):
        self.values, self.path = values, path

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: setting {name} {problem}")

    def get(self, name: str, kind, default=dataclasses.MISSING):
        if name not in self.values:
            if default is not dataclasses.MISSING:
                return default
            raise self.error(name, "is missing")
        value = self.values[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise self.error(name, f"must be {_kind_name(kind)}, got {value!r}")
        return value

    def positive(self, name: str, kind=int, default=dataclasses.MISSING):
        value = self.get(name, kind, default)
        if value <= 0:
            raise self.error(name, f"must be positive, got {value!r}")
        return value

    def at_least_zero(self, name: str, default=dataclasses.MISSING) -> int:
        value = self.get(name, int, default)
        if value < 0:
            raise self.error(name, f"must be 0 or more, got {value!r}")
        return value

    def within(self, name: str, low: int, high: int, default=dataclasses.MISSING) -> int:
        value = self.get(name, int, default)
        if not low <= value <= high:
            raise self.error(name, f"must be from {low} to {high}, got {value!r}")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default=dataclasses.MISSING) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            raise self.error(name, f"= {value!r} is unknown; choose one of {', '.join(choices)}")
        return value

    def folder(self, value: str | os.PathLike) -> Path:
        value = Path(value)
        return value if value.is_absolute() else self.path.parent / value


def _kind_name(kind) -> str:
    names = {str: "a string", int: "an integer", float: "a number", dict: "a dict", tuple: "a tuple",
             bool: "True or False"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)


def read_settings(path: Path, what: str) -> dict:
    """The names a settings file defines (its upper-case ones), or ConfigError saying why it cannot be read."""
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    spec = importlib.util.spec_from_file_location(f"autograder_settings_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a syntax error or a failing expression in the file
        raise ConfigError(f"{path}: could not be read: {type(exc).__name__}: {exc}") from exc
    return {name: value for name, value in vars(module).items() if name.isupper()}


# Course settings an assignment's settings.py may override (setting name → how it is read); the rest stay
# course-wide (time zone, sandbox mode, folders).
OVERRIDABLE: dict[str, Callable[[SettingsFile], object]] = {
    "MISSING_TIMESTAMP": lambda s: s.choice("MISSING_TIMESTAMP", MISSING_TIMESTAMP_POLICIES),
    "DEVICE_POLICY": lambda s: s.choice("DEVICE_POLICY", DEVICE_POLICIES),
    "CELL_TIMEOUT_S": lambda s: s.positive("CELL_TIMEOUT_S"),
    "TRAINING_CELL_TIMEOUT_S": lambda s: s.positive("TRAINING_CELL_TIMEOUT_S"),
    "NOTEBOOK_TIMEOUT_S": lambda s: s.positive("NOTEBOOK_TIMEOUT_S"),
    "SEED": lambda s: s.get("SEED", int),
    "FUSED_FIT_STEPS": lambda s: s.positive("FUSED_FIT_STEPS"),
    "KERNEL_CPU_THREADS": lambda s: s.at_least_zero("KERNEL_CPU_THREADS"),
    "MEMORY_LIMIT_MB": lambda s: s.positive("MEMORY_LIMIT_MB"),
    "MAX_PROCESSES": lambda s: s.positive("MAX_PROCESSES"),
    "OUTPUT_LIMIT_KB": lambda s: s.positive("OUTPUT_LIMIT_KB"),
    "MAX_NOTEBOOK_MB": lambda s: s.positive("MAX_NOTEBOOK_MB"),
}


@dataclass(frozen=True)
class Config:
    timezone: ZoneInfo
    missing_timestamp: str                # what a submission without a usable time gets: "grade" or "reject"
    cell_timeout_s: int
    training_cell_timeout_s: int
    notebook_timeout_s: int
    seed: int
    fused_fit_steps: int                  # speed mode: training steps fused per call (1 = Keras's own loop)
    kernel_cpu_threads: int               # TensorFlow threads per kernel on the CPU (0 = TensorFlow's default)
    warm_kernels: int                     # kernels each grading process keeps warming ahead (run.warm; 0: cold)
    sandbox: str                          # auto | require | off
    memory_limit_mb: int                  # per kernel (with everything it starts)
    max_processes: int                    # tasks (processes and threads) per kernel
    output_limit_kb: int                  # output kept per cell
    max_notebook_mb: int                  # a larger submission file is not run
    device_policy: str
    data_dir: Path                        # the pinned datasets' files: DATA_DIR/<dataset>/
    exchange_dir: Path
    publish_dir: Path
    site_dir: Path                        # the submission site's data folder (serve --data overrides it)
    extensions_file: Path                 # per-student deadline extensions (course/extensions.py), JSON
    site_check_workers: int               # public checks the site runs at once
    site_check_time_limit_s: int          # a public check's whole notebook (and longest cell): not the grading's
    site_max_attempts: int                # uploads kept per student and assignment
    site_max_stored_mb: int               # MiB kept per student and assignment, all attempts together
    site_min_free_mb: int                 # free MiB the site's disk keeps: uploads are refused below it
    site_staff_idle_min: int              # a staff session unused this long ends
    kernels_per_gpu: int                  # cluster executors: kernels sharing one GPU (a Ray task asks for 1/K)
    slurm_partition: str                  # --executor slurm: the partition ('' = the cluster's default)
    slurm_gpus_per_task: int              # GPUs per array task (its chunk's kernels share them)
    slurm_array_parallelism: int          # array tasks running at once
    slurm_chunk_size: int                 # submissions per array task
    slurm_time_min: int                   # an array task's time limit
    root: Path                            # the folder holding grader_config.py; course paths hang off it
    source: Path
    chosen: Assignment | None = None      # the assignment these settings apply to (see assignment.config_for)

    @property
    def assignment(self) -> Assignment:
        if self.chosen is None:
            raise ConfigError("no assignment chosen: name one (--assignment ID, or the command's ID); "
                              "`python -m autograder list` shows the course's assignments")
        return self.chosen

    def dataset_folder(self, name: str) -> Path:
        """Where a pinned dataset's files are: DATA_DIR/<name>, or $AUTOGRADER_<NAME>_DIR."""
        return Path(os.environ.get(f"AUTOGRADER_{name.upper()}_DIR") or self.data_dir / name)


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read a grader_config.py (default: the project's, or $AUTOGRADER_CONFIG) and validate every setting."""
    path = Path(path or os.environ.get("AUTOGRADER_CONFIG") or DEFAULT_CONFIG_PATH).resolve()
    return _validate(SettingsFile(read_settings(path, "configuration file"), path))


def _validate(s: SettingsFile) -> Config:
    for name, why in RETIRED_SETTINGS.items():
        if name in s.values:
            raise s.error(name, f"is no longer read here: {why}; delete it")
    tz_name = s.get("TIMEZONE", str)
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise s.error("TIMEZONE", f"= {tz_name!r} is not a known time zone") from exc
    overridable = {name.lower(): read(s) for name, read in OVERRIDABLE.items()}
    return Config(
        timezone=tz,
        sandbox=s.choice("SANDBOX", SANDBOX_MODES),
        warm_kernels=s.within("WARM_KERNELS", 0, MAX_WARM_KERNELS, 1),
        data_dir=s.folder(s.get("DATA_DIR", str)),
        exchange_dir=s.folder(s.get("EXCHANGE_DIR", str)),
        publish_dir=s.folder(s.get("PUBLISH_DIR", str)),
        site_dir=s.folder(s.get("SITE_DIR", str, "site")),
        extensions_file=s.folder(s.get("EXTENSIONS_FILE", str, "extensions.json")),
        site_check_workers=s.positive("SITE_CHECK_WORKERS", int, 1),
        site_check_time_limit_s=s.positive("SITE_CHECK_TIME_LIMIT_S", int, 600),
        site_max_attempts=s.positive("SITE_MAX_ATTEMPTS", int, 30),
        site_max_stored_mb=s.positive("SITE_MAX_STORED_MB", int, 200),
        site_min_free_mb=s.at_least_zero("SITE_MIN_FREE_MB", 1024),
        site_staff_idle_min=s.positive("SITE_STAFF_IDLE_MIN", int, 120),
        kernels_per_gpu=s.positive("KERNELS_PER_GPU", int, 2),
        slurm_partition=s.get("SLURM_PARTITION", str, ""),
        slurm_gpus_per_task=s.at_least_zero("SLURM_GPUS_PER_TASK", 1),
        slurm_array_parallelism=s.positive("SLURM_ARRAY_PARALLELISM", int, 16),
        slurm_chunk_size=s.positive("SLURM_CHUNK_SIZE", int, 4),
        slurm_time_min=s.positive("SLURM_TIME_MIN", int, 120),
        root=s.path.parent,
        source=s.path,
        **overridable,
    )
