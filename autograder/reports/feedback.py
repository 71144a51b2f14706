"""A student's feedback page for one graded notebook, from its ``Result``: score and status, each check with its
explanation, the training curves, the notes.

Pages are static, self-contained HTML (inline CSS, the plot inlined as base64) so they can be emailed or served as
files. Their markup is in autograder/reports/templates/ (see pages.py); this module gives the templates plain data.
Everything taken from a result — notes, check outputs, names, ids, paths — is student-influenced text, which the templates
escape. The class's page is ``summary.py``; the plots are drawn by ``figures.py``.
"""

from __future__ import annotations

import base64
import datetime as dt

from markupsafe import Markup

from ..course.assignment import TrainingCurve
from ..course.clock import local_text, parse_time
from ..grading.checks import CheckSpec, max_score, titles
from ..grading.result import ERROR, GRADED
from ..grading.result import INFRASTRUCTURE as INFRA
from ..grading.result import LATE, NO_SUBMISSION, NO_TIMESTAMP, NOT_GRADED, PASSED, TIMEOUT, CheckResult, Result
from .figures import training_curves_png
from .pages import render
from .report import format_number, format_points

# status (in STATUS_ORDER) → (Japanese, English, style). Styles: ok (green), warn (amber), bad (red), info (blue: not the student's doing).
STATUSES = {
    GRADED: ("採点済み", "Graded", "ok"),
    LATE: ("期限後の提出", "Late submission", "warn"),
    ERROR: ("実行エラー", "Error while running", "bad"),
    TIMEOUT: ("時間切れ", "Timed out", "bad"),
    INFRA: ("採点システムの不具合", "Grading system problem", "info"),
    NO_TIMESTAMP: ("提出時刻の記録なし", "No submission time recorded", "warn"),
    NO_SUBMISSION: ("未提出", "No submission", "bad"),
}
INFRA_MESSAGE = ("これはあなたの提出物の問題ではありません。採点をやり直します。この結果は成績ではありません。",
                 "This is not a problem with your submission. It will be regraded; this is not your grade.")


def _text(value, default: str = "?") -> str:
    """Any value from a result as text (a default when it is missing)."""
    return default if value is None or value == "" else str(value)


def style_of(status: str) -> tuple[str, str, str]:
    """(Japanese, English, style) of a status; one this version does not know is shown as it is, in amber."""
    return STATUSES.get(status, (status, "", "warn"))


def local_time(value, config) -> str:
    """A time from a result (ISO 8601 or nbgrader's '… UTC') as people read it, e.g. '2024-05-15 21:00 JST'."""
    try:
        moment = value if isinstance(value, dt.datetime) else parse_time(str(value), config.timezone)
        return local_text(moment, config.timezone)
    except (ValueError, OverflowError):
        return _text(value, "不明 / unknown")


def _status_view(result: Result) -> dict:
    """The status as a badge (ja, en, style), and for anything but a plain grade the reason as the lines of a
    highlighted box (box_style)."""
    ja, en, style = style_of(result.status)
    lines = result.status_detail.splitlines() + (list(INFRA_MESSAGE) if result.status == INFRA else [])
    if not result.official:
        lines.append("非公式の採点です (指定の環境以外で採点) / Unofficial: not graded on the required device.")
    box_style = "warn" if style == "ok" else style        # a note on a graded result is worth a look, not a pass
    return {"ja": ja, "en": en, "style": style, "lines": lines, "box_style": box_style}


MARKS = {PASSED: ("✓", "pass"), NOT_GRADED: ("—", "info")}     # anything else: ✗


def _check_rows(tests: tuple[CheckResult, ...], checks: tuple[CheckSpec, ...]) -> list[dict]:
    """One row per check of a stored result, titled from the declared checks (a check no longer declared: no
    title)."""
    title = titles(checks)
    rows = []
    for test in tests:
        mark, style = MARKS.get(test.status, ("✗", "fail"))
        rows.append({"id": test.name, "title": title.get(test.name, ("", "")), "output": test.output,
                     "score": "—" if test.status == NOT_GRADED else format_points(test.score or 0),
                     "most": format_points(test.max_score), "mark": mark, "style": style})
    return rows


