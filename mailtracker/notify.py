"""Notify: turn a ``Change`` into one mail per recipient, queued in the outbox.

The body is rendered once per event from ``templates/mail/notification.txt``; only the
per-recipient headers (To, Message-ID) differ, so a fan-out to thousands of nosy members
renders one template. Threading follows INTERFACE.md: every notification of an issue
replies to a stable root id, so each issue is one conversation in the recipient's client,
and Reply-To points at the issue's own address so answers find their way back.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import NamedTuple

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from mailtracker import store, tokens
from mailtracker.authenticate import LOOP_HEADER
from mailtracker.config import TrackerConfig
from mailtracker.headers import SMTP_POLICY
from mailtracker.models import Address as UserAddress
from mailtracker.models import Issue, Outbox, User, utcnow
from mailtracker.outheaders import AS_SET, mime_type, policy_for, put, threading_headers
from mailtracker.templating import mail_environment
from mailtracker.values import AttachmentData, Change
from mailtracker.web_unsubscribe import unsubscribe_url

__all__ = [
    "ATTACH_LIMIT",
    "Addressee",
    "Notice",
    "OutgoingMail",
    "queue_notifications",
    "render",
    "transfer_encoding",
    "verp_address",
    "verp_token",
]

ATTACH_LIMIT = 100 * 1024  # bytes of attachments per message re-sent to every recipient


@dataclass(frozen=True)
class Notice:
    """Everything a notification says, gathered from the database; rendering is pure."""

    tracker: TrackerConfig
    hostname: str
    number: int
    title: str
    status: str
    thread_root: str
    author_name: str
    author_email: str
    cause_id: str
    comment: str
    created: bool
    changes: tuple[tuple[str, str, str], ...]
    attachments: tuple[AttachmentData, ...]
    when: datetime
    base_url: str = ""  # [web] base_url: https adds the one-click URL (RFC 8058)


@dataclass(frozen=True)
class OutgoingMail:
    message_id: str
    recipient: str
    raw: bytes
    verp_token: str


class Addressee(NamedTuple):
    """One recipient: the token of their own reply address (``""``: none), why they get
    the mail (``nosy``, ``all``, ``new``: the footer says so) and their one-click
    unsubscribe token (``""``: none)."""

    email: str
    token: str = ""
    reason: str = "nosy"
    unsubscribe: str = ""


def render(notice: Notice, recipients: Sequence[Addressee]) -> list[OutgoingMail]:
    """One mail per recipient; the shared part is rendered once per reason (footer)."""
    shared: dict[str, bytes] = {}
    for reason in dict.fromkeys(r.reason for r in recipients):
        shared[reason] = _shared_part(notice, reason)
    return [_personalise(notice, shared[rcpt.reason], rcpt) for rcpt in recipients]


def _shared_part(notice: Notice, reason: str) -> bytes:
    """Headers common to all recipients, then the MIME body (RFC 2369/2919 list headers)."""
    msg = EmailMessage(policy=SMTP_POLICY)
    tracker = notice.tracker
    for name, value in (
        ("From", str(Address(_from_name(notice), addr_spec=tracker.address))),
        ("Subject", f"[{tracker.subject_tag}{notice.number}] {notice.title}"),
        ("Date", format_datetime(notice.when.replace(tzinfo=UTC))),
        *threading_headers(notice.thread_root, notice.cause_id),
        ("List-Id", f"{tracker.title} <{tracker.list_id}>"),
        ("List-Post", f"<mailto:{tracker.issue_address(notice.number)}>"),
        ("List-Help", f"<mailto:{tracker.help_address}>"),
        ("List-Subscribe", f"<mailto:{tracker.local_part}+subscribe@{tracker.domain}>"),
        ("Auto-Submitted", "auto-generated"),
        ("Precedence", "list"),
        (LOOP_HEADER, tracker.address),
        ("X-Mailtracker-Issue", f"{tracker.name}/{notice.number}"),
    ):
        put(msg, name, value)
    body = _body(notice, reason)
    msg.set_content(body, charset="utf-8", cte=transfer_encoding(body))
    for part in _attached(notice.attachments):
        maintype, subtype = mime_type(part.content_type)
        msg.add_attachment(part.data, maintype=maintype, subtype=subtype, filename=part.filename)
    if msg.is_multipart():  # the generator would compile a regex for a boundary it makes
        msg.set_boundary(f"=-{secrets.token_hex(16)}-=")
    return msg.as_bytes(policy=AS_SET)


def transfer_encoding(text: str) -> str:
    """7bit for ASCII text, else quoted-printable (readable where it is mostly ASCII)."""
    return "7bit" if text.isascii() else "quoted-printable"


def _from_name(notice: Notice) -> str:
    who = notice.author_name or notice.author_email.split("@")[0]
    return f"{who} via {notice.tracker.title}"


def _attached(parts: tuple[AttachmentData, ...]) -> tuple[AttachmentData, ...]:
    """Small attachments travel with the mail; above ``ATTACH_LIMIT`` they are listed only."""
    if sum(p.size for p in parts) > ATTACH_LIMIT:
        return ()
    return tuple(p for p in parts if "/" in p.content_type and p.content_type != "message/rfc822")


def _body(notice: Notice, reason: str) -> str:
    attached = {p.sha256 for p in _attached(notice.attachments)}
    template = mail_environment().get_template("mail/notification.txt")
    return template.render(
        created=notice.created,
        tag=notice.tracker.subject_tag,
        number=notice.number,
        title=notice.title,
        status=notice.status,
        author=_author_line(notice),
        changes=[{"property": p, "old": o, "new": n} for p, o, n in notice.changes],
        comment=notice.comment.strip("\n"),
        attachments=[
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "attached": a.sha256 in attached,
                "url": _attachment_url(notice, a.sha256),
            }
            for a in notice.attachments
        ],
        tracker_title=notice.tracker.title,
        issue_address=notice.tracker.issue_address(notice.number),
        reason=reason,
        tracker=notice.tracker,
    )


def _attachment_url(notice: Notice, sha256: str) -> str:
    """Where the web server serves an attachment too large to send to everyone."""
    if not notice.base_url:
        return ""
    base = notice.base_url.rstrip("/")
    return f"{base}/{notice.tracker.name}/{notice.number}/attachments/{sha256}"


def _author_line(notice: Notice) -> str:
    if notice.author_name:
        return f"{notice.author_name} <{notice.author_email}>"
    return notice.author_email


def _personalise(notice: Notice, shared: bytes, rcpt: Addressee) -> OutgoingMail:
    """To, Message-ID and the recipient's own Reply-To (``bugs+42+TOKEN@``) before the
    shared headers and body."""
    tracker = notice.tracker
    message_id = f"mt.{secrets.token_hex(10)}.{tracker.name}{notice.number}@{notice.hostname}"
    reply_to = tracker.issue_address(notice.number)
    if rcpt.token:
        reply_to = reply_to.replace("@", f"+{rcpt.token}@", 1)
    headers = [("To", rcpt.email), ("Message-ID", f"<{message_id}>"), ("Reply-To", f"<{reply_to}>")]
    if rcpt.unsubscribe:  # RFC 2369: one click by mail; no confirmation needed (RFC 8058)
        address = f"{tracker.local_part}+unsubscribe+{rcpt.unsubscribe}@{tracker.domain}"
        links = [f"<mailto:{address}>"]
        if notice.base_url.startswith("https://"):  # RFC 8058 §3.1: only HTTPS URIs
            url = unsubscribe_url(notice.base_url, tracker.name, rcpt.unsubscribe)
            links.insert(0, f"<{url}>")
            headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        headers.append(("List-Unsubscribe", ", ".join(links)))
    policy = policy_for(rcpt.email, SMTP_POLICY)
    head = b"".join(policy.fold_binary(name, value) for name, value in headers)
    return OutgoingMail(message_id, rcpt.email, head + shared, verp_token())


def verp_token() -> str:
    """A random token for the envelope sender ``bugs-bounces+TOKEN@``: a bounce sent back
    to it names the outbox row, hence the recipient, and nobody can guess one."""
    return secrets.token_hex(8)


def verp_address(tracker: TrackerConfig, token: str) -> str:
    return f"{tracker.local_part}-bounces+{token}@{tracker.domain}"


def queue_notifications(
    session: Session,
    change: Change,
    tracker: TrackerConfig,
    hostname: str,
    *,
    cause_id: str,
    comment: str,
    attachments: tuple[AttachmentData, ...],
    base_url: str = "",
) -> int:
    """Render the change for its recipients and write the outbox rows; returns how many."""
    if not change.recipients:
        return 0
    notice = _notice(session, change, tracker, hostname, cause_id, comment, attachments)
    notice = replace(notice, base_url=base_url)
    mails = render(notice, _addressees(session, change, tracker))
    row = store.tracker_row(session, tracker.name)
    # One executemany, not an ORM object per mail: a fan-out writes thousands of rows.
    rows = [
        {
            "tracker_id": row.id,
            "issue_id": change.issue_pk,
            "message_id": m.message_id,
            "cause_message_pk": change.message_pk,
            "envelope_from": verp_address(tracker, m.verp_token),
            "verp_token": m.verp_token,
            "recipient": m.recipient,
            "raw": m.raw,
            "next_attempt_at": notice.when,
            "created_at": notice.when,
        }
        for m in mails
    ]
    session.execute(_NEW_OUTBOX, rows)
    return len(mails)


_NEW_OUTBOX = store.table(Outbox).insert()


def _addressees(session: Session, change: Change, tracker: TrackerConfig) -> list[Addressee]:
    """Each recipient with the tokens of their own reply and unsubscribe addresses."""
    secret = tokens.current_secret(session)  # one lookup for all three kinds of token
    reply = tokens.minter(session, tracker.name, change.number, secret)
    leave = {
        "nosy": tokens.unsubscribe_minter(session, tracker.name, str(change.number), secret),
        "all": tokens.unsubscribe_minter(session, tracker.name, "all", secret),
    }
    leave["new"] = leave["all"]
    return [
        Addressee(r.email, reply(r.user_id), r.reason, leave[r.reason](r.user_id))
        for r in change.recipients
    ]


def _notice(
    session: Session,
    change: Change,
    tracker: TrackerConfig,
    hostname: str,
    cause_id: str,
    comment: str,
    attachments: tuple[AttachmentData, ...],
) -> Notice:
    # One query for what apply() handed over as ids: the issue, and its author's name and
    # first address (the one we write to; "" when there is none). It used to take two.
    params = {"issue_pk": change.issue_pk, "author_pk": change.author_pk}
    row = session.execute(_NOTICE, params).one()
    return Notice(
        tracker=tracker,
        hostname=hostname,
        number=row.number,
        title=row.title,
        status=row.status,
        thread_root=row.thread_root,
        author_name=row.name or "",
        author_email=row.email or "",
        cause_id=cause_id,
        comment=comment,
        created=change.created,
        changes=change.changes,
        attachments=attachments,
        when=utcnow(),
    )


_ISSUES = store.table(Issue)
_USERS = store.table(User)
_ADDRESSES = store.table(UserAddress)
_NOTICE = (
    select(
        _ISSUES.c.number,
        _ISSUES.c.title,
        _ISSUES.c.status,
        _ISSUES.c.thread_root,
        _USERS.c.name,
        _ADDRESSES.c.email,
    )
    .select_from(_ISSUES)
    .outerjoin(_USERS, _USERS.c.id == bindparam("author_pk"))
    .outerjoin(_ADDRESSES, _ADDRESSES.c.user_id == _USERS.c.id)
    .where(_ISSUES.c.id == bindparam("issue_pk"))
    .order_by(_ADDRESSES.c.id)
    .limit(1)
)
