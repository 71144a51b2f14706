"""The bwrap sandbox for student kernels: what the kernel can see and reach, interrupts, death and limits."""

from __future__ import annotations

import ast
import os
import re
import shutil
import site
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from autograder.errors import GraderError
from autograder.run import cgroups, sandbox, warm
from autograder.run.sandbox import SandboxSpec, bwrap_argv, sandbox_available, sandboxed_kernel_manager

REPO = Path(__file__).resolve().parents[1]
HIDDEN_GRADER = REPO / "reference" / "assignment3" / "graders" / "test_assignment3.py"
needs_bwrap = pytest.mark.skipif(not sandbox_available(),
                                 reason="bubblewrap (bwrap) is not installed or may not create namespaces here "
                                        "(apt-get install -y bubblewrap)")


def run(workdir: Path, *sources: str, timeout: int = 60, env: dict | None = None, km=None, **spec):
    """Run ``sources`` as cells in a sandboxed kernel; return (outputs of each cell, kernel manager, error)."""
    km = km or sandboxed_kernel_manager(SandboxSpec(workdir, **spec))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    client = NotebookClient(nb, km=km, timeout=timeout, interrupt_on_timeout=True, allow_errors=True,
                            resources={"metadata": {"path": str(workdir)}})
    error = None
    try:
        client.execute(cleanup_kc=True, **({"env": env} if env else {}))
    except DeadKernelError as exc:
        error = exc
    return [cell.outputs for cell in nb.cells], km, error


def text(outputs) -> str:
    return "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")


def value(outputs):
    """The cell printed one Python literal: read it back."""
    return ast.literal_eval(text(outputs).strip())


