"""The execution stage on small notebooks: no training, a few seconds each."""

import dataclasses
import json
import re

import nbformat
import numpy as np

from autograder.run.execute import execute
from tests.conftest import write_notebook


def run(tmp_path, config, *sources, **overrides):
    nb = nbformat.read(write_notebook(tmp_path / "nb.ipynb", *sources), as_version=4)
    artifacts = tmp_path / "artifacts"
    record = execute(nb, artifacts, dataclasses.replace(config, **overrides), "cpu")
    return record, artifacts


def test_mnist_load_data_returns_the_pinned_arrays_offline_in_both_import_styles(tmp_path, config, mnist):
    record, artifacts = run(tmp_path, config, """
from tensorflow.keras.datasets import mnist
import keras
(x_train, y_train), (x_test, y_test) = mnist.load_data()
(a, b), (c, d) = keras.datasets.mnist.load_data()
assert all((p == q).all() for p, q in ((x_train, a), (y_train, b), (x_test, c), (y_test, d)))
""")
    assert record.cell_errors == [] and record.export_ok
    for name in ("x_train", "y_train", "x_test", "y_test"):
        exported = np.load(artifacts / f"{name}.npy")
        assert exported.dtype == np.uint8
        assert np.array_equal(exported, getattr(mnist, name)), name
    assert record.tensorflow and record.keras and record.device_name == "CPU"


def test_an_error_does_not_stop_later_cells(tmp_path, config):
    record, artifacts = run(tmp_path, config, "raise ValueError('broken on purpose')", "import numpy as np\ntest2 = np.ones((2, 10))")
    assert [(c.index, c.status, c.ename) for c in record.cell_errors] == [(0, "error", "ValueError")]
    assert "broken on purpose" in record.cell_errors[0].evalue
    assert np.load(artifacts / "test2.npy").shape == (2, 10)


def test_cell_timeout_interrupts_that_cell_only_and_training_cells_get_a_longer_budget(tmp_path, config):
    record, artifacts = run(
        tmp_path, config,
        "import time\ntime.sleep(4)  # stands in for result = model.fit(...)",
        "time.sleep(30)",
        "import numpy as np\ntest2 = np.zeros((1, 10))",
        cell_timeout_s=2, training_cell_timeout_s=60)
    assert [(c.index, c.status) for c in record.cells] == [(0, "ok"), (1, "timeout"), (2, "ok")]
    assert record.cells[1].evalue == "no reply within 2 s"
    assert np.load(artifacts / "test2.npy").shape == (1, 10)
    assert record.seconds < 30


def test_whole_notebook_timeout_skips_the_cells_not_yet_started(tmp_path, config):
    record, artifacts = run(tmp_path, config, "import time\ntime.sleep(2)", "time.sleep(10)", "test2 = 1",
                            notebook_timeout_s=3)
    assert [c.status for c in record.cells] == ["ok", "timeout", "skipped"]
    assert record.notebook_timed_out
    assert record.export_ok  # the harness still exports what exists


def test_seed_is_set_before_the_first_cell_and_recorded(tmp_path, config):
    code = ("import random, numpy as np, tensorflow as tf\n"
            "x_train = np.array([random.random(), *np.random.rand(2), *tf.random.uniform((2,)).numpy()])")
    first, art1 = run(tmp_path / "a", config, code)
    second, art2 = run(tmp_path / "b", config, code)
    other, art3 = run(tmp_path / "c", config, code, seed=config.seed + 1)
    assert first.seed == config.seed and other.seed == config.seed + 1
    assert np.array_equal(np.load(art1 / "x_train.npy"), np.load(art2 / "x_train.npy"))
    assert not np.array_equal(np.load(art1 / "x_train.npy"), np.load(art3 / "x_train.npy"))


def test_a_dying_kernel_is_recorded_not_raised(tmp_path, config):
    record, artifacts = run(tmp_path, config, "x = 1", "import os\nos._exit(1)", "y = 2")
    assert record.kernel_died
    assert not record.export_ok


def test_unexportable_values_are_recorded_with_the_reason(tmp_path, config):
    record, artifacts = run(tmp_path, config, "x_train = [object()]\nmodel = 'not a model'")
    data = json.loads((artifacts / "kernel_record.json").read_text())
    assert data["arrays"]["x_train"]["defined"] and "error" in data["arrays"]["x_train"]
    assert not (artifacts / "x_train.npy").exists()
    assert data["model"]["type"] == "str" and "error" in data["model"]
    assert data["arrays"]["test2"] == {"defined": False}


