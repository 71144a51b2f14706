"""The pages and plots of a batch grading run: one feedback page per student, a class summary page and figure.

Pages are static, self-contained HTML (inline CSS, the plot inlined as base64) so they can be emailed or served as
files. Their markup is in autograder/templates/ (see pages.py); this module gives the templates plain data. Everything
taken from a result — notes, check outputs, names, ids, paths — is student-influenced text, which the templates
escape. Plots use matplotlib's Figure directly (Agg canvas, no pyplot state: safe in worker processes) and English
labels only, since the grading machine may lack CJK fonts.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import math
import statistics
from collections import Counter
from pathlib import Path
from urllib.parse import quote

from markupsafe import Markup
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .clock import local_text, parse_time
from .assignment import TrainingCurve
from .checks import CheckSpec, max_score, titles
from .intake import file_stem
from .pages import render
from .report import count, format_points, unofficial_warning
from .result import (ERROR, GRADED, LATE, NO_SUBMISSION, NO_TIMESTAMP, NOT_GRADED, PASSED, TIMEOUT, checks_not_graded,
                     infrastructure_reasons, is_official)
from .result import INFRASTRUCTURE as INFRA

# status → (Japanese, English, style). Styles: ok (green), warn (amber), bad (red), info (blue: not the student's doing).
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

def _num(value) -> float | None:
    """A finite float, or None for anything else (missing, NaN, inf, text): results may be malformed."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _text(value, default: str = "?") -> str:
    """Any value from a result as text (a default when it is missing)."""
    return default if value is None or value == "" else str(value)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _status(result: dict) -> str:
    return str(result.get("status") or GRADED)   # results written by `grade` alone carry no status: graded


def _style(status: str) -> tuple[str, str, str]:
    return STATUSES.get(status, (status, "", "warn"))


def _points(result: dict) -> tuple[float | None, float | None]:
    """(score, max_score) as a grade, or score None when the result is no grade (an infrastructure error)."""
    score = None if _status(result) == INFRA else _num(result.get("score"))
    return score, _num(result.get("max_score"))


def _is_graded(result: dict) -> bool:
    """Counts towards pass rates and val_accuracy: the notebook ran and was judged on time (or without a time)."""
    return _status(result) in (GRADED, NO_TIMESTAMP) and bool(_list(result.get("tests")))


def _local_time(value, config) -> str:
    """A time from a result (ISO 8601 or nbgrader's '… UTC') as people read it, e.g. '2024-05-15 21:00 JST'."""
    try:
        moment = value if isinstance(value, dt.datetime) else parse_time(str(value), config.timezone)
        return local_text(moment, config.timezone)
    except (ValueError, OverflowError):
        return _text(value, "不明 / unknown")


def _png(fig: Figure, description: str = "") -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Description": description} if description else None)
    return buffer.getvalue()


FIGURE_FINGERPRINT = "autograder summary "       # the PNG's Description: this prefix, then what it was drawn from


