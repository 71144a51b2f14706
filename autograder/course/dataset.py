"""The course's named, pinned datasets, each declared once (``PinnedDataset``): its files and their SHA-256
digests, the arrays it gives the graders, the notebook's own loader and how the kernel answers that offline.

An assignment names its dataset in settings.py (``DATASET = "mnist"``). Both sides take what they need from the
one declaration: the grader verifies the declared files before use (a mismatch stops with the file's name) and
reads the arrays; the kernel gets, for the declaration's ``kernel_pin``, the file the grader wrote from those
verified arrays (``kernel_files``), and kernel_side's pin of that name answers the loader with it. kernel_side.py
runs as text in the student's kernel and imports nothing from here: what it needs reaches it as the harness's
arguments, and tests/test_dataset.py holds its pins to these declarations.

- ``mnist``: the IDX gzip files shipped in DATA_DIR/mnist. ``write_keras_npz`` turns them into the ``mnist.npz``
  that ``keras.datasets.mnist`` reads, which is how a student's unchanged ``mnist.load_data()`` gets exactly these
  arrays with no network (kernel_side's ``pin_mnist``).
- ``breast_cancer``: the Wisconsin data inside scikit-learn (``load_breast_cancer`` reads the CSV shipped in the
  package, offline); the installed file is held to its digest, and the kernel needs no pin.

The digests are pinned here, not read from a folder, so a copy elsewhere ($AUTOGRADER_MNIST_DIR) is held to the
same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

from ..errors import DatasetError

if TYPE_CHECKING:
    from .config import Config

_IDX_MAGIC = {2051: 3, 2049: 1}  # images: 3 dimensions; labels: 1
FIX_HINT = ("restore the project's copy with `git checkout -- data/mnist`, or point AUTOGRADER_MNIST_DIR "
            "(or DATA_DIR in grader_config.py) at a folder holding the original MNIST IDX .gz files")


@dataclass(frozen=True)
class Mnist:
    x_train: np.ndarray  # (60000, 28, 28) uint8
    y_train: np.ndarray  # (60000,) uint8
    x_test: np.ndarray   # (10000, 28, 28) uint8
    y_test: np.ndarray   # (10000,) uint8


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(directory: Path) -> None:
    """Raise DatasetError naming the first missing or altered MNIST file, its expected digest and the fix."""
    directory = Path(directory)
    for name, expected in DATASETS["mnist"].files.items():
        path = directory / name
        if not path.is_file():
            raise DatasetError(f"MNIST file missing: {path} (expected SHA-256 {expected}); {FIX_HINT}")
        found = sha256_of(path)
        if found != expected:
            raise DatasetError(f"MNIST file corrupted: {path} has SHA-256 {found}, expected {expected}; {FIX_HINT}")


def read_idx(path: Path) -> np.ndarray:
    """Read one gzip IDX file (unsigned bytes) into a NumPy array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[0:4], "big")
    if magic not in _IDX_MAGIC:
        raise DatasetError(f"{path}: not an IDX file of unsigned bytes (magic number {magic})")
    ndim = _IDX_MAGIC[magic]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DatasetError(f"{path}: header says {shape} but holds {data.size} bytes")
    return data.reshape(shape).copy()


def load_mnist(directory: Path) -> Mnist:
    """Verify, then read the four files: the same arrays as ``keras.datasets.mnist.load_data()``."""
    directory = Path(directory)
    verify(directory)
    return Mnist(
        x_train=read_idx(directory / "train-images-idx3-ubyte.gz"),
        y_train=read_idx(directory / "train-labels-idx1-ubyte.gz"),
        x_test=read_idx(directory / "t10k-images-idx3-ubyte.gz"),
        y_test=read_idx(directory / "t10k-labels-idx1-ubyte.gz"),
    )


def write_keras_npz(mnist: Mnist, path: Path) -> Path:
    """Write the arrays in the layout of Keras's ``mnist.npz`` (keys x_train, y_train, x_test, y_test)."""
    path = Path(path)
    np.savez(path, x_train=mnist.x_train, y_train=mnist.y_train, x_test=mnist.x_test, y_test=mnist.y_test)
    return path