TRAINING_HELPER = """
import time
import keras
import numpy as np

class Slow(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        time.sleep(EPOCH_SECONDS)

def train(model, epochs):
    return model.fit(np.zeros((8, 4)), np.zeros((8, 1)), epochs=epochs, verbose=0, callbacks=[Slow()])

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
model.compile(loss='mse', optimizer='adam')
"""


def test_a_cell_that_trains_through_a_helper_gets_the_training_budget(tmp_path, config):
    """No `.fit(` in the cell's text: Keras announces the training while it runs, and the cell's budget grows."""
    record, _ = run(tmp_path, config,
                    "EPOCH_SECONDS = 2\n" + TRAINING_HELPER,
                    "result = train(model, 3)      # ~6 s of training, past the 3 s ordinary budget",
                    "time.sleep(10)                # no training: the ordinary budget",
                    cell_timeout_s=3, training_cell_timeout_s=60)
    assert [(c.index, c.status) for c in record.cells] == [(0, "ok"), (1, "ok"), (2, "timeout")]
    assert record.cells[2].evalue == "no reply within 3 s"
    assert record.history == {"loss": record.history["loss"]} and len(record.history["loss"]) == 3


def test_training_past_the_training_budget_is_stopped_there(tmp_path, config):
    record, _ = run(tmp_path, config,
                    "EPOCH_SECONDS = 3\n" + TRAINING_HELPER,
                    "result = train(model, 10)     # ~30 s of training",
                    "test2 = np.zeros((1, 10))",
                    cell_timeout_s=2, training_cell_timeout_s=6)
    assert [(c.index, c.status) for c in record.cells] == [(0, "ok"), (1, "timeout"), (2, "ok")]
    assert record.cells[1].evalue in ("no reply within 6 s", "no reply within 7 s")
    assert record.seconds < 30


def test_notes_number_cells_as_the_notebook_does(tmp_path, config):
    """Markdown between code cells, harness cells around them: "cell N" is the N-th code cell, In [N] after
    "Restart & Run All", for errors and for output cut short alike."""
    from autograder.grading.grade import notes_for

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# title"), nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_markdown_cell("text"), nbformat.v4.new_code_cell("raise ValueError('second')"),
        nbformat.v4.new_code_cell("print('y' * 5000)")])
    executed = tmp_path / "executed.ipynb"
    record = execute(nb, tmp_path / "artifacts", dataclasses.replace(config, output_limit_kb=1), "cpu",
                     executed_out=executed)
    counts = [c.execution_count for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code"]
    assert counts == [1, 2, 3]
    notes = notes_for(record, config)
    assert any(n.startswith("cell 3 printed more than") for n in notes), notes
    assert any(re.match(r"cell 2 (\(\S+\) )?error: ValueError: second", n) for n in notes), notes


def test_the_kernel_exports_what_the_assignment_declares(tmp_path, config):
    """Arrays, numbers, the model and the history named in EXPORTS — under any variable names — and nothing else;
    a value that is not what its kind needs is recorded with why."""
    from autograder.course.assignment import Exports

    exports = Exports(arrays=("features", "words"), model="net", history="run", numbers=("score", "name", "bad", "gone"))
    chosen = dataclasses.replace(config.assignment, exports=exports, dataset=None)
    record, artifacts = run(tmp_path, config, """
import numpy as np
features = np.arange(6.0).reshape(2, 3)
words = np.array(["a", "b"])
x_train = np.ones(3)                      # not declared: not exported
score, name, bad = np.float32(0.25), "text", float("nan")
net = run = None
""", chosen=chosen)
    kernel = json.loads((artifacts / "kernel_record.json").read_text(encoding="utf-8"))
    assert np.array_equal(np.load(artifacts / "features.npy"), np.arange(6.0).reshape(2, 3))
    assert "not a numeric array" in kernel["arrays"]["words"]["error"] and not (artifacts / "words.npy").exists()
    assert not (artifacts / "x_train.npy").exists() and "x_train" not in kernel["arrays"]
    assert kernel["numbers"]["score"] == {"defined": True, "type": "float32", "value": 0.25}
    assert "not one number" in kernel["numbers"]["name"]["error"]
    assert kernel["numbers"]["bad"]["value"] == "nan" and kernel["numbers"]["gone"] == {"defined": False}
    assert kernel["model"] == {"defined": True, "name": "net"} and kernel["history"] == {"defined": True, "name": "run"}
