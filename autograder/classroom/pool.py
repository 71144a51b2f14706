"""Worker processes that grade notebooks side by side, and the loop that keeps them busy.

A ``WorkerPool`` hands each task submitted to a worker (a process forked from a server that imported Keras once)
and gives back ``(task, reply)`` as each is settled; ``graded(tasks, …)`` runs a batch's tasks through one, the
site keeps one per assignment across its checks. A worker that dies, hangs past every budget, or answers with a
GPU/driver failure is replaced and its task retried once on a fresh worker; after ``MAX_ATTEMPTS`` the reply says
``infrastructure`` — never the student's zero. Nothing here writes results: the batch's store does.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Callable, Iterator, Self

from ..course import dataset
from ..course.assignment import config_for
from ..course.config import Config, load_config
from ..errors import GraderError
from ..grading.grade import grade_and_keep, regrade_kept
from ..grading.store import RunStore
from ..reports.report import format_table
from ..run.infrastructure import infrastructure_problem

KERNEL_LOG_LIMIT = 1_000_000          # bytes of a kernel's own stdout/stderr kept in the submission's log
# In a task's payload: whether the pool still holds as many tasks as it has workers, so this worker is likely to get
# another (a batch's last notebooks start no kernel that nobody would use). Absent (a node's task): assumed.
MORE_TO_COME = "more_to_come"
STOP_GRACE_S = 10                     # an idle worker's time to stop its warm kernels before it is killed
MAX_ATTEMPTS = 2                      # an infrastructure failure is retried once


# --- the worker side ---------------------------------------------------------------------------------------

def grade_task(task: dict, config: Config, data) -> dict:
    """In a worker: grade one notebook — execute it and keep its run in the store, or, when the task carries a
    stored run (``stored``), run the graders again on that run with no kernel. → {"result": results.json dict,
    "table", "log": text, "infrastructure": ''|why, "run": the new run's manifest (to save) or None}."""
    store = RunStore(Path(task["store"]))
    path = Path(task["path"])
    with tempfile.TemporaryDirectory(prefix="autograder-batch-") as work:
        work = Path(work)
        if task.get("stored"):
            result, manifest = regrade_kept(task["stored"], store, config, data, path.name, work), None
        else:
            from ..run import warm               # the execution machinery: loaded only by a worker that executes

            # its next notebook finds its kernel started and imported — where one is likely to come to it
            warm.keep_warming(config, ahead=task.get(MORE_TO_COME, True))
            pins = {name: Path(p) for name, p in task["pins"].items()}
            result, manifest = grade_and_keep(path, config, task["device"], task["official"], data, store,
                                              task["run_fingerprint"], work, fused=task["fused"], pins=pins)
        kernel_log = work / "artifacts" / "kernel.log"
        log = kernel_log.read_bytes()[-KERNEL_LOG_LIMIT:].decode("utf-8", "replace") if kernel_log.is_file() else ""
    return {"result": result.to_json(), "table": format_table(result), "log": log,
            "infrastructure": infrastructure_problem(result.execution), "run": manifest}


def _worker_main(conn, config_path: str, assignment_id: str, grade_fn, log_path: str, kernel_device: str,
                 snapshot: str | None, slot: int = 0) -> None:
    with open(log_path, "ab") as log:     # TensorFlow's start-up chatter and any crash, off the instructor's screen
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    if kernel_device == "gpu":
        from ..run.device import visible_gpus

        one_gpu_per_slot(slot)
        visible_gpus()                   # hides the GPUs from this process (the graders): they are the kernels'
    config = config_for(load_config(config_path), assignment_id)
    data = dataset.LazyDataset(config, snapshot)
    while True:
        try:
            task = conn.recv()
        except EOFError:                 # the pool stops this worker: its warm kernels go with it (a process
            close_kernels()              # started by multiprocessing leaves by os._exit, past atexit)
            return
        conn.send(reply_for(task, config, data, grade_fn))


def close_kernels() -> None:
    """Stop this process's waiting kernels, their sandboxes, cgroups and folders (where it started any)."""
    warm = sys.modules.get("autograder.run.warm")     # not imported: a worker that only regraded has none
    if warm is not None:
        warm.close_all()


def reply_for(task: dict, config: Config, data, grade_fn) -> dict:
    """``grade_fn``'s reply for one task; a failure of the runner (not of the student's notebook, which is a
    result) becomes an ``infrastructure`` reply, to be retried."""
    try:
        return grade_fn(task, config, data)
    except GraderError as exc:       # the grader says why it cannot (a kernel that would not start, ...)
        return {"infrastructure": str(exc), "log": traceback.format_exc()}
    except Exception:                # the runner failed otherwise (disk full, ...)
        return {"infrastructure": traceback.format_exc(limit=3)[-2000:], "log": traceback.format_exc()}


def one_gpu_per_slot(slot: int) -> None:
    """Where this machine (or a Slurm job) gives several GPUs, worker ``slot`` and its kernels see only one of them,
    in turn: without it every kernel would train on the first GPU. Set before TensorFlow starts CUDA here."""
    gpus = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    if len(gpus) > 1:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]


