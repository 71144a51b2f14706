"""Kernels started ahead of time: each in its own sandbox, TensorFlow and Keras already imported, used for exactly one
notebook and then destroyed with its sandbox.

Starting a kernel and importing TensorFlow in it costs seconds of every notebook's time; a kernel kept between
students would leak one student's state (modules, a patched ``Model.fit``, files, environment) into the next. So a
process that grades notebooks one after another (a batch's worker, the site's check worker, a cluster node) keeps
``WARM_KERNELS`` kernels warming: the kernel process imports on its own CPU while this one grades, and when a
notebook arrives it gets a kernel that is ready. Whatever a notebook does dies with its kernel; the next notebook's
kernel was started from nothing, as a cold one is.

Cold and warm kernels go the same way — start, run ``WARMUP`` (imports only, no names left behind), then the
notebook — so a notebook computes the same numbers on either: a cold kernel is one that was started when the
notebook arrived, and waited for. Each kernel's folder (workdir, artifacts, the dataset's pinned files) is its own,
bound into its sandbox when it starts; the dataset's files are put there when the notebook arrives, so a warm
kernel serves any assignment of the course.

A pool belongs to one thread (jupyter_client's async kernel managers live on the thread's event loop).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from queue import Empty

from jupyter_client import AsyncKernelManager
from jupyter_client.blocking import BlockingKernelClient
from jupyter_core.utils import run_sync

from ..course.config import Config
from ..errors import KernelStartError, meaningful_lines
from . import sandbox

# Run in the fresh kernel before anything else, warm or cold: the imports every notebook of the course makes, in a
# throwaway namespace (nothing is defined in the student's; a forgotten `import numpy` still fails as in Colab).
WARMUP = ("exec(compile('import importlib\\n'\n"
          "             'for name in (\"numpy\", \"tensorflow\", \"keras\", \"matplotlib.pyplot\"):\\n'\n"
          "             '    try: importlib.import_module(name)\\n'\n"
          "             '    except ImportError: pass', '<autograder-warmup>', 'exec'), {})")
START_TIMEOUT_S = 300             # a kernel's start and imports (seconds on a quiet machine; minutes on a loaded one)
DIED = "Kernel died before replying to kernel_info"   # nbclient's words for a kernel that never answered
KERNEL_WORDS_LIMIT = 180          # characters of the kernel's last output in a KernelStartError
                                  # (the whole message fits a batch's 300-character reason)


@dataclass(frozen=True)
class Recipe:
    """What a kernel is started with: two kernels of one recipe are interchangeable."""
    device: str                    # "cpu" or "gpu"
    sandbox: str                   # SANDBOX as configured (in force: sandbox.mode, "require" for the site)
    seed: int                      # PYTHONHASHSEED is set when the process starts
    cpu_threads: int
    max_processes: int
    memory_limit_mb: int

    @classmethod
    def of(cls, config: Config, device: str) -> Recipe:
        return cls(device, config.sandbox, config.seed, config.kernel_cpu_threads,
                   config.max_processes, config.memory_limit_mb)

    def env(self, workdir: Path) -> dict[str, str]:
        """The kernel's environment (the sandbox passes on only its ``KEEP_ENV`` part)."""
        env = dict(os.environ)
        env.update(PYTHONHASHSEED=str(self.seed), TF_CPP_MIN_LOG_LEVEL="2",
                   KERAS_HOME=str(workdir / ".keras"),           # nothing lands in the runner's ~/.keras
                   TF_FORCE_GPU_ALLOW_GROWTH="true")             # kernels sharing a GPU take memory as they need it
        if self.device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = "-1"
            if self.cpu_threads:                                 # TensorFlow's thread pools (and OpenMP's, if any)
                threads = str(self.cpu_threads)
                env.update(TF_NUM_INTRAOP_THREADS=threads, TF_NUM_INTEROP_THREADS=threads, OMP_NUM_THREADS=threads)
        return env