def _curve_words(result: Result, curve: TrainingCurve) -> tuple[str, str] | None:
    """The caption under the curves, (Japanese, English): the grader's measurement of ``curve.check`` (the graders
    record it under the check's id, and the notebook's own value as <id>_reported), worded from that check's own
    verdict so the page never says one thing in the table and another under the plot."""
    name, threshold = curve.check, curve.threshold
    if not name or threshold is None:
        return None
    check = result.test(name)
    measured, reported = result.measured(name), result.measured(f"{name}_reported")
    status = check.status if check else None
    if status == NOT_GRADED:
        return f"{name} の項目は採点されていません (上の表)。", f"The {name} check was not graded (see the table above)."
    if measured is None:
        return f"{name} は測定できませんでした (理由は上の表)。", f"{name} could not be measured (see the table above)."
    reaches = measured >= threshold
    ja = f"採点側で再計算した {name} は {measured:.4f} で、基準 {threshold:g} {'以上です' if reaches else 'に届きませんでした'}。"
    en = f"The grader measured {name} {measured:.4f}, which {'reaches' if reaches else 'is below'} the threshold {threshold:g}."
    if reported is not None:
        ja += f" ノートブック自身の記録は {reported:.4f} でした。"
        en += f" The notebook's own final {name} was {reported:.4f}."
    if status == PASSED:
        ja, en = f"合格: {ja}", f"Passed: {en}"
    elif reaches:
        ja += " それでもこの項目が不合格なのは、上の表の理由によります。"
        en += " The check still failed, for the reason in the table above."
    return ja, en


def _curves(result: Result, curve: TrainingCurve) -> dict:
    """The training curves section: its caption, and the plot as a data URI (None: nothing was recorded)."""
    png = training_curves_png(result.history, curve, result.measured(curve.check))
    # Markup: the one piece of markup made here, trusted as it is — base64 of the PNG just drawn, nothing to escape.
    uri = Markup(f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}") if png else None
    return {"caption": _curve_words(result, curve), "png": uri}


def _deduction(result: Result) -> dict | None:
    """A late penalty as the page says it: the points the checks earned, what lateness took, what is left."""
    if result.late_deduction is None or result.points is None:
        return None
    return {"earned": format_points(result.points + result.late_deduction),
            "taken": format_points(result.late_deduction), "left": format_points(result.points)}


def feedback_page(result: Result | dict, config, checks: tuple[CheckSpec, ...]) -> str:
    """One student's page: score and status, the checks with their explanations (titled from ``checks``, the
    graders' declarations), the training curves, the notes. ``result``: typed, or as written (then read as
    ``Result.from_json`` reads any version)."""
    result = Result.of(result)
    execution, provenance = result.execution, result.provenance
    assignment = config.assignment
    handed_in = result.status != NO_SUBMISSION          # nothing to show but the status and the score
    graded = result.status != INFRA and handed_in and bool(result.tests)
    curve = assignment.training_curve
    ran = [f"{_text(execution.get('device_name'))} ({_text(execution.get('device'))})",
           *(f"{label} {_text(execution.get(key))}" for label, key in
             (("TensorFlow", "tensorflow"), ("Keras", "keras"), ("seed", "seed"))),
           f"{format_number(result.seconds, '.1f')} s"] if handed_in else []      # nothing ran for nothing handed in
    footer = [f"status: {result.status}", *ran, f"採点日時 / graded {local_time(provenance.graded_at, config)}"]
    points = result.points
    return render(
        "feedback.html.j2", assignment=assignment, student=result.student,     # none: one notebook
        score=format_points(points) if points is not None else "—",
        most=format_points(result.max_score if result.max_score is not None else max_score(checks)),
        status=_status_view(result),
        submitted=local_time(provenance.submitted_at, config),
        deadline=local_time(provenance.extended_until or assignment.deadline, config),
        extended=bool(provenance.extended_until),
        deduction=_deduction(result),
        notebook=_text(result.notebook), handed_in=handed_in,
        rows=_check_rows(result.tests, checks) if graded else [],
        curves=_curves(result, curve) if graded and curve else None,
        notes=[_text(n) for n in result.notes],
        superseded=[{"origin": _text(s.origin), "submitted": local_time(s.submitted_at, config),
                     "reason": _text(s.reason, "")} for s in provenance.superseded or ()],
        footer=footer, origin=_text(provenance.origin, ""))
