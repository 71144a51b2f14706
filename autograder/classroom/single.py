"""Grade one notebook into a folder, as a class of one: its results.json, its run kept for regrading, and the page
its student gets — doing no more than what changed since the last time (``grade NOTEBOOK --out DIR``)."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from ..course import dataset
from ..course.config import Config
from ..errors import GraderError
from ..files import write_atomic, write_json
from ..grading.checks import CheckSpec
from ..grading.fingerprint import grading_fingerprint, run_contexts, run_fingerprints
from ..grading.grade import grade_and_keep, regrade_kept
from ..grading.graders import check_graders
from ..grading.result import EXECUTED, REGRADED, UNCHANGED, GradeResult, Provenance, Result
from ..grading.store import STORE, RunStore, read_result
from ..run import sandbox
from ..run.device import official_on, resolve_device
from ..run.infrastructure import infrastructure_problem


def grade_into(path: Path, out: Path, config: Config, device: str = "auto", *, fused: bool = True,
               rerun: bool = False, regrade: bool = False) -> tuple[GradeResult, str]:
    """Grade one notebook into ``out`` (results.json; the run kept in out/store/), doing no more than what changed
    since the last time: → (the result, ``EXECUTED``, ``REGRADED`` — the graders on the stored run, no kernel — or
    ``UNCHANGED``). ``regrade``: judge the stored run again even if nothing changed; ``rerun``: execute."""
    path, out = Path(path), Path(out)
    if not path.is_file():
        raise GraderError(f"notebook not found: {path}")
    checks = check_graders(config)           # a broken grader stops here, before minutes of training
    kernel_device, official = resolve_device(device, config)
    sandbox.require(config.sandbox)
    store = RunStore(out / STORE)
    fingerprints = run_fingerprints(path.read_bytes(), run_contexts(config, kernel_device, fused))
    manifest, problem = (None, "") if rerun else store.find_first(fingerprints.values())
    if manifest:
        official = official_on(manifest.get("device", ""), config)
    made = Provenance(run_fingerprint=manifest["run_fingerprint"] if manifest else fingerprints[kernel_device],
                      grading_fingerprint=grading_fingerprint(config, official))
    previous = read_result(out / "results.json")
    if manifest and previous and not regrade and same_making(previous.provenance, made):
        if not (out / FEEDBACK_PAGE).is_file():
            write_feedback_page(previous, out, config, checks)
        return previous.verdict(), UNCHANGED
    if not manifest:
        from ..run import warm                   # the execution machinery, loaded only where a notebook runs

        warm.prewarm(config, kernel_device)      # the kernel starts while the dataset loads and the notebook is read
    data = dataset.load_dataset(config)
    with tempfile.TemporaryDirectory(prefix="autograder-one-") as work:
        if manifest:
            result, how = regrade_kept(manifest, store, config, data, path.name, Path(work)), REGRADED
        else:
            result, manifest = grade_and_keep(path, config, kernel_device, official, data, store,
                                              fingerprints[kernel_device], Path(work), fused=fused)
            if not infrastructure_problem(result.execution):       # a GPU that failed is no run to keep
                store.save(manifest)
            if problem:
                result = replace(result, notes=[*result.notes, f"the stored run could not be used ({problem}): "
                                                               "executed again"])
            how = EXECUTED
    written = Result.of_grade(result, replace(made, graded_from=how))
    write_json(out / "results.json", written.to_json())
    write_feedback_page(written, out, config, checks)
    return result, how


def same_making(recorded: Provenance, now: Provenance) -> bool:
    """Whether a written result came from the same run and the same grading as one made now would."""
    return (recorded.run_fingerprint, recorded.grading_fingerprint) == (now.run_fingerprint, now.grading_fingerprint)


FEEDBACK_PAGE = "feedback.html"          # beside results.json: the page a class's student gets, for one notebook


def write_feedback_page(result: Result, out: Path, config: Config, checks: tuple[CheckSpec, ...]) -> Path:
    """The student's page for one graded notebook, drawn by the renderer a class's pages come from (the same
    written result: the page shows what results.json says)."""
    from ..reports.feedback import feedback_page

    return write_atomic(Path(out) / FEEDBACK_PAGE, feedback_page(result, config, checks))
