"""The typed values that pass between the pipeline stages (ARCHITECTURE.md).

Each is frozen: a stage reads the value it is given and returns a new one, so a stage can be
re-run on the same input (retry, quarantine) and give the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

__all__ = [
    "FORGE_EVIDENCE",
    "AttachmentData",
    "Change",
    "Commands",
    "Edit",
    "Envelope",
    "Incoming",
    "Notified",
    "Sender",
    "Target",
    "TargetKind",
]


# The evidence of mail the forge integration writes for a forge's events (forge.py):
# such a sender is vouched for by a signed webhook, and never joins a nosy list.
FORGE_EVIDENCE = "forge"
# The largest id or issue number a row can have: PostgreSQL's integer. Asking for a larger
# one fails in the driver instead of finding nothing, so input is checked against it.
LARGEST_ID = 2**31 - 1


@dataclass(frozen=True)
class Envelope:
    """What the MTA told us: the SMTP ``MAIL FROM`` (``""`` for a bounce) and ``RCPT TO``.

    ``vouched`` is set only by an interface that authenticated the sender itself (the REST
    API's user token): the evidence to record, e.g. ``"api-token"``; mail never sets it.
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    vouched: str = ""


@dataclass(frozen=True)
class AttachmentData:
    filename: str
    content_type: str
    data: bytes
    sha256: str

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class Incoming:
    """A parsed mail. Addresses are lower-cased; Message-IDs are kept without ``<>``."""

    raw: bytes
    message_id: str
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    from_addr: str
    from_name: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    date: str
    text: str
    html: str | None
    attachments: tuple[AttachmentData, ...]
    auto_submitted: str = ""
    precedence: str = ""
    loop: tuple[str, ...] = ()
    auth_results: tuple[str, ...] = ()
    defects: tuple[str, ...] = ()
    synthetic_id: bool = False


@dataclass(frozen=True)
class Sender:
    """Who wrote the mail and how far we trust it.

    ``quiet`` is set for mail that must never cause outgoing mail (auto-submitted, bulk,
    null sender, or an import without ``--notify``).
    """

    address: str
    name: str
    verified: bool = False
    evidence: str = ""
    quiet: bool = False


class TargetKind(Enum):
    NEW_ISSUE = "new"
    ISSUE = "issue"
    HELP = "help"


@dataclass(frozen=True)
class Target:
    """Where a mail goes in one tracker: a new issue, issue ``number``, or a control address."""

    tracker: str
    kind: TargetKind
    number: int | None = None
    how: str = ""


@dataclass(frozen=True)
class Edit:
    """One validated property change: ``op`` is ``set``, ``add`` or ``remove``.

    ``value`` is canonical: a configured status or priority, a lower-cased address, a
    comma-separated list for ``set`` of labels or nosy; ``""`` clears.
    """

    prop: str
    op: str
    value: str


@dataclass(frozen=True)
class Commands:
    """Property changes asked for by the mail, already validated; ``comment`` is the text
    left to store once command lines and the subject suffix are taken out, ``visible`` the
    same without quoted replies and signature (what notifications show)."""

    title: str
    comment: str
    changes: tuple[Edit, ...] = ()
    visible: str = ""


class Notified(NamedTuple):
    """Someone to tell about a change, and why: ``nosy`` (follows the issue), ``all`` or
    ``new`` (subscribed to the tracker's activity or to its new issues)."""

    email: str
    reason: str
    user_id: int  # whose reply and unsubscribe tokens the notification carries


@dataclass(frozen=True)
class Change:
    """What ``apply`` did, for ``notify``: the issue, the message stored, the property
    changes as ``(property, old, new)``, and who is to be told."""

    tracker: str
    issue_pk: int
    number: int
    message_pk: int | None
    created: bool
    author_pk: int | None = None
    changes: tuple[tuple[str, str, str], ...] = ()
    recipients: tuple[Notified, ...] = field(default_factory=tuple)
