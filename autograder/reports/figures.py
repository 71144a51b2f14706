"""The plots of the pages, as PNG bytes: a student's training curves and a class's 2×2 summary figure.

Drawn with matplotlib's Figure directly (Agg canvas, no pyplot state: safe in worker processes) and English labels
only, since the grading machine may lack CJK fonts.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..course.assignment import TrainingCurve
from ..grading.checks import CheckSpec, max_score
from ..grading.result import Result, finite, pass_rates, status_counts, timings
from .report import count


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
    points = [(i, finite(v)) for i, v in enumerate(values if isinstance(values, list) else [], start=1)]
    return [i for i, v in points if v is not None], [v for _, v in points if v is not None]


# Names Keras may record a metric under, by the metric as given (metrics=['acc'] records "acc",
# CategoricalAccuracy() "categorical_accuracy"); any other metric is looked for under its own name.
METRIC_ALIASES = {"accuracy": ("accuracy", "acc", "categorical_accuracy")}


def curves_of(history: dict, metric: str) -> dict[str, list]:
    """The four curves the page draws, keyed loss, val_loss, <metric>, val_<metric>, each from the first name it
    was recorded under (any case: metrics=['ACC'] records "ACC")."""
    by_name = {str(k).lower(): v for k, v in (history if isinstance(history, dict) else {}).items()}
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
        mark = finite(measured) if shown == metric else None
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


def _empty(ax, text: str) -> None:
    ax.text(.5, .5, text, ha="center", va="center", color="gray", transform=ax.transAxes)
    ax.set(xticks=[], yticks=[])


TIME_AXIS_LABELS = 30          # student ids under the grading-time bars: 10 pt, still legible at the page's width


def summary_figure(results: list[Result | dict], config, checks: tuple[CheckSpec, ...],
                   fingerprint: str = "") -> bytes:
    """Scores, pass rate per check, val_accuracy and grading time of a whole run, as one 2×2 PNG (``fingerprint``,
    what it is drawn from, kept in it: see ``figure_fingerprint``)."""
    results = list(map(Result.of, results))
    fig = Figure(figsize=(12, 8), layout="constrained")
    (scores_ax, rates_ax), (val_ax, time_ax) = fig.subplots(2, 2)
    counts = ", ".join(f"{status} {n}" for status, n in status_counts(results).items())
    fig.suptitle(_plain(f"{config.assignment.id}: {count(len(results), 'submission')}" + (f" ({counts})" if counts else "")))

    scores = [r.points for r in results if r.points is not None]
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

    times = timings(results)
    time_ax.set_title(f"Grading time per submission (n={len(times)})")
    if len(times) > 40:
        time_ax.hist([t for _, t in times], bins=20, color="tab:orange", edgecolor="white")
        time_ax.set(xlabel="seconds", ylabel="submissions")
    elif times:
        time_ax.bar(range(len(times)), [t for _, t in times], color="tab:orange")   # positions: ids may repeat
        step = math.ceil(len(times) / TIME_AXIS_LABELS)       # readable ids, at most that many (every step-th)
        time_ax.set_xticks(range(0, len(times), step), [_plain(s) for s, _ in times[::step]], rotation=90,
                           fontsize=10)
        time_ax.set(xlabel="student", ylabel="seconds")
    else:
        _empty(time_ax, "no grading times recorded")
    for ax in (scores_ax, rates_ax, val_ax, time_ax):
        ax.grid(alpha=.3)
    return _png(fig, FIGURE_FINGERPRINT + fingerprint if fingerprint else "")


def _measured_histogram(ax, results: list[Result], curve: TrainingCurve | None) -> None:
    """The grader's measurement of the assignment's curve check over graded submissions, with the threshold."""
    name = curve.check if curve else None
    values = [v for v in (r.measured(name) for r in results if r.judged) if v is not None]
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


