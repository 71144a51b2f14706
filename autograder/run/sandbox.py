"""Run a student's kernel inside bubblewrap (bwrap), so that untrusted notebook code cannot read the hidden
graders, other submissions or the grader's home, cannot reach the network, and cannot outlive its kernel.

What the kernel sees: /usr (with /bin, /lib… as in the host), a short list of harmless /etc files, the Python
prefix and site-packages in use, a fresh /proc and minimal /dev (plus /dev/nvidia*, /dev/dri and a read-only
/sys when a GPU is there), a private /tmp, the workdir (read-write, its cwd and HOME) and the spec's extra binds.
Everything else, the grader's repo included, does not exist in there. bwrap mounts in the order given, so the
private /tmp comes before every bind: a venv made in /tmp, and the workdir, stay visible on top of it.
Namespaces: user (with every capability dropped), net (loopback only), pid, ipc, uts and cgroup. Its environment
is cut down to ``KEEP_ENV``.

Findings that shaped this (Linux 6.18, root, cgroup v1, bwrap 0.8; those on the cgroups themselves, why
processes and memory are capped by them, are in ``cgroups.py``):
* Run by root, bwrap leaves the sandbox every capability (CapEff ffff…) unless it also unshares the user
  namespace; with ``--unshare-user --cap-drop ALL`` they are all zero. The sandbox still is uid 0 outside, so
  root-only files (0600) in what is bound stay readable: that is why /etc is narrowed to a list.
* RLIMIT_AS is not used: TF on the CPU maps 2.6 GB of address space for 0.65 GB resident, and CUDA reserves far
  more.
* Memory without a writable cgroup: RLIMIT_DATA is the fallback: TensorFlow (CPU) trains under it (VmData ≈
  0.45 GB after a small fit), and an allocation beyond it fails with MemoryError in that one process. Untried on
  a GPU, where the cgroup is the safer of the two.
* The cgroups are joined by a ``sh`` that then execs bwrap (``JOIN``), so no process of the sandbox starts
  outside them. Where no hierarchy is writable, no process cap applies; the pid namespace with --die-with-parent
  still ends every process of the sandbox once the kernel or bwrap dies.
* Interrupts: jupyter_client's signal mode sends SIGINT to bwrap's process group, which bwrap does not pass on
  (it dies, and the kernel with it); the kernel also is in its own session (--new-session). The kernelspec is
  therefore given ``interrupt_mode="message"``: ipykernel's control thread gets the request and signals itself.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import shutil
import site
import subprocess
import sys
import tempfile
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path

from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

from ..errors import GraderError, meaningful_lines
from . import cgroups

NAMESPACES = ("--unshare-user", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
              "--unshare-cgroup-try")
ETC = ("alternatives", "ca-certificates", "fonts", "gai.conf", "group", "host.conf", "hosts", "ld.so.cache",
       "ld.so.conf", "ld.so.conf.d", "locale.alias", "localtime", "mime.types", "nsswitch.conf", "os-release",
       "passwd", "protocols", "services", "ssl/certs", "timezone")
KEEP_ENV = ("CUDA_", "KERAS_", "LANG", "LC_", "LD_LIBRARY_PATH", "MKL_", "MPLBACKEND", "NCCL_", "NVIDIA_", "OMP_",
            "OPENBLAS_", "PYTHON", "TF_", "TZ", "XLA_")
DROP_ENV = ("TF_CLI_", "TF_TOKEN_", "TF_VAR_")   # Terraform's, not TensorFlow's: they may hold credentials
# joins the cgroups named before "--", sets RLIMIT_DATA (KiB, 0: none), then execs the rest (bwrap)
JOIN = ('d=$1; shift; while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; '
        '[ "$d" = 0 ] || ulimit -d "$d" || exit 125; exec "$@"')
SOCKET_PATH_MAX = 100                        # a unix socket path must fit in 108 bytes


# what a kernel imports first (ipykernel_launcher → kernelapp, which pulls in zmq, tornado and IPython) and the
# compiled library every notebook uses; TensorFlow would make the probe take seconds
PROBE_CODE = "import ipykernel.kernelapp, numpy"
PROBE_TIMEOUT_S = 60
NO_BWRAP = "bubblewrap (bwrap) is not installed (apt-get install bubblewrap)"

UNSANDBOXED_WARNING = (
    "WARNING: the sandbox cannot run here ({why}): students' notebooks run WITHOUT a sandbox — with network "
    "access, the grader's files in reach, and no memory or process limits. Fix that, or set SANDBOX = 'require' "
    "in grader_config.py to refuse to grade without it.")


def warn_unsandboxed(why: str) -> None:
    """Say it loudly, with the reason, once per process."""
    if not getattr(warn_unsandboxed, "said", False):
        warn_unsandboxed.said = True
        print(UNSANDBOXED_WARNING.format(why=why), file=sys.stderr, flush=True)


# Set by `serve` for itself and every process it starts (check workers, staff jobs): whatever SANDBOX says, a kernel
# there runs in the sandbox or not at all (the site runs strangers' code next to its own key and data).
SITE_REQUIRES_SANDBOX = "AUTOGRADER_SITE_REQUIRES_SANDBOX"
USERNS_SETTINGS = (("user.max_user_namespaces", "/proc/sys/user/max_user_namespaces", 0),
                   ("kernel.unprivileged_userns_clone", "/proc/sys/kernel/unprivileged_userns_clone", 0),
                   ("kernel.apparmor_restrict_unprivileged_userns",
                    "/proc/sys/kernel/apparmor_restrict_unprivileged_userns", 1))
USERNS_HELP = ("bwrap needs unprivileged user namespaces: on the host, user.max_user_namespaces > 0 and (Debian) "
               "kernel.unprivileged_userns_clone = 1, or (Ubuntu 24.04) kernel.apparmor_restrict_unprivileged_userns"
               " = 0 or an AppArmor profile that lets bwrap create them")


def mode(configured: str) -> str:
    """The sandbox mode in force: SANDBOX as configured, unless this process works for the site (``require``)."""
    return "require" if os.environ.get(SITE_REQUIRES_SANDBOX) == "1" else configured


def userns_hint(where: str = "this host", advice: str = "") -> str:
    """Which host setting keeps bwrap from creating namespaces, where one visibly does (with ``advice``, what to do
    about it there), else ''."""
    for setting, path, blocking in USERNS_SETTINGS:
        with contextlib.suppress(OSError, ValueError):
            if int(Path(path).read_text()) == blocking:
                return f" ({where} has {setting} = {blocking}: bwrap needs unprivileged user namespaces{advice})"
    return ""


def require(configured: str, warn: bool = True) -> None:
    """Stop before grading when the configuration (or the site: ``mode``) requires the sandbox and it cannot run
    here; under "auto", say loudly that it is missing (``warn``: official grading; a student's self-check runs
    their own code)."""
    wanted = mode(configured)
    if wanted == "off" or sandbox_available():
        return
    if wanted == "require":
        why = "the submission site runs students' notebooks only in the sandbox" if wanted != configured else \
            "SANDBOX = 'require' in grader_config.py"
        reason = unsandboxed_reason()
        hint = userns_hint() or (f" ({USERNS_HELP})" if "namespace" in reason.lower() else "")
        raise GraderError(f"{why}, but the sandbox cannot run here: {reason}{hint}")
    if warn:
        warn_unsandboxed(unsandboxed_reason())


def refuse_exposed_workdirs(*private: Path) -> None:
    """A kernel's workdir (in the temporary folder) is bound into its sandbox with the folder around it in reach
    of nothing else; GraderError where that folder lies inside one of ``private`` (the site's data, the project),
    since a later bind or a failing layer would then show them."""
    tmp = Path(tempfile.gettempdir()).resolve()
    for folder in private:
        folder = Path(folder).resolve()
        if tmp == folder or folder in tmp.parents:
            raise GraderError(f"the temporary folder {tmp}, where kernels work, is inside {folder}: point TMPDIR "
                              "elsewhere (e.g. /tmp)")


def bwrap_path() -> str | None:
    """Where bwrap is (Debian package ``bubblewrap``), or None: the caller then runs without a sandbox."""
    return shutil.which("bwrap")


def sandbox_available() -> bool:
    """Whether a kernel can start in the sandbox here (the probe, once per process)."""
    return not sandbox_problem()


def unsandboxed_reason() -> str:
    """Why kernels run without the sandbox, for messages and results: the probe's reason (a generic one where
    ``sandbox_available`` was overridden, as tests do)."""
    return sandbox_problem() or ("bubblewrap (bwrap) is missing or may not create namespaces here "
                                 "(apt-get install bubblewrap)")


@functools.cache
def sandbox_problem() -> str:
    """Why a kernel cannot start in the sandbox here, or '' when it can. The probe starts what a kernel starts:
    this interpreter (the kernel's: see ``sandboxed_kernel_manager``) and its first imports, under the same bwrap
    command line as a real kernel (same binds, a temporary workdir, readable file and writable folder, the
    kernel's environment). A bind that hides the interpreter, or namespaces a container forbids, are thus found
    once, before grading, with bwrap's or Python's own words."""
    if bwrap_path() is None:
        return NO_BWRAP
    with tempfile.TemporaryDirectory(prefix="autograder-probe-") as tmp:
        spec = SandboxSpec(Path(tmp, "work"), readable=(Path(tmp, "data"),), writable=(Path(tmp, "out"),))
        for folder in (spec.workdir, *spec.writable):
            folder.mkdir()
        spec.readable[0].write_bytes(b"")
        argv = bwrap_argv(spec, [sys.executable, "-c", PROBE_CODE])
        try:
            done = subprocess.run(argv, capture_output=True, timeout=PROBE_TIMEOUT_S, env=kernel_environ(os.environ))
        except subprocess.TimeoutExpired:
            return f"{sys.executable} did not start inside bwrap within {PROBE_TIMEOUT_S} s"
        except OSError as exc:
            return f"bwrap could not be run: {exc}"
    if done.returncode == 0:
        return ""
    said = meaningful_lines(done.stderr.decode("utf-8", "replace"))
    return f"{sys.executable} does not start inside bwrap: " + (said[0] if said else f"exit status {done.returncode}")


def kernel_environ(env) -> dict[str, str]:
    """The part of ``env`` a sandboxed kernel gets: the grader's secrets (tokens…) stay outside."""
    return {k: v for k, v in env.items() if k.startswith(KEEP_ENV) and not k.startswith(DROP_ENV)}


@dataclass(frozen=True)
class SandboxSpec:
    workdir: Path                            # read-write; the kernel's cwd and HOME; holds .runtime/ (sockets)
    readable: tuple[Path, ...] = ()          # extra read-only binds (a dataset's pinned files, harness code)
    writable: tuple[Path, ...] = ()          # extra read-write binds (the artifacts folder)
    max_processes: int | None = None         # tasks (threads count too: TensorFlow starts dozens)
    max_memory_bytes: int | None = None


def python_dirs() -> list[str]:
    """The interpreter's prefixes and site-packages (never sys.path as a whole: it may hold the repo)."""
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *site.getsitepackages()}
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        dirs.add(site.getusersitepackages())
    dirs = sorted({p for d in dirs if os.path.isdir(d) for p in bind_paths(d)})
    return [d for d in dirs if not any(d.startswith(p + os.sep) for p in dirs)]


def bind_paths(path) -> list[str]:
    """Where ``path`` must appear inside: as named and, when a link is on the way (/tmp → /private/tmp, a home on
    another disk), also where it really is, since both names are used (the kernel opens the npz by its name;
    the venv's python links into the real prefix)."""
    named = os.path.abspath(path)
    return list(dict.fromkeys([named, os.path.realpath(named)]))


def _binds(option: str, path) -> list[str]:
    """``option`` (--bind, --ro-bind) of ``path`` at each of its ``bind_paths``."""
    real = os.path.realpath(path)
    return [arg for dest in bind_paths(path) for arg in (option, real, dest)]


def bwrap_argv(spec: SandboxSpec, kernel_argv: list[str]) -> list[str]:
    """bwrap's command line for ``kernel_argv``: what the kernel may see, and nothing else. bwrap mounts in order,
    a later mount hiding what lies beneath it, so /proc, /dev and the private /tmp come first, then the binds
    (Python, the workdir and the spec's files may all live under /tmp)."""
    work = str(spec.workdir.resolve())
    argv = [bwrap_path() or "bwrap", *NAMESPACES, "--cap-drop", "ALL", "--die-with-parent", "--new-session",
            "--unsetenv", "JPY_PARENT_PID", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
            "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for name in ETC:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for path in python_dirs():
        argv += ["--ro-bind", path, path]
    gpu = sorted(glob.glob("/dev/nvidia*")) + glob.glob("/dev/dri")
    for dev in gpu:                          # CUDA's libraries come with site-packages/nvidia or /usr
        argv += ["--dev-bind", dev, dev]
    if gpu:
        argv += ["--ro-bind", "/sys", "/sys"]    # the driver and NVML read PCI topology there (untested here)
    for path in spec.readable:
        argv += _binds("--ro-bind", path)
    argv += _binds("--bind", spec.workdir)
    for path in spec.writable:
        argv += _binds("--bind", path)
    argv += ["--setenv", "HOME", work, "--setenv", "TMPDIR", "/tmp",
             "--setenv", "PATH", f"{sys.prefix}/bin:/usr/local/bin:/usr/bin:/bin", "--chdir", work, "--"]
    return argv + list(kernel_argv)


class SandboxKernelManager(AsyncKernelManager):
    """An AsyncKernelManager whose kernelspec is fixed (bwrap-wrapped) and that removes its cgroups at cleanup.
    ``limits`` says how each asked-for limit is enforced; ``limit_hits()`` what they stopped."""

    sandbox_spec: KernelSpec
    cgroups: dict[str, Path]
    limits: dict[str, str]

    @property
    def kernel_spec(self):
        return self.sandbox_spec

    def limit_hits(self) -> dict[str, int]:
        hits = getattr(self, "_hits", None)
        if hits is not None:
            return hits
        return cgroups.limit_hits(self.cgroups)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        kw["env"] = kernel_environ(kw.get("env") or os.environ)
        await super()._async_launch_kernel(kernel_cmd, **kw)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart and self.cgroups:
            self._hits = self.limit_hits()
            cgroups.remove_cgroups(self.cgroups.values())
            self.cgroups = {}

    cleanup_resources = _async_cleanup_resources


def sandboxed_kernel_manager(spec: SandboxSpec, kernel_name: str = "python3") -> SandboxKernelManager | None:
    """A kernel manager (ipc transport, files in ``workdir/.runtime``) whose kernel runs in bwrap, or None when
    bwrap cannot run here. Pass it to nbclient as ``km=`` and execute with ``cleanup_kc=True`` (nbclient does
    not shut down a kernel manager it was given otherwise)."""
    if not sandbox_available():
        return None
    runtime = spec.workdir.resolve() / ".runtime"
    runtime.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    if len(f"{runtime}/k-{tag}-99999") > SOCKET_PATH_MAX:
        raise ValueError(f"workdir path too long for unix sockets: {runtime}")
    base = KernelSpecManager().get_kernel_spec(kernel_name)
    inner = list(base.argv)
    if inner and inner[0] in ("python", "python3", f"python3.{sys.version_info[1]}"):
        inner[0] = sys.executable            # as jupyter_client does, which it can't once bwrap is argv[0]
    wanted = {k: v for k, v in (("pids", spec.max_processes), ("memory", spec.max_memory_bytes)) if v}
    groups = cgroups.make_cgroups(f"autograder-{tag}", wanted)
    data_kib = spec.max_memory_bytes // 1024 if spec.max_memory_bytes and "memory" not in groups else 0
    argv = bwrap_argv(spec, inner)
    if groups or data_kib:
        argv = ["/bin/sh", "-c", JOIN, "sandbox-join", str(data_kib),
                *[str(g / "cgroup.procs") for g in dict.fromkeys(groups.values())], "--", *argv]
    km = SandboxKernelManager(kernel_name=kernel_name, transport="ipc", ip=f"{runtime}/k-{tag}",
                              connection_file=f"{runtime}/k-{tag}.json")
    km.sandbox_spec = KernelSpec(argv=argv, env=base.env, display_name=base.display_name,
                                 language=base.language, interrupt_mode="message", metadata=base.metadata,
                                 resource_dir=base.resource_dir)
    km.cgroups = groups
    km.limits = {ctl: (f"cgroup {groups[ctl]}" if ctl in groups
                       else "RLIMIT_DATA (per process)" if ctl == "memory" and data_kib
                       else "not enforced: no writable cgroup") for ctl in wanted}
    weakref.finalize(km, cgroups.remove_cgroups, list(groups.values()))
    return km
