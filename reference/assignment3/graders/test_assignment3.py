"""Hidden graders for 課題3. Each test decides one check, declared with ``@check`` (id, points, title, and whether
`check` shows it before submission); each failure says what was expected and found.

They read what the student's kernel exported and recompute what matters with the reloaded model: a number the
student's process reports (history, count_params, a printed result) is never taken on its word.
"""

from __future__ import annotations

import numpy as np

from autograder.grading.graders.support import (check, describe_keras, expect_shape, fail, flat_metrics, history_name,
                                                keras_identity, layer_plan, note, require_layers, shape_text, squashed)

N_TRAIN, N_TEST, N_PIXELS, N_CLASSES = 60000, 10000, 784, 10
EXPECTED_LAYERS = [("Dense", 32, "relu"), ("Dense", 10, "softmax")]
EXPECTED_PARAMS = (N_PIXELS + 1) * 32 + (32 + 1) * N_CLASSES          # 25,120 + 330 = 25,450
SAMPLE_INDEX, SAMPLE_DIGIT = 1, 2                                       # x_test[1] is a 2
AGREEMENT = 0.002        # |reported − recomputed| val_accuracy, GPU vs CPU arithmetic (24 of 12,000 samples)
SAME_PREDICTION = 1e-3   # |test2 − grader's own predict| per probability
# Metrics that measure what the lecture calls accuracy on one-hot labels. A string "accuracy"/"acc" (any case) is
# resolved by Keras to categorical accuracy for this loss; keras.metrics.Accuracy (exact equality of one-hot rows
# with probabilities) and binary accuracy are not it.
CATEGORICAL_ACCURACY = {"string": {"accuracy", "acc", "categoricalaccuracy"},
                        "function": {"categoricalaccuracy"}, "class": {"categoricalaccuracy"}}


def rows_cut(name: str, found: int, expected: int) -> tuple[str, str]:
    """The one explanation for an array cut short before training, shared by every check it breaks."""
    return (f"{name} は {expected:,} 件のはずですが、{found:,} 件しかありません。fit の前に {name} を切り詰めたようです。"
            "検証用データは validation_split が最後の部分を自動で取り分けるので、自分で切り出す必要はありません。",
            f"{name} should hold {expected:,} samples but holds {found:,}: it was cut before fit. "
            "validation_split sets the last part aside for validation by itself; there is no need to cut it.")


def expect_rows(name: str, array, expected: int) -> None:
    if len(array) < expected:
        fail(*rows_cut(name, len(array), expected))


def validation_rows(expected: dict, n_train: int = N_TRAIN) -> int:
    """Rows Keras holds out of x_train for validation_split (the last ones), as Keras computes them."""
    return n_train - int(n_train * (1 - expected["validation_split"]))


