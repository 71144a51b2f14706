"""What the cluster executors run on a node, and what they share: the batch's folder on the shared filesystem, the
check that a node sees it, and the Ray worker's grading process (a plain Python process, started rather than
forked: forked pools hang inside Ray's workers).

A node grades only after checking what the driver cannot see from where it is: that the output folder is the one
the driver wrote (a token in a file there: a node that mounts another filesystem at that path, or none, is said
so), that the course's settings are readable, that the sandbox starts there when ``SANDBOX = 'require'``, and that
a GPU task sees a GPU. A node that cannot is a runner's failure, retried (perhaps elsewhere), never a zero.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Iterator

from ... import PROJECT_ROOT
from ...course.config import Config
from ...errors import GraderError, meaningful_lines

CLUSTER_DIR = ".cluster"                  # under the output folder: one folder per running batch, removed after it
MARKER = "driver-token"
SHARED_FS_HELP = ("grading on a cluster needs the output folder (--out) on a filesystem that every node mounts at "
                  "the same path (NFS, Lustre, GPFS, BeeGFS, CephFS…), with the project's checkout")
NODE_LOG_DIR = "nodes"                    # out/logs/nodes/<host>.log: what the node processes printed


@dataclass(frozen=True)
class NodeSetup:
    """What a node needs to grade a batch's tasks, the same for each of them."""
    config_path: str
    assignment_id: str
    grade_fn: str                          # "module:function", imported on the node
    kernel_device: str
    snapshot: str | None                   # the verified dataset, saved in the shared folder
    marker: str                            # a file the driver wrote in the shared folder, holding ``token``
    token: str
    log_dir: str
    python_path: tuple[str, ...]           # where the node's Python finds autograder and the grading function
    timeout_s: int                         # one task's limit (the pool's hard limit)


def function_name(fn) -> str:
    """``module:qualname``: how a grading function travels to a node (imported there, not pickled)."""
    return f"{fn.__module__}:{fn.__qualname__}"


def import_function(name: str):
    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


def python_path(fn) -> tuple[str, ...]:
    """The project's root, and the folder of the grading function's module when it lies elsewhere (a test's)."""
    paths = [str(PROJECT_ROOT)]
    origin = getattr(sys.modules.get(fn.__module__), "__file__", None)
    if origin and fn.__module__.count(".") == 0 and str(Path(origin).parent) not in paths:
        paths.append(str(Path(origin).parent))
    return tuple(paths)


@contextlib.contextmanager
def shared_scratch(out: Path) -> Iterator[Path]:
    """The batch's own folder, ``out/.cluster/<id>/``, which every node must see: it holds the marker token (see
    ``check_node``), the dataset files and the replies; removed when the batch ends. A killed driver's folder is
    removed by the next batch into ``out`` (which grades again whatever that one left without a result)."""
    for leftover in sorted((Path(out) / CLUSTER_DIR).glob("*")):
        shutil.rmtree(leftover, ignore_errors=True)
    folder = Path(out) / CLUSTER_DIR / f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(3)}"
    folder.mkdir(parents=True)
    (folder / MARKER).write_text(secrets.token_hex(16), encoding="ascii")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()        # the last batch out


def setup_for(config: Config, scratch: Path, *, grade_fn, kernel_device: str, snapshot: Path | None,
              log_path: Path) -> NodeSetup:
    from ..pool import task_time_limit

    marker = scratch / MARKER
    return NodeSetup(str(config.source), config.assignment.id, function_name(grade_fn), kernel_device,
                     str(snapshot) if snapshot else None, str(marker), marker.read_text(encoding="ascii"),
                     str(log_path.parent / NODE_LOG_DIR), python_path(grade_fn), task_time_limit(config))


def shipped(payload: dict) -> dict:
    """A task as it travels to a node: with its notebook's bytes (the driver's copy may be in a folder only the
    driver sees: an LMS export unpacked in its temporary folder)."""
    return {**payload, "notebook": Path(payload["path"]).read_bytes()}


def landed(payload: dict, folder: Path) -> dict:
    """A shipped task on the node: its notebook written under ``folder``, with the name it was handed in with."""
    path = Path(folder) / Path(payload["path"]).name
    path.write_bytes(payload["notebook"])
    task = {k: v for k, v in payload.items() if k != "notebook"}
    task.update(path=str(path), submitted_path=payload["path"])      # where the driver read it
    return task


def host() -> str:
    return socket.gethostname()


def check_node(setup: NodeSetup) -> str:
    """'' when this node can grade the batch, else why not (said with the node's name)."""
    marker = Path(setup.marker)
    try:
        seen = marker.read_text(encoding="ascii")
    except OSError:
        seen = None
    if seen != setup.token:
        where = "does not exist" if seen is None else "holds another batch's token"
        return (f"node {host()} does not see this batch's output folder: {marker} {where} there — "
                f"{SHARED_FS_HELP}")
    if not Path(setup.config_path).is_file():
        return f"node {host()} cannot read the course's settings {setup.config_path}: {SHARED_FS_HELP}"
    return ""


def node_config(setup: NodeSetup) -> Config:
    from ...course.assignment import config_for
    from ...course.config import load_config

    return config_for(load_config(setup.config_path), setup.assignment_id)


