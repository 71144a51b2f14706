"""``python -m autograder demo``: grade the reference (full marks), the untouched student notebook (zero, no crash)
and one wrong sample, offline, and print their tables. Exits non-zero if the first two do not score as they must,
so the demo doubles as a smoke test of a new machine."""

from __future__ import annotations

from .config import Config
from .dataset import load_mnist
from .grade import grade_notebook
from .report import format_table

WRONG_SAMPLE = "submitted-dense64-functional.ipynb"


def run_demo(config: Config, device: str = "auto") -> int:
    mnist = load_mnist(config.dataset_dir)
    cases = [
        ("reference (expects full marks)", config.reference_notebook),
        ("student notebook, untouched (expects 0)", config.release_notebook),
        ("wrong sample: Dense(64), functional API", config.reference_notebook.parent / "samples" / WRONG_SAMPLE),
    ]
    results = []
    for title, path in cases:
        print(f"\n== {title}", flush=True)
        # a demonstration, not an official grade: the CPU will do when there is no GPU
        result = grade_notebook(path, config, device=device, mnist=mnist, cpu_fallback=True)
        print(format_table(result), flush=True)
        results.append(result)
    reference, untouched, _ = results
    ok = reference.score == reference.max_score and untouched.score == 0
    print(f"\ndemo {'OK' if ok else 'FAILED'}: reference {reference.score:g}/{reference.max_score:g}, "
          f"untouched {untouched.score:g}/{untouched.max_score:g}, wrong sample {results[2].score:g}/"
          f"{results[2].max_score:g}")
    return 0 if ok else 1
