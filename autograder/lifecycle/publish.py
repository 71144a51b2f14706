"""TAs publish the solution after the deadline: the reference run top to bottom (outputs kept), its HTML
rendering, and a page of the checks and their points. Grader source is never part of it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from nbconvert.preprocessors import CoalesceStreamsPreprocessor

from ..course import clock
from ..course.config import Config
from ..course.extensions import open_extensions, refuse_while_open
from ..errors import GraderError, Refusal
from ..files import write_atomic
from ..grading.checks import CheckSpec, max_score
from ..grading.graders import check_graders
from ..reports.pages import render
from ..run.device import resolve_device
from ..run.execute import execute
from .release import solution_notebook


def checks_page(config: Config, checks: tuple[CheckSpec, ...]) -> str:
    """The checks as the graders declare them: id, what is checked, points; and the total."""
    return render("checks.html.j2", assignment=config.assignment, checks=checks, total=max_score(checks))


def withheld(config: Config) -> list[str]:
    """Who the site keeps a solution published now from, and until when: one line each."""
    return [f"{e.student} until {clock.local_text(e.until, config.timezone)}" for e in open_extensions(config)]


def tidy_outputs(nb) -> nbformat.NotebookNode:
    """Outputs as a reader should see them: the runner's stderr (TensorFlow's device chatter) dropped, streams
    merged and carriage returns applied, so each epoch's progress bar ends as one line (nbconvert's own
    CoalesceStreamsPreprocessor)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    nb, _ = CoalesceStreamsPreprocessor().preprocess(nb, {})
    return nb


def refuse_before_deadline(config: Config, force_hint: bool = True) -> None:
    """Refusal while the assignment's deadline has not passed (said by the command, with how to force it, and by
    the site, which has no --force)."""
    open_now = clock.still_before(config.assignment.deadline, config.timezone)
    if open_now is None:
        return
    deadline, now = open_now
    raise Refusal(f"解答は締め切り ({deadline}) の後に公開します。現在 {now} です"
                  f"{' (--force で締め切り前でも公開できます)' if force_hint else ''}。\n"
                  f"The solution is published after the deadline ({deadline}); it is now {now}."
                  f"{' Use --force to publish anyway.' if force_hint else ''}")


# How to publish while some students' extended deadlines are open: the site shows each of them the solution only
# after their own deadline (a copy handed out by other means must wait for them).
WITHHOLD_FLAG = ("延長中の学生には各自の締切まで見せずに公開するには --withhold-extended を付けてください。",
                 "To publish with them withheld (the site shows each the solution only after their own deadline), add "
                 "--withhold-extended.")


def refuse_open_extensions(config: Config, way_out: tuple[str, str] = WITHHOLD_FLAG) -> None:
    """Refusal while a student's extension is open, naming who and until when: they would get the answers."""
    refuse_while_open(config, ("解答を公開", "publishing the solution"), way_out)


def publish(config: Config, out: Path | None = None, force: bool = False, device: str = "auto",
            withhold_extended: bool = False) -> list[Path]:
    """The solution into ``out`` (PUBLISH_DIR/<id>): refused before the deadline (unless ``force``) and while an
    extension is open (unless ``withhold_extended``: the site then keeps it from those students until their own
    deadline)."""
    if not force:
        refuse_before_deadline(config)
    if not withhold_extended:
        refuse_open_extensions(config)
    out = Path(out or config.publish_dir / config.assignment.id)
    checks = check_graders(config)
    solution = solution_notebook(nbformat.read(config.assignment.reference_notebook, as_version=4))
    kernel_device, _ = resolve_device(device, config, cpu_fallback=True)
    with tempfile.TemporaryDirectory(prefix="autograder-publish-") as tmp:
        executed = Path(tmp) / "solution.ipynb"
        record = execute(solution, Path(tmp) / "artifacts", config, kernel_device,
                         executed_out=executed, fused=False)   # the published log is Keras's own, batch by batch
        if record.cell_errors or record.kernel_died:
            failures = ", ".join(f"{c.cell_id or c.index}: {c.ename or c.status}" for c in record.cell_errors)
            raise GraderError(f"the reference notebook did not run cleanly ({failures or 'kernel died'}); "
                              "nothing was published")
        solved = tidy_outputs(nbformat.read(executed, as_version=4))
    stem = f"{config.assignment.id}-solution"
    body, _ = HTMLExporter().from_notebook_node(solved)
    return [
        write_atomic(out / f"{stem}.ipynb", nbformat.writes(solved) + "\n"),
        write_atomic(out / f"{stem}.html", body),
        write_atomic(out / "checks.html", checks_page(config, checks)),
    ]
