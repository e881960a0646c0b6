"""Bounces of our own mail: recorded, scored, never stored as a comment, never answered.

Every notification leaves with a VERP envelope sender, ``bugs-bounces+TOKEN@``, whose
random token names the outbox row and so the recipient, whatever the report's format says
(VERP, as Mailman and qmail use it: the address a bounce comes back to is the evidence).
A report that reaches another tracker address with a null sender is recognised by
``bounces.is_bounce`` and recorded too. Permanent failures raise the address's score, at
most once a day (one dead server should not count as many bounces); at ``THRESHOLD`` the
address is disabled: it stays on every nosy list but is no longer mailed, until an admin
runs ``mailtracker bounces reset ADDRESS``.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailtracker import blobio
from mailtracker.addresses import Recipient
from mailtracker.bounces import BounceReport, is_bounce, parse_bounce
from mailtracker.config import TrackerConfig
from mailtracker.control import Result, record_once
from mailtracker.models import Bounce, BounceScore, Outbox, utcnow
from mailtracker.store import table
from mailtracker.values import Envelope, Incoming

__all__ = ["THRESHOLD", "looks_like_bounce", "record"]

log = logging.getLogger(__name__)

THRESHOLD = 3
SCORE_INTERVAL = timedelta(days=1)
_DAEMONS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")


def looks_like_bounce(incoming: Incoming, envelope: Envelope, recipient: Recipient) -> bool:
    """Mail to the bounce address, or a delivery report sent to another of our addresses.

    The full check runs only for mail from a null sender or a mailer daemon, so ordinary
    mail pays nothing for it.
    """
    if recipient.kind == "bounces":
        return True
    null = envelope.mail_from.strip("<>") == ""
    daemon = incoming.from_addr.split("@")[0] in _DAEMONS
    return (null or daemon) and is_bounce(incoming.raw, envelope.mail_from)


def record(
    session: Session, tracker: TrackerConfig, incoming: Incoming, recipient: Recipient
) -> Result:
    """Store what the report says about each failed recipient and score the addresses."""
    record_once(session, tracker, incoming, "bounce")
    row = _outbox_row(session, recipient.token)
    reports = _reports(incoming, row)
    for report in reports:
        _store(session, report, row, incoming)
    log.info(
        "<%s> delivery report: %s",
        incoming.message_id,
        ", ".join(f"{r.recipient} {r.status or '?'}" for r in reports) or "nobody named",
    )
    return Result(None, f"delivery report recorded ({len(reports)} recipients)")


def _outbox_row(session: Session, token: str) -> Outbox | None:
    if not token:
        return None
    return session.scalar(select(Outbox).where(Outbox.verp_token == token.lower()))


def _reports(incoming: Incoming, row: Outbox | None) -> list[BounceReport]:
    """The parsed reports; with a VERP row, the row's recipient is the one that failed."""
    reports = parse_bounce(incoming.raw)
    if row is None:
        return [r for r in reports if r.recipient]
    permanent = any(r.permanent for r in reports)
    if not reports:  # an unreadable report to a VERP address still names its recipient
        permanent = is_bounce(incoming.raw, "")
    first = reports[0] if reports else None
    return [
        BounceReport(
            row.recipient,
            permanent,
            first.status if first else "",
            first.diagnostic if first else "",
            first.reply_code if first else "",
        )
    ]


def _store(session: Session, report: BounceReport, row: Outbox | None, incoming: Incoming) -> None:
    values = {
        "address": report.recipient,
        "outbox_id": row.id if row else None,
        "permanent": report.permanent,
        "status": report.status,
        "diagnostic": report.diagnostic,
        "message_id": incoming.message_id,
        "created_at": utcnow(),
        "raw": incoming.raw,
    }
    blobio.insert_row(session, table(Bounce).insert(), values)
    if report.permanent:
        _score(session, report.recipient)
    session.flush()


def _score(session: Session, address: str) -> None:
    now = utcnow()
    score = session.get(BounceScore, address)
    if score is None:
        score = BounceScore(address=address, score=0, last_bounce_at=now - SCORE_INTERVAL)
        session.add(score)
    if now - score.last_bounce_at < SCORE_INTERVAL and score.score:
        return
    score.score += 1
    score.last_bounce_at = now
    if score.score >= THRESHOLD and score.disabled_at is None:
        score.disabled_at = now
        log.warning("%s bounced %d times: no longer mailed", address, score.score)
