"""The pages and plots of a batch grading run: one feedback page per student, a class summary page and figure.

Pages are static, self-contained HTML (inline CSS, the plot inlined as base64) so they can be emailed or served as
files. Everything taken from a result — notes, check outputs, names, ids, paths — is student-influenced text and is
escaped. Plots use matplotlib's Figure directly (Agg canvas, no pyplot state: safe in worker processes) and English
labels only, since the grading machine may lack CJK fonts.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
import statistics
from collections import Counter
from urllib.parse import quote

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .clock import local_text, parse_time
from .assignment import TrainingCurve
from .checks import CheckSpec, max_score, titles
from .intake import file_stem
from .report import format_points, unofficial_warning
from .result import (ERROR, GRADED, LATE, NO_TIMESTAMP, NOT_GRADED, PASSED, TIMEOUT, checks_not_graded,
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
}
INFRA_MESSAGE = ("これはあなたの提出物の問題ではありません。採点をやり直します。この結果は成績ではありません。",
                 "This is not a problem with your submission. It will be regraded; this is not your grade.")

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Hiragino Sans","Noto Sans JP","Noto Sans CJK JP","Yu Gothic",
 Meiryo,sans-serif;color:#1f2933;background:#f5f7fa;margin:0;line-height:1.55}
main{max-width:60rem;margin:1.5rem auto;background:#fff;padding:1.5rem 2rem 1rem;border:1px solid #e4e7eb;
 border-radius:8px}h1{font-size:1.45rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:1.8rem 0 .6rem;
 padding-bottom:.25rem;border-bottom:1px solid #e4e7eb}code,pre{font-family:ui-monospace,Menlo,Consolas,
 "Noto Sans Mono CJK JP",monospace;font-size:.88em}.head{display:flex;gap:1.5rem;align-items:center}
.card{border:1px solid #e4e7eb;border-radius:8px;padding:.4rem 1.2rem;text-align:center;min-width:7rem}
.label,.en,dt,footer{color:#616e7c}.label{font-size:.8rem}.score{font-size:2.2rem;font-weight:700;line-height:1.2}
.score small{font-size:1rem;font-weight:400;color:#616e7c}.head .badge{margin-top:.3rem}.badge{display:inline-block;
 padding:.15rem .7rem;border-radius:999px;font-weight:600;font-size:.9rem;white-space:nowrap}
.ok{background:#e3f9e5;color:#1f6d2c}.warn{background:#fff3c4;color:#8d5b00}.bad{background:#ffe3e3;color:#a61b1b}
.info{background:#e0f0ff;color:#0b4f8a}.box{padding:.6rem 1rem;border-radius:6px;margin:1rem 0;
 border-left:5px solid currentColor}.box p{margin:.15rem 0;color:#1f2933}table{border-collapse:collapse;width:100%;
 font-size:.95rem}th,td{border-bottom:1px solid #e4e7eb;padding:.45rem .6rem;text-align:left;vertical-align:top}
th{background:#f5f7fa;font-weight:600}.students td{vertical-align:middle}td.num,th.num{text-align:right}
td.num{white-space:nowrap}.en{font-size:.88em}.mark{font-size:1.15rem;text-align:center}.pass{color:#1f7a34}
.fail{color:#c62828}pre{white-space:pre-wrap;word-break:break-word;background:#fafbfc;border:1px solid #e4e7eb;
 border-radius:4px;padding:.45rem .6rem;margin:.4rem 0 0}img{display:block;max-width:100%;height:auto;
 margin:.5rem auto}dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1.2rem;margin:1rem 0}dd{margin:0}
footer{margin-top:2rem;padding-top:.6rem;border-top:1px solid #e4e7eb;font-size:.82rem}ul{padding-left:1.3rem}
@media(max-width:40rem){main{margin:0;border:0;border-radius:0;padding:1rem}th,td{padding:.4rem .25rem}td{overflow-wrap:anywhere}td>code{overflow-wrap:normal}}
"""

esc = html.escape