def figure_fingerprint(path: Path) -> str:
    """What a summary.png written by ``summary_figure`` was drawn from ('' for any other file, or none)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            description = str(image.info.get("Description", ""))
    except (OSError, ValueError):
        return ""
    return description.removeprefix(FIGURE_FINGERPRINT) if description.startswith(FIGURE_FINGERPRINT) else ""


def _plain(text: str) -> str:
    """Student text as a matplotlib label: '$' would start mathtext, which raises on malformed input."""
    return str(text).replace("$", r"\$")


def _series(values) -> tuple[list[int], list[float]]:
    """Epochs (1-based) and values of one history list, non-finite or non-numeric points skipped."""
    points = [(i, _num(v)) for i, v in enumerate(_list(values), start=1)]
    return [i for i, v in points if v is not None], [v for _, v in points if v is not None]


# Names Keras may record a metric under, by the metric as given (metrics=['acc'] records "acc",
# CategoricalAccuracy() "categorical_accuracy"); any other metric is looked for under its own name.
METRIC_ALIASES = {"accuracy": ("accuracy", "acc", "categorical_accuracy")}


def curves_of(history: dict, metric: str) -> dict[str, list]:
    """The four curves the page draws, keyed loss, val_loss, <metric>, val_<metric>, each from the first name it
    was recorded under (any case: metrics=['ACC'] records "ACC")."""
    by_name = {str(k).lower(): v for k, v in _dict(history).items()}
    curves = {}
    for key, names in (("loss", ("loss",)), (metric, METRIC_ALIASES.get(metric, (metric,)))):
        for prefix in ("", "val_"):
            values = next((by_name[prefix + n] for n in names if isinstance(by_name.get(prefix + n), list)), None)
            if values is not None:
                curves[prefix + key] = values
    return curves


def training_curves_png(history: dict, curve: TrainingCurve, measured: float | None = None) -> bytes | None:
    """Loss and ``curve.metric`` per epoch, beside the threshold and the grader's own measurement of
    ``curve.check``; None if nothing to plot."""
    metric = curve.metric
    curves = curves_of(history, metric)
    series = {name: _series(curves.get(name)) for name in ("loss", "val_loss", metric, f"val_{metric}")}
    if not any(xs for xs, _ in series.values()):
        return None
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    for ax, shown in zip(fig.subplots(1, 2), ("loss", metric)):
        for name, label, style in ((shown, "training", "-o"), (f"val_{shown}", "validation", "-s")):
            xs, ys = series[name]
            if xs:
                ax.plot(xs, ys, style, markersize=3, linewidth=1.5, label=label)
        if shown == metric and curve.threshold is not None:
            ax.axhline(curve.threshold, color="tab:red", linestyle="--", linewidth=1,
                       label=f"threshold {curve.threshold:g}")
        mark = _num(measured) if shown == metric else None
        if mark is not None:
            last = max(len(xs) for xs, _ in series.values())
            ax.plot([last], [mark], "*", color="black", markersize=12,
                    label=f"{curve.check} measured by the grader ({mark:.4f})")
        ax.set(title=shown.upper() if len(shown) <= 3 else shown.capitalize(), xlabel="epoch", ylabel=shown)
        ax.grid(alpha=.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
        if not ax.lines:
            _empty(ax, f"no {shown} recorded")
    return _png(fig)


def _status_view(result: dict) -> dict:
    """The status as a badge (ja, en, style), and for anything but a plain grade the reason as the lines of a
    highlighted box (box_style)."""
    status = _status(result)
    ja, en, style = _style(status)
    lines = str(result.get("status_detail") or "").splitlines() + (list(INFRA_MESSAGE) if status == INFRA else [])
    if not is_official(result):
        lines.append("非公式の採点です (指定の環境以外で採点) / Unofficial: not graded on the required device.")
    box_style = "warn" if style == "ok" else style        # a note on a graded result is worth a look, not a pass
    return {"ja": ja, "en": en, "style": style, "lines": lines, "box_style": box_style}


MARKS = {PASSED: ("✓", "pass"), NOT_GRADED: ("—", "info")}     # anything else: ✗


def _check_rows(tests: list, checks: tuple[CheckSpec, ...]) -> list[dict]:
    """One row per check of a stored result, titled from the declared checks (a check no longer declared: no
    title)."""
    title = titles(checks)
    rows = []
    for test in map(_dict, tests):
        name = str(test.get("name", "?"))
        status = test.get("status")
        mark, style = MARKS.get(status, ("✗", "fail"))
        rows.append({"id": name, "title": title.get(name, ("", "")), "output": str(test.get("output") or ""),
                     "score": "—" if status == NOT_GRADED else format_points(_num(test.get("score")) or 0),
                     "most": format_points(_num(test.get("max_score")) or 0), "mark": mark, "style": style})
    return rows


def _curve_words(result: dict, curve: TrainingCurve) -> tuple[str, str] | None:
    """The caption under the curves, (Japanese, English): the grader's measurement of ``curve.check`` (the graders
    record it under the check's id, and the notebook's own value as <id>_reported), worded from that check's own
    verdict so the page never says one thing in the table and another under the plot."""
    name, threshold = curve.check, curve.threshold
    if not name or threshold is None:
        return None
    check = next((t for t in map(_dict, _list(result.get("tests"))) if t.get("name") == name), {})
    measurements = _dict(result.get("measurements"))
    measured, reported = _num(measurements.get(name)), _num(measurements.get(f"{name}_reported"))
    status = check.get("status")
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


def _curves(result: dict, curve: TrainingCurve) -> dict:
    """The training curves section: its caption, and the plot as a data URI (None: nothing was recorded)."""
    execution, measurements = _dict(result.get("execution")), _dict(result.get("measurements"))
    png = training_curves_png(_dict(execution.get("history")), curve, measurements.get(curve.check))
    # Markup: the one piece of markup made here, trusted as it is — base64 of the PNG just drawn, nothing to escape.
    uri = Markup(f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}") if png else None
    return {"caption": _curve_words(result, curve), "png": uri}


def feedback_page(result: dict, config, checks: tuple[CheckSpec, ...]) -> str:
    """One student's page: score and status, the checks with their explanations (titled from ``checks``, the
    graders' declarations), the training curves, the notes."""
    result = _dict(result)
    score, most = _points(result)
    execution = _dict(result.get("execution"))
    assignment = config.assignment
    handed_in = _status(result) != NO_SUBMISSION         # nothing to show but the status and the score
    graded = _status(result) != INFRA and handed_in and bool(_list(result.get("tests")))
    curve = assignment.training_curve
    ran = [f"{_text(execution.get('device_name'))} ({_text(execution.get('device'))})",
           *(f"{label} {_text(execution.get(key))}" for label, key in
             (("TensorFlow", "tensorflow"), ("Keras", "keras"), ("seed", "seed"))),
           f"{_fmt(_seconds(result), '.1f')} s"] if handed_in else []            # nothing ran for nothing handed in
    footer = [f"status: {_status(result)}", *ran, f"採点日時 / graded {_local_time(result.get('graded_at'), config)}"]
    return render(
        "feedback.html.j2", assignment=assignment, student=_text(result.get("student_id"), ""),   # none: one notebook
        score=format_points(score) if score is not None else "—",
        most=format_points(most if most is not None else max_score(checks)), status=_status_view(result),
        submitted=_local_time(result.get("submitted_at"), config), deadline=_local_time(assignment.deadline, config),
        notebook=_text(result.get("notebook")), handed_in=handed_in,
        rows=_check_rows(result["tests"], checks) if graded else [],
        curves=_curves(result, curve) if graded and curve else None,
        notes=[_text(n) for n in _list(result.get("notes"))],
        superseded=[{"origin": _text(s.get("origin")), "submitted": _local_time(s.get("submitted_at"), config),
                     "reason": _text(s.get("reason"), "")} for s in map(_dict, _list(result.get("superseded")))],
        footer=footer, origin=_text(result.get("origin"), ""))


