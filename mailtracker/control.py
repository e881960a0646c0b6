"""Control addresses: help by mail, and holding and moderating mail from unknown senders.

Help (``bugs+help@``, or a subject of exactly ``help``) is answered from the same grammar
tables the parser uses, never a copy of the manual. Mail from an unknown sender to a
``moderate`` tracker is kept whole and announced to the tracker's admins, who accept or
discard it by writing to a one-time address (or with ``mailtracker moderation``). Each
control mail is recorded by Message-ID, so a redelivered one is not answered twice.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from mailtracker import blobio, store
from mailtracker.addresses import Recipient
from mailtracker.commands import help_properties
from mailtracker.config import Config, TrackerConfig
from mailtracker.errors import Duplicate, NotPermitted, Rejected
from mailtracker.models import ControlMail, HeldMail, User
from mailtracker.replies import queue_reply
from mailtracker.templating import mail_environment
from mailtracker.values import Envelope, Incoming, Sender

__all__ = [
    "Result",
    "held_mail",
    "help_reply",
    "hold",
    "is_help_request",
    "moderate",
    "record_once",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    """What one tracker did with a mail: the issue it landed on (if any), words for the SMTP
    reply, and how many mails it queued."""

    ref: str | None
    text: str
    queued: int = 0


def is_help_request(recipient: Recipient, incoming: Incoming) -> bool:
    return recipient.kind == "help" or (
        recipient.kind == "main" and incoming.subject.strip().lower() == "help"
    )


def record_once(session: Session, tracker: TrackerConfig, incoming: Incoming, action: str) -> None:
    """Record a control mail; raise ``Duplicate`` if this Message-ID was handled already."""
    row = store.tracker_row(session, tracker.name)
    seen = session.scalar(
        select(ControlMail.id).where(
            ControlMail.tracker_id == row.id, ControlMail.message_id == incoming.message_id
        )
    )
    if seen is not None:
        raise Duplicate(f"message <{incoming.message_id}> was answered already")
    session.add(ControlMail(tracker_id=row.id, message_id=incoming.message_id, action=action))
    session.flush()


def help_reply(
    session: Session, config: Config, tracker: TrackerConfig, sender: Sender, incoming: Incoming
) -> Result:
    """Answer with the mail interface's reference; never to automatic mail."""
    record_once(session, tracker, incoming, "help")
    if sender.quiet:
        return Result(None, "help is not sent to automatic mail")
    body = (
        mail_environment()
        .get_template("mail/help.txt")
        .render(
            tracker=tracker,
            issue_address=tracker.issue_address(42),
            properties=help_properties(tracker),
            restricted=True,
        )
    )
    queue_reply(
        session,
        tracker,
        config.smtp.hostname,
        sender.address,
        f"Help for {tracker.title}",
        body,
        in_reply_to=incoming.message_id,
    )
    return Result(None, "help is on its way", 1)


def hold(
    session: Session,
    config: Config,
    tracker: TrackerConfig,
    sender: Sender,
    incoming: Incoming,
    envelope: Envelope,
    recipient: Recipient,
) -> Result:
    """Keep the mail for a moderator and tell the admins; invisible until approved."""
    row = store.tracker_row(session, tracker.name)
    held = session.scalar(
        select(HeldMail.id).where(
            HeldMail.tracker_id == row.id, HeldMail.message_id == incoming.message_id
        )
    )
    if held is not None:
        raise Duplicate(f"message <{incoming.message_id}> is already held for a moderator")
    token = secrets.token_hex(12)
    fields = {
        "tracker_id": row.id,
        "message_id": incoming.message_id,
        "token": token,
        "sender": sender.address,
        "subject": incoming.subject,
        "mail_from": envelope.mail_from,
        "rcpt": recipient.address,
    }
    held_id = blobio.insert_row(
        session, store.table(HeldMail).insert(), {**fields, "raw": incoming.raw}
    )
    notice = _Notice(held_id, token, sender.address, incoming.subject)
    return Result(None, "held for a moderator", _tell_admins(session, config, tracker, notice))


class _Notice(NamedTuple):
    """What the admins are told about a held mail (not its bytes: they stay in the row)."""

    id: int
    token: str
    sender: str
    subject: str


def _tell_admins(session: Session, config: Config, tracker: TrackerConfig, held: _Notice) -> int:
    admins = [u for u in session.scalars(select(User).where(User.role == "admin")) if u.email]
    body = (
        mail_environment()
        .get_template("mail/moderation.txt")
        .render(
            tracker=tracker,
            sender=held.sender,
            subject=held.subject,
            held_id=held.id,
            approve_address=f"{tracker.local_part}+approve+{held.token}@{tracker.domain}",
            reject_address=f"{tracker.local_part}+reject+{held.token}@{tracker.domain}",
        )
    )
    for admin in admins:
        queue_reply(
            session,
            tracker,
            config.smtp.hostname,
            admin.email,
            f"Held for moderation: {held.subject}",
            body,
        )
    return len(admins)


def moderate(
    session: Session,
    tracker: TrackerConfig,
    sender: Sender,
    incoming: Incoming,
    recipient: Recipient,
) -> tuple[Result, HeldMail | None]:
    """An admin's mail to ``+approve+TOKEN`` or ``+reject+TOKEN``.

    Returns the held mail to re-run when approved; the caller runs it after this commit.
    """
    record_once(session, tracker, incoming, recipient.kind)
    user = store.user_by_address(session, sender.address)
    if user is None or user.role != "admin":
        raise NotPermitted(f"only admins of {tracker.title} may moderate mail")
    held = session.scalar(select(HeldMail).where(HeldMail.token == recipient.token.lower()))
    if held is None:
        raise Rejected("there is no held mail with that token; it was moderated already")
    if recipient.kind == "reject":
        session.delete(held)
        log.info("<%s> held mail %d discarded by %s", held.message_id, held.id, sender.address)
        return Result(None, f"held mail {held.id} discarded"), None
    return Result(None, f"held mail {held.id} approved"), held


def held_mail(session: Session) -> list[HeldMail]:
    """Every held mail, without its bytes (loaded only if read: moderation lists them)."""
    return list(
        session.scalars(select(HeldMail).options(defer(HeldMail.raw)).order_by(HeldMail.id))
    )
