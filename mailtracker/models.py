"""The SQLAlchemy tables. Every column used to look something up has an index.

Times are naive UTC ``datetime`` values (SQLite keeps no zone; PostgreSQL gets the same),
written with ``utcnow()``. The raw bytes of each mail are the record (ARCHITECTURE rule 5):
everything else in ``messages`` and ``attachments`` can be rebuilt from ``messages.raw``.
The schema is created and changed only by the alembic migrations in ``migrations/``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Address",
    "ApiToken",
    "Attachment",
    "Base",
    "Blob",
    "Bounce",
    "BounceScore",
    "ControlMail",
    "DigestRun",
    "HeldMail",
    "Issue",
    "IssueLabel",
    "JournalEntry",
    "Message",
    "MessageRef",
    "Nosy",
    "Outbox",
    "Quarantined",
    "SigningKey",
    "Subscription",
    "SubscriptionRequest",
    "Tracker",
    "User",
    "utcnow",
]

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time as naive UTC, the one form stored in every table."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Tracker(Base):
    """One tracker address; ``next_number`` hands out gap-free issue numbers."""

    __tablename__ = "trackers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    next_number: Mapped[int] = mapped_column(Integer, default=1)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(20), default="user")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    addresses: Mapped[list[Address]] = relationship(
        back_populates="user", order_by="Address.id", lazy="selectin"
    )

    @property
    def email(self) -> str:
        """The first address a user registered is the one we write to."""
        return self.addresses[0].email if self.addresses else ""


class Address(Base):
    """A mail address of a user, stored lower-cased so lookups are exact."""

    __tablename__ = "addresses"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    user: Mapped[User] = relationship(back_populates="addresses")


class Issue(Base):
    __tablename__ = "issues"
    __table_args__ = (
        UniqueConstraint("tracker_id", "number"),
        Index(None, "tracker_id", "status"),
        Index(None, "reporter_id", "created_at"),
        # Threading asks for (tracker, thread root); without ANALYZE statistics SQLite took
        # the (tracker, number) key instead and scanned every issue: 17 ms a mail at 100,000 issues.
        Index(None, "tracker_id", "thread_root"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    tracker_id: Mapped[int] = mapped_column(ForeignKey("trackers.id"))
    number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str | None] = mapped_column(String(64), nullable=True)
    assignee_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id"), nullable=True, index=True
    )
    thread_root: Mapped[str] = mapped_column(String(400), index=True)
    reporter_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class IssueLabel(Base):
    __tablename__ = "issue_labels"
    issue_id: Mapped[int] = mapped_column(
        ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True
    )
    label: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)


class Nosy(Base):
    __tablename__ = "nosy"
    issue_id: Mapped[int] = mapped_column(
        ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)


class Message(Base):
    """A stored mail. ``message_id`` is unique per tracker: redelivery changes nothing."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("tracker_id", "message_id"),
        Index(None, "author_id", "received_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    tracker_id: Mapped[int] = mapped_column(ForeignKey("trackers.id"))
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id"), index=True)
    message_id: Mapped[str] = mapped_column(String(998))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    date: Mapped[str] = mapped_column(String(200), default="")
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    in_reply_to: Mapped[str] = mapped_column(Text, default="")
    references: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    visible: Mapped[str | None] = mapped_column(Text, nullable=True)
    is_comment: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    evidence: Mapped[str] = mapped_column(String(400), default="", server_default="")
    quiet: Mapped[bool] = mapped_column(Boolean, default=False)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    attachments: Mapped[list[Attachment]] = relationship(order_by="Attachment.id", lazy="selectin")


class MessageRef(Base):
    """Every id a stored mail names in In-Reply-To/References, even ids we never saw.

    A thread whose root we never received (it predates the tracker, or went only to the
    list) is still one thread: replies that share that missing ancestor belong together,
    as in JWZ's threading with "empty containers".
    """

    __tablename__ = "message_refs"
    __table_args__ = (Index(None, "tracker_id", "ref_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tracker_id: Mapped[int] = mapped_column(ForeignKey("trackers.id"))
    message_pk: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    ref_id: Mapped[str] = mapped_column(String(998))


class Attachment(Base):
    __tablename__ = "attachments"
    id: Mapped[int] = mapped_column(primary_key=True)
    message_pk: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(Text, default="")
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)


class Blob(Base):
    """Attachment contents, addressed by their SHA-256 so a file is kept once."""

    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class JournalEntry(Base):
    """One change of an issue: who, when, and ``[{"property", "old", "new"}]``."""

    __tablename__ = "journal"
    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    message_pk: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), nullable=True)
    changes: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class HeldMail(Base):
    """Mail from an unknown sender to a ``moderate`` tracker, waiting for an admin."""

    __tablename__ = "held_mail"
    __table_args__ = (UniqueConstraint("tracker_id", "message_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tracker_id: Mapped[int] = mapped_column(ForeignKey("trackers.id"))
    message_id: Mapped[str] = mapped_column(String(998))
    token: Mapped[str] = mapped_column(String(64), unique=True)
    sender: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text, default="")
    mail_from: Mapped[str] = mapped_column(String(320), default="")
    rcpt: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    raw: Mapped[bytes] = mapped_column(LargeBinary)  # last: see blobio.py


class ControlMail(Base):
    """Mail to a control address (help, moderation) already answered: redelivery is a no-op."""

    __tablename__ = "control_mail"
    __table_args__ = (UniqueConstraint("tracker_id", "message_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tracker_id: Mapped[int] = mapped_column(ForeignKey("trackers.id"))
    message_id: Mapped[str] = mapped_column(String(998))
    action: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Quarantined(Base):
    """A mail that made the pipeline fail unexpectedly: kept whole, answered 250, re-run by
    ``mailtracker quarantine retry`` after the fix (ARCHITECTURE rule 1)."""

    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(998), default="", index=True)
    mail_from: Mapped[str] = mapped_column(String(320), default="")
    rcpt_tos: Mapped[list[str]] = mapped_column(JSON)
    error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="held", index=True)
    outcome: Mapped[str] = mapped_column(Text, default="")
    retried_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)  # last: see blobio.py


