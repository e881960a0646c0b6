"""Threading lookups: which issue the ids of a mail's In-Reply-To and References name.

``route`` asks this through ``store.TrackerLookup`` for nearly every reply, so the four
queries are built once, here, with their ids as an expanding parameter: building them per
mail cost more than running them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from mailtracker.models import Issue, Message, MessageRef, Outbox

__all__ = ["issue_for_message_ids"]

_ISSUES = Issue.__table__
_MESSAGES = Message.__table__
_OUTBOX = Outbox.__table__
_REFS = MessageRef.__table__


def issue_for_message_ids(session: Session, tracker_id: int, ids: Sequence[str]) -> int | None:
    """The issue of the nearest id in ``ids`` that we stored, sent or use as a thread root;
    failing that, the issue of a stored mail that names the same (missing) ancestor."""
    if not ids:
        return None
    params = {"tracker_pk": tracker_id, "ids": list(ids)}
    rows = [row for query in _DIRECT for row in session.execute(query, params)]
    found = _first_in_order(ids, rows)
    if found is None:
        found = _first_in_order(ids, list(session.execute(_GHOST, params)))
    return found


# Three queries, not one UNION ALL: that measured slower on SQLite (0.95 against 0.80 ms).
_DIRECT = (
    select(_MESSAGES.c.message_id, _ISSUES.c.number)
    .join(_ISSUES, _ISSUES.c.id == _MESSAGES.c.issue_id)
    .where(
        _MESSAGES.c.tracker_id == bindparam("tracker_pk"),
        _MESSAGES.c.message_id.in_(bindparam("ids", expanding=True)),
    ),
    select(_OUTBOX.c.message_id, _ISSUES.c.number)
    .join(_ISSUES, _ISSUES.c.id == _OUTBOX.c.issue_id)
    .where(
        _OUTBOX.c.tracker_id == bindparam("tracker_pk"),
        _OUTBOX.c.message_id.in_(bindparam("ids", expanding=True)),
    ),
    select(_ISSUES.c.thread_root, _ISSUES.c.number).where(
        _ISSUES.c.tracker_id == bindparam("tracker_pk"),
        _ISSUES.c.thread_root.in_(bindparam("ids", expanding=True)),
    ),
)
_GHOST = (
    select(_REFS.c.ref_id, _ISSUES.c.number)
    .join(_MESSAGES, _MESSAGES.c.id == _REFS.c.message_pk)
    .join(_ISSUES, _ISSUES.c.id == _MESSAGES.c.issue_id)
    .where(
        _REFS.c.tracker_id == bindparam("tracker_pk"),
        _REFS.c.ref_id.in_(bindparam("ids", expanding=True)),
    )
    .order_by(_REFS.c.id)
)


def _first_in_order(ids: Sequence[str], rows: list[Any]) -> int | None:
    found: dict[str, int] = {}
    for mid, number in rows:
        found.setdefault(mid, number)
    return next((found[i] for i in ids if i in found), None)