def check_runtime(setup: NodeSetup, config: Config) -> str:
    """'' when the sandbox and the GPU are as the batch needs them on this node, else why not. ``SANDBOX`` decides
    as on one machine: 'require' refuses a node where bwrap cannot start; 'auto' grades without it, and each
    result says so."""
    from ...run import sandbox

    try:
        sandbox.require(config.sandbox)
    except GraderError as exc:
        return f"node {host()}: {exc}{userns_hint()}"
    if setup.kernel_device == "gpu":
        from ...run.device import visible_gpus

        if not visible_gpus():          # also hides the GPUs from this process: they are the kernels'
            return (f"node {host()}: this task was given a GPU (CUDA_VISIBLE_DEVICES="
                    f"{os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}) but TensorFlow sees none there")
    return ""


def userns_hint() -> str:
    """Why bwrap may not start on a cluster node: unprivileged user namespaces switched off."""
    from ...run.sandbox import userns_hint as host_hint

    return host_hint("this node", "; ask the cluster's administrators, or set SANDBOX = 'auto' or 'off' knowingly")


# --- the Ray executor's grading process ---------------------------------------------------------------------------

def _die_with_parent() -> None:
    """In the child before exec: end when the process that started it ends (a lost Ray worker takes its
    grading, and the kernel, with it), and ignore a terminal's Ctrl-C as the pool's workers do."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)      # PR_SET_PDEATHSIG
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class GradingProcess:
    """A plain Python process (``python -m autograder.classroom.executors.node``: started, not forked) that a Ray
    worker keeps for the tasks it runs one after another, as a pool worker serves its notebooks: Keras, the graders
    and the dataset are loaded by the first task and reused by the next (measured: a fresh process per task spent ~8
    core-seconds on them). It dies with its Ray worker; one that is lost or overruns is replaced."""

    def __init__(self, setup: NodeSetup):
        self.setup = setup
        self.log_path = Path(setup.log_dir) / f"{host()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        ours, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([*setup.python_path, os.environ.get("PYTHONPATH", "")])}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "autograder.classroom.executors.node",
                                             str(theirs.fileno())],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                            pass_fds=(theirs.fileno(),), preexec_fn=_die_with_parent)
        theirs.close()
        self.conn = Connection(ours.detach())
        self.conn.send(setup)

    def grade(self, payload: dict) -> dict:
        """The reply for one shipped task; CUDA_VISIBLE_DEVICES as Ray set it for this task goes with it."""
        gpus = {k: v for k, v in os.environ.items() if k == "CUDA_VISIBLE_DEVICES"}
        try:
            self.conn.send((payload, gpus))
            if self.conn.poll(self.setup.timeout_s):
                return self.conn.recv()
            problem = f"no answer from the grading process within {self.setup.timeout_s} s"
        except (EOFError, OSError):
            problem = ""
        self.stop()
        return {"infrastructure": f"node {host()}: " + (problem or f"the grading process was lost (exit code "
                                                                   f"{self.process.returncode})"),
                "log": f"what it printed is in {self.log_path}"}

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.conn.close()


_kept: GradingProcess | None = None        # the Ray worker's grading process, kept between its tasks


def grade_in_subprocess(payload: dict, setup: NodeSetup) -> dict:
    """In a Ray worker: grade one shipped task in this worker's grading process (started for the batch's
    ``setup`` when it has none, or one for another batch, or one that was lost)."""
    global _kept
    problem = check_node(setup)
    if problem:
        return {"infrastructure": problem, "log": ""}
    if _kept is not None and (_kept.setup != setup or not _kept.alive()):
        _kept.stop()
        _kept = None
    if _kept is None:
        _kept = GradingProcess(setup)
    reply = _kept.grade(payload)
    if reply.get("infrastructure") and not _kept.alive():
        _kept = None
    return reply


def serve(conn: Connection) -> None:
    """The grading process: the batch's setup, then one task after another until the Ray worker goes."""
    from ...course.dataset import LazyDataset
    from ..pool import reply_for

    setup = conn.recv()                  # $PYTHONPATH names setup.python_path (GradingProcess)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        config, problem = node_config(setup), ""
    except GraderError as exc:
        config, problem = None, f"node {host()}: {exc}"
    data = LazyDataset(config, setup.snapshot) if config else None
    while True:
        try:
            payload, gpus = conn.recv()
        except EOFError:
            return
        os.environ.update(gpus)          # the kernels it starts see this task's GPU
        reply = {"infrastructure": problem or check_runtime(setup, config), "log": ""}
        if not reply["infrastructure"]:
            with tempfile.TemporaryDirectory(prefix="autograder-task-") as tmp:
                reply = on_this_node(reply_for(landed(payload, Path(tmp)), config, data,
                                               import_function(setup.grade_fn)))
        conn.send(reply)


def on_this_node(reply: dict) -> dict:
    """A reply whose log (the student's log, for staff) starts by naming the node that graded it."""
    return {**reply, "log": f"graded on node {host()}\n{reply.get('log', '')}"}


def failure_text(exc: BaseException) -> str:
    """One line for an engine's exception: its type and the first meaningful line of what it says."""
    said = meaningful_lines(str(exc))
    return f"{type(exc).__name__}: {said[0] if said else ''}".strip().rstrip(":")[:500]


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])))
