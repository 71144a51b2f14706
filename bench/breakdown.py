"""Benchmark (not a test): where one notebook's grading time goes beyond its fit, on warm and on cold kernels.

One process grades the reference (30 epochs, fused fit, one thread) ROUNDS times each way, as a class's worker does:
  warm — the next kernel was started ahead and has finished its imports when the notebook comes (as in a batch,
         where it warms during the previous notebook);
  cold — the kernel starts when the notebook comes (WARM_KERNELS = 0, or a worker's first notebook).
For each: the wall seconds of each phase on the notebook's path — kernel (waiting for it: start and imports when
cold), setup (the harness's first cell), notebook (the student's cells but fit), fit (the bare fit, the cell that
trains), export (the harness's last cell), other (reading and sanitizing the notebook, placing the dataset's files,
collecting the exports, stopping the kernel), graders (the hidden tests on the exports), pages (the student's
feedback page) — and the core-seconds of the whole (this process and its kernels, the kernel's
imports included wherever they ran), and of those the fit's own (the training cell's core-seconds in its kernel: it
trains on one thread, but TensorFlow's other pools take some too). Prints a table, writes bench/results/breakdown.json.

Usage: python bench/breakdown.py [--rounds 3] [--assignment assignment3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "breakdown.json"
PHASES = ("kernel", "setup", "notebook", "fit", "export", "other", "graders", "pages")


KERNEL_CPU: list[float] = []        # each destroyed kernel's whole life (start, imports, notebook), in core-seconds
CELL_CPU: list[float] = []          # each executed cell's core-seconds in its kernel (the fit: the largest)


def own_cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def tree_cpu_seconds(pid: int) -> float:
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        for each in [root, *root.children(recursive=True)]:
            times = each.cpu_times()
            total += times.user + times.system
    except psutil.Error:
        pass
    return total


def count_kernel_cpu() -> None:
    """Just before nbclient stops a notebook's kernel, add up the CPU time of its processes (bwrap and the kernel
    below it, its start and imports included: the kernel is not this process's child, so getrusage misses it)."""
    from autograder.run.execute import GradingClient

    cleanup = GradingClient._async_cleanup_kernel

    async def counted(client):
        process = getattr(getattr(client.km, "provisioner", None), "process", None)
        KERNEL_CPU.append(tree_cpu_seconds(process.pid) if process is not None else 0.0)
        await cleanup(client)

    GradingClient._async_cleanup_kernel = counted

    execute_cell = GradingClient.async_execute_cell

    async def cell_counted(client, cell, *args, **kwargs):
        process = getattr(getattr(client.km, "provisioner", None), "process", None)
        before = tree_cpu_seconds(process.pid) if process is not None else 0.0
        try:
            return await execute_cell(client, cell, *args, **kwargs)
        finally:
            after = tree_cpu_seconds(process.pid) if process is not None else 0.0
            CELL_CPU.append(after - before)

    GradingClient.async_execute_cell = cell_counted


def one(notebook: Path, config, data, checks) -> dict:
    from autograder.grading.grade import judge, run_notebook
    from autograder.grading.result import Provenance, Result
    from autograder.reports.feedback import feedback_page

    with tempfile.TemporaryDirectory(prefix="breakdown-") as tmp:
        started = time.perf_counter()
        run = run_notebook(notebook, config, "cpu", data, Path(tmp) / "artifacts")
        ran = time.perf_counter()
        result = judge(run, Path(tmp) / "artifacts", config, data, False, notebook.name)
        judged = time.perf_counter()
        feedback_page(Result.of_grade(result, Provenance()), config, checks)
        paged = time.perf_counter()
    record = run.record
    fit = max(c.seconds for c in record.cells)            # the cell that trains: by far the longest
    cells = sum(c.seconds for c in record.cells)
    setup, export = record.harness_s.get("setup", 0.0), record.harness_s.get("export", 0.0)
    kernel = round(record.kernel_ready_s - record.kernel_saved_s, 2)
    return {"kernel_start": record.kernel, "kernel": kernel, "setup": setup, "notebook": cells - fit, "fit": fit,
            "export": export,
            # the rest of the run's time: reading and sanitizing the notebook, placing the dataset's files,
            # collecting the exports, shutting the kernel down
            "other": ran - started - kernel - setup - cells - export,
            "graders": judged - ran, "pages": paged - judged, "wall": paged - started,
            "passed": sum(t.status == "passed" for t in result.tests)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--assignment", default="assignment3")
    args = parser.parse_args()

    import nbformat

    from autograder.course.assignment import config_for
    from autograder.course.config import load_config
    from autograder.course.dataset import load_dataset
    from autograder.grading.graders import check_graders
    from autograder.lifecycle.release import solution_notebook
    from autograder.run import warm

    count_kernel_cpu()
    config = config_for(load_config(), args.assignment)
    data, checks = load_dataset(config), check_graders(config)
    with tempfile.TemporaryDirectory(prefix="breakdown-nb-") as tmp:
        notebook = Path(tmp) / f"{args.assignment}.ipynb"
        nbformat.write(solution_notebook(nbformat.read(config.assignment.reference_notebook, as_version=4)), notebook)
        one(notebook, config, data, checks)     # imports, caches: not timed
        rows: dict[str, list[dict]] = {"warm": [], "cold": []}
        for round_ in range(args.rounds):
            for how in ("warm", "cold"):
                pool = warm.pool()
                pool.close()
                if how == "warm":
                    warm.prewarm(config, "cpu")
                    pool.waiting[0].wait_ready()          # it warmed during the previous notebook
                cpu, KERNEL_CPU[:], CELL_CPU[:] = own_cpu_seconds(), [], []
                row = one(notebook, config, data, checks)
                pool.close()
                row["core_s"] = own_cpu_seconds() - cpu + sum(KERNEL_CPU)
                row["fit_core_s"] = max(CELL_CPU)       # the fit's own threads (TensorFlow's pools besides the one)
                # the kernel's start, its imports (ahead of the notebook when warm) and its stop: all but its cells
                row["kernel_core_s"] = sum(KERNEL_CPU) - sum(CELL_CPU)
                assert row["kernel_start"] == how, row
                rows[how].append(row)
                print(f"round {round_ + 1} {how}: " + ", ".join(f"{k} {row[k]:.2f}" for k in (
                    *PHASES, "wall", "core_s", "fit_core_s", "kernel_core_s")), flush=True)
    summary = {}
    for how, each in rows.items():
        median = {k: round(statistics.median(r[k] for r in each), 2) for k in (*PHASES, "wall", "core_s",
                                                                               "fit_core_s", "kernel_core_s")}
        median["beyond_fit_wall"] = round(statistics.median(r["wall"] - r["fit"] for r in each), 2)
        median["beyond_fit_core_s"] = round(statistics.median(r["core_s"] - r["fit_core_s"] for r in each), 2)
        summary[how] = median
    print(f"\n{'phase':10s} {'warm':>8s} {'cold':>8s}   (median seconds of {args.rounds} rounds)")
    for key in (*PHASES, "wall", "beyond_fit_wall", "core_s", "fit_core_s", "kernel_core_s",
                "beyond_fit_core_s"):
        print(f"{key:18s} {summary['warm'][key]:8.2f} {summary['cold'][key]:8.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rounds": rows, "median": summary}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
