"""Grading one run: the hidden pytest graders on its artifacts, the typed result, the run store."""
