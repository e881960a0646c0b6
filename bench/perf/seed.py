"""Fill a database fast, with rows shaped like the ones the gateway writes.

Why not through the gateway: a million mails through ``serve`` would take longer than the
whole bench may. Only what is *already there* is seeded this way (Core ``insert()`` with
executemany, in chunks, explicit keys); everything measured goes through SMTP and the real
pipeline. Seeded mail was received a year ago, so it counts toward no abuse limit, and
its ids are ``seed-N@example.org``, which measured mails name in their References.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, Table, func, insert, select, update

from mailtracker.config import load_config
from mailtracker.models import (
    Address,
    Issue,
    Message,
    MessageRef,
    Nosy,
    Outbox,
    Tracker,
    User,
)
from mailtracker.store import Store

__all__ = ["CHUNK", "old_ids", "open_store", "populate_fanout", "register", "seed_growth"]

CHUNK = 20_000
PER_ISSUE = 10
SEED_USERS = 10_000
_RAW = (
    b"From: Seed <seed@example.org>\r\nTo: tracker@bench.example\r\nSubject: seeded\r\n"
    b"Message-ID: <seed@example.org>\r\n\r\n" + b"An old comment, stored long ago. " * 8 + b"\r\n"
)
_LONG_AGO = datetime(2024, 1, 1)

Rows = Callable[[int, int], Iterator[dict[str, Any]]]


def open_store(config_path: Path) -> Store:
    """The store of a bench tracker, schema upgraded (as ``serve`` would on first start)."""
    return Store.open(load_config(str(config_path)))


def register(store: Store, emails: list[str], role: str) -> None:
    """Users with a role, as an admin would add them with ``mailtracker user add``."""
    from mailtracker import store as queries

    with store.write() as session:
        for email in emails:
            if queries.user_by_address(session, email) is None:
                queries.create_user(session, email, email.split("@")[0].title(), role)


def _insert(store: Store, table: Any, rows: Rows, total: int) -> None:
    for start in range(0, total, CHUNK):
        batch = list(rows(start, min(total, start + CHUNK)))
        with store.engine.begin() as conn:
            conn.execute(insert(table), batch)


def _max_id(store: Store, column: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.scalar(select(func.coalesce(func.max(column), 0))) or 0)


def old_ids(count: int, sample: int = 500) -> list[str]:
    """Message-IDs of seeded mail, spread over the whole seed, for References headers."""
    step = max(1, count // sample)
    return [f"seed-{n}@example.org" for n in range(1, count + 1, step)][:sample]


def seed_growth(store: Store, messages: int) -> None:
    """``messages`` stored mails on ``messages / 10`` issues, each with its reference row and
    its sent notification, from 10,000 users: the tables a big tracker has."""
    if messages <= 0:
        return
    with store.engine.connect() as conn:
        tracker_id = int(conn.scalar(select(Tracker.id).where(Tracker.name == "tracker")) or 0)
    user0 = _max_id(store, User.id)
    issues = max(1, messages // PER_ISSUE)
    _insert(store, User.__table__, lambda a, b: _users(user0, a, b), SEED_USERS)
    _insert(store, Address.__table__, lambda a, b: _addresses(user0, a, b), SEED_USERS)
    _insert(store, Issue.__table__, lambda a, b: _issues(tracker_id, user0, a, b), issues)
    _insert(store, Message.__table__, lambda a, b: _messages(tracker_id, user0, a, b), messages)
    _insert(store, MessageRef.__table__, lambda a, b: _refs(tracker_id, a, b), messages)
    _insert(store, Nosy.__table__, lambda a, b: _nosy(user0, a, b), issues)
    _insert(store, Outbox.__table__, lambda a, b: _outbox(tracker_id, user0, a, b), messages)
    with store.engine.begin() as conn:
        conn.execute(update(Tracker).where(Tracker.id == tracker_id).values(next_number=issues + 1))


def _users(user0: int, start: int, stop: int) -> Iterator[dict[str, Any]]:
    for k in range(start, stop):
        yield {"id": user0 + k + 1, "name": f"Seed {k}", "role": "user", "created_at": _LONG_AGO}


def _addresses(user0: int, start: int, stop: int) -> Iterator[dict[str, Any]]:
    for k in range(start, stop):
        yield {"user_id": user0 + k + 1, "email": f"seed{k}@example.org"}


def _issues(tracker_id: int, user0: int, start: int, stop: int) -> Iterator[dict[str, Any]]:
    for k in range(start, stop):
        yield {
            "id": k + 1,
            "tracker_id": tracker_id,
            "number": k + 1,
            "title": f"Seeded issue {k + 1}",
            "status": "closed",
            "reporter_id": user0 + 1 + k % SEED_USERS,
            "thread_root": f"issue{k + 1}.tracker@tracker.bench.example",
            "created_at": _LONG_AGO,
            "updated_at": _LONG_AGO,
        }


def _messages(tracker_id: int, user0: int, start: int, stop: int) -> Iterator[dict[str, Any]]:
    for n in range(start + 1, stop + 1):
        issue = (n - 1) // PER_ISSUE + 1
        yield {
            "id": n,
            "tracker_id": tracker_id,
            "issue_id": issue,
            "message_id": f"seed-{n}@example.org",
            "author_id": user0 + 1 + n % SEED_USERS,
            "subject": f"Re: Seeded issue {issue}",
            "date": "Mon, 1 Jan 2024 00:00:00 +0000",
            "received_at": _LONG_AGO + timedelta(seconds=n),
            "in_reply_to": "",
            "references": "",
            "body": "An old comment, stored long ago.",
            "visible": "An old comment, stored long ago.",
            "is_comment": True,
            "verified": False,
            "evidence": "",
            "quiet": False,
            "raw": _RAW,
        }


def _refs(tracker_id: int, start: int, stop: int) -> Iterator[dict[str, Any]]:
    for n in range(start + 1, stop + 1):
        first = ((n - 1) // PER_ISSUE) * PER_ISSUE + 1
        yield {"tracker_id": tracker_id, "message_pk": n, "ref_id": f"seed-{first}@example.org"}


def _nosy(user0: int, start: int, stop: int) -> Iterator[dict[str, Any]]:
    for k in range(start, stop):
        for j in range(3):
            yield {"issue_id": k + 1, "user_id": user0 + 1 + (k + j * 997) % SEED_USERS}


def _outbox(tracker_id: int, user0: int, start: int, stop: int) -> Iterator[dict[str, Any]]:
    for n in range(start + 1, stop + 1):
        yield {
            "tracker_id": tracker_id,
            "issue_id": (n - 1) // PER_ISSUE + 1,
            "message_id": f"mt.seed{n}.tracker@tracker.bench.example",
            "cause_message_pk": n,
            "envelope_from": f"tracker-bounces+s{n}@bench.example",
            "verp_token": f"s{n}",
            "recipient": f"seed{n % SEED_USERS}@example.org",
            "raw": _RAW,
            "status": "sent",
            "attempts": 1,
            "next_attempt_at": _LONG_AGO,
            "last_error": "",
            "created_at": _LONG_AGO,
            "sent_at": _LONG_AGO,
        }


def populate_fanout(store: Store, thread_id: str, nosy: int, subscribers: int) -> None:
    """Put ``nosy`` new users on the nosy list of the issue that ``thread_id`` opened, and
    subscribe ``subscribers`` more to the whole tracker (``subscriptions``, mode ``all``)."""
    with store.engine.connect() as conn:
        issue_id = conn.scalar(select(Message.issue_id).where(Message.message_id == thread_id))
        tracker_id = conn.scalar(select(Tracker.id).where(Tracker.name == "tracker"))
    user0 = _max_id(store, User.id)
    total = nosy + subscribers
    _insert(store, User.__table__, lambda a, b: _users(user0, a, b), total)
    _insert(store, Address.__table__, lambda a, b: _fan_addresses(user0, a, b), total)
    with store.engine.begin() as conn:
        rows = [{"issue_id": issue_id, "user_id": user0 + k + 1} for k in range(nosy)]
        if rows:
            conn.execute(insert(Nosy), rows)
        if subscribers:
            table = Table("subscriptions", MetaData(), autoload_with=conn)
            subs = [
                {
                    "tracker_id": tracker_id,
                    "user_id": user0 + k + 1,
                    "mode": "all",
                    "created_at": _LONG_AGO,
                }
                for k in range(nosy, total)
            ]
            conn.execute(insert(table), subs)


def _fan_addresses(user0: int, start: int, stop: int) -> Iterator[dict[str, Any]]:
    for k in range(start, stop):
        yield {"user_id": user0 + k + 1, "email": f"follower{k}@example.net"}
