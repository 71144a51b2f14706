"""Course configuration for the autograder: the one place where settings live.

Plain Python, read by ``autograder.config.load_config`` and validated there; a bad value stops the grader with a
message that names the setting. Paths are relative to this file's folder.
"""

# --- Assignment ---------------------------------------------------------------------------------------------
ASSIGNMENT_ID = "assignment3"           # 課題3 (MLP①): reference/<id>/<id>.ipynb → assignments/<id>/<id>.ipynb
DEADLINE = "2024-05-16 23:59"           # local time in TIMEZONE (ISO 8601 with an offset is accepted too)
TIMEZONE = "Asia/Tokyo"
LATE_POLICY = "reject"                  # "reject": late work gets 0 points, status "late"; "accept": graded anyway
MISSING_TIMESTAMP = "grade"             # a submission with no usable time: "grade" (graded, flagged in the
                                        # gradebook) or "reject" (0 points, status "no timestamp")

# --- What the graders expect (the lecture's values) ---------------------------------------------------------
VAL_ACCURACY_THRESHOLD = 0.95           # final val_accuracy must reach this; must lie in (0, 1]
EXPECTED_EPOCHS = 30
EXPECTED_BATCH_SIZE = 64
EXPECTED_VALIDATION_SPLIT = 0.2

# The checks themselves (ids, points, titles, which are public) are declared by the hidden graders, each where it
# is written: @check(...) in reference/<ASSIGNMENT_ID>/graders/test_*.py.

# --- Execution ----------------------------------------------------------------------------------------------
CELL_TIMEOUT_S = 120                    # any ordinary cell
TRAINING_CELL_TIMEOUT_S = 1200          # the cell that calls fit (30 epochs: ~25 s on a CPU, ~90 s on a T4)
NOTEBOOK_TIMEOUT_S = 1800               # the whole notebook; cells not started by then are skipped
SEED = 20240509                         # seeds Python, NumPy and TensorFlow before the first cell
# Speed mode: the harness runs this many of the student's training steps per call into TensorFlow (Keras's
# steps_per_execution). Same batches, same steps, same updates; only Python's per-step overhead goes
# (bench/fused_fit.py measures it). 1 = Keras's own loop, as `--exact-fit` does for one run.
FUSED_FIT_STEPS = 250
# TensorFlow threads per kernel on a CPU runner (0 = TensorFlow's default, every core). The lecture's model is too
# small to gain from more than one (a 30-epoch fit here: 16.0 s with two threads, 13.5 s with one, same result),
# and kernels graded side by side then each keep one core instead of fighting over all of them.
KERNEL_CPU_THREADS = 1

# --- Untrusted code -------------------------------------------------------------------------------------------
# Each kernel runs in bubblewrap: no network, only the Python install, its working folder, the pinned data and
# its export folder in view. "auto": use it when bwrap works here, else warn loudly and run without; "require":
# refuse to grade without it; "off": never (e.g. a GPU runner where it gets in the way).
SANDBOX = "auto"
MEMORY_LIMIT_MB = 6144                  # per kernel with all it starts (the lecture's notebook peaks at ~1.6 GB)
MAX_PROCESSES = 2048                    # processes and threads per kernel (TensorFlow alone starts dozens)
OUTPUT_LIMIT_KB = 2048                  # output kept per cell; the rest is dropped with a note
MAX_NOTEBOOK_MB = 50                    # a larger submission is not run (status "error")

# Device policy: "require-gpu" (official grading needs a GPU; `--device cpu` must be asked for explicitly and the
# result is marked unofficial) or "allow-cpu" (`--device auto` falls back to the CPU without complaint).
DEVICE_POLICY = "require-gpu"

# --- Submissions and publishing ---------------------------------------------------------------------------
EXCHANGE_DIR = "exchange"               # `submit` writes EXCHANGE_DIR/submitted/<student>/<assignment>/ (nbgrader's layout)
PUBLISH_DIR = "published"               # `publish` writes PUBLISH_DIR/<assignment>/ (solution notebook, HTML, checks)

# --- Data ---------------------------------------------------------------------------------------------------
# The pinned MNIST (IDX gzip files + SHA256SUMS). The environment variable AUTOGRADER_MNIST_DIR overrides it.
DATASET_DIR = "data/mnist"
