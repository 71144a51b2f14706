"""A student hands in: the notebook is checked against the release, refused where the course's rules say so, and
written into nbgrader's exchange layout (``submitted/<student>/<assignment>/`` with ``timestamp.txt``) with a
receipt. A re-submission before the deadline replaces the earlier one, atomically."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
from nbgrader.utils import compute_checksum

from ..course import clock
from ..course.assignment import RELEASE_METADATA
from ..course.config import Config
from ..course.extensions import STUDENT_ID, deadline_for
from ..course.late_policy import PENALTY, judge, last_accepted
from ..course.notebook import NotebookUnreadable, grade_id, is_solution, nbgrader_metadata, read_notebook
from ..errors import GraderError, Refusal
from ..files import fsync_folder

STUB = "raise NotImplementedError()"


@dataclass(frozen=True)
class Receipt:
    student: str
    assignment: str
    submitted_at: str          # nbgrader's timestamp (UTC)
    submitted_at_local: str    # the same moment in the course's time zone
    sha256: str
    path: str
    replaced: str | None       # the timestamp of the submission this one replaced, if any
    late: bool


def cells_by_grade_id(nb) -> dict:
    """The cells that carry a grade id, by it: how a submitted cell is matched to the released one."""
    return {grade_id(c): c for c in nb.cells if grade_id(c)}


def checksum(cell) -> str | None:
    """nbgrader's checksum of a submitted cell; None where its metadata is too broken to compute one."""
    try:
        return compute_checksum(cell)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


# How a student submits unfinished work anyway, (ja, en) as each front door says it: the command's flag, or the
# site's checkbox (its label, as the upload form shows it).
ALLOW_INCOMPLETE_FLAG = (" --allow-incomplete を付けてください", "add --allow-incomplete")
INCOMPLETE_CHECKBOX = ("未完成のセルがあっても提出する", "Submit even though some cells are unfinished")
TICK_INCOMPLETE_CHECKBOX = (f"「{INCOMPLETE_CHECKBOX[0]}」にチェックを入れてください", f"tick “{INCOMPLETE_CHECKBOX[1]}”")


def check_submittable(nb, release_nb, allow_incomplete: bool, assignment_id: str = "",
                      opt_in: tuple[str, str] = ALLOW_INCOMPLETE_FLAG) -> None:
    """Refuse a notebook that is not this assignment's, whose given cells were edited, or that is unfinished
    (``opt_in``: how to submit it anyway, where the student is)."""
    released, submitted = cells_by_grade_id(release_nb), cells_by_grade_id(nb)
    solution_ids = [gid for gid, c in released.items() if is_solution(c)]
    if not submitted:
        raise Refusal("このノートブックには配布時の情報 (nbgrader のメタデータ) がありません。配布されたノートブックに"
                      "解答を書いて提出してください。\n"
                      "This notebook carries none of the released assignment's metadata: write your answers in the "
                      "notebook that was handed out and submit that one.")
    named = named_in(nb)
    if (named and named != assignment_id) or not set(solution_ids) & set(submitted):
        other = named and named != assignment_id
        raise Refusal(f"このノートブックは {assignment_id} のものではありません"
                      f"{f' ({named} のノートブックです)' if other else ''}。提出先の課題を確かめてください。\n"
                      f"This notebook is not the one of {assignment_id}{f' (it is {named}’s)' if other else ''}: "
                      "check which assignment you are submitting to.")
    edited = [gid for gid, cell in released.items() if not is_solution(cell)
              and (gid not in submitted or checksum(submitted[gid]) != nbgrader_metadata(cell)["checksum"])]
    edited += [gid for gid in solution_ids if gid not in submitted]
    if edited:
        raise Refusal(f"編集してはいけないセルが変更または削除されています: {', '.join(edited)}。配布されたノートブックから"
                      "元に戻してください。\n"
                      f"Cells you must not change were edited or deleted: {', '.join(edited)}. Restore them from "
                      "the released notebook.")
    unfinished = [gid for gid in solution_ids if STUB in submitted[gid].source]
    if unfinished and not allow_incomplete:
        raise Refusal(f"まだ解答されていないセルがあります: {', '.join(unfinished)} (raise NotImplementedError() が"
                      f"残っています)。未完成のまま提出するには{opt_in[0]}。\n"
                      f"Some cells are not answered yet: {', '.join(unfinished)} (they still raise "
                      f"NotImplementedError). To submit anyway, {opt_in[1]}.")


def named_in(nb) -> str | None:
    """The assignment the notebook's release metadata names, if any."""
    named = (nb.metadata.get(RELEASE_METADATA) or {}).get("assignment") if isinstance(
        nb.metadata.get(RELEASE_METADATA), dict) else None
    return named if isinstance(named, str) else None


