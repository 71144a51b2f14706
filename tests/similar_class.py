"""A class built for the similarity report (tests/test_similarity.py, bench/similarity.py): assignment3's released
notebook answered by students, as they hand it in from Colab — their own answers (the reference's or one of its
usual variants), cells they added, the outputs of their own run (training logs with their own random losses), and
what Colab records (the course copy's provenance and cell ids, each student's account in the cells they ran, ids
of the cells and outputs they made) — and the ways one notebook comes from another. No kernel runs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
import string

import nbformat

from autograder import PROJECT_ROOT

REFERENCE = PROJECT_ROOT / "reference" / "assignment3" / "assignment3.ipynb"
RELEASE = PROJECT_ROOT / "assignments" / "assignment3" / "assignment3.ipynb"
COURSE_COPY = "1CourseCopyTheInstructorShared"        # Colab: the file every student made their copy from
SOLUTION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION\n?", re.S)

# Each solution cell's answer as honest students write it: the reference's, and the usual other ways.
VARIANTS = {
    "reshape": ["x_train = x_train.reshape(60000, 784) / 255\nx_test = x_test.reshape(10000, 784) / 255\n",
                "x_train = x_train.reshape(-1, 784) / 255\nx_test = x_test.reshape(-1, 784) / 255\n",
                "x_train = x_train.reshape(60000, 784).astype('float32') / 255.0\n"
                "x_test = x_test.reshape(10000, 784).astype('float32') / 255.0\n",
                "x_train = x_train.reshape((60000, 28 * 28)) / 255\nx_test = x_test.reshape((10000, 28 * 28)) / 255\n"],
    "one_hot": ["y_train = to_categorical(y_train, 10)\ny_test = to_categorical(y_test, 10)\n",
                "y_train = to_categorical(y_train)\ny_test = to_categorical(y_test)\n",
                "y_train = to_categorical(y_train, num_classes=10)\ny_test = to_categorical(y_test, num_classes=10)\n"],
    "model": ["model = Sequential()\nmodel.add(Dense(32, input_shape=(784,), activation='relu'))\n"
              "model.add(Dense(10, activation='softmax'))\n",
              "model = Sequential([\n    Dense(32, activation='relu', input_shape=(784,)),\n"
              "    Dense(10, activation='softmax'),\n])\n",
              "model = Sequential()\nmodel.add(Dense(units=32, activation='relu', input_dim=784))\n"
              "model.add(Dense(units=10, activation='softmax'))\n"],
    "compile": ["model.compile(loss='categorical_crossentropy', optimizer='Adam', metrics=['accuracy'])\n",
                "model.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])\n"],
    "fit": ["result = model.fit(x_train, y_train, epochs=30, batch_size=64, validation_split=0.2)\n",
            "result = model.fit(x_train, y_train, batch_size=64, epochs=30, validation_split=0.2, verbose=1)\n"],
    "predict": ["test2 = model.predict(x_test)\n", "test2 = model.predict(x_test, verbose=0)\n"],
}
COMMENTS = ["# 自分で書いたコード", "# ここを埋める", "# my answer", "# 授業のスライドを参考に", "# TODO: 確認", "# done"]

# What honest students add to look around: common shapes, their own numbers.
EXPLORE = [
    "print(x_train.mean(), x_train.std())\n",
    "plt.imshow(x_train[{i}].reshape(28, 28), cmap='gray')\nplt.title(str(y_train[{i}].argmax()))\nplt.show()\n",
    "print(result.history['val_accuracy'][-1])\n",
    "wrong = np.where(test2.argmax(axis=1) != y_test.argmax(axis=1))[0]\nprint(len(wrong), wrong[:{i}])\n",
]

# A student's own sizeable work, one per student who is copied from (no two alike).
OWN_WORK = [
    "# 学習曲線を対数目盛りで描く\ndef plot_curves(hist, keys=('loss', 'val_loss')):\n"
    "    fig, ax = plt.subplots(figsize=(6, 3))\n    for key in keys:\n"
    "        ax.plot(hist.history[key], marker='o', label=key)\n    ax.set_yscale('log')\n"
    "    ax.grid(alpha=0.3)\n    ax.legend(loc='upper right')\n    return fig\n\nplot_curves(result)\n",
    "# 間違えた画像を並べて見る\nmistakes = np.flatnonzero(test2.argmax(1) != y_test.argmax(1))\n"
    "fig, axes = plt.subplots(3, 5, figsize=(9, 6))\nfor ax, k in zip(axes.flat, mistakes[:15]):\n"
    "    ax.imshow(x_test[k].reshape(28, 28), cmap='binary')\n"
    "    ax.set_title(f'{test2[k].argmax()} ({y_test[k].argmax()})', fontsize=8)\n    ax.axis('off')\n"
    "fig.tight_layout()\n",
    "# クラスごとの正解率\nfrom collections import Counter\nhits, totals = Counter(), Counter()\n"
    "for guess, truth in zip(test2.argmax(axis=1), y_test.argmax(axis=1)):\n    totals[truth] += 1\n"
    "    hits[truth] += int(guess == truth)\nfor digit in sorted(totals):\n"
    "    print(digit, round(hits[digit] / totals[digit], 4))\n",
    "# 確信度のヒストグラム\nconfidence = test2.max(axis=1)\nbins = np.linspace(0.1, 1.0, 19)\n"
    "counts, edges = np.histogram(confidence, bins=bins)\nfor lo, hi, c in zip(edges[:-1], edges[1:], counts):\n"
    "    print(f'{lo:.2f}-{hi:.2f}: ' + '#' * int(c // 100))\nprint('mean confidence', confidence.mean())\n",
    "# 混同行列を自分で数える\nconfusion = np.zeros((10, 10), dtype=int)\n"
    "for t, p in zip(y_test.argmax(axis=1), test2.argmax(axis=1)):\n    confusion[t, p] += 1\n"
    "print(confusion)\nprint('most confused:', np.unravel_index(np.argmax(confusion - np.diag(np.diag(confusion))), "
    "confusion.shape))\n",
    "# 重みの大きさを見る\nfor layer in model.layers:\n    weights, biases = layer.get_weights()\n"
    "    print(layer.name, weights.shape, float(np.abs(weights).mean()), float(biases.std()))\n"
    "first = model.layers[0].get_weights()[0]\nplt.imshow(first[:, 0].reshape(28, 28), cmap='coolwarm')\nplt.show()\n",
    "# 学習率を変えて比べる\nfrom keras.optimizers import Adam\nscores = {}\nfor rate in (0.0003, 0.001, 0.003):\n"
    "    trial = keras.models.clone_model(model)\n    trial.compile(optimizer=Adam(learning_rate=rate), "
    "loss='categorical_crossentropy', metrics=['accuracy'])\n"
    "    h = trial.fit(x_train[:6000], y_train[:6000], epochs=3, verbose=0, validation_split=0.1)\n"
    "    scores[rate] = max(h.history['val_accuracy'])\nprint(scores)\n",
    "# 上位 3 つの候補を見る\ntop3 = np.argsort(test2, axis=1)[:, ::-1][:, :3]\n"
    "in_top3 = np.mean([y in row for y, row in zip(y_test.argmax(axis=1), top3)])\n"
    "print('top-3 accuracy', in_top3)\nfor n in range(4):\n    print(n, top3[n], np.round(test2[n][top3[n]], 3))\n",
    "# 平均画像を数字ごとに描く\nlabels = y_train.argmax(axis=1)\nfig, row = plt.subplots(1, 10, figsize=(12, 2))\n"
    "for d in range(10):\n    mean_image = x_train[labels == d].mean(axis=0).reshape(28, 28)\n"
    "    row[d].imshow(mean_image, cmap='magma')\n    row[d].set_xticks([])\n    row[d].set_yticks([])\n",
    "# エポックごとの差を表にする\nimport pandas as pd\ntable = pd.DataFrame(result.history)\n"
    "table['gap'] = table['accuracy'] - table['val_accuracy']\ntable.index = table.index + 1\n"
    "print(table.round(4).to_string())\nprint('largest gap at epoch', int(table['gap'].idxmax()))\n",
    "# ノイズを加えても当たるか\nnoise = np.random.default_rng(0).normal(0, 0.2, x_test.shape)\n"
    "noisy = np.clip(x_test + noise, 0, 1)\nloss_n, acc_n = model.evaluate(noisy, y_test, verbose=0)\n"
    "loss_c, acc_c = model.evaluate(x_test, y_test, verbose=0)\nprint(f'clean {acc_c:.4f} noisy {acc_n:.4f}')\n",
    "# 予測が最も迷った画像\nsorted_probs = np.sort(test2, axis=1)\nmargin = sorted_probs[:, -1] - sorted_probs[:, -2]\n"
    "hardest = np.argsort(margin)[:6]\nfor spot, idx in enumerate(hardest):\n    plt.subplot(2, 3, spot + 1)\n"
    "    plt.imshow(x_test[idx].reshape(28, 28), cmap='Greys')\n    plt.title(f'margin {margin[idx]:.3f}')\n"
    "plt.tight_layout()\nplt.show()\n",
    "# 検証用の正解率が最も高かったエポック\nval = np.array(result.history['val_accuracy'])\n"
    "best_epoch = int(val.argmax()) + 1\nprint('best epoch', best_epoch, 'val_accuracy', round(float(val.max()), 4))\n"
    "print('last minus best', round(float(val[-1] - val.max()), 4))\n",
]


def _id(rng: random.Random, n: int = 12) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def template() -> dict:
    """The released notebook as a student opens it in Colab from the course's shared copy: its provenance, and
    the ids Colab gave the cells in that copy (the same for everyone)."""
    nb = json.loads(RELEASE.read_text(encoding="utf-8"))
    nb["metadata"].setdefault("colab", {})["provenance"] = [{"file_id": COURSE_COPY, "timestamp": 1715000000000}]
    for cell in nb["cells"]:
        cell["metadata"]["id"] = hashlib.sha256(cell["id"].encode()).hexdigest()[:12]
    return nb


def reference_answers() -> dict[str, str]:
    """Each solution cell's answer as the reference writes it (the part between the solution markers)."""
    nb = json.loads(REFERENCE.read_text(encoding="utf-8"))
    return {c["id"]: SOLUTION.search("".join(c["source"])).group(1) for c in nb["cells"]
            if c.get("metadata", {}).get("nbgrader", {}).get("solution")}