def steps_per_epoch(expected: dict, n_train: int = N_TRAIN) -> int:
    return -(-(n_train - validation_rows(expected, n_train)) // expected["batch_size"])


@check("reshape", points=1, public=True,
       title=("x_train・x_test を (枚数, 784) にして 255 で割る", "x_train, x_test reshaped to (n, 784), divided by 255"))
def test_reshape(student, dataset):
    for name, images in (("x_train", dataset.x_train), ("x_test", dataset.x_test)):
        x = student.array(name)
        if x.ndim == 2 and x.shape[1] == N_PIXELS:
            expect_rows(name, x, len(images))
        expect_shape(name, x, (len(images), N_PIXELS))
        if x.dtype.kind != "f":
            fail(f"{name} の型が {x.dtype} です。255 で割ると小数 (float) の配列になるはずです。",
                 f"{name} has dtype {x.dtype}; dividing by 255 should give a floating-point array.")
        if x.dtype.itemsize < 4:
            fail(f"{name} の型が {x.dtype} です。{x.dtype} は精度が足りず、255 で割った値を正しく表せません。"
                 "float32 (または 255 で割ったままの float64) を使ってください。",
                 f"{name} has dtype {x.dtype}, which loses precision: it cannot hold the images divided by 255 "
                 "exactly. Use float32 (or the float64 that dividing by 255 gives).")
        match = scaled_images_match(x, images)
        if match == "exact":
            continue                 # the division itself, so within [0, 1]: no more passes over the 376 MB
        low, high = float(x.min()), float(x.max())
        if low < 0 or high > 1:
            fail(f"{name} の値は 0〜1 のはずですが、{low:g}〜{high:g} でした。255 で割りましたか？",
                 f"{name} should hold values within [0, 1], found [{low:g}, {high:g}]. Did you divide by 255?")
        if not match:
            fail(f"{name} の中身が、MNIST の画像を並べ直して 255 で割ったものと一致しません。",
                 f"{name} does not equal the MNIST images reshaped and divided by 255.")


def scaled_images_match(x, images, chunk=10000) -> str:
    """How x compares with the images reshaped to rows of 784 and divided by 255, a block at a time (x may be
    376 MB): "exact" (the division's own result, as the lecture's ``/ 255`` in float64 gives), "close" (within
    np.allclose: float32, another order of operations) or "" (neither)."""
    match = "exact"
    for i in range(0, len(images), chunk):
        block, expected = x[i:i + chunk], images[i:i + chunk].reshape(-1, N_PIXELS) / 255
        if np.array_equal(block, expected):
            continue
        if not np.allclose(block, expected, atol=1e-6):
            return ""
        match = "close"
    return match


@check("one_hot", points=1, public=True,
       title=("y_train・y_test を one-hot 表現 (枚数, 10) にする", "y_train, y_test one-hot encoded, shape (n, 10)"))
def test_one_hot(student, dataset):
    for name, labels in (("y_train", dataset.y_train), ("y_test", dataset.y_test)):
        y = student.array(name)
        if y.ndim == 2 and y.shape[1] == N_CLASSES:
            expect_rows(name, y, len(labels))
        expect_shape(name, y, (len(labels), N_CLASSES))
        if not (np.isin(y, (0, 1)).all() and (np.asarray(y).sum(axis=1) == 1).all()):
            fail(f"{name} の各行は 1 がちょうど 1 つ、残りが 0 (one-hot) のはずですが、そうなっていない行があります。",
                 f"Every row of {name} should be one-hot (a single 1, the rest 0); some rows are not.")
        wrong = int((np.asarray(y).argmax(axis=1) != labels).sum())
        if wrong:
            fail(f"{name} の {wrong} 行で、1 の位置が正解ラベルと合っていません。",
                 f"In {wrong} rows of {name} the 1 is not at the true label.")


@check("param_count", points=2, public=True,
       title=("モデルのパラメータ数が 25,450", "the model has 25,450 parameters"))
def test_param_count(model, record_property):
    found = sum(int(np.prod(w.shape)) for w in model.weights)   # counted here, not model.count_params()
    record_property("param_count", found)
    if found != EXPECTED_PARAMS:
        fail(f"パラメータ数は 25,450 ((784+1)×32 + (32+1)×10) のはずですが、{found:,} でした。",
             f"The model should have 25,450 parameters ((784+1)×32 + (32+1)×10), found {found:,}.")


def describe(plan) -> str:
    return " → ".join(f"{k}({u}, {a})" if k == "Dense" else k for k, u, a in plan) or "(no layers)"


@check("architecture", points=2,
       title=("Dense(32, relu) → Dense(10, softmax) のモデル", "a Dense(32, relu) → Dense(10, softmax) model"))
def test_architecture(model):
    require_layers(model, describe(EXPECTED_LAYERS))
    inputs = getattr(model, "inputs", None) or []
    input_shape = tuple(inputs[0].shape[1:]) if len(inputs) == 1 else None
    if input_shape != (N_PIXELS,):
        fail(f"モデルの入力は 784 個 (input_shape=(784,)) のはずですが、{input_shape} でした。",
             f"The model should take 784 inputs (input_shape=(784,)), found {input_shape}.")
    plan = layer_plan(model)
    if plan != EXPECTED_LAYERS:
        fail(f"モデルは Dense(32, relu) → Dense(10, softmax) のはずですが、{describe(plan)} でした。",
             f"The model should be Dense(32, relu) → Dense(10, softmax), found {describe(plan)}.")


def is_categorical_accuracy(entry) -> bool:
    kind, name = keras_identity(entry)
    return squashed(name) in CATEGORICAL_ACCURACY[kind]


def categorical_accuracy_names(compile_config: dict | None) -> list[str]:
    """The names under which the history records a categorical accuracy (e.g. ['accuracy'] or ['acc'])."""
    cfg = compile_config or {}
    names = [history_name(m) for m in flat_metrics(cfg.get("metrics")) if is_categorical_accuracy(m)]
    weighted = [history_name(m) for m in flat_metrics(cfg.get("weighted_metrics")) if is_categorical_accuracy(m)]
    return names + weighted + [f"weighted_{n}" for n in weighted]


@check("compile", points=1,
       title=("categorical_crossentropy・Adam・accuracy で compile",
              "compiled with categorical_crossentropy, Adam, accuracy"))
def test_compile(saved_model):
    cfg = saved_model.compile_config
    if not cfg:
        fail("model.compile(...) が実行されていません。",
             "model.compile(...) was not run.")
    loss, optimizer = cfg.get("loss"), cfg.get("optimizer")
    if squashed(keras_identity(loss)[1]) != "categoricalcrossentropy":
        fail(f"損失関数は 'categorical_crossentropy' のはずですが、{describe_keras(loss)} でした。",
             f"The loss should be 'categorical_crossentropy', found {describe_keras(loss)}.")
    if squashed(keras_identity(optimizer)[1]) != "adam":
        fail(f"最適化アルゴリズムは 'Adam' のはずですが、{describe_keras(optimizer)} でした。",
             f"The optimizer should be 'Adam', found {describe_keras(optimizer)}.")
    metrics = flat_metrics(cfg.get("metrics")) + flat_metrics(cfg.get("weighted_metrics"))
    if any(map(is_categorical_accuracy, metrics)):
        return
    given = ", ".join(map(describe_keras, metrics)) or "なし / none"
    if any(keras_identity(m) in (("class", "Accuracy"), ("function", "accuracy")) for m in metrics):
        fail(f"metrics の Accuracy は、one-hot の正解と予測した確率が完全に一致する割合を数えるため、ほぼ 0 になります。"
             f"metrics=['accuracy'] (または CategoricalAccuracy) を使ってください (指定されたもの: {given})。",
             f"keras.metrics.Accuracy counts exact equality of the one-hot labels with the predicted probabilities, "
             f"so it stays near 0. Use metrics=['accuracy'] (or CategoricalAccuracy) instead (given: {given}).")
    fail(f"metrics に 'accuracy' (カテゴリ正解率) が含まれていません (指定されたもの: {given})。",
         f"'accuracy' (categorical accuracy) is not among the metrics (given: {given}).")


@check("fit", points=1,
       title=("epochs={epochs}, batch_size={batch_size}, validation_split={validation_split} で学習",
              "trained with epochs={epochs}, batch_size={batch_size}, validation_split={validation_split}"))
def test_fit(student, assignment, request):
    expected = assignment.expected
    history, params = student.history()
    epochs, steps, split = expected["epochs"], steps_per_epoch(expected), expected["validation_split"]
    batch_size, n_fit = expected["batch_size"], N_TRAIN - validation_rows(expected)
    ran = len(history.get("loss", []))
    if ran != epochs or params.get("epochs") != epochs:
        fail(f"epochs={epochs} で学習するはずですが、{ran} エポックでした。",
             f"Training should run epochs={epochs}; it ran {ran} epochs.")
    if "val_loss" not in history:
        fail(f"検証用データがありません。validation_split={split} を指定してください。",
             f"There is no validation data. Pass validation_split={split}.")
    if params.get("steps") != steps:
        if "x_train" in student.defined_arrays():
            expect_rows("x_train", student.array("x_train"), N_TRAIN)
        fail(f"1 エポックは {steps} ステップ ({n_fit:,} 枚 ÷ {batch_size}) のはずですが、"
             f"{params.get('steps')} でした。batch_size={batch_size} と validation_split={split} を確かめてください。",
             f"An epoch should take {steps} steps ({n_fit:,} samples / {batch_size}), found "
             f"{params.get('steps')}. Check batch_size={batch_size} and validation_split={split}.")
    updates = request.getfixturevalue("saved_model").optimizer_iterations   # after the history: its messages first
    expected = epochs * steps
    if updates is None:
        fail("保存されたモデルに、重みを更新した回数 (optimizer の記録) がありません。",
             "The saved model holds no count of weight updates (no optimizer state).")
    if updates > expected and updates % steps == 0:
        fail(f"モデルは合計 {updates // steps} エポック分 ({updates:,} 回) 学習しています。fit が {updates / expected:g} 回"
             f"実行されたようです ({epochs} エポック・{expected:,} 回が 1 回分)。ランタイムを再起動して、すべてのセルを"
             "上から 1 回だけ実行してください。",
             f"The model was trained for {updates // steps} epochs in total ({updates:,} updates): fit ran "
             f"{updates / expected:g} times ({epochs} epochs, {expected:,} updates, is one run). Restart the runtime "
             "and run all cells once, from the top.")
    if updates != expected:
        fail(f"モデルの重みが更新された回数は {expected:,} 回のはずですが、保存されたモデルでは {updates:,} 回でした。"
             "学習の記録と実際の学習が合いません。",
             f"The model's weights should have been updated {expected:,} times; the saved model says {updates:,}. "
             "The training record does not match the training done.")


@check("val_accuracy", points=2,
       title=("学習後の val_accuracy が基準以上", "the trained model's val_accuracy reaches the threshold"))
def test_val_accuracy(student, dataset, assignment, request, record_property):
    expected = assignment.expected
    split, threshold = expected["validation_split"], expected["val_accuracy_threshold"]
    history, _ = student.history()
    x_train = student.array("x_train")
    expect_rows("x_train", x_train, N_TRAIN)
    if len(x_train) != N_TRAIN:
        fail(f"x_train は {N_TRAIN:,} 枚のはずですが、{len(x_train):,} 枚でした。",
             f"x_train should hold {N_TRAIN:,} samples, found {len(x_train):,}.")
    if "val_loss" not in history:
        fail(f"学習の記録に検証用データの結果がありません。validation_split={split} で学習させてください。",
             f"The training record has no validation results. Train with validation_split={split}.")
    n_val = validation_rows(expected)
    predicted = request.getfixturevalue("predict")(x_train[-n_val:]).argmax(axis=1)
    recomputed = float((predicted == dataset.y_train[-n_val:]).mean())
    record_property("val_accuracy", recomputed)
    names = categorical_accuracy_names(request.getfixturevalue("saved_model").compile_config)
    reported = next((history[f"val_{n}"] for n in names if history.get(f"val_{n}")), None)
    if reported is None:
        note(record_property,
             "学習の記録にカテゴリ正解率 (metrics の 'accuracy') がないため、記録とは比べず、採点側で検証用データから"
             "計算した値だけで判定しました。",
             "The training record holds no categorical accuracy (metrics 'accuracy'), so it was not compared: "
             "val_accuracy was judged on the grader's own evaluation of the validation data alone.")
    else:
        record_property("val_accuracy_reported", float(reported[-1]))
        if abs(recomputed - reported[-1]) > AGREEMENT:
            fail(f"記録された最後の val_accuracy ({reported[-1]:.4f}) と、採点側で検証用データ (x_train の最後の "
                 f"{n_val:,} 枚) から計算し直した値 ({recomputed:.4f}) が一致しません。",
                 f"The last recorded val_accuracy ({reported[-1]:.4f}) does not match the grader's own evaluation "
                 f"on the validation data (the last {n_val:,} samples of x_train): {recomputed:.4f}.")
    if recomputed < threshold:
        fail(f"val_accuracy は {threshold:g} 以上のはずですが、{recomputed:.4f} でした。",
             f"val_accuracy should reach {threshold:g}, found {recomputed:.4f}.")


@check("predict", points=2,
       title=("test2 = model.predict(x_test) で x_test[1] を 2 と予測",
              "test2 = model.predict(x_test) predicts x_test[1] as a 2"))
def test_predict(student, request, record_property):
    test2 = student.array("test2")
    if test2.shape == (N_TEST,):
        fail(f"test2 の形が {shape_text(test2.shape)} で、予測した数字だけになっています。test2 には各数字の確率 "
             f"{shape_text((N_TEST, N_CLASSES))} を入れてください: test2 = model.predict(x_test) (argmax はしない)。",
             f"test2 has shape {shape_text(test2.shape)}: it holds predicted digits. It should hold the "
             f"probabilities of each digit, shape {shape_text((N_TEST, N_CLASSES))}: test2 = model.predict(x_test), "
             "without argmax.")
    expect_shape("test2", test2, (N_TEST, N_CLASSES))
    x_test = student.array("x_test")
    if len(x_test) != N_TEST:
        fail(f"x_test は {N_TEST:,} 枚のはずですが、{len(x_test):,} 枚でした。",
             f"x_test should hold {N_TEST:,} samples, found {len(x_test):,}.")
    own = request.getfixturevalue("predict")(x_test)
    if not np.allclose(np.asarray(test2, dtype=np.float64), own, atol=SAME_PREDICTION):
        fail("test2 が、学習後の model で x_test を予測した結果 (model.predict(x_test)) と一致しません。",
             "test2 does not match the trained model's prediction for x_test (model.predict(x_test)).")
    digit = int(np.argmax(own[SAMPLE_INDEX]))
    record_property("predicted_digit_x_test_1", digit)
    if digit != SAMPLE_DIGIT:
        fail(f"x_test[1] は 2 の画像ですが、いちばん確率が高い数字は {digit} でした。",
             f"x_test[1] shows a 2, but the most probable digit predicted is {digit}.")