def _num(value) -> float | None:
    """A finite float, or None for anything else (missing, NaN, inf, text): results may be malformed."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _text(value, default: str = "?") -> str:
    """Any value from a result as escaped HTML text (a default when it is missing)."""
    return default if value is None or value == "" else esc(str(value))


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


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


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
        measured = _num(measured) if shown == metric else None
        if measured is not None:
            last = max(len(xs) for xs, _ in series.values())
            ax.plot([last], [measured], "*", color="black", markersize=12,
                    label=f"{curve.check} measured by the grader ({measured:.4f})")
        ax.set(title=shown.upper() if len(shown) <= 3 else shown.capitalize(), xlabel="epoch", ylabel=shown)
        ax.grid(alpha=.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
        if not ax.lines:
            _empty(ax, f"no {shown} recorded")
    return _png(fig)


def _bi(ja: str, en: str) -> str:
    """Japanese, then English on its own line in a quieter style (both escaped)."""
    return f'{esc(ja)}<br><span class="en">{esc(en)}</span>'


def _status_block(result: dict) -> tuple[str, str]:
    """The status as a badge, and for anything but a plain grade the reason in a highlighted box."""
    status = _status(result)
    ja, en, style = _style(status)
    badge = f'<span class="badge {style}">{esc(ja)}{" / " + esc(en) if en else ""}</span>'
    lines = str(result.get("status_detail") or "").splitlines() + (list(INFRA_MESSAGE) if status == INFRA else [])
    if not is_official(result):
        lines.append("非公式の採点です (指定の環境以外で採点) / Unofficial: not graded on the required device.")
    box = "".join(f"<p>{esc(line)}</p>" for line in lines)
    box_style = "warn" if style == "ok" else style        # a note on a graded result is worth a look, not a pass
    return badge, (f'<div class="box {box_style}">{box}</div>' if box else "")


MARKS = {PASSED: ("✓", "pass"), NOT_GRADED: ("—", "info")}     # anything else: ✗


def _check_rows(tests: list, checks: tuple[CheckSpec, ...]) -> str:
    """One row per check of a stored result, titled from the declared checks (a check no longer declared: no
    title)."""
    title = titles(checks)
    rows = []
    for test in map(_dict, tests):
        name = str(test.get("name", "?"))
        status = test.get("status")
        mark, style = MARKS.get(status, ("✗", "fail"))
        output = str(test.get("output") or "")
        score = "—" if status == NOT_GRADED else format_points(_num(test.get("score")) or 0)
        rows.append(f'<tr><td><code>{esc(name)}</code></td><td>{_bi(*title.get(name, ("", "")))}'
                    f'{f"<pre>{esc(output)}</pre>" if output else ""}</td><td class="num">'
                    f'{score} / {format_points(_num(test.get("max_score")) or 0)}'
                    f'</td><td class="mark {style}">{mark}</td></tr>')
    return "\n".join(rows)


def _curve_words(result: dict, curve: TrainingCurve) -> str:
    """The caption under the curves: the grader's measurement of ``curve.check`` (the graders record it under
    the check's id, and the notebook's own value as <id>_reported), worded from that check's own verdict so the
    page never says one thing in the table and another under the plot."""
    name, threshold = curve.check, curve.threshold
    if not name or threshold is None:
        return ""
    check = next((t for t in map(_dict, _list(result.get("tests"))) if t.get("name") == name), {})
    measurements = _dict(result.get("measurements"))
    measured, reported = _num(measurements.get(name)), _num(measurements.get(f"{name}_reported"))
    status = check.get("status")
    if status == NOT_GRADED:
        return f"<p>{_bi(f'{name} の項目は採点されていません (上の表)。', f'The {name} check was not graded (see the table above).')}</p>"
    if measured is None:
        return f"<p>{_bi(f'{name} は測定できませんでした (理由は上の表)。', f'{name} could not be measured (see the table above).')}</p>"
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
    return f"<p>{_bi(ja, en)}</p>"


def _page(title: str, body: str) -> str:
    return (f'<!doctype html>\n<html lang="ja"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{title}</title>'
            f"<style>{CSS}</style></head>\n<body><main>\n{body}\n</main></body></html>\n")


def feedback_page(result: dict, config, checks: tuple[CheckSpec, ...]) -> str:
    """One student's page: score and status, the checks with their explanations (titled from ``checks``, the
    graders' declarations), the training curves, the notes."""
    result = _dict(result)
    student = _text(result.get("student_id"))
    score, most = _points(result)
    max_text = format_points(most if most is not None else max_score(checks))
    score_text = format_points(score) if score is not None else "—"
    badge, box = _status_block(result)
    execution, measurements = _dict(result.get("execution")), _dict(result.get("measurements"))
    assignment = config.assignment
    parts = [f"<h1>{esc(assignment.id)} — フィードバック / Feedback</h1><p>{_bi(*assignment.title)}</p>",
             f'<div class="head"><div class="card"><div class="label">得点 / Score</div><div class="score">'
             f'{score_text} <small>/ {max_text}</small></div></div><div>学生 / Student: <b>{student}</b><br>'
             f'{badge}</div></div>{box}',
             f"<dl><dt>提出 / Submitted</dt><dd>{_local_time(result.get('submitted_at'), config)}</dd>"
             f"<dt>締切 / Deadline</dt><dd>{_local_time(config.assignment.deadline, config)}</dd>"
             f"<dt>ノートブック / Notebook</dt><dd><code>{_text(result.get('notebook'))}</code></dd></dl>"]
    if _status(result) != INFRA and _list(result.get("tests")):
        parts += ["<h2>採点項目 / Checks</h2><table><tr><th>ID</th><th>内容 / What is checked</th>"
                  '<th class="num">点 / Points</th><th>結果 / Result</th></tr>', _check_rows(result["tests"], checks),
                  "</table>"]
        curve = assignment.training_curve
        if curve:
            png = training_curves_png(_dict(execution.get("history")), curve, measurements.get(curve.check))
            parts += ["<h2>学習曲線 / Training curves</h2>", _curve_words(result, curve),
                      f'<img alt="training curves" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
                      if png else f"<p>{_bi('学習の記録がありません。', 'No training history was recorded.')}</p>"]
    notes = "".join(f"<li>{_text(n)}</li>" for n in _list(result.get("notes")))
    if notes:
        parts.append(f"<h2>メモ / Notes</h2><ul>{notes}</ul>")
    superseded = "".join(
        f"<li>採点対象外 / not graded: <code>{_text(s.get('origin'))}</code> "
        f"({_local_time(s.get('submitted_at'), config)}) — {_text(s.get('reason'), '')}</li>"
        for s in map(_dict, _list(result.get("superseded"))))
    if superseded:
        parts.append(f"<h2>採点対象外の提出 / Submissions not graded</h2><ul>{superseded}</ul>")
    footer = [f"status: {esc(_status(result))}", f"{_text(execution.get('device_name'))} ({_text(execution.get('device'))})",
              *(f"{label} {_text(execution.get(key))}" for label, key in
                (("TensorFlow", "tensorflow"), ("Keras", "keras"), ("seed", "seed"))),
              f"{_fmt(_seconds(result), '.1f')} s", f"採点日時 / graded {_local_time(result.get('graded_at'), config)}"]
    parts.append(f"<footer>{' · '.join(footer)}<br>{_text(result.get('origin'), '')}</footer>")
    return _page(f"{esc(config.assignment.id)} — {student}", "\n".join(parts))


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


