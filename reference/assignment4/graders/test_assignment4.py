"""Hidden graders for 課題4 (MLP②, breast cancer). Each test decides one check, declared with ``@check`` (id, points,
title, and whether `check` shows it before submission); each failure says what was expected and what was found.

They read what the student's kernel exported and recompute what matters: the split is redone from the pinned data
set, the scaling recomputed from the raw rows, and every result of the trained model (val_loss, test AUC, sensitivity)
recomputed with the reloaded model. A number the student's process reports is never taken on its word. Every number
compared with, or written in a message, comes from the assignment's settings (``assignment.expected``).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import train_test_split

from autograder.grading.graders.support import (check, describe_keras, expect_shape, fail, flat_metrics, history_name,
                                                keras_identity, layer_plan, note, require_layers, shape_text, squashed)

SAME_ROWS = 1e-6         # 1 − correlation allowed between a student's column and the raw column it was scaled from
SAME_VALUES = 1e-5       # |student − recomputed| for scaled features (a float32 copy keeps about 7 digits)
SAME_NUMBER = 1e-6       # |sensitivity − recall recomputed from pred| (both from the same 0/1 arrays)
LOW_SPECIFICITY = 0.5    # below it, a passing sensitivity gets a note: calling everything malignant is no skill
# Other splits a student may have made: tried (cheaply: 569 rows) to say which one it was.
OTHER_TEST_SIZES = (0.1, 0.15, 0.25, 0.3, 1 / 3, 0.33, 0.4)
OTHER_RANDOM_STATES = tuple(range(101)) + (123, 1234, 2024, 12345)
# Spellings of accuracy that Keras resolves to binary accuracy for this loss (keras.metrics.Accuracy is not one).
BINARY_ACCURACY = {"string": {"accuracy", "acc", "binaryaccuracy"},
                   "function": {"binaryaccuracy"}, "class": {"binaryaccuracy"}}


# --- the data and the split, as the grader makes them --------------------------------------------------------------

@dataclass(frozen=True)
class Split:
    """Which rows of the data set a student's X_train / X_test hold, as the grader recognised them."""
    train: np.ndarray            # row indices, in the student's order
    test: np.ndarray
    test_size: float
    random_state: int | None
    stratified: bool
    shuffled: bool = True

    def call(self) -> str:
        if not self.shuffled:
            return f"train_test_split(X, y, test_size={self.test_size:g}, shuffle=False)"
        stratify = ", stratify=y" if self.stratified else ""
        return f"train_test_split(X, y, test_size={self.test_size:g}, random_state={self.random_state}{stratify})"


def features_and_labels(dataset):
    """X as loaded, and y with 1 = malignant (scikit-learn's target 0), as the notebook's given cell makes them."""
    return np.asarray(dataset.data, dtype=np.float64), (np.asarray(dataset.target) == 0).astype(int)


def expected_call(e) -> str:
    return f"train_test_split(X, y, test_size={e['test_size']:g}, random_state={e['random_state']}, stratify=y)"


def candidate_splits(dataset, e, n_test: int):
    """The expected split first, then the usual other ones that leave n_test rows for testing."""
    x, y = features_and_labels(dataset)
    rows = np.arange(len(x))
    train, test = train_test_split(rows, test_size=e["test_size"], random_state=e["random_state"], stratify=y)
    yield Split(train, test, e["test_size"], e["random_state"], True)
    for size in (e["test_size"],) + tuple(s for s in OTHER_TEST_SIZES if s != e["test_size"]):
        train, test = train_test_split(rows, test_size=size, shuffle=False)
        if len(test) != n_test:
            continue
        yield Split(train, test, size, None, False, shuffled=False)
        for stratified in (False, True):
            for state in OTHER_RANDOM_STATES:
                if stratified and size == e["test_size"] and state == e["random_state"]:
                    continue
                train, test = train_test_split(rows, test_size=size, random_state=state,
                                               stratify=y if stratified else None)
                yield Split(train, test, size, state, stratified)


def affine_columns(student_x: np.ndarray, raw_x: np.ndarray) -> bool:
    """Every column of student_x is an increasing affine function of the same column of raw_x: the same rows in the
    same order, whatever per-column scaling was applied (none, StandardScaler fitted on anything, MinMaxScaler…)."""
    if student_x.shape != raw_x.shape or not np.isfinite(student_x).all():
        return False
    a = student_x - student_x.mean(axis=0)
    b = raw_x - raw_x.mean(axis=0)
    norms = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    if (norms == 0).any():
        return False
    return bool(((a * b).sum(axis=0) / norms >= 1 - SAME_ROWS).all())


_recognised: dict = {}           # the last student's split: {"student": the fixture object, "split": Split | None}


def recognised_split(student, dataset, e) -> Split | None:
    """The split whose rows the student's X_train and X_test hold (in their order), or None when none is known."""
    if _recognised.get("student") is not student:    # the fixture object is kept, so its id is never reused
        x_train = np.asarray(student.array("X_train"), dtype=np.float64)
        x_test = np.asarray(student.array("X_test"), dtype=np.float64)
        raw, _ = features_and_labels(dataset)
        found = None
        if x_train.ndim == 2 and x_test.ndim == 2 and x_train.shape[1] == x_test.shape[1] == raw.shape[1]:
            found = next((s for s in candidate_splits(dataset, e, len(x_test))
                          if len(s.train) == len(x_train) and affine_columns(x_test, raw[s.test])
                          and affine_columns(x_train, raw[s.train])), None)
        _recognised.update(student=student, split=found)
    return _recognised["split"]


