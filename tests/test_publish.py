"""TAs publish the solution: refused before the deadline, complete and free of grader source after it."""

import html
import json
import re

import nbformat
import pytest
from classroom import load_course, short_config

from autograder.errors import Refusal
from autograder.lifecycle import publish as publish_module
from autograder.lifecycle.publish import checks_page, publish
from tests.conftest import assert_no_grader_source
from tests.test_cli import autograder


def test_publishing_before_the_deadline_is_refused_naming_it(monkeypatch, config, tmp_path):
    monkeypatch.setenv("AUTOGRADER_NOW", "2024-05-16T20:00:00+09:00")
    with pytest.raises(Refusal, match="2024-05-16 23:59 JST.*2024-05-16 20:00 JST"):
        publish(config, out=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_after_the_deadline_publishing_goes_ahead(monkeypatch, config, tmp_path):
    monkeypatch.setenv("AUTOGRADER_NOW", "2024-05-23T09:00:00+09:00")

    class Ran(Exception):
        pass

    def execute(*args, **kwargs):
        raise Ran
    monkeypatch.setattr(publish_module, "execute", execute)   # stop where the reference would start training
    with pytest.raises(Ran):
        publish(config, out=tmp_path, device="cpu")


def test_the_checks_page_lists_the_declared_checks_titles_and_points(config, checks):
    page = checks_page(config, checks)
    rows = re.findall(r'<tr><td><code>(\w+)</code></td><td>(.*?)<br><span class="en">(.*?)</span></td>'
                      r'<td class="num">(.*?)</td></tr>', page)
    assert [(name, html.unescape(ja), html.unescape(en), float(points)) for name, ja, en, points in rows] == [
        (c.id, c.title_ja, c.title_en, c.points) for c in checks]
    assert '<th class="num">12</th>' in page
    assert_no_grader_source(page)


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    """The 2-epoch course with its reference (epochs=2): what publish does does not depend on the epoch count."""
    return short_config(tmp_path_factory.mktemp("course"), with_reference=True)


@pytest.fixture(scope="module")
def published(short, tmp_path_factory):
    """`publish --force` before the deadline, from the command line: the reference really runs (its 2 epochs)."""
    out = tmp_path_factory.mktemp("published")
    run = autograder("--config", str(short), "publish", "assignment3", "--force", "--device", "cpu", "--out", str(out),
                     env={"AUTOGRADER_NOW": "2024-05-10T09:00:00+09:00"})
    assert run.returncode == 0, run.stderr
    return out


def epochs(short) -> int:
    return load_course(short).assignment.expected["epochs"]


@pytest.mark.training
def test_solution_notebook_carries_the_outputs_of_a_full_run(published, short):
    nb = nbformat.read(published / "assignment3-solution.ipynb", as_version=4)
    assert "BEGIN SOLUTION" not in json.dumps(nb)
    assert all("raise NotImplementedError" not in c.source for c in nb.cells if c.cell_type == "code")
    cells = {c.get("id"): c for c in nb.cells}
    fit_log = "".join(o.get("text", "") for o in cells["fit"].outputs)
    n = epochs(short)
    assert f"Epoch {n}/{n}" in fit_log and "val_accuracy" in fit_log
    assert fit_log.count("750/750") == n and "\r" not in fit_log and "\b" not in fit_log  # one line an epoch
    assert not any(o.get("name") == "stderr" for c in nb.cells for o in c.get("outputs", []))
    assert "25,450" in json.dumps(cells["model"].outputs)
    assert "OK: x_train (60000, 784)" in json.dumps(cells["selfcheck_reshape"].outputs)
    assert any(o.get("output_type") == "display_data" for o in cells["plot_history"].outputs)   # the curves


@pytest.mark.training
def test_html_and_checks_page_render_and_hold_no_grader_source(published, short):
    page = (published / "assignment3-solution.html").read_text(encoding="utf-8")
    visible = html.unescape(re.sub(r"<[^>]+>", "", page))           # the text a reader sees
    n = epochs(short)
    assert page.startswith("<!DOCTYPE html>")
    assert f"result = model.fit(x_train, y_train, epochs={n}, batch_size=64, validation_split=0.2)" in visible
    assert "課題3: 多層パーセプトロン" in visible and f"Epoch {n}/{n}" in visible
    assert "data:image/png;base64" in page                      # the training curves and the digit
    checks = (published / "checks.html").read_text(encoding="utf-8")
    for check in ("reshape", "one_hot", "param_count", "architecture", "compile", "fit", "val_accuracy", "predict"):
        assert f"<code>{check}</code>" in checks
    assert '<th class="num">12</th>' in checks
    for path in published.iterdir():
        assert_no_grader_source(path.read_text(encoding="utf-8"))
