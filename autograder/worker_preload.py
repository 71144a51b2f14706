"""Imported once by the batch's fork server, before it forks any worker: Keras and TensorFlow (~3 s of CPU) are
then loaded once for the whole class, not once per worker, as are pytest and the hidden graders' plugin.

Nothing here touches a device (each forked worker chooses its GPUs itself), and nothing that holds sockets or
event loops is imported: with jupyter_client/ZeroMQ preloaded too, a forked worker's kernel once failed to answer
within 60 s, so each worker imports those itself after the fork. The fork server's own output (TensorFlow's
start-up lines) is discarded; each worker sends its output to the batch's workers.log.
"""

import os

_devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(_devnull, 1)
os.dup2(_devnull, 2)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402,F401

import autograder.graders  # noqa: E402,F401  (pytest and the graders' plugin)
