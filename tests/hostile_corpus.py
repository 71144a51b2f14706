"""A corpus of hostile and broken submissions, each with the status and the explanation it must end with.

Written at test time (a 200 MB notebook is not kept in the repository) as an LMS export: one .zip with a CSV
manifest, so that the zip's own hostile entries (a path leaving the export) are part of the same batch.
Code scenarios carry no training unless they must (the forgeries train the 2-epoch short course).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
from classroom import answer

from autograder import PROJECT_ROOT

HIDDEN_GRADER = PROJECT_ROOT / "reference" / "assignment3" / "graders" / "test_assignment3.py"
SUBMITTED_AT = "2024-05-15 21:00"


@dataclass(frozen=True)
class Case:
    student: str
    file: str
    data: bytes
    status: str                      # expected gradebook status
    says: str                        # expected in the row's detail or the result's notes
    failing: frozenset | None = None  # for graded forgeries: exactly these checks fail
    clean_run: bool = False          # no cell may fail (the probe found nothing to read or reach)


def notebook(*sources: str, **metadata) -> bytes:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata.update(metadata or {"kernelspec": {"name": "python3", "language": "python",
                                                   "display_name": "Python 3"}})
    return nbformat.writes(nb).encode("utf-8")


def leak_probe(paths: list[str], folders: tuple[str, ...] = ()) -> str:
    """Tries to read each path and list each folder; any success raises LEAKED (which would show in the result's
    notes)."""
    return (f"leaked = []\nfor path in {paths!r}:\n"
            "    try:\n        leaked.append(open(path, 'rb').read(80))\n"
            "    except OSError:\n        pass\n"
            f"import os\nfor folder in ('/work', '/root/.ssh', '/home', *{folders!r}):\n"
            "    if os.path.isdir(folder) and os.listdir(folder):\n        leaked.append(folder)\n"
            "if leaked:\n    raise RuntimeError(f'LEAKED {leaked!r}')\nprint('nothing readable')")


FORGER = """
import json, os, keras, numpy as np
keras.Model.count_params = lambda self: 25450          # monkeypatched Keras
np.argmax = lambda *args, **kwargs: 2                    # monkeypatched NumPy
result.history['val_accuracy'][-1] = 0.99                # forged history
test2 = np.asarray(y_test, dtype='float32')              # the labels as predictions
fake = {"score": 12, "max_score": 12, "status": "graded", "tests": []}
print(json.dumps(fake))                                   # fake results in the output
for folder in ('.', os.path.expanduser('~'), '/tmp'):
    for name in ('results.json', 'gradebook.csv', 'kernel_record.json'):
        with open(os.path.join(folder, name), 'w') as f:
            f.write(json.dumps(fake))
"""

PLANT_LINKS = """
import os
mounts = open('/proc/self/mountinfo').read().split('\\n')
points = [line.split()[4] for line in mounts if line.strip()]
targets = [p for p in points if os.path.isdir(p) and os.access(p, os.W_OK) and 'autograder' in p
           and not os.getcwd().startswith(p) and p != '/tmp']   # the export folder, bound writable
for folder in targets:
    for name in ('x_train.npy', 'model.keras', 'kernel_record.json', 'kernel.log'):
        path = os.path.join(folder, name)
        if os.path.lexists(path):
            os.remove(path)
        os.symlink(%r, path)
if not targets:
    raise RuntimeError('the artifacts folder was not found')
