import dataclasses
import hashlib
import importlib
import shutil

import numpy as np
import pytest

from autograder.course import dataset
from autograder.course.dataset import DATASETS, load_mnist, verify
from autograder.errors import DatasetError

PINNED_SHA256 = DATASETS["mnist"].files


def test_pinned_mnist_is_the_real_mnist(mnist):
    assert (mnist.x_train.shape, mnist.y_train.shape) == ((60000, 28, 28), (60000,))
    assert (mnist.x_test.shape, mnist.y_test.shape) == ((10000, 28, 28), (10000,))
    assert {a.dtype for a in (mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test)} == {np.dtype(np.uint8)}
    assert mnist.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(mnist.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert round(float((mnist.x_train / 255).mean()), 5) == 0.13066


def test_shipped_checksum_file_matches_the_pinned_digests(config):
    listed = dict(reversed(line.split()) for line in (config.dataset_folder("mnist") / "SHA256SUMS").read_text().splitlines())
    assert listed == PINNED_SHA256


@pytest.fixture
def copy_of_mnist(config, tmp_path):
    target = tmp_path / "mnist"
    shutil.copytree(config.dataset_folder("mnist"), target)
    return target


def test_missing_file_names_the_file_digest_and_fix(copy_of_mnist):
    (copy_of_mnist / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError) as err:
        load_mnist(copy_of_mnist)
    message = str(err.value)
    assert "t10k-labels-idx1-ubyte.gz" in message
    assert PINNED_SHA256["t10k-labels-idx1-ubyte.gz"] in message
    assert "AUTOGRADER_MNIST_DIR" in message


def test_corrupted_file_is_refused_before_use(copy_of_mnist):
    path = copy_of_mnist / "train-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="corrupted: .*train-labels-idx1-ubyte.gz"):
        verify(copy_of_mnist)


def test_the_breast_cancer_data_is_scikit_learns_pinned_copy():
    from autograder.course.dataset import load_breast_cancer_pinned

    data = load_breast_cancer_pinned()
    assert data.data.shape == (569, 30) and data.target.shape == (569,)
    assert np.bincount(data.target).tolist() == [212, 357]            # 212 malignant (0), 357 benign (1)
    assert data.feature_names[0] == "mean radius"


def test_a_breast_cancer_file_that_differs_is_named_with_both_digests(monkeypatch):
    monkeypatch.setitem(DATASETS, "breast_cancer", dataclasses.replace(
        DATASETS["breast_cancer"], files={"breast_cancer.csv": "0" * 64}))
    with pytest.raises(DatasetError, match=r"breast_cancer file differs: .*breast_cancer\.csv has SHA-256 fed3eb72.*"
                                           r"expected 0{64}; install the scikit-learn pinned in requirements.txt"):
        dataset.load_breast_cancer_pinned()


def test_each_assignment_names_a_registered_dataset(config):
    from autograder.course.assignment import assignment_ids, config_for

    assert {config_for(config, i).assignment.dataset for i in assignment_ids(config)} <= set(DATASETS)


# --- the two sides of one declaration: the grader's arrays, the kernel's answer to the notebook's loader ---------

def kernel_side_pins() -> dict:
    """kernel_side's pins as the kernel gets them: its text run in a namespace of its own, as the harness runs it
    (it imports nothing at the top, so nothing of the grader's comes with it)."""
    from autograder.run.execute import KERNEL_SIDE

    namespace = {}
    exec(compile(KERNEL_SIDE.read_text(encoding="utf-8"), "<autograder>", "exec"), namespace)
    return namespace["PINS"]


def array_digests(kind, values) -> dict[str, str]:
    """field → SHA-256 of its shape, type and bytes; ``values``: what a loader returned, a (nested) tuple in the
    order of ``kind``'s fields (Keras) or an object with those names (scikit-learn's Bunch)."""
    def flat(value):
        return [v for item in value for v in flat(item)] if isinstance(value, tuple) else [value]

    names = [f.name for f in dataclasses.fields(kind)]
    got = dict(zip(names, flat(values))) if isinstance(values, tuple) else {n: getattr(values, n) for n in names}
    return {name: hashlib.sha256(repr((np.shape(v), np.asarray(v).dtype.str)).encode()
                                 + np.ascontiguousarray(v).tobytes()).hexdigest() for name, v in got.items()}


def disagreements(config, pinned, data, folder, pins) -> list[str]:
    """Where the kernel side and the grader's declaration of ``pinned`` disagree: a pin the kernel lacks, or a
    notebook loader, answered in the kernel's way, that returns other arrays than the graders get (by digest)."""
    config = dataclasses.replace(config, chosen=dataclasses.replace(config.assignment, dataset=pinned.name))
    written = dataset.kernel_files(config, data, folder)             # what the harness hands setup()
    if set(written) != ({pinned.kernel_pin} - {None}):
        return [f"{pinned.name}: the grader writes pins {sorted(written)}, declared {pinned.kernel_pin!r}"]
    missing = [f"{pinned.name}: kernel_side has no pin {name!r}" for name in written if name not in pins]
    if missing:
        return missing
    for name, path in written.items():
        pins[name](str(path))
    module, _, function = pinned.loader.rpartition(".")
    answered = array_digests(pinned.kind, getattr(importlib.import_module(module), function)())
    graded = array_digests(pinned.kind, data)
    return [f"{pinned.name}: {pinned.loader}() gives {field} with SHA-256 {answered[field][:12]}…, the graders "
            f"{graded[field][:12]}…" for field in graded if answered[field] != graded[field]]


@pytest.fixture
def keras_restored(monkeypatch):
    """A pin patches Keras's dataset module in this process as it does in the kernel: put it back afterwards."""
    keras_mnist = importlib.import_module("keras.src.datasets.mnist")
    monkeypatch.setattr(keras_mnist, "get_file", keras_mnist.get_file)


@pytest.fixture(scope="module")
def declared_data(config, mnist):
    """Each declared dataset's arrays as the graders get them (MNIST: the session's, loaded once)."""
    return {name: mnist if name == "mnist" else pinned.load(config) for name, pinned in DATASETS.items()}


def test_the_kernel_answers_each_declared_loader_with_the_arrays_the_graders_get(config, declared_data,
                                                                                 keras_restored, tmp_path):
    pins = kernel_side_pins()
    assert set(pins) == {p.kernel_pin for p in DATASETS.values() if p.kernel_pin}      # no pin nothing declares
    for name, pinned in DATASETS.items():
        assert disagreements(config, pinned, declared_data[name], tmp_path, dict(pins)) == []


def test_a_disagreement_between_the_two_sides_is_found(config, declared_data, keras_restored, tmp_path, monkeypatch):
    mnist = DATASETS["mnist"]

    def one_pixel_off(data, path):                     # the grader side hands the kernel other bytes than it grades
        x_train = data.x_train.copy()
        x_train[0, 0, 0] ^= 1
        return dataset.write_keras_npz(dataclasses.replace(data, x_train=x_train), path)

    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(mnist, write_kernel_file=one_pixel_off))
    found = disagreements(config, DATASETS["mnist"], declared_data["mnist"], tmp_path, kernel_side_pins())
    assert len(found) == 1 and found[0].startswith("mnist: keras.datasets.mnist.load_data() gives x_train with SHA-256")

    pins = {name: pin for name, pin in kernel_side_pins().items() if name != "mnist"}   # the kernel side lacks it
    assert disagreements(config, mnist, declared_data["mnist"], tmp_path, pins) == ["mnist: kernel_side has no pin 'mnist'"]
