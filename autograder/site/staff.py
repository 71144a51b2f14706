"""What staff do from the site, each by the command that already does it: grading the class (``grade`` on the
site's exchange, on this server) and publishing (``publish``) run as those commands, one job at a time, with
their output kept in logs/; the exchange goes out as a zip for a GPU runner and that runner's output folder comes
back as a zip; releasing feedback is a row. The roster view joins the roster with each student's attempts."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import shutil
import subprocess
import sys
import threading
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .. import PROJECT_ROOT
from ..classroom.intake import file_stem
from ..course import clock, extensions
from ..errors import Refusal
from ..files import write_atomic
from ..grading.result import ResultSchemaError
from ..grading.store import read_result
from ..lifecycle.publish import refuse_before_deadline, refuse_open_extensions
from ..reports.csvout import csv_text
from ..run.sandbox import SITE_REQUIRES_SANDBOX
from . import lti_services, records
from .core import PRIVATE_UMASK
from .people import active_students, all_students

GRADE, PUBLISH = "grade", "publish"
# The staff page's way past an open extension: its checkbox, as the page labels it (ja, en).
WITHHOLD_CHECKBOX = ("延長中の学生には各自の締め切りまで見せない", "withhold from students with an extension until their own deadline")
TICK_WITHHOLD = (f"延長中の学生を除いて公開するには「{WITHHOLD_CHECKBOX[0]}」にチェックを入れてください。",
                 f"To go on without them, tick “{WITHHOLD_CHECKBOX[1]}”.")
RESULTS_ZIP_LIMIT = 2**30            # bytes unpacked from an uploaded results folder


# --- the roster's states ------------------------------------------------------------------------------------

@dataclass
class RosterState:
    student: str
    name: str
    active: bool
    attempts: int
    state: str              # on time | late | none
    submitted_at: str       # the latest attempt's time, local
    check: str              # the latest attempt's check state ('' when none)
    receipt: str


def roster_states(site, assignment: str) -> list[RosterState]:
    latest, counts = {}, {}
    for r in records.attempts_at(site.engine, assignment):
        latest[r.student_id] = r
        counts[r.student_id] = counts.get(r.student_id, 0) + 1
    states = []
    for p in all_students(site.engine):
        r = latest.get(p.id)
        states.append(RosterState(
            p.id, p.name, p.active, counts.get(p.id, 0),
            "none" if r is None else ("late" if r.late else "on time"),
            local_time(site, r.submitted_at) if r else "", r.check_state if r else "", r.receipt if r else ""))
    return states


def local_time(site, moment: dt.datetime) -> str:
    return clock.local_text(moment, site.config.timezone)


def queue_counts(site) -> dict[str, int]:
    """Attempts by the state of their public check."""
    return records.check_counts(site.engine)


def queue(site, limit: int = 50) -> list:
    """The checks running and waiting, in the order they run; then the last ones that could not run."""
    return records.check_queue(site.engine, limit)


# --- jobs: the commands, run by this server ---------------------------------------------------------------

def job_command(site, kind: str, assignment: str) -> list[str]:
    base = [sys.executable, "-m", "autograder", "--config", str(site.config.source)]
    if kind == GRADE:
        return base + ["grade", str(site.exchange), "--assignment", assignment, "--out",        # into grades/<id>/
                       str(site.grades(assignment).parent), "--roster", str(roster_file(site)), "--device",
                       site.device, "--quiet"]
    # --withhold-extended: the staff page refused an open extension unless told to withhold, and this site shows
    # each extended student the solution only after their own deadline (one granted since is withheld too)
    return base + ["publish", assignment, "--out", str(site.published(assignment)), "--device", site.device,
                   "--withhold-extended"]


def roster_file(site) -> Path:
    return site.data / "roster.csv"


def write_roster(site) -> Path:
    """The active students, for the grade job's --roster: whoever handed nothing in gets a row and a page too."""
    return write_atomic(roster_file(site), csv_text(["student_id"], ([i] for i in active_students(site.engine))))


