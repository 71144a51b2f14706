"""Hidden graders for 課題3. Each test decides one check id; each failure says what was expected and found.

They read what the student's kernel exported and recompute what matters with the reloaded model: a number the
student's process reports (history, count_params, a printed result) is never taken on its word.
"""

from __future__ import annotations

import numpy as np
import pytest

from autograder.graders.support import expect_shape, fail

N_TRAIN, N_TEST, N_PIXELS, N_CLASSES = 60000, 10000, 784, 10
EXPECTED_LAYERS = [("Dense", 32, "relu"), ("Dense", 10, "softmax")]
EXPECTED_PARAMS = (N_PIXELS + 1) * 32 + (32 + 1) * N_CLASSES          # 25,120 + 330 = 25,450
SAMPLE_INDEX, SAMPLE_DIGIT = 1, 2                                       # x_test[1] is a 2
AGREEMENT = 0.002        # |reported − recomputed| val_accuracy, GPU vs CPU arithmetic (24 of 12,000 samples)
SAME_PREDICTION = 1e-3   # |test2 − grader's own predict| per probability
VAL_ACCURACY_KEYS = ("val_accuracy", "val_acc", "val_categorical_accuracy")   # named after the metric given


@pytest.mark.check("reshape")
def test_reshape(student, mnist):
    for name, images in (("x_train", mnist.x_train), ("x_test", mnist.x_test)):
        x = student.array(name)
        expect_shape(name, x, (len(images), N_PIXELS))
        if x.dtype.kind != "f":
            fail(f"{name} の型が {x.dtype} です。255 で割ると小数 (float) の配列になるはずです。",
                 f"{name} has dtype {x.dtype}; dividing by 255 should give a floating-point array.")
        low, high = float(x.min()), float(x.max())
        if low < 0 or high > 1:
            fail(f"{name} の値は 0〜1 のはずですが、{low:g}〜{high:g} でした。255 で割りましたか？",
                 f"{name} should hold values within [0, 1], found [{low:g}, {high:g}]. Did you divide by 255?")
        if not equals_scaled_images(x, images):
            fail(f"{name} の中身が、MNIST の画像を並べ直して 255 で割ったものと一致しません。",
                 f"{name} does not equal the MNIST images reshaped and divided by 255.")


def equals_scaled_images(x, images, chunk=10000) -> bool:
    """x == images reshaped to rows of 784 and divided by 255, compared a block at a time (x may be 376 MB)."""
    return all(np.allclose(x[i:i + chunk], images[i:i + chunk].reshape(-1, N_PIXELS) / 255, atol=1e-6)
               for i in range(0, len(images), chunk))


@pytest.mark.check("one_hot")
def test_one_hot(student, mnist):
    for name, labels in (("y_train", mnist.y_train), ("y_test", mnist.y_test)):
        y = student.array(name)
        expect_shape(name, y, (len(labels), N_CLASSES))
        if not (np.isin(y, (0, 1)).all() and (np.asarray(y).sum(axis=1) == 1).all()):
            fail(f"{name} の各行は 1 がちょうど 1 つ、残りが 0 (one-hot) のはずですが、そうなっていない行があります。",
                 f"Every row of {name} should be one-hot (a single 1, the rest 0); some rows are not.")
        wrong = int((np.asarray(y).argmax(axis=1) != labels).sum())
        if wrong:
            fail(f"{name} の {wrong} 行で、1 の位置が正解ラベルと合っていません。",
                 f"In {wrong} rows of {name} the 1 is not at the true label.")


@pytest.mark.check("param_count")
def test_param_count(model, record_property):
    found = sum(int(np.prod(w.shape)) for w in model.weights)   # counted here, not model.count_params()
    record_property("param_count", found)
    if found != EXPECTED_PARAMS:
        fail(f"パラメータ数は 25,450 ((784+1)×32 + (32+1)×10) のはずですが、{found:,} でした。",
             f"The model should have 25,450 parameters ((784+1)×32 + (32+1)×10), found {found:,}.")


def activation_name(fn) -> str:
    name = getattr(fn, "__name__", type(fn).__name__)
    return name.removesuffix("_v2")


