"""Benchmark (not a test): what an engine costs per submission — the same class graded by the local pool and by Ray.

Twelve lecture submissions (the regrade benchmark's ten, right and wrong, and two more samples; 30 epochs each
unless --epochs says otherwise) are graded on this machine's CPU by the instructor's command, each run a fresh
process: once with the local pool (--workers N, N = this machine's cores) and once with ``--executor ray`` on a
local Ray cluster, which that command starts itself (its start-up is part of the run) with one CPU per core. Both
keep N kernels busy at once. (Stop any cluster `ray start` left on this machine first: the command would join it.)
Reported for each: the wall time, the kernels' own time (the notebooks running, from each result's execution
record), and the overhead per submission: kernel slots held while no kernel was running a notebook,
(wall × N − Σ kernel time) / submissions — process starts, imports, the dataset, the graders, the engine. Then
whether the two gradebooks are the same, byte for byte.

Usage: python bench/cluster.py [--epochs 30] [--keep DIR]   (needs requirements-cluster.txt)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from regrade import CLASS, SAMPLES, copy_course  # noqa: E402  (the regrade benchmark's class and course copy)

MORE = {"s11": SAMPLES / "style-activation-layers.ipynb", "s12": SAMPLES / "submitted-no-validation.ipynb"}


def hand_in(root: Path, epochs: int) -> int:
    """nbgrader's exchange layout, each sample training ``epochs`` (the samples train 1 to keep tests short)."""
    students = {**CLASS, **MORE}
    for student, notebook in students.items():
        folder = root / "submitted" / student / "assignment3"
        folder.mkdir(parents=True)
        text = notebook.read_text(encoding="utf-8")
        text = text.replace("epochs=1,", f"epochs={epochs},").replace("train(model, 1)", f"train(model, {epochs})")
        (folder / "assignment3.ipynb").write_text(text, encoding="utf-8")
        (folder / "timestamp.txt").write_text("2024-05-15 12:00:00.000000 UTC\n", encoding="utf-8")
    return len(students)


def grade(course: Path, work: Path, out: str, workers: int, executor: str) -> dict:
    command = [sys.executable, "-m", "autograder", "--config", str(course), "grade", str(work / "class"),
               "--out", str(work / out), "--device", "cpu", "--quiet", "--executor", executor]
    command += ["--workers", str(workers)] if executor == "local" else []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)                    # Ray: a local cluster of its own, on this machine's cores
    started = time.monotonic()
    run = subprocess.run(command, cwd=ROOT, text=True, capture_output=True, env=env)
    wall = time.monotonic() - started
    if run.returncode:
        sys.exit(f"{executor}: grading failed (exit status {run.returncode})\n{run.stderr[-3000:]}")
    graded = work / out / "assignment3"                 # a class goes into OUT/<assignment>/
    results = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((graded / "results").glob("*.json"))]
    kernel = sum(r.get("execution", {}).get("seconds", 0) for r in results)
    print(f"{executor:>5}: {run.stdout.splitlines()[0]}", flush=True)
    return {"wall_s": round(wall, 1), "kernel_s": round(kernel, 1), "students": len(results),
            "overhead_per_submission_s": round((wall * workers - kernel) / len(results), 2),
            "statuses": sorted({r["status"] for r in results}),
            "gradebook": (graded / "gradebook.csv").read_bytes()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--keep", help="keep the class and both outputs in this folder")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "cluster.json"))
    args = parser.parse_args()
    workers = os.cpu_count() or 1                  # Ray's local cluster has one CPU per core: the pool gets as many
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    work.mkdir(parents=True, exist_ok=True)
    course_dir = work / "course"
    course_dir.mkdir(exist_ok=True)
    course = copy_course(course_dir)
    students = hand_in(work / "class", args.epochs)
    print(f"{students} submissions, {args.epochs} epochs, {workers} kernels at once, on {os.cpu_count()} cores")
    runs = {name: grade(course, work, f"out-{name}", workers, name) for name in ("local", "ray")}
    same = runs["local"].pop("gradebook") == runs["ray"].pop("gradebook")
    extra = runs["ray"]["wall_s"] - runs["local"]["wall_s"]
    report = {"submissions": students, "epochs": args.epochs, "kernels_at_once": workers,
              "cores": os.cpu_count(), "runs": runs, "ray_minus_local_s": round(extra, 1),
              "ray_minus_local_per_submission_s": round(extra / students, 2), "same_gradebook": same}
    for name, run in runs.items():
        print(f"{name:>5}: wall {run['wall_s']} s · kernels {run['kernel_s']} s · overhead "
              f"{run['overhead_per_submission_s']} s per submission · {', '.join(run['statuses'])}")
    print(f"Ray − local: {extra:+.1f} s in all, {extra / students:+.2f} s per submission · same gradebook: {same}")
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
