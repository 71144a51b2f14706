"""The course and its assignments as data: settings, assignment folders, datasets, deadlines, notebooks."""