def honest_answers(rng: random.Random, comment: bool = True) -> dict[str, str]:
    """One of the usual ways to answer each cell, with a comment of the student's own now and then."""
    answers = {}
    for gid, options in VARIANTS.items():
        text = rng.choice(options)
        answers[gid] = (rng.choice(COMMENTS) + "\n" + text) if comment and rng.random() < 0.3 else text
    return answers


def exploration(rng: random.Random) -> list[tuple[str, str]]:
    """(after which cell, source) of the small cells an honest student adds."""
    return [("predict", rng.choice(EXPLORE).format(i=rng.randrange(1, 10000))) for _ in range(rng.randrange(0, 3))]


def solved(answers: dict[str, str], added: list[tuple[str, str]] = ()) -> dict:
    """The template with ``answers`` written into the solution cells (the given lines around them kept) and the
    ``added`` cells after the cells they follow; not run."""
    nb = template()
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    sources = {c["id"]: "".join(c["source"]) for c in reference["cells"]}
    for cell in nb["cells"]:
        if cell["id"] in answers:
            answer = answers[cell["id"]]
            cell["source"] = SOLUTION.sub(lambda _, answer=answer: answer, sources[cell["id"]])
    for after, source in added:
        at = next(i for i, c in enumerate(nb["cells"]) if c["id"] == after) + 1
        while at < len(nb["cells"]) and nb["cells"][at]["metadata"].get("added"):
            at += 1
        cell = nbformat.v4.new_code_cell(source)
        cell["metadata"]["added"] = True
        nb["cells"].insert(at, dict(cell))
    for cell in nb["cells"]:
        cell["metadata"].pop("added", None)
    return nb