def split_needed(student, dataset, e, what: tuple[str, str]) -> Split:
    """The recognised split, or a failure saying that this check needs the rows of step 1 to be known."""
    split = recognised_split(student, dataset, e)
    if split is None:
        fail(f"X_train・X_test がデータのどの行なのかが分からないため、{what[0]}を確かめられません。まず手順 1 の分割 "
             f"({expected_call(e)}) を直してください。",
             f"X_train and X_test hold rows that could not be matched with the data set, so {what[1]} could not be "
             f"checked. Fix the split of step 1 first ({expected_call(e)}).")
    return split


def true_labels(dataset, rows: np.ndarray) -> np.ndarray:
    return features_and_labels(dataset)[1][rows]


def recorded_history(student) -> dict:
    """The training record if the kernel exported a readable one, else {} (for diagnoses that must not fail)."""
    entry = student.record.get("history", {})
    history = entry.get("history") if isinstance(entry, dict) else None
    if not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values()):
        return {}
    return history


def rows_of(student, name: str) -> np.ndarray:
    return np.asarray(student.array(name), dtype=np.float64)


# --- 1. split ----------------------------------------------------------------------------------------------------

@check("split", points=1, public=True,
       title=("train_test_split(X, y, test_size={test_size}, random_state={random_state}, stratify=y) で分ける",
              "split by train_test_split(X, y, test_size={test_size}, random_state={random_state}, stratify=y)"))
def test_split(student, dataset, assignment):
    e = assignment.expected
    n_train, n_test, n_features = e["n_train"], e["n_test"], e["n_features"]
    arrays = {name: student.array(name) for name in ("X_train", "X_test", "y_train", "y_test")}
    shapes = {name: tuple(a.shape) for name, a in arrays.items()}
    if shapes["X_train"] == (n_test, n_features) and shapes["X_test"] == (n_train, n_features):
        fail(f"X_train が {n_test} 行、X_test が {n_train} 行で、学習用とテスト用が入れ替わっています。train_test_split は "
             "X_train, X_test, y_train, y_test の順に返します。",
             f"X_train holds {n_test} rows and X_test {n_train}: training and test sets are swapped. train_test_split "
             "returns X_train, X_test, y_train, y_test, in that order.")
    if len(shapes["y_train"]) != 1 or len(shapes["y_test"]) != 1:
        fail(f"y_train・y_test の形が {shape_text(shapes['y_train'])}・{shape_text(shapes['y_test'])} です。"
             "train_test_split は X_train, X_test, y_train, y_test の順に返すので、受け取る変数もこの順に並べてください。",
             f"y_train and y_test have shapes {shape_text(shapes['y_train'])} and {shape_text(shapes['y_test'])}. "
             "train_test_split returns X_train, X_test, y_train, y_test: unpack them in that order.")
    if shapes["X_train"] == (e["n_samples"], n_features):
        fail(f"X_train が {e['n_samples']} 行 (データ全体) のままです。{expected_call(e)} で分けてください。",
             f"X_train still holds all {e['n_samples']} rows. Split it with {expected_call(e)}.")
    rows = (shapes["X_train"][0] if shapes["X_train"] else 0, shapes["X_test"][0] if shapes["X_test"] else 0)
    if sum(rows) == e["n_samples"] and rows[1] != n_test:
        fail(f"テスト用データが {rows[1]} 個あります。test_size={e['test_size']:g} で、{e['n_samples']} 個のうち "
             f"{n_test} 個をテスト用にしてください。",
             f"The test set holds {rows[1]} rows. Use test_size={e['test_size']:g}: {n_test} of the "
             f"{e['n_samples']} rows for testing.")
    expect_shape("X_train", arrays["X_train"], (n_train, n_features))
    expect_shape("X_test", arrays["X_test"], (n_test, n_features))
    expect_shape("y_train", arrays["y_train"], (n_train,))
    expect_shape("y_test", arrays["y_test"], (n_test,))
    split = recognised_split(student, dataset, e)
    if split is None:
        fail(f"X_train・X_test の行が、{expected_call(e)} で分けた行と一致しません。X と y をそのまま渡し、"
             "分割の前に行を並べ替えたり選んだりしないでください。",
             f"The rows of X_train and X_test are not those of {expected_call(e)}. Pass X and y as they are, without "
             "reordering or selecting rows before the split.")
    if not split.stratified and split.shuffled and split.random_state == e["random_state"]:
        fail(f"stratify=y が指定されていないようです (分割が {split.call()} と一致しました)。層化抽出しないと、"
             "テスト用データの悪性の割合が全体とずれます。",
             f"stratify=y seems to be missing (the split is that of {split.call()}). Without stratification the "
             "share of malignant tumours in the test set drifts from that of the whole data set.")
    if split.random_state != e["random_state"] or not split.stratified or not split.shuffled:
        fail(f"分割が {split.call()} と一致しました。{expected_call(e)} で分けてください。",
             f"The split is that of {split.call()}. Split with {expected_call(e)}.")
    for name, rows in (("y_train", split.train), ("y_test", split.test)):
        labels, truth = np.asarray(arrays[name]), true_labels(dataset, rows)
        if not np.array_equal(labels, truth):
            flipped = " 1 と 0 が逆になっています (1 = 悪性)。" if np.array_equal(labels, 1 - truth) else ""
            flipped_en = " 1 and 0 are swapped (1 = malignant)." if flipped else ""
            fail(f"{name} が、{expected_call(e)} で分けた正解ラベルと一致しません。{flipped}",
                 f"{name} does not equal the labels that {expected_call(e)} gives.{flipped_en}")


