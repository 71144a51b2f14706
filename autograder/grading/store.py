"""A batch's output folder: written by the parent process alone, each file atomically, a student's files the moment
their result is known — so killing a batch loses at most the notebooks in flight, and rerunning it finds what is
already done.

    out/results/<student>.json   the result (with the fingerprints of what produced it)
    out/logs/<student>.log       what happened: the submission chosen, attempts, the grader's table, kernel output
    out/feedback/<student>.html  the student's page
    out/store/                   each run's artifacts, kept for regrading (``RunStore``)
    out/gradebook.csv, summary.html, summary.png   the class files, rewritten at the end of every run
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..course.dataset import sha256_of as sha256_file
from ..files import write_atomic, write_json
from .result import Result

SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")


def file_stem(student_id: str) -> str:
    """A file name for a student's outputs: the id itself when it is safe, else a stable hash of it."""
    if SAFE_ID.fullmatch(student_id) and ".." not in student_id:
        return student_id
    return "student-" + hashlib.sha256(student_id.encode()).hexdigest()[:12]


class ResultStore:
    def __init__(self, out: Path):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self.out)
        self.runs = RunStore(self.out / STORE)

    def result_path(self, file_stem: str) -> Path:
        return self.out / "results" / f"{file_stem}.json"

    def feedback_path(self, file_stem: str) -> Path:
        return self.out / "feedback" / f"{file_stem}.html"

    def previous(self, file_stem: str) -> Result | None:
        """The result stored for a student by an earlier run, if it can be read."""
        return read_result(self.result_path(file_stem))

    def save(self, file_stem: str, result: Result, log: str) -> None:
        """The log first, then the result: a result on disk always has its log."""
        write_atomic(self.out / "logs" / f"{file_stem}.log", log)
        write_json(self.result_path(file_stem), result.to_json())

    def save_feedback(self, file_stem: str, page: str) -> None:
        write_atomic(self.feedback_path(file_stem), page)

    def save_class_files(self, files: dict[str, str | bytes]) -> None:
        for name, content in files.items():
            write_atomic(self.out / name, content)


def is_class_folder(folder: Path) -> bool:
    """Whether ``folder`` is one assignment's class output (what a batch writes), not a folder of them."""
    return (Path(folder) / "gradebook.csv").is_file() or (Path(folder) / "results").is_dir()


def holds_class_folders(folder: Path) -> bool:
    """Whether ``folder`` is a class's folder or the folder of the course's grades (a class in one of its
    subfolders): one notebook's results are never written into either."""
    folder = Path(folder)
    return is_class_folder(folder) or (folder.is_dir() and any(
        is_class_folder(child) for child in folder.iterdir() if child.is_dir()))


def read_result(path: Path) -> Result | None:
    """A result written earlier (results.json, results/<student>.json), or None where there is none readable; one
    written by a newer autograder is refused (``ResultSchemaError``), never taken for none and overwritten."""
    try:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return Result.from_json(result) if isinstance(result, dict) else None


def remove_leftovers(out: Path) -> None:
    """Temporary files of a batch that was killed mid-write (``write_atomic`` names them ``.name.*.tmp``)."""
    patterns = (".*.tmp", "*/.*.tmp", f"{STORE}/runs/.*.tmp", f"{STORE}/objects/*/.*.tmp")
    for leftover in [path for pattern in patterns for path in out.glob(pattern)]:
        leftover.unlink(missing_ok=True)


# --- the runs kept for regrading ---------------------------------------------------------------------------------

STORE = "store"
OBJECT_MODE = 0o444


