"""The pipeline: the order of the stages, in one place, and what their errors mean.

``process`` takes raw bytes and the envelope and returns an ``Outcome``: the SMTP reply and
the sysexits code for the same verdict. One mail addressed to several trackers is stored
once in each, in one transaction: all of it or none (ARCHITECTURE rules 1 and 3). This is
the only module that maps the ``errors`` tree to replies and exit codes.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from mailtracker import bouncing, control, quarantine, subscriptions, sysexits, trust
from mailtracker import store as queries
from mailtracker.addresses import Recipient, classify
from mailtracker.authenticate import authenticate
from mailtracker.commands import interpret
from mailtracker.config import Config, TrackerConfig
from mailtracker.control import Result
from mailtracker.errors import (
    Duplicate,
    Held,
    Ignored,
    MailError,
    NotPermitted,
    Rejected,
    TempFailure,
    TooBig,
    UnknownRecipient,
)
from mailtracker.issues import apply
from mailtracker.notify import queue_notifications
from mailtracker.parse import parse
from mailtracker.route import route
from mailtracker.store import Store
from mailtracker.values import Envelope, Incoming, Sender

__all__ = ["Outcome", "process", "refusal_for_recipient"]

log = logging.getLogger(__name__)

RACE_RETRIES = 3
_MAX_REASON = 400


@dataclass(frozen=True)
class Outcome:
    """The verdict on one mail: SMTP reply line, sysexits code, and what was stored."""

    reply: str
    exit_code: int
    stored: tuple[str, ...] = ()
    queued: int = 0

    @property
    def accepted(self) -> bool:
        return self.reply.startswith("250")


def process(
    store: Store,
    config: Config,
    raw: bytes,
    envelope: Envelope,
    *,
    notify: bool = True,
    keep_failures: bool = True,
) -> Outcome:
    """Run one mail through every stage; never raises for anything about the mail.

    An unexpected error puts the mail in quarantine (250); with ``keep_failures=False``
    (a quarantine retry) it propagates instead, so the mail is not quarantined twice."""
    message_id = "<unparsed>"
    try:
        _check_size(raw, config)
        targets = _recipients(envelope.rcpt_tos, config)
        incoming = parse(raw)
        message_id = incoming.message_id
        results, approved = _store_with_retries(store, config, incoming, envelope, targets, notify)
    except MailError as exc:
        return _refusal(exc, message_id)
    except Exception:  # a bug: keep the mail, never drop the connection
        if not keep_failures:
            raise
        return _quarantine(store, raw, envelope, message_id, traceback.format_exc())
    for held in approved:
        results.append(_run_approved(store, config, held))
    return _success(message_id, results)


def _quarantine(
    store: Store, raw: bytes, envelope: Envelope, message_id: str, error: str
) -> Outcome:
    """Keep the mail that tripped a bug; 451 only if even that cannot be written."""
    try:
        number = quarantine.keep(store, raw, envelope, message_id, error)
    except Exception:
        log.exception("<%s> failed, and could not be quarantined; answered 451", message_id)
        return _refusal(TempFailure("internal error; nothing was stored"), message_id)
    log.error("<%s> failed unexpectedly; kept in quarantine as %d:\n%s", message_id, number, error)
    return _outcome(250, "2.0.0", f"Ok: kept for the administrators (quarantine {number})")


def _success(message_id: str, results: list[Result]) -> Outcome:
    text = "; ".join(r.text for r in results)
    queued = sum(r.queued for r in results)
    log.info("<%s> %s; %d mails queued", message_id, text, queued)
    refs = tuple(r.ref for r in results if r.ref)
    return Outcome(_reply(250, "2.0.0", f"Ok: {text}"), sysexits.EX_OK, refs, queued)


def _run_approved(store: Store, config: Config, held_id: int) -> Result:
    from mailtracker.moderation import approve

    outcome = approve(store, config, held_id)
    return Result(None, f"held mail {held_id}: {outcome.reply}", outcome.queued)


def refusal_for_recipient(address: str, config: Config) -> str | None:
    """The RCPT reply for an address that is not ours, or ``None`` when we take it."""
    if classify(address, config.trackers) is not None:
        return None
    return _reply(550, "5.1.1", f"<{address}>: no such tracker address here")


def _check_size(raw: bytes, config: Config) -> None:
    limit = config.smtp.max_message_size
    if len(raw) > limit:
        raise TooBig(f"the message is {len(raw)} bytes; this tracker takes at most {limit}")


def _recipients(rcpt_tos: Sequence[str], config: Config) -> list[Recipient]:
    """One recipient per tracker: the most specific address (``bugs+42@`` over ``bugs@``)."""
    chosen: dict[str, Recipient] = {}
    for address in rcpt_tos:
        found = classify(address, config.trackers)
        if found is None:
            continue
        current = chosen.get(found.tracker)
        if current is None or _RANK[found.kind] > _RANK[current.kind]:
            chosen[found.tracker] = found
    if not chosen:
        raise UnknownRecipient(f"none of {', '.join(rcpt_tos) or 'the recipients'} is ours")
    return list(chosen.values())


# Which address wins when one mail names several of a tracker's: a bounce address is the
# most specific evidence, then an issue's own address, then the rest.
_RANK = {
    "main": 0,
    "help": 1,
    "approve": 1,
    "reject": 1,
    "subscribe": 1,
    "unsubscribe": 1,
    "confirm": 1,
    "issue": 2,
    "bounces": 3,
}


def _store_with_retries(
    store: Store,
    config: Config,
    incoming: Incoming,
    envelope: Envelope,
    targets: list[Recipient],
    notify: bool,
) -> tuple[list[Result], list[int]]:
    """One transaction for every tracker; a lost race (unique key) is simply run again."""
    for attempt in range(1, RACE_RETRIES + 1):
        try:
            with store.write() as session:
                return _store_all(session, config, incoming, envelope, targets, notify)
        except IntegrityError:
            log.info("<%s> lost a race on a unique key (try %d)", incoming.message_id, attempt)
        except (OperationalError, DBAPIError) as exc:
            log.warning("<%s> database unavailable: %s", incoming.message_id, exc.orig)
            raise TempFailure("the tracker's database is unavailable; try again later") from exc
    raise TempFailure("the tracker is busy with the same mail; try again later")


def _store_all(
    session: Session,
    config: Config,
    incoming: Incoming,
    envelope: Envelope,
    targets: list[Recipient],
    notify: bool,
) -> tuple[list[Result], list[int]]:
    """Every tracker's part; returns the results and the held mails an admin approved."""
    results: list[Result] = []
    approved: list[int] = []
    for recipient in targets:
        try:
            result, held = _store_one(session, config, incoming, envelope, recipient, notify)
        except Duplicate:
            continue
        results.append(result)
        approved += [held] if held is not None else []
    if not results:
        raise Duplicate(f"message <{incoming.message_id}> is already stored")
    return results, approved