# --- 2. scaling --------------------------------------------------------------------------------------------------

def standardised(raw: np.ndarray, statistics_from: np.ndarray) -> np.ndarray:
    return (raw - statistics_from.mean(axis=0)) / statistics_from.std(axis=0)


def close(found: np.ndarray, expected: np.ndarray) -> bool:
    return found.shape == expected.shape and bool(np.allclose(found, expected, rtol=SAME_VALUES, atol=SAME_VALUES))


@check("scaling", points=2, public=True,
       title=("StandardScaler を学習用データだけで fit し、X_test は transform だけ (データ漏洩なし)",
              "StandardScaler fitted on the training set only, X_test only transformed (no data leakage)"))
def test_scaling(student, dataset, assignment):
    e = assignment.expected
    x_train, x_test = rows_of(student, "X_train"), rows_of(student, "X_test")
    split = split_needed(student, dataset, e, ("標準化", "the scaling"))
    everything, _ = features_and_labels(dataset)
    raw_train, raw_test = everything[split.train], everything[split.test]
    train_ok = close(x_train, standardised(raw_train, raw_train))
    test_ok = close(x_test, standardised(raw_test, raw_train))
    if train_ok and test_ok:
        return
    if close(x_train, standardised(raw_train, everything)):
        fail("データ漏洩: scaler が分割前の X 全体で fit されています (X_train の値が、X 全体の平均・標準偏差で変換したものと"
             "一致しました)。テスト用データの情報が学習に入り込みます。分割した後で scaler.fit_transform(X_train) とし、"
             "X_test は scaler.transform(X_test) で変換してください。",
             "Data leakage: the scaler was fitted on all of X before the split (X_train equals X scaled with the "
             "mean and standard deviation of all rows), so the test set's information reaches training. Split "
             "first, then scaler.fit_transform(X_train) and scaler.transform(X_test).")
    if close(x_train, raw_train):
        fail("X_train が標準化されていません (読み込んだときの値のままです)。scaler = StandardScaler() を作り、"
             "X_train = scaler.fit_transform(X_train)、X_test = scaler.transform(X_test) としてください。",
             "X_train is not standardised (it holds the values as loaded). Make scaler = StandardScaler(), then "
             "X_train = scaler.fit_transform(X_train) and X_test = scaler.transform(X_test).")
    if train_ok:
        if close(x_test, standardised(raw_test, raw_test)):
            fail("データ漏洩: X_test が X_test 自身の平均・標準偏差で変換されています (X_test で fit し直しています)。"
                 "テスト用データは、学習用データで fit した scaler で scaler.transform(X_test) と変換するだけにしてください。",
                 "Data leakage: X_test was scaled with its own mean and standard deviation (the scaler was fitted "
                 "again on X_test). Only transform the test set with the scaler fitted on the training set: "
                 "scaler.transform(X_test).")
        if close(x_test, standardised(raw_test, everything)):
            fail("データ漏洩: X_test が X 全体の平均・標準偏差で変換されています。学習用データで fit した scaler で "
                 "scaler.transform(X_test) としてください。",
                 "Data leakage: X_test was scaled with the mean and standard deviation of all of X. Transform it with "
                 "the scaler fitted on the training set: scaler.transform(X_test).")
        if close(x_test, raw_test):
            fail("X_test が標準化されていません (読み込んだときの値のままです)。X_test = scaler.transform(X_test) で、"
                 "学習用データと同じ変換をしてください。",
                 "X_test is not standardised (it holds the values as loaded). Apply the training set's scaling to "
                 "it: X_test = scaler.transform(X_test).")
        fail("X_test が、学習用データの平均・標準偏差で変換したもの (scaler.transform(X_test)) と一致しません。",
             "X_test does not equal the test set scaled with the training set's mean and standard deviation "
             "(scaler.transform(X_test)).")
    if np.allclose(x_train.min(axis=0), 0, atol=SAME_VALUES) and np.allclose(x_train.max(axis=0), 1, atol=SAME_VALUES):
        fail("X_train の各列が 0〜1 に変換されています (MinMaxScaler など)。この課題では StandardScaler で "
             "平均 0・標準偏差 1 に揃えてください。",
             "The columns of X_train were mapped to [0, 1] (MinMaxScaler or the like). Standardise them to mean 0 "
             "and standard deviation 1 with StandardScaler.")
    means, stds = x_train.mean(axis=0), x_train.std(axis=0)
    worst_mean, worst_std = float(np.abs(means).max()), float(stds[np.argmax(np.abs(stds - 1))])
    fail(f"X_train の各列は平均 0・標準偏差 1 のはずですが、平均が最大 {worst_mean:.4g} ずれ、標準偏差に {worst_std:.4g} の"
         "列があります。X_train = scaler.fit_transform(X_train) としてください。",
         f"The columns of X_train should have mean 0 and standard deviation 1; a mean is off by up to "
         f"{worst_mean:.4g} and a standard deviation is {worst_std:.4g}. Use X_train = scaler.fit_transform(X_train).")


# --- 3. the model --------------------------------------------------------------------------------------------------

@check("param_count", points=1, public=True,
       title=("モデルのパラメータ数が {parameters:,}", "the model has {parameters:,} parameters"))
def test_param_count(model, assignment, record_property):
    e = assignment.expected
    found = sum(int(np.prod(w.shape)) for w in model.weights)   # counted here, not model.count_params()
    record_property("param_count", found)
    if found != e["parameters"]:
        formula = f"({e['n_features']}+1)×{e['units']} + ({e['units']}+1)×{e['output_units']}"
        fail(f"パラメータ数は {e['parameters']:,} ({formula}) のはずですが、{found:,} でした。",
             f"The model should have {e['parameters']:,} parameters ({formula}), found {found:,}.")


