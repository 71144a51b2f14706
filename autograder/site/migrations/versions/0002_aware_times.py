"""Times as timezone-aware columns (they were ISO 8601 strings): each stored string is read as the moment it
names and written back as one.

On SQLite a column's type changes by copying its table (Alembic's batch mode), whose copy would cast the strings
to numbers: every time is read first, and written back after the change, by primary key.

Revision ID: 0002
Revises: 0001
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op

from autograder.site.db import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# table → (its primary key, {time column: nullable})
TIMES = {
    "attempts": ("id", {"submitted_at": False, "check_started_at": True, "check_finished_at": True}),
    "jobs": ("id", {"created_at": False, "finished_at": True}),
    "releases": ("assignment", {"released_at": False}),
    "events": ("id", {"at": False}),
}


def moment(text):
    """A stored string → its aware moment (one without an offset was written in UTC)."""
    if text is None:
        return None
    value = dt.datetime.fromisoformat(str(text))
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def change(old_type, new_type, sql_type: str, convert) -> None:
    """Each time column from ``old_type`` to ``new_type`` (``sql_type`` in PostgreSQL's words), its values
    ``convert``ed from what was read before the change."""
    bind = op.get_bind()
    for name, (key, columns) in TIMES.items():
        old = sa.table(name, sa.column(key), *(sa.column(c, old_type) for c in columns))
        rows = bind.execute(sa.select(old)).all()
        with op.batch_alter_table(name) as batch:
            for column, nullable in columns.items():
                batch.alter_column(column, type_=new_type, existing_type=old_type, existing_nullable=nullable,
                                   postgresql_using=f"{column}::{sql_type}")
        new = sa.table(name, sa.column(key), *(sa.column(c, new_type) for c in columns))
        for row in rows:
            bind.execute(sa.update(new).where(new.c[key] == getattr(row, key)).values(
                **{c: convert(getattr(row, c)) for c in columns}))


def upgrade() -> None:
    change(sa.String(40), UTCDateTime(), "timestamp with time zone", moment)


def downgrade() -> None:
    change(UTCDateTime(), sa.String(40), "varchar(40)",
           lambda value: None if value is None else value.isoformat(timespec="microseconds"))