class Worker:
    """One spawned process and the task it holds, so a lost worker's submission is known and retried."""

    def __init__(self, config: Config, grade_fn, context, log_path: Path, kernel_device: str,
                 snapshot: Path | None = None, slot: int = 0):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, daemon=True,
                                       args=(child, str(config.source), config.assignment.id, grade_fn,
                                             str(log_path), kernel_device, snapshot and str(snapshot), slot))
        self.process.start()
        child.close()
        self.task = None                         # the task it holds (a batch's Task)
        self.payload: dict = {}
        self.started = 0.0

    def assign(self, task, payload: dict) -> None:
        self.task, self.payload, self.started = task, payload, time.monotonic()
        self.conn.send(payload)

    def lost(self) -> str:
        self.process.join(timeout=10)        # its pipe closes a moment before its exit status is known
        return f"worker lost (exit code {self.process.exitcode})"

    def stop(self) -> None:
        """End the process. An idle worker is asked to leave (its pipe closed): it stops its warm kernels, their
        sandboxes and cgroups, and exits without unloading TensorFlow; one that does not within STOP_GRACE_S, or a
        busy one, is killed — losing only its notebook in flight, whose kernel dies with it (bwrap's
        --die-with-parent; ipykernel watches its parent)."""
        if self.task is None and self.process.is_alive():
            self.conn.close()
            self.process.join(timeout=STOP_GRACE_S)
        if self.process.is_alive():
            self.process.kill()
        self.process.join()


# --- the parent side ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PoolKey:
    """What a pool's workers were started with and hold for their whole life (``pool_key``). Pools of equal keys
    are interchangeable; a kept pool whose key is no longer the one a task asks for is stale."""
    settings: tuple                   # ``settings_state``: the files the workers read their settings from
    kernel_device: str
    snapshot: str
    time_limit: int                   # the watchdog's (``task_time_limit``)

    @property
    def assignment(self) -> str:
        return self.settings[1]


def pool_key(config: Config, kernel_device: str, snapshot: Path | None = None) -> PoolKey:
    return PoolKey(settings_state(config), kernel_device, str(snapshot or ""), task_time_limit(config))


def settings_state(config: Config) -> tuple:
    """The settings a worker reads at its start (``_worker_main``): grader_config.py and the assignment's
    settings.py, by path and by their state on disk — an edited file means a new state, so a kept worker never
    goes on with settings that changed under it."""
    return (str(config.source), config.assignment.id, file_state(config.source),
            file_state(config.assignment.settings_path))


def file_state(path) -> tuple[int, int] | None:
    try:
        stat = Path(path).stat()
    except (OSError, TypeError):
        return None
    return stat.st_mtime_ns, stat.st_size


