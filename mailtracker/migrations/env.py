"""Alembic environment: run with the connection that ``store.upgrade_schema`` hands in."""

from __future__ import annotations

from typing import Any

from alembic import context

from mailtracker import forge_models  # noqa: F401  (its tables join Base.metadata)
from mailtracker.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through 'mailtracker db upgrade', not the alembic CLI")


def _ours(name: str | None, kind: str, parents: Any) -> bool:
    """Autogenerate leaves alone the full-text search tables of migration 0008 (SQLite's
    FTS5 tables and their shadow tables, ``*_fts`` and ``*_fts_*``): no model describes
    them, and a generated migration must never drop them."""
    return not (kind == "table" and name is not None and "_fts" in name)


context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_name=_ours,
)
with context.begin_transaction():
    context.run_migrations()
