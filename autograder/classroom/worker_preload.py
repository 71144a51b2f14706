"""Imported once by the batch's fork server, before it forks any worker: Keras and TensorFlow (~3 s of CPU) are
then loaded once for the whole class, not once per worker, as are pytest and the hidden graders' plugin.

Nothing here touches a device (each forked worker chooses its GPUs itself), and nothing that holds sockets or
event loops is imported: with jupyter_client/ZeroMQ preloaded too, a forked worker's kernel once failed to answer
within 60 s, so each worker imports those itself after the fork. The fork server's own output (TensorFlow's
start-up lines) is discarded; each worker sends its output to the batch's workers.log.

A terminal's Ctrl-C reaches the whole process group, workers included. They ignore it (and so do the processes they
fork): the command that owns them decides — the batch stops its workers itself, and the site's server puts a check
it interrupted back in the queue. A worker killed by the signal mid-notebook would record a runner failure instead.
"""

import os
import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)

_devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(_devnull, 1)
os.dup2(_devnull, 2)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402,F401

import autograder.grading.graders  # noqa: E402,F401  (pytest and the graders' plugin)
