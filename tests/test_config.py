import re
import shutil
from pathlib import Path

import pytest

from autograder.course.assignment import assignment_ids, config_for, which_assignment
from autograder.course.config import DEFAULT_CONFIG_PATH, load_config
from autograder.errors import ConfigError

PROJECT = DEFAULT_CONFIG_PATH.parent


def variant(tmp_path: Path, **settings) -> Path:
    """The project's grader_config.py with some settings overridden (a later assignment wins) or, with value
    ..., deleted."""
    lines = [DEFAULT_CONFIG_PATH.read_text(encoding="utf-8")]
    for name, value in settings.items():
        lines.append(f"del {name}" if value is ... else f"{name} = {value!r}")
    path = tmp_path / "grader_config.py"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def course_with(tmp_path: Path, **settings) -> Path:
    """A course folder whose assignment3 settings.py has some settings overridden (value ...: deleted)."""
    config = variant(tmp_path, DATA_DIR=str(PROJECT / "data"))
    folder = tmp_path / "reference" / "assignment3"
    folder.mkdir(parents=True)
    lines = [(PROJECT / "reference" / "assignment3" / "settings.py").read_text(encoding="utf-8")]
    for name, value in settings.items():
        lines.append(f"del {name}" if value is ... else f"{name} = {value!r}")
    (folder / "settings.py").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


def test_project_config_loads_the_course_and_assignment3_with_the_lectures_values(config):
    assignment = config.assignment
    assert assignment.id == "assignment3" and assignment.title_ja.startswith("課題3")
    assert assignment.deadline.isoformat() == "2024-05-16T23:59:59.999999+09:00"   # the whole minute 23:59 counts
    assert assignment.late_policy == "reject" and assignment.dataset == "mnist"
    assert assignment.expected == {"val_accuracy_threshold": 0.95, "epochs": 30, "batch_size": 64,
                                   "validation_split": 0.2}
    assert assignment.exports.arrays == ("x_train", "x_test", "y_train", "y_test", "test2")
    assert (assignment.exports.model, assignment.exports.history) == ("model", "result")
    assert assignment.graders_dir == PROJECT / "reference" / "assignment3" / "graders"
    assert assignment.release_notebook == PROJECT / "assignments" / "assignment3" / "assignment3.ipynb"
    assert config.dataset_folder("mnist") == PROJECT / "data" / "mnist"
    assert config.device_policy == "require-gpu"                   # the course's default, not overridden


def test_the_course_lists_its_assignment_folders():
    assert {"assignment3", "assignment4"} <= set(assignment_ids(load_config()))


@pytest.mark.parametrize("settings, named", [
    ({"DEVICE_POLICY": "tpu"}, "DEVICE_POLICY"),
    ({"TIMEZONE": "Mars/Olympus"}, "TIMEZONE"),
    ({"CELL_TIMEOUT_S": -5}, "CELL_TIMEOUT_S"),
    ({"MISSING_TIMESTAMP": "maybe"}, "MISSING_TIMESTAMP"),
    ({"SEED": ...}, "SEED is missing"),
    ({"KERNELS_PER_GPU": 0}, "KERNELS_PER_GPU must be positive, got 0"),
    ({"SLURM_GPUS_PER_TASK": -1}, "SLURM_GPUS_PER_TASK must be 0 or more"),
    ({"SLURM_PARTITION": None}, "SLURM_PARTITION must be a string"),
    ({"SLURM_CHUNK_SIZE": 2.5}, "SLURM_CHUNK_SIZE must be an integer"),
    # Settings that moved are refused, not silently ignored: checks declare their points and visibility (@check in
    # the graders); each assignment its deadline and expected values (reference/<id>/settings.py).
    ({"POINTS": {"reshape": 1}}, "setting POINTS is no longer read here"),
    ({"PUBLIC_CHECKS": ("reshape",)}, "setting PUBLIC_CHECKS is no longer read here"),
    ({"DEADLINE": "2024-05-16 23:59"}, "setting DEADLINE is no longer read here: it is an assignment's setting"),
    ({"VAL_ACCURACY_THRESHOLD": 0.9}, "write it in reference/<id>/settings.py"),
    ({"DATASET_DIR": "data/mnist"}, "set DATA_DIR instead"),
])
def test_bad_course_setting_stops_with_a_message_naming_it(tmp_path, settings, named):
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_config(variant(tmp_path, **settings))


