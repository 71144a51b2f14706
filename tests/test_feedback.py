"""The batch run's pages and plots: built from result dicts alone (no TensorFlow, no notebook runs)."""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import math
import re
from html.parser import HTMLParser

import matplotlib.image
import pytest

from autograder.course.assignment import TrainingCurve
from autograder.grading.graders import check_graders
from autograder.grading.result import pass_rates
from autograder.grading.store import file_stem
from autograder.reports.feedback import feedback_page
from autograder.reports.figures import curves_of, summary_figure, training_curves_png
from autograder.reports.summary import summary_page
from tests.conftest import assert_no_grader_source

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HOSTILE = "<script>alert(1)</script>"
RESHAPE_WHY = "x_train の値は 0〜1 のはずですが、0〜255 でした。\nx_train should hold values within [0, 1], found [0, 255]."
VAL_WHY = "val_accuracy 0.9421 は基準 0.95 未満です。\nval_accuracy 0.9421 is below the threshold 0.95."


def history(epochs: int = 30) -> dict:
    return {"loss": [0.5 / (i + 1) for i in range(epochs)], "accuracy": [0.9 + 0.002 * i for i in range(epochs)],
            "val_loss": [0.4 / (i + 1) + 0.05 for i in range(epochs)],
            "val_accuracy": [0.92 + 0.0015 * i for i in range(epochs)]}


def make_result(config, student="s001", failed=(), status="graded", **fields) -> dict:
    """A result as the batch grader writes it, over the checks the graders declare; `failed` maps check id → its
    explanation."""
    failed = dict(failed)
    tests = [{"name": c.id, "status": "failed" if c.id in failed else "passed",
              "score": 0.0 if c.id in failed else c.points, "max_score": c.points,
              "output": failed.get(c.id, "")} for c in check_graders(config)]
    result = {"score": sum(t["score"] for t in tests), "max_score": sum(t["max_score"] for t in tests),
              "tests": tests,
              "assignment": "assignment3", "notebook": "assignment3.ipynb", "official": True, "status": status,
              "status_detail": "", "notes": [],
              "measurements": {"val_accuracy": 0.9638, "val_accuracy_reported": 0.9641, "param_count": 25450,
                               "predicted_digit_x_test_1": 2},
              "execution": {"device": "gpu", "device_name": "NVIDIA T4", "seed": 20240509, "seconds": 41.2,
                            "tensorflow": "2.21.0", "keras": "3.15.1", "fused_fit": True, "history": history()},
              "student_id": student, "submitted_at": "2024-05-15T12:00:00+00:00",
              "origin": f"submitted/{student}/assignment3/assignment3.ipynb", "superseded": [],
              "graded_at": "2026-11-29T09:00:00+00:00", "attempts": 1}
    result.update(fields)
    return result


class Tags(HTMLParser):
    """Every start tag with its attributes, to see what a page would make a browser do."""

    def __init__(self, page: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(src.removeprefix("data:image/png;base64,"))
            for tag, attrs in Tags(page).tags if tag == "img"
            for src in [attrs.get("src", "")] if src.startswith("data:image/png;base64,")]


def read_png(data: bytes):
    assert data.startswith(PNG_SIGNATURE)
    return matplotlib.image.imread(io.BytesIO(data), format="png")


def score_card(page: str) -> str:
    return re.search(r'<div class="score">(.*?)</div>', page).group(1)


def test_feedback_page_shows_score_checks_explanations_and_times(config, checks):
    result = make_result(config, failed={"reshape": RESHAPE_WHY, "val_accuracy": VAL_WHY},
                         superseded=[{"origin": "submitted/s001/old.ipynb", "reason": "an earlier submission",
                                      "submitted_at": "2024-05-14 03:00:00.000000 UTC"}])
    page = feedback_page(result, config, checks)
    assert score_card(page) == "9 <small>/ 12</small>"
    for check in checks:                                                               # titled as declared
        assert f"<code>{check.id}</code>" in page
        assert html.escape(check.title_ja) in page and html.escape(check.title_en) in page
    assert f"<pre>{RESHAPE_WHY}</pre>" in page and f"<pre>{VAL_WHY}</pre>" in page   # newline kept, in <pre>
    assert page.count("<pre>") == 2                                                  # passed checks explain nothing
    assert "0 / 1" in page and "0 / 2" in page and "2 / 2" in page
    assert "2024-05-15 21:00 JST" in page and "2024-05-16 23:59 JST" in page           # course time zone
    assert "2024-05-14 12:00 JST" in page and "submitted/s001/old.ipynb" in page       # nbgrader's UTC format
    assert "0.9638" in page and "reaches the threshold 0.95" in page
    assert "status: graded" in page                                                   # the id TAs search for
    assert "NVIDIA T4" in page and "2.21.0" in page and "3.15.1" in page and "20240509" in page and "41.2 s" in page
    assert page.startswith("<!doctype html>") and '<html lang="ja">' in page and '<meta charset="utf-8">' in page
    assert not [t for t, a in Tags(page).tags if t in ("script", "link") or "src" in a and not
                a["src"].startswith("data:")]                                        # self-contained
    assert_no_grader_source(page)


