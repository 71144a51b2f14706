"""An autograding framework for 医療とAI・ビッグデータ応用: Keras notebooks graded by hidden pytest graders.

Each assignment is a folder, ``reference/<id>/`` (reference notebook, settings.py, graders, samples), that the
framework discovers. Stages, one module each, data flowing one way:
config → assignment → dataset → release → execute → graders → result → report (→ batch: plan, pool, store).
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent

__all__ = ["PACKAGE_DIR", "PROJECT_ROOT"]
