"""The similarity report: a class built for it (tests/similar_class.py) with every way one notebook comes from
another, and every trap (canonical answers, untouched and nearly empty notebooks, the template's own code and
Colab marks, a student's several attempts, a past cohort's pairs); read as `grade` reads a class, nothing run."""

from __future__ import annotations

import copy
import json
import random
import re

import pytest
import similar_class as sc
from classroom import ON_TIME, exchange_submission, inbound_submission, lms_export
from starlette.testclient import TestClient

from autograder.cli import main
from autograder.reports import similarity
from autograder.site.core import Site
from tests.test_site import app_of, site, staff, student  # noqa: F401

COPIES = {  # (source, copy) → the kinds of evidence that flag it
    ("w_src", "w_copy"): {"code", "outputs", "lineage"},      # the whole file handed over as it was
    ("r_copy", "r_src"): {"code"},                            # typed again: names renamed, comments reworded, run
    ("x_copy", "x_src"): {"code", "lineage"},                 # the file run again in the copier's account
    ("p_copy", "p_src"): {"code"},                            # one cell of it pasted into the copier's own work
    ("o_copy", "o_src"): {"code", "lineage"},                 # the file, its cells moved about, run again
    ("y_copy", "y_src"): {"code", "outputs", "lineage"},      # the file run again, printing the same numbers
}
PAST = "past2025"


def _text(nb) -> str:
    return json.dumps(nb, ensure_ascii=False)


def moved(nb: dict) -> dict:
    """The student's added cells moved elsewhere (before the model cell)."""
    nb = copy.deepcopy(nb)
    added = [c for c in nb["cells"] if "nbgrader" not in c["metadata"]]
    nb["cells"] = [c for c in nb["cells"] if "nbgrader" in c["metadata"]]
    at = next(i for i, c in enumerate(nb["cells"]) if c["id"] == "model")
    nb["cells"][at:at] = added[::-1]
    return nb


def rerun_same_outputs(nb: dict, rng: random.Random, student: str) -> dict:
    """The file run again in ``student``'s account with the same numbers printed (a seeded run): new execution
    records and output ids, the same outputs and cell ids."""
    nb = copy.deepcopy(nb)
    name, user = sc.account_of(student)
    for cell in nb["cells"]:
        info = cell["metadata"].get("executionInfo")
        if info:
            info["user"] = {"displayName": name, "userId": user}
            info["timestamp"] += rng.randrange(10**8)
        if "outputId" in cell["metadata"]:
            cell["metadata"]["outputId"] = sc._id(rng, 20)
    return nb


