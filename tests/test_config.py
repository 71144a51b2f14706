from pathlib import Path

import pytest

from autograder.config import DEFAULT_CONFIG_PATH, load_config
from autograder.errors import ConfigError


def variant(tmp_path: Path, **settings) -> Path:
    """The project's grader_config.py with some settings overridden (a later assignment wins) or, with value
    ..., deleted."""
    lines = [DEFAULT_CONFIG_PATH.read_text(encoding="utf-8")]
    for name, value in settings.items():
        lines.append(f"del {name}" if value is ... else f"{name} = {value!r}")
    path = tmp_path / "grader_config.py"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_project_config_loads_with_the_lectures_values(config):
    assert config.assignment_id == "assignment3"
    assert config.deadline.isoformat() == "2024-05-16T23:59:59.999999+09:00"   # the whole minute 23:59 counts
    assert config.late_policy == "reject"
    assert config.val_accuracy_threshold == 0.95
    assert (config.expected_epochs, config.expected_batch_size, config.expected_validation_split) == (30, 64, 0.2)
    assert config.validation_samples == 12000 and config.expected_steps_per_epoch == 750
    assert config.dataset_dir == DEFAULT_CONFIG_PATH.parent / "data" / "mnist"
    assert config.graders_dir == DEFAULT_CONFIG_PATH.parent / "reference" / "assignment3" / "graders"


@pytest.mark.parametrize("settings, named", [
    ({"VAL_ACCURACY_THRESHOLD": 0.0}, "VAL_ACCURACY_THRESHOLD"),
    ({"VAL_ACCURACY_THRESHOLD": 1.5}, "VAL_ACCURACY_THRESHOLD"),
    ({"VAL_ACCURACY_THRESHOLD": "high"}, "VAL_ACCURACY_THRESHOLD"),
    ({"LATE_POLICY": "maybe"}, "LATE_POLICY"),
    ({"DEVICE_POLICY": "tpu"}, "DEVICE_POLICY"),
    ({"DEADLINE": "next friday"}, "DEADLINE"),
    ({"TIMEZONE": "Mars/Olympus"}, "TIMEZONE"),
    ({"EXPECTED_EPOCHS": 0}, "EXPECTED_EPOCHS"),
    ({"CELL_TIMEOUT_S": -5}, "CELL_TIMEOUT_S"),
    # Checks declare their points and visibility themselves (@check in the graders): the old settings are refused,
    # not silently ignored.
    ({"POINTS": {"reshape": 1}}, "setting POINTS is no longer read"),
    ({"PUBLIC_CHECKS": ("reshape",)}, "setting PUBLIC_CHECKS is no longer read"),
    ({"SEED": ...}, "SEED is missing"),
])
def test_bad_setting_stops_with_a_message_naming_it(tmp_path, settings, named):
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_config(variant(tmp_path, **settings))


def test_deadline_with_an_offset_and_seconds_is_kept_as_given(tmp_path):
    config = load_config(variant(tmp_path, DEADLINE="2024-05-16T14:59:00+00:00"))
    assert config.deadline.isoformat() == "2024-05-16T14:59:00+00:00"
    config = load_config(variant(tmp_path, DEADLINE="2024-05-16T14:59Z"))
    assert config.deadline.isoformat() == "2024-05-16T14:59:59.999999+00:00"


def test_a_config_that_does_not_run_is_reported(tmp_path):
    path = tmp_path / "grader_config.py"
    path.write_text("ASSIGNMENT_ID = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="could not be read"):
        load_config(path)


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.py")


def test_environment_variables_point_to_another_config_and_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_CONFIG", str(variant(tmp_path, VAL_ACCURACY_THRESHOLD=0.9)))
    monkeypatch.setenv("AUTOGRADER_MNIST_DIR", str(tmp_path / "mnist"))
    config = load_config()
    assert config.val_accuracy_threshold == 0.9
    assert config.dataset_dir == tmp_path / "mnist"