# --- scikit-learn's breast cancer data ---------------------------------------------------------------------------
BREAST_CANCER_CSV = "breast_cancer.csv"        # in sklearn/datasets/data/, what load_breast_cancer reads


@dataclass(frozen=True)
class BreastCancer:
    data: np.ndarray                 # (569, 30) float64, the features as load_breast_cancer gives them
    target: np.ndarray               # (569,) int64: 0 = malignant, 1 = benign (scikit-learn's coding)
    feature_names: tuple[str, ...]


def load_breast_cancer_pinned() -> BreastCancer:
    """scikit-learn's copy of the Wisconsin data, held to its pinned digest (a different scikit-learn could ship
    other bytes: the students' notebooks would then see other data than the graders expect)."""
    try:
        import sklearn.datasets
    except ImportError as exc:
        raise DatasetError("the breast_cancer dataset comes with scikit-learn, which is not installed: "
                           "pip install -r requirements.txt") from exc
    path = Path(sklearn.datasets.__file__).parent / "data" / BREAST_CANCER_CSV
    expected = DATASETS["breast_cancer"].files[BREAST_CANCER_CSV]
    if not path.is_file():
        raise DatasetError(f"breast_cancer file missing: {path} (expected SHA-256 {expected}); "
                           "reinstall the pinned scikit-learn: pip install -r requirements.txt")
    found = sha256_of(path)
    if found != expected:
        raise DatasetError(f"breast_cancer file differs: {path} has SHA-256 {found}, expected "
                           f"{expected}; install the scikit-learn pinned in requirements.txt")
    bunch = sklearn.datasets.load_breast_cancer()
    return BreastCancer(np.asarray(bunch.data), np.asarray(bunch.target), tuple(bunch.feature_names))


# --- the registry: each dataset declared once ---------------------------------------------------------------

@dataclass(frozen=True)
class PinnedDataset:
    """One dataset, all that the grader and the kernel need to know of it."""
    name: str
    files: Mapping[str, str]                  # its files → their SHA-256: the bytes the course holds it to
    kind: type                                # the dataclass of arrays the graders get (their ``dataset`` fixture)
    load: Callable[["Config"], object]        # ``files`` verified, then read into ``kind``
    loader: str                               # the notebook's own call, answered offline in the kernel
    kernel_pin: str | None = None             # kernel_side's pin that answers ``loader`` with ``kernel_file``
                                              # (None: the library reads ``files`` itself, offline)
    kernel_file: str | None = None            # written for the kernel from the verified arrays (read-only there)
    write_kernel_file: Callable[[object, Path], Path] | None = None


DATASETS = {declared.name: declared for declared in (
    PinnedDataset(
        "mnist",
        files=MappingProxyType({       # the gzip IDX files (data/mnist/SHA256SUMS lists the same digests)
            "train-images-idx3-ubyte.gz": "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
            "train-labels-idx1-ubyte.gz": "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
            "t10k-images-idx3-ubyte.gz": "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
            "t10k-labels-idx1-ubyte.gz": "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
        }),
        kind=Mnist,
        load=lambda config: load_mnist(config.dataset_folder("mnist")),
        loader="keras.datasets.mnist.load_data",
        kernel_pin="mnist", kernel_file="mnist.npz", write_kernel_file=write_keras_npz),
    PinnedDataset(
        "breast_cancer",
        files=MappingProxyType({BREAST_CANCER_CSV: "fed3eb72d0575ef6192293f5093c6e801b1476b577d0386bf4455504522172ed"}),
        kind=BreastCancer,
        load=lambda config: load_breast_cancer_pinned(),
        loader="sklearn.datasets.load_breast_cancer"),
)}


def declared(config: "Config") -> PinnedDataset | None:
    """The chosen assignment's dataset declaration (None for an assignment with no dataset)."""
    name = config.assignment.dataset
    return DATASETS[name] if name else None


def load_dataset(config: "Config"):
    """The arrays of the chosen assignment's dataset, verified (None for an assignment with no dataset)."""
    pinned = declared(config)
    return pinned.load(config) if pinned else None