def pass_rates(results: list[dict], checks: tuple[CheckSpec, ...]) -> dict[str, tuple[int, int]]:
    """check id → (passed, judged) over graded submissions, for each declared check in order: the one count both
    the figure and the page show."""
    rates = {}
    for check in (c.id for c in checks):
        outcomes = [_dict(t).get("status") == PASSED for r in results if _is_graded(r)
                    for t in _list(r.get("tests"))
                    if _dict(t).get("name") == check and _dict(t).get("status") != NOT_GRADED]
        rates[check] = (sum(outcomes), len(outcomes))
    return rates


def _status_counts(results: list[dict]) -> dict[str, int]:
    """Statuses in the order of STATUSES (unknown ones last), each with its count."""
    counts = Counter(map(_status, results))
    return {s: counts[s] for s in sorted(counts, key=lambda s: list(STATUSES).index(s) if s in STATUSES else 99)}


def _measured(result: dict, name: str | None) -> float | None:
    return _num(_dict(result.get("measurements")).get(name)) if name else None


def _seconds(result: dict) -> float | None:
    return _num(_dict(result.get("execution")).get("seconds"))


def _timings(results: list[dict]) -> list[tuple[str, float]]:
    return [(str(r.get("student_id") or "?"), _seconds(r)) for r in results if _seconds(r) is not None]


