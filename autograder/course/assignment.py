"""An assignment is a folder: ``reference/<id>/`` with its reference notebook, ``settings.py``, hidden graders and
samples. This module finds the course's assignments and reads one's settings, validated like the course's.

Nothing here knows a particular assignment: copying ``reference/assignment4/`` to ``reference/assignment9/`` (and
renaming the notebook) gives a working assignment9.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from ..errors import ConfigError
from .clock import parse_deadline
from .config import OVERRIDABLE, Config, SettingsFile, read_settings
from .late_policy import PenaltySchedule, read_late_policy

SETTINGS_FILE = "settings.py"
EXPORT_KINDS = ("arrays", "model", "history", "numbers")
EXPECTED_VALUE_TYPES = (int, float, str, bool, tuple, list)
ASSIGNMENT_SETTINGS = ("TITLE", "DEADLINE", "LATE_POLICY", "DATASET", "EXPORTS", "RECOMPUTABLE", "TRAINING_CELLS",
                       "EXPECTED", "TRAINING_CURVE", "DEMO_SAMPLE")


@dataclass(frozen=True)
class Exports:
    """What the harness saves from the student's kernel after the last cell, by variable name."""
    arrays: tuple[str, ...] = ()      # numeric arrays, as .npy without pickles
    model: str | None = None          # a Keras model, as .keras
    history: str | None = None        # a Keras History (what fit returned), as JSON
    numbers: tuple[str, ...] = ()     # plain numbers (a score the notebook computed)


@dataclass(frozen=True)
class TrainingCurve:
    """The feedback page's training curves: loss and ``metric`` per epoch (training and validation), a line at
    ``threshold``, and a caption worded from ``check``'s verdict."""
    metric: str
    threshold: float | None = None
    check: str | None = None


@dataclass(frozen=True)
class Assignment:
    id: str
    title_ja: str
    title_en: str
    deadline: dt.datetime                 # timezone-aware
    late_policy: str                      # "reject": late work gets 0 points; "accept": graded anyway; "penalty"
    dataset: str | None                   # a name in autograder.course.dataset.DATASETS
    exports: Exports
    training_cells: tuple[str, ...]       # grade ids of the cells that train (they get the training budget)
    expected: dict                        # values the graders and their messages read: assignment.expected[...]
    training_curve: TrainingCurve | None
    demo_sample: str | None               # the wrong sample `demo` grades (a name in samples/, without .ipynb)
    folder: Path                          # reference/<id>/
    root: Path                            # the course folder (where assignments/ is)
    overrides: dict = field(default_factory=dict)   # course settings this assignment changes (Config field names)
    # exported arrays the graders rebuild from the dataset: name → function of the dataset (see RECOMPUTABLE)
    recomputable: Mapping[str, Callable] = field(default_factory=dict)
    late_penalty: PenaltySchedule | None = None     # late_policy "penalty": its schedule (late_policy.py)

    @property
    def title(self) -> tuple[str, str]:
        return self.title_ja, self.title_en

    @property
    def reference_notebook(self) -> Path:
        return self.folder / f"{self.id}.ipynb"

    @property
    def graders_dir(self) -> Path:
        """The hidden graders (test_*.py); each test declares its check, points and title."""
        return self.folder / "graders"

    @property
    def samples_dir(self) -> Path:
        return self.folder / "samples"

    @property
    def settings_path(self) -> Path:
        return self.folder / SETTINGS_FILE

    @property
    def release_notebook(self) -> Path:
        return self.root / "assignments" / self.id / f"{self.id}.ipynb"


def assignment_ids(config: Config) -> list[str]:
    """The course's assignments: the folders under reference/ that hold a settings.py, sorted."""
    reference = config.root / "reference"
    if not reference.is_dir():
        return []
    return sorted(p.parent.name for p in reference.glob(f"*/{SETTINGS_FILE}") if p.is_file())


def unknown_assignment(config: Config, assignment_id: str) -> ConfigError:
    known = assignment_ids(config)
    close = difflib.get_close_matches(assignment_id, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown assignment {assignment_id!r}: no {config.root / 'reference' / assignment_id / SETTINGS_FILE}"
                       f"{hint} (the course has: {', '.join(known) or 'none'})")


