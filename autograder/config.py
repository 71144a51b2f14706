"""Load and validate ``grader_config.py``: every other module reads settings from the ``Config`` made here."""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import PROJECT_ROOT
from .clock import parse_deadline
from .errors import ConfigError

LATE_POLICIES = ("reject", "accept")
MISSING_TIMESTAMP_POLICIES = ("grade", "reject")
SANDBOX_MODES = ("auto", "require", "off")
DEVICE_POLICIES = ("require-gpu", "allow-cpu")
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "grader_config.py"
RETIRED_SETTINGS = ("POINTS", "PUBLIC_CHECKS")   # now declared by each check (autograder.graders.check)


@dataclass(frozen=True)
class Config:
    assignment_id: str
    deadline: dt.datetime                 # timezone-aware
    timezone: ZoneInfo
    late_policy: str
    missing_timestamp: str                # what a submission without a usable time gets: "grade" or "reject"
    val_accuracy_threshold: float
    expected_epochs: int
    expected_batch_size: int
    expected_validation_split: float
    cell_timeout_s: int
    training_cell_timeout_s: int
    notebook_timeout_s: int
    seed: int
    fused_fit_steps: int                  # speed mode: training steps fused per call (1 = Keras's own loop)
    kernel_cpu_threads: int               # TensorFlow threads per kernel on the CPU (0 = TensorFlow's default)
    sandbox: str                          # auto | require | off
    memory_limit_mb: int                  # per kernel (with everything it starts)
    max_processes: int                    # tasks (processes and threads) per kernel
    output_limit_kb: int                  # output kept per cell
    max_notebook_mb: int                  # a larger submission file is not run
    device_policy: str
    dataset_dir: Path
    exchange_dir: Path
    publish_dir: Path
    root: Path                            # the folder holding grader_config.py; course paths hang off it
    source: Path

    @property
    def reference_notebook(self) -> Path:
        return self.root / "reference" / self.assignment_id / f"{self.assignment_id}.ipynb"

    @property
    def graders_dir(self) -> Path:
        """The assignment's hidden graders (test_*.py); each test declares its check, points and title."""
        return self.root / "reference" / self.assignment_id / "graders"

    @property
    def release_notebook(self) -> Path:
        return self.root / "assignments" / self.assignment_id / f"{self.assignment_id}.ipynb"

    @property
    def validation_samples(self) -> int:
        """Samples Keras holds out of the 60,000 with the expected validation_split (the last ones)."""
        return 60000 - int(60000 * (1 - self.expected_validation_split))

    @property
    def expected_steps_per_epoch(self) -> int:
        train = 60000 - self.validation_samples
        return -(-train // self.expected_batch_size)


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read a grader_config.py (default: the project's, or $AUTOGRADER_CONFIG) and validate every setting."""
    path = Path(path or os.environ.get("AUTOGRADER_CONFIG") or DEFAULT_CONFIG_PATH).resolve()
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    spec = importlib.util.spec_from_file_location("grader_config", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a syntax error or a failing expression in the course's file
        raise ConfigError(f"{path}: could not be read: {type(exc).__name__}: {exc}") from exc
    return _validate(vars(module), path)


def _get(values: dict, name: str, kind, path: Path):
    if name not in values:
        raise ConfigError(f"{path}: setting {name} is missing")
    value = values[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{path}: setting {name} must be {_kind_name(kind)}, got {value!r}")
    return value


def _kind_name(kind) -> str:
    names = {str: "a string", int: "an integer", float: "a number", dict: "a dict", tuple: "a tuple"}
    return names.get(kind, kind.__name__)


def _positive(values: dict, name: str, kind, path: Path):
    value = _get(values, name, kind, path)
    if value <= 0:
        raise ConfigError(f"{path}: setting {name} must be positive, got {value!r}")
    return value


def _at_least_zero(values: dict, name: str, path: Path) -> int:
    value = _get(values, name, int, path)
    if value < 0:
        raise ConfigError(f"{path}: setting {name} must be 0 or more, got {value!r}")
    return value


def _choice(values: dict, name: str, choices: tuple[str, ...], path: Path) -> str:
    value = _get(values, name, str, path)
    if value not in choices:
        raise ConfigError(f"{path}: setting {name} = {value!r} is unknown; choose one of {', '.join(choices)}")
    return value


def _validate(values: dict, path: Path) -> Config:
    tz_name = _get(values, "TIMEZONE", str, path)
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{path}: setting TIMEZONE = {tz_name!r} is not a known time zone") from exc

    deadline_text = _get(values, "DEADLINE", str, path)
    try:
        deadline = parse_deadline(deadline_text, tz)
    except ValueError as exc:
        raise ConfigError(
            f"{path}: setting DEADLINE = {deadline_text!r} cannot be parsed; "
            "write it as 'YYYY-MM-DD HH:MM' (local to TIMEZONE) or ISO 8601 with an offset") from exc

    threshold = _get(values, "VAL_ACCURACY_THRESHOLD", float, path)
    if not 0 < threshold <= 1:
        raise ConfigError(f"{path}: setting VAL_ACCURACY_THRESHOLD = {threshold!r} must lie in (0, 1]")
    split = _get(values, "EXPECTED_VALIDATION_SPLIT", float, path)
    if not 0 < split < 1:
        raise ConfigError(f"{path}: setting EXPECTED_VALIDATION_SPLIT = {split!r} must lie in (0, 1)")

    for name in RETIRED_SETTINGS:
        if name in values:
            raise ConfigError(f"{path}: setting {name} is no longer read: each check declares its points, title and "
                              "visibility where it is written, @check(id, points=…, title=…, public=…) in "
                              "reference/<assignment>/graders/; delete the setting")

    assignment_id = _get(values, "ASSIGNMENT_ID", str, path)
    if not assignment_id.isidentifier():
        raise ConfigError(f"{path}: setting ASSIGNMENT_ID = {assignment_id!r} must be a plain name like 'assignment3'")

    def folder(value: str | os.PathLike) -> Path:
        value = Path(value)
        return value if value.is_absolute() else path.parent / value

    return Config(
        assignment_id=assignment_id,
        deadline=deadline,
        timezone=tz,
        late_policy=_choice(values, "LATE_POLICY", LATE_POLICIES, path),
        missing_timestamp=_choice(values, "MISSING_TIMESTAMP", MISSING_TIMESTAMP_POLICIES, path),
        val_accuracy_threshold=threshold,
        expected_epochs=_positive(values, "EXPECTED_EPOCHS", int, path),
        expected_batch_size=_positive(values, "EXPECTED_BATCH_SIZE", int, path),
        expected_validation_split=split,
        cell_timeout_s=_positive(values, "CELL_TIMEOUT_S", int, path),
        training_cell_timeout_s=_positive(values, "TRAINING_CELL_TIMEOUT_S", int, path),
        notebook_timeout_s=_positive(values, "NOTEBOOK_TIMEOUT_S", int, path),
        seed=_get(values, "SEED", int, path),
        fused_fit_steps=_positive(values, "FUSED_FIT_STEPS", int, path),
        kernel_cpu_threads=_at_least_zero(values, "KERNEL_CPU_THREADS", path),
        sandbox=_choice(values, "SANDBOX", SANDBOX_MODES, path),
        memory_limit_mb=_positive(values, "MEMORY_LIMIT_MB", int, path),
        max_processes=_positive(values, "MAX_PROCESSES", int, path),
        output_limit_kb=_positive(values, "OUTPUT_LIMIT_KB", int, path),
        max_notebook_mb=_positive(values, "MAX_NOTEBOOK_MB", int, path),
        device_policy=_choice(values, "DEVICE_POLICY", DEVICE_POLICIES, path),
        dataset_dir=folder(os.environ.get("AUTOGRADER_MNIST_DIR") or _get(values, "DATASET_DIR", str, path)),
        exchange_dir=folder(_get(values, "EXCHANGE_DIR", str, path)),
        publish_dir=folder(_get(values, "PUBLISH_DIR", str, path)),
        root=path.parent,
        source=path,
    )