class WorkerPool:
    """``workers`` processes started alike (``pool_key``), fed tasks over time: ``submit`` queues one, ``settled``
    waits for replies. A worker that dies, hangs past ``task_time_limit`` or replies ``infrastructure`` is replaced
    and its task queued again, until ``max_attempts`` failed attempts (each noted in ``task.attempts``); every
    task submitted is settled once, with a reply. A batch uses one for its class (``graded``); the site keeps one
    per assignment across checks, so its worker (and the warm kernel it keeps) is started once, not per check.

    One thread drives a pool (``submit``, ``settled``, ``grade``, ``close``); any thread may ``interrupt`` it."""

    def __init__(self, config: Config, *, workers: int, kernel_device: str, log_path: Path, grade_fn=grade_task,
                 max_attempts: int = MAX_ATTEMPTS, snapshot: Path | None = None):
        context = worker_context()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.key = pool_key(config, kernel_device, snapshot)
        self.max_attempts, self.time_limit = max_attempts, task_time_limit(config)
        self._start = lambda slot: Worker(config, grade_fn, context, log_path, kernel_device, snapshot, slot)
        self._pending: deque = deque()                      # (task, payload) not yet handed to a worker
        self._interrupted = threading.Event()
        self.workers = [self._start(slot) for slot in range(workers)]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def busy(self) -> bool:
        """Whether some task submitted is not settled yet."""
        return bool(self._pending) or any(w.task is not None for w in self.workers)

    @property
    def alive(self) -> bool:
        return not self._interrupted.is_set()

    def submit(self, task, payload: dict) -> None:
        """Queue ``task``; a worker receives ``payload``."""
        self.submit_all([(task, payload)])

    def submit_all(self, tasks: list[tuple[object, dict]]) -> None:
        """Queue each (task, payload) before any is handed out: each worker then knows whether more will follow."""
        self._pending.extend(tasks)
        self._keep_busy()

    def grade(self, task, payload: dict) -> dict:
        """``task`` graded (retried as the pool retries): its reply, once settled. For a caller with one task at
        a time (the site's check runner)."""
        self.submit(task, payload)
        while True:
            for done, reply in self.settled():
                if done is task:
                    return reply

    def settled(self, timeout: float = 5) -> list[tuple[object, dict]]:
        """Wait up to ``timeout`` seconds for a worker to answer, die or run out of time; → the tasks settled
        meanwhile, with their replies (none, when nothing happened yet). The freed workers are given their next
        tasks before this returns, so they work while the caller writes what came back (feedback pages take a
        moment)."""
        busy = [w for w in self.workers if w.task is not None]
        if busy:
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=timeout)
        settled = []
        for i, w in enumerate(self.workers):
            if w.task is None:
                continue
            answer = self._answer_of(w)
            if answer is None:
                continue
            (reply, lost), task, w.task = answer, w.task, None
            if lost:
                w.stop()
                if self.alive:
                    self.workers[i] = self._start(i)
                reply = {"infrastructure": lost, "log": ""}
            if self.alive and another_attempt(task, reply, self.max_attempts):
                self._pending.append((task, w.payload))
                continue
            settled.append((task, reply))
        if not self.alive:                       # interrupted: what was never started is settled unrun
            settled += [(task, {"infrastructure": "the worker pool was stopped", "log": ""})
                        for task, _ in self._pending]
            self._pending.clear()
        self._keep_busy()
        return settled

    def _answer_of(self, w: Worker) -> tuple[dict | None, str] | None:
        """Worker ``w``'s (reply, ''), or (None, why it is lost) when it died or hung; None while it works."""
        if w.conn.poll():
            try:
                return w.conn.recv(), ""
            except (EOFError, OSError):
                return None, w.lost()
        if not w.process.is_alive():
            return None, w.lost()
        if time.monotonic() - w.started > self.time_limit:
            return None, f"no answer from the worker within {self.time_limit} s"
        return None

    def _keep_busy(self) -> None:
        """Each idle worker takes the next task; one that died while idle (between a site's checks) is replaced
        first, its task no attempt lost."""
        for i, w in enumerate(self.workers):
            if w.task is None and self._pending and self.alive:
                if not w.process.is_alive():
                    w.stop()
                    w = self.workers[i] = self._start(i)
                task, payload = self._pending.popleft()
                try:
                    w.assign(task, {**payload, MORE_TO_COME: len(self._pending) >= len(self.workers)})
                except OSError:          # it died this moment: ``settled`` finds it lost, and the task is retried
                    pass

    def interrupt(self) -> None:
        """From any thread (a server stopping): kill the workers and start none again; the driving thread's
        ``settled`` then settles the tasks in flight as not run (``infrastructure``, no retry)."""
        self._interrupted.set()
        for w in self.workers:
            w.process.kill()

    def close(self) -> None:
        """Stop every worker (a task still in flight is lost: call when none is, or when giving up on it)."""
        self._interrupted.set()
        for w in self.workers:
            w.stop()


def graded(tasks: list, config: Config, *, payload: Callable[[object], dict], workers: int, kernel_device: str,
           log_path: Path, grade_fn=grade_task, max_attempts: int = MAX_ATTEMPTS,
           snapshot: Path | None = None) -> Iterator[tuple[object, dict]]:
    """Grade ``tasks`` (each with an ``attempts`` list) on ``workers`` processes (a ``WorkerPool`` for them
    alone); yield ``(task, reply)`` once each is settled. ``payload(task)`` is what a worker receives;
    ``snapshot``: the verified dataset saved by ``dataset.snapshot`` (else each worker loads and verifies it)."""
    if not tasks:
        return
    with WorkerPool(config, workers=min(workers, len(tasks)), kernel_device=kernel_device, log_path=log_path,
                    grade_fn=grade_fn, max_attempts=max_attempts, snapshot=snapshot) as pool:
        pool.submit_all([(task, payload(task)) for task in tasks])
        while pool.busy:
            yield from pool.settled()


def another_attempt(task, reply: dict, max_attempts: int) -> bool:
    """Note a runner's failure (an ``infrastructure`` reply) in ``task.attempts``; → whether the task is to be
    tried again (fewer than ``max_attempts`` failed)."""
    problem = reply.get("infrastructure", "")
    if problem:
        task.attempts.append(problem)
    return bool(problem) and len(task.attempts) < max_attempts


def task_time_limit(config: Config) -> int:
    """How long one notebook may take, everything included, before its worker is given up as lost: the
    notebook's own limit, the harness's before and after it, and a margin."""
    from ..run.execute import HARNESS_TIMEOUT_S  # here: a worker imports this module, and needs no nbclient to regrade

    return config.notebook_timeout_s + 2 * HARNESS_TIMEOUT_S + 600


def worker_context():
    """Workers are forked from a fork server that has imported Keras once (``worker_preload``); never from this
    process, which may hold TensorFlow's device state (``--device auto``). Started at once, it loads in the
    background."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["autograder.classroom.worker_preload"])
    multiprocessing.forkserver.ensure_running()
    return context


def default_workers(kernel_device: str, executing: bool = True) -> int:
    """One kernel per core, and on the CPU one more: each kernel trains on one thread (KERNEL_CPU_THREADS), and
    the extra one keeps the cores busy while another kernel starts, exports or is being graded. Only regrading
    stored runs (no kernels): one worker per core."""
    cores = os.cpu_count() or 1
    return cores + 1 if kernel_device == "cpu" and executing else cores