@dataclass
class Kernel:
    """One kernel and its folder: ``work`` (cwd and HOME), ``artifacts`` (where the harness exports), ``pins`` (the
    dataset's files, read-only inside), ``log`` (the kernel's own stdout and stderr)."""
    recipe: Recipe
    folder: Path
    km: AsyncKernelManager
    sandbox: str                                 # how it is isolated, for the execution record
    launched: float                              # time.monotonic() at its start
    warmup_id: str = ""
    client: BlockingKernelClient | None = None
    ready_s: float | None = None                 # seconds from its start to the end of WARMUP
    warmup_error: str = ""

    @property
    def work(self) -> Path:
        return self.folder / "work"

    @property
    def artifacts(self) -> Path:
        return self.folder / "artifacts"

    @property
    def pins(self) -> Path:
        return self.folder / "pins"

    @property
    def log(self) -> Path:
        return self.folder / "kernel.log"

    def alive(self) -> bool:
        process = getattr(self.km.provisioner, "process", None)
        return process is not None and process.poll() is None

    def exit_status(self) -> int | None:
        process = getattr(self.km.provisioner, "process", None)
        return process.poll() if process is not None else None

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Wait for WARMUP's reply; KernelStartError when the kernel dies or does not answer within ``timeout``.
        An error inside WARMUP (a module that fails to import) is kept in ``warmup_error``: the notebook meets it."""
        if self.ready_s is not None:
            return
        until = time.monotonic() + timeout
        while True:
            try:
                msg = self.client.get_shell_msg(timeout=0.2)
            except Empty:
                if not self.alive():
                    raise KernelStartError(DIED) from None
                if time.monotonic() > until:
                    raise KernelStartError(f"Kernel did not finish starting within {timeout:g} s") from None
                continue
            if msg["parent_header"].get("msg_id") == self.warmup_id:
                break
        content = msg.get("content", {})
        if content.get("status") != "ok":
            self.warmup_error = f"{content.get('ename', 'error')}: {content.get('evalue', '')}"[:300]
        self.ready_s = round(time.monotonic() - self.launched, 2)
        self.client.stop_channels()
        self.client = None

    def destroy(self) -> None:
        """Stop the kernel (if it still runs), remove its cgroups and its folder."""
        if self.client is not None:
            self.client.stop_channels()
            self.client = None
        with contextlib.suppress(Exception):
            if self.km.has_kernel:
                run_sync(self.km.shutdown_kernel)(now=True)
        with contextlib.suppress(Exception):
            run_sync(self.km.cleanup_resources)()
        shutil.rmtree(self.folder, ignore_errors=True)


def launch(recipe: Recipe) -> Kernel:
    """Start a kernel for ``recipe`` in its own folder and sandbox, and send it WARMUP (it imports on its own)."""
    folder = Path(tempfile.mkdtemp(prefix="autograder-kernel-"))
    for name in ("work", "artifacts", "pins"):
        (folder / name).mkdir()
    try:
        km, isolated = kernel_manager(recipe, folder)
        kernel = Kernel(recipe, folder, km, isolated, time.monotonic())
        with open(kernel.log, "ab") as log:         # the kernel writes to its own copy of the file
            run_sync(km.start_kernel)(env=recipe.env(kernel.work), cwd=str(kernel.work), stdout=log, stderr=log)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    client = BlockingKernelClient()
    client.load_connection_info(km.get_connection_info())
    client.start_channels(iopub=False, stdin=False, hb=False, control=False)
    kernel.client = client
    kernel.warmup_id = client.execute(WARMUP, silent=True, store_history=False)
    return kernel


def kernel_manager(recipe: Recipe, folder: Path) -> tuple[AsyncKernelManager, str]:
    """→ (the kernel manager: sandboxed, or jupyter_client's own where the sandbox is off or cannot run; a line
    saying how the kernel is isolated)."""
    if sandbox.mode(recipe.sandbox) == "off":
        return AsyncKernelManager(kernel_name="python3"), "none (SANDBOX = 'off' in grader_config.py)"
    spec = sandbox.SandboxSpec(folder / "work", readable=(folder / "pins",), writable=(folder / "artifacts",),
                               max_processes=recipe.max_processes,
                               max_memory_bytes=recipe.memory_limit_mb * 2**20)
    km = sandbox.sandboxed_kernel_manager(spec)
    if km is None:
        if sandbox.mode(recipe.sandbox) == "require":
            sandbox.require(recipe.sandbox)   # GraderError: where the sandbox is required, no kernel starts without
        return AsyncKernelManager(kernel_name="python3"), f"none: {sandbox.unsandboxed_reason()}"
    limits = "; ".join(f"{name}: {'cgroup' if how.startswith('cgroup ') else how}" for name, how in km.limits.items())
    return km, f"bwrap: no network, own filesystem view; {limits}"


@dataclass(frozen=True)
class Start:
    """How a notebook's kernel came to be, for its execution record."""
    how: str                      # "warm" (started ahead, before the notebook arrived) or "cold"
    note: str                     # why it was cold ('' when warm)
    ready_s: float                # the kernel's start and imports
    waited_s: float               # how long the notebook waited for them

    @property
    def saved_s(self) -> float:
        return round(max(0.0, self.ready_s - self.waited_s), 2) if self.how == "warm" else 0.0


