"""Tell a failure of the grading machine (the GPU, its driver) from the student's own error, in a run's execution
record: the first is retried and never scored, the second is the student's result."""

from __future__ import annotations

import re

# Failures of the runner, not of the student's code: retried once, then reported as an infrastructure error.
INFRASTRUCTURE_SIGNS = re.compile(
    r"CUDA_ERROR|CUDA error|cuInit|CUDNN_STATUS|CUBLAS_STATUS|cudaMalloc|failed to create cublas|"
    r"OOM when allocating|out of memory|Dst tensor is not initialized|driver version is insufficient", re.I)


def infrastructure_problem(execution: dict) -> str:
    """The first sign, in a result's execution record, that the GPU or its driver failed under the student's
    cells, or ''. Only a GPU run can show one (on the CPU a failed allocation is the notebook's own doing)."""
    if execution.get("device") != "gpu":
        return ""
    for cell in execution.get("cells", []):
        text = f"{cell.get('ename', '')}: {cell.get('evalue', '')}"
        if cell.get("status") == "error" and INFRASTRUCTURE_SIGNS.search(text):
            return f"cell {cell.get('index', 0) + 1}: {text[:300]}"
    return ""