def describe(plan) -> str:
    steps = {"Dense": lambda u, a: f"Dense({u}, {a})", "Dropout": lambda u, a: f"Dropout({u:g})"}
    return " → ".join(steps[k](u, a) if k in steps else k for k, u, a in plan) or "(no layers)"


def same_plan(found, expected) -> bool:
    return len(found) == len(expected) and all(
        f[0] == x[0] and f[2] == x[2] and (f[1] == x[1] if f[0] != "Dropout" else np.isclose(f[1], x[1]))
        for f, x in zip(found, expected))


@check("architecture", points=2,
       title=("Dense({units}, {hidden_activation}) → Dropout({dropout}) → Dense({output_units}, {output_activation}) "
              "のモデル",
              "a Dense({units}, {hidden_activation}) → Dropout({dropout}) → Dense({output_units}, {output_activation}) "
              "model"))
def test_architecture(model, assignment):
    e = assignment.expected
    expected = [("Dense", e["units"], e["hidden_activation"]), ("Dropout", float(e["dropout"]), None),
                ("Dense", e["output_units"], e["output_activation"])]
    require_layers(model, describe(expected))
    inputs = getattr(model, "inputs", None) or []
    input_shape = tuple(inputs[0].shape[1:]) if len(inputs) == 1 else None
    if input_shape != (e["n_features"],):
        fail(f"モデルの入力は {e['n_features']} 個 (Input(shape=({e['n_features']},))) のはずですが、{input_shape} でした。",
             f"The model should take {e['n_features']} inputs (Input(shape=({e['n_features']},))), "
             f"found {input_shape}.")
    plan = layer_plan(model)
    if plan and plan[-1][0] == "Dense" and plan[-1][1] == e["output_units"] and plan[-1][2] == "softmax":
        fail(f"出力層が Dense({e['output_units']}, softmax) です。softmax は出力どうしの合計を 1 にする関数なので、出力が "
             f"{e['output_units']} 個だと model.predict は常に 1.0 (すべて悪性) を返し、悪性と良性を見分けられません。"
             f"出力 1 個の二値分類では activation='{e['output_activation']}' を使ってください。",
             f"The output layer is Dense({e['output_units']}, softmax). Softmax makes the outputs sum to 1, so with a "
             f"single output model.predict always returns 1.0 (every tumour malignant) and tells nothing apart. A "
             f"binary classifier with one output uses activation='{e['output_activation']}'.")
    if not same_plan(plan, expected):
        hint_ja, hint_en = "", ""
        if "Dropout" not in [k for k, _, _ in plan]:
            hint_ja = f" Dropout({e['dropout']:g}) がありません。"
            hint_en = f" Dropout({e['dropout']:g}) is missing."
        fail(f"モデルは {describe(expected)} のはずですが、{describe(plan)} でした。{hint_ja}",
             f"The model should be {describe(expected)}, found {describe(plan)}.{hint_en}")


# --- 4. compile ----------------------------------------------------------------------------------------------------

def is_binary_accuracy(entry) -> bool:
    kind, name = keras_identity(entry)
    return squashed(name) in BINARY_ACCURACY[kind]


def is_auc(entry) -> bool:
    kind, name = keras_identity(entry)
    return kind in ("string", "class") and squashed(name) == "auc"


def entry_config(entry) -> dict:
    config = entry.get("config") if isinstance(entry, dict) else None
    return config if isinstance(config, dict) else {}


@check("compile", points=1,
       title=("{loss}・{optimizer}・accuracy と AUC (name='{auc_metric_name}') で compile",
              "compiled with {loss}, {optimizer}, accuracy and an AUC named '{auc_metric_name}'"))