def test_feedback_page_embeds_the_training_curves_as_a_png(config, checks):
    pngs = embedded_pngs(feedback_page(make_result(config), config, checks))
    assert len(pngs) == 1
    height, width, _ = read_png(pngs[0]).shape
    assert (width, height) == (900, 350)


def test_hostile_text_from_a_result_is_escaped_everywhere(config, checks):
    def result(text: str, student: str) -> dict:
        return make_result(config, student=student, failed={"reshape": f"</pre>{text}"},
                           notes=[text, f"cell 3 (reshape) error: NameError: name 'x' {text}"],
                           notebook=f"{text}.ipynb", origin=text, status="late", status_detail=text,
                           superseded=[{"origin": text, "submitted_at": text, "reason": text}])

    hostile = result(HOSTILE, 's"><img src=x onerror=alert(1)>')
    plain = result("plain text", "s001")
    for render in (lambda r, c: feedback_page(r, c, checks), lambda r, c: summary_page([r], c, checks)):
        page = render(hostile, config)
        assert [t for t, _ in Tags(page).tags] == [t for t, _ in Tags(render(plain, config)).tags]   # same markup
        assert not [a for _, a in Tags(page).tags if "onerror" in a]
        assert "s&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page            # the student id, as text
    page = feedback_page(hostile, config, checks)
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 9    # output, 2 notes, notebook, origin ×2, detail…
    assert len(embedded_pngs(page)) == 1                               # the plot is the only image


@pytest.mark.parametrize("bad_history", [
    {}, {"loss": [math.nan] * 30, "val_accuracy": [math.inf, -math.inf]}, {"accuracy": "not a list"}, None])
def test_a_page_without_usable_history_has_no_plot(config, checks, bad_history):
    result = make_result(config)
    result["execution"]["history"] = bad_history
    page = feedback_page(result, config, checks)
    assert embedded_pngs(page) == []
    assert "No training history was recorded" in page
    assert score_card(page) == "12 <small>/ 12</small>"


ACCURACY_CURVE = TrainingCurve("accuracy", 0.95, "val_accuracy")


def test_training_curves_skip_non_finite_points_and_uneven_lengths():
    partial = {"loss": [0.5, math.nan, 0.3, math.inf], "val_accuracy": [0.9, 0.95, None, "x", 0.97]}
    image = read_png(training_curves_png(partial, ACCURACY_CURVE, measured=0.9699))
    assert image.shape[:2] == (350, 900)
    assert training_curves_png({"accuracy": [0.9]}, ACCURACY_CURVE, measured=math.nan).startswith(PNG_SIGNATURE)
    assert training_curves_png({}, ACCURACY_CURVE, measured=0.96) is None
    assert training_curves_png({"loss": [math.nan, math.inf]}, ACCURACY_CURVE) is None


def test_a_malformed_or_older_result_still_makes_a_page(config, checks):
    page = feedback_page({"score": 3.0, "max_score": 12.0, "tests": [{"name": "reshape"}, "junk"]}, config, checks)
    assert score_card(page) == "3 <small>/ 12</small>"
    assert "<code>reshape</code>" in page and "不明 / unknown" in page   # no submission time
    assert "— s" in feedback_page({}, config, checks)


def test_an_infrastructure_error_is_not_shown_as_a_zero(config, checks):
    result = make_result(config, "s004", failed={c.id: "the grading machine ran out of memory" for c in checks},
                         status="infrastructure error", status_detail="GPU out of memory / GPU のメモリ不足",
                         measurements={})
    assert result["score"] == 0.0
    page = feedback_page(result, config, checks)
    assert score_card(page).startswith("—")
    assert not re.search(r"\b0 / 1?\d\b", page)
    assert "will be regraded" in page and "not your grade" in page and "GPU out of memory" in page
    assert 'class="box info"' in page
    summary = summary_page([result, make_result(config, "s001")], config, checks)
    assert "— / 12" in summary and not re.search(r"(?<![\d.])0 / 12", summary)
    assert "12.00 / 12" in summary                                 # the mean leaves the pending result out


