"""Benchmark for a GPU runner: a class of 100 submissions graded in one command, several kernels sharing the GPU.

    pip install -r requirements-gpu.txt          # once, on the runner
    python bench/gpu_class.py [--students 100] [--workers 12] [--keep DIR]

Builds the class (our released notebook filled with the answers of the reference and of the sample submissions in
turn, handed in with `submit` before the deadline, nbgrader's exchange layout), then times
`python -m autograder grade EXCHANGE --out OUT --device gpu --workers N` end to end while `nvidia-smi` samples the
GPU's utilisation and memory twice a second. Reports wall time (goal: under 3 minutes for 100), per-submission
time, GPU utilisation, the statuses, and the device each result names. Writes bench/results/gpu_class.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from vs_nbgrader import make_class, submit_ours  # noqa: E402

from autograder.course.assignment import config_for  # noqa: E402
from autograder.course.config import load_config  # noqa: E402

GOAL_S = 180


def sample_gpu(path: Path) -> subprocess.Popen:
    return subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used,memory.total",
                             "--format=csv,noheader,nounits", "-lms", "500"], stdout=open(path, "w"),
                            stderr=subprocess.DEVNULL)


def read_samples(path: Path) -> list[tuple[float, float, float]]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(tuple(float(x) for x in line.split(",")[:3]))
        except ValueError:
            continue
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("--workers", type=int, default=min(12, os.cpu_count() or 1))
    parser.add_argument("--keep", help="keep the class and the outputs in this folder")
    args = parser.parse_args()
    if not shutil.which("nvidia-smi"):
        print("no nvidia-smi: this benchmark needs a GPU runner", file=sys.stderr)
        return 2
    config = config_for(load_config(), "assignment3")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="gpu-class-"))
    exchange, staging, out = work / "exchange", work / "staging", work / "out" / "assignment3"   # OUT/<assignment>/
    for folder in (exchange, staging):
        folder.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    students = make_class(args.students)
    submit_ours(config, students, exchange, staging)

    samples_path = work / "nvidia-smi.csv"
    sampler = sample_gpu(samples_path)
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", str(exchange), "--out", str(out.parent),
                          "--device", "gpu", "--workers", str(args.workers)], cwd=ROOT)
    wall = time.perf_counter() - started
    sampler.terminate()
    sampler.wait()

    results = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((out / "results").glob("*.json"))]
    seconds = [r["execution"]["seconds"] for r in results if r.get("execution", {}).get("seconds")]
    samples = read_samples(samples_path)
    busy = [u for u, _, _ in samples]
    report = {
        "students": args.students, "workers": args.workers, "returncode": run.returncode,
        "wall_s": round(wall, 1), "goal_s": GOAL_S, "met_goal": wall < GOAL_S and run.returncode == 0,
        "per_submission_s_median": statistics.median(seconds) if seconds else None,
        "per_submission_s_max": max(seconds) if seconds else None,
        "throughput_per_min": round(len(results) / wall * 60, 1),
        "gpu_utilisation_mean": round(statistics.mean(busy), 1) if busy else None,
        "gpu_utilisation_max": max(busy) if busy else None,
        "gpu_memory_peak_mib": max((m for _, m, _ in samples), default=None),
        "statuses": {s: sum(r.get("status") == s for r in results) for s in {r.get("status") for r in results}},
        "devices": sorted({r.get("execution", {}).get("device_name", "?") for r in results}),
        "fused_fit": sorted({r.get("execution", {}).get("fused_fit") for r in results} - {None}),
    }
    target = ROOT / "bench" / "results" / "gpu_class.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"{args.students} submissions in {wall:.0f} s ({'under' if report['met_goal'] else 'NOT under'} the "
          f"{GOAL_S} s goal) · wrote {target}")
    return 0 if run.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