def given_new_ids(nb: dict, rng: random.Random) -> dict:
    """The ids an editor gives the cells a student made (random: never the same in two files)."""
    for cell in nb["cells"]:
        if "nbgrader" not in cell["metadata"]:
            cell["id"] = _id(rng, 8)
            cell["metadata"]["id"] = _id(rng)
    return nb


def training_log(rng: random.Random, epochs: int = 3) -> str:
    """What Keras prints for a fit in a notebook: its losses are this run's alone."""
    lines, loss, acc = [], rng.uniform(0.35, 0.5), rng.uniform(0.86, 0.9)
    for epoch in range(1, epochs + 1):
        val_loss, val_acc = loss * rng.uniform(0.55, 0.7), min(0.99, acc + rng.uniform(0.02, 0.05))
        lines.append(f"Epoch {epoch}/{epochs}\n\r750/750 ━━━━━━━━━━━━━━━━━━━━ 3s 4ms/step - accuracy: {acc:.4f} - "
                     f"loss: {loss:.4f} - val_accuracy: {val_acc:.4f} - val_loss: {val_loss:.4f}")
        loss, acc = loss * rng.uniform(0.5, 0.7), min(0.99, acc + rng.uniform(0.01, 0.04))
    return "\n".join(lines) + "\n"


def probabilities(rng: random.Random) -> str:
    values = [rng.random() ** 4 / 50 for _ in range(10)]
    values[2] = 1 - sum(values) + values[2]
    return "[" + " ".join(f"{v:.8f}" for v in values) + "]\n"