def for_assignment(config: "Config", data=None):
    """The assignment's dataset: ``data`` when the caller already holds it (a batch, a worker or the demo loads it
    once for many notebooks), else loaded and verified now. Each layer that takes an optional dataset asks here."""
    return data if data is not None else load_dataset(config)


class LazyDataset:
    """The assignment's verified dataset, read on first use (a worker that only ever dies need not spend a second
    on it): from the batch's snapshot of what it verified, when there is one."""

    def __init__(self, config: "Config", snapshot: str | Path | None = None):
        self._config, self._snapshot, self._loaded = config, snapshot, None

    def __getattr__(self, name):            # only names this object lacks: the dataset's own (data, target, …)
        if name.startswith("_"):
            raise AttributeError(name)
        if self._loaded is None:
            self._loaded = (from_snapshot(self._config, Path(self._snapshot)) if self._snapshot
                            else load_dataset(self._config))
        return getattr(self._loaded, name)


def kernel_files(config: "Config", data, folder: Path) -> dict[str, Path]:
    """The files the kernel needs to answer its loader offline, written under ``folder`` from ``data`` (loaded
    and verified here when not given): kernel pin → path, the ``pins`` of kernel_side's ``setup``."""
    pinned = declared(config)
    if not (pinned and pinned.kernel_pin):
        return {}
    path = Path(folder) / pinned.kernel_file
    return {pinned.kernel_pin: pinned.write_kernel_file(for_assignment(config, data), path)}


# --- arrays the graders rebuild from the dataset (an assignment's RECOMPUTABLE) ----------------------------------

def array_digest(array) -> dict:
    """An array's SHA-256 over its C-contiguous bytes, with its shape and dtype: exactly what kernel_side's
    ``export`` records of a student's array (tests/test_exports.py holds the two to each other)."""
    array = np.asarray(array)
    return {"sha256": hashlib.sha256(np.ascontiguousarray(array).data).hexdigest(), "shape": list(array.shape),
            "dtype": str(array.dtype)}


_EXPECTED_DIGESTS: dict[tuple, dict[str, dict]] = {}


def expected_digests(config: "Config", data=None) -> dict[str, dict]:
    """name → ``array_digest`` of each array the assignment's RECOMPUTABLE rebuilds from its dataset (``data``,
    loaded when not given and needed): what the kernel's export compares the student's arrays with. Computed once
    per process for the same settings.py and functions (their code: each load of the file makes new ones): the
    dataset is pinned, so the digests do not change between students."""
    assignment = config.assignment
    if not assignment.recomputable:
        return {}
    key = (sha256_of(assignment.settings_path), assignment.dataset,
           tuple((name, getattr(rebuild, "__code__", rebuild)) for name, rebuild in assignment.recomputable.items()))
    if key not in _EXPECTED_DIGESTS:
        data = for_assignment(config, data)
        _EXPECTED_DIGESTS[key] = {name: array_digest(rebuild(data))
                                  for name, rebuild in assignment.recomputable.items()}
    return _EXPECTED_DIGESTS[key]


def snapshot(data, folder: Path) -> Path:
    """The verified dataset saved as plain .npy files (and JSON for anything else), for a batch's workers to read
    in milliseconds instead of decompressing and verifying the pinned files each again."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    others = {}
    for item in fields(data):
        value = getattr(data, item.name)
        if isinstance(value, np.ndarray):
            np.save(folder / f"{item.name}.npy", value, allow_pickle=False)
        else:
            others[item.name] = value
    (folder / "fields.json").write_text(json.dumps(others), encoding="utf-8")
    return folder


def from_snapshot(config: "Config", folder: Path):
    """The dataset a ``snapshot`` holds, as ``load_dataset`` gives it."""
    folder = Path(folder)
    others = json.loads((folder / "fields.json").read_text(encoding="utf-8"))
    values = {item.name: np.load(folder / f"{item.name}.npy", allow_pickle=False) if item.name not in others
              else tuple(others[item.name]) if isinstance(others[item.name], list) else others[item.name]
              for item in fields(declared(config).kind)}
    return declared(config).kind(**values)