@pytest.mark.parametrize("settings, named", [
    ({"LATE_POLICY": "maybe"}, "LATE_POLICY = 'maybe' is unknown"),
    ({"DEADLINE": "next friday"}, "DEADLINE = 'next friday' cannot be parsed"),
    ({"DEADLINE": ...}, "DEADLINE is missing"),
    ({"TITLE": ("課題3", "")}, "TITLE must be a (Japanese, English) pair"),
    ({"DATASET": "cifar10"}, "DATASET = 'cifar10' is not a pinned dataset; choose one of mnist, breast_cancer"),
    ({"EXPORTS": {"arrays": ("x-train",)}}, "EXPORTS must list variable names as plain identifiers"),
    ({"EXPORTS": {"tables": ("x",)}}, "EXPORTS has unknown kinds 'tables'"),
    ({"EXPORTS": {"model": ["model"]}}, "EXPORTS['model'] must be one variable name"),
    ({"RECOMPUTABLE": {"y_val": 1}}, ("RECOMPUTABLE names 'y_val', which is not among EXPORTS['arrays'] (x_train, "
                                      "x_test, y_train, y_test, test2)")),
    ({"RECOMPUTABLE": {"x_train": "x_train / 255"}}, "RECOMPUTABLE['x_train'] must be a function of the dataset"),
    ({"RECOMPUTABLE": ["x_train"]}, "RECOMPUTABLE must be a dict"),
    ({"DATASET": ...}, "RECOMPUTABLE rebuilds arrays from the assignment's dataset, but no DATASET is set"),
    ({"EXPECTED": {"epochs": None}}, "EXPECTED['epochs'] must be a number, text or a tuple"),
    ({"TRAINING_CURVE": {"threshold": 0.9}}, "TRAINING_CURVE must be a dict with 'metric'"),
    ({"DEADLNE": "2024-05-16 23:59"}, "setting DEADLNE is unknown (did you mean DEADLINE?)"),
    ({"DEVICE_POLICY": "tpu"}, "DEVICE_POLICY = 'tpu' is unknown"),          # an override is held to the course's rule
    ({"CELL_TIMEOUT_S": 0}, "CELL_TIMEOUT_S must be positive"),
])
def test_bad_assignment_setting_stops_with_a_message_naming_the_file_and_setting(tmp_path, settings, named):
    config = load_config(course_with(tmp_path, **settings))
    with pytest.raises(ConfigError, match=re.escape(named)) as error:
        config_for(config, "assignment3")
    assert str(tmp_path / "reference" / "assignment3" / "settings.py") in str(error.value)


def test_an_assignment_overrides_course_defaults_for_itself_only(tmp_path):
    config = load_config(course_with(tmp_path, DEVICE_POLICY="allow-cpu", TRAINING_CELL_TIMEOUT_S=60))
    assert config.device_policy == "require-gpu"
    chosen = config_for(config, "assignment3")
    assert (chosen.device_policy, chosen.training_cell_timeout_s) == ("allow-cpu", 60)
    assert chosen.cell_timeout_s == config.cell_timeout_s


def test_an_unknown_assignment_is_named_with_the_course_s_assignments(tmp_path):
    config = load_config(course_with(tmp_path))
    with pytest.raises(ConfigError, match=r"unknown assignment 'assignment33'.*did you mean 'assignment3'\?.*"
                                          r"\(the course has: assignment3\)"):
        config_for(config, "assignment33")
    with pytest.raises(ConfigError, match="no assignment chosen"):
        config.assignment


def test_deadline_with_an_offset_and_seconds_is_kept_as_given(tmp_path):
    config = load_config(course_with(tmp_path, DEADLINE="2024-05-16T14:59:00+00:00"))
    assert config_for(config, "assignment3").assignment.deadline.isoformat() == "2024-05-16T14:59:00+00:00"
    shutil.rmtree(tmp_path / "reference")
    config = load_config(course_with(tmp_path, DEADLINE="2024-05-16T14:59Z"))
    assert config_for(config, "assignment3").assignment.deadline.isoformat() == "2024-05-16T14:59:59.999999+00:00"


def test_which_assignment_a_notebook_is_for(tmp_path):
    config = load_config()
    release4 = PROJECT / "assignments" / "assignment4" / "assignment4.ipynb"
    assert which_assignment(config, release4) == "assignment4"                 # its release metadata
    renamed = tmp_path / "my answers.ipynb"
    renamed.write_bytes(release4.read_bytes())
    assert which_assignment(config, renamed) == "assignment4"                   # metadata, whatever the name
    folder = tmp_path / "submitted" / "s001" / "assignment3" / "notebook.ipynb"
    folder.parent.mkdir(parents=True)
    folder.write_text("{}", encoding="utf-8")
    assert which_assignment(config, folder) == "assignment3"                    # the exchange folder
    assert which_assignment(config, folder, "assignment4") == "assignment4"     # --assignment wins
    sample = PROJECT / "reference" / "assignment4" / "samples" / "submitted-leakage.ipynb"
    assert which_assignment(config, sample) == "assignment4"                    # a sample in its folder
    unknown = tmp_path / "notebook.ipynb"
    unknown.write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot tell which assignment .* add --assignment ID"):
        which_assignment(config, unknown)


def test_a_config_that_does_not_run_is_reported(tmp_path):
    path = tmp_path / "grader_config.py"
    path.write_text("TIMEZONE = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="could not be read"):
        load_config(path)


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.py")


def test_environment_variables_point_to_another_config_and_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_CONFIG", str(variant(tmp_path, CELL_TIMEOUT_S=7)))
    monkeypatch.setenv("AUTOGRADER_MNIST_DIR", str(tmp_path / "mnist"))
    config = load_config()
    assert config.cell_timeout_s == 7
    assert config.dataset_folder("mnist") == tmp_path / "mnist"