class KernelPool:
    """The warm kernels of one thread: ``take`` gives the notebook a kernel (warm if one is there, else started
    now); ``size`` kernels are kept warming behind it (0: none, every kernel cold)."""

    def __init__(self):
        self.size = 0
        self.waiting: list[Kernel] = []

    def take(self, recipe: Recipe) -> tuple[Kernel, Start]:
        asked = time.monotonic()
        note = ("no warm kernel was ready" if self.size
                else "no kernel had been started ahead (a worker's first notebook or its last ones, WARM_KERNELS = 0, "
                     "or a command grading one notebook)")
        for kernel in [k for k in self.waiting if k.recipe == recipe]:
            self.waiting.remove(kernel)
            try:
                kernel.wait_ready()
            except KernelStartError as exc:
                note = f"the warm kernel could not be used ({exc}; exit status {kernel.exit_status()})"
                kernel.destroy()
                continue
            if kernel.warmup_error or not kernel.alive():
                note = (f"the warm kernel failed its imports ({kernel.warmup_error})" if kernel.warmup_error
                        else f"the warm kernel died while waiting (exit status {kernel.exit_status()})")
                kernel.destroy()
                continue
            self.refill(recipe)
            return kernel, Start("warm", "", kernel.ready_s, round(time.monotonic() - asked, 2))
        kernel = launch(recipe)
        self.refill(recipe)                              # the next one starts behind this one
        try:
            kernel.wait_ready()
        except KernelStartError as exc:
            error = start_error(exc, kernel.log)
            kernel.destroy()
            raise error from None
        return kernel, Start("cold", note, kernel.ready_s, kernel.ready_s)

    def refill(self, recipe: Recipe) -> None:
        """Replace dead waiting kernels and start new ones until ``size`` of ``recipe`` are warming."""
        for kernel in [k for k in self.waiting if not k.alive()]:
            self.waiting.remove(kernel)
            kernel.destroy()
        while sum(k.recipe == recipe for k in self.waiting) < self.size:
            self.waiting.append(launch(recipe))

    def prewarm(self, recipe: Recipe) -> None:
        """Start one kernel now, even where none is kept warming: a command that grades one notebook lets it start
        and import while it prepares (reads the dataset, checks the graders)."""
        if not any(k.recipe == recipe for k in self.waiting):
            self.waiting.append(launch(recipe))

    def close(self) -> None:
        while self.waiting:
            self.waiting.pop().destroy()


def start_error(exc: Exception, kernel_log: Path) -> KernelStartError:
    """The error for a kernel that failed before the student's first cell: what went wrong (nbclient's words,
    \"Kernel died before replying to kernel_info\") and the kernel's own last lines in its log (bwrap's, Python's)."""
    text = kernel_log.read_bytes().decode("utf-8", "replace") if kernel_log.is_file() else ""
    words = " | ".join(meaningful_lines(text)[-3:])
    if len(words) > KERNEL_WORDS_LIMIT:
        words = "…" + words[-(KERNEL_WORDS_LIMIT - 1):]
    said = f"; its last output: {words}" if words else "; it wrote nothing"
    what = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:100]
    return KernelStartError(f"the notebook's kernel could not start: {what}{said}")


_local = threading.local()
_pools: weakref.WeakSet = weakref.WeakSet()


def pool() -> KernelPool:
    """This thread's pool."""
    if not hasattr(_local, "pool"):
        _local.pool = KernelPool()
        _pools.add(_local.pool)
    return _local.pool


def prewarm(config: Config, device: str) -> None:
    """Start this thread's next kernel now, while the caller prepares the notebook's grading."""
    pool().prewarm(Recipe.of(config, device))


def keep_warming(config: Config, ahead: bool = True) -> None:
    """From now on keep WARM_KERNELS kernels warming in this thread behind each one taken: for a process that grades
    one notebook after another (a class's worker, the site's check worker, a cluster node). ``ahead`` False: start
    none behind the next one taken (no notebook is likely to follow it)."""
    pool().size = config.warm_kernels if ahead else 0


def keep_warm(config: Config, device: str) -> None:
    """``keep_warming``, the kernels started now."""
    keep_warming(config)
    pool().refill(Recipe.of(config, device))


@atexit.register
def close_all() -> None:
    """Every thread's waiting kernels, stopped (at exit; a worker told to stop)."""
    for each in list(_pools):
        each.close()
