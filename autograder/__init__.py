"""An autograding framework for 医療とAI・ビッグデータ応用: Keras notebooks graded by hidden pytest graders.

Each assignment is a folder, ``reference/<id>/`` (reference notebook, settings.py, graders, samples), that the
framework discovers. One folder per stage, data flowing one way (a module imports only from its own stage and the
ones before it; tests/test_layout.py holds it to that):
course → run → grading → reports → classroom → lifecycle → site, with errors.py and files.py below them all and
the commands (cli.py, demo.py) above.
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent

__all__ = ["PACKAGE_DIR", "PROJECT_ROOT"]