def submit(path: Path, student: str, config: Config, allow_incomplete: bool = False,
           exchange: Path | None = None) -> Receipt:
    """Hand in ``path`` as ``student``, now: refused by the course's rules, or written to the exchange."""
    moment = clock.now()
    late = check_submission(Path(path), student, config, moment, allow_incomplete)
    return deliver(Path(path).read_bytes(), student, config, moment, late, exchange)


def check_submission(path: Path, student: str, config: Config, moment, allow_incomplete: bool = False,
                     opt_in: tuple[str, str] = ALLOW_INCOMPLETE_FLAG) -> bool:
    """Every rule a submission made at ``moment`` must pass (the id, the deadline, a readable notebook of this
    assignment, given cells intact, answers finished); Refusal saying which it broke. → whether it is late (and
    the late policy accepts it)."""
    if not STUDENT_ID.fullmatch(student or ""):
        raise GraderError(f"student id {student!r} may hold only letters, digits, '.', '_' and '-'")
    late = refuse_late(student, config, moment)
    try:
        nb, _ = read_notebook(Path(path), config.max_notebook_mb)
    except NotebookUnreadable as exc:
        raise Refusal(f"ノートブックとして読み込めません: {exc.ja}\nThe file cannot be read as a notebook: {exc.en}") from exc
    check_submittable(nb, nbformat.read(config.assignment.release_notebook, as_version=4), allow_incomplete,
                      config.assignment.id, opt_in)
    return late


def refuse_late(student: str, config: Config, moment) -> bool:
    """Refusal for work the late policy does not take at ``moment``, judged against the student's own deadline
    (an extension's, when they have one). → whether it is late (and accepted)."""
    a = config.assignment
    deadline = deadline_for(config, student)
    lateness = judge(a.late_policy, a.late_penalty, deadline, moment)
    if lateness.accepted:
        return lateness.late
    shown, now = clock.local_text(deadline, config.timezone), clock.local_text(moment, config.timezone)
    whose = ("あなたの延長された締め切り", "Your extended deadline") if deadline != a.deadline else ("締め切り", "The deadline")
    if a.late_policy == PENALTY:
        last = clock.local_text(last_accepted(a.late_policy, a.late_penalty, deadline), config.timezone)
        raise Refusal(f"{whose[0]} ({shown}) から {a.late_penalty.max_days} 日を過ぎたため ({last} まで) 提出できません。"
                      f"現在 {now} です。\n"
                      f"{whose[1]} ({shown}) is more than {a.late_penalty.max_days} days past (late work was accepted "
                      f"until {last}); it is now {now}.")
    raise Refusal(f"{whose[0]} ({shown}) を過ぎているため提出できません。現在 {now} です。\n"
                  f"{whose[1]} ({shown}) has passed; it is now {now}. Late work is not accepted.")


def deliver(data: bytes, student: str, config: Config, moment, late: bool, exchange: Path | None = None) -> Receipt:
    """Write a checked submission into the exchange (``submitted/<student>/<assignment>/``), replacing the
    student's earlier one whole, durably; → its receipt."""
    target = Path(exchange or config.exchange_dir) / "submitted" / student / config.assignment.id
    previous = target / "timestamp.txt"
    replaced = previous.read_text(encoding="utf-8").strip() if previous.is_file() else None
    receipt = Receipt(student, config.assignment.id, clock.nbgrader_timestamp(moment),
                      clock.local_text(moment, config.timezone), hashlib.sha256(data).hexdigest(),
                      str(target / f"{config.assignment.id}.ipynb"), replaced, late)
    _replace_folder(target, {
        f"{config.assignment.id}.ipynb": data,
        "timestamp.txt": (receipt.submitted_at + "\n").encode(),
        "receipt.json": (json.dumps(asdict(receipt), ensure_ascii=False, indent=2) + "\n").encode(),
    })
    return receipt


def _replace_folder(target: Path, files: dict[str, bytes]) -> None:
    """Write the files into a fresh folder beside ``target``, flush them to the disk, then swap it in: a reader sees
    the whole earlier submission or the whole new one, never a part, and once this returns the new one is on the
    disk (a receipt is never given for less). A crash between the two renames leaves no folder at ``target``, with
    the earlier one kept beside it (``.<name>.old-*``); the site, which keeps every attempt, writes it again."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.new-"))
    for name, content in files.items():
        with open(staging / name, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
    fsync_folder(staging)
    if target.exists():
        retired = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.replace(target, retired / target.name)
        os.replace(staging, target)
        fsync_folder(target.parent)
        shutil.rmtree(retired)
    else:
        os.replace(staging, target)
        fsync_folder(target.parent)

