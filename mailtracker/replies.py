"""Mail from the tracker itself, not about an issue's change: help, moderation requests,
subscription confirmations, digests. Queued in the outbox like notifications, so the same
worker sends it with the same retries.

Apart from ``notify.py`` because it answers a person, or writes to one, outside any
issue's conversation: no nosy list, no per-recipient headers, and a reply to a sender's
mail goes out with a null envelope sender (RFC 3834), where notifications carry VERP.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from sqlalchemy.orm import Session

from mailtracker import store
from mailtracker.authenticate import LOOP_HEADER
from mailtracker.config import TrackerConfig
from mailtracker.headers import SMTP_POLICY
from mailtracker.models import Outbox, utcnow
from mailtracker.notify import transfer_encoding, verp_address, verp_token
from mailtracker.outheaders import policy_for, threading_headers

__all__ = ["queue_reply"]

_SMTP = SMTP_POLICY


def queue_reply(
    session: Session,
    tracker: TrackerConfig,
    hostname: str,
    recipient: str,
    subject: str,
    body: str,
    *,
    in_reply_to: str = "",
    reply_to: str = "",
) -> str:
    """Queue one mail from the tracker itself (help, moderation, subscription); returns its
    Message-ID. ``reply_to`` is the address a reply should go to (a confirmation's).

    A response to a sender's mail (``in_reply_to``) goes out with a null envelope sender
    and ``Auto-Submitted: auto-replied`` (RFC 3834 §3.3, §5), so it can never start a
    loop; other mail from the tracker gets a VERP envelope sender like a notification.
    """
    now = utcnow()
    message_id = f"mt.{secrets.token_hex(10)}.{tracker.name}@{hostname}"
    raw = _reply_message(tracker, recipient, subject, body, message_id, in_reply_to, now)
    if reply_to:
        raw = _SMTP.fold_binary("Reply-To", f"<{reply_to}>") + raw
    token = None if in_reply_to else verp_token()
    row = store.tracker_row(session, tracker.name)
    session.add(
        Outbox(
            tracker_id=row.id,
            message_id=message_id,
            recipient=recipient,
            raw=raw,
            envelope_from=verp_address(tracker, token) if token else "",
            verp_token=token,
            next_attempt_at=now,
            created_at=now,
        )
    )
    session.flush()
    return message_id


def _reply_message(
    tracker: TrackerConfig,
    recipient: str,
    subject: str,
    body: str,
    message_id: str,
    in_reply_to: str,
    now: datetime,
) -> bytes:
    policy = policy_for(recipient)
    msg = EmailMessage(policy=policy)
    msg["From"] = Address(tracker.title, addr_spec=tracker.address)
    msg["To"] = recipient
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now.replace(tzinfo=UTC))
    msg["Message-ID"] = f"<{message_id}>"
    for name, value in threading_headers(in_reply_to, None):
        msg.set_raw(name, value)  # an id is a token: never parsed as text
    msg["Auto-Submitted"] = "auto-replied" if in_reply_to else "auto-generated"
    msg[LOOP_HEADER] = tracker.address
    msg.set_content(body, charset="utf-8", cte=transfer_encoding(body))
    return msg.as_bytes(policy=policy)
