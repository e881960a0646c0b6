"""Read what the tracker stored, for assertions: issues as JSON, outbox rows, row counts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from mailtracker.models import Outbox
from mailtracker.store import Store
from mailtracker.values import Incoming
from mailtracker.views import find_issue, issue_json

BLANK = Incoming(
    raw=b"",
    message_id="m@x",
    in_reply_to=(),
    references=(),
    from_addr="a@x",
    from_name="",
    to=(),
    cc=(),
    subject="",
    date="",
    text="",
    html=None,
    attachments=(),
)


def show(store: Store, number: int = 1, tracker: str = "bugs") -> dict[str, Any]:
    """The issue as ``mailtracker show --json`` prints it."""
    with store.read() as session:
        issue = find_issue(session, tracker, number)
        assert issue is not None, f"no issue {tracker}/{number}"
        return issue_json(session, issue, full=True)


def outbox(store: Store) -> list[Outbox]:
    with store.read() as session:
        return list(session.scalars(select(Outbox).order_by(Outbox.id)))


def count(store: Store, model: type) -> int:
    with store.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)
