"""Our addresses: which tracker a recipient names and what its sub-address asks for.

INTERFACE.md: ``bugs@``, ``bugs+42@``, ``bugs+42+TOKEN@``, ``bugs+help@``, the subscription
addresses ``bugs+subscribe@``, ``bugs+unsubscribe[+TOKEN]@``, ``bugs+confirm+TOKEN@``,
``bugs+42+subscribe@`` and ``bugs+42+unsubscribe@``, the moderation addresses
``bugs+approve+TOKEN@`` / ``bugs+reject+TOKEN@``, and
``bugs-bounces[+TOKEN]@``. Anything else is refused at RCPT (550 5.1.1), before the body is
sent. Local parts and domains compare case-insensitively (RFC 5321 lets us choose; every
MTA in front of us folds case anyway).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import parseaddr

from mailtracker.config import TrackerConfig

__all__ = ["Recipient", "classify", "is_address", "normalize"]

# Tokens are compared lower-cased: MTAs and clients may fold the case of local parts.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Recipient:
    """One envelope recipient we accept.

    ``kind`` is main, issue, help, subscribe, unsubscribe, confirm, approve, reject or
    bounces; ``number`` for an issue's addresses, ``token`` for a reply, confirmation,
    unsubscribe, moderation or bounce token.
    """

    address: str
    tracker: str
    kind: str
    number: int | None = None
    token: str = ""


def is_address(text: str) -> bool:
    """Whether an admin typed a mail address: a local part and a domain around the last
    ``@``, and nothing that belongs around an address rather than in it (spaces, control
    characters, ``<>,;``). ``bad@`` and ``@example.org`` were taken before."""
    local, at, domain = text.rpartition("@")
    if not (at and local and domain):
        return False
    return text.isprintable() and not any(c.isspace() or c in "<>,;" for c in text)


def normalize(address: str) -> str:
    """``"<Bugs@Example.ORG>"`` → ``"bugs@example.org"``."""
    return parseaddr(address.strip())[1].lower() or address.strip().strip("<>").lower()


def classify(address: str, trackers: tuple[TrackerConfig, ...]) -> Recipient | None:
    """The tracker address ``address`` stands for, or ``None`` if it is not ours."""
    addr = normalize(address)
    local, _, domain = addr.rpartition("@")
    if not local:
        return None
    for tracker in trackers:
        if domain != tracker.domain:
            continue
        found = _classify_local(addr, local, tracker)
        if found is not None:
            return found
    return None


def _classify_local(addr: str, local: str, tracker: TrackerConfig) -> Recipient | None:
    base, _, sub = local.partition("+")
    if base == f"{tracker.local_part}-bounces":
        ok = not sub or _TOKEN.match(sub) is not None
        return Recipient(addr, tracker.name, "bounces", token=sub) if ok else None
    if base != tracker.local_part:
        return None
    if not sub:
        return Recipient(addr, tracker.name, "main")
    if sub in ("help", "subscribe", "unsubscribe"):
        return Recipient(addr, tracker.name, sub)
    action, _, token = sub.partition("+")
    if action in ("approve", "reject", "confirm", "unsubscribe"):
        ok = _TOKEN.match(token) is not None
        return Recipient(addr, tracker.name, action, token=token) if ok else None
    return _issue_address(addr, sub, tracker)


def _issue_address(addr: str, sub: str, tracker: TrackerConfig) -> Recipient | None:
    """``42``, ``42+TOKEN`` (a reply token), ``42+subscribe`` or ``42+unsubscribe``."""
    number, plus, token = sub.partition("+")
    if not number.isdigit() or len(number) > 9 or int(number) == 0:
        return None
    if token in ("subscribe", "unsubscribe"):
        return Recipient(addr, tracker.name, token, number=int(number))
    if plus and not _TOKEN.match(token):
        return None
    return Recipient(addr, tracker.name, "issue", number=int(number), token=token)
