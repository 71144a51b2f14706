"""Benchmark (not a test): what the site's public-check runner costs per check besides the notebook itself.

A site in a temporary folder gets N uploads of one sample; one ``CheckRunner`` (one runner thread's worth) runs
their checks one after another with a stand-in grading function that only reads the dataset (the worker's start,
the dataset's load or snapshot, the pipe: no kernel, no training). Reports each check's wall time, the first
apart (it pays for the fork server's Keras import and, with kept workers, the worker's start and the snapshot).

Usage: python bench/check_overhead.py [--checks 6] [--setup]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]


def reads_the_dataset(task: dict, config, data) -> dict:
    """In a check worker, instead of a kernel: the dataset's arrays touched, this worker's pid answered."""
    return {"result": {"pixels": int(data.x_train.shape[0]), "pid": os.getpid()}, "log": "", "infrastructure": ""}


def with_worker_setup(task: dict, config, data) -> dict:
    """As ``reads_the_dataset``, plus what a real check pays once per worker process besides its notebook: the
    kernel's client libraries imported (not preloaded: see worker_preload) and the graders collected."""
    import autograder.run.execute  # noqa: F401
    from autograder.grading.graders import check_graders

    check_graders(config)
    return reads_the_dataset(task, config, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=6)
    parser.add_argument("--setup", action="store_true", help="the stand-in also imports nbclient and collects the "
                                                             "graders, as a real check's worker does")
    args = parser.parse_args()
    os.environ["AUTOGRADER_NOW"] = "2024-05-15T12:00:00+09:00"        # before assignment3's deadline
    from autograder.course.config import load_config
    from autograder.site import people
    from autograder.site.core import Site
    from autograder.site.selfcheck import CheckRunner

    notebook = (ROOT / "reference" / "assignment3" / "samples" / "submitted-few-epochs.ipynb").read_bytes()
    with tempfile.TemporaryDirectory(prefix="check-overhead-") as tmp:
        site = Site(load_config(), Path(tmp) / "site", public_url="http://testserver", device="cpu")
        people.import_roster(site.engine, [people.RosterRow(f"s{i:03}", f"S {i}", f"s{i:03}@example.ac.jp")
                                           for i in range(args.checks)])
        for i in range(args.checks):
            site.accept(f"s{i:03}", "assignment3", notebook)
        runner = CheckRunner(site, 1, grade_fn=with_worker_setup if args.setup else reads_the_dataset)
        times, pids = [], set()
        try:
            for _ in range(args.checks):
                row = runner.claim()
                started = time.monotonic()
                runner.run(row)
                times.append(time.monotonic() - started)
                pids.add(json.loads(site.check_file(row.receipt).read_text())["pid"])
        finally:
            runner.stop()
    rest = times[1:]
    print(f"checks: {len(times)}; first {times[0]:.2f} s; the others: median {statistics.median(rest):.3f} s, "
          f"mean {statistics.mean(rest):.3f} s, max {max(rest):.3f} s")
    print(f"worker processes: {len(pids)}")
    print("each:", " ".join(f"{t:.3f}" for t in times))


if __name__ == "__main__":
    main()
