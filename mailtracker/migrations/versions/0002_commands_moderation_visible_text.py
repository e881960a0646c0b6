"""commands, moderation, visible text

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 15:21:45.762836
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "control_mail",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tracker_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tracker_id"], ["trackers.id"], name=op.f("fk_control_mail_tracker_id_trackers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_control_mail")),
        sa.UniqueConstraint(
            "tracker_id", "message_id", name=op.f("uq_control_mail_tracker_id_message_id")
        ),
    )
    op.create_table(
        "held_mail",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tracker_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("mail_from", sa.String(length=320), nullable=False),
        sa.Column("rcpt", sa.String(length=320), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tracker_id"], ["trackers.id"], name=op.f("fk_held_mail_tracker_id_trackers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_held_mail")),
        sa.UniqueConstraint("token", name=op.f("uq_held_mail_token")),
        sa.UniqueConstraint(
            "tracker_id", "message_id", name=op.f("uq_held_mail_tracker_id_message_id")
        ),
    )
    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reporter_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_issues_reporter_id_users"), "users", ["reporter_id"], ["id"]
        )

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("visible", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("is_comment", sa.Boolean(), server_default=sa.true(), nullable=False)
        )

    # The reporter of an existing issue is the author of its first message.
    op.execute(
        "UPDATE issues SET reporter_id = (SELECT m.author_id FROM messages m "
        "WHERE m.issue_id = issues.id ORDER BY m.id LIMIT 1)"
    )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("is_comment")
        batch_op.drop_column("visible")

    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_issues_reporter_id_users"), type_="foreignkey")
        batch_op.drop_column("reporter_id")

    op.drop_table("held_mail")
    op.drop_table("control_mail")
