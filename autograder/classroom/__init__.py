"""Grading a class: intake, the plan, the executors (pool, Ray, Slurm) and the batch."""
