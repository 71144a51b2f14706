"""Code that runs inside the student's kernel, before the first cell and after the last one.

This file is never imported by the grader: ``execute`` sends its text to the kernel. Whatever it writes is data
from an untrusted process; the graders recompute everything that matters from it. It imports nothing of the
grader's either: what it needs of a dataset's declaration (``autograder.course.dataset.DATASETS``) comes as ``setup``'s
arguments, and tests/test_dataset.py holds ``PINS`` to those declarations.
"""

# ruff: noqa  (runs in the student's namespace, so every import stays inside the functions)


def setup(pins, seed, fused_steps=1, training_mime=None):
    """Answer the notebook's dataset loaders offline (``pins``: a declaration's kernel pin → the file the grader
    wrote for it, see ``dataset.kernel_files``), seed Python, NumPy and TensorFlow, (speed mode) fuse the training
    loop, and announce training to the grader as display data of type ``training_mime``, which the grader drops."""
    import keras

    for name, path in pins.items():
        PINS[name](path)
    keras.utils.set_random_seed(seed)
    if fused_steps > 1:
        keras.Model.fit = fused_fit(keras.Model.fit, fused_steps)
    if training_mime:
        keras.Model.fit = announced_fit(keras.Model.fit, training_mime)


def pin_mnist(npz_path):
    """keras.datasets.mnist.load_data and tensorflow.keras.datasets.mnist.load_data are one function; it asks
    get_file for the cached mnist.npz and reads it with np.load. Answering with the pinned copy keeps the
    student's code unchanged and the arrays exactly those of the course."""
    import keras.src.datasets.mnist as keras_mnist

    def pinned_mnist(*args, **kwargs):
        return npz_path

    keras_mnist.get_file = pinned_mnist


PINS = {"mnist": pin_mnist}        # kernel pin (a PinnedDataset's kernel_pin) → what answers its loader


def announced_fit(fit, mime):
    """Model.fit that first tells the grader training has begun, however the student's code reached it: the
    cell running gets the training budget."""
    import functools

    from IPython.display import publish_display_data

    @functools.wraps(fit)
    def fit_announced(self, *args, **kwargs):
        publish_display_data({mime: {"event": "fit"}})
        return fit(self, *args, **kwargs)

    return fit_announced


def fused_fit(fit, steps):
    """Model.fit running `steps` batches per call into TensorFlow (Keras's steps_per_execution) when the student
    left it at 1: the same batches in the same order, the same updates and per-epoch history; only the Python
    round trip per batch goes. Afterwards the model is as the student compiled it (steps_per_execution 1, the
    step functions rebuilt on next use)."""
    import functools

    @functools.wraps(fit)
    def fit_fused(self, *args, **kwargs):
        if getattr(self, "steps_per_execution", 1) != 1:
            return fit(self, *args, **kwargs)
        self.steps_per_execution = steps
        self.train_function = self.test_function = self.predict_function = None
        try:
            return fit(self, *args, **kwargs)
        finally:
            self.steps_per_execution = 1
            self.train_function = self.test_function = self.predict_function = None

    return fit_fused


def save_model(model, path):
    """model.save, also for a model compiled with a loss or metric given as a class (``loss=CategoricalCrossentropy``):
    Keras trains with it but cannot serialise the class, so such entries are saved by name instead."""
    import inspect

    try:
        return model.save(path)
    except TypeError:
        config = getattr(model, "_compile_config", None)
        if config is None:
            raise

    def named(value):
        if inspect.isclass(value):
            return {"module": value.__module__, "class_name": value.__name__, "config": None,
                    "registered_name": "class"}
        if isinstance(value, (list, tuple)):
            return [named(v) for v in value]
        if isinstance(value, dict):
            return {k: named(v) for k, v in value.items()}
        return value

    from keras.saving import serialize_keras_object

    described = {key: serialize_keras_object(named(value)) for key, value in config.config.items()}
    model.get_compile_config = lambda: described
    try:
        model.save(path)
    finally:
        del model.get_compile_config


