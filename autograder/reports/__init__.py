"""What people read: results files, feedback and summary pages, figures, the gradebook, tables."""
