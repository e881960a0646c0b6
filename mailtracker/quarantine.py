"""Quarantine: mail that tripped a bug is kept, never dropped, and re-run after the fix.

Mailman's shunt queue is the model: the sender's MTA gets ``250`` (the mail is safe with
us, and retrying a bug would only repeat it), the administrator sees the mail and the
traceback in ``mailtracker quarantine list|show``, and ``retry`` runs it through the
pipeline again. A retry is idempotent: a mail that was stored meanwhile is a duplicate.
If even the quarantine cannot be written (the database is down), the pipeline answers 451.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import defer

from mailtracker import blobio
from mailtracker.models import Quarantined, utcnow
from mailtracker.store import Store, table
from mailtracker.values import Envelope

__all__ = ["Entry", "Listed", "entries", "entry", "keep", "record_retry"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listed:
    """A quarantined mail as the list shows it: not its bytes, which may be megabytes
    each, and a bug that trips on every attachment fills the quarantine with such mail."""

    id: int
    message_id: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    created_at: datetime
    status: str
    error: str
    outcome: str

    @property
    def envelope(self) -> Envelope:
        return Envelope(self.mail_from, self.rcpt_tos)


@dataclass(frozen=True)
class Entry(Listed):
    """One quarantined mail with its bytes, to show or to re-run."""

    raw: bytes


def keep(store: Store, raw: bytes, envelope: Envelope, message_id: str, error: str) -> int:
    """Store the mail and the error; returns the quarantine id."""
    values = {
        "message_id": message_id,
        "mail_from": envelope.mail_from,
        "rcpt_tos": list(envelope.rcpt_tos),
        "error": error,
        "created_at": utcnow(),
        "status": "held",
        "outcome": "",
        "raw": raw,
    }
    with store.write() as session:
        return blobio.insert_row(session, table(Quarantined).insert(), values)


def entries(store: Store, include_done: bool = False) -> list[Listed]:
    query = select(Quarantined).options(defer(Quarantined.raw)).order_by(Quarantined.id)
    if not include_done:
        query = query.where(Quarantined.status == "held")
    with store.read() as session:
        return [_listed(row) for row in session.scalars(query)]


def entry(store: Store, quarantine_id: int) -> Entry | None:
    with store.read() as session:
        row = session.get(Quarantined, quarantine_id)
        return _entry(row) if row else None


def record_retry(store: Store, quarantine_id: int, outcome: str, done: bool) -> None:
    """Note what a retry gave; ``done`` (stored or refused for good) takes it off the list."""
    with store.write() as session:
        row = session.get_one(Quarantined, quarantine_id)
        row.outcome = outcome
        row.retried_at = utcnow()
        row.status = "done" if done else "held"


def _listed(row: Quarantined) -> Listed:
    return Listed(
        id=row.id,
        message_id=row.message_id,
        mail_from=row.mail_from,
        rcpt_tos=tuple(row.rcpt_tos),
        created_at=row.created_at,
        status=row.status,
        error=row.error,
        outcome=row.outcome,
    )


def _entry(row: Quarantined) -> Entry:
    return Entry(**vars(_listed(row)), raw=row.raw)
