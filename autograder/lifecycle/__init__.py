"""An assignment's life: release to students, submission, publishing the solution."""
