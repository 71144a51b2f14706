"""Alembic's entry for the site's migrations, run by ``db.upgrade`` on the connection it passes (no alembic.ini,
no URL here). To write a new revision: change db.py's tables, then in versions/ add the next NNNN_name.py (the
``alembic`` command needs a config naming this folder; ``script.py.mako`` is its template), and a test in
tests/test_site_migrations.py that upgrades a database of the revision before it, with rows in it."""

from alembic import context

from autograder.site.db import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
