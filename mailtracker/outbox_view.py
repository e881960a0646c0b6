"""The outbox as ``mailtracker outbox`` shows it: queued and failed mail, oldest first.

Apart from ``deliver.py``, which sends the outbox: an operator's view of the queue, like
Postfix's ``mailq``, read in one query with the tracker's name and the issue's number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from mailtracker.models import Issue, Outbox, Tracker
from mailtracker.store import Store
from mailtracker.views import iso

__all__ = ["OutboxView", "outbox_rows"]


@dataclass(frozen=True)
class OutboxView:
    """One outbox row as ``mailtracker outbox`` shows it."""

    id: int
    message_id: str
    tracker: str
    issue: int | None
    recipient: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str
    created_at: datetime
    sent_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "message_id": self.message_id,
            "tracker": self.tracker,
            "issue": self.issue,
            "recipient": self.recipient,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": iso(self.next_attempt_at),
            "last_error": self.last_error,
            "created_at": iso(self.created_at),
            "sent_at": iso(self.sent_at),
        }


def outbox_rows(store: Store, include_sent: bool = False) -> list[OutboxView]:
    """Queued and failed mail (and sent mail if asked), oldest first."""
    query = (
        select(
            Outbox.id,
            Outbox.message_id,
            Tracker.name,
            Issue.number,
            Outbox.recipient,
            Outbox.status,
            Outbox.attempts,
            Outbox.next_attempt_at,
            Outbox.last_error,
            Outbox.created_at,
            Outbox.sent_at,
        )
        .select_from(Outbox)
        .join(Tracker, Tracker.id == Outbox.tracker_id)
        .outerjoin(Issue, Issue.id == Outbox.issue_id)
        .order_by(Outbox.id)
    )
    if not include_sent:
        query = query.where(Outbox.status != "sent")
    with store.read() as session:
        return [OutboxView(*row) for row in session.execute(query)]
