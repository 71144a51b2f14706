"""Benchmark (not a test): the same class of submissions graded by `nbgrader autograde` and by our batch grader.

Both sides get the same students' answers, each in its own system's released notebook, with the same submission
times (before the deadline), and are timed end to end, from submissions on disk to grades on disk:
  nbgrader — a throwaway course (bench/nbgrader_course.py): our reference plus one hidden autograder test cell per
             check (plain asserts in the kernel, points as our graders' @check declares them), `nbgrader generate_assignment`,
             submissions in submitted/<student>/assignment3/, then `nbgrader autograde assignment3` (all students,
             one command); scores read from nbgrader's gradebook;
  ours     — submissions written by our `submit` (exchange layout, same timestamps), then
             `python -m autograder grade EXCHANGE --out OUT --device cpu --workers N`; scores read from
             OUT/gradebook.csv.
A check agrees when ours passed ⇔ nbgrader's test cell got full points. Known disagreements (plain asserts that
trust what the student's process says, or a narrower architecture assert) are listed in KNOWN_DIFFERENCES.

Usage: python bench/vs_nbgrader.py [--students K] [--workers N] [--only nbgrader|ours] [--keep DIR]
Writes bench/results/vs_nbgrader.json. A 30-epoch notebook takes ~40–60 s per side on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import nbgrader_course as nbc  # noqa: E402

from autograder.classroom.pool import default_workers  # noqa: E402
from autograder.grading.graders import check_graders  # noqa: E402

SAMPLES = ROOT / "reference" / "assignment3" / "samples"
RESULTS = ROOT / "bench" / "results" / "vs_nbgrader.json"
# The class, in order; K students cycle through it. "reference" is the reference solution; the others are sample
# submissions (reference/assignment3/samples/) that carry nbgrader metadata, so their answers map onto solution
# cells (the retyped sample has none and is left out). The first three are the default class.
MIX = [
    "reference",
    "submitted-no-normalisation",       # reshape, val_accuracy fail
    "submitted-dense64-functional",     # param_count, architecture fail
    "submitted-few-epochs",
    "submitted-no-validation",
    "submitted-labels-as-test2",
    "submitted-count-params-patched",
    "submitted-forged-history",
    "style-sequential-list",            # style-*: the right model, one quick epoch
    "style-functional-tf-keras",
    "style-keras-input-tf-functions",
    "style-activation-layers",
]
# (scenario, check) → why nbgrader's plain assert and our grader are expected to disagree.
KNOWN_DIFFERENCES = {
    ("submitted-count-params-patched", "param_count"):
        "nbgrader's assert trusts model.count_params(), which the student replaced; ours counts the weights",
    ("submitted-forged-history", "fit"):
        "nbgrader reads result.params, which the student edited; ours checks the optimizer's update count",
    ("submitted-forged-history", "val_accuracy"):
        "nbgrader reads the forged history; ours recomputes val_accuracy with the reloaded model",
    ("submitted-labels-as-test2", "predict"):
        "test2 = y_test has its 1 at digit 2 in row 1; ours requires test2 == model.predict(x_test)",
    ("style-activation-layers", "architecture"):
        "the plain assert sees Dense layers with linear activations; ours folds the Activation layers in",
}
FIRST_SUBMISSION = dt.datetime(2024, 5, 15, 12, 0, tzinfo=dt.timezone.utc)   # 21:00 JST, a day before the deadline


def scenario_answers(name: str) -> dict[str, str]:
    path = ROOT / "reference" / "assignment3" / "assignment3.ipynb" if name == "reference" else SAMPLES / f"{name}.ipynb"
    return nbc.answers_of(nbformat.read(path, as_version=4))


def make_class(k: int) -> list[tuple[str, str]]:
    return [(f"s{i + 1:03d}", MIX[i % len(MIX)]) for i in range(k)]


# --- ours ------------------------------------------------------------------------------------------------------

def submit_ours(config, students, exchange: Path, staging: Path) -> dict[str, str]:
    """Each student's answers in our released notebook, handed in with our `submit` at a fixed time. Returns the
    timestamps written (nbgrader's format), which the nbgrader side reuses."""
    from autograder.lifecycle.submit import submit

    released = nbformat.read(config.assignment.release_notebook, as_version=4)
    stamps, saved = {}, os.environ.get("AUTOGRADER_NOW")
    try:
        for i, (student, scenario) in enumerate(students):
            path = staging / f"{student}.ipynb"
            path.write_text(nbformat.writes(nbc.fill(released, scenario_answers(scenario))), encoding="utf-8")
            os.environ["AUTOGRADER_NOW"] = (FIRST_SUBMISSION + dt.timedelta(minutes=i)).isoformat()
            receipt = submit(path, student, config, exchange=exchange)
            stamps[student] = receipt.submitted_at
    finally:
        if saved is None:
            os.environ.pop("AUTOGRADER_NOW", None)
        else:
            os.environ["AUTOGRADER_NOW"] = saved
    return stamps


def run_ours(exchange: Path, out: Path, workers: int | None, log: Path) -> dict:
    cmd = [sys.executable, "-m", "autograder", "grade", str(exchange), "--out", str(out.parent), "--device", "cpu",
           *(["--workers", str(workers)] if workers else [])]
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as f:
        done = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    side = {"command": " ".join(cmd[1:]), "wall_s": round(wall, 2), "returncode": done.returncode, "log": str(log),
            "workers": workers or default_workers("cpu"), "rows": {}, "per_student_s": {}}
    gradebook = out / "gradebook.csv"
    if gradebook.is_file():
        with open(gradebook, newline="", encoding="utf-8-sig") as f:
            side["rows"] = {row["student_id"]: row for row in csv.DictReader(f)}
    side["per_student_s"] = ours_seconds(out, side["rows"])
    return side


def ours_seconds(out: Path, rows: dict[str, dict]) -> dict[str, float]:
    """Per-submission seconds: a gradebook column naming seconds if there is one, else execution.seconds of the
    per-student results JSON files under OUT (whatever their layout)."""
    seconds = {}
    for student, row in rows.items():
        for key, value in row.items():
            if key and "second" in key.lower():
                try:
                    seconds[student] = float(value)
                except (TypeError, ValueError):
                    pass
    for path in sorted(out.rglob("*.json")) if out.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("execution"), dict):
            continue
        student = str(data.get("student_id") or (path.parent.name if path.stem == "results" else path.stem))
        value = data["execution"].get("seconds")
        if student in rows and student not in seconds and isinstance(value, (int, float)):
            seconds[student] = float(value)
    return seconds


