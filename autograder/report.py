"""Present a GradeResult: a terminal table and results.json, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .result import PASSED, GradeResult


def write_atomic(path: Path, text: str) -> Path:
    """Write via a temporary file in the same folder and rename: a reader sees the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_results_json(result: GradeResult, out_dir: Path) -> Path:
    return write_atomic(Path(out_dir) / "results.json",
                        json.dumps(result.to_json(), ensure_ascii=False, indent=2) + "\n")


def format_points(value: float) -> str:
    return f"{value:g}"


def format_table(result: GradeResult) -> str:
    width = max(len(t.name) for t in result.tests)
    lines = [f"{result.notebook}"]
    for t in result.tests:
        mark = "✓" if t.status == PASSED else "✗"
        lines.append(f"  {mark} {t.name:<{width}}  {format_points(t.score):>3} / {format_points(t.max_score)}")
        if t.status != PASSED and t.output:
            lines.extend(f"      {line}" for line in t.output.splitlines())
    lines.append(f"  {'score':<{width + 2}}  {format_points(result.score):>3} / {format_points(result.max_score)}"
                 + ("" if result.official else "   (unofficial: not graded on the required device)"))
    ex = result.execution
    if ex:
        lines.append(f"  device: {ex.get('device_name', '?')} · TensorFlow {ex.get('tensorflow') or '?'} · "
                     f"Keras {ex.get('keras') or '?'} · seed {ex.get('seed')} · {ex.get('seconds', 0):.1f} s")
    lines.extend(f"  note: {note}" for note in result.notes)
    return "\n".join(lines)