def _store_one(
    session: Session,
    config: Config,
    incoming: Incoming,
    envelope: Envelope,
    recipient: Recipient,
    notify: bool,
) -> tuple[Result, int | None]:
    """The stages for one tracker, in order: authenticate, route, interpret, apply, notify."""
    tracker = config.tracker(recipient.tracker)
    if bouncing.looks_like_bounce(incoming, envelope, recipient):
        return bouncing.record(session, tracker, incoming, recipient), None
    sender = authenticate(incoming, envelope, tracker, config)
    if recipient.kind in ("approve", "reject"):
        result, held = control.moderate(session, tracker, sender, incoming, recipient)
        return result, held.id if held is not None else None
    if control.is_help_request(recipient, incoming):
        return control.help_reply(session, config, tracker, sender, incoming), None
    sender = trust.establish(session, config, tracker, incoming, envelope, recipient, sender)
    if recipient.kind in ("subscribe", "unsubscribe", "confirm"):
        return subscriptions.handle(session, config, tracker, sender, incoming, recipient), None
    return _issue_mail(
        session, config, tracker, incoming, envelope, recipient, sender, notify
    ), None


def _issue_mail(
    session: Session,
    config: Config,
    tracker: TrackerConfig,
    incoming: Incoming,
    envelope: Envelope,
    recipient: Recipient,
    sender: Sender,
    notify: bool,
) -> Result:
    """Route, interpret, apply, notify: a mail that opens or joins an issue."""
    lookup = queries.TrackerLookup(session, queries.tracker_row(session, tracker.name).id)
    target = route(incoming, recipient, tracker, lookup)
    commands = interpret(incoming, target, tracker, lookup.user_exists)
    try:
        change = apply(session, config, tracker, target, sender, incoming, commands)
    except Held:
        return control.hold(session, config, tracker, sender, incoming, envelope, recipient)
    count = 0
    if notify:
        count = queue_notifications(
            session,
            change,
            tracker,
            config.smtp.hostname,
            cause_id=incoming.message_id,
            comment=commands.visible,
            attachments=incoming.attachments,
            base_url=config.web.base_url,
        )
    log.info(
        "<%s> %s/%d by %s (%s)",
        incoming.message_id,
        tracker.name,
        change.number,
        sender.address,
        target.how,
    )
    ref = f"{tracker.name}/{change.number}"
    return Result(ref, f"stored as {ref}", count)


def _refusal(exc: MailError, message_id: str) -> Outcome:
    """Map the error tree to the SMTP reply; the sysexits code follows from the reply."""
    reason = exc.reason
    if isinstance(exc, Duplicate | Ignored | Held):
        log.info("<%s> accepted without change: %s", message_id, reason)
        return _outcome(250, "2.0.0", f"Ok: {reason}")
    if isinstance(exc, TempFailure):
        log.warning("<%s> deferred: %s", message_id, reason)
        return _outcome(451, "4.3.0", reason)
    log.info("<%s> refused: %s", message_id, reason)
    if isinstance(exc, UnknownRecipient):
        return _outcome(550, "5.1.1", reason)
    if isinstance(exc, TooBig):
        return _outcome(552, "5.3.4", reason)
    if isinstance(exc, NotPermitted):
        return _outcome(550, "5.7.1", reason)
    assert isinstance(exc, Rejected)
    return _outcome(550, "5.6.0", reason)


def _outcome(code: int, status: str, text: str) -> Outcome:
    reply = _reply(code, status, text)
    return Outcome(reply, sysexits.for_reply(reply))


def _reply(code: int, status: str, text: str) -> str:
    """One SMTP reply line: no CR/LF can reach the wire, and it stays a sane length."""
    clean = " ".join(text.split())
    if len(clean) > _MAX_REASON:
        clean = clean[: _MAX_REASON - 3] + "..."
    return f"{code} {status} {clean}"
