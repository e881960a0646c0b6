"""Alembic environment: run with the connection that ``store.upgrade_schema`` hands in."""

from __future__ import annotations

from alembic import context

from mailtracker.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through 'mailtracker db upgrade', not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