class Bounce(Base):
    """A delivery report about our own mail: never a comment, never answered, kept whole."""

    __tablename__ = "bounces"
    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(320), index=True)
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"), nullable=True)
    permanent: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16), default="")
    diagnostic: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(String(998), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    raw: Mapped[bytes] = mapped_column(LargeBinary)  # last: see blobio.py


class BounceScore(Base):
    """How often mail to an address bounced for good; past the threshold it is disabled
    (kept on nosy lists, but not mailed) until ``mailtracker bounces reset``."""

    __tablename__ = "bounce_scores"
    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    score: Mapped[int] = mapped_column(Integer, default=0)
    last_bounce_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, index=True)


class ApiToken(Base):
    """A user's token for writes through the REST API; only its SHA-256 is kept, so a
    stolen database does not hand out the tokens. One per user: a new one replaces it."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SigningKey(Base):
    """Secrets for reply-address tokens, kept in the database so every gateway shares them
    and they survive restarts. Rotation retires the current one; retired keys are still
    honoured for a grace period, so replies to older notifications keep working."""

    __tablename__ = "signing_keys"
    id: Mapped[int] = mapped_column(primary_key=True)
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Subscription(Base):
    """A tracker-wide subscription: ``all`` activity, ``new`` issues only, or a daily
    ``digest``. Following one issue is its nosy list, not a row here."""

    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("tracker_id", "user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tracker_id: Mapped[int] = mapped_column(ForeignKey("trackers.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    mode: Mapped[str] = mapped_column(String(16), default="all")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SubscriptionRequest(Base):
    """A (un)subscription waiting for the address's owner to confirm it (double opt-in)."""

    __tablename__ = "subscription_requests"
    id: Mapped[int] = mapped_column(primary_key=True)
    tracker_id: Mapped[int] = mapped_column(ForeignKey("trackers.id"))
    address: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16), default="all")
    issue_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class DigestRun(Base):
    """One row per tracker and day a digest was made: the worker never sends one twice."""

    __tablename__ = "digest_runs"
    __table_args__ = (UniqueConstraint("tracker_id", "day"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tracker_id: Mapped[int] = mapped_column(ForeignKey("trackers.id"))
    day: Mapped[str] = mapped_column(String(10))
    period_start: Mapped[datetime] = mapped_column(DateTime)
    period_end: Mapped[datetime] = mapped_column(DateTime)
    mails: Mapped[int] = mapped_column(Integer, default=0)


class Outbox(Base):
    """A mail to send, written in the same transaction as the change that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (Index(None, "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tracker_id: Mapped[int] = mapped_column(ForeignKey("trackers.id"))
    issue_id: Mapped[int | None] = mapped_column(ForeignKey("issues.id"), nullable=True, index=True)
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    cause_message_pk: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), nullable=True)
    envelope_from: Mapped[str] = mapped_column(String(320))
    verp_token: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    recipient: Mapped[str] = mapped_column(String(320))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # The worker holding the row's lease, ``HOST:PID:START`` (``claims.py``); None when free.
    claimed_by: Mapped[str | None] = mapped_column(String(300), nullable=True)
