"""Decide where a student's kernel trains: the GPU for official grading, the CPU only when the policy allows."""

from __future__ import annotations

from .config import Config
from .errors import GraderError

DEVICES = ("auto", "cpu", "gpu")


def visible_gpus() -> list[str]:
    """GPUs TensorFlow sees. The grader's own process then hides them, leaving the GPU to the kernels (its own
    work — reloading a model, predicting 22,000 samples — is small)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TensorFlow already initialised its devices in this process
        pass
    return [g.name for g in gpus]


def resolve_device(requested: str, config: Config, gpus: list[str] | None = None,
                   cpu_fallback: bool = False) -> tuple[str, bool]:
    """→ (device for the kernel, whether the grade is official under the course's device policy).

    ``cpu_fallback`` is for runs that are no official grade (a student's self-check, the demo, publishing the
    solution): there ``auto`` quietly uses the CPU when no GPU is visible."""
    if requested not in DEVICES:
        raise GraderError(f"unknown device {requested!r}; choose one of {', '.join(DEVICES)}")
    cpu_official = config.device_policy == "allow-cpu"
    if requested == "cpu":
        return "cpu", cpu_official
    gpus = visible_gpus() if gpus is None else gpus
    if requested == "gpu":
        if not gpus:
            raise GraderError("--device gpu: no GPU is visible to TensorFlow on this machine "
                              "(check `nvidia-smi` and the GPU requirements in README.md)")
        return "gpu", True
    if gpus:
        return "gpu", True
    if not (cpu_official or cpu_fallback):
        raise GraderError("official grading requires a GPU (DEVICE_POLICY = 'require-gpu' in grader_config.py) "
                          "and none is visible; pass --device cpu for an unofficial grade on the CPU")
    return "cpu", cpu_official
