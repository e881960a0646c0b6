"""What the web pages and the API read: the same JSON as ``mailtracker show --json``.

Pages and API share these functions, so a page shows exactly what the API returns. They
run in the gateway's thread pool (synchronous SQLAlchemy), never on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailtracker.config import Config
from mailtracker.models import Attachment, Blob, Issue, Message, Tracker, User
from mailtracker.views import find_issue, issue_json
from mailtracker.web_mask import Masker
from mailtracker.web_search import Filters, Page, search_issues

__all__ = [
    "Download",
    "attachment",
    "author_names",
    "issue_detail",
    "issue_list",
    "raw_message",
    "thread",
    "trackers_data",
]


@dataclass(frozen=True)
class Download:
    filename: str
    content_type: str
    data: bytes


def trackers_data(session: Session, config: Config) -> list[dict[str, Any]]:
    """Every configured tracker, with its vocabulary and how many issues it has."""
    rows = session.execute(
        select(Tracker.name, func.count(Issue.id))
        .join(Issue, Issue.tracker_id == Tracker.id)
        .group_by(Tracker.name)
    )
    counts = {name: int(count) for name, count in rows}
    return [
        {
            "name": t.name,
            "title": t.title,
            "address": t.address,
            "subject_tag": t.subject_tag,
            "statuses": list(t.statuses),
            "priorities": list(t.priorities),
            "labels": list(t.labels),
            "issues": int(counts.get(t.name, 0)),
        }
        for t in config.trackers
    ]


def issue_list(
    session: Session, tracker: str, filters: Filters, page: int, per_page: int, masker: Masker
) -> tuple[list[dict[str, Any]], Page]:
    found = search_issues(session, tracker, filters, page, per_page)
    return [masker.issue(issue_json(session, i, full=False)) for i in found.issues], found


def issue_detail(
    session: Session, tracker: str, number: int, masker: Masker
) -> dict[str, Any] | None:
    """``show --json`` of one issue, masked as ``masker`` says; ``None`` if there is none."""
    issue = find_issue(session, tracker, number)
    if issue is None:
        return None
    return masker.issue(issue_json(session, issue, full=True))


def author_names(session: Session, tracker: str, number: int) -> list[str]:
    """The display name of each message's author, in the order of ``issue_json``."""
    issue = find_issue(session, tracker, number)
    if issue is None:
        return []
    rows = session.execute(
        select(User.name)
        .select_from(Message)
        .outerjoin(User, User.id == Message.author_id)
        .where(Message.issue_id == issue.id, Message.is_comment.is_(True))
        .order_by(Message.id)
    )
    return [name or "" for (name,) in rows]


def attachment(session: Session, tracker: str, number: int, sha256: str) -> Download | None:
    """An attachment of this issue by its SHA-256 (its contents are kept once per hash)."""
    issue = find_issue(session, tracker, number)
    if issue is None:
        return None
    row = session.scalar(
        select(Attachment)
        .join(Message, Message.id == Attachment.message_pk)
        .where(Message.issue_id == issue.id, Attachment.sha256 == sha256.lower())
        .order_by(Attachment.id)
        .limit(1)
    )
    blob = session.get(Blob, row.sha256) if row is not None else None
    if row is None or blob is None:
        return None
    return Download(row.filename, row.content_type, blob.data)


def raw_message(session: Session, tracker: str, number: int, message_id: str) -> bytes | None:
    issue = find_issue(session, tracker, number)
    if issue is None:
        return None
    return session.scalar(
        select(Message.raw).where(Message.issue_id == issue.id, Message.message_id == message_id)
    )


def thread(session: Session, tracker: str, number: int) -> list[tuple[bytes, str, datetime]] | None:
    """Every stored mail of the issue in the order it arrived: raw, Message-ID, arrival."""
    issue = find_issue(session, tracker, number)
    if issue is None:
        return None
    rows = session.execute(
        select(Message.raw, Message.message_id, Message.received_at)
        .where(Message.issue_id == issue.id)
        .order_by(Message.id)
    )
    return [(raw, mid, when) for raw, mid, when in rows]
