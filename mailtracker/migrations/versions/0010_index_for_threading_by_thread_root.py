"""index for threading by thread root

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 16:56:49.491268
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_issues_tracker_id_thread_root"),
            ["tracker_id", "thread_root"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_issues_tracker_id_thread_root"))