def layer_plan(model) -> list[tuple]:
    """The model as (kind, units, activation) steps, whatever API built it: Activation layers fold into the
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
        else:
            plan.append((kind, None, None))
    return plan


def describe(plan) -> str:
    return " → ".join(f"{k}({u}, {a})" if k == "Dense" else k for k, u, a in plan) or "(no layers)"


@pytest.mark.check("architecture")
def test_architecture(model):
    inputs = getattr(model, "inputs", None) or []
    input_shape = tuple(inputs[0].shape[1:]) if len(inputs) == 1 else None
    if input_shape != (N_PIXELS,):
        fail(f"モデルの入力は 784 個 (input_shape=(784,)) のはずですが、{input_shape} でした。",
             f"The model should take 784 inputs (input_shape=(784,)), found {input_shape}.")
    plan = layer_plan(model)
    if plan != EXPECTED_LAYERS:
        fail(f"モデルは Dense(32, relu) → Dense(10, softmax) のはずですが、{describe(plan)} でした。",
             f"The model should be Dense(32, relu) → Dense(10, softmax), found {describe(plan)}.")


def plain_name(item) -> str:
    """'categorical_crossentropy', 'CategoricalCrossentropy' and {'class_name': ...} → 'categoricalcrossentropy'."""
    if isinstance(item, dict):
        item = item.get("class_name") or item.get("config", {}).get("name", "")
    return str(item).replace("_", "").lower()


@pytest.mark.check("compile")
def test_compile(saved_model):
    cfg = saved_model.compile_config
    if not cfg:
        fail("model.compile(...) が実行されていません。",
             "model.compile(...) was not run.")
    loss, optimizer = plain_name(cfg.get("loss")), plain_name(cfg.get("optimizer"))
    metrics = {plain_name(m) for m in (cfg.get("metrics") or [])}
    if loss != "categoricalcrossentropy":
        fail(f"損失関数は 'categorical_crossentropy' のはずですが、{cfg.get('loss')!r} でした。",
             f"The loss should be 'categorical_crossentropy', found {cfg.get('loss')!r}.")
    if optimizer != "adam":
        fail(f"最適化アルゴリズムは 'Adam' のはずですが、{optimizer!r} でした。",
             f"The optimizer should be 'Adam', found {optimizer!r}.")
    if not metrics & {"accuracy", "acc", "categoricalaccuracy"}:
        fail(f"metrics に 'accuracy' が含まれていません ({sorted(metrics)})。",
             f"'accuracy' is not among the metrics ({sorted(metrics)}).")


@pytest.mark.check("fit")
def test_fit(student, config, request):
    history, params = student.history()
    epochs, steps = config.expected_epochs, config.expected_steps_per_epoch
    ran = len(history.get("loss", []))
    if ran != epochs or params.get("epochs") != epochs:
        fail(f"epochs={epochs} で学習するはずですが、{ran} エポックでした。",
             f"Training should run epochs={epochs}; it ran {ran} epochs.")
    if "val_loss" not in history:
        fail(f"検証用データがありません。validation_split={config.expected_validation_split} を指定してください。",
             f"There is no validation data. Pass validation_split={config.expected_validation_split}.")
    if params.get("steps") != steps:
        fail(f"1 エポックは {steps} ステップ (48,000 枚 ÷ {config.expected_batch_size}) のはずですが、"
             f"{params.get('steps')} でした。batch_size={config.expected_batch_size} と "
             f"validation_split={config.expected_validation_split} を確かめてください。",
             f"An epoch should take {steps} steps (48,000 samples / {config.expected_batch_size}), found "
             f"{params.get('steps')}. Check batch_size={config.expected_batch_size} and "
             f"validation_split={config.expected_validation_split}.")
    saved_model = request.getfixturevalue("saved_model")   # after the history: its messages come first
    if saved_model.optimizer_iterations != epochs * steps:
        fail(f"モデルの重みが更新された回数は {epochs * steps:,} 回のはずですが、保存されたモデルでは "
             f"{saved_model.optimizer_iterations} 回でした。学習の記録と実際の学習が合いません。",
             f"The model's weights should have been updated {epochs * steps:,} times; the saved model says "
             f"{saved_model.optimizer_iterations}. The training record does not match the training done.")


@pytest.mark.check("val_accuracy")
def test_val_accuracy(student, mnist, config, request, record_property):
    history, _ = student.history()
    reported = next((history[k] for k in VAL_ACCURACY_KEYS if history.get(k)), [])
    if not reported:
        fail("学習の記録に val_accuracy がありません。validation_split=0.2 で学習させてください。",
             "The training record has no val_accuracy. Train with validation_split=0.2.")
    x_train = student.array("x_train")
    if len(x_train) != N_TRAIN:
        fail(f"x_train は 60,000 枚のはずですが、{len(x_train):,} 枚でした。",
             f"x_train should hold 60,000 samples, found {len(x_train):,}.")
    n_val = config.validation_samples
    predict = request.getfixturevalue("predict")
    predicted = predict(x_train[-n_val:]).argmax(axis=1)
    recomputed = float((predicted == mnist.y_train[-n_val:]).mean())
    record_property("val_accuracy", recomputed)
    record_property("val_accuracy_reported", float(reported[-1]))
    if abs(recomputed - reported[-1]) > AGREEMENT:
        fail(f"記録された最後の val_accuracy ({reported[-1]:.4f}) と、採点側で検証用データ (x_train の最後の "
             f"{n_val:,} 枚) から計算し直した値 ({recomputed:.4f}) が一致しません。",
             f"The last recorded val_accuracy ({reported[-1]:.4f}) does not match the grader's own evaluation on "
             f"the validation data (the last {n_val:,} samples of x_train): {recomputed:.4f}.")
    if recomputed < config.val_accuracy_threshold:
        fail(f"val_accuracy は {config.val_accuracy_threshold} 以上のはずですが、{recomputed:.4f} でした。",
             f"val_accuracy should reach {config.val_accuracy_threshold}, found {recomputed:.4f}.")


@pytest.mark.check("predict")
def test_predict(student, request, record_property):
    test2 = student.array("test2")
    expect_shape("test2", test2, (N_TEST, N_CLASSES))
    x_test = student.array("x_test")
    if len(x_test) != N_TEST:
        fail(f"x_test は 10,000 枚のはずですが、{len(x_test):,} 枚でした。",
             f"x_test should hold 10,000 samples, found {len(x_test):,}.")
    own = request.getfixturevalue("predict")(x_test)
    if not np.allclose(np.asarray(test2, dtype=np.float64), own, atol=SAME_PREDICTION):
        fail("test2 が、学習後の model で x_test を予測した結果 (model.predict(x_test)) と一致しません。",
             "test2 does not match the trained model's prediction for x_test (model.predict(x_test)).")
    digit = int(np.argmax(own[SAMPLE_INDEX]))
    record_property("predicted_digit_x_test_1", digit)
    if digit != SAMPLE_DIGIT:
        fail(f"x_test[1] は 2 の画像ですが、いちばん確率が高い数字は {digit} でした。",
             f"x_test[1] shows a 2, but the most probable digit predicted is {digit}.")
