"""The class's page for the instructor (``summary.html``), from the class's ``Result``s: counts, score statistics,
pass rates, devices, the students linked to their pages, and what must be fixed before the grades are final."""

from __future__ import annotations

import statistics
from urllib.parse import quote

from ..grading.checks import CheckSpec, max_score, titles
from ..grading.result import Result, checks_not_graded, infrastructure_reasons, pass_rates, status_counts, timings
from ..grading.store import file_stem
from .feedback import local_time, style_of
from .pages import render
from .report import format_number, format_points, unofficial_warning


def summary_page(results: list[Result | dict], config, checks: tuple[CheckSpec, ...], figure_name: str = "summary.png",
                 wall_seconds: float | None = None) -> str:
    """The class overview for the instructor: counts, score statistics, pass rates (per declared check, titled from
    ``checks``), devices, and links to pages; atop it a red banner when any grade is unofficial (the page a TA reads
    before uploading the gradebook to the LMS) and a box when a grader failed on some checks (those scores are not
    final until it is fixed); the infrastructure errors with why the runner failed (what the instructor must fix
    before rerunning).
    ``wall_seconds``: how long the batch took, shown beside the grading time summed over notebooks (they differ
    by the number of workers, and by results kept from earlier runs)."""
    results = list(map(Result.of, results))
    scores = [r.points for r in results if r.points is not None]
    seconds = [t for _, t in timings(results)]
    curve = config.assignment.training_curve
    measured_name = curve.check if curve else None
    most, title = max_score(checks), titles(checks)
    devices = sorted({str(r.execution.get("device_name")) for r in results} - {"None", ""})
    stats = [("提出数 / Submissions", len(results)),
             *((f"{style_of(s)[0]} / {s}", n) for s, n in status_counts(results).items()),
             ("平均点 / Mean score", f"{statistics.mean(scores):.2f} / {format_points(most)} "
              f"(n={len(scores)}, infrastructure errors excluded)" if scores else "—"),
             ("中央値 / Median score", format_points(statistics.median(scores)) if scores else "—"),
             ("採点環境 / Devices", ", ".join(devices) or "—"),
             ("採点時間 (ノートブックごとの合計) / Grading time, summed over notebooks",
              f"{sum(seconds):.0f} s (平均 / mean {statistics.mean(seconds):.1f} s, n={len(seconds)})"
              if seconds else "—"),
             *([("経過時間 (この実行) / Wall time of this run", f"{wall_seconds:.0f} s")]
               if wall_seconds is not None else [])]
    rates = [{"id": c, "title": title[c], "passed": p, "judged": n, "share": f"{100 * p / n:.0f}%" if n else "—"}
             for c, (p, n) in pass_rates(results, checks).items()]
    students = []
    for r in sorted(results, key=lambda r: r.student):
        ja, en, style = style_of(r.status)
        students.append({"id": r.student, "href": f"feedback/{quote(file_stem(r.student), safe='')}.html",  # as the
                         "score": format_number(r.points, "g"),                                  # batch writes it
                         "most": format_points(r.max_score or most), "status": en or ja, "style": style,
                         "measured": format_number(r.measured(measured_name), ".4f"),
                         "seconds": format_number(r.seconds, ".1f"),
                         "extended": local_time(r.provenance.extended_until, config)
                         if r.provenance.extended_until else "",
                         "late_deduction": format_points(r.late_deduction) if r.late_deduction else ""})
    unofficial = sum(not r.official for r in results)
    return render(
        "summary.html.j2", assignment=config.assignment,
        unofficial=unofficial_warning(unofficial, len(results)) if unofficial else None,
        not_graded=[(student, " ".join(ids)) for student, ids in checks_not_graded(results).items()],
        stats=stats, infrastructure=[(why, ", ".join(who)) for why, who in infrastructure_reasons(results).items()],
        figure=quote(figure_name), rates=rates, measured_name=measured_name or "", students=students)