def test_compile(saved_model, student, assignment):
    e = assignment.expected
    cfg = saved_model.compile_config
    if not cfg:
        fail("model.compile(...) が実行されていません。", "model.compile(...) was not run.")
    loss, optimizer = cfg.get("loss"), cfg.get("optimizer")
    if squashed(keras_identity(loss)[1]) != squashed(e["loss"]):
        fail(f"損失関数は '{e['loss']}' のはずですが、{describe_keras(loss)} でした。",
             f"The loss should be '{e['loss']}', found {describe_keras(loss)}.")
    if entry_config(loss).get("from_logits"):
        fail(f"損失関数に from_logits=True が指定されています。出力層の {e['output_activation']} がすでに確率を出しているので、"
             "from_logits は指定しないでください。",
             f"The loss was given from_logits=True, but the output layer's {e['output_activation']} already gives "
             "probabilities: leave from_logits out.")
    if squashed(keras_identity(optimizer)[1]) != squashed(e["optimizer"]):
        fail(f"最適化アルゴリズムは '{e['optimizer']}' のはずですが、{describe_keras(optimizer)} でした。",
             f"The optimizer should be '{e['optimizer']}', found {describe_keras(optimizer)}.")
    metrics = flat_metrics(cfg.get("metrics")) + flat_metrics(cfg.get("weighted_metrics"))
    given = ", ".join(map(describe_keras, metrics)) or "なし / none"
    if not any(map(is_binary_accuracy, metrics)):
        if any(keras_identity(m) in (("class", "Accuracy"), ("function", "accuracy")) for m in metrics):
            fail(f"metrics の Accuracy は、正解 (0/1) と予測した確率が完全に一致する割合を数えるため、ほぼ 0 になります。"
                 f"metrics には 'accuracy' (または BinaryAccuracy) を使ってください (指定されたもの: {given})。",
                 f"keras.metrics.Accuracy counts exact equality of the 0/1 labels with the predicted probabilities, so "
                 f"it stays near 0. Use 'accuracy' (or BinaryAccuracy) instead (given: {given}).")
        fail(f"metrics に 'accuracy' (正解率) が含まれていません (指定されたもの: {given})。",
             f"'accuracy' is not among the metrics (given: {given}).")
    aucs = [m for m in metrics if is_auc(m)]
    name = e["auc_metric_name"]
    if not aucs:
        fail(f"metrics に AUC (keras.metrics.AUC(name='{name}')) が含まれていません (指定されたもの: {given})。",
             f"No AUC is among the metrics: add keras.metrics.AUC(name='{name}') (given: {given}).")
    if all(entry_config(m).get("curve", "ROC") != "ROC" for m in aucs):
        fail(f"AUC に curve='{entry_config(aucs[0]).get('curve')}' が指定されています。この課題の AUC は ROC 曲線の下の面積"
             "です。curve は指定しないでください (既定値 'ROC')。",
             f"The AUC was given curve='{entry_config(aucs[0]).get('curve')}'; this assignment's AUC is the area under "
             "the ROC curve. Leave curve out (its default is 'ROC').")
    recorded = [history_name(m) for m in aucs]
    if name not in recorded:
        fail(f"AUC が学習の記録に '{recorded[0]}' という名前で残ります。keras.metrics.AUC(name='{name}') として、"
             f"'{name}'・'val_{name}' という名前で記録されるようにしてください。",
             f"The AUC is recorded as '{recorded[0]}'. Name it: keras.metrics.AUC(name='{name}'), so that the "
             f"training record holds '{name}' and 'val_{name}'.")
    history = recorded_history(student)
    if history and name not in history:      # e.g. auc_1: a second AUC in one kernel
        keys = ", ".join(sorted(str(k) for k in history if "auc" in str(k).lower())) or "—"
        fail(f"学習の記録 (result.history) に '{name}' がありません (AUC の記録: {keys})。"
             f"keras.metrics.AUC(name='{name}') と名前を指定してください。",
             f"The training record (result.history) has no '{name}' (AUC recorded as: {keys}). Give the name "
             f"explicitly: keras.metrics.AUC(name='{name}').")


# --- 5. early stopping ---------------------------------------------------------------------------------------------

def keras_val_loss(model, predict, x_val, y_val, e) -> float:
    """The saved model's loss on the validation rows, computed as fit computed val_loss: by Keras's own evaluate
    with the expected loss (Keras takes a sigmoid's or softmax's logits into the loss when it can, so computing the
    loss from predict's probabilities would not always give the recorded value)."""
    p = predict(x_val)
    if p.shape != (len(x_val), e["output_units"]):
        fail(f"model の出力の形が {shape_text(p.shape[1:])} です。出力は確率 {e['output_units']} 個 "
             f"({shape_text((e['output_units'],))}) のはずです。",
             f"The model's output has shape {shape_text(p.shape[1:])}; it should be "
             f"{shape_text((e['output_units'],))}, one probability.")
    try:
        model.compile(loss=e["loss"])            # the grader's own compile: the loss only, no optimizer state needed
        return float(model.evaluate(np.asarray(x_val, dtype=np.float32),
                                    np.asarray(y_val, dtype=np.float32).reshape(-1, 1),
                                    batch_size=e["batch_size"], verbose=0))
    except Exception as exc:
        fail(f"保存された model で検証用データの損失を計算できませんでした ({type(exc).__name__}: {str(exc)[:200]})。",
             f"The saved model's loss on the validation data could not be computed ({type(exc).__name__}: "
             f"{str(exc)[:200]}).")


