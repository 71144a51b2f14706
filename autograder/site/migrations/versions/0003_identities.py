"""A place for a student's identity at an LMS (LTI 1.3's issuer and ``sub``), for a sign-in method beside the
links; nothing fills it yet.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identities",
        sa.Column("issuer", sa.String(200), primary_key=True),
        sa.Column("subject", sa.String(255), primary_key=True),
        sa.Column("student_id", sa.String(64), sa.ForeignKey("students.id"), nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("identities")
