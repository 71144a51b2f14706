"""Durable file writes, shared by every stage: a reader (a student's browser, the next batch, the site) sees a file
whole — the old one or the new one, never half of it."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: str | bytes, durable: bool = False) -> Path:
    """Write via a temporary file in the same folder and rename: a reader sees the old file or the new one.
    ``durable``: flushed to the disk (file and folder) before this returns — for what a receipt promises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)      # mkstemp makes 0600; results and published pages are for others to read
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_folder(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def fsync_folder(folder: Path) -> None:
    """Make a folder's entries (files written or renamed into it) durable: POSIX asks for the folder's own fsync."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, data, indent: int = 2) -> Path:
    """``data`` as UTF-8 JSON (non-ASCII kept readable), written atomically."""
    return write_atomic(path, json.dumps(data, ensure_ascii=False, indent=indent) + "\n")