def load_assignment(config: Config, assignment_id: str) -> Assignment:
    """Read and validate reference/<id>/settings.py; ConfigError naming the file and the setting when wrong."""
    if not (isinstance(assignment_id, str) and assignment_id.isidentifier()):
        raise ConfigError(f"an assignment id is the name of its folder under reference/ (letters, digits, _), got "
                          f"{assignment_id!r}")
    folder = config.root / "reference" / assignment_id
    path = folder / SETTINGS_FILE
    if not path.is_file():
        raise unknown_assignment(config, assignment_id)
    s = SettingsFile(read_settings(path, "assignment settings"), path)
    unknown = sorted(set(s.values) - set(ASSIGNMENT_SETTINGS) - set(OVERRIDABLE))
    if unknown:
        known = list(ASSIGNMENT_SETTINGS) + list(OVERRIDABLE)
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise s.error(unknown[0], f"is unknown{hint}; an assignment sets {', '.join(ASSIGNMENT_SETTINGS)} and may "
                                  f"override the course's {', '.join(OVERRIDABLE)}")
    title = s.get("TITLE", tuple)
    if not (len(title) == 2 and all(isinstance(t, str) and t.strip() for t in title)):
        raise s.error("TITLE", f"must be a (Japanese, English) pair of non-empty strings, got {title!r}")
    deadline_text = s.get("DEADLINE", str)
    try:
        deadline = parse_deadline(deadline_text, config.timezone)
    except ValueError as exc:
        raise s.error("DEADLINE", f"= {deadline_text!r} cannot be parsed; write it as 'YYYY-MM-DD HH:MM' (local to "
                                  "the course's TIMEZONE) or ISO 8601 with an offset") from exc
    dataset = s.get("DATASET", str, None)
    if dataset is not None:
        from .dataset import DATASETS

        if dataset not in DATASETS:
            raise s.error("DATASET", f"= {dataset!r} is not a pinned dataset; choose one of {', '.join(DATASETS)}")
    exports = _exports(s)
    late_policy, late_penalty = _late_policy(s)
    return Assignment(
        id=assignment_id,
        title_ja=title[0].strip(),
        title_en=title[1].strip(),
        deadline=deadline,
        late_policy=late_policy,
        dataset=dataset,
        exports=exports,
        training_cells=_names(s, "TRAINING_CELLS", s.get("TRAINING_CELLS", tuple, ())),
        expected=_expected(s),
        training_curve=_training_curve(s),
        demo_sample=s.get("DEMO_SAMPLE", str, None),
        folder=folder,
        root=config.root,
        overrides={name.lower(): read(s) for name, read in OVERRIDABLE.items() if name in s.values},
        recomputable=_recomputable(s, exports, dataset),
        late_penalty=late_penalty,
    )


def config_for(config: Config, assignment_id: str) -> Config:
    """The course's settings as they apply to one assignment: its settings.py read and validated, its overrides of
    course defaults applied (``config.assignment`` is then that assignment)."""
    assignment = load_assignment(config, assignment_id)
    return dataclasses.replace(config, chosen=assignment, **assignment.overrides)


def _late_policy(s: SettingsFile) -> tuple[str, PenaltySchedule | None]:
    """LATE_POLICY: "reject", "accept" or a penalty schedule, refused whole when it does not parse."""
    value = s.get("LATE_POLICY", (str, dict))
    try:
        return read_late_policy(value)
    except ValueError as exc:
        raise ConfigError(f"{s.path}: LATE_POLICY を読めません (\"reject\"、\"accept\" または減点表 "
                          f"{{\"per_started_day\": 0.10, \"max_days\": 3}} と書いてください)。\n"
                          f"{s.error('LATE_POLICY', str(exc))}") from exc


def _names(s: SettingsFile, setting: str, names, what: str = "names") -> tuple[str, ...]:
    names = (names,) if isinstance(names, str) else names
    if not isinstance(names, (tuple, list)) or not all(isinstance(n, str) and n.isidentifier() for n in names):
        raise s.error(setting, f"must list {what} as plain identifiers, got {names!r}")
    if len(set(names)) != len(names):
        raise s.error(setting, f"names a variable twice: {names!r}")
    return tuple(names)


