"""Fixtures for the hidden graders: the student's exported data, reloaded and re-read on the grader's side.

A pytest plugin module (``run_graders`` passes it to pytest), so that every assignment's graders folder gets these
fixtures without a conftest of its own: ``student`` (the exported variables), ``model`` / ``saved_model`` /
``predict`` (the exported Keras model); the plugin adds ``assignment``, ``dataset``, ``config`` and ``artifacts``. Nothing here calls the student's code. Arrays are read from .npy files (no
pickles), or rebuilt from the dataset where the kernel found them equal to the course's own (RECOMPUTABLE); the
model is rebuilt from its .keras file with Keras's safe mode; the training history is plain JSON.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from autograder.course.assignment import Assignment
from autograder.course.dataset import expected_digests
from autograder.grading.graders.support import fail

# Functions of tf.nn that students may pass as activations: they save under these names but do not load back
# ("Could not locate function 'softmax_v2'"). Mapping them to Keras's own activations reloads such a model
# faithfully: the two compute the same function.
TF_ACTIVATION_ALIASES = ("softmax_v2", "softmax", "relu", "sigmoid", "tanh", "elu", "selu", "softplus", "swish")


@dataclass
class Student:
    """What the student's kernel exported (the variables the assignment's EXPORTS names), read back safely.
    ``expected``: name → the digest of the array the course's own code gives (``dataset.expected_digests``);
    ``data``: the dataset it is rebuilt from."""
    artifacts: Path
    record: dict
    assignment: Assignment
    expected: dict = field(default_factory=dict)
    data: object = None
    _rebuilt: dict = field(default_factory=dict, repr=False)

    @property
    def exports(self):
        return self.assignment.exports

    def array(self, name: str) -> np.ndarray:
        entry = self.record.get("arrays", {}).get(name)
        path = self.artifacts / f"{name}.npy"
        if not (isinstance(entry, dict) and entry.get("defined")):
            fail(f"変数 {name} が見つかりませんでした。課題のセルで {name} を作ってください。",
                 f"Variable {name} was not found. Define {name} in the assignment's cells.")
        if self.is_course_array(name):
            return self.course_array(name)
        if not path.is_file():
            reason = entry.get("error", "")
            fail(f"変数 {name} を数値の配列として読み取れませんでした ({entry.get('type', '?')}: {reason})。",
                 f"Variable {name} could not be read as a numeric array ({entry.get('type', '?')}: {reason}).")
        return np.load(path, mmap_mode="r", allow_pickle=False)

    def number(self, name: str) -> float:
        entry = self.record.get("numbers", {}).get(name, {"defined": False})
        if not entry.get("defined"):
            fail(f"変数 {name} が見つかりませんでした。課題のセルで {name} を計算してください。",
                 f"Variable {name} was not found. Compute {name} in the assignment's cells.")
        value = entry.get("value")
        if isinstance(value, str):                 # NaN or an infinity, kept as text
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            reason = entry.get("error", "")
            fail(f"変数 {name} を 1 つの数値として読み取れませんでした ({entry.get('type', '?')}: {reason})。",
                 f"Variable {name} could not be read as one number ({entry.get('type', '?')}: {reason}).")
        return float(value)

    def defined_arrays(self) -> set[str]:
        """Names of the arrays the kernel exported (as .npy, or as equal to the course's own)."""
        return {name for name, entry in self.record.get("arrays", {}).items()
                if isinstance(entry, dict) and entry.get("defined")
                and (self.is_course_array(name) or (self.artifacts / f"{name}.npy").is_file())}

    def is_course_array(self, name: str) -> bool:
        """Whether the kernel recorded ``name`` as equal to the array the graders rebuild (no .npy written): its
        digest, shape and dtype are those the grader computed itself. The record is the student's process's word;
        a false claim only puts the course's own correct array in place of the student's (see kernel_side's
        ``export``). A run stored before RECOMPUTABLE (its .npy kept) has no claim and is read from its file."""
        entry, course = self.record.get("arrays", {}).get(name), self.expected.get(name)
        return (isinstance(entry, dict) and entry.get("expected") is True and course is not None
                and all(entry.get(key) == course[key] for key in ("sha256", "shape", "dtype")))

    def course_array(self, name: str) -> np.ndarray:
        """The array the assignment's RECOMPUTABLE builds from the dataset, once per grading, read-only as a
        loaded .npy is."""
        if name not in self._rebuilt:
            array = np.asarray(self.assignment.recomputable[name](self.data)).view()   # the dataset's own stays
            array.setflags(write=False)
            self._rebuilt[name] = array
        return self._rebuilt[name]

    def history(self) -> tuple[dict, dict]:
        entry = self.record.get("history", {})
        name, model = self.exports.history, self.exports.model or "model"
        if not entry.get("defined"):
            fail(f"変数 {name} が見つかりませんでした。{name} = {model}.fit(...) で学習の記録を受け取ってください。",
                 f"Variable {name} was not found. Keep the training record: {name} = {model}.fit(...).")
        if "history" not in entry:
            fail(f"{name} から学習の記録 (history) を読み取れませんでした ({entry.get('error', entry.get('type'))})。",
                 f"No training history could be read from {name} ({entry.get('error', entry.get('type'))}).")
        history, params = entry["history"], entry.get("params", {})
        if not isinstance(history, dict) or not isinstance(params, dict) or not all(
                isinstance(v, list) for v in history.values()):
            fail(f"{name} の学習の記録 (history) が Keras の形式ではありません。",
                 f"The training record in {name} (history) is not in Keras's form.")
        return history, params


@dataclass
class SavedModel:
    """What the .keras archive says beyond the layers: compile settings and how many updates were applied."""
    compile_config: dict | None
    optimizer_iterations: int | None


@pytest.fixture(scope="session")
def student(artifacts, config, dataset) -> Student:
    try:
        record = json.loads((artifacts / "kernel_record.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}                              # nothing exported: every variable reads as not defined
    record = record if isinstance(record, dict) else {}
    record = {key: value if isinstance(value, dict) else {} for key, value in record.items()}
    return Student(artifacts, record, config.assignment, expected_digests(config, dataset), dataset)


@pytest.fixture(scope="session")
def model_path(artifacts, student) -> Path:
    path = artifacts / "model.keras"
    entry = student.record.get("model", {})
    name = student.exports.model or "model"
    if not entry.get("defined"):
        fail(f"変数 {name} が見つかりませんでした。{name} = Sequential() などでモデルを作ってください。",
             f"Variable {name} was not found. Build your model into a variable named {name}.")
    if not path.is_file():
        fail(f"{name} を保存できませんでした ({entry.get('type')}: {entry.get('error', '')})。Keras のモデルですか？",
             f"{name} could not be saved ({entry.get('type')}: {entry.get('error', '')}). Is it a Keras model?")
    return path


@pytest.fixture(scope="session")
def model(model_path):
    import keras

    aliases = {name: getattr(keras.activations, name.removesuffix("_v2")) for name in TF_ACTIVATION_ALIASES}
    try:
        return keras.saving.load_model(model_path, compile=False, safe_mode=True, custom_objects=aliases)
    except Exception as exc:
        fail(f"保存された model を読み込めませんでした ({type(exc).__name__}: {str(exc)[:300]})。",
             f"The saved model could not be loaded ({type(exc).__name__}: {str(exc)[:300]}).")


@pytest.fixture(scope="session")
def saved_model(model_path) -> SavedModel:
    import h5py

    try:
        with zipfile.ZipFile(model_path) as archive:
            config = json.loads(archive.read("config.json"))
            iterations = None
            with archive.open("model.weights.h5") as weights, h5py.File(weights, "r") as h5:
                # Keras keeps the optimizer's step counter as its first variable.
                if "optimizer/vars/0" in h5 and h5["optimizer/vars/0"].shape == ():
                    iterations = int(h5["optimizer/vars/0"][()])
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:   # written by the student's process
        fail(f"保存された model のファイルを読めませんでした ({type(exc).__name__}: {str(exc)[:200]})。",
             f"The saved model's file could not be read ({type(exc).__name__}: {str(exc)[:200]}).")
    compile_config = config.get("compile_config") if isinstance(config, dict) else None
    return SavedModel(compile_config if isinstance(compile_config, dict) else None, iterations)


PREDICT_BATCH = 1000


@pytest.fixture(scope="session")
def predict(model):
    """The grader's own prediction with the reloaded model (float32, batches of 1000, silent). Batch by batch
    through ``predict_on_batch``: the same traced step on the same batches as ``model.predict``, so the same
    numbers bit for bit, without building a tf.data pipeline per call (~0.1 s each)."""
    def run(x) -> np.ndarray:
        try:
            x = np.asarray(x, dtype=np.float32)
            batches = [np.asarray(model.predict_on_batch(x[i:i + PREDICT_BATCH]))
                       for i in range(0, len(x), PREDICT_BATCH)]
            return np.concatenate(batches) if batches else np.asarray(model.predict(x, verbose=0))
        except Exception as exc:
            fail(f"model に入力を渡して予測できませんでした ({type(exc).__name__}: {str(exc)[:200]})。",
                 f"The model could not predict on the input ({type(exc).__name__}: {str(exc)[:200]}).")
    return run