@pytest.fixture
def short_tmp():
    """A folder with a short path: the kernel's sockets live under its workdir, and a unix socket's path has ~100
    bytes (pytest's own tmp_path grows past that under pytest-xdist's per-worker folders)."""
    folder = Path(tempfile.mkdtemp(prefix="sbx-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def workdir(short_tmp):
    work = short_tmp / "work"
    work.mkdir()
    return work


def python_dirs_in_the_repo() -> list[str]:
    """The interpreter's folders inside the checkout: README's venv (.venv) when the tests run in it, else none."""
    return [d for d in sandbox.python_dirs() if d.startswith(f"{REPO}/")]


def test_argv_binds_python_but_not_the_repo(tmp_path):
    argv = bwrap_argv(SandboxSpec(tmp_path, readable=(tmp_path / "data.npz",)), ["python", "-m", "x"])
    sources = {argv[i + 1] for i, a in enumerate(argv) if a in ("--bind", "--ro-bind", "--ro-bind-try")}
    assert not any(s == str(REPO) or str(REPO).startswith(s + "/") for s in sources)     # nor a folder above it
    inside = [s for s in sources if s.startswith(f"{REPO}/")]
    assert inside == [s for s in inside if any(s == d or s.startswith(f"{d}/") for d in python_dirs_in_the_repo())]
    assert "/" not in sources and "/etc" not in sources and "/root" not in sources
    assert any(d in sources for d in sandbox.python_dirs())
    assert argv[-3:] == ["python", "-m", "x"] and "--unshare-net" in argv and "--unshare-user" in argv


BINDS = ("--bind", "--ro-bind", "--ro-bind-try", "--dev-bind")


def test_the_private_tmp_is_mounted_before_every_bind(tmp_path):
    """bwrap mounts in order: a bind made before ``--tmpfs /tmp`` under /tmp (a venv, the workdir) would vanish."""
    argv = bwrap_argv(SandboxSpec(tmp_path / "work", readable=(tmp_path / "data.npz",), writable=(tmp_path / "out",)),
                      ["python"])
    tmpfs = argv.index("--tmpfs")
    assert argv[tmpfs + 1] == "/tmp" and argv.index("--proc") < tmpfs and argv.index("--dev") < tmpfs
    assert all(i > tmpfs for i, a in enumerate(argv) if a in BINDS + ("--symlink",))


def test_paths_reached_through_a_link_are_bound_under_both_names(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    argv = bwrap_argv(SandboxSpec(tmp_path / "real" / "work", readable=(tmp_path / "link" / "data.npz",)), ["python"])
    binds = {(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a in BINDS}
    real, named = str(tmp_path / "real" / "data.npz"), str(tmp_path / "link" / "data.npz")
    assert {(real, real), (real, named)} <= binds


@needs_bwrap
def test_a_kernel_opens_files_by_the_name_that_goes_through_a_link(short_tmp):
    """The harness hands the kernel paths as named (/tmp/… where /tmp may be a link): they must work inside."""
    (short_tmp / "real" / "work").mkdir(parents=True)
    (short_tmp / "link").symlink_to(short_tmp / "real")
    (short_tmp / "real" / "data.txt").write_text("pinned")
    named = short_tmp / "link" / "data.txt"
    cells, _, error = run(short_tmp / "link" / "work", f"print(repr(open({str(named)!r}).read()))", readable=(named,))
    assert error is None and value(cells[0]) == "pinned"


def test_unavailable_sandbox_gives_no_manager(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "sandbox_available", lambda: False)
    assert sandboxed_kernel_manager(SandboxSpec(tmp_path)) is None


@needs_bwrap
def test_kernel_sees_only_its_workdir_and_no_network(workdir):
    other = workdir.parent / "other-student"
    other.mkdir()
    (other / "answer.ipynb").write_text("{}")
    data = workdir.parent / "data.txt"
    data.write_text("pinned")
    bound = [Path(d) for d in sandbox.python_dirs()]
    home = list(Path.home().iterdir()) if Path.home().is_dir() else []
    private = [str(p) for p in home if not any(p == b or p in b.parents for b in bound)]   # ~/.bashrc…
    cells, km, error = run(
        workdir,
        "import os; open('made-inside.txt', 'w').write('hi'); print(repr(os.getcwd()))",
        "def probe(path):\n"
        "    try:\n        open(path).read(); return 'read'\n"
        "    except Exception as e:\n        return type(e).__name__\n"
        f"print(repr([probe(p) for p in ({str(HIDDEN_GRADER)!r}, {str(other / 'answer.ipynb')!r}, '/etc/shadow')]))",
        f"print(repr(([p for p in {private!r} if os.path.lexists(p)], os.path.exists({str(REPO)!r}) and"
        f" sorted(os.listdir({str(REPO)!r})), os.path.exists({str(other)!r}), open({str(data)!r}).read())))",
        "import errno, socket\n"
        "def connect(addr):\n"
        "    try:\n        socket.create_connection(addr, timeout=3); return 'connected'\n"
        "    except OSError as e:\n        return errno.errorcode.get(e.errno, type(e).__name__)\n"
        "print(repr(([connect(('1.1.1.1', 53)), connect(('8.8.8.8', 443))], [n for _, n in socket.if_nameindex()])))",
        "print(repr(sorted(k for k in os.environ if 'SECRET' in k)))",
        env={"AUTOGRADER_SECRET_TOKEN": "x", "PYTHONHASHSEED": "0"},
        readable=(data,))
    assert error is None
    assert value(cells[0]) == str(workdir.resolve())
    assert (workdir / "made-inside.txt").read_text() == "hi"
    assert value(cells[1]) == ["FileNotFoundError"] * 3
    # nothing of the grader's home, nor of the repo: at most the venv README makes in it (.venv), which holds Python
    venv_in_repo = sorted({Path(d).relative_to(REPO).parts[0] for d in python_dirs_in_the_repo()}) or False
    assert value(cells[2]) == ([], venv_in_repo, False, "pinned")
    attempts, interfaces = value(cells[3])
    assert attempts == ["ENETUNREACH"] * 2 and interfaces == ["lo"]
    assert value(cells[4]) == []


@needs_bwrap
def test_tensorflow_imports_inside(workdir):
    cells, _, error = run(workdir, "import tensorflow as tf; print(repr(tf.__version__))", timeout=120,
                          env={"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "-1"})
    assert error is None and value(cells[0])


@needs_bwrap
def test_timeout_interrupts_the_cell_and_the_kernel_goes_on(workdir):
    started = time.monotonic()
    cells, _, error = run(workdir, "while True: pass", "print('after')", timeout=3)
    assert error is None
    assert [o.ename for o in cells[0] if o.output_type == "error"] == ["KeyboardInterrupt"]
    assert text(cells[1]) == "after\n"
    assert time.monotonic() - started < 30


def leftovers(marker: str) -> str:
    return subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True).stdout.strip()


@needs_bwrap
def test_kernel_exit_is_a_dead_kernel_and_leaves_no_process(workdir):
    marker = f"sandbox-marker-{uuid.uuid4().hex}"
    cells, km, error = run(
        workdir,
        "import subprocess, os\n"
        f"p = subprocess.Popen(['python', '-c', 'import time; time.sleep(600)', {marker!r}], start_new_session=True)\n"
        "import time; time.sleep(0.5); print(repr(p.poll()))",
        "os._exit(0)",
        "print('never')")
    assert isinstance(error, DeadKernelError)
    assert value(cells[0]) is None                         # the child was running (in its own session)
    for _ in range(50):
        if not leftovers(marker):
            break
        time.sleep(0.1)
    assert leftovers(marker) == ""
    assert km.cgroups == {}                  # removed at cleanup


@needs_bwrap
def test_fork_loop_is_stopped(workdir):
    km = sandboxed_kernel_manager(SandboxSpec(workdir, max_processes=64))
    if "pids" not in km.cgroups:
        pytest.skip(f"no process limit on this machine: {km.limits['pids']}")
    cells, km, error = run(
        workdir,
        "import os, time\nforks = 0\n"
        "try:\n"
        "    while forks < 500:\n"
        "        if os.fork() == 0:\n            time.sleep(2); os._exit(0)\n"
        "        forks += 1\n"
        "except OSError as e:\n    print(repr((forks, e.errno)))",
        "print('alive')",
        km=km)
    assert error is None
    forks, errno = value(cells[0])
    assert forks < 64 and errno == 11                      # EAGAIN
    assert text(cells[1]) == "alive\n"
    assert km.limit_hits()["forks_refused"] > 0


@needs_bwrap
def test_memory_hog_is_stopped(workdir):
    cells, km, error = run(
        workdir,
        "hog = []\n"
        "try:\n"
        "    for _ in range(200):\n        hog.append(bytearray(10 << 20))\n"
        "except MemoryError:\n    print('MemoryError')\n"
        "print(len(hog))",
        max_memory_bytes=300 << 20)
    if "cgroup" in km.limits["memory"]:
        assert isinstance(error, DeadKernelError)          # the OOM killer took the kernel
        assert km.limit_hits()["oom_kills"] >= 1
    else:                                                  # RLIMIT_DATA: the allocation fails in the kernel
        assert error is None and text(cells[0]).startswith("MemoryError")


@needs_bwrap
def test_without_cgroups_memory_falls_back_to_rlimit_data(workdir, monkeypatch):
    monkeypatch.setattr(cgroups, "make_cgroups", lambda name, limits: {})
    cells, km, error = run(
        workdir, "try:\n    hog = bytearray(600 << 20)\nexcept MemoryError:\n    print('MemoryError')",
        "print('alive')", max_memory_bytes=300 << 20, max_processes=64)
    assert km.limits == {"pids": "not enforced: no writable cgroup", "memory": "RLIMIT_DATA (per process)"}
    assert error is None and text(cells[0]) == "MemoryError\n" and text(cells[1]) == "alive\n"


def test_without_bwrap_require_refuses_and_auto_warns_loudly(monkeypatch, capsys):
    from autograder.errors import GraderError

    monkeypatch.setattr(sandbox, "sandbox_available", lambda: False)
    with pytest.raises(GraderError, match="SANDBOX = 'require'.*apt-get install bubblewrap"):
        sandbox.require("require")
    monkeypatch.setattr(sandbox.warn_unsandboxed, "said", False, raising=False)
    sandbox.require("auto")
    assert "WITHOUT a sandbox" in capsys.readouterr().err
    sandbox.require("auto")
    sandbox.require("off")
    assert capsys.readouterr().err == ""                  # once per process, and never when switched off


@pytest.fixture
def fresh_probe(monkeypatch):
    """The sandbox probe runs again inside the test, its warning not yet said; after it, the real probe runs anew."""
    sandbox.sandbox_problem.cache_clear()
    monkeypatch.setattr(sandbox.warn_unsandboxed, "said", False, raising=False)
    yield
    sandbox.sandbox_problem.cache_clear()


@needs_bwrap
def test_the_probe_says_why_a_kernel_cannot_start_and_every_report_carries_it(monkeypatch, tmp_path, fresh_probe,
                                                                               capsys, config):
    missing = tmp_path / "no-such-python"
    monkeypatch.setattr(sys, "executable", str(missing))
    why = sandbox.sandbox_problem()
    assert why == f"{missing} does not start inside bwrap: bwrap: execvp {missing}: No such file or directory"
    assert not sandbox_available() and sandboxed_kernel_manager(SandboxSpec(tmp_path)) is None
    with pytest.raises(GraderError, match=re.escape(f"SANDBOX = 'require' in grader_config.py, but the sandbox "
                                                    f"cannot run here: {why}")):
        sandbox.require("require")
    sandbox.require("auto")
    sandbox.require("auto")
    err = capsys.readouterr().err
    assert err.count("WITHOUT a sandbox") == 1 and f"({why})" in err          # said once, with the reason
    _, record = warm.kernel_manager(warm.Recipe.of(config, "cpu"), tmp_path)
    assert record == f"none: {why}"


@needs_bwrap
def test_the_probe_imports_what_a_kernel_imports(monkeypatch, fresh_probe):
    monkeypatch.setattr(sandbox, "PROBE_CODE", "import ipykernel.kernelapp, no_such_module_for_the_probe")
    assert sandbox.sandbox_problem() == (f"{sys.executable} does not start inside bwrap: ModuleNotFoundError: "
                                         "No module named 'no_such_module_for_the_probe'")


def test_without_bwrap_the_probe_says_to_install_it(monkeypatch, fresh_probe):
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    assert sandbox.sandbox_problem() == "bubblewrap (bwrap) is not installed (apt-get install bubblewrap)"
    with pytest.raises(GraderError, match=r"cannot run here: bubblewrap \(bwrap\) is not installed"):
        sandbox.require("require")


VENV_KERNEL = """
import sys, tempfile
from pathlib import Path
import nbformat
from nbclient import NotebookClient
from autograder.run import sandbox

assert sandbox.sandbox_problem() == "", sandbox.sandbox_problem()
with tempfile.TemporaryDirectory() as tmp:
    km = sandbox.sandboxed_kernel_manager(sandbox.SandboxSpec(Path(tmp)))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.prefix)")])
    NotebookClient(nb, km=km, timeout=60, resources={"metadata": {"path": tmp}}).execute(cleanup_kc=True)
    print(nb.cells[0].outputs[0].text.strip())
"""


@needs_bwrap
def test_a_venv_in_the_system_temp_directory_runs_sandboxed_kernels():
    """A venv made in /tmp (CI, a quick trial) lives where the sandbox mounts its private /tmp."""
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="autograder-venv-") as tmp:
        venv = Path(tmp, "venv")
        in_a_venv = sys.prefix != sys.base_prefix          # README's .venv: its packages are not the base's
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv),
                        *([] if in_a_venv else ["--system-site-packages"])], check=True, timeout=120)
        if in_a_venv:        # the new venv gets this one's packages: its site-packages (in /tmp) links to them
            packages = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
            packages.rmdir()
            packages.symlink_to(next(p for p in site.getsitepackages() if p.startswith(f"{sys.prefix}/")))
        run = subprocess.run([str(venv / "bin" / "python"), "-c", VENV_KERNEL], cwd=REPO, capture_output=True,
                             text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.strip().splitlines()[-1] == str(venv)        # the kernel ran the venv's interpreter
