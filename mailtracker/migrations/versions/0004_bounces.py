"""bounces

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 15:45:39.494430
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bounce_scores",
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("last_bounce_at", sa.DateTime(), nullable=False),
        sa.Column("disabled_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_bounce_scores")),
    )
    with op.batch_alter_table("bounce_scores", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_bounce_scores_disabled_at"), ["disabled_at"], unique=False
        )

    op.create_table(
        "bounces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("permanent", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("diagnostic", sa.Text(), nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["outbox_id"], ["outbox.id"], name=op.f("fk_bounces_outbox_id_outbox")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounces")),
    )
    with op.batch_alter_table("bounces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bounces_address"), ["address"], unique=False)

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("verp_token", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_outbox_verp_token"), ["verp_token"])


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_outbox_verp_token"), type_="unique")
        batch_op.drop_column("verp_token")

    with op.batch_alter_table("bounces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bounces_address"))

    op.drop_table("bounces")
    with op.batch_alter_table("bounce_scores", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bounce_scores_disabled_at"))

    op.drop_table("bounce_scores")
