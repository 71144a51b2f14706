"""Grading on a Slurm cluster through submitit: a job array of chunks, each chunk a few submissions graded by the
local worker pool on one GPU node.

A chunk writes each student's reply to the batch's shared folder the moment it is settled (atomically), and the
driver, polling, writes the results as they arrive: a chunk killed halfway loses only what was in flight. A job
that ends without a result (submitit's ``UncompletedJobError``: preempted, node failure, OOM-killed, over its time)
is resubmitted once, with only the submissions it did not finish; a second loss is an infrastructure error for
those, never a zero. A chunk that fails in Python (``FailedJobError``: a node that cannot grade, say) is not
resubmitted: its submissions are infrastructure errors with the reason. Inside a chunk, the pool retries a lost
worker once, as on one machine. A student's error is a result, and never a resubmission.

Logs, one folder per array task: ``out/logs/slurm/<job>_<index>/`` holds submitit's (the task's stdout and
stderr, its pickles) and the chunk's workers' ``workers.log``. ``submitit`` is in requirements-cluster.txt.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ...course.config import Config
from ...errors import GraderError, meaningful_lines
from ...run.device import resolve_device
from ..pool import MAX_ATTEMPTS
from . import Executor
from .node import (SHARED_FS_HELP, NodeSetup, check_node, check_runtime, import_function, landed, node_config,
                   on_this_node, setup_for, shared_scratch, shipped)

REPLIES_DIR = "replies"
POLL_S = 5.0                          # how often the driver looks at the jobs and the replies
NODE_LOCAL = ("tmpfs", "ramfs", "overlay")     # filesystems no other node sees
NODE_LOCAL_PATHS = ("/tmp", "/var/tmp", "/dev/shm")


def import_submitit():
    try:
        import submitit
    except ImportError as exc:
        raise GraderError("--executor slurm needs submitit, which the base install leaves out: "
                          "pip install -r requirements-cluster.txt") from exc
    return submitit


@dataclass
class ChunkTask:
    key: str
    payload: dict                                 # shipped: with the notebook's bytes
    attempts: list[str] = field(default_factory=list)


@dataclass
class Chunk:
    """One array task's work: the submissions (by key) and what grading them needs."""
    tasks: list[ChunkTask]
    setup: NodeSetup
    replies: str                                  # the shared folder the chunk writes each reply into
    workers: int
    max_attempts: int                             # per submission, what is left of MAX_ATTEMPTS


def grade_chunk(chunk: Chunk) -> int:
    """On a node (submitit runs this): check the node, then grade the chunk's submissions through the local pool,
    each reply written to the shared folder as soon as it is settled. → how many were graded."""
    from ...files import write_atomic
    from ..pool import graded, worker_context

    setup = chunk.setup                          # $PYTHONPATH names setup.python_path (python_path_exported)
    problem = check_node(setup)
    if problem:
        raise GraderError(problem)
    config = node_config(setup)
    problem = check_runtime(setup, config)
    if problem:
        raise GraderError(problem)
    worker_context()
    log_path = import_submitit().JobEnvironment().paths.folder / "workers.log"     # beside submitit's own logs
    done = 0
    with tempfile.TemporaryDirectory(prefix="autograder-chunk-") as here:
        tasks = {}
        for task in chunk.tasks:                 # each notebook in its own folder: two may share a file name
            (Path(here) / task.key).mkdir()
            tasks[task.key] = landed(task.payload, Path(here) / task.key)
        for task, reply in graded(chunk.tasks, config, payload=lambda t: tasks[t.key], workers=chunk.workers,
                                  kernel_device=setup.kernel_device, log_path=log_path,
                                  grade_fn=import_function(setup.grade_fn),
                                  snapshot=Path(setup.snapshot) if setup.snapshot else None,
                                  max_attempts=chunk.max_attempts):
            reply = {**on_this_node(reply), "attempts": task.attempts}
            write_atomic(Path(chunk.replies) / f"{task.key}.pickle", pickle.dumps(reply))
            done += 1
    return done


def node_local(folder: Path) -> str:
    """Why ``folder`` surely cannot be seen from other nodes, or '' (a network filesystem cannot be told from a
    local disk by its name alone: the nodes check the rest, see ``node.check_node``)."""
    folder = Path(folder).resolve()

    def within(mount: str) -> bool:
        return folder == Path(mount) or Path(mount) in folder.parents

    for path in NODE_LOCAL_PATHS:
        if within(path):
            return f"it is under {path}, which each machine has its own of"
    mounts = []
    with contextlib.suppress(OSError):
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    mounted = [(mount.replace("\\040", " "), kind) for mount, kind in mounts if within(mount.replace("\\040", " "))]
    mount, kind = max(mounted, key=lambda m: len(m[0]), default=("", ""))
    return f"it is on {kind} ({mount}), which only this machine sees" if kind in NODE_LOCAL else ""


