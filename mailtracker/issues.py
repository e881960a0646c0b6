"""Apply: the one place where a mail (or any other interface) changes the tracker.

Every interface ends here, so a rule is written once: who may write, who joins the nosy list,
who is told. It runs inside the caller's transaction and writes the raw mail, its parsed
rows, the journal and (through ``notify``) the outbox together, or nothing at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from mailtracker import blobio, limits, permissions, store
from mailtracker.addresses import classify
from mailtracker.config import Config, TrackerConfig
from mailtracker.edits import apply_edits
from mailtracker.errors import Duplicate, Held, NotPermitted, Rejected
from mailtracker.models import Attachment, Blob, Issue, JournalEntry, Message, User, utcnow
from mailtracker.trust import require_verified
from mailtracker.values import (
    FORGE_EVIDENCE,
    Change,
    Commands,
    Incoming,
    Notified,
    Sender,
    Target,
    TargetKind,
)

__all__ = ["apply", "thread_root"]


def thread_root(tracker: TrackerConfig, number: int, hostname: str) -> str:
    """The stable id every notification of an issue replies to: ``issue42.bugs@host``."""
    return f"{tracker.subject_tag}{number}.{tracker.name}@{hostname}"


def apply(
    session: Session,
    config: Config,
    tracker: TrackerConfig,
    target: Target,
    sender: Sender,
    incoming: Incoming,
    commands: Commands,
) -> Change:
    """Store the mail on its issue (creating the issue if asked), apply its edits, and say
    who is to be told. Raises ``Duplicate``, ``Held``, ``NotPermitted``."""
    row = store.tracker_row(session, tracker.name)
    if store.message_exists(session, row.id, incoming.message_id):
        raise Duplicate(f"message <{incoming.message_id}> is already stored in {tracker.name}")
    author = _author(session, tracker, sender)
    now = utcnow()
    created = target.kind is TargetKind.NEW_ISSUE
    if created:
        limits.check(session, config.limits, author.id, sender.address, None, sender.quiet)
        issue = _new_issue(session, row.id, tracker, config.smtp.hostname, commands, author, now)
    else:
        issue = _existing_issue(session, row.id, tracker, target)
        limits.check(session, config.limits, author.id, sender.address, issue.id, sender.quiet)
    require_verified(sender, tracker, bool(commands.changes))
    permissions.check(_actor(author), issue.reporter_id, commands.changes)
    message = _store_message(session, row.id, issue, author, incoming, commands, sender, now)
    entries = _creation_entries(issue) if created else []
    changes = apply_edits(session, issue, commands.changes)
    _journal(session, message, entries, changes)
    if sender.evidence != FORGE_EVIDENCE:  # the forge's user follows nothing
        _update_nosy(session, config, tracker, issue, incoming, author, commands, created)
    issue.updated_at = now
    recipients = () if sender.quiet else _recipients(session, issue, author, incoming, created)
    return Change(
        tracker=tracker.name,
        issue_pk=issue.id,
        number=issue.number,
        message_pk=message.id,
        created=created,
        author_pk=author.id,
        changes=tuple(changes),
        recipients=recipients,
    )


def _actor(user: User) -> permissions.Actor:
    return permissions.Actor(user.id, user.role, frozenset(a.email for a in user.addresses))


def _update_nosy(
    session: Session,
    config: Config,
    tracker: TrackerConfig,
    issue: Issue,
    incoming: Incoming,
    author: User,
    commands: Commands,
    created: bool,
) -> None:
    """Cc'd people join a new issue; the author joins unless this mail took them off."""
    if created:
        store.add_nosy(session, issue.id, _cc_users(session, config, tracker, incoming, author))
    own = {a.email for a in author.addresses}
    removed_self = any(
        e.prop == "nosy" and e.op == "remove" and own & set(e.value.split(","))
        for e in commands.changes
    )
    if not removed_self:
        store.add_nosy(session, issue.id, [author.id])


def _author(session: Session, tracker: TrackerConfig, sender: Sender) -> User:
    user = store.user_by_address(session, sender.address)
    if user is not None:
        if not user.name and sender.name:
            user.name = sender.name
        return user
    if tracker.unknown_senders == "moderate":
        raise Held(f"{sender.address} is not a user of {tracker.title}: held for a moderator")
    if tracker.unknown_senders == "reject":
        raise NotPermitted(
            f"{tracker.title} takes mail only from registered users, and {sender.address} "
            f"is not one; ask the tracker's administrators for an account"
        )
    return store.create_user(session, sender.address, sender.name)


def _new_issue(
    session: Session,
    tracker_id: int,
    tracker: TrackerConfig,
    hostname: str,
    commands: Commands,
    author: User,
    now: datetime,
) -> Issue:
    number = store.next_issue_number(session, tracker_id)
    issue = Issue(
        tracker_id=tracker_id,
        number=number,
        title=commands.title,
        status=tracker.statuses[0],
        reporter_id=author.id,
        priority=None,
        thread_root=thread_root(tracker, number, hostname),
        created_at=now,
        updated_at=now,
    )
    session.add(issue)
    session.flush()
    return issue


