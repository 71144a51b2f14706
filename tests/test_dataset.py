import shutil

import numpy as np
import pytest

from autograder.dataset import PINNED_SHA256, load_mnist, verify
from autograder.errors import DatasetError


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
    from autograder.dataset import load_breast_cancer_pinned

    data = load_breast_cancer_pinned()
    assert data.data.shape == (569, 30) and data.target.shape == (569,)
    assert np.bincount(data.target).tolist() == [212, 357]            # 212 malignant (0), 357 benign (1)
    assert data.feature_names[0] == "mean radius"


def test_a_breast_cancer_file_that_differs_is_named_with_both_digests(monkeypatch):
    import autograder.dataset as dataset

    monkeypatch.setattr(dataset, "BREAST_CANCER_SHA256", "0" * 64)
    with pytest.raises(DatasetError, match=r"breast_cancer file differs: .*breast_cancer\.csv has SHA-256 fed3eb72.*"
                                           r"expected 0{64}; install the scikit-learn pinned in requirements.txt"):
        dataset.load_breast_cancer_pinned()


def test_each_assignment_names_a_registered_dataset(config):
    from autograder.assignment import assignment_ids, config_for
    from autograder.dataset import DATASETS

    assert {config_for(config, i).assignment.dataset for i in assignment_ids(config)} <= set(DATASETS)
