"""``python -m autograder``: a thin layer over release, grade and demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import load_config
from .device import DEVICES
from .errors import GraderError


def cmd_release(args) -> int:
    config = load_config(args.config)
    if args.assignment != config.assignment_id:
        raise GraderError(f"unknown assignment {args.assignment!r}; grader_config.py configures "
                          f"{config.assignment_id!r}")
    from .release import release

    print(f"wrote {release(config)}")
    return 0


def cmd_grade(args) -> int:
    from .grade import grade_notebook
    from .report import format_table, write_results_json

    config = load_config(args.config)
    result = grade_notebook(Path(args.notebook), config, device=args.device)
    out = Path(args.out) if args.out else Path("grades") / Path(args.notebook).stem
    print(format_table(result))
    print(f"results: {write_results_json(result, out)}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(load_config(args.config), device=args.device)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    parser.add_argument("--config", help="path to grader_config.py (default: the project's, or $AUTOGRADER_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("release", help="write the student notebook from the reference (nbgrader preprocessors)")
    p.add_argument("assignment", help="assignment id, e.g. assignment3")
    p.set_defaults(run=cmd_release)

    p = sub.add_parser("grade", help="grade one notebook with the hidden graders")
    p.add_argument("notebook", help="the submitted .ipynb")
    p.add_argument("--out", help="folder for results.json (default: grades/<notebook name>)")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="where the student's model trains (default: auto — the GPU if one is visible)")
    p.set_defaults(run=cmd_grade)

    p = sub.add_parser("demo", help="grade the reference, the untouched student notebook and a wrong sample")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.set_defaults(run=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except GraderError as exc:
        print(f"autograder: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