def test_summary_page_lists_each_student_once_with_a_link(config, checks):
    students = ["s002", "s001", "山田 太郎", "../x?y#z"]
    results = [make_result(config, s, failed={"reshape": RESHAPE_WHY} if s == "s002" else {}) for s in students]
    results.append(make_result(config, "s005", failed={"reshape": RESHAPE_WHY}, status="late"))
    page = summary_page(results, config, checks, figure_name="run 1.png")
    hrefs = [a["href"] for t, a in Tags(page).tags if t == "a"]
    unsafe = [f"feedback/{file_stem(s)}.html" for s in ("山田 太郎", "../x?y#z")]   # the batch's file names
    assert re.fullmatch(r"feedback/student-[0-9a-f]{12}\.html", unsafe[0]) and unsafe[0] != unsafe[1]
    assert sorted(hrefs) == sorted(["feedback/s001.html", "feedback/s002.html", "feedback/s005.html", *unsafe])
    assert page.count(">山田 太郎</a>") == 1 and page.count(">../x?y#z</a>") == 1
    assert page.index(">s001<") < page.index(">s002<")                      # sorted by id
    assert '<img alt="summary figure" src="run%201.png">' in page
    reshape_row = re.search(r"<code>reshape</code>.*?</tr>", page, re.S).group(0)
    assert "3 / 4" in reshape_row and "75%" in reshape_row                  # the late submission does not count
    assert "NVIDIA T4" in page and "206 s" in page                          # 5 × 41.2 s


def test_summary_page_shows_the_grading_time_summed_over_notebooks_and_the_wall_time(config, checks):
    results = [make_result(config, f"s{i:03d}") for i in range(5)]
    page = summary_page(results, config, checks, wall_seconds=95.4)
    assert "Grading time, summed over notebooks</dt><dd>206 s (平均 / mean 41.2 s, n=5)" in page   # 5 × 41.2 s
    assert "経過時間 (この実行) / Wall time of this run</dt><dd>95 s" in page
    assert "Wall time" not in summary_page(results, config, checks)  # not known: not guessed


def test_summary_page_warns_with_the_count_when_grades_are_unofficial(config, checks):
    official = [make_result(config, "s001"), make_result(config, "s002")]
    cpu = [make_result(config, f"s{i:03d}", official=False) for i in (3, 4)]
    page = summary_page(official + cpu + [make_result(config, "s005", official="no")], config, checks)
    banner = re.search(r'<div class="box bad" role="alert">(.*?)</div>', page, re.S).group(1)
    assert page.index(banner) < page.index("<dl>")                    # at the top, before the numbers
    assert "5 件中 3 件は非公式の採点です" in banner and "LMS にアップロードしないでください" in banner
    assert ("3 of 5 grades are unofficial: graded on the CPU under DEVICE_POLICY = &#x27;require-gpu&#x27; — do not "
            "upload them to the LMS as final") in banner
    assert 'role="alert"' not in summary_page(official, config, checks)


def test_pass_rates_count_graded_and_untimed_submissions_only(config, checks):
    results = [make_result(config, "a", failed={"fit": "no"}), make_result(config, "b", status="no timestamp"),
               make_result(config, "c", status="error", failed={"fit": "no"}),
               make_result(config, "d", status="infrastructure error"), {"status": "graded"}]
    rates = pass_rates(results, checks)
    assert rates["fit"] == (1, 2) and rates["reshape"] == (2, 2)


def test_summary_figure_is_a_png_for_no_results_and_for_a_mixed_run(config, checks):
    assert read_png(summary_figure([], config, checks)).shape[:2] == (800, 1200)
    mixed = [make_result(config, f"s{i:03d}", failed={"val_accuracy": VAL_WHY} if i % 3 else {}) for i in range(5)]
    mixed += [make_result(config, "$\\frac$", status="late"), make_result(config, "x", status="timeout", tests=[]),
              make_result(config, "y", status="infrastructure error", measurements={}, execution={}),
              {"student_id": "z", "execution": {"seconds": math.nan}, "measurements": {"val_accuracy": None}}]
    assert read_png(summary_figure(mixed, config, checks)).shape[:2] == (800, 1200)
    no_measurements = [{**r, "measurements": {}} for r in mixed]
    assert summary_figure(no_measurements, config, checks).startswith(PNG_SIGNATURE)
    many = [make_result(config, f"s{i:03d}") for i in range(45)]              # grading times as a histogram
    assert read_png(summary_figure(many, config, checks)).shape[:2] == (800, 1200)


