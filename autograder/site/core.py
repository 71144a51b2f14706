"""The site's data folder and what it holds, and the one way a submission enters it.

Data folder (``serve --data DIR``, default SITE_DIR)::

    site.db                          the database (SQLite; or --db PostgreSQL)
    secret_key                       signs the session cookies (made on first start, 0600)
    attempts/<student>/<assignment>/<n>-<receipt>.ipynb|.json   every upload accepted, never overwritten
    exchange/submitted/<student>/<assignment>/                  the latest one: the layout `grade` reads
    checks/<receipt>.json            a public check's whole result (hidden checks' messages included: staff only)
    grades/<assignment>/             the class's grading (`grade … --out`), on this server or uploaded back
    published/<assignment>/          the published solution
    logs/                            the check workers' and jobs' logs

An upload is checked by ``submit``'s rules with this server's clock, written durably (attempt file and receipt,
then the exchange), and only then recorded; ``reconcile`` at start records any attempt a crash left unrecorded
and writes the exchange again from the attempts, so what a receipt acknowledged is never lost.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..course import clock
from ..course.assignment import assignment_ids, config_for
from ..course.config import Config
from ..course.extensions import deadline_for
from ..errors import GraderError, Refusal
from ..files import write_atomic
from ..lifecycle.submit import TICK_INCOMPLETE_CHECKBOX, check_submission, deliver
from . import records
from .db import database_url, open_database, utc_text

PRIVATE_UMASK = 0o077          # serve and its jobs: every file 0600, every folder 0700


@dataclass(frozen=True)
class Assignment:
    """What the pages show of an assignment."""
    id: str
    title_ja: str
    title_en: str
    deadline: dt.datetime
    deadline_text: str
    late_policy: str
    released: bool


def size_text(size: int, limit_mib: int) -> tuple[str, str]:
    """(the size, the limit) in one unit, MiB (MAX_NOTEBOOK_MB counts 2**20 bytes); in bytes where the rounded
    MiB would read the same."""
    shown = f"{size / 2**20:.1f} MiB"
    if round(size / 2**20, 1) <= limit_mib:
        return f"{size:,} bytes", f"{limit_mib * 2**20:,} bytes ({limit_mib} MiB)"
    return shown, f"{limit_mib} MiB"


def too_large(size: int, limit_mib: int) -> Refusal:
    size_said, limit_said = size_text(size, limit_mib)
    return Refusal(f"ファイルが大きすぎます ({size_said}、上限 {limit_said})。"
                   "出力を消去 (編集 → すべての出力を消去) してから保存し直してください。\n"
                   f"The file is too large ({size_said}; the limit is {limit_said}). Clear the outputs "
                   "(Edit → Clear all outputs), save and upload again.")


class Site:
    """One course's submission site: its configuration, data folder and database."""

    def __init__(self, config: Config, data: Path | None = None, db_url: str | None = None,
                 public_url: str = "http://127.0.0.1:8000", device: str = "auto"):
        self.config = config
        self.data = Path(data or config.site_dir).resolve()
        self.data.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.engine = open_database(database_url(self.data, db_url))
        self.public_url = public_url.rstrip("/")
        self.device = device                         # as asked: the jobs' `grade` applies the device policy to it
        self._configs: dict[str, Config] = {}
        self._never_shown: dict[str, tuple[str, ...]] = {}
        self._write_lock = threading.Lock()          # one upload written at a time: numbers and the exchange
        self.new_attempt = threading.Event()         # wakes the check runners
        self.unsafe_without_sandbox = False          # serve --unsafe-without-sandbox: kernels may run outside it

    @cached_property
    def check_device(self) -> str:
        """Where public checks train: the asked device, ``auto`` meaning the GPU when one is visible (a check is
        no official grade, so the CPU does when none is)."""
        from ..run.device import resolve_device

        return resolve_device(self.device, self.config, cpu_fallback=True)[0]

    # --- folders ----------------------------------------------------------------------------------------
    def keep_private(self) -> list[str]:
        """At start: the data folder is its owner's alone (0700; serve's umask, PRIVATE_UMASK, makes what comes
        in it 0600 and 0700). → a warning for each entry at its top that others may read or write (made before,
        or by hand): the folder's mode hides them now, a copy elsewhere would not."""
        self.data.chmod(0o700)
        warnings = []
        for entry in sorted(self.data.iterdir()):
            mode = entry.lstat().st_mode
            if not entry.is_symlink() and mode & 0o077:
                warnings.append(f"{entry} is open to others (mode {mode & 0o777:o}; it holds students' work or the "
                                f"site's secrets): chmod -R go-rwx {self.data}")
        return warnings

    @property
    def exchange(self) -> Path:
        return self.data / "exchange"

    def grades(self, assignment: str) -> Path:
        return self.data / "grades" / assignment

    def published(self, assignment: str) -> Path:
        return self.data / "published" / assignment

    def solution_page(self, assignment: str) -> Path:
        """The published solution's HTML, as `publish` names it (there once it is published)."""
        return self.published(assignment) / f"{assignment}-solution.html"

    def check_file(self, receipt: str) -> Path:
        return self.data / "checks" / f"{receipt}.json"

    @property
    def logs(self) -> Path:
        return self.data / "logs"

    @cached_property
    def secret_key(self) -> str:
        path = self.data / "secret_key"
        if not path.is_file():
            path.touch(mode=0o600)
            path.write_text(secrets.token_hex(32), encoding="ascii")
        key = path.read_text(encoding="ascii").strip()
        if len(key) < 32:
            raise GraderError(f"{path}: the session key is too short; delete the file to make a new one "
                              "(everyone is signed out)")
        return key

    # --- assignments --------------------------------------------------------------------------------------
    def config_for(self, assignment: str) -> Config:
        """The assignment's settings (read once); GraderError for one the course does not have."""
        if assignment not in self._configs:
            if assignment not in assignment_ids(self.config):
                raise GraderError(f"no assignment {assignment!r}")
            self._configs[assignment] = config_for(self.config, assignment)
        return self._configs[assignment]

    def assignments(self) -> list[Assignment]:
        """The course's assignments whose student notebook is released, by deadline."""
        found = []
        for assignment_id in assignment_ids(self.config):
            try:
                a = self.config_for(assignment_id).assignment
            except GraderError:
                continue                         # `list` says why; the site shows what it can
            found.append(Assignment(a.id, a.title_ja, a.title_en, a.deadline,
                                    clock.local_text(a.deadline, self.config.timezone), a.late_policy,
                                    a.release_notebook.is_file()))
        return sorted((a for a in found if a.released), key=lambda a: (a.deadline, a.id))

    def assignment(self, assignment_id: str) -> Assignment | None:
        return next((a for a in self.assignments() if a.id == assignment_id), None)

    def never_shown(self, assignment: str) -> tuple[str, ...]:
        """What no student's page may hold, whatever their notebook's error messages say: the session key and
        the hidden graders' source lines (those long enough not to occur by chance). Read once per assignment, as
        its settings are: every receipt page and its refreshes ask."""
        if assignment not in self._never_shown:
            graders = self.config_for(assignment).assignment.graders_dir
            lines = {line.strip() for path in sorted(graders.glob("*.py"))
                     for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
                     if len(line.strip()) >= 20}
            self._never_shown[assignment] = (self.secret_key, *sorted(lines, key=len, reverse=True))
        return self._never_shown[assignment]

    def deadline_of(self, student: str, assignment: str) -> dt.datetime:
        """The student's own deadline: an extension's, when they have one."""
        return deadline_for(self.config_for(assignment), student)

    def withheld_until(self, student: str, assignment: str) -> dt.datetime | None:
        """A student's extended deadline while it is still open: the solution and the feedback, published for the
        class, wait for it (publishing with the extended withheld); None when nothing waits for them."""
        own = self.deadline_of(student, assignment)
        return own if own != self.config_for(assignment).assignment.deadline and clock.now() < own else None

    def released_feedback(self, assignment: str):
        return records.release_of(self.engine, assignment)

    # --- submissions --------------------------------------------------------------------------------------
    def accept(self, student: str, assignment: str, data: bytes, allow_incomplete: bool = False):
        """One upload: refused (Refusal, saying why) or kept durably and recorded; → its attempts row."""
        config = self.config_for(assignment)
        if len(data) > config.max_notebook_mb * 2**20:
            raise too_large(len(data), config.max_notebook_mb)
        moment = clock.now()
        tmp_dir = self.data / "tmp"
        tmp_dir.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=tmp_dir, suffix=".ipynb") as upload:
            upload.write(data)
            upload.flush()
            late = check_submission(Path(upload.name), student, config, moment, allow_incomplete,
                                    TICK_INCOMPLETE_CHECKBOX)       # the form's checkbox, not the command's flag
        with self._write_lock:
            self.refuse_over_quota(student, assignment, len(data))
            folder = self.data / "attempts" / student / assignment
            recorded = records.last_number(self.engine, student, assignment)
            on_disk = [int(n) for n in (p.name.split("-", 1)[0] for p in folder.glob("*-*.ipynb")) if n.isdigit()]
            number = 1 + max([recorded, *on_disk])       # past any attempt a failed write left unrecorded
            receipt = f"{assignment[:12]}-{secrets.token_hex(5)}".upper()
            notebook = write_atomic(folder / f"{number}-{receipt}.ipynb", data, durable=True)
            row = {"receipt": receipt, "student_id": student, "assignment": assignment, "number": number,
                   "submitted_at": utc_text(moment),
                   "sha256": deliver(data, student, config, moment, late, self.exchange).sha256,
                   "size": len(data), "late": late, "file": str(notebook.relative_to(self.data))}
            write_atomic(notebook.with_suffix(".json"), json.dumps(row, indent=2) + "\n", durable=True)
            self._record(row)
        self.new_attempt.set()
        return self.attempt(student, receipt)

    def usage(self, student: str, assignment: str) -> tuple[int, int]:
        """(attempts, bytes) a student has stored for an assignment."""
        return records.usage(self.engine, student, assignment)

    def refuse_over_quota(self, student: str, assignment: str, size: int) -> None:
        """Refusal (kept: nothing) for an upload past the student's attempts or bytes for the assignment, or one
        that would leave the disk with less than SITE_MIN_FREE_MB: one student cannot fill it, and no receipt is
        given for what could not be kept."""
        config = self.config
        count, stored = self.usage(student, assignment)
        if count >= config.site_max_attempts:
            raise Refusal(f"この課題の提出は上限の {config.site_max_attempts} 回に達しました。これ以上は受け付けられません。"
                          "担当教員に相談してください。\n"
                          f"You have handed in this assignment {count} times, the limit: no more uploads are "
                          "accepted. Please ask your instructor.")
        if stored + size > config.site_max_stored_mb * 2**20:
            raise Refusal(f"この課題の提出の合計が上限 ({config.site_max_stored_mb} MiB) を超えます (これまで "
                          f"{stored / 2**20:.1f} MiB、今回 {size / 2**20:.1f} MiB)。出力を消去して小さくするか、担当教員に"
                          "相談してください。\n"
                          f"Your attempts at this assignment would take more than {config.site_max_stored_mb} MiB "
                          f"({stored / 2**20:.1f} MiB so far, {size / 2**20:.1f} MiB now): clear the outputs to make "
                          "it smaller, or ask your instructor.")
        free = shutil.disk_usage(self.data).free
        if free - size < config.site_min_free_mb * 2**20:
            print(f"autograder serve: upload of {student} refused: {free / 2**20:.0f} MiB free in {self.data}, "
                  f"under SITE_MIN_FREE_MB = {config.site_min_free_mb}", file=sys.stderr, flush=True)
            raise Refusal("サーバーのディスクの空きが足りないため、提出を保存できませんでした。この提出は受け付けられて"
                          "いません。担当教員に連絡してください。\n"
                          "The server's disk is nearly full, so your upload could not be kept: it was NOT handed in. "
                          "Please tell your instructor.")

    def _record(self, receipt: dict) -> None:
        """The attempt's row, from its receipt file's fields (``records.record_attempt``: queued for its check)."""
        records.record_attempt(self.engine, {**receipt,
                                             "submitted_at": dt.datetime.fromisoformat(receipt["submitted_at"])})

    def attempt(self, student: str, receipt: str):
        """A student's own attempt by its receipt id (None for anyone else's)."""
        return records.attempt_of(self.engine, student, receipt)

    def any_attempt(self, receipt: str):
        """Any student's attempt by its receipt id: for staff only."""
        return records.attempt_by_receipt(self.engine, receipt)

    def waiting_before(self, row) -> int:
        """How many checks wait before this attempt's (0 when it runs or is done)."""
        return records.waiting_before(self.engine, row)

    def attempts_of(self, student: str, assignment: str) -> list:
        return records.attempts_of(self.engine, student, assignment)

    def reconcile(self) -> list[str]:
        """After a crash: record the attempts whose files were written but whose row was not, and write each
        student's exchange folder again where it does not hold their latest attempt. → what was repaired."""
        repaired = []
        known = records.receipts(self.engine)
        for receipt_file in sorted((self.data / "attempts").glob("*/*/*.json")):
            try:
                row = json.loads(receipt_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if row.get("receipt") not in known and (self.data / row.get("file", "")).is_file():
                self._record(row)
                repaired.append(f"recorded attempt {row['receipt']} of {row['student_id']}")
        latest = {(r.student_id, r.assignment): r for r in records.attempts_at(self.engine)}
        for (student, assignment), r in latest.items():
            folder = self.exchange / "submitted" / student / assignment
            notebook = folder / f"{assignment}.ipynb"
            data = (self.data / r.file).read_bytes()
            if not notebook.is_file() or notebook.read_bytes() != data:
                try:
                    config = self.config_for(assignment)
                except GraderError:
                    continue
                deliver(data, student, config, r.submitted_at, r.late, self.exchange)
                repaired.append(f"wrote {student}'s {assignment} to the exchange again (attempt {r.receipt})")
        return repaired
