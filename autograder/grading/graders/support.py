"""What a grader test uses: ``check`` to declare the check it decides, ``fail`` to fail it with a message a student
can act on (Japanese first, then English)."""

from __future__ import annotations

import re

import pytest


def check(id: str, *, points: float, title: tuple[str, str], public: bool = False):
    """Declare the check a grader test decides, where it is written:

        @check("reshape", points=1, public=True, title=("…を 255 で割る", "… divided by 255"))
        def test_reshape(student, dataset): ...

    ``id``: stable, a plain identifier (it names the check in every result and the gradebook's column); ``points``:
    a number ≥ 0; ``title``: what the check asks, (Japanese, English); ``public``: shown in full by `check` before
    submission. A thin wrapper around ``pytest.mark.check``; the grading plugin validates it at collection (a bad
    declaration, or an id declared twice, stops grading before any notebook runs)."""
    return pytest.mark.check(id, points=points, title=title, public=public)


class CheckFailed(AssertionError):
    """A check's verdict, with the explanation shown to the student."""

    def __init__(self, ja: str, en: str):
        super().__init__(f"{ja}\n{en}")
        self.ja, self.en = ja, en


def fail(ja: str, en: str) -> None:
    raise CheckFailed(ja, en)


def shape_text(shape) -> str:
    return "(" + ", ".join(str(int(n)) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def expect_shape(name: str, array, expected: tuple) -> None:
    if tuple(array.shape) != tuple(expected):
        fail(f"{name} の形は {shape_text(expected)} のはずですが、{shape_text(array.shape)} でした。",
             f"{name} should have shape {shape_text(expected)}, found {shape_text(array.shape)}.")


NOTE_PROPERTY = "check_note"            # a user property the plugin shows as a passed check's output


def note(record_property, ja: str, en: str) -> None:
    """Explain a verdict that passed but is worth knowing (shown with the check, Japanese then English)."""
    record_property(NOTE_PROPERTY, f"{ja}\n{en}")


# --- reading Keras's compile settings from a .keras archive's config ---------------------------------------------
# model.compile(...) accepts a loss, optimizer or metric as a string (in several spellings), a class, an instance
# or a function, and the archive stores each differently: "accuracy"; {"class_name": "CategoricalAccuracy",
# "config": {"name": ...}}; {"class_name": "function", "config": "categorical_accuracy"}. A class given as such
# is stored by the harness as {"class_name": "...", "registered_name": "class"} (Keras cannot serialise it).

def keras_identity(entry) -> tuple[str, str]:
    """→ (how the entry was given: "string" | "function" | "class", its name as written)."""
    if isinstance(entry, dict):
        if entry.get("class_name") == "function":
            return "function", str(entry.get("config", ""))
        return "class", str(entry.get("class_name", ""))
    return "string", str(entry)


def squashed(name: str) -> str:
    """'categorical_crossentropy', 'CategoricalCrossentropy', 'CATEGORICAL_CROSSENTROPY' → 'categoricalcrossentropy'."""
    return name.replace("_", "").lower()


def describe_keras(entry) -> str:
    """How a student would recognise what they wrote: 'mse', binary_crossentropy (function), BinaryCrossentropy."""
    kind, name = keras_identity(entry)
    return {"string": repr(name), "function": f"{name} (function)", "class": name}[kind]


def history_name(entry) -> str:
    """The name Keras records a metric under in ``History.history`` (without the ``val_`` prefix)."""
    kind, name = keras_identity(entry)
    if kind == "class":
        config = entry.get("config")
        if isinstance(config, dict) and config.get("name"):
            return str(config["name"])
        return keras_snake_case(name)                        # Keras's default name for the class
    return name


def keras_snake_case(name: str) -> str:
    """Keras's own ``to_snake_case``: 'CategoricalAccuracy' → 'categorical_accuracy', 'AUC' → 'auc'."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def flat_metrics(metrics) -> list:
    """Metrics as compiled — a list, a dict per output, nested lists — as one flat list of entries."""
    if isinstance(metrics, dict) and "class_name" not in metrics:
        metrics = list(metrics.values())
    if isinstance(metrics, (list, tuple)):
        return [entry for item in metrics for entry in flat_metrics(item)]
    return [] if metrics is None else [metrics]


# --- a Keras model's layers, whatever API built it ---------------------------------------------------------------

def activation_name(fn) -> str:
    """A Keras or tf.nn activation by its name: relu, softmax (tf.nn's softmax_v2 too), linear."""
    name = getattr(fn, "__name__", type(fn).__name__)
    return name.removesuffix("_v2")


def require_layers(model, expected: str) -> None:
    """A model with no layers (an empty Sequential, or only an Input) is said as such — not compared, layer by
    layer, with nothing, nor taken for a model with the wrong inputs."""
    if not layer_plan(model):
        fail(f"モデルに層がありません。{expected} の層を model.add(...) か Sequential([...]) で加えてください。",
             f"The model has no layers: add {expected} with model.add(...) or Sequential([...]).")


def layer_plan(model) -> list[tuple]:
    """The model as (kind, units or rate, activation) steps, whatever API built it: Activation layers fold into the
    Dense before them, input layers are skipped."""
    plan: list[tuple] = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if kind == "Activation" and plan and plan[-1][0] == "Dense" and plan[-1][2] == "linear":
            plan[-1] = ("Dense", plan[-1][1], activation_name(layer.activation))
        elif kind == "Dense":
            plan.append(("Dense", layer.units, activation_name(layer.activation)))
        elif kind == "Dropout":
            plan.append(("Dropout", float(layer.rate), None))
        else:
            plan.append((kind, None, None))
    return plan