def build_class(rng: random.Random) -> dict[str, dict]:
    """student → notebook, as handed in (the latest attempt)."""
    own = sc.OWN_WORK
    nbs = {f"h{i:02d}": sc.honest(f"h{i:02d}", rng) for i in range(1, 31)}
    reference = sc.reference_answers()
    nbs["c1"] = sc.honest("c1", rng, dict(reference), added=[])
    nbs["c2"] = sc.honest("c2", rng, {k: "# 模範どおり / as in the lecture\n" + v for k, v in reference.items()},
                          added=[])
    nbs["u1"], nbs["u2"] = sc.template(), sc.template()                       # untouched, never run
    nbs["e1"] = sc.run(sc.given_new_ids(sc.solved({"reshape": reference["reshape"]}), rng), rng,
                       sc.account_of("e1"))                                   # nearly empty
    nbs["e2"] = sc.run(sc.given_new_ids(sc.solved({"reshape": reference["reshape"]}, [("predict", "print(1)\n")]),
                                        rng), rng, sc.account_of("e2"))
    nbs["w_src"] = sc.honest("w_src", rng, added=[("predict", own[0]), ("fit", own[2])])
    nbs["w_copy"] = copy.deepcopy(nbs["w_src"])
    r_answers = sc.honest_answers(rng)
    nbs["r_src"] = sc.honest("r_src", rng, r_answers, added=[("predict", own[1]), ("predict", own[6])])
    nbs["r_copy"] = sc.honest("r_copy", rng, {k: sc.disguised(v) for k, v in r_answers.items()},
                              added=[("predict", sc.disguised(own[1])), ("predict", sc.disguised(own[6]))])
    nbs["x_src"] = sc.honest("x_src", rng, added=[("predict", own[3])])
    nbs["x_copy"] = sc.rerun(nbs["x_src"], rng, "x_copy")
    nbs["p_src"] = sc.honest("p_src", rng, added=[("predict", own[4]), ("predict", own[5])])
    nbs["p_copy"] = sc.honest("p_copy", rng, added=[("predict", own[4]), ("predict", own[7])])
    nbs["o_src"] = sc.honest("o_src", rng, added=[("predict", own[8]), ("fit", own[9])])
    nbs["o_copy"] = sc.rerun(moved(nbs["o_src"]), rng, "o_copy")
    nbs["y_src"] = sc.honest("y_src", rng, added=[("fit", own[12])])
    nbs["y_copy"] = rerun_same_outputs(nbs["y_src"], rng, "y_copy")
    return nbs


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The class in nbgrader's exchange (m1's three attempts in inbound/), a past cohort beside it, and the
    report the command wrote: (its JSON, its HTML, the class's notebooks)."""
    rng = random.Random(25)
    root = tmp_path_factory.mktemp("similarity")
    nbs = build_class(rng)
    for name, nb in nbs.items():
        exchange_submission(root / "class", name, _text(nb), ON_TIME)
    m1_own = sc.honest("m1", rng)
    for hours, nb in ((-5, nbs["w_src"]), (-3, nbs["w_src"]), (-1, m1_own)):   # copies first, then their own
        inbound_submission(root / "class", "m1", _text(nb), ON_TIME.replace(hour=ON_TIME.hour + hours))
    past = {f"p{i:02d}": sc.honest(f"p{i:02d}", rng) for i in range(1, 11)}
    past["pp_a"] = sc.honest("pp_a", rng, added=[("predict", sc.OWN_WORK[10])])
    past["pp_b"] = copy.deepcopy(past["pp_a"])                                 # a pair inside the past cohort
    past["p_leak"] = sc.honest("p_leak", rng, added=[("predict", sc.OWN_WORK[11])])
    past["h05"] = copy.deepcopy(nbs["h05"])                                    # h05's own earlier work
    for name, nb in past.items():
        exchange_submission(root / PAST, name, _text(nb), ON_TIME)
    exchange_submission(root / "class", "from_past", _text(sc.rerun(past["p_leak"], rng, "from_past")), ON_TIME)
    out = root / "out"
    assert main(["similarity", str(root / "class"), "--out", str(out), "--against", str(root / PAST)]) == 0
    return (json.loads((out / "similarity.json").read_text(encoding="utf-8")),
            (out / "similarity.html").read_text(encoding="utf-8"), nbs)


def flagged_kinds(report: dict) -> dict[frozenset, set[str]]:
    return {frozenset(p["students"]): {e["kind"] for e in p["evidence"] if e["flagged"]}
            for p in report["pairs"] if p["flagged"]}


def test_each_copy_is_flagged_on_its_own_evidence_and_nothing_else_is(made):
    report, _, _ = made
    expected = {frozenset(pair): kinds for pair, kinds in COPIES.items()}
    expected[frozenset({"from_past", f"{PAST}/p_leak"})] = {"code", "lineage"}
    assert flagged_kinds(report) == expected


def test_the_traps_are_not_flagged_and_share_nothing(made):
    report, _, _ = made
    listed = {frozenset(p["students"]) for p in report["pairs"]}
    for pair in ({"c1", "c2"}, {"u1", "u2"}, {"e1", "e2"}, {"u1", "e1"}, {"c1", "e1"}):
        assert frozenset(pair) not in listed, pair      # canonical answers, untouched, nearly empty: no evidence
    flagged = {s for p in report["pairs"] if p["flagged"] for s in p["students"]}
    assert not flagged & {f"h{i:02d}" for i in range(1, 31)}     # honest work, the usual variants of the answers
    assert "m1" not in flagged                          # only the latest attempt counts, and it is m1's own
    assert not [p for p in report["pairs"] if all(s.startswith(f"{PAST}/") for s in p["students"])]
    assert frozenset({"h05", f"{PAST}/h05"}) not in listed   # a student's own earlier work is not a pair


def test_the_json_is_as_documented(made):
    report, _, _ = made
    assert report["assignment"] == "assignment3" and report["students"] == 50 and report["past_cohorts"] == {PAST: 14}
    scores = [(not p["flagged"], -p["score"]) for p in report["pairs"]]
    assert scores == sorted(scores) and all(0 <= p["score"] <= 1 for p in report["pairs"])
    for pair in report["pairs"]:
        assert set(pair) >= {"students", "flagged", "score", "evidence"} and len(pair["students"]) == 2
        assert pair["flagged"] == any(e["flagged"] for e in pair["evidence"])
        for e in pair["evidence"]:
            assert e["kind"] in ("code", "outputs", "lineage") and e["detail"] and e["detail_ja"]
    whole = next(p for p in report["pairs"] if set(p["students"]) == {"w_src", "w_copy"})
    outputs = next(e for e in whole["evidence"] if e["kind"] == "outputs")
    assert any("val_loss" in line for line in outputs["lines"])             # the training log, identical
    lineage = next(e for e in whole["evidence"] if e["kind"] == "lineage")
    assert {"what": "account", "value": f"Student W_SRC ({sc.account_of('w_src')[1]})"} in lineage["marks"]
    assert not any(m["value"] == sc.COURSE_COPY for p in report["pairs"] for e in p["evidence"]
                   for m in e.get("marks", []))                              # the copy everyone made: no evidence


def test_the_page_shows_the_matched_passages_side_by_side_and_says_similar(made):
    _, page, _ = made
    assert "似ている提出 / Similar submissions" in page and "Staff only" in page
    assert not re.search(r"plagiar|剽窃|盗用|カンニング", page, re.I)
    # r_copy typed r_src's helper again: the renamed line sits beside the original, marked as matched
    row = re.search(r'<tr class="match"><td class="no">\d+</td><td>([^<]*mistakes = np.flatnonzero[^<]*)</td>'
                    r'<td class="no">\d+</td><td>([^<]*)</td>', page) or \
        re.search(r'<tr class="match"><td class="no">\d+</td><td>([^<]*errors = np.flatnonzero[^<]*)</td>'
                  r'<td class="no">\d+</td><td>([^<]*mistakes = np.flatnonzero[^<]*)</td>', page)
    assert row, "the renamed copy's line is not shown beside its original"
    assert 'class="same"' in page                     # given or common code beside it, shown but not evidence


def test_normalising_reads_renamed_names_reworded_comments_and_layout_as_the_same_code():
    original = "# plot it\ndef f(hist, keys=('a', 'b')):\n    fig, ax = plt.subplots(figsize=(6, 3))\n    return fig\n"
    again = "def g(h,\n      names=(\"a\", \"b\")):  # 描く\n    figure, axis = plt.subplots(figsize = (6,3))\n" \
            "    return figure\n"
    tokens = [[t for t, _ in similarity.normalised_tokens(s, similarity.bound_names([s]))] for s in (original, again)]
    assert tokens[0] == tokens[1]
    assert "figsize" in tokens[0] and "subplots" in tokens[0]       # keyword arguments and the API keep their names


def test_a_notebook_of_the_reference_and_template_has_no_code_of_its_own():
    course = similarity.Course.of(json.loads(sc.REFERENCE.read_text(encoding="utf-8")), sc.template())
    for nb in (sc.template(), sc.solved(sc.reference_answers())):
        assert not {g for c in similarity.own_cells(nb, course) for g in c.grams} - course.grams


def test_an_lms_zip_reads_as_grade_reads_it(tmp_path):
    rng = random.Random(3)
    nbs = {f"h{i}": sc.honest(f"h{i}", rng) for i in range(8)}
    nbs["a"] = sc.honest("a", rng, added=[("predict", sc.OWN_WORK[2])])
    nbs["b"] = copy.deepcopy(nbs["a"])
    rows = [(s, f"{s}.ipynb", _text(nb), "2024-05-15T12:00:00+09:00") for s, nb in nbs.items()]
    broken = ("bad", "bad.ipynb", "{not json", "2024-05-15T12:00:00+09:00")
    export = lms_export(tmp_path / "export.zip", [*rows, broken], as_zip=True)
    out = tmp_path / "out"
    assert main(["similarity", str(export), "--assignment", "assignment3", "--out", str(out)]) == 0
    report = json.loads((out / "similarity.json").read_text(encoding="utf-8"))
    assert flagged_kinds(report) == {frozenset({"a", "b"}): {"code", "outputs", "lineage"}}
    assert report["students"] == 10 and any(n.startswith("bad: ") and "not compared" in n for n in report["notes"])


def test_a_moodle_download_with_its_worksheet_names_students_by_their_ids(tmp_path):
    from test_lms import folder, ja_worksheet, moodle_zip

    rng = random.Random(11)
    nbs = {f"学生{i}": sc.honest(f"m{i}", rng) for i in range(8)}
    nbs["山田 太郎"] = sc.honest("yamada", rng, added=[("predict", sc.OWN_WORK[5])])
    nbs["佐藤 花子"] = sc.rerun(nbs["山田 太郎"], rng, "sato")
    members = {folder(name, str(1000 + i)) + "課題3.ipynb": _text(nb) for i, (name, nb) in enumerate(nbs.items())}
    members[folder("二冊", "1099") + "a.ipynb"] = members[folder("二冊", "1099") + "b.ipynb"] = _text(nbs["学生0"])
    people = [(str(1000 + i), name, f"s{100 + i}", ON_TIME) for i, name in enumerate(nbs)]
    worksheet = ja_worksheet(tmp_path / "評定ワークシート.csv", people + [("1099", "二冊", "s199", ON_TIME)])
    out = tmp_path / "out"
    assert main(["similarity", str(moodle_zip(tmp_path / "download.zip", members)), "--worksheet", str(worksheet),
                 "--assignment", "assignment3", "--out", str(out)]) == 0
    report = json.loads((out / "similarity.json").read_text(encoding="utf-8"))
    assert flagged_kinds(report) == {frozenset({"s108", "s109"}): {"code", "lineage"}}
    assert any(n.startswith("s199: ") and "several notebooks" in n for n in report["notes"])


# --- the site's staff page: staff only ----------------------------------------------------------------------

def _deliver(data: Site, student_id: str, nb: dict) -> None:
    """What the site's upload leaves in its exchange (the layout `grade` reads)."""
    folder = data.exchange / "submitted" / student_id / "assignment3"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "assignment3.ipynb").write_text(_text(nb), encoding="utf-8")


