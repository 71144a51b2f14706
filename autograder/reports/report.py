"""Present a GradeResult as terminal text: its table, a student's self-check, counts and warnings (files are written
by ``files.py``)."""

from __future__ import annotations

from ..grading.checks import CheckSpec
from ..grading.result import NOT_GRADED, PASSED, GradeResult


def unofficial_warning(unofficial: int, total: int) -> tuple[str, str]:
    """(Japanese, English) for a class with unofficial grades, said where a TA looks before uploading grades: the
    batch's last lines and the summary page (gradebook.csv has its ``official`` column)."""
    return (f"{total} 件中 {unofficial} 件は非公式の採点です (DEVICE_POLICY = 'require-gpu' のもとで CPU で採点)。"
            "最終成績として LMS にアップロードしないでください。gradebook.csv では official = no です。",
            f"{unofficial} of {total} grades are unofficial: graded on the CPU under DEVICE_POLICY = 'require-gpu' "
            "— do not upload them to the LMS as final. gradebook.csv marks them official = no.")


def count(n: int, noun: str) -> str:
    """``1 student``, ``3 students``: a count with its noun, singular or plural as English says it."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def format_points(value: float) -> str:
    return f"{value:g}"


def format_number(value: float | None, spec: str) -> str:
    """A number a result may lack (not measured, no grade) as a page shows it: a dash when it is missing."""
    return "—" if value is None else format(value, spec)


def check_lines(check, width: int) -> list[str]:
    """One check as table lines: mark, id, points, then its explanation (why it failed or was not graded, or a
    note on a pass)."""
    mark = {PASSED: "✓", NOT_GRADED: "—"}.get(check.status, "✗")
    score = "—" if check.score is None else format_points(check.score)
    lines = [f"  {mark} {check.name:<{width}}  {score:>3} / {format_points(check.max_score)}"]
    if check.output:
        lines.extend(f"      {line}" for line in check.output.splitlines())
    return lines


def name_width(result: GradeResult) -> int:
    return max(len(t.name) for t in result.tests)


def format_self_check(result: GradeResult, checks: tuple[CheckSpec, ...]) -> str:
    """What a student may see before submitting: the checks declared public in full; hidden ones only by name and
    points."""
    public = {c.id for c in checks if c.public}
    width = name_width(result)
    lines = [f"{result.notebook} — 自己チェック / self-check"]
    for t in result.tests:
        if t.name in public:
            lines.extend(check_lines(t, width))
        else:
            lines.append(f"  · {t.name:<{width}}    ? / {format_points(t.max_score)}"
                         "   提出後に採点 / hidden: graded after submission")
    shown = [t for t in result.tests if t.name in public]
    lines.append(f"  public checks: {format_points(sum(t.score or 0 for t in shown))} / "
                 f"{format_points(sum(t.max_score for t in shown))} · whole assignment: {format_points(result.max_score)}"
                 " points")
    lines.extend(f"  note: {note}" for note in result.notes)
    return "\n".join(lines)


def format_table(result: GradeResult) -> str:
    width = name_width(result)
    lines = [f"{result.notebook}"]
    for t in result.tests:
        lines.extend(check_lines(t, width))
    lines.append(f"  {'score':<{width + 2}}  {format_points(result.score):>3} / {format_points(result.max_score)}"
                 + ("" if result.official else "   (unofficial: not graded on the required device)")
                 + (f"   (not graded, a grader failed: {', '.join(result.not_graded)})" if result.not_graded else ""))
    ex = result.execution
    if ex:
        lines.append(f"  device: {ex.get('device_name', '?')} · TensorFlow {ex.get('tensorflow') or '?'} · "
                     f"Keras {ex.get('keras') or '?'} · seed {ex.get('seed')} · {ex.get('seconds', 0):.1f} s")
    lines.extend(f"  note: {note}" for note in result.notes)
    return "\n".join(lines)


def format_usage(store, usage) -> str:
    """What ``store du`` says of a ``store.RunStore`` and its ``StoreUsage``: runs, files, bytes on disk against one
    copy per run, per student, the largest shared files."""
    def mb(n: int) -> str:
        return f"{n / 1e6:,.1f} MB"

    per = usage.disk_bytes / usage.referenced if usage.referenced else 0
    lines = [f"{store.root}: {count(usage.runs, 'run')} ({usage.referenced} referenced by results) · "
             f"{count(usage.objects, 'file')} · "
             f"{mb(usage.disk_bytes)} on disk ({mb(usage.logical_bytes)} if each run kept its own copy) · "
             f"{mb(int(per))} per graded run"]
    names = {f["sha256"]: name for m in store.manifests().values() for name, f in m.get("files", {}).items()}
    for digest, (runs, size) in sorted(usage.shared.items(), key=lambda item: -item[1][1])[:5]:
        lines.append(f"  {names.get(digest, digest[:12])} ({digest[:12]}) {mb(size)} held by {count(runs, 'run')}, "
                     "stored once")
    return "\n".join(lines)
