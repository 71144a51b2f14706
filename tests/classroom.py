"""Build small classes of submissions, in the layouts instructors receive, for the batch tests.

A "short" course trains 2 epochs (assignment3's EXPECTED epochs 2, threshold 0.90) so that a class of several students
grades in well under a minute; the grading code is the same as for the 30-epoch assignment.
"""

from __future__ import annotations

import csv
import datetime as dt
import shutil
import zipfile
from pathlib import Path

import nbformat

from autograder import PROJECT_ROOT
from autograder.course.clock import nbgrader_timestamp

ON_TIME = dt.datetime(2024, 5, 15, 12, 0, tzinfo=dt.timezone.utc)
LATE = dt.datetime(2024, 5, 16, 15, 30, tzinfo=dt.timezone.utc)      # 5/17 00:30 JST


def short_config(folder: Path, assignment: dict | None = None, with_reference: bool = False,
                 **settings) -> Path:
    """A course folder for a 2-epoch assignment3: grader_config.py (course settings overridden by ``settings``,
    name → Python literal), assignment3's settings.py with EXPECTED epochs 2 and threshold 0.90 (and
    ``assignment``'s overrides), its hidden graders and its released notebook — ``with_reference``, its reference
    notebook too, training 2 epochs (for publish and the site's jobs). → the grader_config.py."""
    text = (PROJECT_ROOT / "grader_config.py").read_text(encoding="utf-8")
    settings = {"DATA_DIR": repr(str(PROJECT_ROOT / "data")), **settings}
    path = folder / "grader_config.py"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(_overridden(text, settings), encoding="utf-8")
    reference = folder / "reference" / "assignment3"
    shutil.copytree(PROJECT_ROOT / "reference" / "assignment3", reference, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "samples", "*.ipynb"))
    settings_py = reference / "settings.py"
    short = {"EXPECTED": "{**EXPECTED, 'epochs': 2, 'val_accuracy_threshold': 0.90}", **(assignment or {})}
    settings_py.write_text(settings_py.read_text(encoding="utf-8") + "\n" + "".join(
        f"{name} = {value}\n" for name, value in short.items()), encoding="utf-8")
    if with_reference:
        text = (PROJECT_ROOT / "reference" / "assignment3" / "assignment3.ipynb").read_text(encoding="utf-8")
        (reference / "assignment3.ipynb").write_text(short_epochs(text), encoding="utf-8")
    release = folder / "assignments" / "assignment3" / "assignment3.ipynb"   # what given cells are checked against
    release.parent.mkdir(parents=True, exist_ok=True)
    release.write_bytes((PROJECT_ROOT / "assignments" / "assignment3" / "assignment3.ipynb").read_bytes())
    return path


def short_epochs(notebook_text: str) -> str:
    """An assignment3 notebook as the 2-epoch course's: its code's ``model.fit(..., epochs=30, ...)`` trains 2
    epochs; the given cells (the text explaining epochs=30 is locked) stay as released."""
    return notebook_text.replace("epochs=30,", "epochs=2,")


def _overridden(text: str, settings: dict[str, str]) -> str:
    settings, lines = dict(settings), []
    for line in text.splitlines():
        name = line.split("=", 1)[0].strip()
        lines.append(f"{name} = {settings.pop(name)}" if name in settings else line)
    return "\n".join(lines + [f"{name} = {value}" for name, value in settings.items()]) + "\n"


def load_course(config_path: Path, assignment: str = "assignment3"):
    """The course at ``config_path`` as it applies to ``assignment``."""
    from autograder.course.assignment import config_for
    from autograder.course.config import load_config

    return config_for(load_config(config_path), assignment)


def answer(epochs: int = 2, normalise: bool = True) -> str:
    """A solved student notebook (release metadata kept) as JSON text."""
    from autograder.lifecycle.release import solution_notebook  # nbgrader: imported only where a notebook is made

    reference = nbformat.read(PROJECT_ROOT / "reference" / "assignment3" / "assignment3.ipynb", as_version=4)
    nb = solution_notebook(reference)
    for cell in nb.cells:
        cell.source = cell.source.replace("epochs=30", f"epochs={epochs}")
        if not normalise:
            cell.source = cell.source.replace(" / 255", "")
    return nbformat.writes(nb)


def exchange_submission(root: Path, student: str, notebook_text: str | bytes,
                        submitted_at: dt.datetime | None, assignment: str = "assignment3") -> Path:
    """submitted/<student>/<assignment>/<assignment>.ipynb + timestamp.txt, as nbgrader collect leaves them."""
    folder = root / "submitted" / student / assignment
    return _write_folder(folder, notebook_text, submitted_at, assignment)


def inbound_submission(root: Path, student: str, notebook_text: str | bytes, submitted_at: dt.datetime,
                       assignment: str = "assignment3") -> Path:
    """inbound/<student>+<assignment>+<timestamp>/, as nbgrader submit leaves them (one per submission)."""
    folder = root / "inbound" / f"{student}+{assignment}+{nbgrader_timestamp(submitted_at)}"
    return _write_folder(folder, notebook_text, submitted_at, assignment)


