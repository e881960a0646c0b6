"""raw as the last column of held_mail, quarantine and bounces on SQLite

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25 20:40:00.000000

Why: what 0011 did for ``messages``. These tables keep a whole mail too (held for a
moderator, quarantined after a bug, a bounce), and ``blobio.insert_row`` writes a large one
through SQLite's blob I/O, which saves memory only when ``raw`` is the row's last column.
A 25 MB mail held for a moderator cost 2.8 times its size, 0.8 with ``raw`` last.

Cost: each row of these three tables is written twice on upgrade; they hold little next to
``messages``. PostgreSQL is left alone (TOAST keeps large values out of the row).
"""

from __future__ import annotations

import sqlite3

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_DROP_COLUMN = (3, 35, 0)  # as in 0011: an older SQLite keeps the old order
_TABLES = ("held_mail", "quarantine", "bounces")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite" or sqlite3.sqlite_version_info < _DROP_COLUMN:
        return
    for name in _TABLES:
        op.execute(f"ALTER TABLE {name} ADD COLUMN raw_last BLOB NOT NULL DEFAULT x''")
        op.execute(f"UPDATE {name} SET raw_last = raw")
        op.execute(f"ALTER TABLE {name} DROP COLUMN raw")
        op.execute(f"ALTER TABLE {name} RENAME COLUMN raw_last TO raw")


def downgrade() -> None:
    """Nothing to undo: revision 0011's schema is the same but for the order of columns."""
