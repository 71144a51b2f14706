"""Speed mode, measured: does fusing the student's training loop change what the graders see?

For each seed, the lecture's model is trained twice in fresh processes, exactly as a graded kernel trains it —
the harness's own ``setup`` (pinned MNIST, seed, and in speed mode the fused ``Model.fit``) followed by the
student's code from the reference notebook — once with Keras's own loop (``--exact-fit``) and once fused
(FUSED_FIT_STEPS from grader_config.py). It reports the final val_accuracy of each, their paired differences,
a two-sample t statistic, and the time of ``fit``.

    python bench/fused_fit.py [--seeds 5] [--epochs 30]

Writes bench/results/fused_fit.json. A benchmark, not a test: minutes of CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autograder.course import dataset  # noqa: E402
from autograder.course.assignment import config_for  # noqa: E402
from autograder.course.config import load_config  # noqa: E402
from autograder.run.execute import KERNEL_SIDE  # noqa: E402

STUDENT_CODE = """
from tensorflow.keras.datasets import mnist
from tensorflow.keras.utils import to_categorical
from keras.models import Sequential
from keras.layers import Dense
(x_train, y_train), (x_test, y_test) = mnist.load_data()
x_train = x_train.reshape(60000, 784) / 255
y_train = to_categorical(y_train, 10)
model = Sequential()
model.add(Dense(32, input_shape=(784,), activation='relu'))
model.add(Dense(10, activation='softmax'))
model.compile(loss='categorical_crossentropy', optimizer='Adam', metrics=['accuracy'])
started = time.perf_counter()
result = model.fit(x_train, y_train, epochs=EPOCHS, batch_size=64, validation_split=0.2, verbose=0)
fit_seconds = time.perf_counter() - started
print(json.dumps({"val_accuracy": result.history["val_accuracy"][-1], "loss": result.history["loss"][-1],
                  "updates": int(model.optimizer.iterations), "fit_seconds": fit_seconds,
                  "steps_per_execution_after": model.steps_per_execution}))
"""


def train(npz: Path, seed: int, epochs: int, fused_steps: int) -> dict:
    program = (f"import json, os, time, warnings\nwarnings.filterwarnings('ignore')\n"
               f"exec(compile(open({str(KERNEL_SIDE)!r}).read(), 'kernel_side', 'exec'), side := {{}})\n"
               f"side['setup']({str(npz)!r}, {seed}, {fused_steps})\nEPOCHS = {epochs}\n" + STUDENT_CODE)
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         env={"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "-1", "PATH": "/usr/bin:/bin",
                              "PYTHONHASHSEED": str(seed)})
    if run.returncode:
        raise SystemExit(run.stderr[-3000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def t_statistic(a: list[float], b: list[float]) -> float:
    """Welch's t for two independent samples (0 when both are constant and equal)."""
    va, vb = statistics.variance(a) if len(a) > 1 else 0.0, statistics.variance(b) if len(b) > 1 else 0.0
    spread = (va / len(a) + vb / len(b)) ** 0.5
    diff = statistics.mean(a) - statistics.mean(b)
    return 0.0 if spread == 0 and diff == 0 else (diff / spread if spread else float("inf"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    config = config_for(load_config(), "assignment3")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        npz = dataset.write_keras_npz(dataset.load_mnist(config.dataset_folder("mnist")), Path(tmp) / "mnist.npz")
        for seed in range(config.seed, config.seed + args.seeds):
            exact = train(npz, seed, args.epochs, 1)
            fused = train(npz, seed, args.epochs, config.fused_fit_steps)
            rows.append({"seed": seed, "exact": exact, "fused": fused})
            print(f"seed {seed}: val_accuracy exact {exact['val_accuracy']:.6f} fused {fused['val_accuracy']:.6f}"
                  f" · updates {exact['updates']} / {fused['updates']} · fit {exact['fit_seconds']:.1f} s → "
                  f"{fused['fit_seconds']:.1f} s", flush=True)
    exact_acc = [r["exact"]["val_accuracy"] for r in rows]
    fused_acc = [r["fused"]["val_accuracy"] for r in rows]
    diffs = [f - e for e, f in zip(exact_acc, fused_acc)]
    summary = {
        "epochs": args.epochs, "fused_fit_steps": config.fused_fit_steps, "seeds": len(rows),
        "val_accuracy_exact_mean": statistics.mean(exact_acc), "val_accuracy_fused_mean": statistics.mean(fused_acc),
        "val_accuracy_exact_sd": statistics.pstdev(exact_acc), "val_accuracy_fused_sd": statistics.pstdev(fused_acc),
        "paired_difference_max_abs": max(abs(d) for d in diffs), "welch_t": t_statistic(fused_acc, exact_acc),
        "identical_runs": sum(d == 0 for d in diffs),
        "same_updates": all(r["exact"]["updates"] == r["fused"]["updates"] for r in rows),
        "fit_seconds_exact_median": statistics.median(r["exact"]["fit_seconds"] for r in rows),
        "fit_seconds_fused_median": statistics.median(r["fused"]["fit_seconds"] for r in rows),
        "runs": rows,
    }
    summary["fit_speedup"] = summary["fit_seconds_exact_median"] / summary["fit_seconds_fused_median"]
    out = ROOT / "bench" / "results" / "fused_fit.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"val_accuracy exact {summary['val_accuracy_exact_mean']:.5f} ± {summary['val_accuracy_exact_sd']:.5f} · "
          f"fused {summary['val_accuracy_fused_mean']:.5f} ± {summary['val_accuracy_fused_sd']:.5f} · "
          f"max |paired difference| {summary['paired_difference_max_abs']:.2e} · Welch t {summary['welch_t']:.3f} · "
          f"{summary['identical_runs']}/{len(rows)} runs identical · same number of updates: {summary['same_updates']}")
    print(f"fit median {summary['fit_seconds_exact_median']:.1f} s → {summary['fit_seconds_fused_median']:.1f} s "
          f"({summary['fit_speedup']:.2f}×) · wrote {out}")


if __name__ == "__main__":
    main()