# --- nbgrader ---------------------------------------------------------------------------------------------------

def run_nbgrader(config, students, stamps: dict[str, str], work: Path) -> dict:
    from autograder.course.dataset import load_mnist, write_keras_npz

    npz = write_keras_npz(load_mnist(config.dataset_folder("mnist")), work / "mnist.npz")
    points = {c.id: c.points for c in check_graders(config)}
    course = nbc.Course(work / "course", config.assignment.reference_notebook, points, config.assignment.deadline, npz,
                        config.seed)
    ids = [s for s, _ in students]
    t0 = time.perf_counter()
    released = course.setup(ids)
    setup_s = time.perf_counter() - t0
    for student, scenario in students:
        course.add_submission(student, nbc.fill(released, scenario_answers(scenario)), stamps[student])
    run = course.autograde(ids)
    return {
        "command": "nbgrader autograde assignment3", "course": str(course.root), "setup_s": round(setup_s, 2),
        "wall_s": round(run.wall_s, 2), "returncode": run.returncode, "log": str(run.log),
        "startup_s": run.startup_s, "per_student_s": run.per_student_s, "execute_s": run.execute_s,
        "late_seconds": run.late_seconds,
        "checks": {s: {c: nbc.outcome_dict(o) for c, o in checks.items()} for s, checks in run.checks.items()},
    }


# --- comparison and report --------------------------------------------------------------------------------------

def compare(students, points: dict[str, float], nb: dict | None, ours: dict | None) -> dict:
    per_student, counts = {}, {"agree": 0, "known_difference": 0, "unexpected_difference": 0, "missing": 0}
    for student, scenario in students:
        entry = {"scenario": scenario, "checks": {}}
        nb_checks = (nb or {}).get("checks", {}).get(student)
        row = (ours or {}).get("rows", {}).get(student)
        if nb_checks:
            entry["nbgrader_score"] = sum(c["score"] for c in nb_checks.values())
        if row:
            entry["ours_score"], entry["ours_status"] = _num(row.get("score")), row.get("status")
        for check, max_points in points.items():
            n = nb_checks.get(check, {}).get("passed") if nb_checks else None
            o = (_num(row.get(check)) >= max_points) if row and _num(row.get(check)) is not None else None
            c = {"nbgrader": n, "ours": o}
            if n is None or o is None:
                verdict = "missing" if (nb and ours) else None
            elif n == o:
                verdict = "agree"
            elif (scenario, check) in KNOWN_DIFFERENCES:
                verdict, c["why"] = "known_difference", KNOWN_DIFFERENCES[(scenario, check)]
            else:
                verdict = "unexpected_difference"
            if verdict:
                c["verdict"] = verdict
                counts[verdict] += 1
            entry["checks"][check] = c
        per_student[student] = entry
    return {"per_student": per_student, "counts": counts if nb and ours else None}