class RunStore:
    """``out/store/``: what each run of a notebook produced, kept so that changed graders can judge it again without
    executing anything.

        store/objects/<ab>/<sha256>     a file's bytes, stored once however many runs hold it (most students'
                                        x_train is the same 376 MB), read-only
        store/runs/<run fingerprint>.json   the manifest: which object is which file, the execution record

    Objects are written by the worker that ran the notebook (content-addressed, atomically: two writers of one
    object write the same bytes); manifests by the batch's own process, before the result that names them. The
    files stay untrusted data (the graders read them as they read a fresh run's: .npy without pickles, Keras's safe
    mode), and no kernel's sandbox can see this folder. A manifest whose object is missing or fails its digest is
    not used: the notebook is executed again.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self._verified: dict[str, str] = {}          # object digest → '' (sound) or what is wrong with it

    def object_path(self, digest: str) -> Path:
        return self.root / "objects" / digest[:2] / digest

    def manifest_path(self, fingerprint: str) -> Path:
        return self.root / "runs" / f"{fingerprint}.json"

    # --- writing (the worker keeps the files, the batch the manifest) ------------------------------------------
    def keep(self, files: dict[str, Path], fingerprint: str, facts: dict) -> dict:
        """Store ``files`` (name → path; those missing are skipped) as objects; → the run's manifest, not yet saved
        (``save``). ``facts``: what else the manifest holds (the device, the execution record)."""
        kept = {}
        for name, path in files.items():
            if not path.is_file() or path.is_symlink():
                continue
            digest, size = sha256_file(path), path.stat().st_size
            target = self.object_path(digest)
            if not (target.is_file() and sha256_file(target) == digest):
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{digest[:12]}.", suffix=".tmp")
                os.close(fd)
                try:
                    shutil.copyfile(path, tmp)
                    os.chmod(tmp, OBJECT_MODE)
                    os.replace(tmp, target)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            kept[name] = {"sha256": digest, "size": size}
        return {"run_fingerprint": fingerprint, "files": kept, **facts}

    def save(self, manifest: dict) -> None:
        write_json(self.manifest_path(manifest["run_fingerprint"]), manifest, indent=1)

    # --- reading -----------------------------------------------------------------------------------------------
    def find(self, fingerprint: str) -> tuple[dict | None, str]:
        """→ (the run's manifest, '') when every file it names is present and sound; (None, '') when no run is
        stored under ``fingerprint``; (None, what is wrong) when one is, but cannot be trusted — its broken
        objects are removed, so that the next run stores them afresh."""
        path = self.manifest_path(fingerprint)
        if not path.exists():
            return None, ""
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            files = manifest["files"]
            assert manifest["run_fingerprint"] == fingerprint and isinstance(files, dict)
            assert isinstance(manifest.get("run"), dict)
            assert all(plain_name(n) and len(str(f["sha256"])) == 64 for n, f in files.items())
        except (OSError, ValueError, KeyError, TypeError, AssertionError):
            return None, f"its manifest {path.name} cannot be read"
        for name, entry in files.items():
            problem = self._check_object(entry["sha256"], entry.get("size"))
            if problem:
                return None, f"{name} {problem}"
        return manifest, ""

    def find_first(self, fingerprints) -> tuple[dict | None, str]:
        """The first of ``fingerprints`` whose run is stored and sound: → (its manifest, ''), or (None, what was
        wrong with a stored one, or '')."""
        problems = []
        for fingerprint in fingerprints:
            manifest, problem = self.find(fingerprint)
            if manifest:
                return manifest, ""
            problems.append(problem)
        return None, "; ".join(filter(None, problems))

    def _check_object(self, digest: str, size) -> str:
        if digest not in self._verified:
            target = self.object_path(digest)
            if not target.is_file():
                problem = "is missing from the store"
            elif target.stat().st_size != size or sha256_file(target) != digest:
                problem = "failed its SHA-256 check"
                target.unlink(missing_ok=True)
            else:
                problem = ""
            self._verified[digest] = problem
        return self._verified[digest]

    def restore(self, manifest: dict, into: Path) -> dict[str, Path]:
        """Lay a run's files out under ``into`` as the kernel left them (hard links where the filesystem allows,
        else copies); → name → path."""
        into = Path(into)
        into.mkdir(parents=True, exist_ok=True)
        laid = {}
        for name, entry in manifest["files"].items():
            if not plain_name(name):
                continue
            source, target = self.object_path(entry["sha256"]), into / name
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
            laid[name] = target
        return laid

    # --- upkeep ------------------------------------------------------------------------------------------------
    def manifests(self) -> dict[str, dict]:
        """Every readable manifest: run fingerprint → manifest."""
        found = {}
        for path in sorted((self.root / "runs").glob("*.json")):
            try:
                found[path.stem] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
        return found

    def objects(self) -> dict[str, int]:
        """Every object on disk: digest → size."""
        return {p.name: p.stat().st_size for p in (self.root / "objects").glob("*/*")
                if p.is_file() and not p.name.startswith(".")}

    def usage(self, referenced: set[str]) -> StoreUsage:
        manifests, objects = self.manifests(), self.objects()
        logical = sum(int(f.get("size", 0)) for m in manifests.values() for f in m.get("files", {}).values())
        counts = Counter(f["sha256"] for m in manifests.values() for f in m.get("files", {}).values())
        shared = {d: (n, objects.get(d, 0)) for d, n in counts.items() if n > 1}
        return StoreUsage(runs=len(manifests), referenced=len(set(manifests) & referenced), objects=len(objects),
                          disk_bytes=sum(objects.values()), logical_bytes=logical, shared=shared)

    def collect_garbage(self, referenced: set[str]) -> tuple[int, int, int]:
        """Remove the runs no result refers to, then the objects no remaining run holds, and leftovers of killed
        writes; → (runs removed, objects removed, bytes freed)."""
        manifests = self.manifests()
        runs = 0
        for fingerprint in set(manifests) - referenced:
            self.manifest_path(fingerprint).unlink(missing_ok=True)
            del manifests[fingerprint]
            runs += 1
        held = {f["sha256"] for m in manifests.values() for f in m.get("files", {}).values()}
        removed = freed = 0
        for path in list((self.root / "objects").glob("*/*")) + list((self.root / "runs").glob(".*.tmp")):
            if path.name not in held:
                freed += path.stat().st_size
                path.unlink()
                removed += not path.name.endswith(".tmp")
        return runs, removed, freed


@dataclass
class StoreUsage:
    runs: int                      # manifests in the store
    referenced: int                # of them, runs some result names
    objects: int
    disk_bytes: int                # what the objects take
    logical_bytes: int             # what the runs' files would take stored one copy per run
    shared: dict = field(default_factory=dict)   # object digest → (runs holding it, its size), if held by several


def plain_name(name) -> bool:
    """A file name with no folder part (a manifest names files, never paths)."""
    return isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name and "\\" not in name


def referenced_runs(out: Path) -> set[str]:
    """The run fingerprints the results in ``out`` name (a class's results/*.json, or one notebook's
    results.json)."""
    found = set()
    for path in [Path(out) / "results.json", *sorted((Path(out) / "results").glob("*.json"))]:
        result = read_result(path)
        if result and result.provenance.run_fingerprint:
            found.add(result.provenance.run_fingerprint)
    return found


def find_run_stores(out: Path) -> list[tuple[RunStore, set[str]]]:
    """(the store, the runs its results refer to) for ``out`` — a folder `grade … --out` wrote — or for each such
    folder under it (a course's grades/<assignment>/, and grades/single/<notebook>/)."""
    out = Path(out)
    folders = [out] if (out / STORE).is_dir() else sorted(p.parent for pattern in (f"*/{STORE}", f"*/*/{STORE}")
                                                          for p in out.glob(pattern) if p.is_dir())
    if not folders:
        from ..errors import GraderError

        raise GraderError(f"no stored runs under {out}: give the folder that `grade … --out DIR` wrote (it holds "
                          f"{STORE}/), or a folder of such folders")
    return [(RunStore(folder / STORE), referenced_runs(folder)) for folder in folders]
