"""Large byte values written to SQLite through its incremental blob I/O, not as parameters.

Why: Python's ``sqlite3`` binds a parameter with ``SQLITE_TRANSIENT``, so SQLite copies it;
building the row's record copies it again; and the bound copy stays in the connection's
statement cache until that statement runs again. Storing a 25 MB mail and its attachment
took twice each at its insert and kept the mail's copy while the attachment was written.
So on SQLite a value of at least ``LARGE`` bytes is inserted as ``zeroblob(n)`` (a length,
not a copy) and then written into the row in slices with ``sqlite3.Connection.blobopen``,
inside the same transaction. PostgreSQL binds the value as before.

SQLite keeps a ``zeroblob`` as a mere length only when no later column of the row holds
data, else it builds the zeros and the row in memory after all: so every ``raw`` column is
its table's last (``messages`` since migration 0011; ``held_mail``, ``quarantine`` and
``bounces`` since 0012), as ``blobs.data`` is. Rows are addressed by ``id``: an
``INTEGER PRIMARY KEY`` is SQLite's rowid.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CursorResult, Insert, func
from sqlalchemy.orm import Session

from mailtracker.models import Blob

__all__ = ["LARGE", "add_blob", "fill", "insert_row", "is_large"]

LARGE = 1 << 20
_SLICE = 1 << 20  # bytes per blob write: SQLite's page cache, not the mail, bounds memory


def is_large(session: Session, data: bytes) -> bool:
    """Whether ``data`` goes in through blob I/O: on SQLite, from ``LARGE`` bytes."""
    return len(data) >= LARGE and session.get_bind().dialect.name == "sqlite"


def fill(session: Session, table: str, column: str, rowid: int, data: bytes) -> None:
    """Write ``data`` into the row inserted with ``zeroblob`` (nothing to do if it was not
    large)."""
    if not is_large(session, data):
        return
    connection = session.connection().connection.driver_connection
    assert connection is not None
    view = memoryview(data)
    with connection.blobopen(table, column, rowid) as blob:
        for start in range(0, len(data), _SLICE):
            blob.write(view[start : start + _SLICE])


def add_blob(session: Session, sha256: str, data: bytes) -> None:
    """One large attachment's contents (``is_large``), unless a row with its SHA-256 is
    already there: ``store.insert_ignore`` does the same for small ones, many at once."""
    from sqlalchemy.dialects import sqlite  # only SQLite comes here; PostgreSQL binds

    insert = sqlite.insert(Blob).values(sha256=sha256, data=func.zeroblob(len(data)))
    result = session.execute(insert.on_conflict_do_nothing())
    assert isinstance(result, CursorResult)
    if result.rowcount == 1:  # not a file some earlier mail brought already
        fill(session, Blob.__tablename__, "data", result.lastrowid, data)


def insert_row(
    session: Session, statement: Insert, values: dict[str, Any], column: str = "raw"
) -> int:
    """Run ``statement`` (an INSERT of one row) with ``values``, whose ``column`` holds a
    mail of any size; returns the row's id. A large mail goes in as ``zeroblob(n)`` (an
    expression, not a parameter), then ``fill`` writes it.

    For every table that keeps a whole mail: the stored message on the mail path, held,
    quarantined and bounced mail (bound as a parameter, a 25 MB mail held for a moderator
    cost 2.8 times its size where a stored one costs 0.8)."""
    data: bytes = values[column]
    if is_large(session, data):
        statement = statement.values({column: func.zeroblob(len(data))})
        values = {name: value for name, value in values.items() if name != column}
    result = session.execute(statement, values)
    assert isinstance(result, CursorResult) and result.inserted_primary_key is not None
    rowid = int(result.inserted_primary_key[0])
    fill(session, statement.table.name, column, rowid, data)
    return rowid
