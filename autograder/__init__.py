"""Autograder for 医療とAI・ビッグデータ応用, MLP① (課題3): a Keras MLP on MNIST.

Stages, one module each, data flowing one way:
config → dataset → release → execute → graders → result → report (→ batch, later).
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent

__all__ = ["PACKAGE_DIR", "PROJECT_ROOT"]
