"""Grading on a Ray cluster: one Ray task per submission, results written as they arrive.

Each task asks Ray for one CPU and, for GPU kernels, ``1/K`` of a GPU (``KERNELS_PER_GPU`` = K kernels share a
GPU, each taking memory as it needs: ``TF_FORCE_GPU_ALLOW_GROWTH``); Ray sets ``CUDA_VISIBLE_DEVICES`` for the
task, and its kernel sees only that GPU. The task grades in a plain subprocess that its Ray worker keeps for the
tasks it runs in turn (``node.GradingProcess``): no fork server inside a Ray worker. Two kinds of runner failure,
one retry in all (``MAX_ATTEMPTS``):
* a lost Ray worker or node: Ray itself runs the task again (``max_retries``); each start leaves a file in the
  batch's shared folder, so the result records how many attempts it took;
* an infrastructure reply (the grading process lost, a GPU that failed, a node that cannot grade): the driver
  submits the task again, as the local pool does.
``ray`` is not in the base install: ``pip install -r requirements-cluster.txt``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import uuid
from collections import deque
from pathlib import Path
from typing import Iterator

from ...course.config import Config
from ...errors import GraderError
from ...run.device import resolve_device
from ..pool import MAX_ATTEMPTS, another_attempt
from . import Executor
from .node import NodeSetup, failure_text, grade_in_subprocess, setup_for, shared_scratch, shipped

STARTED_DIR = "started"            # in the batch's shared folder: one file per start of a task (Ray's retries too)
WAIT_S = 2.0                       # how often the driver looks up from waiting (Ctrl-C, the progress bar)


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise GraderError("--executor ray needs Ray, which the base install leaves out: "
                          "pip install -r requirements-cluster.txt") from exc
    return ray


RAY_LOG_LINE = re.compile(r"^\[[^]]*\] \S+:\d+: (?P<said>.+)$")     # [time W pid tid] gcs_client.cc:210: …


def token_auth_when_available() -> None:
    """Token authentication on for ``--address`` when this machine holds a token and RAY_AUTH_MODE is unset.

    Ray (2.60) turns token authentication on by default: ``ray start --head`` uses it once a token exists
    (~/.ray/auth_token, which any local ``ray.init()`` writes), and a driver that finds a local cluster by itself
    does too — but a driver given an explicit address never does, and the head then refuses it
    (``InvalidAuthToken``). This is Ray's own rule for the cluster it finds, applied to the one named (it also
    refreshes the settings Ray read at import). A head without authentication still accepts the token."""
    try:
        from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available
    except ImportError:                           # another Ray: it decides as it does
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


@contextlib.contextmanager
def native_stderr_watched():
    """→ a list that, after the block, holds what native code wrote on file descriptor 2 meanwhile, when that is
    a file (the command's log): Ray's C++ client says why it cannot connect only there, as it retries."""
    said: list[str] = []
    try:
        start = os.fstat(2).st_size if stat.S_ISREG(os.fstat(2).st_mode) else None
    except OSError:
        start = None
    try:
        yield said
    finally:
        if start is not None:
            with contextlib.suppress(OSError), open("/proc/self/fd/2", "rb") as log:
                log.seek(start)
                said.extend(log.read(1_000_000).decode("utf-8", "replace").splitlines())


def ray_said(lines: list[str]) -> str:
    """Ray's own last word on a failed connection (its C++ log lines, deduplicated), with what to do for the one
    a user meets most: the head wants a token the driver did not send."""
    messages = [m.group("said").strip() for m in map(RAY_LOG_LINE.match, lines) if m]
    if not messages:
        return ""
    text = f"; Ray said: {messages[-1][:400]}"
    if "InvalidAuthToken" in messages[-1] or "Unauthenticated" in messages[-1]:
        text += ("\n  the cluster uses token authentication: give this machine its token (copy the head's "
                 "~/.ray/auth_token here, or set RAY_AUTH_TOKEN) and RAY_AUTH_MODE=token")
    return text


def run_on_node(payload: dict, setup: NodeSetup, started: str) -> dict:
    """The Ray task: note this start (Ray may run a task again after losing its worker), then grade."""
    Path(started).mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        (Path(started) / uuid.uuid4().hex).touch()
    return grade_in_subprocess(payload, setup)


class RayExecutor(Executor):
    def __init__(self, address: str | None = None, kernels_per_gpu: int | None = None):
        self.address, self.kernels_per_gpu = address, kernels_per_gpu
        if kernels_per_gpu is not None and kernels_per_gpu < 1:
            raise GraderError(f"--kernels-per-gpu must be at least 1, got {kernels_per_gpu}")

    def prepare(self, config: Config) -> None:
        """Connect to the cluster (``--address``, else $RAY_ADDRESS or the one `ray start` left on this machine,
        else a local one), once per process. The sandbox is checked on each node, not here."""
        ray = import_ray()
        self.kernels_per_gpu = self.kernels_per_gpu or config.kernels_per_gpu
        if ray.is_initialized():
            return
        if self.address:
            token_auth_when_available()
        with native_stderr_watched() as said:
            try:
                ray.init(address=self.address, logging_level=logging.ERROR, log_to_driver=False,
                         include_dashboard=False if not self.address else None)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                failure = exc
            else:
                return
        raise GraderError(f"cannot connect to the Ray cluster {self.address or '(local)'}: {failure_text(failure)}"
                          f"{ray_said(said)}") from failure

    def resources(self) -> dict:
        return import_ray().cluster_resources()

    def resolve_device(self, requested: str, config: Config) -> tuple[str, bool]:
        """GPU kernels when the cluster has GPUs (its nodes' logical resources, as Ray counts them)."""
        gpus = int(self.resources().get("GPU", 0))
        if requested == "gpu" and not gpus:
            raise GraderError(f"--device gpu: the Ray cluster has no GPU (its resources: {self._resources_text()}); "
                              "start its GPU nodes with `ray start --num-gpus N`")
        return resolve_device(requested, config, ["ray"] * gpus)

    def _resources_text(self) -> str:
        resources = self.resources()
        return ", ".join(f"{k} {resources[k]:g}" for k in ("CPU", "GPU") if k in resources) or "none"

    def default_workers(self, kernel_device: str, executing: bool) -> int:
        """Kernels that can run at once across the cluster, as its resources allow (Ray schedules them)."""
        resources = self.resources()
        cpus = int(resources.get("CPU", 1))
        if kernel_device == "gpu":
            return max(1, min(cpus, int(resources.get("GPU", 0) * self.kernels_per_gpu)))
        return max(1, cpus)

    def scratch(self, out: Path):
        return shared_scratch(out)

    def describe(self, workers: int, kernel_device: str) -> str:
        shared = f", {self.kernels_per_gpu} kernels per GPU" if kernel_device == "gpu" else ""
        return f"Ray ({self._resources_text()}; up to {workers} at once{shared})"

    def graded(self, tasks: list, config: Config, *, scratch: Path, payload, workers: int, kernel_device: str,
               log_path: Path, grade_fn, snapshot: Path | None = None,
               max_attempts: int = MAX_ATTEMPTS) -> Iterator[tuple[object, dict]]:
        if not tasks:
            return
        ray = import_ray()
        setup = setup_for(config, scratch, grade_fn=grade_fn, kernel_device=kernel_device, snapshot=snapshot,
                          log_path=log_path)
        env = {"PYTHONPATH": os.pathsep.join(setup.python_path)}
        remote = ray.remote(run_on_node).options(
            num_cpus=1, num_gpus=1 / self.kernels_per_gpu if kernel_device == "gpu" else 0,
            max_retries=max_attempts - 1, retry_exceptions=False, runtime_env={"env_vars": env})
        keys = {id(task): f"{i:05d}" for i, task in enumerate(tasks)}
        pending, in_flight = deque(tasks), {}
        window = workers              # notebooks graded at once, as --workers means for the pool (default: what
                                      # the cluster runs at once); the object store holds only their bytes

        def started(task) -> Path:
            return scratch / STARTED_DIR / f"{keys[id(task)]}.{len(task.attempts)}"

        def submit() -> None:
            while pending and len(in_flight) < window:
                task = pending.popleft()
                in_flight[remote.remote(shipped(payload(task)), setup, str(started(task)))] = task

        try:
            while pending or in_flight:
                submit()
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=WAIT_S)
                for ref in ready:
                    task = in_flight.pop(ref)
                    starts = len(list(started(task).glob("*")))     # none: Ray never started it
                    try:
                        reply = ray.get(ref)
                    except ray.exceptions.RayError as exc:      # lost again after Ray's retry, cancelled, …
                        reply = {"infrastructure": f"Ray: {failure_text(exc)}", "log": ""}
                    task.attempts.extend(["Ray worker lost: Ray ran the task again"] * max(0, starts - 1))
                    if another_attempt(task, reply, max_attempts):
                        pending.appendleft(task)
                        continue
                    yield task, reply
        finally:
            for ref in in_flight:            # a driver stopped (Ctrl-C, an error) takes its tasks with it
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