def _existing_issue(
    session: Session, tracker_id: int, tracker: TrackerConfig, target: Target
) -> Issue:
    assert target.number is not None
    issue = store.issue_by_number(session, tracker_id, target.number)
    if issue is None:
        raise Rejected(f"{tracker.title} has no issue {target.number}")
    return issue


def _store_message(
    session: Session,
    tracker_id: int,
    issue: Issue,
    author: User,
    incoming: Incoming,
    commands: Commands,
    sender: Sender,
    now: datetime,
) -> Message:
    message = Message(
        tracker_id=tracker_id,
        issue_id=issue.id,
        message_id=incoming.message_id,
        author_id=author.id,
        subject=incoming.subject,
        date=incoming.date,
        received_at=now,
        in_reply_to=" ".join(incoming.in_reply_to),
        references=" ".join(incoming.references),
        body=commands.comment,
        visible=commands.visible,
        is_comment=bool(commands.comment.strip()) or not commands.changes,
        verified=sender.verified,
        evidence=sender.evidence[:400],
        quiet=sender.quiet,
        raw=blobio.value(session, incoming.raw),
    )
    session.add(message)
    session.flush()
    blobio.fill(session, Message.__tablename__, "raw", message.id, incoming.raw)
    refs = [*incoming.in_reply_to, *incoming.references]
    store.add_message_refs(session, tracker_id, message.id, refs)
    _store_attachments(session, message, incoming)
    return message


def _store_attachments(session: Session, message: Message, incoming: Incoming) -> None:
    blobs = {a.sha256: a.data for a in incoming.attachments}
    rows = [{"sha256": k, "data": v} for k, v in blobs.items() if not blobio.is_large(session, v)]
    store.insert_ignore(session, Blob, rows)
    for sha256, data in blobs.items():
        if blobio.is_large(session, data):
            blobio.add_blob(session, sha256, data)
    for part in incoming.attachments:
        session.add(
            Attachment(
                message_pk=message.id,
                filename=part.filename,
                content_type=part.content_type,
                size=part.size,
                sha256=part.sha256,
            )
        )
    session.flush()


def _journal(
    session: Session,
    message: Message,
    entries: list[dict[str, Any]],
    changes: list[tuple[str, str, str]],
) -> None:
    """One journal entry per mail: the creation (if any) and every property it changed."""
    entries = entries + [{"property": p, "old": o or None, "new": n or None} for p, o, n in changes]
    if entries:
        session.add(
            JournalEntry(
                issue_id=message.issue_id,
                actor_id=message.author_id,
                created_at=message.received_at,
                message_pk=message.id,
                changes=entries,
            )
        )


def _creation_entries(issue: Issue) -> list[dict[str, Any]]:
    """The journal's record of a new issue, taken before the mail's own edits apply."""
    return [
        {"property": "title", "old": None, "new": issue.title},
        {"property": "status", "old": None, "new": issue.status},
    ]


def _cc_users(
    session: Session, config: Config, tracker: TrackerConfig, incoming: Incoming, author: User
) -> list[int]:
    """Users for the Cc'd addresses of a new issue, registered if the tracker allows it."""
    ids = []
    for address in dict.fromkeys(incoming.cc):
        if "@" not in address or classify(address, config.trackers) is not None:
            continue
        user = store.user_by_address(session, address)
        if user is None and tracker.unknown_senders == "register":
            user = store.create_user(session, address)
        if user is not None and user.id != author.id:
            ids.append(user.id)
    return ids


def _recipients(
    session: Session, issue: Issue, author: User, incoming: Incoming, created: bool
) -> tuple[Notified, ...]:
    """The nosy list and the tracker's subscribers (``all``; ``new`` for a new issue), each
    once, less the author, those who got this very mail directly, and addresses disabled
    because mail to them bounced."""
    direct = set(incoming.to) | set(incoming.cc)
    nosy = store.nosy_user_ids(session, issue.id)
    modes = ("all", "new") if created else ("all",)
    subscribed = store.subscriber_ids(session, issue.tracker_id, modes)
    # Addresses as plain rows (the first is the one we write to): no User objects, which
    # cost a query more and most of the time of a fan-out to thousands.
    users = store.addresses_by_user(session, (nosy | set(subscribed)) - {author.id})
    chosen = {uid: emails[0] for uid, emails in users.items() if direct.isdisjoint(emails)}
    disabled = store.disabled_addresses(session, chosen.values())
    return tuple(
        sorted(
            Notified(email, "nosy" if uid in nosy else subscribed[uid])
            for uid, email in chosen.items()
            if email not in disabled
        )
    )
