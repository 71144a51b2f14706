"""The site's schema as it was before migrations (``metadata.create_all``): times as ISO 8601 strings.

A database made then has these tables and no ``alembic_version``; ``db.upgrade`` stamps it with this revision.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "students",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(64), unique=True, nullable=True),
        sa.Column("session_version", sa.Integer, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
    )
    op.create_table(
        "staff",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("session_version", sa.Integer, nullable=False),
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("receipt", sa.String(32), unique=True, nullable=False),
        sa.Column("student_id", sa.String(64), nullable=False, index=True),
        sa.Column("assignment", sa.String(64), nullable=False, index=True),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("submitted_at", sa.String(40), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("late", sa.Boolean, nullable=False),
        sa.Column("file", sa.String(400), nullable=False),
        sa.Column("check_state", sa.String(16), nullable=False, index=True),
        sa.Column("check_started_at", sa.String(40)),
        sa.Column("check_finished_at", sa.String(40)),
        sa.Column("check_note", sa.Text, nullable=False),
        sa.UniqueConstraint("student_id", "assignment", "number"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("assignment", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("finished_at", sa.String(40)),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_table(
        "releases",
        sa.Column("assignment", sa.String(64), primary_key=True),
        sa.Column("released_at", sa.String(40), nullable=False),
        sa.Column("released_by", sa.String(64), nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("events", "releases", "jobs", "attempts", "staff", "students"):
        op.drop_table(table)