def summary_figure(results: list[dict], config, checks: tuple[CheckSpec, ...]) -> bytes:
    """Scores, pass rate per check, val_accuracy and grading time of a whole run, as one 2×2 PNG."""
    results = [_dict(r) for r in _list(results)]
    fig = Figure(figsize=(12, 8), layout="constrained")
    (scores_ax, rates_ax), (val_ax, time_ax) = fig.subplots(2, 2)
    counts = ", ".join(f"{status} {n}" for status, n in _status_counts(results).items())
    fig.suptitle(_plain(f"{config.assignment.id}: {len(results)} submissions" + (f" ({counts})" if counts else "")))

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
        time_ax.set_xticks(range(len(timings)), [_plain(s) for s, _ in timings], rotation=90, fontsize=7)
        time_ax.set(ylabel="seconds")
    else:
        _empty(time_ax, "no grading times recorded")
    for ax in (scores_ax, rates_ax, val_ax, time_ax):
        ax.grid(alpha=.3)
    return _png(fig)


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


def _infrastructure_section(results: list[dict]) -> str:
    """The infrastructure errors and why the runner failed, one line per reason (none: no section): what the
    instructor must fix before rerunning."""
    reasons = infrastructure_reasons(results)
    items = "".join(f"<li><code>{esc(why)}</code>: {esc(', '.join(students))}</li>"
                    for why, students in reasons.items())
    return f"<h2>採点環境の問題 / Infrastructure errors</h2><ul>{items}</ul>" if reasons else ""