def _write_folder(folder: Path, notebook_text, submitted_at, assignment: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{assignment}.ipynb"
    data = notebook_text.encode("utf-8") if isinstance(notebook_text, str) else notebook_text
    path.write_bytes(data)
    if submitted_at is not None:
        (folder / "timestamp.txt").write_text(nbgrader_timestamp(submitted_at), encoding="utf-8")
    return path


def lms_export(path: Path, rows: list[tuple[str, str, str | bytes, str]], as_zip: bool = False,
               extra_members: dict[str, bytes] | None = None) -> Path:
    """An LMS export: the files plus manifest.csv (student_id, file, submitted_at). rows: (student, file name,
    notebook text, submitted-at text). With as_zip, one .zip holding it all (and any extra raw members)."""
    manifest = [["student_id", "file", "submitted_at"]] + [[s, f, when] for s, f, _, when in rows]
    files = {name: (text.encode("utf-8") if isinstance(text, str) else text) for _, name, text, _ in rows}
    with_manifest = {**files, "manifest.csv": _csv(manifest).encode("utf-8")}
    if as_zip:
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in {**with_manifest, **(extra_members or {})}.items():
                zf.writestr(name, data)
        return path
    path.mkdir(parents=True, exist_ok=True)
    for name, data in with_manifest.items():
        (path / name).write_bytes(data)
    return path


def _csv(rows) -> str:
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


# --- stand-ins for a worker's grading function (they run in the batch's spawned worker processes) ----------

def _fake_reply(task: dict, config) -> dict:
    from autograder.grading.grade import zero_result
    from autograder.grading.graders import check_graders

    result = zero_result(config, check_graders(config), Path(task["path"]).name, "テスト", "a stand-in result",
                         task["official"], status="graded")
    return {"result": result.to_json(), "table": "stand-in", "log": "", "infrastructure": ""}


def works(task: dict, config, mnist) -> dict:
    return _fake_reply(task, config)


def lost_once(task: dict, config, mnist) -> dict:
    """The worker dies the first time it grades a notebook (as if the machine killed it), then works."""
    import os

    marker = Path(task.get("submitted_path", task["path"])).with_suffix(".attempted")    # on a node: the driver's
    if not marker.exists():
        marker.write_text("1")
        os._exit(3)
    return _fake_reply(task, config)


def slow_works(task: dict, config, mnist) -> dict:
    """Takes a moment per notebook, as a real one would (for killing a batch halfway)."""
    import time

    time.sleep(1.5)
    return _fake_reply(task, config)


def always_lost(task: dict, config, mnist) -> dict:
    import os

    os._exit(3)


def gpu_out_of_memory(task: dict, config, mnist) -> dict:
    """The kernel reports CUDA running out of memory, every time."""
    reply = _fake_reply(task, config)
    reply["infrastructure"] = "cell 9: ResourceExhaustedError: OOM when allocating tensor with shape[784,32]"
    return reply


def echo_options(task: dict, config, mnist) -> dict:
    """Reports the options the worker was given (device, speed mode) in the result's notes."""
    reply = _fake_reply(task, config)
    reply["result"]["notes"] = [f"device={task['device']} fused={task['fused']}"]
    return reply


def keeps_runs(task: dict, config, data) -> dict:
    """Keeps a small stand-in run in the batch's store as ``grade_task`` does (the notebook's own bytes and a file
    every run shares), and says in its note whether it executed or regraded — and, regrading, whether the stored
    copy of the notebook came back intact."""
    import tempfile

    from autograder.grading.store import RunStore

    store = RunStore(Path(task["store"]))
    reply = _fake_reply(task, config)
    with tempfile.TemporaryDirectory() as work:
        if task.get("stored"):
            files = store.restore(task["stored"], Path(work) / "artifacts")
            intact = files["copy.ipynb"].read_bytes() == Path(task["path"]).read_bytes()
            reply["result"]["notes"] = [f"regraded, intact={intact}"]
        else:
            shared = Path(work) / "shared.bin"
            shared.write_bytes(b"the same for everyone " * 1000)
            reply["run"] = store.keep({"copy.ipynb": Path(task["path"]), "shared.bin": shared},
                                      task["run_fingerprint"], {"device": task["device"], "run": {}})
            reply["result"]["notes"] = ["executed"]
    return reply


def grades_without_a_kernel(task: dict, config, data) -> dict:
    """``grade_task`` with the kernel taken away: a notebook that would be executed fails (as the runner's error)."""
    import autograder.run.execute
    from autograder.classroom.pool import grade_task

    def no_kernel(*args, **kwargs):
        raise AssertionError("a kernel was started")

    autograder.run.execute.execute = no_kernel
    return grade_task(task, config, data)


def parent_lost_once(task: dict, config, data) -> dict:
    """The first time, kills the process that started this grading process (a Ray worker, which Ray then replaces
    and runs the task again), then works."""
    import os
    import signal

    marker = Path(config.root) / f"{task['run_fingerprint'][:16]}.parent-killed"
    if not marker.exists():
        marker.write_text("1")
        os.kill(os.getppid(), signal.SIGKILL)
        os._exit(9)
    return _fake_reply(task, config)


_graded_here = 0          # notebooks this worker process has graded


def chunk_killed_once(task: dict, config, data) -> dict:
    """Once in the whole class, at a worker's second notebook (mid-chunk: the first one's reply is in), kills the
    Slurm job running the chunk, as preemption or a node failure would — the worker's parent is the pool's fork
    server, whose parent is the job's process. Otherwise works."""
    import os
    import signal
    import time

    global _graded_here
    _graded_here += 1
    if _graded_here == 2:
        try:
            os.close(os.open(Path(config.root) / "job-killed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return _fake_reply(task, config)
        time.sleep(1)                     # into the notebook: the chunk has written the first one's reply
        job = int(Path(f"/proc/{os.getppid()}/stat").read_text().rsplit(")", 1)[1].split()[1])
        os.kill(job, signal.SIGKILL)
        os._exit(9)
    return _fake_reply(task, config)


def echo_process(task: dict, config, data) -> dict:
    """Says which process graded the notebook (its pid, in the result's notes)."""
    import os

    reply = _fake_reply(task, config)
    reply["result"]["notes"] = [f"pid={os.getpid()}"]
    return reply
