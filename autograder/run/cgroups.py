"""One job: the sandbox's process and memory limits as cgroups — made, read for what they stopped, removed.

Each controller gets a fresh child of the cgroup this process is in, where that is writable; the sandbox joins
the children before it starts bwrap (``sandbox.JOIN``). Where none can be made, ``make_cgroups`` answers {} and
the sandbox falls back as its own docstring says.

Findings that shaped this (Linux 6.18, root, cgroup v1):
* RLIMIT_NPROC cannot cap the sandbox: the kernel skips the check for tasks whose real uid is global root,
  even inside a user namespace (``prlimit --nproc=50`` + bwrap: 200 forks went through; the same loop as uid
  65534 stopped at 49). A cgroup ``pids.max`` does stop it (and counts threads).
* Memory: a cgroup limit (v1 ``memory.limit_in_bytes`` / v2 ``memory.max``) makes the kernel's OOM killer kill
  the kernel, which nbclient reports as a dead kernel.
* The cgroups are made as children of the grader's own cgroups (and joined by a ``sh`` that then execs bwrap:
  see ``sandbox.py``).
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from pathlib import Path


def _cgroup_mounts() -> dict[str, tuple[str, str]]:
    """controller ("" for cgroup2) -> (root inside the hierarchy, mount point)."""
    mounts: dict[str, tuple[str, str]] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if tail and tail[0] in ("cgroup", "cgroup2"):
            for key in ([""] if tail[0] == "cgroup2" else tail[2].split(",")):
                mounts.setdefault(key, (fields[3], fields[4]))
    return mounts


def make_cgroups(name: str, limits: dict[str, int]) -> dict[str, Path]:
    """Make cgroup ``name`` for each of ``limits`` ("pids", "memory") and set the limit; those that cannot be
    made are absent from the answer."""
    try:
        mounts, lines = _cgroup_mounts(), Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return {}
    made: dict[str, Path] = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for ctl in (controllers.split(",") if controllers else list(limits)):
            key = ctl if controllers else ""
            if ctl not in limits or ctl in made or key not in mounts:
                continue
            root, mount = mounts[key]
            rel = os.path.relpath(path, root)
            if rel.startswith(".."):
                continue
            group = Path(mount, rel, name)
            sweep_stale(group.parent)
            try:
                group.mkdir(exist_ok=True)
                if ctl == "pids":
                    (group / "pids.max").write_text(str(limits[ctl]))
                elif (group / "memory.max").exists():                   # v2
                    (group / "memory.max").write_text(str(limits[ctl]))
                    if (group / "memory.swap.max").exists():
                        (group / "memory.swap.max").write_text("0")
                else:                                                   # v1
                    (group / "memory.limit_in_bytes").write_text(str(limits[ctl]))
                    if (group / "memory.memsw.limit_in_bytes").exists():
                        (group / "memory.memsw.limit_in_bytes").write_text(str(limits[ctl]))
                made[ctl] = group
            except OSError:
                if group not in made.values():
                    remove_cgroups([group])
    return made


STALE_AFTER_S = 3600


def sweep_stale(parent: Path) -> None:
    """Remove our empty cgroups left by a grader that was killed (SIGKILL runs no clean-up), once they are an hour
    old: a fresh one may be a moment from being joined."""
    for group in parent.glob("autograder-*"):
        try:
            if time.time() - group.stat().st_mtime > STALE_AFTER_S and not (group / "cgroup.procs").read_text().strip():
                group.rmdir()
        except OSError:
            pass


@functools.cache
def cgroup_limits_available() -> bool:
    """Whether both kernel-level limits (memory and process count, as cgroups) can be set here."""
    made = make_cgroups(f"autograder-probe-{uuid.uuid4().hex[:8]}", {"pids": 64, "memory": 2**30})
    remove_cgroups(made.values())
    return set(made) == {"pids", "memory"}


def remove_cgroups(groups) -> None:
    """Remove each of ``groups`` (once, in order), waiting briefly while the processes of a killed sandbox leave."""
    for group in dict.fromkeys(groups):
        for _ in range(50):                  # a killed sandbox takes a moment to leave
            try:
                group.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)


def _counter(path: Path, key: str) -> int:
    """The value of ``key`` in a cgroup's events file ("key value" lines), 0 where the file or key is missing:
    v1 and v2 name their counters differently, and a hierarchy may lack either."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def limit_hits(groups: dict[str, Path]) -> dict[str, int]:
    """What the limits stopped, from the cgroups' own counters: forks refused at ``pids.max`` and OOM kills (v2
    ``memory.events``, v1 ``memory.oom_control``; the larger, as only one of them exists). Read before the
    cgroups are removed."""
    pids, mem = groups.get("pids"), groups.get("memory")
    return {"forks_refused": _counter(pids / "pids.events", "max") if pids else 0,
            "oom_kills": max(_counter(mem / "memory.events", "oom_kill"),
                             _counter(mem / "memory.oom_control", "oom_kill")) if mem else 0}