def _empty(ax, text: str) -> None:
    ax.text(.5, .5, text, ha="center", va="center", color="gray", transform=ax.transAxes)
    ax.set(xticks=[], yticks=[])


TIME_AXIS_LABELS = 30          # student ids under the grading-time bars: 10 pt, still legible at the page's width


def summary_figure(results: list[dict], config, checks: tuple[CheckSpec, ...], fingerprint: str = "") -> bytes:
    """Scores, pass rate per check, val_accuracy and grading time of a whole run, as one 2×2 PNG (``fingerprint``,
    what it is drawn from, kept in it: see ``figure_fingerprint``)."""
    results = [_dict(r) for r in _list(results)]
    fig = Figure(figsize=(12, 8), layout="constrained")
    (scores_ax, rates_ax), (val_ax, time_ax) = fig.subplots(2, 2)
    counts = ", ".join(f"{status} {n}" for status, n in _status_counts(results).items())
    fig.suptitle(_plain(f"{config.assignment.id}: {count(len(results), 'submission')}" + (f" ({counts})" if counts else "")))

    scores = [s for s, _ in map(_points, results) if s is not None]
    most = max_score(checks)
    scores_ax.set_title(f"Score (n={len(scores)}, infrastructure errors excluded)")
    if scores:
        scores_ax.hist(scores, bins=[i - .5 for i in range(math.ceil(most) + 2)], edgecolor="white")
        scores_ax.set(xlabel="score", ylabel="submissions", xlim=(-.5, most + .5))
        scores_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        _empty(scores_ax, "no scores")

    rates = {c: (p, n) for c, (p, n) in pass_rates(results, checks).items() if n}
    rates_ax.set_title(f"Pass rate per check (graded submissions, n={max((n for _, n in rates.values()), default=0)})")
    if rates:
        shares = [100 * p / n for p, n in reversed(rates.values())]
        bars = rates_ax.barh(list(rates)[::-1], shares, color="tab:green")
        rates_ax.bar_label(bars, labels=[f"{s:.0f}%" for s in shares], padding=3, fontsize=8)
        rates_ax.set(xlabel="% passed", xlim=(0, 110))
    else:
        _empty(rates_ax, "no graded submissions")

    _measured_histogram(val_ax, results, config.assignment.training_curve)

    timings = _timings(results)
    time_ax.set_title(f"Grading time per submission (n={len(timings)})")
    if len(timings) > 40:
        time_ax.hist([t for _, t in timings], bins=20, color="tab:orange", edgecolor="white")
        time_ax.set(xlabel="seconds", ylabel="submissions")
    elif timings:
        time_ax.bar(range(len(timings)), [t for _, t in timings], color="tab:orange")   # positions: ids may repeat
        step = math.ceil(len(timings) / TIME_AXIS_LABELS)       # readable ids, at most that many (every step-th)
        time_ax.set_xticks(range(0, len(timings), step), [_plain(s) for s, _ in timings[::step]], rotation=90,
                           fontsize=10)
        time_ax.set(xlabel="student", ylabel="seconds")
    else:
        _empty(time_ax, "no grading times recorded")
    for ax in (scores_ax, rates_ax, val_ax, time_ax):
        ax.grid(alpha=.3)
    return _png(fig, FIGURE_FINGERPRINT + fingerprint if fingerprint else "")


