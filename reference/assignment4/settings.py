"""課題4 (MLP②): the assignment's own settings, read and validated by ``autograder.course.assignment``.

Course-wide settings (time zone, sandbox, limits, folders) are in grader_config.py; a setting of theirs written
here overrides the course's for this assignment only (here DEVICE_POLICY). Every number a grader compares with or
writes in a message is in EXPECTED (read as ``assignment.expected[...]``).
"""

TITLE = ("課題4 (MLP②): 乳がんの良性・悪性を分類する", "Assignment 4 (MLP 2): malignant or benign breast tumours")
DEADLINE = "2024-05-23 23:59"          # local time in the course's TIMEZONE (Asia/Tokyo)
LATE_POLICY = "reject"
DATASET = "breast_cancer"              # scikit-learn's Wisconsin breast-cancer data, pinned by the framework
EXPORTS = {"arrays": ("X_train", "X_test", "y_train", "y_test", "proba", "pred"),
           "model": "model", "history": "result", "numbers": ("sensitivity", "auc")}
TRAINING_CELLS = ("fit",)              # grade ids of the cells that train
DEVICE_POLICY = "allow-cpu"            # overrides the course default: it trains in about 20 s on a CPU

EXPECTED = {
    # the data: load_breast_cancer(), y = (target == 0) → 1 = malignant (the positive class)
    "n_samples": 569,
    "n_features": 30,
    # step 1: train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    "test_size": 0.2,
    "random_state": 0,
    "n_train": 455,                    # 569 − 114
    "n_test": 114,                     # ceil(569 × 0.2), as scikit-learn rounds
    # step 3: Input(30) → Dense(16, relu) → Dropout(0.2) → Dense(1, sigmoid)
    "units": 16,
    "hidden_activation": "relu",
    "dropout": 0.2,
    "output_units": 1,
    "output_activation": "sigmoid",
    "parameters": 513,                 # (30 + 1) × 16 + (16 + 1) × 1
    # step 4: compile
    "loss": "binary_crossentropy",
    "optimizer": "Adam",
    "auc_metric_name": "auc",          # keras.metrics.AUC(name='auc'): recorded as auc / val_auc
    # step 5: fit with EarlyStopping
    "epochs": 200,
    "batch_size": 32,
    "validation_split": 0.2,           # Keras validates on the last 455 − floor(455 × 0.8) = 91 rows of X_train;
                                       # an epoch is ceil(364 / 32) = 12 steps (the graders compute both)
    "monitor": "val_loss",
    "patience": 10,
    "val_loss_tolerance": 1e-4,        # |grader's val_loss with the saved weights − the history's minimum|
    # step 6: predict and evaluate
    "decision_threshold": 0.5,         # pred = (proba >= 0.5)
    "same_prediction": 1e-3,           # |proba − grader's own prediction| per tumour
    "auc_threshold": 0.97,
    "auc_tolerance": 1e-3,             # |auc − grader's own test AUC|
    "sensitivity_threshold": 0.90,
}

# The feedback page plots loss and AUC per epoch (training and validation) with the test AUC's threshold, and marks
# the grader's own test AUC (recorded under the check's id, the notebook's auc as test_auc_reported).
TRAINING_CURVE = {"metric": "auc", "threshold": EXPECTED["auc_threshold"], "check": "test_auc"}
DEMO_SAMPLE = "submitted-leakage"      # the wrong sample `demo` grades: a scaler fitted on all of X (scaling fails)