def _exports(s: SettingsFile) -> Exports:
    exports = s.get("EXPORTS", dict)
    unknown = sorted(set(exports) - set(EXPORT_KINDS))
    if unknown:
        raise s.error("EXPORTS", f"has unknown kinds {', '.join(map(repr, unknown))}; use {', '.join(EXPORT_KINDS)}")
    single = {}
    for kind in ("model", "history"):
        name = exports.get(kind)
        if name is not None and not (isinstance(name, str) and name.isidentifier()):
            raise s.error(f"EXPORTS[{kind!r}]", f"must be one variable name, got {name!r}")
        single[kind] = name
    return Exports(arrays=_names(s, "EXPORTS", exports.get("arrays", ()), "variable names"),
                   numbers=_names(s, "EXPORTS", exports.get("numbers", ()), "variable names"), **single)


def _recomputable(s: SettingsFile, exports: Exports, dataset: str | None) -> Mapping[str, Callable]:
    """RECOMPUTABLE: {array name: function(dataset) → the array a right answer holds}. The kernel writes no .npy
    for an array equal to it (only its digest), and the graders rebuild it from the dataset: the 376 MB x_train
    need not cross the disk twice per student."""
    recomputable = s.get("RECOMPUTABLE", dict, {})
    if recomputable and dataset is None:
        raise s.error("RECOMPUTABLE", "rebuilds arrays from the assignment's dataset, but no DATASET is set")
    for name, rebuild in recomputable.items():
        if name not in exports.arrays:
            raise s.error("RECOMPUTABLE", f"names {name!r}, which is not among EXPORTS['arrays'] "
                                          f"({', '.join(exports.arrays) or 'none'}): only an exported array can be "
                                          "rebuilt in its place")
        if not callable(rebuild):
            raise s.error(f"RECOMPUTABLE[{name!r}]", f"must be a function of the dataset (lambda data: …), got "
                                                     f"{rebuild!r}")
    return MappingProxyType(dict(recomputable))


def _expected(s: SettingsFile) -> dict:
    expected = s.get("EXPECTED", dict, {})
    for key, value in expected.items():
        if not (isinstance(key, str) and key.isidentifier()):
            raise s.error("EXPECTED", f"keys must be plain names, got {key!r}")
        if not isinstance(value, EXPECTED_VALUE_TYPES):
            raise s.error(f"EXPECTED[{key!r}]", f"must be a number, text or a tuple of them, got {value!r}")
    return dict(expected)


def _training_curve(s: SettingsFile) -> TrainingCurve | None:
    curve = s.get("TRAINING_CURVE", dict, None)
    if curve is None:
        return None
    unknown = sorted(set(curve) - {"metric", "threshold", "check"})
    if unknown or not isinstance(curve.get("metric"), str):
        raise s.error("TRAINING_CURVE", "must be a dict with 'metric' (a history name such as 'accuracy') and "
                                        f"optionally 'threshold' and 'check', got {curve!r}")
    threshold = curve.get("threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
        raise s.error("TRAINING_CURVE['threshold']", f"must be a number, got {threshold!r}")
    return TrainingCurve(curve["metric"], None if threshold is None else float(threshold), curve.get("check"))


# --- which assignment a submission is for --------------------------------------------------------------------
RELEASE_METADATA = "autograder"         # release writes {"assignment": id} under this key of the notebook's metadata


def named_by_notebook(path: Path) -> str | None:
    """The assignment id the released notebook carries in its metadata, if the file says one (None when it
    cannot be read: grading explains that later)."""
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        named = data["metadata"][RELEASE_METADATA]["assignment"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return named if isinstance(named, str) else None


def which_assignment(config: Config, path: Path, given: str | None = None) -> str:
    """The assignment a notebook is for: ``--assignment`` when given; else what its release metadata says; else
    the nearest folder above it named after one (the exchange's …/<assignment>/x.ipynb, a sample in
    reference/<assignment>/samples/) or its file name (<assignment>.ipynb); else the course's only assignment.
    ConfigError asking for --assignment when none of these tells."""
    known = assignment_ids(config)
    if given:
        if given not in known:
            raise unknown_assignment(config, given)
        return given
    path = Path(path)
    for candidate in (named_by_notebook(path), *(p.name for p in path.absolute().parents), path.stem):
        if candidate in known:
            return candidate
    if len(known) == 1:
        return known[0]
    raise ConfigError(f"cannot tell which assignment {path} is for (its metadata, folder and name do not say): "
                      f"add --assignment ID (one of {', '.join(known) or 'none'})")
