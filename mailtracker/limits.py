"""Abuse limits: how much one sender may write, counted from what is already stored.

A person, or a script gone wrong, should not be able to bury a tracker. Per sender:
new issues per hour, messages per issue per hour, and automatic mail (auto-replies, bulk)
per issue per day, which stops two autoresponders from talking to each other through us.
Over a limit a person's mail is deferred with 451, so their MTA delivers it later, once
the hour has passed; automatic mail over its limit is a loop or a flood, which retrying
would only prolong, and is refused with 550. Counting from the stored rows (indexed)
keeps the limits right across restarts and several gateways.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from mailtracker.config import LimitsConfig
from mailtracker.errors import Rejected, TempFailure
from mailtracker.models import Issue, Message, utcnow

__all__ = ["UNLIMITED", "check"]

log = logging.getLogger(__name__)

# For ``mailtracker import``: an archive's history is not a flood.
UNLIMITED = LimitsConfig(10**9, 10**9, 10**9)


def check(
    session: Session,
    limits: LimitsConfig,
    author_id: int,
    address: str,
    issue_id: int | None,
    quiet: bool,
) -> None:
    """Raise ``TempFailure`` (``Rejected`` for automatic mail) if this mail is one too many."""
    now = utcnow()
    if issue_id is None:
        count = _new_issues(session, author_id, now - timedelta(hours=1))
        _judge(count, limits.new_issues_per_hour, f"new issues from {address} in an hour")
    elif quiet:
        count = _messages(session, author_id, issue_id, now - timedelta(days=1), True)
        _judge(
            count,
            limits.automatic_per_issue_per_day,
            f"automatic mails from {address} to one issue in a day",
            flood=True,
        )
    else:
        count = _messages(session, author_id, issue_id, now - timedelta(hours=1), False)
        _judge(
            count,
            limits.messages_per_issue_per_hour,
            f"messages from {address} to one issue in an hour",
        )


def _judge(count: int, limit: int, what: str, flood: bool = False) -> None:
    if count < limit:
        return
    log.warning("limit reached: %d %s (limit %d)", count, what, limit)
    if flood:
        raise Rejected(
            f"too many {what} (the limit is {limit}); automatic mail is not taken past it"
        )
    raise TempFailure(f"too many {what} (the limit is {limit}); try again later")


# Built once: the counts run for every mail, and building them cost more than running them.
_ISSUES = Issue.__table__.c
_MESSAGES = Message.__table__.c
_NEW_ISSUES = select(func.count()).where(
    _ISSUES.reporter_id == bindparam("author_pk"), _ISSUES.created_at > bindparam("since")
)
_MESSAGES_BY = {
    quiet: select(func.count()).where(
        _MESSAGES.author_id == bindparam("author_pk"),
        _MESSAGES.received_at > bindparam("since"),
        _MESSAGES.issue_id == bindparam("issue_pk"),
        _MESSAGES.quiet.is_(quiet),
    )
    for quiet in (False, True)
}


def _new_issues(session: Session, author_id: int, since: datetime) -> int:
    count = session.execute(_NEW_ISSUES, {"author_pk": author_id, "since": since}).scalar()
    return int(count or 0)


def _messages(session: Session, author_id: int, issue_id: int, since: datetime, quiet: bool) -> int:
    params = {"author_pk": author_id, "since": since, "issue_pk": issue_id}
    return int(session.execute(_MESSAGES_BY[quiet], params).scalar() or 0)