def export(namespace, out_dir, exports, expected=None):
    """Write what the assignment declares (``exports``: {"arrays": names, "model": name, "history": name,
    "numbers": names}) under out_dir, plus a JSON record of it: arrays as .npy (no pickles), the model as
    model.keras, the history and numbers in the record.

    ``expected``: name → {"sha256", "shape", "dtype"} of the array the course's own code gives (the assignment's
    RECOMPUTABLE). An array equal to it is recorded as such (``"expected": true``) and not written: the graders
    rebuild it from the dataset. The claim is the untrusted process's word and needs none: the most a forged one
    can get is the course's own correct array in place of the student's, which the student's code could as well
    have computed and exported (and the model is still judged on those inputs)."""
    import hashlib
    import json
    import math
    import os
    import traceback

    import numpy as np

    record = {"arrays": {}, "numbers": {}, "model": {}, "history": {}, "environment": {}}

    def problem(exc):
        return f"{type(exc).__name__}: {exc}"

    for name in exports.get("arrays", ()):
        if name not in namespace:
            record["arrays"][name] = {"defined": False}
            continue
        value = namespace[name]
        entry = {"defined": True, "type": type(value).__name__}
        path = os.path.join(out_dir, name + ".npy")
        try:
            array = np.asarray(value)
            entry.update(shape=list(array.shape), dtype=str(array.dtype))
            if array.dtype.kind not in "biuf":
                raise TypeError(f"not a numeric array (dtype {array.dtype})")
            if array.size:
                entry.update(min=float(array.min()), max=float(array.max()))
            entry["sha256"] = hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()  # no copy
            course = (expected or {}).get(name) or {}
            if all(course.get(k) == entry[k] for k in ("sha256", "shape", "dtype")):
                entry["expected"] = True
            else:
                np.save(path, array, allow_pickle=False)
        except Exception as exc:
            entry["error"] = problem(exc)
            if os.path.exists(path):
                os.remove(path)
        record["arrays"][name] = entry

    for name in exports.get("numbers", ()):
        if name not in namespace:
            record["numbers"][name] = {"defined": False}
            continue
        value = namespace[name]
        entry = record["numbers"][name] = {"defined": True, "type": type(value).__name__}
        try:
            if isinstance(value, (str, bytes)) or np.size(value) != 1:
                raise TypeError(f"not one number (a {type(value).__name__})")
            number = float(np.asarray(value).item())
            entry["value"] = number if math.isfinite(number) else str(number)   # JSON has no NaN
        except Exception as exc:
            entry["error"] = problem(exc)

    def variable(name):
        """(its value, its entry in the record); a variable holding None is recorded as defined but not read."""
        value = namespace.get(name)
        if value is None:
            return None, {"defined": name in namespace, "name": name}
        return value, {"defined": True, "type": type(value).__name__, "name": name}

    model = result = None
    if exports.get("model"):
        model, record["model"] = variable(exports["model"])
    if model is not None:
        try:
            save_model(model, os.path.join(out_dir, "model.keras"))
        except Exception as exc:
            record["model"]["error"] = problem(exc)

    if exports.get("history"):
        result, record["history"] = variable(exports["history"])
    if result is not None:
        try:
            record["history"]["history"] = {str(k): [float(v) for v in vs] for k, vs in dict(result.history).items()}
            record["history"]["params"] = {str(k): v for k, v in dict(result.params).items()
                                           if isinstance(v, (int, float, str, bool, type(None)))}
        except Exception as exc:
            record["history"]["error"] = problem(exc)

    env = record["environment"]
    try:
        import keras
        import tensorflow as tf

        env["tensorflow"] = tf.__version__
        env["keras"] = keras.__version__
        gpus = tf.config.list_physical_devices("GPU")
        env["gpus"] = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    except Exception:
        env["error"] = traceback.format_exc(limit=1)

    with open(os.path.join(out_dir, "kernel_record.json"), "w", encoding="utf-8") as f:
        json.dump(record, f, ensure_ascii=False, indent=1)
