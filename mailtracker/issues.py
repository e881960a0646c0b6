"""Apply: the one place where a mail (or any other interface) changes the tracker.

Every interface ends here, so a rule is written once: who may write, who joins the nosy list,
who is told. It runs inside the caller's transaction and writes the raw mail, its parsed
rows, the journal and (through ``notify``) the outbox together, or nothing at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from mailtracker import blobio, limits, people, permissions, store
from mailtracker.addresses import classify
from mailtracker.config import Config, TrackerConfig
from mailtracker.edits import IssueState, apply_edits
from mailtracker.errors import Duplicate, Held, NotPermitted, Rejected
from mailtracker.models import Attachment, Blob, Issue, JournalEntry, Message, utcnow
from mailtracker.people import Person
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

# Core statements built once: every mail writes through them, and the ORM's unit of work
# with its entity objects cost more than the database did (docs/performance.md).
_ISSUES = store.table(Issue)
_MESSAGES = store.table(Message)
_NEW_ISSUE = _ISSUES.insert().returning(_ISSUES.c.id)
_SAVE_ISSUE = update(_ISSUES).where(_ISSUES.c.id == bindparam("issue_pk"))
_NEW_MESSAGE = _MESSAGES.insert()
_NEW_ATTACHMENTS = store.table(Attachment).insert()
_NEW_JOURNAL_ENTRY = store.table(JournalEntry).insert()


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
    tracker_id = store.tracker_row(session, tracker.name).id
    if store.message_exists(session, tracker_id, incoming.message_id):
        raise Duplicate(f"message <{incoming.message_id}> is already stored in {tracker.name}")
    author = _author(session, tracker, sender)
    now = utcnow()
    created = target.kind is TargetKind.NEW_ISSUE
    issue = _issue_for(session, config, tracker_id, tracker, target, sender, commands, author, now)
    require_verified(sender, tracker, bool(commands.changes))
    permissions.check(_actor(author), issue.reporter_id, commands.changes)
    message_pk = _store_message(session, tracker_id, issue, author, incoming, commands, sender, now)
    entries = _creation_entries(issue) if created else []
    changes = apply_edits(session, issue, commands.changes)
    _journal(session, issue.id, author.id, message_pk, now, entries + _entries(changes))
    if sender.evidence != FORGE_EVIDENCE:  # the forge's user follows nothing
        _update_nosy(session, config, tracker, issue.id, incoming, author, commands, created)
    _save_issue(session, issue, created, now)
    recipients = (
        ()
        if sender.quiet
        else _recipients(session, tracker_id, issue.id, author, incoming, created)
    )
    return Change(
        tracker=tracker.name,
        issue_pk=issue.id,
        number=issue.number,
        message_pk=message_pk,
        created=created,
        author_pk=author.id,
        changes=tuple(changes),
        recipients=recipients,
    )


def _issue_for(
    session: Session,
    config: Config,
    tracker_id: int,
    tracker: TrackerConfig,
    target: Target,
    sender: Sender,
    commands: Commands,
    author: Person,
    now: datetime,
) -> IssueState:
    """The issue the mail goes to, made if it asks for a new one, once the sender is within
    the abuse limits (``limits.check`` raises ``TempFailure`` or ``Rejected``)."""
    if target.kind is TargetKind.NEW_ISSUE:
        limits.check(session, config.limits, author.id, sender.address, None, sender.quiet)
        return _new_issue(session, tracker_id, tracker, config.smtp.hostname, commands, author, now)
    issue = _existing_issue(session, tracker_id, tracker, target)
    limits.check(session, config.limits, author.id, sender.address, issue.id, sender.quiet)
    return issue


def _save_issue(session: Session, issue: IssueState, created: bool, now: datetime) -> None:
    """The edited columns and ``updated_at`` in one UPDATE; none for a new issue the mail
    did not edit, whose row was written with ``now`` already."""
    if issue.changed or not created:
        session.execute(_SAVE_ISSUE, {"issue_pk": issue.id, **issue.changed, "updated_at": now})


def _actor(user: Person) -> permissions.Actor:
    return permissions.Actor(user.id, user.role, frozenset(user.emails))


def _update_nosy(
    session: Session,
    config: Config,
    tracker: TrackerConfig,
    issue_id: int,
    incoming: Incoming,
    author: Person,
    commands: Commands,
    created: bool,
) -> None:
    """Cc'd people join a new issue; the author joins unless this mail took them off."""
    joining = _cc_users(session, config, tracker, incoming, author) if created else []
    own = set(author.emails)
    removed_self = any(
        e.prop == "nosy" and e.op == "remove" and own & set(e.value.split(","))
        for e in commands.changes
    )
    if not removed_self:
        joining.append(author.id)
    store.add_nosy(session, issue_id, joining)


def _author(session: Session, tracker: TrackerConfig, sender: Sender) -> Person:
    person = people.person_by_address(session, sender.address)
    if person is not None:
        if not person.name and sender.name:
            people.set_user_name(session, person.id, sender.name)
            person = person._replace(name=sender.name)
        return person
    if tracker.unknown_senders == "moderate":
        raise Held(f"{sender.address} is not a user of {tracker.title}: held for a moderator")
    if tracker.unknown_senders == "reject":
        raise NotPermitted(
            f"{tracker.title} takes mail only from registered users, and {sender.address} "
            f"is not one; ask the tracker's administrators for an account"
        )
    return people.add_person(session, sender.address, sender.name)