def _num(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _mark(passed) -> str:
    return "·" if passed is None else ("P" if passed else "F")


def print_report(students, points, nb, ours, comparison) -> None:
    checks = list(points)
    width = max(len(s) for _, s in students)
    print("\nper check: nbgrader/ours (P pass, F fail, · not run); * known difference, ! unexpected")
    head = f"{'student':7s} {'scenario':{width}s} {'nbg pts':>7s} {'nbg s':>6s} {'ours pts':>8s} {'ours s':>6s}  "
    print(head + " ".join(f"{c[:8]:>8s}" for c in checks))
    for student, scenario in students:
        e = comparison["per_student"][student]
        nb_s = (nb or {}).get("per_student_s", {}).get(student)
        ours_s = (ours or {}).get("per_student_s", {}).get(student)
        cells = []
        for c in checks:
            x = e["checks"][c]
            flag = {"known_difference": "*", "unexpected_difference": "!"}.get(x.get("verdict"), " ")
            cells.append(f"{_mark(x['nbgrader'])}/{_mark(x['ours'])}{flag}".rjust(8))
        print(f"{student:7s} {scenario:{width}s} {_fmt(e.get('nbgrader_score'), 7)} {_fmt(nb_s, 6)} "
              f"{_fmt(e.get('ours_score'), 8)} {_fmt(ours_s, 6)}  " + " ".join(cells))
    print()
    if nb:
        print(f"nbgrader: {nb['wall_s']:.1f} s end to end (autograde, exit {nb['returncode']}; startup "
              f"{nb['startup_s']} s; course setup + generate_assignment {nb['setup_s']:.1f} s, not counted)")
    if ours:
        print(f"ours:     {ours['wall_s']:.1f} s end to end (grade, --workers {ours['workers']}, exit "
              f"{ours['returncode']})")
    if nb and ours and ours["wall_s"] > 0:
        print(f"ratio nbgrader/ours: {nb['wall_s'] / ours['wall_s']:.2f}")
    if comparison["counts"]:
        print("verdicts: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in comparison["counts"].items()))
        for student, e in comparison["per_student"].items():
            for check, x in e["checks"].items():
                if x.get("verdict") == "unexpected_difference":
                    err = ((nb or {}).get("checks", {}).get(student, {}).get(check, {}) or {}).get("error", "")
                    print(f"  ! {student} {e['scenario']} {check}: nbgrader {_mark(x['nbgrader'])}, ours "
                          f"{_mark(x['ours'])}{'  (' + err + ')' if err else ''}")


def _fmt(value, width: int) -> str:
    return f"{value:{width}.1f}" if isinstance(value, (int, float)) else "—".rjust(width)


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def versions() -> dict:
    found = {}
    for name in ("nbgrader", "nbclient", "ipykernel", "tensorflow", "keras"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=3, help="class size K (cycles through MIX; default 3)")
    parser.add_argument("--workers", type=int, help="--workers for our grader (default: its own default)")
    parser.add_argument("--only", choices=("nbgrader", "ours"), help="run one side only")
    parser.add_argument("--keep", type=Path, help="keep the work folders here (must not exist or be empty)")
    args = parser.parse_args()
    if args.students < 1 or (args.workers is not None and args.workers < 1):
        parser.error("--students and --workers must be at least 1")

    from autograder.course.assignment import config_for
    from autograder.course.config import load_config

    config = config_for(load_config(), "assignment3")
    points = {c.id: c.points for c in check_graders(config)}
    students = make_class(args.students)
    if args.keep:
        if args.keep.exists() and any(args.keep.iterdir()):
            parser.error(f"--keep {args.keep}: not empty")
        args.keep.mkdir(parents=True, exist_ok=True)
        work = args.keep.resolve()
    else:
        work = Path(tempfile.mkdtemp(prefix="vs-nbgrader-"))
    load_before = _load()
    if load_before and load_before[0] > (os.cpu_count() or 1):
        print(f"note: load average {load_before[0]:.1f} on {os.cpu_count()} CPUs — other work will inflate both "
              "sides' times", flush=True)
    try:
        staging = work / "staging"
        staging.mkdir()
        stamps = submit_ours(config, students, work / "ours" / "exchange", staging)
        nb = ours = None
        if args.only != "ours":
            (work / "nbgrader").mkdir()
            print(f"nbgrader autograde: {len(students)} submissions …", flush=True)
            nb = run_nbgrader(config, students, stamps, work / "nbgrader")
        if args.only != "nbgrader":
            print(f"ours (--workers {args.workers or 'default'}): {len(students)} submissions …", flush=True)
            ours = run_ours(work / "ours" / "exchange", work / "ours" / "grades" / "assignment3", args.workers, work / "ours" / "grade.log")
        comparison = compare(students, points, nb, ours)
        print_report(students, points, nb, ours, comparison)
        report = {
            "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "load_average_before": load_before, "load_average_after": _load()},
            "versions": versions(),
            "students": [{"student_id": s, "scenario": sc, "submitted_at": stamps[s]} for s, sc in students],
            "points": points,
            "nbgrader": nb,
            "ours": None if ours is None else {k: v for k, v in ours.items() if k != "rows"} | {
                "gradebook": ours["rows"]},
            "ratio_nbgrader_over_ours": (round(nb["wall_s"] / ours["wall_s"], 3)
                                         if nb and ours and ours["wall_s"] > 0 else None),
            "comparison": comparison,
            "work": str(work) if args.keep else None,
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {RESULTS.relative_to(ROOT)}" + (f"; work folders kept in {work}" if args.keep else ""))
        failed = (nb and nb["returncode"]) or (ours and ours["returncode"])
        return 1 if failed else 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