def run(nb: dict, rng: random.Random, account: tuple[str, str] | None) -> dict:
    """The notebook as a run in Colab leaves it: outputs (this run's random numbers where a run has them), and the
    execution record of the account that ran it."""
    deterministic = {"load_data": "(60000, 28, 28) (60000,)\n(10000, 28, 28) (10000,)\n",
                     "reshape": "(60000, 784) (10000, 784)\n", "one_hot": "(60000, 10) (10000, 10)\n",
                     "predict": "(10000, 10)\n"}
    for count, cell in enumerate((c for c in nb["cells"] if c["cell_type"] == "code"), start=1):
        gid = cell["metadata"].get("nbgrader", {}).get("grade_id")
        source = "".join(cell["source"])
        if gid == "fit":
            text = training_log(rng)
        elif gid == "show_digit":
            text = probabilities(rng) + "[0. 0. 1. 0. 0. 0. 0. 0. 0. 0.]\n"
        elif gid in deterministic:
            text = deterministic[gid]
        elif "x_train.mean()" in source:
            text = "0.1306604762738429 0.3081078038564622\n"          # the same for everyone who prints it
        elif "print(" in source:
            text = " ".join(f"{rng.random():.6f}" for _ in range(3)) + "\n"
        else:
            text = ""
        cell["execution_count"] = count
        cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": text}] if text else []
        if text:
            cell["metadata"]["outputId"] = f"{_id(rng, 8)}-{_id(rng, 4)}-{_id(rng, 4)}"
        if account:
            cell["metadata"]["executionInfo"] = {
                "status": "ok", "timestamp": 1715700000000 + rng.randrange(10**7), "user_tz": -540,
                "elapsed": rng.randrange(50, 90000), "user": {"displayName": account[0], "userId": account[1]}}
    return nb


def account_of(student: str) -> tuple[str, str]:
    return f"Student {student.upper()}", str(int(hashlib.sha256(student.encode()).hexdigest()[:15], 16))


def honest(student: str, rng: random.Random, answers: dict[str, str] | None = None,
           added: list[tuple[str, str]] | None = None) -> dict:
    """A student's own notebook, run in their own account."""
    nb = solved(answers or honest_answers(rng), exploration(rng) if added is None else added)
    return run(given_new_ids(nb, rng), rng, account_of(student))


def rerun(nb: dict, rng: random.Random, student: str) -> dict:
    """Someone else's file run again in ``student``'s account: new outputs, the file's cell ids kept."""
    return run(copy.deepcopy(nb), rng, account_of(student))


RENAMES = {"plot_curves": "draw_history", "hist": "h", "keys": "names", "fig": "figure", "ax": "axis",
           "key": "name", "mistakes": "errors", "k": "j", "axes": "grid", "hits": "ok", "totals": "seen",
           "guess": "g", "truth": "t", "digit": "d", "confidence": "conf", "bins": "edges_in", "counts": "n",
           "edges": "e", "lo": "a", "hi": "b", "c": "m", "confusion": "cm", "weights": "w", "biases": "b0",
           "first": "w1", "layer": "lay"}


def disguised(source: str) -> str:
    """The same code typed again: its own names renamed, its comments reworded, its lines laid out anew."""
    out = []
    for line in source.splitlines():
        if line.lstrip().startswith("#"):
            out.append(line.split("#")[0] + "# 自分の言葉で書き直したコメント")
            continue
        for old, new in RENAMES.items():
            line = re.sub(rf"(?<![\w.'\"]){old}(?![\w'\"])", new, line)
        out.append(line.replace(", ", ",  ").replace("=(", "= ("))
    return "\n".join(out) + "\n"
