"""outbox.claimed_by: which worker holds a row's lease

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25 21:00:00.000000

Why: after a crash, the notifications the dead worker had claimed waited for their lease
(10 minutes) before anyone sent them. With the claimant named (``HOST:PID:START``), a
delivery worker starting on the same host hands back at once the claims of processes that
no longer run (``claims.py``). Rows claimed before this revision have no claimant and keep
waiting for their lease, as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("claimed_by", sa.String(300), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox", "claimed_by")
