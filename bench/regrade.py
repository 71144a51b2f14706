"""Benchmark (not a test): train once, regrade in seconds.

A class of ten lecture submissions (five right in different styles, five wrong in different ways; 30 epochs each)
is graded in full on this machine's CPU, in a copy of the course, by the instructor's command. Then one of the
hidden graders is changed (a message reworded: every verdict must stay as it was) and the same command is run again:
only the graders run, on the stored runs. Each run is a fresh process that pays its own start-up. Reported: both
wall times, their ratio (goal: at least 20×), whether every verdict is the same, and the store's size in total and
per student.

Usage: python bench/regrade.py [--workers N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLES = ROOT / "reference" / "assignment3" / "samples"
CLASS = {   # student → the notebook they hand in
    "s01": ROOT / "reference" / "assignment3" / "assignment3.ipynb",
    "s02": SAMPLES / "style-sequential-list.ipynb",
    "s03": SAMPLES / "style-functional-tf-keras.ipynb",
    "s04": SAMPLES / "style-compile-classes.ipynb",
    "s05": SAMPLES / "style-training-helper.ipynb",
    "s06": SAMPLES / "submitted-no-normalisation.ipynb",
    "s07": SAMPLES / "submitted-dense64-functional.ipynb",
    "s08": SAMPLES / "submitted-few-epochs.ipynb",
    "s09": SAMPLES / "submitted-labels-as-test2.ipynb",
    "s10": SAMPLES / "submitted-sigmoid-output-retyped.ipynb",
}
GRADER_CHANGE = ('f"The model should have 25,450 parameters ((784+1)×32 + (32+1)×10), found {found:,}."',
                 'f"The model should have 25,450 parameters ((784+1)×32 + (32+1)×10); it has {found:,}."')


def copy_course(folder: Path) -> Path:
    """The course as it is, in ``folder``, with its own copy of assignment3's graders to change."""
    shutil.copy(ROOT / "grader_config.py", folder / "grader_config.py")
    with open(folder / "grader_config.py", "a", encoding="utf-8") as f:
        f.write(f"\nDATA_DIR = {str(ROOT / 'data')!r}\n")
    shutil.copytree(ROOT / "reference" / "assignment3", folder / "reference" / "assignment3",
                    ignore=shutil.ignore_patterns("__pycache__", "samples"))
    shutil.copytree(ROOT / "assignments" / "assignment3", folder / "assignments" / "assignment3")
    return folder / "grader_config.py"


def full_training(notebook: Path) -> str:
    """The sample as a student would hand it in: the lecture's 30 epochs where the sample trains one quick epoch
    (the samples do, to keep the project's tests short); a sample that trains too few on purpose keeps its 5."""
    return (notebook.read_text(encoding="utf-8").replace("epochs=1,", "epochs=30,")
            .replace("train(model, 1)", "train(model, 30)"))


def hand_in(root: Path) -> None:
    """nbgrader's exchange layout: submitted/<student>/assignment3/assignment3.ipynb and its timestamp."""
    for student, notebook in CLASS.items():
        folder = root / "submitted" / student / "assignment3"
        folder.mkdir(parents=True)
        (folder / "assignment3.ipynb").write_text(full_training(notebook), encoding="utf-8")
        (folder / "timestamp.txt").write_text("2024-05-15 12:00:00.000000 UTC\n", encoding="utf-8")


def grade(course: Path, work: Path, workers: int | None) -> float:
    """The instructor's command, as a fresh process (each run pays its own start-up); → its wall time."""
    command = [sys.executable, "-m", "autograder", "--config", str(course), "grade", str(work / "class"),
               "--out", str(work / "grades"), "--device", "cpu"] + (["--workers", str(workers)] if workers else [])
    started = time.monotonic()
    run = subprocess.run(command, cwd=ROOT, text=True, stdout=subprocess.PIPE)
    seconds = time.monotonic() - started
    print(run.stdout.splitlines()[0] if run.stdout else "", flush=True)
    if run.returncode:
        sys.exit(f"grading failed (exit status {run.returncode})")
    return seconds


def verdicts(out: Path) -> dict:
    return {path.stem: [(t["name"], t["status"], t["score"]) for t in json.loads(path.read_text())["tests"]]
            for path in sorted((out / "results").glob("*.json"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, help="as grade --workers (default: the batch's own)")
    parser.add_argument("--keep", help="grade into this folder and leave it (default: a temporary one)")
    args = parser.parse_args()

    from autograder.grading.store import RunStore, format_usage, referenced_runs

    with tempfile.TemporaryDirectory(prefix="bench-regrade-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        course = copy_course(work)
        hand_in(work / "class")
        out = work / "grades" / "assignment3"          # a class goes into OUT/<assignment>/

        full_s = grade(course, work, args.workers)
        before = verdicts(out)
        results = {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}

        grader = work / "reference" / "assignment3" / "graders" / "test_assignment3.py"
        text = grader.read_text(encoding="utf-8")
        assert GRADER_CHANGE[0] in text, "the grader changed: update GRADER_CHANGE"
        grader.write_text(text.replace(*GRADER_CHANGE), encoding="utf-8")

        regrade_s = grade(course, work, args.workers)
        after = {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}
        regraded = sum(r.get("graded_from") == "regraded from the stored run" for r in after.values())
        executed = sum(r.get("graded_from") == "executed" and r["graded_at"] != results[s]["graded_at"]
                       for s, r in after.items())

        usage = RunStore(out / "store").usage(referenced_runs(out))
        same = verdicts(out) == before
        scores = " ".join(f"{s}:{r['score']:g}" for s, r in sorted(results.items()))
        print(f"\nclass of {len(CLASS)} (30 epochs, CPU, each run a fresh `python -m autograder grade`), "
              f"scores {scores}")
        print(f"full grading:  {full_s:7.1f} s")
        print(f"regrade:       {regrade_s:7.1f} s  ({regraded} regraded from stored runs, {executed} executed)")
        print(f"ratio:         {full_s / regrade_s:7.1f}×   (goal ≥ 20×)")
        print(f"verdicts:      {'the same for every student' if same else 'DIFFERENT'}")
        print(format_usage(RunStore(out / "store"), usage))
        if not same or executed:
            sys.exit(1)


if __name__ == "__main__":
    main()