def validation_rows(n_rows: int, e) -> tuple[int, int, int]:
    """(rows trained on, rows Keras sets aside for validation — the last ones —, steps per epoch) for X_train of
    n_rows rows, computed as Keras's validation_split does."""
    kept = int(np.floor(n_rows * (1.0 - e["validation_split"])))
    return kept, n_rows - kept, -(-kept // e["batch_size"])


def stops_as(values: list, patience: int, mode: str) -> bool:
    """Whether a run of len(values) epochs is what EarlyStopping(patience) on these values would have done."""
    best = int(np.argmin(values) if mode == "min" else np.argmax(values))
    return len(values) == best + patience + 1


@check("early_stopping", points=1,
       title=("EarlyStopping(monitor='{monitor}', patience={patience}, restore_best_weights=True) で止め、"
              "最良エポックの重みを残す",
              "stopped by EarlyStopping(monitor='{monitor}', patience={patience}, restore_best_weights=True), "
              "keeping the best epoch's weights"))
def test_early_stopping(student, request, assignment, record_property):
    e = assignment.expected
    history, params = student.history()
    patience = e["patience"]
    if "val_loss" not in history or not history["val_loss"]:
        fail(f"検証用データがありません。fit に validation_split={e['validation_split']:g} を指定してください。"
             "EarlyStopping は検証用データの val_loss を見て止めます。",
             f"There is no validation data: pass validation_split={e['validation_split']:g} to fit. EarlyStopping "
             "watches the validation set's val_loss.")
    val_loss, ran = history["val_loss"], len(history.get("loss", history["val_loss"]))
    record_property("epochs_run", ran)
    record_property("best_epoch", int(np.argmin(val_loss)) + 1)
    x_train, y_train = rows_of(student, "X_train"), np.asarray(student.array("y_train"))
    if x_train.ndim != 2 or len(y_train) != len(x_train):
        fail(f"X_train と y_train の行数が合いません ({shape_text(x_train.shape)}・{shape_text(y_train.shape)})。",
             f"X_train and y_train do not hold the same rows ({shape_text(x_train.shape)}, "
             f"{shape_text(y_train.shape)}).")
    kept, n_val, steps = validation_rows(len(x_train), e)
    if params.get("steps") != steps and params.get("steps") == -(-len(x_train) // e["batch_size"]):
        fail(f"X_train の {len(x_train)} 個すべてで学習しています。検証用データを validation_data で別に渡していませんか？ "
             f"validation_split={e['validation_split']:g} で X_train の一部を検証用にしてください。テスト用データを"
             "検証 (止める時点の判断) に使うと、データ漏洩になります。",
             f"Training used all {len(x_train)} rows of X_train: was the validation set passed separately, as "
             f"validation_data? Use validation_split={e['validation_split']:g} to set part of X_train aside. "
             "Validating (deciding when to stop) on the test set is data leakage.")
    if params.get("steps") != steps:
        fail(f"1 エポックは {steps} ステップ ({kept} 個 ÷ {e['batch_size']}) のはずですが、"
             f"{params.get('steps')} でした。batch_size={e['batch_size']} と validation_split={e['validation_split']:g} "
             "を確かめてください。",
             f"An epoch should take {steps} steps ({kept} samples / {e['batch_size']}), found "
             f"{params.get('steps')}. Check batch_size={e['batch_size']} and "
             f"validation_split={e['validation_split']:g}.")
    planned = params.get("epochs")
    if planned is not None and ran >= planned:
        fail(f"{ran} エポックすべて学習しました。EarlyStopping で途中で止まっていません。epochs={e['epochs']} (上限) とし、"
             f"callbacks=[EarlyStopping(monitor='{e['monitor']}', patience={patience}, restore_best_weights=True)] を "
             "fit に渡してください。",
             f"All {ran} epochs ran: EarlyStopping did not stop the training. Use epochs={e['epochs']} (the limit) and "
             f"pass callbacks=[EarlyStopping(monitor='{e['monitor']}', patience={patience}, "
             "restore_best_weights=True)] to fit.")
    if not stops_as(val_loss, patience, "min"):
        watched = next((key for key, mode in (("loss", "min"), ("val_auc", "max"), ("val_accuracy", "max"))
                        if history.get(key) and len(history[key]) == ran and stops_as(history[key], patience, mode)),
                       None)
        if watched:
            fail(f"学習は monitor='{watched}' で止まったようです。EarlyStopping(monitor='{e['monitor']}', ...) として、"
                 "検証用データの損失を見張ってください。",
                 f"Training seems to have stopped on monitor='{watched}'. Use EarlyStopping(monitor='{e['monitor']}', "
                 "...) to watch the validation loss.")
        waited = ran - 1 - int(np.argmin(val_loss))
        fail(f"val_loss が最小だったのは {int(np.argmin(val_loss)) + 1} エポック目で、その {waited} エポック後に止まっています。"
             f"patience={patience} なら {patience} エポック後に止まるはずです。"
             f"EarlyStopping(monitor='{e['monitor']}', patience={patience}, restore_best_weights=True) を確かめてください。",
             f"val_loss was lowest at epoch {int(np.argmin(val_loss)) + 1} and training stopped {waited} epochs "
             f"later; with patience={patience} it stops {patience} epochs later. Check EarlyStopping("
             f"monitor='{e['monitor']}', patience={patience}, restore_best_weights=True).")
    updates = request.getfixturevalue("saved_model").optimizer_iterations
    if updates is None:
        fail("保存されたモデルに、重みを更新した回数 (optimizer の記録) がありません。",
             "The saved model holds no count of weight updates (no optimizer state).")
    if updates != ran * steps:
        twice = (f" fit が 2 回以上実行されたようです。ランタイムを再起動して、すべてのセルを上から 1 回だけ実行してください。"
                 if updates > ran * steps else "")
        twice_en = (" fit seems to have run more than once: restart the runtime and run all cells once, from the top."
                    if twice else "")
        fail(f"モデルの重みは {ran} エポック × {steps} = {ran * steps:,} 回更新されたはずですが、保存されたモデルでは "
             f"{updates:,} 回でした。学習の記録 (result) と実際の学習が合いません。{twice}",
             f"The weights should have been updated {ran} epochs × {steps} = {ran * steps:,} times; the saved model "
             f"says {updates:,}. The training record (result) does not match the training done.{twice_en}")
    own = keras_val_loss(request.getfixturevalue("model"), request.getfixturevalue("predict"), x_train[-n_val:],
                         y_train[-n_val:], e)
    best = float(min(val_loss))
    record_property("val_loss_recomputed", own)
    record_property("val_loss_best", best)
    if abs(own - best) <= e["val_loss_tolerance"]:
        return
    if abs(own - val_loss[-1]) <= e["val_loss_tolerance"]:
        fail(f"保存された重みは最後のエポック ({ran} エポック目, val_loss {val_loss[-1]:.4f}) のもので、val_loss が最小だった "
             f"{int(np.argmin(val_loss)) + 1} エポック目 ({best:.4f}) のものではありません。EarlyStopping に "
             "restore_best_weights=True を指定して、最良の時点の重みに戻してください。",
             f"The saved weights are those of the last epoch ({ran}, val_loss {val_loss[-1]:.4f}), not of epoch "
             f"{int(np.argmin(val_loss)) + 1}, where val_loss was lowest ({best:.4f}). Pass restore_best_weights=True "
             "to EarlyStopping to go back to the best weights.")
    fail(f"保存されたモデルで検証用データ (X_train の最後の {n_val} 行) の val_loss を計算し直すと {own:.4f} で、"
         f"学習の記録の最小値 {best:.4f} と一致しません。restore_best_weights=True を指定し、fit の後で model を"
         "学習し直したり作り直したりしないでください。",
         f"The saved model's val_loss on the validation rows (the last {n_val} rows of X_train) is {own:.4f}, not the "
         f"record's lowest, {best:.4f}. Pass restore_best_weights=True and do not train or rebuild model after fit.")


# --- 6. evaluation on the test set ---------------------------------------------------------------------------------

def evaluation_rows(student, dataset, e, what):
    x_test = rows_of(student, "X_test")
    split = split_needed(student, dataset, e, what)
    return x_test, true_labels(dataset, split.test), split


def own_probabilities(predict, x) -> np.ndarray:
    p = predict(x)
    if p.ndim != 2 or p.shape[1] != 1:
        fail(f"model の出力の形が {shape_text(p.shape[1:])} です。出力は確率 1 個 ((1,)) のはずです。",
             f"The model's output has shape {shape_text(p.shape[1:])}; it should be one probability, (1,).")
    return p.ravel()


@check("test_auc", points=2,
       title=("テスト用データの AUC が {auc_threshold} 以上で、auc = roc_auc_score(y_test, proba)",
              "the test AUC reaches {auc_threshold}, and auc = roc_auc_score(y_test, proba)"))
def test_test_auc(student, dataset, assignment, request, record_property):
    e = assignment.expected
    x_test, truth, split = evaluation_rows(student, dataset, e, ("テスト用データの AUC ", "the test AUC"))
    predict = request.getfixturevalue("predict")
    own = own_probabilities(predict, x_test)
    grader_auc = float(roc_auc_score(truth, own))
    record_property("test_auc", grader_auc)
    if grader_auc < e["auc_threshold"]:
        constant = np.ptp(own) < 1e-6
        why = (f"model はどの腫瘍にも同じ確率 ({own[0]:.3g}) を出しています。" if constant else "")
        why_en = (f" The model gives every tumour the same probability ({own[0]:.3g})." if constant else "")
        fail(f"学習した model のテスト用データでの AUC は {e['auc_threshold']:g} 以上のはずですが、{grader_auc:.4f} でした。{why}",
             f"The trained model's AUC on the test set should reach {e['auc_threshold']:g}, "
             f"found {grader_auc:.4f}.{why_en}")
    auc = student.number("auc")
    record_property("test_auc_reported", auc)        # the feedback caption reads <check>_reported
    if abs(auc - grader_auc) <= e["auc_tolerance"]:
        return
    diagnoses = []
    if "pred" in student.defined_arrays():
        pred = np.asarray(student.array("pred")).ravel()
        if pred.shape == truth.shape and abs(auc - roc_auc_score(truth, pred)) <= e["auc_tolerance"]:
            diagnoses.append(("0/1 の判定 pred から計算しています。AUC には確率 proba を渡してください: "
                              "roc_auc_score(y_test, proba)。",
                              "it was computed from the 0/1 decisions pred. Pass the probabilities: "
                              "roc_auc_score(y_test, proba)."))
    x_train = rows_of(student, "X_train")
    if len(x_train) == len(split.train):
        train_auc = roc_auc_score(true_labels(dataset, split.train), own_probabilities(predict, x_train))
        if abs(auc - train_auc) <= e["auc_tolerance"]:
            diagnoses.append(("学習用データで計算しています。テスト用データで計算してください: roc_auc_score(y_test, proba)。",
                              "it was computed on the training set. Compute it on the test set: "
                              "roc_auc_score(y_test, proba)."))
    history = recorded_history(student)
    val_auc, val_loss = history.get(f"val_{e['auc_metric_name']}", []), history.get("val_loss", [])
    at_ends = val_auc[-1:] + ([val_auc[int(np.argmin(val_loss))]] if len(val_loss) == len(val_auc) > 0 else [])
    if any(abs(auc - v) <= e["auc_tolerance"] for v in at_ends):
        diagnoses.append(("学習の記録の val_auc (検証用データ) を使っています。テスト用データで計算してください: "
                          "roc_auc_score(y_test, proba)。",
                          "it is the training record's val_auc (the validation set). Compute it on the test set: "
                          "roc_auc_score(y_test, proba)."))
    why, why_en = diagnoses[0] if diagnoses else ("", "")
    fail(f"auc は、学習した model によるテスト用データの AUC ({grader_auc:.4f}) のはずですが、{auc:.4f} でした。{why}",
         f"auc should be the trained model's AUC on the test set ({grader_auc:.4f}), found {auc:.4f}"
         + (f": {why_en}" if why_en else "."))


@check("sensitivity", points=2,
       title=("テスト用データの感度 recall_score(y_test, pred) が {sensitivity_threshold} 以上 "
              "(pred = proba >= {decision_threshold})",
              "the test set's sensitivity, recall_score(y_test, pred), reaches {sensitivity_threshold} "
              "(pred = proba >= {decision_threshold})"))
def test_sensitivity(student, dataset, assignment, request, record_property):
    e = assignment.expected
    threshold = e["decision_threshold"]
    proba = np.asarray(student.array("proba"), dtype=np.float64)
    x_test, truth, split = evaluation_rows(student, dataset, e, ("感度", "the sensitivity"))
    n_test, n_train = len(split.test), len(split.train)
    if proba.shape == (n_test, 1):
        proba = proba.ravel()                     # model.predict(X_test) without .ravel(): the same probabilities
    if proba.shape == (n_train,) or proba.shape == (n_train, 1):
        fail(f"proba が {n_train} 個あります。学習用データではなく、テスト用データ X_test を予測してください: "
             "proba = model.predict(X_test).ravel()。",
             f"proba holds {n_train} values: predict the test set X_test, not the training set: "
             "proba = model.predict(X_test).ravel().")
    expect_shape("proba", proba, (n_test,))
    predict = request.getfixturevalue("predict")
    own = own_probabilities(predict, x_test)
    if not np.allclose(proba, own, atol=e["same_prediction"], rtol=0):
        if np.allclose(proba, 1 - own, atol=e["same_prediction"], rtol=0):
            fail("proba が「良性である確率」(1 − 予測) になっています。proba = model.predict(X_test).ravel() をそのまま"
                 "使ってください (出力は悪性である確率)。",
                 "proba holds the probability of benign (1 − prediction). Use proba = model.predict(X_test).ravel() "
                 "as it is: the output is the probability of malignant.")
        fail("proba が、学習した model で X_test を予測した確率 (model.predict(X_test).ravel()) と一致しません。",
             "proba does not equal the trained model's probabilities for X_test (model.predict(X_test).ravel()).")
    pred = np.asarray(student.array("pred"))
    if pred.shape == (n_test, 1):
        pred = pred.ravel()
    expect_shape("pred", pred, (n_test,))
    decided = (proba >= threshold).astype(int)
    wrong = (pred != decided) & (proba != threshold)   # at exactly the threshold, > and >= may both be meant
    if wrong.any():
        if np.array_equal(pred, truth):
            fail("pred に正解ラベル (y_test) が入っています。pred は model の予測から作ってください: "
                 f"pred = (proba >= {threshold:g}).astype(int)。",
                 f"pred holds the true labels (y_test). Make it from the model's prediction: "
                 f"pred = (proba >= {threshold:g}).astype(int).")
        fail(f"pred が (proba >= {threshold:g}).astype(int) と {int(wrong.sum())} 個で一致しません。確率 {threshold:g} "
             "以上を 1 (悪性)、それ未満を 0 (良性) にしてください。",
             f"pred differs from (proba >= {threshold:g}).astype(int) in {int(wrong.sum())} places. Mark a probability "
             f"of {threshold:g} or more as 1 (malignant), the rest 0 (benign).")
    pred = pred.astype(int)
    recomputed = float(recall_score(truth, pred, zero_division=0))
    specificity = float(recall_score(truth, pred, pos_label=0, zero_division=0))
    record_property("sensitivity", recomputed)
    record_property("specificity", specificity)
    sensitivity = student.number("sensitivity")
    record_property("sensitivity_reported", sensitivity)
    if abs(sensitivity - recomputed) > SAME_NUMBER:
        x_train = rows_of(student, "X_train")
        others = [
            (recall_score(true_labels(dataset, split.train),
                          (own_probabilities(predict, x_train) >= threshold).astype(int), zero_division=0)
             if len(x_train) == len(split.train) else None,
             "学習用データで計算しています。テスト用データで計算してください: recall_score(y_test, pred)。",
             "it was computed on the training set. Compute it on the test set: recall_score(y_test, pred)."),
            (specificity, "特異度 (良性を良性と判定できた割合) になっています。感度は悪性 (1) のうち悪性と判定できた割合です: "
             "recall_score(y_test, pred)。",
             "it is the specificity (benign found benign). The sensitivity is the share of malignant tumours found "
             "malignant: recall_score(y_test, pred)."),
            (precision_score(truth, pred, zero_division=0),
             "適合率 (precision) になっています。感度は recall_score(y_test, pred) です。",
             "it is the precision. The sensitivity is recall_score(y_test, pred)."),
            (accuracy_score(truth, pred), "正解率 (accuracy) になっています。感度は recall_score(y_test, pred) です。",
             "it is the accuracy. The sensitivity is recall_score(y_test, pred)."),
        ]
        why, why_en = next(((ja, en) for value, ja, en in others
                            if value is not None and abs(sensitivity - value) <= SAME_NUMBER), ("", ""))
        fail(f"sensitivity は、テスト用データの感度 recall_score(y_test, pred) = {recomputed:.4f} のはずですが、"
             f"{sensitivity:.4f} でした。{why}",
             f"sensitivity should be the test set's sensitivity, recall_score(y_test, pred) = {recomputed:.4f}, found "
             f"{sensitivity:.4f}" + (f": {why_en}" if why_en else "."))
    if recomputed < e["sensitivity_threshold"]:
        missed = int(((pred == 0) & (truth == 1)).sum())
        fail(f"テスト用データの感度は {e['sensitivity_threshold']:g} 以上のはずですが、{recomputed:.4f} でした "
             f"(悪性 {int(truth.sum())} 個のうち {missed} 個を見逃しています)。",
             f"The sensitivity on the test set should reach {e['sensitivity_threshold']:g}, found {recomputed:.4f} "
             f"({missed} of {int(truth.sum())} malignant tumours missed).")
    if specificity < LOW_SPECIFICITY:
        note(record_property,
             f"感度は基準以上ですが、特異度 (良性を良性と判定できた割合) が {specificity:.3f} しかありません。ほとんどを悪性と"
             "判定すれば感度は高くなります。感度は特異度や AUC と合わせて見ましょう。",
             f"The sensitivity passes, but the specificity (benign found benign) is only {specificity:.3f}: calling "
             "nearly every tumour malignant makes the sensitivity high. Read it together with specificity and AUC.")
