"""web: full-text search indexes and API tokens

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 16:30:00.000000

Search covers issue titles and message bodies (``web_search.py``).

- SQLite: two FTS5 tables with external content (``issues_fts`` over ``issues.title``,
  ``messages_fts`` over ``messages.body``), so the text is not stored twice, kept in step
  by triggers. A later migration that makes SQLite recreate ``issues`` or ``messages``
  (alembic's batch mode copies the table and drops the old one) drops these triggers with
  it: such a migration must create them again (copy ``_SQLITE_TRIGGERS``) and run
  ``INSERT INTO messages_fts(messages_fts) VALUES('rebuild')``.
- PostgreSQL: GIN indexes on ``to_tsvector('simple', …)``; the queries use the very same
  expressions, or the planner cannot use the indexes.

The ``simple`` configuration and FTS5's ``unicode61`` tokenizer both split words without
stemming, which suits mail in many languages and gives the same matches on both databases.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_FTS = {"issues_fts": ("issues", "title"), "messages_fts": ("messages", "body")}

_SQLITE_TRIGGERS = (
    "CREATE TRIGGER {fts}_ai AFTER INSERT ON {table} BEGIN "
    "INSERT INTO {fts}(rowid, {column}) VALUES (new.id, new.{column}); END",
    "CREATE TRIGGER {fts}_ad AFTER DELETE ON {table} BEGIN "
    "INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.id, old.{column}); END",
    "CREATE TRIGGER {fts}_au AFTER UPDATE OF {column} ON {table} BEGIN "
    "INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.id, old.{column}); "
    "INSERT INTO {fts}(rowid, {column}) VALUES (new.id, new.{column}); END",
)


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
        sa.UniqueConstraint("user_id", name=op.f("uq_api_tokens_user_id")),
    )
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_up()
    else:
        _postgresql_up()


def _sqlite_up() -> None:
    for fts, (table, column) in _FTS.items():
        op.execute(
            f"CREATE VIRTUAL TABLE {fts} USING fts5({column}, content='{table}', "
            "content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
        )
        for trigger in _SQLITE_TRIGGERS:
            op.execute(trigger.format(fts=fts, table=table, column=column))
        op.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")


def _postgresql_up() -> None:
    for fts, (table, column) in _FTS.items():
        op.execute(f"CREATE INDEX ix_{fts} ON {table} USING gin (to_tsvector('simple', {column}))")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for fts in _FTS:
            for suffix in ("ai", "ad", "au"):
                op.execute(f"DROP TRIGGER IF EXISTS {fts}_{suffix}")
            op.execute(f"DROP TABLE IF EXISTS {fts}")
    else:
        for fts in _FTS:
            op.execute(f"DROP INDEX IF EXISTS ix_{fts}")
    op.drop_table("api_tokens")
