"""``python -m autograder demo [ID]``: grade an assignment's reference (full marks), its untouched student notebook
(zero, no crash) and one wrong sample (settings' DEMO_SAMPLE, else the first samples/submitted-*.ipynb), offline,
and print their tables. Exits non-zero if the first two do not score as they must,
so the demo doubles as a smoke test of a new machine."""

from __future__ import annotations

from pathlib import Path

from .course.config import Config
from .course.dataset import load_dataset
from .errors import ConfigError
from .grading.grade import grade_notebook
from .reports.report import format_table


def run_demo(config: Config, device: str = "auto") -> int:
    assignment = config.assignment
    data = load_dataset(config)
    sample = demo_sample(config)
    cases = [
        ("reference (expects full marks)", assignment.reference_notebook),
        ("student notebook, untouched (expects 0)", assignment.release_notebook),
        (f"wrong sample: {sample.stem}", sample),
    ]
    print(f"{assignment.id}: {assignment.title_ja} / {assignment.title_en}")
    results = []
    for title, path in cases:
        print(f"\n== {title}", flush=True)
        # a demonstration, not an official grade: the CPU will do when there is no GPU
        result = grade_notebook(path, config, device=device, data=data, cpu_fallback=True)
        print(format_table(result), flush=True)
        results.append(result)
    reference, untouched, _ = results
    ok = reference.score == reference.max_score and untouched.score == 0
    print(f"\ndemo {'OK' if ok else 'FAILED'}: reference {reference.score:g}/{reference.max_score:g}, "
          f"untouched {untouched.score:g}/{untouched.max_score:g}, wrong sample {results[2].score:g}/"
          f"{results[2].max_score:g}")
    return 0 if ok else 1


def demo_sample(config: Config) -> Path:
    assignment = config.assignment
    if assignment.demo_sample:
        path = assignment.samples_dir / f"{assignment.demo_sample}.ipynb"
        if not path.is_file():
            raise ConfigError(f"{assignment.settings_path}: setting DEMO_SAMPLE names {path}, which does not exist")
        return path
    found = sorted(assignment.samples_dir.glob("submitted-*.ipynb"))
    if not found:
        raise ConfigError(f"{assignment.id} has no sample to show: add {assignment.samples_dir}/submitted-*.ipynb "
                          "or set DEMO_SAMPLE in its settings.py")
    return found[0]