def _new_issue(
    session: Session,
    tracker_id: int,
    tracker: TrackerConfig,
    hostname: str,
    commands: Commands,
    author: Person,
    now: datetime,
) -> IssueState:
    number = store.next_issue_number(session, tracker_id)
    issue = IssueState(0, number, author.id, commands.title, tracker.statuses[0])
    values = {
        "tracker_id": tracker_id,
        "number": number,
        "title": issue.title,
        "status": issue.status,
        "reporter_id": author.id,
        "thread_root": thread_root(tracker, number, hostname),
        "created_at": now,
        "updated_at": now,
    }
    issue.id = session.execute(_NEW_ISSUE, values).scalar_one()
    return issue


def _existing_issue(
    session: Session, tracker_id: int, tracker: TrackerConfig, target: Target
) -> IssueState:
    assert target.number is not None
    row = store.issue_row(session, tracker_id, target.number)
    if row is None:
        raise Rejected(f"{tracker.title} has no issue {target.number}")
    return IssueState(**row)


def _store_message(
    session: Session,
    tracker_id: int,
    issue: IssueState,
    author: Person,
    incoming: Incoming,
    commands: Commands,
    sender: Sender,
    now: datetime,
) -> int:
    """The mail's row (a large raw mail through blob I/O), its references, attachments."""
    values = {
        "tracker_id": tracker_id,
        "issue_id": issue.id,
        "message_id": incoming.message_id,
        "author_id": author.id,
        "subject": incoming.subject,
        "date": incoming.date,
        "received_at": now,
        "in_reply_to": " ".join(incoming.in_reply_to),
        "references": " ".join(incoming.references),
        "body": commands.comment,
        "visible": commands.visible,
        "is_comment": bool(commands.comment.strip()) or not commands.changes,
        "verified": sender.verified,
        "evidence": sender.evidence[:400],
        "quiet": sender.quiet,
    }
    message_pk = blobio.insert_row(session, _NEW_MESSAGE, {**values, "raw": incoming.raw})
    refs = [*incoming.in_reply_to, *incoming.references]
    store.add_message_refs(session, tracker_id, message_pk, refs)
    _store_attachments(session, message_pk, incoming)
    return message_pk


def _store_attachments(session: Session, message_pk: int, incoming: Incoming) -> None:
    blobs = {a.sha256: a.data for a in incoming.attachments}
    rows = [{"sha256": k, "data": v} for k, v in blobs.items() if not blobio.is_large(session, v)]
    store.insert_ignore(session, Blob, rows)
    for sha256, data in blobs.items():
        if blobio.is_large(session, data):
            blobio.add_blob(session, sha256, data)
    parts = [
        {
            "message_pk": message_pk,
            "filename": part.filename,
            "content_type": part.content_type,
            "size": part.size,
            "sha256": part.sha256,
        }
        for part in incoming.attachments
    ]
    if parts:
        session.execute(_NEW_ATTACHMENTS, parts)


def _entries(changes: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    return [{"property": p, "old": o or None, "new": n or None} for p, o, n in changes]


def _journal(
    session: Session,
    issue_id: int,
    actor_id: int,
    message_pk: int,
    when: datetime,
    entries: list[dict[str, Any]],
) -> None:
    """One journal entry per mail: the creation (if any) and every property it changed."""
    if entries:
        values = {
            "issue_id": issue_id,
            "actor_id": actor_id,
            "created_at": when,
            "message_pk": message_pk,
            "changes": entries,
        }
        session.execute(_NEW_JOURNAL_ENTRY, values)


def _creation_entries(issue: IssueState) -> list[dict[str, Any]]:
    """The journal's record of a new issue, taken before the mail's own edits apply."""
    return [
        {"property": "title", "old": None, "new": issue.title},
        {"property": "status", "old": None, "new": issue.status},
    ]


def _cc_users(
    session: Session, config: Config, tracker: TrackerConfig, incoming: Incoming, author: Person
) -> list[int]:
    """Users for the Cc'd addresses of a new issue, registered if the tracker allows it;
    those already users found in one query."""
    wanted = [
        address
        for address in dict.fromkeys(incoming.cc)
        if "@" in address and classify(address, config.trackers) is None
    ]
    known = people.user_ids_by_address(session, wanted)
    ids = []
    for address in wanted:
        user_id = known.get(address.lower())
        if user_id is None and tracker.unknown_senders == "register":
            user_id = known[address.lower()] = people.add_person(session, address).id
        if user_id is not None and user_id != author.id:
            ids.append(user_id)
    return ids


def _recipients(
    session: Session,
    tracker_id: int,
    issue_id: int,
    author: Person,
    incoming: Incoming,
    created: bool,
) -> tuple[Notified, ...]:
    """The nosy list and the tracker's subscribers (``all``; ``new`` for a new issue), each
    once, less the author, those who got this very mail directly, and addresses disabled
    because mail to them bounced."""
    direct = set(incoming.to) | set(incoming.cc)
    modes = ("all", "new") if created else ("all",)
    found = people.followers(session, issue_id, tracker_id, modes, author.id)
    told = []
    for user_id, follower in found.items():
        email, disabled = next(iter(follower.addresses.items()))  # the one we write to
        if direct.isdisjoint(follower.addresses) and not disabled:
            told.append(Notified(email, follower.reason, user_id))
    return tuple(sorted(told))
