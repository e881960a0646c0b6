"""One-click unsubscribe over HTTPS (RFC 8058), next to the ``mailto:`` one of
``subscriptions.py``.

A notification's ``List-Unsubscribe`` carries, per recipient, ``https://…/unsubscribe/TOKEN``
with ``TOKEN`` = ``TRACKER.MAILTOKEN``: the tracker's name and the very token of the
``bugs+unsubscribe+MAILTOKEN@`` address (``tokens.unsubscribe_minter``: HMAC over tracker,
scope and user), so one secret and one rotation cover both ways. The scope is the issue
(leave its nosy list) or ``all`` (end the tracker subscription). Only a POST acts; a GET
describes what a POST would do, because link scanners fetch every URL in a mail.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy.orm import Session

from mailtracker import store as queries
from mailtracker import tokens
from mailtracker.config import Config, TrackerConfig
from mailtracker.models import Nosy
from mailtracker.store import Store

__all__ = ["describe", "unsubscribe", "unsubscribe_url"]


@dataclass(frozen=True)
class _Target:
    tracker: TrackerConfig
    user_id: int
    scope: str


def unsubscribe_url(base_url: str, tracker: str, mail_token: str) -> str:
    return f"{base_url.rstrip('/')}/unsubscribe/{tracker}.{mail_token}"


def describe(store: Store, config: Config, token: str) -> str | None:
    """What a POST with this token would stop, for the confirmation page; ``None`` if the
    token is unknown, damaged or expired. Changes nothing."""
    with store.read() as session:
        target = _target(session, config, token)
        return _what(session, target) if target else None


def unsubscribe(store: Store, config: Config, token: str) -> str | None:
    """Stop what the token names, at once; returns what was stopped (``None``: unknown
    token). Doing it twice is harmless."""
    from mailtracker.subscriptions import set_subscription

    with store.write() as session:
        target = _target(session, config, token)
        if target is None:
            return None
        if target.scope == "all":
            set_subscription(session, target.tracker, target.user_id, None)
        else:
            issue_id = _issue_id(session, target.tracker, int(target.scope))
            if issue_id is not None:
                session.execute(
                    delete(Nosy).where(Nosy.issue_id == issue_id, Nosy.user_id == target.user_id)
                )
        return _what(session, target)


def _target(session: Session, config: Config, token: str) -> _Target | None:
    name, dot, mail_token = token.partition(".")
    if not dot or len(token) > 200:
        return None
    tracker = next((t for t in config.trackers if t.name == name), None)
    if tracker is None:
        return None
    found = tokens.unsubscribe_target(session, tracker.name, mail_token)
    return _Target(tracker, found[0], found[1]) if found else None


def _issue_id(session: Session, tracker: TrackerConfig, number: int) -> int | None:
    row = queries.tracker_row(session, tracker.name)
    issue = queries.issue_by_number(session, row.id, number)
    return issue.id if issue else None


def _what(session: Session, target: _Target) -> str:
    tracker = target.tracker
    if target.scope == "all":
        return f"your subscription to {tracker.title}"
    number = int(target.scope)
    issue = queries.issue_by_number(session, queries.tracker_row(session, tracker.name).id, number)
    title = f" ({issue.title})" if issue is not None else ""
    return f"issue {tracker.subject_tag}{number}{title} of {tracker.title}"
