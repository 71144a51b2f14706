"""LTI 1.3: the LMSs this site is a tool of (registrations and their deployments), the login initiations waiting for
their launch, the nonces used, staff identities at an LMS, the course links and their line items, and the grade
outbox; the one-time keys of dynamic registration URLs.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from autograder.site.db import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lti_platforms",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("issuer", sa.String(200), nullable=False),
        sa.Column("client_id", sa.String(200), nullable=False),
        sa.Column("auth_url", sa.String(500), nullable=False),
        sa.Column("token_url", sa.String(500), nullable=False),
        sa.Column("jwks_url", sa.String(500), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("issuer", "client_id"),
    )
    op.create_table(
        "lti_deployments",
        sa.Column("platform_id", sa.Integer, sa.ForeignKey("lti_platforms.id"), primary_key=True),
        sa.Column("deployment_id", sa.String(255), primary_key=True),
    )
    op.create_table(
        "lti_logins",
        sa.Column("state", sa.String(64), primary_key=True),
        sa.Column("browser", sa.String(64), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("platform_id", sa.Integer, sa.ForeignKey("lti_platforms.id"), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False, index=True),
    )
    op.create_table(
        "lti_nonces",
        sa.Column("issuer", sa.String(200), primary_key=True),
        sa.Column("nonce", sa.String(255), primary_key=True),
        sa.Column("used_at", UTCDateTime(), nullable=False, index=True),
    )
    op.create_table(
        "lti_staff",
        sa.Column("issuer", sa.String(200), primary_key=True),
        sa.Column("subject", sa.String(255), primary_key=True),
        sa.Column("username", sa.String(64), sa.ForeignKey("staff.username"), nullable=False, index=True),
    )
    op.create_table(
        "lti_links",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("platform_id", sa.Integer, sa.ForeignKey("lti_platforms.id"), nullable=False),
        sa.Column("deployment_id", sa.String(255), nullable=False),
        sa.Column("resource_link", sa.String(255), nullable=False),
        sa.Column("context_id", sa.String(255), nullable=False),
        sa.Column("assignment", sa.String(64), nullable=False, index=True),
        sa.Column("lineitem", sa.String(500), nullable=False),
        sa.Column("memberships", sa.String(500), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("platform_id", "resource_link"),
    )
    op.create_table(
        "lti_registration_keys",
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime()),
    )
    op.create_table(
        "lti_scores",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("link_id", sa.Integer, sa.ForeignKey("lti_links.id"), nullable=False),
        sa.Column("student_id", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("max_score", sa.Float, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("tries", sa.Integer, nullable=False),
        sa.Column("next_try_at", UTCDateTime(), nullable=False),
        sa.Column("scored_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime()),
        sa.Column("error", sa.Text, nullable=False),
        sa.UniqueConstraint("link_id", "student_id"),
    )


def downgrade() -> None:
    for table in ("lti_scores", "lti_registration_keys", "lti_links", "lti_staff", "lti_nonces", "lti_logins", "lti_deployments",
                  "lti_platforms"):
        op.drop_table(table)
