"""Course configuration for the autograder: the course-wide settings (each assignment has its own settings.py).

Plain Python, read by ``autograder.course.config.load_config`` and validated there; a bad value stops the grader with a
message that names the setting. Paths are relative to this file's folder.
"""

# --- Assignments ----------------------------------------------------------------------------------------------
# Each assignment is a folder, reference/<id>/: its reference notebook <id>.ipynb, its settings.py (title, deadline,
# late policy, dataset, what the kernel exports, expected values, and any course default below it overrides), its
# hidden graders (graders/test_*.py, each check declared there with @check(...)) and samples/.
# `python -m autograder list` shows them.
TIMEZONE = "Asia/Tokyo"                 # deadlines are local to it
MISSING_TIMESTAMP = "grade"             # a submission with no usable time: "grade" (graded, flagged in the
                                        # gradebook) or "reject" (0 points, status "no timestamp")

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
# Kernels each grading process (a class's worker, the site's check worker, a cluster node) keeps started ahead of
# the next notebook, in their own sandboxes, TensorFlow already imported; each serves one notebook and is then
# destroyed. Each holds ~0.5 GB while it waits and may grow to MEMORY_LIMIT_MB once it runs: a worker holds at most
# 1 + WARM_KERNELS kernels. 0: every kernel starts when its notebook comes (cold). At most 4.
WARM_KERNELS = 1

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
EXTENSIONS_FILE = "extensions.json"     # per-student deadlines (`extension add`, or the site's staff page): submit,
                                        # grade, publish and the site all read it; it names students: never commit it

# --- Submission site (`python -m autograder serve`) -------------------------------------------------------
SITE_DIR = "site"                       # its data folder (--data): site.db, its exchange (the layout `grade` reads),
                                        # every attempt, the public checks' results, grades and published solutions
SITE_CHECK_WORKERS = 1                  # public checks run at once on the server, each a kernel training a model
SITE_CHECK_TIME_LIMIT_S = 600           # a public check runs a notebook this long at most (each cell too), so one
                                        # slow notebook holds the queue minutes, not NOTEBOOK_TIMEOUT_S: the full run
                                        # is the grading's
SITE_MAX_ATTEMPTS = 30                  # uploads per student and assignment (every one is kept); then refused
SITE_MAX_STORED_MB = 200                # MiB per student and assignment, all their attempts together; then refused
SITE_MIN_FREE_MB = 1024                 # uploads are refused, saying so, before the data folder's disk has less free
SITE_STAFF_IDLE_MIN = 120               # a staff session unused for this many minutes ends (sign in again)

# --- Grading on a cluster (`grade CLASS --executor ray|slurm`; README "Grading on a cluster") ---------------
# The output folder (--out) must be on a filesystem every node mounts at the same path, with this checkout.
KERNELS_PER_GPU = 2                     # kernels sharing one GPU (--kernels-per-gpu; a Ray task asks for 1/K of a GPU)
SLURM_PARTITION = ""                    # Slurm: the partition (--partition; "" = the cluster's default)
SLURM_GPUS_PER_TASK = 1                 # GPUs per array task (--gpus-per-task); its chunk runs one kernel per GPU
SLURM_ARRAY_PARALLELISM = 16            # array tasks running at once (--array-parallelism)
SLURM_CHUNK_SIZE = 4                    # submissions per array task
SLURM_TIME_MIN = 120                    # an array task's time limit, in minutes

# --- Data ---------------------------------------------------------------------------------------------------
# The pinned datasets' files, one folder each (data/mnist: the IDX gzip files + SHA256SUMS). An environment
# variable AUTOGRADER_<NAME>_DIR (e.g. AUTOGRADER_MNIST_DIR) points one elsewhere.
DATA_DIR = "data"