def _not_graded_banner(results: list[dict]) -> str:
    """A box atop the summary when a grader failed on some checks: those scores are not final until it is fixed."""
    flagged = checks_not_graded(results)
    if not flagged:
        return ""
    items = "".join(f"<li>{esc(student)}: <code>{esc(' '.join(checks))}</code></li>" for student, checks in flagged.items())
    return (f'<div class="box warn" role="alert"><p><b>{len(flagged)} 件の提出で、採点プログラムのエラーのため採点されていない'
            f'項目があります (点は与えも引きもしていません)。採点プログラムを直して、同じコマンドで採点し直してください。</b></p>'
            f"<p>{len(flagged)} submission(s) have checks not graded because a grader failed (no points given or taken): "
            f"fix the grader and run the same command again.</p><ul>{items}</ul></div>")


def _unofficial_banner(results: list[dict]) -> str:
    """A red box atop the summary when any grade is unofficial, with the count: the page a TA reads before
    uploading the gradebook to the LMS."""
    unofficial = sum(not is_official(r) for r in results)
    if not unofficial:
        return ""
    ja, en = unofficial_warning(unofficial, len(results))
    return f'<div class="box bad" role="alert"><p><b>{esc(ja)}</b></p><p>{esc(en)}</p></div>'


def summary_page(results: list[dict], config, checks: tuple[CheckSpec, ...], figure_name: str = "summary.png",
                 wall_seconds: float | None = None) -> str:
    """The class overview for the instructor: counts, score statistics, pass rates (per declared check, titled from
    ``checks``), devices, and links to pages.
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
             *((f"{esc(_style(s)[0])} / {esc(s)}", n) for s, n in _status_counts(results).items()),
             ("平均点 / Mean score", f"{statistics.mean(scores):.2f} / {format_points(most)} "
              f"(n={len(scores)}, infrastructure errors excluded)" if scores else "—"),
             ("中央値 / Median score", format_points(statistics.median(scores)) if scores else "—"),
             ("採点環境 / Devices", esc(", ".join(devices)) or "—"),
             ("採点時間 (ノートブックごとの合計) / Grading time, summed over notebooks",
              f"{sum(timings):.0f} s (平均 / mean {statistics.mean(timings):.1f} s, n={len(timings)})"
              if timings else "—"),
             *([("経過時間 (この実行) / Wall time of this run", f"{wall_seconds:.0f} s")]
               if wall_seconds is not None else [])]
    rate_rows = "".join(f'<tr><td><code>{c}</code></td><td>{_bi(*title[c])}</td><td class="num">{p} / {n}'
                        f'</td><td class="num">{f"{100 * p / n:.0f}%" if n else "—"}</td></tr>'
                        for c, (p, n) in pass_rates(results, checks).items())
    student_rows = []
    for r in sorted(results, key=lambda r: str(r.get("student_id") or "")):
        sid = str(r.get("student_id") or "")
        score, out_of = _points(r)
        val, seconds = _measured(r, measured_name), _seconds(r)
        ja, en, style = _style(_status(r))
        href = esc(f"feedback/{quote(file_stem(sid), safe='')}.html")   # where the batch writes the page
        link = f'<a href="{href}">{esc(sid)}</a>' if sid else "?"
        student_rows.append(
            f'<tr><td>{link}</td><td class="num">{_fmt(score, "g")} / {format_points(out_of or most)}'
            f'</td><td><span class="badge {style}">{esc(en or ja)}</span></td><td class="num">{_fmt(val, ".4f")}</td>'
            f'<td class="num">{_fmt(seconds, ".1f")}</td></tr>')
    body = (f"<h1>{esc(config.assignment.id)} — 採点結果のまとめ / Grading summary</h1>" + _unofficial_banner(results)
            + _not_graded_banner(results)
            + "<dl>"
            + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in stats) + "</dl>" + _infrastructure_section(results) +
            f'<img alt="summary figure" src="{esc(quote(figure_name))}">'
            "<h2>項目ごとの合格率 / Pass rate per check</h2><table><tr><th>ID</th><th>内容 / What is checked</th>"
            '<th class="num">合格 / passed of graded</th><th class="num">%</th></tr>' + rate_rows + "</table>"
            '<h2>学生一覧 / Students</h2><table class="students"><tr><th>ID</th><th class="num">点 / Score</th>'
            f'<th>状態 / Status</th><th class="num">{esc(measured_name or "")}</th>'
            '<th class="num">採点時間 / seconds</th></tr>'
            + "\n".join(student_rows) + "</table>")
    return _page(f"{esc(config.assignment.id)} — summary", body)
