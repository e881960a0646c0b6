"""Daily digests: one mail a day to ``digest`` subscribers, listing the day's new issues
and changes, each under its issue's tag and address so a reply threads into it.

The delivery worker calls ``run_due`` every round; a digest is made once the tracker's
``digest_time`` (UTC) has passed and none exists for that day (a ``digest_runs`` row, unique
per tracker and day, so two workers never both send one). A quiet day sends nothing. The
clock is passed in, so tests simulate a day without sleeping.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from weakref import WeakKeyDictionary

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailtracker import store as queries
from mailtracker.config import Config, TrackerConfig
from mailtracker.models import DigestRun, Issue, JournalEntry, Message, Subscription
from mailtracker.replies import queue_reply
from mailtracker.store import Store
from mailtracker.templating import mail_environment

__all__ = ["run_due"]

log = logging.getLogger(__name__)


@dataclass
class _Activity:
    """What happened to one issue in the period."""

    issue: Issue
    created: bool = False
    messages: int = 0
    changes: list[str] = field(default_factory=list)


# The digests this process knows are made, per store: the worker asks before every batch,
# and asking the database meant a write transaction per tracker for every mail taken.
_MADE: WeakKeyDictionary[Store, set[tuple[str, str]]] = WeakKeyDictionary()


def run_due(store: Store, config: Config, now: datetime) -> int:
    """Make every digest that is due at ``now`` (naive UTC); returns the mails queued."""
    queued = 0
    made = _MADE.setdefault(store, set())
    for tracker in config.trackers:
        key = (tracker.name, now.date().isoformat())
        if key in made or now.time() < time.fromisoformat(tracker.digest_time):
            continue
        try:
            with store.write() as session:
                queued += _digest(session, config, tracker, now)
        except IntegrityError:  # another worker made today's digest first
            pass
        made.add(key)
    return queued


def _digest(session: Session, config: Config, tracker: TrackerConfig, now: datetime) -> int:
    tracker_id = queries.tracker_row(session, tracker.name).id
    day = now.date().isoformat()
    if (
        session.scalar(
            select(DigestRun.id).where(DigestRun.tracker_id == tracker_id, DigestRun.day == day)
        )
        is not None
    ):
        return 0
    start = _period_start(session, tracker_id, now)
    run = DigestRun(tracker_id=tracker_id, day=day, period_start=start, period_end=now, mails=0)
    session.add(run)
    session.flush()
    readers = _readers(session, tracker_id)
    activity = _activity(session, tracker_id, start, now) if readers else []
    if activity:
        body = _render(tracker, day, activity)
        for address in readers:
            queue_reply(
                session,
                tracker,
                config.smtp.hostname,
                address,
                f"{tracker.title} digest, {day}",
                body,
            )
        run.mails = len(readers)
    log.info("digest %s %s: %d issues, %d mails", tracker.name, day, len(activity), run.mails)
    return run.mails


def _period_start(session: Session, tracker_id: int, now: datetime) -> datetime:
    last = session.scalar(
        select(DigestRun.period_end)
        .where(DigestRun.tracker_id == tracker_id)
        .order_by(DigestRun.period_end.desc())
        .limit(1)
    )
    return last if last is not None else now - timedelta(days=1)


def _readers(session: Session, tracker_id: int) -> list[str]:
    ids = session.scalars(
        select(Subscription.user_id).where(
            Subscription.tracker_id == tracker_id, Subscription.mode == "digest"
        )
    )
    users = queries.users_by_ids(session, ids)
    disabled = queries.disabled_addresses(session, (u.email for u in users))
    return [u.email for u in users if u.email and u.email not in disabled]


def _activity(session: Session, tracker_id: int, start: datetime, end: datetime) -> list[_Activity]:
    found: dict[int, _Activity] = {}
    issues = session.scalars(select(Issue).where(Issue.tracker_id == tracker_id))
    by_id = {i.id: i for i in issues}
    for issue in by_id.values():
        if start <= issue.created_at < end:
            found[issue.id] = _Activity(issue, created=True)
    for (issue_id,) in session.execute(
        select(Message.issue_id).where(
            Message.tracker_id == tracker_id,
            Message.is_comment.is_(True),
            Message.received_at >= start,
            Message.received_at < end,
        )
    ):
        found.setdefault(issue_id, _Activity(by_id[issue_id])).messages += 1
    for entry in _journal(session, list(by_id), start, end):
        item = found.setdefault(entry.issue_id, _Activity(by_id[entry.issue_id]))
        item.changes += [
            f"{c['property']}: {c['old']} → {c['new']}"
            for c in entry.changes
            if c.get("old") is not None
        ]
    return sorted(found.values(), key=lambda a: a.issue.number)


def _journal(
    session: Session, issue_ids: list[int], start: datetime, end: datetime
) -> list[JournalEntry]:
    if not issue_ids:
        return []
    return list(
        session.scalars(
            select(JournalEntry)
            .where(
                JournalEntry.issue_id.in_(issue_ids),
                JournalEntry.created_at >= start,
                JournalEntry.created_at < end,
            )
            .order_by(JournalEntry.id)
        )
    )


def _render(tracker: TrackerConfig, day: str, activity: list[_Activity]) -> str:
    grouped: dict[bool, list[_Activity]] = defaultdict(list)
    for item in activity:
        grouped[item.created].append(item)
    return (
        mail_environment()
        .get_template("mail/digest.txt")
        .render(tracker=tracker, day=day, new=grouped[True], updated=grouped[False])
    )
