"""messages.raw as the last column on SQLite

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25 18:30:00.000000

Why: a large mail's bytes go into ``messages.raw`` through SQLite's incremental blob I/O
(``blobio.py``): the row is inserted with ``zeroblob(n)`` and the bytes written into it
afterwards, so SQLite never holds a copy of the mail. SQLite keeps a zeroblob as a mere
length only when no later column of the row holds data; ``raw`` was followed by the
columns later migrations added (``visible``, ``evidence``), so SQLite built the zeros and
the row (twice the mail) in memory. The model declares ``raw`` last; this puts it last in
the table too. A migration that adds a column to ``messages`` must move ``raw`` after it
again (tests/test_big_mail.py checks).

Cost: every row of ``messages`` is written twice (the copy, then DROP COLUMN), in one
transaction, so the upgrade of a large archive takes a while and its WAL grows to about
twice the table until the next checkpoint. PostgreSQL is left alone: it keeps large values
out of the row (TOAST), where the order of columns does not matter.
"""

from __future__ import annotations

import sqlite3

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# ALTER TABLE … DROP COLUMN arrived in SQLite 3.35; an older SQLite keeps the old order,
# which costs memory on large mails and nothing else.
_DROP_COLUMN = (3, 35, 0)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite" or sqlite3.sqlite_version_info < _DROP_COLUMN:
        return
    # ALTER TABLE keeps the table (its triggers, the full-text index over ``body``, the
    # foreign keys pointing at it), where a rebuild would drop and re-create all of them.
    op.execute("ALTER TABLE messages ADD COLUMN raw_last BLOB NOT NULL DEFAULT x''")
    op.execute("UPDATE messages SET raw_last = raw")
    op.execute("ALTER TABLE messages DROP COLUMN raw")
    op.execute("ALTER TABLE messages RENAME COLUMN raw_last TO raw")


def downgrade() -> None:
    """Nothing to undo: revision 0010's schema is the same but for the order of columns."""
