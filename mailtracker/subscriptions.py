"""Following a tracker or an issue by mail, with the care of a list manager.

- ``bugs+subscribe@`` asks for a tracker subscription (``all`` activity by default; ``new``
  issues only, or a daily ``digest``, when the subject or body says so); ``bugs+42+subscribe@``
  asks to follow issue 42 (join its nosy list). Nothing is sent to the address but one
  confirmation request until its owner confirms, by replying to it or by writing to its
  ``bugs+confirm+TOKEN@`` address: nobody can subscribe someone else (double opt-in, as
  Mailman does). Tokens expire after ``CONFIRM_DAYS``.
- ``bugs+unsubscribe@`` / ``bugs+42+unsubscribe@`` stop at once when the sender is verified
  (DKIM or a reply token), and otherwise ask for confirmation the same way. Each
  notification's ``List-Unsubscribe`` address carries a per-recipient token and stops what
  that mail came through at once (one click by mail).
Each control mail is answered once (``record_once``).
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mailtracker import store, tokens
from mailtracker.addresses import Recipient
from mailtracker.config import Config, TrackerConfig
from mailtracker.control import Result, record_once
from mailtracker.errors import NotPermitted, Rejected
from mailtracker.models import Nosy, Subscription, SubscriptionRequest, utcnow
from mailtracker.replies import queue_reply
from mailtracker.templating import mail_environment
from mailtracker.values import Incoming, Sender

__all__ = ["CONFIRM_DAYS", "MODES", "handle", "set_subscription"]

log = logging.getLogger(__name__)

CONFIRM_DAYS = 7
MODES = ("all", "new", "digest")


def handle(
    session: Session,
    config: Config,
    tracker: TrackerConfig,
    sender: Sender,
    incoming: Incoming,
    recipient: Recipient,
) -> Result:
    """A mail to one of the subscription addresses."""
    record_once(session, tracker, incoming, recipient.kind)
    if recipient.kind == "confirm":
        return _confirm(session, config, tracker, recipient.token)
    if recipient.kind == "unsubscribe" and recipient.token:
        return _one_click(session, tracker, recipient.token)
    if sender.quiet:
        return Result(None, "automatic mail is not answered")
    if recipient.number is not None and not _issue_id(session, tracker, recipient.number):
        raise Rejected(f"{tracker.title} has no issue {recipient.number}")
    if recipient.kind == "unsubscribe" and sender.verified:
        return _apply(
            session, config, tracker, sender.address, "unsubscribe", "all", recipient.number
        )
    return _request(session, config, tracker, sender.address, recipient, incoming)


def _mode(incoming: Incoming) -> str:
    words = f"{incoming.subject} {incoming.text[:200]}".lower().split()
    return next((m for m in ("digest", "new") if m in words), "all")


def _request(
    session: Session,
    config: Config,
    tracker: TrackerConfig,
    address: str,
    recipient: Recipient,
    incoming: Incoming,
) -> Result:
    """Store the request and send its one confirmation mail."""
    _may_subscribe(session, tracker, address)
    request = SubscriptionRequest(
        tracker_id=store.tracker_row(session, tracker.name).id,
        address=address,
        action=recipient.kind,
        mode=_mode(incoming),
        issue_number=recipient.number,
        token=secrets.token_hex(12),
        created_at=utcnow(),
        expires_at=utcnow() + timedelta(days=CONFIRM_DAYS),
    )
    session.add(request)
    session.flush()
    confirm = f"{tracker.local_part}+confirm+{request.token}@{tracker.domain}"
    body = (
        mail_environment()
        .get_template("mail/confirm.txt")
        .render(
            action=request.action,
            what=_what(tracker, request.mode, request.issue_number),
            address=address,
            confirm_address=confirm,
            days=CONFIRM_DAYS,
        )
    )
    queue_reply(
        session,
        tracker,
        config.smtp.hostname,
        address,
        f"Please confirm: {request.action} ({tracker.title})",
        body,
        in_reply_to=incoming.message_id,
        reply_to=confirm,
    )
    return Result(None, f"confirmation request sent to {address}", 1)


def _may_subscribe(session: Session, tracker: TrackerConfig, address: str) -> None:
    if tracker.unknown_senders != "register" and store.user_by_address(session, address) is None:
        raise NotPermitted(
            f"{tracker.title} takes subscriptions only from registered users; "
            "ask the tracker's administrators for an account"
        )


def _what(tracker: TrackerConfig, mode: str, number: int | None) -> str:
    if number is not None:
        return f"follow issue {tracker.subject_tag}{number} of {tracker.title}"
    return {
        "all": f"receive all activity of {tracker.title}",
        "new": f"receive the new issues of {tracker.title}",
        "digest": f"receive a daily digest of {tracker.title}",
    }[mode]


def _confirm(session: Session, config: Config, tracker: TrackerConfig, token: str) -> Result:
    request = session.scalar(
        select(SubscriptionRequest).where(SubscriptionRequest.token == token.lower())
    )
    if request is None or request.expires_at < utcnow():
        raise Rejected(
            "this confirmation address is not valid or has expired; write to "
            f"{tracker.local_part}+subscribe@{tracker.domain} to ask again"
        )
    session.delete(request)
    return _apply(
        session,
        config,
        tracker,
        request.address,
        request.action,
        request.mode,
        request.issue_number,
    )


def _apply(
    session: Session,
    config: Config,
    tracker: TrackerConfig,
    address: str,
    action: str,
    mode: str,
    number: int | None,
) -> Result:
    """Make the change and tell the address what it now receives."""
    user = store.user_by_address(session, address) or store.create_user(session, address)
    issue_id = _issue_id(session, tracker, number) if number is not None else None
    if issue_id is not None and action == "subscribe":
        store.add_nosy(session, issue_id, [user.id])
    elif issue_id is not None:
        session.execute(delete(Nosy).where(Nosy.issue_id == issue_id, Nosy.user_id == user.id))
    else:
        set_subscription(session, tracker, user.id, mode if action == "subscribe" else None)
    what = _what(tracker, mode, number)
    body = (
        mail_environment()
        .get_template("mail/subscribed.txt")
        .render(action=action, address=address, what=_done(what, action), tracker=tracker)
    )
    queue_reply(
        session, tracker, config.smtp.hostname, address, f"{tracker.title}: {action}d", body
    )
    log.info("%s: %s %s", address, action, what)
    return Result(None, f"{address}: {action}d", 1)


def _done(what: str, action: str) -> str:
    """ "receive all activity of X" → "receives all activity of X" (reads after the address)."""
    verb, _, rest = what.partition(" ")
    return f"{verb}s {rest}"


def _one_click(session: Session, tracker: TrackerConfig, token: str) -> Result:
    """``List-Unsubscribe`` by mail: stop what the notification came through, at once."""
    target = tokens.unsubscribe_target(session, tracker.name, token)
    if target is None:
        raise Rejected(
            "this unsubscribe address is not valid (damaged or expired); write to "
            f"{tracker.local_part}+unsubscribe@{tracker.domain} instead"
        )
    user_id, scope = target
    if scope == "all":
        set_subscription(session, tracker, user_id, None)
        return Result(None, f"unsubscribed from {tracker.title}")
    issue_id = _issue_id(session, tracker, int(scope))
    if issue_id is not None:
        session.execute(delete(Nosy).where(Nosy.issue_id == issue_id, Nosy.user_id == user_id))
    return Result(None, f"unsubscribed from {tracker.subject_tag}{scope}")


def set_subscription(
    session: Session, tracker: TrackerConfig, user_id: int, mode: str | None
) -> None:
    """Subscribe ``user_id`` in ``mode`` (switching modes), or unsubscribe with ``None``."""
    tracker_id = store.tracker_row(session, tracker.name).id
    row = session.scalar(
        select(Subscription).where(
            Subscription.tracker_id == tracker_id, Subscription.user_id == user_id
        )
    )
    if mode is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(
            Subscription(tracker_id=tracker_id, user_id=user_id, mode=mode, created_at=utcnow())
        )
    else:
        row.mode = mode
    session.flush()


def _issue_id(session: Session, tracker: TrackerConfig, number: int | None) -> int | None:
    if number is None:
        return None
    issue = store.issue_by_number(session, store.tracker_row(session, tracker.name).id, number)
    return issue.id if issue else None
