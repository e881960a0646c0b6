"""Read-only views of issues: the JSON of INTERFACE.md, shared by the CLI (and later the web).

Times are ISO 8601 in UTC with a ``Z``; a message's ``date`` is its Date header as sent.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailtracker.config import Config
from mailtracker.forge_models import ForgeLink
from mailtracker.models import (
    Address,
    Issue,
    IssueLabel,
    JournalEntry,
    Message,
    Nosy,
    Tracker,
    User,
)
from mailtracker.values import LARGEST_ID

__all__ = ["find_issue", "iso", "issue_json", "list_issues", "parse_issue_ref"]

_REF = re.compile(r"^(?:(?P<tracker>[\w-]+)/)?(?:(?P<tag>[a-z]+))?(?P<number>\d+)$", re.I)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC, microsecond=0).isoformat().replace("+00:00", "Z")


def parse_issue_ref(ref: str, config: Config) -> tuple[str, int]:
    """``42``, ``issue42`` or ``bugs/42`` → ``("bugs", 42)``; the first tracker by default."""
    match = _REF.match(ref.strip())
    if match is None:
        raise ValueError(f"'{ref}' is not an issue: write 42, issue42 or TRACKER/42")
    name = match.group("tracker") or _tracker_for_tag(match.group("tag"), config)
    if name not in {t.name for t in config.trackers}:
        raise ValueError(f"there is no tracker '{name}'")
    number = int(match.group("number"))
    if number > LARGEST_ID:  # no issue has it, and the database could not be asked
        raise ValueError(f"no issue {name}/{number}")
    return name, number


def _tracker_for_tag(tag: str | None, config: Config) -> str:
    for tracker in config.trackers:
        if tag and tracker.subject_tag.lower() == tag.lower():
            return tracker.name
    return config.trackers[0].name


def find_issue(session: Session, tracker: str, number: int) -> Issue | None:
    return session.scalar(
        select(Issue)
        .join(Tracker, Tracker.id == Issue.tracker_id)
        .where(Tracker.name == tracker, Issue.number == number)
    )


def list_issues(session: Session, tracker: str | None, status: str | None) -> list[Issue]:
    query = select(Issue).join(Tracker, Tracker.id == Issue.tracker_id)
    if tracker:
        query = query.where(Tracker.name == tracker)
    if status:
        query = query.where(Issue.status == status)
    return list(session.scalars(query.order_by(Tracker.name, Issue.number)))


def issue_json(session: Session, issue: Issue, *, full: bool) -> dict[str, Any]:
    """The object of ``show --json``; without ``messages`` and ``history`` unless ``full``."""
    tracker = session.get_one(Tracker, issue.tracker_id)
    emails = _emails(session, [issue.assignee_id] if issue.assignee_id else [])
    data: dict[str, Any] = {
        "id": f"{tracker.name}/{issue.number}",
        "tracker": tracker.name,
        "number": issue.number,
        "title": issue.title,
        "status": issue.status,
        "priority": issue.priority,
        "assignee": emails.get(issue.assignee_id) if issue.assignee_id else None,
        "labels": sorted(
            session.scalars(select(IssueLabel.label).where(IssueLabel.issue_id == issue.id))
        ),
        "nosy": _nosy(session, issue.id),
        "created": iso(issue.created_at),
        "updated": iso(issue.updated_at),
    }
    if full:
        data["messages"] = _messages(session, issue.id)
        data["history"] = _history(session, issue.id)
        data["links"] = _links(session, issue.id)
    return data


def _links(session: Session, issue_id: int) -> list[dict[str, Any]]:
    """Pull requests, commits and comments on a forge that mention the issue."""
    rows = session.scalars(
        select(ForgeLink).where(ForgeLink.issue_id == issue_id).order_by(ForgeLink.id)
    )
    return [{"kind": r.kind, "url": r.url, "title": r.title, "state": r.state} for r in rows]


def _emails(session: Session, user_ids: Iterable[int | None]) -> dict[int, str]:
    """The first (primary) address of each user."""
    ids = {i for i in user_ids if i is not None}
    result: dict[int, str] = {}
    if not ids:
        return result
    rows = session.execute(
        select(Address.user_id, Address.email).where(Address.user_id.in_(ids)).order_by(Address.id)
    )
    for user_id, email in rows:
        result.setdefault(user_id, email)
    return result


def _nosy(session: Session, issue_id: int) -> list[str]:
    ids = session.scalars(select(Nosy.user_id).where(Nosy.issue_id == issue_id))
    return sorted(_emails(session, ids).values())


def _messages(session: Session, issue_id: int) -> list[dict[str, Any]]:
    messages = list(
        session.scalars(
            select(Message)
            .where(Message.issue_id == issue_id, Message.is_comment.is_(True))
            .order_by(Message.id)
        )
    )
    emails = _emails(session, (m.author_id for m in messages))
    return [
        {
            "message_id": m.message_id,
            "author": emails.get(m.author_id) if m.author_id else None,
            "date": m.date,
            "subject": m.subject,
            "body": m.body,
            "visible": m.visible if m.visible is not None else m.body,
            "verified": m.verified,
            "evidence": m.evidence,
            "attachments": [
                {
                    "filename": a.filename,
                    "content_type": a.content_type,
                    "size": a.size,
                    "sha256": a.sha256,
                }
                for a in m.attachments
            ],
        }
        for m in messages
    ]


def _history(session: Session, issue_id: int) -> list[dict[str, Any]]:
    entries = list(
        session.scalars(
            select(JournalEntry).where(JournalEntry.issue_id == issue_id).order_by(JournalEntry.id)
        )
    )
    emails = _emails(session, (e.actor_id for e in entries))
    causes = _message_ids(session, [e.message_pk for e in entries if e.message_pk])
    return [
        {
            "date": iso(e.created_at),
            "actor": emails.get(e.actor_id) if e.actor_id else None,
            "changes": e.changes,
            "message_id": causes.get(e.message_pk) if e.message_pk else None,
        }
        for e in entries
    ]


def _message_ids(session: Session, pks: list[int]) -> dict[int, str]:
    """The Message-ID of the mail behind each change: the reason it was made (for a forge
    change, the message naming the pull request or commit)."""
    if not pks:
        return {}
    rows = session.execute(select(Message.id, Message.message_id).where(Message.id.in_(pks)))
    return {pk: mid for pk, mid in rows}


def users_json(session: Session) -> list[dict[str, Any]]:
    users = list(session.scalars(select(User).order_by(User.id)))
    addresses: dict[int, list[str]] = defaultdict(list)
    for user_id, email in session.execute(
        select(Address.user_id, Address.email).order_by(Address.id)
    ):
        addresses[user_id].append(email)
    return [
        {
            "email": (addresses[u.id] or [""])[0],
            "addresses": addresses[u.id],
            "name": u.name,
            "role": u.role,
            "created": iso(u.created_at),
        }
        for u in users
    ]
