"""課題3 (MLP①): the assignment's own settings, read and validated by ``autograder.course.assignment``.

Course-wide settings (time zone, sandbox, limits, device policy, folders) are in grader_config.py; a setting of
theirs written here overrides the course's for this assignment only.
"""

TITLE = ("課題3 (MLP①): 多層パーセプトロンで手書き数字を分類する",
         "Assignment 3 (MLP 1): classify handwritten digits with a multi-layer perceptron")
DEADLINE = "2024-05-16 23:59"           # local time in the course's TIMEZONE (ISO 8601 with an offset is accepted)
LATE_POLICY = "reject"                  # "reject": late work gets 0 points, status "late"; "accept": graded anyway
DATASET = "mnist"                       # keras.datasets.mnist.load_data() is answered with the pinned copy

# What the harness saves from the student's kernel after the last cell, for the hidden graders.
EXPORTS = {"arrays": ("x_train", "x_test", "y_train", "y_test", "test2"), "model": "model", "history": "result"}
# Exported arrays the graders can rebuild from the dataset: one equal to what its function gives (the lecture's
# float64 `/ 255`) is recorded by its SHA-256 and not written (x_train alone is 376 MB); the graders read the
# course's own. Any other (float32, wrong values, rows cut) is exported and judged as it is.
RECOMPUTABLE = {"x_train": lambda data: data.x_train.reshape(60000, 784) / 255,
                "x_test": lambda data: data.x_test.reshape(10000, 784) / 255}
TRAINING_CELLS = ("fit",)               # grade ids of the cells that train: they get TRAINING_CELL_TIMEOUT_S

# The lecture's values, read by the graders (assignment.expected[...]) and their messages.
EXPECTED = {
    "val_accuracy_threshold": 0.95,     # the trained model's val_accuracy must reach it
    "epochs": 30,
    "batch_size": 64,
    "validation_split": 0.2,
}
# The feedback page plots loss and accuracy per epoch with the threshold, captioned from val_accuracy's verdict.
TRAINING_CURVE = {"metric": "accuracy", "threshold": EXPECTED["val_accuracy_threshold"], "check": "val_accuracy"}

# Official grades of this assignment need a GPU (the course's DEVICE_POLICY, "require-gpu").
DEMO_SAMPLE = "submitted-dense64-functional"   # the wrong sample `demo` grades: Dense(64), functional API