def job_failure(exc) -> str:
    """A job's exception in one line: for a chunk that failed in Python (``FailedJobError``), the error it raised
    (the last line of the trace submitit quotes between dashed lines); for a job that ended without a result,
    the start of submitit's message."""
    text = str(exc)
    if isinstance(exc, import_submitit().core.utils.FailedJobError):
        trace = re.split(r"^-{10,}$", text, flags=re.M)
        said = meaningful_lines(trace[1] if len(trace) > 2 else text)
        if said:
            return re.sub(r"^[\w.]+\.(\w+: )", r"\1", said[-1])[:500]       # GraderError: …, not a.b.GraderError
    return f"{type(exc).__name__}: {' '.join(meaningful_lines(text)[:2])[:500]}"


def resubmittable(exc) -> bool:
    """A job that ended without a result (preempted, node failure, OOM kill, over its time) — not one that failed
    in Python, whose second try would fail alike."""
    errors = import_submitit().core.utils
    return isinstance(exc, errors.UncompletedJobError) and not isinstance(exc, errors.FailedJobError)


@contextlib.contextmanager
def python_path_exported(paths: tuple[str, ...]):
    """While jobs are submitted: $PYTHONPATH naming the project, for the jobs' Python to find it (sbatch and
    submitit's local executor pass the environment on; ``slurm_setup`` says it again where a site does not)."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, *([before] if before else [])])
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


class SlurmExecutor(Executor):
    def __init__(self, partition: str | None = None, gpus_per_task: int | None = None,
                 array_parallelism: int | None = None, chunk_size: int | None = None,
                 kernels_per_gpu: int | None = None, cluster: str = "slurm", poll_s: float = POLL_S):
        """``cluster``: submitit's executor — "slurm", or "local": the array's tasks as processes on this machine
        (how the tests run it; never chosen silently, as submitit's AutoExecutor would where Slurm is missing)."""
        self.options = {"partition": partition, "gpus_per_task": gpus_per_task,
                        "array_parallelism": array_parallelism, "chunk_size": chunk_size,
                        "kernels_per_gpu": kernels_per_gpu}
        for name, value in self.options.items():
            if name != "partition" and value is not None and value < (0 if name == "gpus_per_task" else 1):
                raise GraderError(f"--{name.replace('_', '-')} must be at least "
                                  f"{0 if name == 'gpus_per_task' else 1}, got {value}")
        self.cluster, self.poll_s = cluster, poll_s

    def prepare(self, config: Config) -> None:
        """The course's settings fill what the command line left out; submitit and Slurm must be there."""
        import_submitit()
        if self.cluster == "slurm" and not shutil.which("sbatch"):
            raise GraderError("--executor slurm: Slurm's sbatch is not on this machine's PATH; run the command on "
                              "the cluster's login node (or a node that can submit jobs)")
        defaults = {"partition": config.slurm_partition or None, "gpus_per_task": config.slurm_gpus_per_task,
                    "array_parallelism": config.slurm_array_parallelism, "chunk_size": config.slurm_chunk_size,
                    "kernels_per_gpu": config.kernels_per_gpu}
        self.options = {k: defaults[k] if v is None else v for k, v in self.options.items()}
        self.time_min = config.slurm_time_min

    def resolve_device(self, requested: str, config: Config) -> tuple[str, bool]:
        gpus = self.options["gpus_per_task"]
        if requested != "cpu" and not gpus and config.device_policy == "require-gpu":
            raise GraderError("official grading requires a GPU (DEVICE_POLICY = 'require-gpu') and --gpus-per-task "
                              "is 0: ask for GPUs (--gpus-per-task 1, SLURM_GPUS_PER_TASK), or pass --device cpu "
                              "for an unofficial grade")
        return resolve_device(requested, config, ["slurm"] * gpus)

    def default_workers(self, kernel_device: str, executing: bool) -> int:
        """Kernels side by side in a chunk: ``KERNELS_PER_GPU`` on each of its GPUs, or one on the CPU."""
        return max(1, self.options["gpus_per_task"] * self.options["kernels_per_gpu"]) if kernel_device == "gpu" else 1

    @contextlib.contextmanager
    def scratch(self, out: Path):
        why = node_local(out) if self.cluster != "local" else ""
        if why:
            raise GraderError(f"--out {out}: {why}; {SHARED_FS_HELP}")
        with shared_scratch(out) as folder:
            yield folder

    def describe(self, workers: int, kernel_device: str) -> str:
        o = self.options
        gpus = f"{o['gpus_per_task']} GPU(s) and " if kernel_device == "gpu" else ""
        return (f"Slurm{' (submitit local)' if self.cluster == 'local' else ''}: chunks of {o['chunk_size']}, "
                f"{gpus}{workers} kernel(s) each, {o['array_parallelism']} at once"
                + (f", partition {o['partition']}" if o["partition"] else ""))

    def _executor(self, folder: Path, workers: int, assignment_id: str, python_path: tuple[str, ...]):
        submitit = import_submitit()
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=self.cluster)
        setup = [f"export PYTHONPATH={shlex.quote(os.pathsep.join(python_path))}${{PYTHONPATH:+:$PYTHONPATH}}"]
        executor.update_parameters(
            name=f"autograder-{assignment_id}", timeout_min=self.time_min, cpus_per_task=workers + 1,
            gpus_per_node=self.options["gpus_per_task"], slurm_partition=self.options["partition"],
            slurm_array_parallelism=self.options["array_parallelism"], slurm_setup=setup)
        return executor

    def graded(self, tasks: list, config: Config, *, scratch: Path, payload, workers: int, kernel_device: str,
               log_path: Path, grade_fn, snapshot: Path | None = None,
               max_attempts: int = MAX_ATTEMPTS) -> Iterator[tuple[object, dict]]:
        if not tasks:
            return
        setup = setup_for(config, scratch, grade_fn=grade_fn, kernel_device=kernel_device, snapshot=snapshot,
                          log_path=log_path)
        replies = scratch / REPLIES_DIR
        replies.mkdir()
        executor = self._executor(log_path.parent / "slurm", workers, config.assignment.id, setup.python_path)
        by_key = {f"{i:05d}": task for i, task in enumerate(tasks)}
        size = self.options["chunk_size"]

        def chunk_of(keys: list[str]) -> Chunk:
            left = max_attempts - max(len(by_key[k].attempts) for k in keys)
            return Chunk([ChunkTask(k, shipped(payload(by_key[k]))) for k in keys], setup, str(replies), workers,
                         max(1, left))

        keys = list(by_key)
        with python_path_exported(setup.python_path):
            jobs = dict(zip(executor.map_array(grade_chunk, [chunk_of(keys[i:i + size])
                                                             for i in range(0, len(keys), size)]),
                            [keys[i:i + size] for i in range(0, len(keys), size)]))
        settled: set[str] = set()
        try:
            while jobs:
                finished = [job for job in jobs if job.done()]     # before reading: a finished job's replies are in
                for path in sorted(replies.glob("*.pickle")):
                    key = path.stem
                    if key in by_key and key not in settled:
                        settled.add(key)
                        reply = pickle.loads(path.read_bytes())
                        by_key[key].attempts.extend(reply.pop("attempts", []))
                        yield by_key[key], reply
                for job in finished:
                    missing = [k for k in jobs.pop(job) if k not in settled]
                    if not missing:
                        continue
                    exc = job.exception()
                    ended = "failed" if exc is not None and not resubmittable(exc) else "ended without a result"
                    why = f"Slurm job {job.job_id} {ended} ({job_failure(exc) if exc else 'no reply'})"
                    for key in missing:
                        by_key[key].attempts.append(why)
                    again = [k for k in missing if len(by_key[k].attempts) < max_attempts]
                    if again and resubmittable(exc):
                        with python_path_exported(setup.python_path):
                            jobs[executor.submit(grade_chunk, chunk_of(again))] = again
                        missing = [k for k in missing if k not in again]
                    for key in missing:
                        settled.add(key)
                        yield by_key[key], {"infrastructure": by_key[key].attempts[-1],
                                            "log": f"the job's logs: {job.paths.folder}"}
                if jobs:
                    time.sleep(self.poll_s)
        finally:
            for job in jobs:                 # the driver stopped: its jobs stop too (a killed driver: scancel them)
                with contextlib.suppress(Exception):
                    job.cancel(check=False)
            with contextlib.suppress(OSError):
                (log_path.parent / "slurm" / "%j").rmdir()     # submitit's, for jobs before their ids: left empty
