"""indexes for abuse limits

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 15:58:37.846937
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_issues_reporter_id_created_at"),
            ["reporter_id", "created_at"],
            unique=False,
        )

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_messages_author_id_received_at"),
            ["author_id", "received_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_author_id_received_at"))

    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_issues_reporter_id_created_at"))