def test_the_staff_page_shows_the_report_to_staff_and_never_to_students_or_strangers(site):  # noqa: F811
    rng = random.Random(7)
    source = sc.honest("s001", rng, added=[("predict", sc.OWN_WORK[1])])
    for sid, nb in (("s001", source), ("s002", copy.deepcopy(source)), ("s003", sc.honest("s003", rng)),
                    ("s004", sc.honest("s004", rng))):
        _deliver(site, sid, nb)
    app = app_of(site)
    path = "/staff/a/assignment3/similarity"
    for who in ("prof", "ta1"):                               # an instructor and a TA
        r = staff(app, who).get(path)
        assert r.status_code == 200 and "s001 ↔ s002" in r.text and "Student S001" in r.text, who
        assert "似ている / similar" in r.text and not re.search(r"plagiar|剽窃|盗用", r.text, re.I)
    assert 'href="/staff/a/assignment3/similarity"' in staff(app).get("/staff/a/assignment3").text
    assert staff(app).get("/staff/a/nope/similarity").status_code == 404
    pupil = student(app, site, "s003")
    stranger = TestClient(app, follow_redirects=False)
    for client in (pupil, stranger):
        for attempt in (path, "/a/assignment3/../staff/a/assignment3/similarity", "/staff/a/assignment3/similarity/",
                        "/staff/a/assignment3/download/similarity.html", "/staff/a/assignment3/similarity?x=1"):
            r = client.get(attempt)
            assert r.status_code in (303, 307, 404) and "s002" not in r.text and "Student S001" not in r.text, attempt
            if r.status_code == 303:
                assert r.headers["location"] == "/staff/login"


