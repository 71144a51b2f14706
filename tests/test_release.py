import nbformat
import pytest
from nbgrader.utils import compute_checksum

from autograder.cli import main
from autograder.lifecycle.release import release
from tests.conftest import assert_no_grader_source, grader_source_lines

STUB_CELLS = ("reshape", "one_hot", "model", "compile", "fit", "predict")
SOLUTION_CODE = ("/ 255", "to_categorical(y_train", "Dense(32", "model.compile(", "model.fit(", "model.predict(")


@pytest.fixture(scope="module")
def fresh(config, tmp_path_factory):
    return release(config, out=tmp_path_factory.mktemp("release") / "assignment3.ipynb")


def test_release_is_deterministic(config, fresh, tmp_path):
    again = release(config, out=tmp_path / "again.ipynb")
    assert again.read_bytes() == fresh.read_bytes()


def test_committed_student_notebook_equals_a_fresh_release(config, fresh):
    assert config.assignment.release_notebook.read_bytes() == fresh.read_bytes(), \
        "assignments/ is stale: run `python -m autograder release assignment3` and commit the result"


def test_solution_cells_become_stubs(fresh):
    nb = nbformat.read(fresh, as_version=4)
    cells = {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells}
    for grade_id in STUB_CELLS:
        source = cells[grade_id].source
        assert "# YOUR CODE HERE\nraise NotImplementedError()" in source, grade_id
    code_text = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for code in SOLUTION_CODE:   # the explanations may name Dense(32, ...); the code cells must not hold it
        assert code not in code_text, f"solution code {code!r} leaked into the student notebook"
    text = fresh.read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_student_notebook_needs_nothing_from_this_package(fresh):
    """It must run top to bottom on Colab, where mnist.load_data() downloads and autograder is not installed."""
    nb = nbformat.read(fresh, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "autograder" not in code
    imports = {line.split()[1].split(".")[0] for line in code.splitlines() if line.startswith(("import ", "from "))}
    assert imports <= {"tensorflow", "keras", "numpy", "matplotlib"}, imports


def test_given_cells_are_locked_and_every_cell_is_checksummed(fresh):
    nb = nbformat.read(fresh, as_version=4)
    for cell in nb.cells:
        meta = cell.metadata["nbgrader"]
        assert meta["checksum"] == compute_checksum(cell)
        assert cell.metadata["deletable"] is False
        if not meta["solution"]:
            assert cell.metadata["editable"] is False


def test_no_grader_source_appears_in_the_student_notebook(fresh):
    lines = grader_source_lines()
    assert len([line for name, line in lines if name == "test_assignment3.py"]) > 50   # the assignment's own graders
    assert_no_grader_source(fresh.read_text(encoding="utf-8"))


def test_release_of_an_unknown_assignment_is_refused(capsys):
    assert main(["release", "assignment9"]) == 2
    assert "unknown assignment 'assignment9'" in capsys.readouterr().err
