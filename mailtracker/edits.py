"""Apply validated ``Edit``s to an issue and report each change as ``(property, old, new)``.

Values in the report are what people read: addresses for people, comma-separated sorted
lists for labels and nosy, ``""`` for nothing. An edit that changes nothing is not reported,
so the journal and the notification only say what really changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mailtracker import store
from mailtracker.models import IssueLabel, Nosy
from mailtracker.values import Edit

__all__ = ["IssueState", "apply_edits"]

Change = tuple[str, str, str]


@dataclass
class IssueState:
    """An issue's columns as ``apply`` read or wrote them, without an ORM object: edits
    change them here and note each in ``changed``, which ``apply`` then writes with
    ``updated_at`` in one UPDATE (the ORM's unit of work took two and most of the time)."""

    id: int
    number: int
    reporter_id: int | None
    title: str
    status: str
    priority: str | None = None
    assignee_id: int | None = None
    changed: dict[str, Any] = field(default_factory=dict)

    def set(self, column: str, value: Any) -> None:
        setattr(self, column, value)
        self.changed[column] = value


def apply_edits(session: Session, issue: IssueState, edits: tuple[Edit, ...]) -> list[Change]:
    changes: list[Change] = []
    for prop in ("title", "status", "priority", "assignee", "labels", "nosy"):
        mine = [e for e in edits if e.prop == prop]
        if not mine:
            continue
        old, new = _APPLY[prop](session, issue, mine)
        if old != new:
            changes.append((prop, old, new))
    return changes


def _scalar(session: Session, issue: IssueState, edits: list[Edit]) -> tuple[str, str]:
    prop = edits[0].prop
    old = getattr(issue, prop) or ""
    new = edits[-1].value
    issue.set(prop, (new or None) if prop == "priority" else new)
    return old, new


def _assignee(session: Session, issue: IssueState, edits: list[Edit]) -> tuple[str, str]:
    old = _email(session, issue.assignee_id)
    address = edits[-1].value
    user = store.user_by_address(session, address) if address else None
    issue.set("assignee_id", user.id if user else None)
    return old, _email(session, issue.assignee_id)


def _email(session: Session, user_id: int | None) -> str:
    users = store.users_by_ids(session, [user_id] if user_id else [])
    return users[0].email if users else ""


def _combine(current: set[str], edits: list[Edit]) -> set[str]:
    result = set(current)
    for edit in edits:
        names = {n for n in edit.value.split(",") if n}
        if edit.op == "set":
            result = names
        elif edit.op == "add":
            result |= names
        else:
            result -= names
    return result


def _labels(session: Session, issue: IssueState, edits: list[Edit]) -> tuple[str, str]:
    current = set(session.scalars(select(IssueLabel.label).where(IssueLabel.issue_id == issue.id)))
    wanted = _combine(current, edits)
    session.execute(
        delete(IssueLabel).where(
            IssueLabel.issue_id == issue.id, IssueLabel.label.in_(current - wanted)
        )
    )
    session.add_all(IssueLabel(issue_id=issue.id, label=n) for n in sorted(wanted - current))
    session.flush()
    return ", ".join(sorted(current)), ", ".join(sorted(wanted))


def _nosy(session: Session, issue: IssueState, edits: list[Edit]) -> tuple[str, str]:
    ids = store.nosy_user_ids(session, issue.id)
    by_email = {u.email: u.id for u in store.users_by_ids(session, ids)}
    for edit in edits:
        for name in (n for n in edit.value.split(",") if n):
            user = store.user_by_address(session, name)
            if user is not None:
                by_email.setdefault(user.email, user.id)
    current = {e for e, i in by_email.items() if i in ids}
    wanted = _combine(current, [_primary(session, e) for e in edits])
    gone = [by_email[e] for e in current - wanted]
    session.execute(delete(Nosy).where(Nosy.issue_id == issue.id, Nosy.user_id.in_(gone)))
    store.add_nosy(session, issue.id, [by_email[e] for e in wanted - current])
    return ", ".join(sorted(current)), ", ".join(sorted(wanted))


def _primary(session: Session, edit: Edit) -> Edit:
    """The same edit, naming each user by the address we write to (their first one)."""
    names = []
    for name in (n for n in edit.value.split(",") if n):
        user = store.user_by_address(session, name)
        names.append(user.email if user else name)
    return Edit(edit.prop, edit.op, ",".join(names))


_APPLY = {
    "title": _scalar,
    "status": _scalar,
    "priority": _scalar,
    "assignee": _assignee,
    "labels": _labels,
    "nosy": _nosy,
}
