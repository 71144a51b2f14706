"""What the cluster executors run on a node, and what they share: the batch's folder on the shared filesystem, the
check that a node sees it, and grading one task in a plain Python process (no fork server: forked pools hang
inside Ray's workers).

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
import pickle
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .. import PROJECT_ROOT
from ..config import Config
from ..errors import GraderError, meaningful_lines

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
              log_path: Path, timeout_s: int) -> NodeSetup:
    marker = scratch / MARKER
    return NodeSetup(str(config.source), config.assignment.id, function_name(grade_fn), kernel_device,
                     str(snapshot) if snapshot else None, str(marker), marker.read_text(encoding="ascii"),
                     str(log_path.parent / NODE_LOG_DIR), python_path(grade_fn), timeout_s)


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
    from ..config import load_config

    return load_config(setup.config_path).for_assignment(setup.assignment_id)


def check_runtime(setup: NodeSetup, config: Config) -> str:
    """'' when the sandbox and the GPU are as the batch needs them on this node, else why not. ``SANDBOX`` decides
    as on one machine: 'require' refuses a node where bwrap cannot start; 'auto' grades without it, and each
    result says so."""
    from .. import sandbox

    try:
        sandbox.require(config.sandbox)
    except GraderError as exc:
        return f"node {host()}: {exc}{userns_hint()}"
    if setup.kernel_device == "gpu":
        from ..device import visible_gpus

        if not visible_gpus():          # also hides the GPUs from this process: they are the kernels'
            return (f"node {host()}: this task was given a GPU (CUDA_VISIBLE_DEVICES="
                    f"{os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}) but TensorFlow sees none there")
    return ""


def userns_hint() -> str:
    """Why bwrap may not start on a cluster node: unprivileged user namespaces switched off."""
    for setting, path in (("user.max_user_namespaces", "/proc/sys/user/max_user_namespaces"),
                          ("kernel.unprivileged_userns_clone", "/proc/sys/kernel/unprivileged_userns_clone")):
        with contextlib.suppress(OSError, ValueError):
            if int(Path(path).read_text()) == 0:
                return (f" (this node has {setting} = 0: bwrap needs unprivileged user namespaces; ask the "
                        f"cluster's administrators, or set SANDBOX = 'auto' or 'off' knowingly)")
    return ""


# --- one task in a plain subprocess (the Ray executor) -----------------------------------------------------------

def _die_with_parent() -> None:
    """In the child before exec: end when the process that started it ends (a lost Ray worker takes its
    grading, and the kernel, with it), and ignore a terminal's Ctrl-C as the pool's workers do."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)      # PR_SET_PDEATHSIG
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def grade_in_subprocess(payload: dict, setup: NodeSetup) -> dict:
    """Grade one shipped task in a fresh ``python -m autograder.executors.node`` and return its reply; a process
    that dies or overruns is a runner's failure (an ``infrastructure`` reply)."""
    problem = check_node(setup)
    if problem:
        return {"infrastructure": problem, "log": ""}
    log_dir = Path(setup.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*setup.python_path, os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory(prefix="autograder-node-") as tmp:
        request, reply = Path(tmp) / "request.pickle", Path(tmp) / "reply.pickle"
        request.write_bytes(pickle.dumps((setup, payload)))
        with open(log_dir / f"{host()}.log", "ab") as log:
            try:
                done = subprocess.run([sys.executable, "-m", "autograder.executors.node", str(request), str(reply)],
                                      stdout=log, stderr=log, env=env, timeout=setup.timeout_s,
                                      preexec_fn=_die_with_parent)
            except subprocess.TimeoutExpired:
                return {"infrastructure": f"node {host()}: no answer from the grading process within "
                                          f"{setup.timeout_s} s", "log": ""}
        if done.returncode != 0 or not reply.is_file():
            return {"infrastructure": f"node {host()}: the grading process was lost (exit code {done.returncode})",
                    "log": f"what it printed is in {log_dir / (host() + '.log')}"}
        return pickle.loads(reply.read_bytes())


def grade_here(setup: NodeSetup, payload: dict) -> dict:
    """In the grading process: check this node, then grade the task as a pool worker would."""
    from ..pool import LazyDataset, reply_for

    try:
        config = node_config(setup)
    except GraderError as exc:
        return {"infrastructure": f"node {host()}: {exc}", "log": ""}
    problem = check_runtime(setup, config)
    if problem:
        return {"infrastructure": problem, "log": ""}
    with tempfile.TemporaryDirectory(prefix="autograder-task-") as tmp:
        return on_this_node(reply_for(landed(payload, Path(tmp)), config, LazyDataset(config, setup.snapshot),
                                      import_function(setup.grade_fn)))


def on_this_node(reply: dict) -> dict:
    """A reply whose log (the student's log, for staff) starts by naming the node that graded it."""
    return {**reply, "log": f"graded on node {host()}\n{reply.get('log', '')}"}


def main(argv: list[str]) -> int:
    request, reply = map(Path, argv)
    setup, payload = pickle.loads(request.read_bytes())
    sys.path[:0] = [p for p in setup.python_path if p not in sys.path]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    answer = grade_here(setup, payload)
    reply.write_bytes(pickle.dumps(answer))
    return 0


def failure_text(exc: BaseException) -> str:
    """One line for an engine's exception: its type and the first meaningful line of what it says."""
    said = meaningful_lines(str(exc))
    return f"{type(exc).__name__}: {said[0] if said else ''}".strip().rstrip(":")[:500]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