def caption(page: str) -> str:
    return html.unescape(re.search(r"<h2>学習曲線 / Training curves</h2>\s*<p>(.*?)</p>", page, re.S).group(1))


@pytest.mark.parametrize("status, measured, says", [
    ("passed", 0.9638, "Passed: The grader measured val_accuracy 0.9638, which reaches the threshold 0.95."),
    ("failed", 0.9421, "which is below the threshold 0.95"),
    ("failed", 0.9638, "reaches the threshold 0.95. The notebook's own final val_accuracy was 0.9900. The check still "
                       "failed, for the reason in the table above."),
    ("not graded", 0.9638, "The val_accuracy check was not graded"),
])
def test_the_curves_caption_agrees_with_the_val_accuracy_check(config, checks, status, measured, says):
    result = make_result(config, failed={"val_accuracy": VAL_WHY} if status == "failed" else {},
                         measurements={"val_accuracy": measured, "val_accuracy_reported": 0.99})
    next(t for t in result["tests"] if t["name"] == "val_accuracy")["status"] = status
    text = caption(feedback_page(result, config, checks))
    assert says in text
    assert ("Passed" in text) == (status == "passed")


def test_a_check_not_graded_shows_neither_points_nor_a_cross(config, checks):
    result = make_result(config)
    compile_check = next(t for t in result["tests"] if t["name"] == "compile")
    compile_check.update(status="not graded", score=None, output="grader failed / 採点プログラムのエラー")
    page = feedback_page(result, config, checks)
    row = re.search(r"<code>compile</code>.*?</tr>", page, re.S).group(0)
    assert "— / 1" in row and "✗" not in row and "grader failed" in row
    assert pass_rates([result], checks)["compile"] == (0, 0)              # not counted as judged


def test_histories_recorded_as_acc_or_categorical_accuracy_are_plotted_as_accuracy():
    curves = {"accuracy": [0.9, 0.95], "val_accuracy": [0.91, 0.96], "loss": [0.3, 0.2]}
    for prefix in ("acc", "categorical_accuracy", "ACC"):
        recorded = {"loss": curves["loss"], prefix: curves["accuracy"], f"val_{prefix}": curves["val_accuracy"]}
        assert curves_of(recorded, "accuracy") == curves, prefix
    assert training_curves_png({"acc": [0.9, 0.95]}, ACCURACY_CURVE) is not None


def test_another_assignments_metric_is_plotted_under_its_own_name():
    recorded = {"loss": [0.5, 0.3], "val_loss": [0.6, 0.4], "auc": [0.9, 0.95], "val_auc": [0.91, 0.96],
                "accuracy": [0.8, 0.9]}
    assert curves_of(recorded, "auc") == {k: v for k, v in recorded.items() if k != "accuracy"}
    assert read_png(training_curves_png(recorded, TrainingCurve("auc"))).shape[:2] == (350, 900)


def test_summary_page_flags_checks_a_grader_failed_on(config, checks):
    flagged = make_result(config, "s002", not_graded=["compile"])
    page = summary_page([make_result(config, "s001"), flagged], config, checks)
    assert "1 submission(s) have checks not graded because a grader failed" in page
    assert "<li>s002: <code>compile</code></li>" in page
    assert "not graded because a grader failed" not in summary_page([make_result(config, "s001")], config, checks)


def test_pages_take_titles_and_the_checks_from_the_declared_checks_passed_in(config, checks):
    renamed = tuple(dataclasses.replace(c, title_ja="予測", title_en="the prediction") if c.id == "predict" else c
                    for c in checks)
    result = make_result(config, "s001", failed={"predict": "no"})
    page = feedback_page(result, config, renamed)
    row = re.search(r"<code>predict</code>.*?</tr>", page, re.S).group(0)
    assert "予測" in row and "the prediction" in row and "x_test[1]" not in row
    summary = summary_page([result], config, renamed)
    assert re.search(r"<code>predict</code></td><td>予測<br><span class=\"en\">the prediction</span></td>", summary)
    fewer = tuple(c for c in checks if c.id != "predict")                 # a check no longer declared
    assert "<code>predict</code>" not in summary_page([result], config, fewer)
    assert list(pass_rates([result], fewer)) == [c.id for c in fewer]
    row = re.search(r"<code>predict</code>.*?</tr>", feedback_page(result, config, fewer), re.S).group(0)
    assert "0 / 2" in row                                                  # the stored result still shows it
