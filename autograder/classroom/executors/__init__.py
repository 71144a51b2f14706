"""Where a class's notebooks are graded: this machine's worker pool (the default), a Ray cluster, or a Slurm cluster.

The batch plans, then hands the tasks to an executor and writes what comes back itself (runs, results, pages,
the gradebook), so every executor gives the same files. An executor only runs the grading function on each task
somewhere and yields ``(task, reply)`` once the task is settled, keeping the pool's promises: a runner's failure
(a lost worker or job, a GPU that failed) is retried once and then reported as an infrastructure error, never as
the student's zero; a student's error is a result, never retried.

    local   pool.graded: worker processes forked from a fork server on this machine
    ray     ray_cluster.RayExecutor: one Ray task per submission, fractional GPUs
    slurm   slurm.SlurmExecutor: a submitit job array of chunks, each chunk through the local pool on one node

The cluster executors need the output folder on a filesystem every node mounts at the same path (``node.py``
checks it on each node before grading); the project's checkout and the course's files must be there too.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Iterator

from ...course.config import Config
from ...errors import GraderError
from ...run.device import resolve_device


class Executor:
    """The seam between the batch and where its notebooks run. The batch calls, in this order: ``prepare``,
    ``resolve_device``, ``scratch`` (around the whole run), ``default_workers``, ``describe``, then ``graded``."""

    def prepare(self, config: Config) -> None:
        """Before planning: what this executor needs ready (a fork server, a connection to the cluster)."""
        raise NotImplementedError

    def resolve_device(self, requested: str, config: Config) -> tuple[str, bool]:
        """→ (the kernels' device, whether the grade is official): decided by the GPUs where the kernels run."""
        raise NotImplementedError

    def scratch(self, out: Path) -> contextlib.AbstractContextManager[Path]:
        """A folder for the batch's own files (the kernels' dataset files, the dataset snapshot) while it runs:
        where every process that grades can read them."""
        raise NotImplementedError

    def default_workers(self, kernel_device: str, executing: bool) -> int:
        """Kernels at once when --workers is not given."""
        raise NotImplementedError

    def describe(self, workers: int, kernel_device: str) -> str:
        """For the batch's first line: where and how many at once."""
        raise NotImplementedError

    def graded(self, tasks: list, config: Config, *, scratch: Path, payload, workers: int, kernel_device: str,
               log_path: Path, grade_fn, snapshot: Path | None = None) -> Iterator[tuple[object, dict]]:
        """Run ``grade_fn`` on each task's ``payload(task)`` somewhere; yield ``(task, reply)`` once each is settled,
        each failed attempt noted in ``task.attempts`` (as ``pool.graded`` does)."""
        raise NotImplementedError


class LocalPool(Executor):
    """Today's worker pool on this machine: the default, and what a Slurm chunk runs on its node."""

    def prepare(self, config: Config) -> None:
        from ...run import sandbox
        from ..pool import worker_context

        sandbox.require(config.sandbox)
        worker_context()                 # the fork server imports Keras while intake reads the class

    def resolve_device(self, requested: str, config: Config) -> tuple[str, bool]:
        return resolve_device(requested, config)

    def default_workers(self, kernel_device: str, executing: bool) -> int:
        from ..pool import default_workers

        return default_workers(kernel_device, executing)

    @contextlib.contextmanager
    def scratch(self, out: Path) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="autograder-class-") as tmp:
            yield Path(tmp)

    def describe(self, workers: int, kernel_device: str) -> str:
        return f"{workers} workers"

    def graded(self, tasks: list, config: Config, *, scratch: Path, **options) -> Iterator[tuple[object, dict]]:
        from ..pool import graded

        return graded(tasks, config, **options)


OPTIONS = {"local": (), "ray": ("address", "kernels_per_gpu"),       # executor → the options it takes
           "slurm": ("partition", "gpus_per_task", "array_parallelism", "chunk_size", "kernels_per_gpu")}
EXECUTORS = tuple(OPTIONS)
CLUSTER_OPTIONS = tuple(dict.fromkeys(option for options in OPTIONS.values() for option in options))


def make_executor(name: str = "local", **options) -> Executor:
    """The executor called ``name`` with its ``options`` (those left None: the course's settings apply); an option
    given for another executor is refused rather than ignored."""
    if name not in OPTIONS:
        raise GraderError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    given = {k: v for k, v in options.items() if v is not None}
    stray = sorted(set(given) - set(OPTIONS[name]))
    if stray:
        flag = "--" + stray[0].replace("_", "-")
        users = [n for n, accepted in OPTIONS.items() if stray[0] in accepted]
        raise GraderError(f"{flag} is for --executor {' or '.join(users)}, not {name}")
    if name == "ray":
        from .ray_cluster import RayExecutor

        return RayExecutor(**given)
    if name == "slurm":
        from .slurm import SlurmExecutor

        return SlurmExecutor(**given)
    return LocalPool()