os._exit(0)                                           # leave before the harness can export over the links
"""


def forged_answer() -> bytes:
    nb = nbformat.reads(answer(), as_version=4)
    for cell in nb.cells:
        cell.source = cell.source.replace("Dense(32", "Dense(64")
    nb.cells.append(nbformat.v4.new_code_cell(FORGER))
    return nbformat.writes(nb).encode("utf-8")


def tampered_release() -> bytes:
    """The released notebook, a self-check cell edited to skip its assertion, the data cell turned into text."""
    nb = nbformat.read(PROJECT_ROOT / "assignments" / "assignment3" / "assignment3.ipynb", as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.get("id") == "selfcheck_reshape":
            cell.source = "pass  # the check is in my way"
        if cell.get("id") == "reshape":
            cell.source = "x_train = x_train.reshape(60000, 784)\nx_test = x_test.reshape(10000, 784)"
        if cell.get("id") == "load_data":
            nb.cells[i] = nbformat.v4.new_markdown_cell(cell.source, metadata=cell.metadata, id="load_data")
    return nbformat.writes(nb).encode("utf-8")


def nbformat3() -> bytes:
    return json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {"name": ""}, "worksheets": [{"cells": [
        {"cell_type": "code", "input": "x = 1\nprint(x)", "language": "python", "outputs": [],
         "metadata": {}, "collapsed": False}], "metadata": {}}]}).encode("utf-8")


def duplicate_ids() -> bytes:
    nb = nbformat.reads(notebook("a = 1", "b = 2").decode(), as_version=4)
    for cell in nb.cells:
        cell["id"] = "same"
    return json.dumps(nb).encode("utf-8")


def huge_notebook(megabytes: int) -> bytes:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_markdown_cell("x" * (megabytes * 2**20))])
    return nbformat.writes(nb).encode("utf-8")


def cases(class_dir: Path, out_dir: Path) -> list[Case]:
    real = notebook("x = 1").decode()
    return [
        Case("h01", "h01.ipynb", notebook("while True:\n    pass"), "timeout", "timeout"),
        Case("h02", "h02.ipynb", notebook("blocks = []\nwhile True:\n    blocks.append(b'x' * (50 * 2**20))"),
             "error", "memory limit"),
        Case("h03", "h03.ipynb", notebook("import os\nos._exit(0)"), "error", "kernel died"),
        Case("h11", "h11.ipynb", notebook("import ctypes\nctypes.string_at(0)"), "error", "kernel died"),   # segfault
        Case("h04", "h04.ipynb", notebook(
            "import os, time\nchildren = []\ntry:\n    while len(children) < 1000:\n        pid = os.fork()\n"
            "        if pid == 0:\n            time.sleep(60)\n            os._exit(0)\n        children.append(pid)\n"
            "except OSError as exc:\n    print('refused after', len(children), type(exc).__name__)"),
             "graded", "processes/threads"),
        Case("h05", "h05.ipynb", notebook("import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 2**20 + '\\n')"),
             "graded", "printed more than"),
        Case("h06", "h06.ipynb", notebook(leak_probe([str(HIDDEN_GRADER), str(class_dir / "manifest.csv"),
                                                      str(class_dir / "h01.ipynb"), str(out_dir / "gradebook.csv"),
                                                      "/etc/shadow"],
                                           # the output folder, its store of other students' runs with it
                                           (str(out_dir), str(out_dir / "store" / "objects")))),
             "graded", "", clean_run=True),
        Case("h07", "h07.ipynb", notebook(
            "import socket\ns = socket.socket()\ns.settimeout(3)\ntry:\n    s.connect(('1.1.1.1', 53))\n"
            "    raise RuntimeError('NETWORK REACHABLE')\nexcept OSError as exc:\n    print('blocked:', exc)"),
             "graded", "", clean_run=True),
        Case("h08", "h08.ipynb", notebook(PLANT_LINKS % str(HIDDEN_GRADER)), "error", "kernel died"),
        Case("h09", "h09.ipynb", forged_answer(), "graded", "",
             failing=frozenset({"param_count", "architecture", "val_accuracy", "predict"})),
        Case("h10", "h10.ipynb", tampered_release(), "graded", "restored from the release"),
        Case("b01", "b01.ipynb", b"hello, this is my homework", "error", "not JSON"),
        Case("b02", "b02.ipynb", real[: len(real) // 2].encode(), "error", "JSON ends early"),
        Case("b03", "b03.ipynb", b"", "error", "empty"),
        Case("b04", "b04.ipynb", nbformat3(), "graded", "nbformat 3 notebook, converted"),
        Case("b05", "b05.ipynb", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "error", "not UTF-8"),
        Case("b06", "b06.ipynb", huge_notebook(200), "error", "MAX_NOTEBOOK_MB"),
        Case("b07", "b07.ipynb", nbformat.writes(nbformat.v4.new_notebook(
            cells=[nbformat.v4.new_markdown_cell("答えは頭の中にあります")])).encode(), "error", "no code cells"),
        Case("b08", "b08.ipynb", notebook("x <- c(1, 2, 3)\nprint(x)", kernelspec={"name": "ir", "language": "R",
                                                                                  "display_name": "R"}),
             "graded", "saved for the R kernel"),
        Case("b09", "b09.ipynb", duplicate_ids(), "graded", "duplicate cell ids were renumbered"),
        Case("b10", "b10.ipynb", notebook("# 日本語のコメント\nx = 1").decode().encode("cp932"), "error", "not UTF-8"),
        Case("b11", "../../escaped.ipynb", real.encode(), "error", "points outside the export"),
    ]


def write_export(path: Path, corpus: list[Case]) -> Path:
    """The LMS .zip: every case's file plus manifest.csv (the traversal case's member is written as named)."""
    lines = ["student_id,file,submitted_at"] + [f"{c.student},{c.file},{SUBMITTED_AT}" for c in corpus]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.csv", "\n".join(lines) + "\n")
        for case in corpus:
            zf.writestr(case.file, case.data)
    return path