def _measured_histogram(ax, results: list[dict], curve: TrainingCurve | None) -> None:
    """The grader's measurement of the assignment's curve check over graded submissions, with the threshold."""
    name = curve.check if curve else None
    values = [v for v in (_measured(r, name) for r in filter(_is_graded, results)) if v is not None]
    threshold = curve.threshold if curve else None
    below = sum(v < threshold for v in values) if threshold is not None else 0
    ax.set_title(f"{name or 'measurement'} measured by the grader (n={len(values)}"
                 + (f", {below} below threshold)" if threshold is not None else ")"))
    if not values:
        _empty(ax, f"no {name or 'measurement'} measured")
        return
    edges = [*values, *([threshold] if threshold is not None else [])]
    span = (min(edges) - .005, max(edges) + .005)
    ax.hist(values, bins=20, range=span, color="tab:purple", edgecolor="white")   # threshold in view
    if threshold is not None:
        ax.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:g}")
        ax.legend(fontsize=8)
    ax.set(xlabel=name, ylabel="submissions")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def summary_page(results: list[dict], config, checks: tuple[CheckSpec, ...], figure_name: str = "summary.png",
                 wall_seconds: float | None = None) -> str:
    """The class overview for the instructor: counts, score statistics, pass rates (per declared check, titled from
    ``checks``), devices, and links to pages; atop it a red banner when any grade is unofficial (the page a TA reads
    before uploading the gradebook to the LMS) and a box when a grader failed on some checks (those scores are not
    final until it is fixed); the infrastructure errors with why the runner failed (what the instructor must fix
    before rerunning).
    ``wall_seconds``: how long the batch took, shown beside the grading time summed over notebooks (they differ
    by the number of workers, and by results kept from earlier runs)."""
    results = [_dict(r) for r in _list(results)]
    scores = [s for s, _ in map(_points, results) if s is not None]
    timings = [t for _, t in _timings(results)]
    curve = config.assignment.training_curve
    measured_name = curve.check if curve else None
    most, title = max_score(checks), titles(checks)
    devices = sorted({str(_dict(r.get("execution")).get("device_name")) for r in results} - {"None", ""})
    stats = [("提出数 / Submissions", len(results)),
             *((f"{_style(s)[0]} / {s}", n) for s, n in _status_counts(results).items()),
             ("平均点 / Mean score", f"{statistics.mean(scores):.2f} / {format_points(most)} "
              f"(n={len(scores)}, infrastructure errors excluded)" if scores else "—"),
             ("中央値 / Median score", format_points(statistics.median(scores)) if scores else "—"),
             ("採点環境 / Devices", ", ".join(devices) or "—"),
             ("採点時間 (ノートブックごとの合計) / Grading time, summed over notebooks",
              f"{sum(timings):.0f} s (平均 / mean {statistics.mean(timings):.1f} s, n={len(timings)})"
              if timings else "—"),
             *([("経過時間 (この実行) / Wall time of this run", f"{wall_seconds:.0f} s")]
               if wall_seconds is not None else [])]
    rates = [{"id": c, "title": title[c], "passed": p, "judged": n, "share": f"{100 * p / n:.0f}%" if n else "—"}
             for c, (p, n) in pass_rates(results, checks).items()]
    students = []
    for r in sorted(results, key=lambda r: str(r.get("student_id") or "")):
        sid = str(r.get("student_id") or "")
        score, out_of = _points(r)
        ja, en, style = _style(_status(r))
        students.append({"id": sid, "href": f"feedback/{quote(file_stem(sid), safe='')}.html",  # as the batch writes it
                         "score": _fmt(score, "g"), "most": format_points(out_of or most), "status": en or ja,
                         "style": style, "measured": _fmt(_measured(r, measured_name), ".4f"),
                         "seconds": _fmt(_seconds(r), ".1f")})
    unofficial = sum(not is_official(r) for r in results)
    return render(
        "summary.html.j2", assignment=config.assignment,
        unofficial=unofficial_warning(unofficial, len(results)) if unofficial else None,
        not_graded=[(student, " ".join(ids)) for student, ids in checks_not_graded(results).items()],
        stats=stats, infrastructure=[(why, ", ".join(who)) for why, who in infrastructure_reasons(results).items()],
        figure=quote(figure_name), rates=rates, measured_name=measured_name or "", students=students)