class JobRunner:
    """Staff jobs, one at a time, in the order asked: each the command an instructor would type."""

    def __init__(self, site):
        self.site = site
        self._wake = threading.Event()
        self._submit_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)

    def start(self) -> None:
        records.fail_running_jobs(self.site.engine, "the server stopped while it ran; start it again")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def submit(self, kind: str, assignment: str, actor: str, withhold_extended: bool = False) -> int:
        if kind == PUBLISH:
            refuse_before_deadline(self.site.config_for(assignment), force_hint=False)   # said now, not in the job
            if not withhold_extended:
                refuse_open_extensions(self.site.config_for(assignment), TICK_WITHHOLD)
        with self._submit_lock:                          # check and insert as one step
            job_id, new = records.add_job(self.site.engine, kind, assignment, actor)
        if not new:
            raise Refusal(f"同じ作業がすでに実行中か待機中です (#{job_id})。\n"
                          f"The same job is already queued or running (#{job_id}).")
        records.log_event(self.site.engine, actor, kind, f"{assignment} (job #{job_id})")
        self._wake.set()
        return job_id

    def log_path(self, job_id: int) -> Path:
        return self.site.logs / f"job-{job_id}.log"

    def _loop(self) -> None:
        while not self._stop.is_set():
            job = records.next_job(self.site.engine)
            if job is None:
                self._wake.wait(2)
                self._wake.clear()
                continue
            self._run(job)

    def _run(self, job) -> None:
        records.job_running(self.site.engine, job.id)
        log = self.log_path(job.id)
        log.parent.mkdir(parents=True, exist_ok=True)
        if job.kind == GRADE:
            write_roster(self.site)                 # the roster as it stands when the class is graded
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]))}   # this autograder, installed or not
        if not self.site.unsafe_without_sandbox:
            env[SITE_REQUIRES_SANDBOX] = "1"        # `grade` runs students' notebooks in the sandbox or not at all
        with open(log, "wb") as out:
            code = subprocess.call(job_command(self.site, job.kind, job.assignment), stdout=out,
                                   stderr=subprocess.STDOUT, cwd=self.site.data, env=env, umask=PRIVATE_UMASK)
        text = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        message = "\n".join(text[-8:])
        records.job_finished(self.site.engine, job.id, code == 0, message[-4000:])
        if job.kind == GRADE and code == 0:
            lti_services.after_grading(self.site, job.assignment)    # a regrade after the release: to the LMS


# --- the exchange out, a results folder back --------------------------------------------------------------

def exchange_zip(site, assignment: str) -> bytes:
    """The assignment's submissions as ``grade`` reads them: submitted/<student>/<assignment>/… in a zip; on a GPU
    runner, ``python -m autograder grade exchange.zip --out DIR`` grades it."""
    buffer = io.BytesIO()
    root = site.exchange / "submitted"
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for folder in sorted(root.glob(f"*/{assignment}")):
            for path in sorted(folder.iterdir()):
                if path.is_file():
                    z.write(path, str(PurePosixPath("submitted", *path.relative_to(root).parts)))
    return buffer.getvalue()


