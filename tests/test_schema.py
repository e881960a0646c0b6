"""The migrations build the schema the models describe, on both databases: a model changed
without a migration, or a migration the models do not follow, shows up here (alembic's
autogenerate comparison), not in production."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mailtracker import forge_models
from mailtracker.models import Base
from mailtracker.store import Store


def _ours(name: str | None, kind: str, parents: Any) -> bool:
    """Full-text search (migration 0008) has no model: SQLite's FTS5 tables, PostgreSQL's
    expression indexes, all named ``*_fts*``."""
    return name is None or "_fts" not in name


def test_migrations_and_models_agree(store: Store) -> None:
    assert forge_models.ForgeLink.__table__.metadata is Base.metadata
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": _ours})
        assert compare_metadata(context, Base.metadata) == []