def test_the_command_says_what_is_missing(tmp_path, capsys):
    assert main(["similarity", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert "nowhere" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_the_page_shows_students_code_and_names_as_text_never_as_markup(tmp_path):
    rng = random.Random(5)
    hostile = sc.OWN_WORK[3] + "print('</td></tr></table><script>alert(1)</script>')\n"
    nbs = {f"h{i}": sc.honest(f"h{i}", rng) for i in range(6)}
    nbs["a"] = sc.honest("a", rng, added=[("predict", hostile)])
    for cell in nbs["a"]["cells"]:
        if "executionInfo" in cell["metadata"]:
            cell["metadata"]["executionInfo"]["user"]["displayName"] = "<img src=x onerror=alert(2)>"
    nbs["b"] = copy.deepcopy(nbs["a"])
    handed = [similarity.Handed(s, nb) for s, nb in nbs.items()]
    report = similarity.compare(handed, json.loads(sc.REFERENCE.read_text(encoding="utf-8")), sc.template())
    assert [p.students for p in report.flagged] == [("a", "b")]
    page = similarity.page(report)
    assert "<script>" not in page and "<img" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page          # the account, shown to staff as text


def test_a_class_of_two_assignments_is_compared_one_at_a_time(tmp_path, capsys):
    rng = random.Random(2)
    for student in ("s1", "s2", "s3"):
        exchange_submission(tmp_path / "class", student, _text(sc.honest(student, rng)), ON_TIME)
        exchange_submission(tmp_path / "class", student, _text(sc.honest(student, rng)), ON_TIME, "assignment4")
    assert main(["similarity", str(tmp_path / "class"), "--out", str(tmp_path / "out")]) == 2
    assert "assignment3, assignment4" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert main(["similarity", str(tmp_path / "class"), "--assignment", "assignment3", "--out",
                 str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "similarity.json").read_text(encoding="utf-8"))["students"] == 3
