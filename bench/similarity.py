"""How long the similarity report takes on a class of 200 students (the issue asks for under 30 s), and what it
finds there: the class generated as tests/similar_class.py builds one (honest students with the usual answers and
their own small cells and runs, plus copies of every kind), written into nbgrader's exchange, then read, compared
and written by `python -m autograder similarity` (in this process, timed from the command's start to its files).

    python bench/similarity.py [--students 200] [--seed 1]

Prints the time and the flagged pairs against the planted ones; writes bench/results/similarity.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
RESULTS = ROOT / "bench" / "results" / "similarity.json"

import similar_class as sc
from classroom import ON_TIME, exchange_submission

from autograder.cli import main


def planted_class(students: int, rng: random.Random) -> tuple[dict[str, dict], set[frozenset]]:
    """``students`` notebooks: honest ones, and a copy of each kind every 20 students. → (notebooks, the pairs
    planted)."""
    kinds = ["whole", "retyped", "rerun", "partial"]
    nbs, planted, own = {}, set(), iter(sc.OWN_WORK * 10)
    copies = students // 20
    for i in range(students - 2 * copies):
        nbs[f"s{i:03d}"] = sc.honest(f"s{i:03d}", rng)
    for i in range(copies):
        kind, src, dst = kinds[i % len(kinds)], f"src{i:02d}", f"copy{i:02d}"
        work = next(own) + f"print('{src} notes', {rng.randrange(10**6)})\n"   # each source's own, told apart
        nbs[src] = sc.honest(src, rng, added=[("predict", work)])
        if kind == "whole":
            nbs[dst] = copy.deepcopy(nbs[src])
        elif kind == "retyped":
            nbs[dst] = sc.honest(dst, rng, added=[("predict", sc.disguised(work))])
        elif kind == "rerun":
            nbs[dst] = sc.rerun(nbs[src], rng, dst)
        else:
            nbs[dst] = sc.honest(dst, rng, added=[("predict", work), ("fit", sc.EXPLORE[2])])
        planted.add(frozenset({src, dst}))
    return nbs, planted


def run(students: int, seed: int) -> dict:
    rng = random.Random(seed)
    nbs, planted = planted_class(students, rng)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, nb in nbs.items():
            exchange_submission(root / "class", name, json.dumps(nb, ensure_ascii=False), ON_TIME)
        started = time.perf_counter()
        assert main(["similarity", str(root / "class"), "--out", str(root / "out")]) == 0
        seconds = time.perf_counter() - started
        report = json.loads((root / "out" / "similarity.json").read_text(encoding="utf-8"))
        html_kb = (root / "out" / "similarity.html").stat().st_size / 1024
    flagged = {frozenset(p["students"]) for p in report["pairs"] if p["flagged"]}
    return {"students": len(nbs), "seconds": round(seconds, 2), "planted": len(planted),
            "found": len(flagged & planted), "other_flags": sorted(map(sorted, flagged - planted)),
            "listed": len(report["pairs"]), "html_kb": round(html_kb)}


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = run(args.students, args.seed)
    print(f"{result['students']} students: {result['seconds']:.1f} s (read, compare, write); planted pairs found "
          f"{result['found']}/{result['planted']}; other pairs flagged {len(result['other_flags'])} "
          f"{result['other_flags'][:5]}; {result['listed']} pairs listed; similarity.html {result['html_kb']} kB")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    cli()
