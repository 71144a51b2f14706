"""Benchmark (not a test): what a run's export and the graders' reading of the arrays cost, for assignment3's
reference arrays, with and without RECOMPUTABLE.

The lecture's x_train, x_test (float64, divided by 255), y_train, y_test (one-hot) and a test2 of the right shape
are exported by kernel_side's ``export`` (as the kernel runs it, in this process: no kernel, no training), kept in
a run store as a batch keeps them, and read back as the graders read them: ``student.array`` and the reshape
check's comparison for x_train and x_test, the validation rows of x_train for val_accuracy. Once as before (every
array written) and once with the expected digests (the course's x_train and x_test not written, rebuilt from the
dataset). Reported: the median of each step over the rounds, the bytes written, and the one-time cost per process
of the expected digests. With --kernel, also the harness's export cell in a real (sandboxed) kernel, after a cell
that builds the same arrays, timed by nbclient's own cell timestamps.

Usage: python bench/exports.py [--rounds N] [--kernel]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autograder.course import dataset  # noqa: E402
from autograder.course.assignment import config_for  # noqa: E402
from autograder.course.config import load_config  # noqa: E402
from autograder.grading.graders.fixtures import Student  # noqa: E402
from autograder.grading.store import RunStore  # noqa: E402
from autograder.run.execute import KERNEL_SIDE  # noqa: E402

ARRAYS = ("x_train", "x_test", "y_train", "y_test", "test2")


def graders_module(config):
    path = config.assignment.graders_dir / "test_assignment3.py"
    spec = importlib.util.spec_from_file_location("bench_graders", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lecture_namespace(data) -> dict:
    rng = np.random.default_rng(0)
    return {"x_train": data.x_train.reshape(60000, 784) / 255, "x_test": data.x_test.reshape(10000, 784) / 255,
            "y_train": np.eye(10, dtype=np.float32)[data.y_train], "y_test": np.eye(10, dtype=np.float32)[data.y_test],
            "test2": rng.random((10000, 10), dtype=np.float32)}


def one_round(config, data, namespace, expected, graders, folder: Path) -> dict:
    export = {}
    exec(compile(KERNEL_SIDE.read_text(encoding="utf-8"), "<autograder>", "exec"), export)  # noqa: S102
    artifacts = folder / "artifacts"
    artifacts.mkdir(parents=True)
    took = {}
    started = time.perf_counter()
    export["export"](namespace, str(artifacts), {"arrays": ARRAYS}, expected)
    took["export"] = time.perf_counter() - started
    took["bytes"] = sum(p.stat().st_size for p in artifacts.glob("*.npy"))

    store = RunStore(folder / "store")
    started = time.perf_counter()
    store.keep({p.name: p for p in artifacts.glob("*")}, "a" * 64, {})
    took["store"] = time.perf_counter() - started

    record = json.loads((artifacts / "kernel_record.json").read_text(encoding="utf-8"))
    took["graders"] = graders_read(config, data, record, artifacts, expected, graders)
    for path in artifacts.glob("*.npy"):                 # as a regrade days later finds them: on disk, not in memory
        evict(path)
    took["graders, cold"] = graders_read(config, data, record, artifacts, expected, graders)
    return took


def graders_read(config, data, record, artifacts, expected, graders) -> float:
    """What the graders do with the arrays that RECOMPUTABLE concerns: reshape's comparison, val_accuracy's rows."""
    started = time.perf_counter()
    student = Student(artifacts, record, config.assignment, dataset.expected_digests(config, data) if expected else {},
                      data)
    for name, images in (("x_train", data.x_train), ("x_test", data.x_test)):
        assert graders.scaled_images_match(student.array(name), images) == "exact"
    validation = np.asarray(student.array("x_train")[-12000:], dtype=np.float32)
    assert validation.shape == (12000, 784)
    return time.perf_counter() - started


def evict(path: Path) -> None:
    """Drop a file's pages from the page cache (written out first): its next read comes from the disk."""
    import os

    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


KERNEL_CELL = """
import numpy as np
from tensorflow.keras.datasets import mnist
(x_train, y_train), (x_test, y_test) = mnist.load_data()
x_train = x_train.reshape(60000, 784) / 255
x_test = x_test.reshape(10000, 784) / 255
y_train, y_test = np.eye(10, dtype=np.float32)[y_train], np.eye(10, dtype=np.float32)[y_test]
test2 = np.random.default_rng(0).random((10000, 10), dtype=np.float32)
"""


def kernel_export_seconds(config, data, expected) -> float:
    """The export cell's time in a real kernel: nbclient's timestamps of the last (harness) cell."""
    import datetime as dt

    import nbformat

    from autograder.run import execute

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(KERNEL_CELL)])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    kept = execute.without_harness
    execute.without_harness = lambda executed: executed           # keep the harness's cells and their timing
    try:
        with tempfile.TemporaryDirectory(prefix="bench-exports-kernel-") as tmp:
            executed = Path(tmp) / "executed.ipynb"
            record = execute.execute(nb, Path(tmp) / "artifacts", config, "cpu", data, executed_out=executed,
                                     expected=expected)
            assert record.export_ok and not record.cell_errors, record
            timing = nbformat.read(executed, as_version=4).cells[-1].metadata.execution
    finally:
        execute.without_harness = kept
    started, ended = (dt.datetime.fromisoformat(timing[k].replace("Z", "+00:00"))
                      for k in ("iopub.execute_input", "shell.execute_reply"))
    return (ended - started).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kernel", action="store_true", help="also time the export cell in a real kernel")
    args = parser.parse_args()
    rounds = args.rounds
    config = config_for(load_config(), "assignment3")
    data = dataset.load_dataset(config)
    started = time.perf_counter()
    expected = dataset.expected_digests(config, data)
    once = time.perf_counter() - started
    namespace, graders = lecture_namespace(data), graders_module(config)
    results = {"before": [], "recomputable": []}
    for _ in range(rounds):
        for how, digests in (("before", None), ("recomputable", expected)):
            with tempfile.TemporaryDirectory(prefix="bench-exports-") as tmp:
                results[how].append(one_round(config, data, namespace, digests, graders, Path(tmp)))
                shutil.rmtree(tmp, ignore_errors=True)
    print(f"expected digests, once per process: {once:.2f} s")
    steps = ("export", "store", "graders", "graders, cold")
    print(f"{'':14}" + "".join(f"{k:>15}" for k in steps) + f"{'total':>15}{'written':>12}")
    for how, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in steps}
        total = med["export"] + med["store"] + med["graders"]
        print(f"{how:14}" + "".join(f"{med[k]:14.2f}s" for k in steps) + f"{total:14.2f}s"
              f"{runs[0]['bytes'] / 1e6:9.1f} MB")
    print("(total: export + store + graders reading a fresh run; 'graders, cold': reading a stored run from the disk)")
    if args.kernel:
        cells = {"before": [], "recomputable": []}
        for _ in range(rounds):
            for how, digests in (("before", None), ("recomputable", expected)):
                cells[how].append(kernel_export_seconds(config, data, digests))
        for how, seconds in cells.items():
            print(f"export cell in a kernel, {how}: median {statistics.median(seconds):.2f} s "
                  f"({', '.join(f'{s:.2f}' for s in seconds)})")


if __name__ == "__main__":
    main()