def receive_results(site, assignment: str, data: bytes, actor: str) -> str:
    """A GPU runner's output folder (``grade … --out DIR``, zipped) becomes the assignment's grades; the earlier
    grades are kept beside them (grades/<assignment>.before-<time>/). Refusal for a zip that is not one."""
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        names = [i for i in z.infolist() if not i.is_dir()]
    except zipfile.BadZipFile as exc:
        raise Refusal("アップロードされたファイルは zip ではありません。\nThe uploaded file is not a zip.") from exc
    if sum(i.file_size for i in names) > RESULTS_ZIP_LIMIT:
        raise Refusal("zip の展開後のサイズが大きすぎます。\nThe zip unpacks to more than 1 GiB.")
    for info in names:
        member = PurePosixPath(info.filename)
        if member.is_absolute() or ".." in member.parts or "\\" in info.filename:
            raise Refusal(f"zip の中に不正なパスがあります: {info.filename}\nThe zip holds an unsafe path: {info.filename}")
    gradebooks = [PurePosixPath(i.filename) for i in names if PurePosixPath(i.filename).name == "gradebook.csv"]
    if not gradebooks:
        raise Refusal("zip に gradebook.csv がありません: `grade … --out DIR` の DIR を zip にしてください。\n"
                      "The zip holds no gradebook.csv: zip the folder that `grade … --out DIR` wrote.")
    prefix = min(gradebooks, key=lambda p: len(p.parts)).parent
    kept_elsewhere = {"store"}             # the runs stay on the runner that made them (it regrades from them)
    target = site.grades(assignment)
    staging = target.with_name(f".{assignment}.incoming-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(staging, ignore_errors=True)
    wanted = []
    for info in names:
        member = PurePosixPath(info.filename)
        inside = member.parts[len(prefix.parts):]
        if member.parts[:len(prefix.parts)] != prefix.parts or not inside or inside[0] in kept_elsewhere:
            continue
        wanted.append((info, staging.joinpath(*inside)))
    _unpack(z, wanted, staging)
    found = _assignment_of_results(staging)
    if found and found != {assignment}:
        shutil.rmtree(staging)
        raise Refusal(f"この結果は {', '.join(sorted(found))} のものです ({assignment} ではありません)。\n"
                      f"These results are of {', '.join(sorted(found))}, not of {assignment}.")
    if target.exists():
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        os.replace(target, target.with_name(f"{assignment}.before-{stamp}"))
    os.replace(staging, target)
    records.log_event(site.engine, actor, "results uploaded", f"{assignment}: {len(names)} files")
    lti_services.after_grading(site, assignment)
    return str(target)


def _unpack(z: zipfile.ZipFile, members: list, staging: Path) -> None:
    """Each (member, destination) written under ``staging``; a damaged zip, or one naming a path both as a file
    and as a folder, is a Refusal saying which, with nothing left behind."""
    info = None
    try:
        for info, dest in members:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(z.read(info))
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise Refusal(f"zip が壊れています ({info.filename}: {exc})。もう一度 zip にしてアップロードしてください。\n"
                      f"The zip is damaged ({info.filename}: {exc}): zip the folder again and upload it.") from exc
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise Refusal(f"zip の中で同じ名前がファイルとフォルダの両方に使われています ({info.filename})。\n"
                      f"The zip uses one name both as a file and as a folder ({info.filename}): it is not a "
                      "folder that `grade` wrote.") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _assignment_of_results(folder: Path) -> set[str]:
    """The assignments an uploaded class folder's results name (a newer schema's results name none we can read)."""
    found = set()
    for path in (folder / "results").glob("*.json"):
        with contextlib.suppress(ResultSchemaError):
            result = read_result(path)
            found.add(result.assignment if result else "")
    return found - {""}


def release_feedback(site, assignment: str, actor: str, before_deadline: bool = False,
                     withhold_extended: bool = False) -> None:
    """Students see their feedback pages (the hidden checks' messages with them): after the deadline, or before
    it only when staff say so (``before_deadline``, the page's checkbox naming what it exposes); while a student's
    extension is open, only when staff withhold it from them (``withhold_extended``: each sees theirs after their
    own deadline)."""
    if not (site.grades(assignment) / "gradebook.csv").is_file():
        raise Refusal("まだ採点されていません: 先にクラスを採点するか、結果をアップロードしてください。\n"
                      "Nothing is graded yet: grade the class or upload its results first.")
    if not before_deadline:
        refuse_release_before_deadline(site.config_for(assignment))
    if not withhold_extended:
        extensions.refuse_while_open(site.config_for(assignment), ("フィードバックを公開", "releasing feedback"),
                                     TICK_WITHHOLD)
    records.release(site.engine, assignment, actor)
    records.log_event(site.engine, actor, "released feedback", assignment)
    lti_services.queue_assignment(site, assignment)          # the scores go to the LMS's gradebook (LTI)


def refuse_release_before_deadline(config) -> None:
    """Refusal while uploads are open: feedback shows the hidden checks' messages, a student could aim at them."""
    open_now = clock.still_before(config.assignment.deadline, config.timezone)
    if open_now is None:
        return
    deadline, now = open_now
    raise Refusal(f"フィードバックは締め切り ({deadline}) の後に公開します。現在 {now} です。今公開すると、提出を受け付けている"
                  "間に学生が非公開チェックのメッセージを見られます。それでも公開するには「締め切り前に公開する」に"
                  "チェックを入れてください。\n"
                  f"Feedback is released after the deadline ({deadline}); it is now {now}. Released now, students "
                  "would see the hidden checks' messages while uploads are still open: to release anyway, tick "
                  "“release before the deadline”.")


# --- students' own deadlines --------------------------------------------------------------------------------

def grant_extension(site, assignment: str, actor: str, student: str, until: str, reason: str):
    """An instructor's extension from the staff page: the same file and rules as `extension add`, the student
    checked against the site's roster."""
    known = [row.id for row in all_students(site.engine)] or None
    granted = extensions.add(site.config, student, assignment, until, reason, actor, known)
    records.log_event(site.engine, actor, "extension", f"{assignment} {student} until {granted.until.isoformat()}")
    return granted


def take_back_extension(site, assignment: str, actor: str, student: str) -> None:
    extensions.remove(site.config, student, assignment)
    records.log_event(site.engine, actor, "extension removed", f"{assignment} {student}")


def feedback_page(site, assignment: str, student: str) -> Path | None:
    page = site.grades(assignment) / "feedback" / f"{file_stem(student)}.html"
    return page if page.is_file() else None
