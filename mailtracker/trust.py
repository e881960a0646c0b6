"""Trust: the evidence that a mail comes from who its From header says, and what it allows.

Three kinds of evidence, strongest first (docs/security.md):

1. a reply token (``bugs+42+TOKEN@``) issued to the sender's own address;
2. an ``Authentication-Results`` header from a host we trust (``trusted_authserv_ids``),
   the topmost such one only (RFC 8601 §5), saying dkim or dmarc pass for the From domain;
3. our own DKIM check of an aligned signature (``verify_dkim``), DNS through dnspython or
   the ``static_dns`` records of the configuration.

``verify_senders`` decides what needs the evidence: ``commands`` (property changes), ``all``
(any mail), or ``off`` (trust From, as Roundup does, for closed networks). The evidence is
stored with every message, so an unverified comment is visibly marked.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from mailtracker import store, tokens
from mailtracker.addresses import Recipient
from mailtracker.authresults import parse_authentication_results
from mailtracker.config import AuthenticationConfig, Config, TrackerConfig
from mailtracker.errors import NotPermitted, Rejected
from mailtracker.values import Envelope, Incoming, Sender

if TYPE_CHECKING:
    from mailtracker.dkimcheck import DnsFunc

__all__ = ["HOW_TO_VERIFY", "establish", "require_verified", "resolver"]

HOW_TO_VERIFY = (
    "sign your mail with DKIM (most mail providers do), or reply to one of the tracker's "
    "notifications: its Reply-To address vouches for you"
)


def establish(
    session: Session,
    config: Config,
    tracker: TrackerConfig,
    incoming: Incoming,
    envelope: Envelope,
    recipient: Recipient,
    sender: Sender,
) -> Sender:
    """The sender with its evidence; ``Rejected`` for a forged or damaged reply token."""
    if envelope.vouched:
        return replace(sender, verified=True, evidence=envelope.vouched)
    if recipient.token and _token_is_theirs(session, tracker, recipient, sender.address):
        return replace(sender, verified=True, evidence=f"token:{tracker.name}/{recipient.number}")
    domain = sender.address.rpartition("@")[2]
    auth = config.authentication
    results = parse_authentication_results(
        list(incoming.auth_results), auth.trusted_authserv_ids, domain
    )
    if results.verified:
        return replace(sender, verified=True, evidence=results.detail)
    if not auth.verify_dkim:
        return replace(sender, evidence=results.detail)
    if not _may_be_signed(incoming.raw):
        return replace(sender, evidence="dkim:none (no signature)")
    from mailtracker.dkimcheck import verify_dkim  # dkimpy and dnspython: only when needed

    dkim = verify_dkim(incoming.raw, domain, resolver(auth))
    return replace(sender, verified=dkim.verified, evidence=dkim.detail)


def _may_be_signed(raw: bytes) -> bool:
    """False only when the header block has no DKIM-Signature field at all.

    Why: loading dkimpy and dnspython costs about 70 ms, most of a piped ``ingest``, and most
    mail that reaches this point is unsigned. Any mention of the name counts as "maybe"; the
    real check then decides (a false "maybe" costs time, never a wrong verdict).
    """
    end = raw.find(b"\n\n")
    crlf_end = raw.find(b"\r\n\r\n")
    if crlf_end != -1 and (end == -1 or crlf_end < end):
        end = crlf_end
    head = raw if end == -1 else raw[:end]
    return b"dkim-signature" in head.lower()


def _token_is_theirs(
    session: Session, tracker: TrackerConfig, recipient: Recipient, address: str
) -> bool:
    """True if the token was issued to ``address``'s user; a bad token is refused."""
    if recipient.number is None:
        return False
    owner = tokens.token_user(session, tracker.name, recipient.number, recipient.token)
    if owner is None:
        raise Rejected(
            f"the address {recipient.address} carries a reply token that is not valid "
            f"(damaged, forged or expired); write to {tracker.issue_address(recipient.number)} "
            "instead, or reply to a newer notification"
        )
    user = store.user_by_address(session, address)
    return user is not None and user.id == owner


def resolver(auth: AuthenticationConfig) -> DnsFunc:
    """The ``static_dns`` records when configured (offline sites, tests), else DNS."""
    from mailtracker.dkimcheck import dns_resolver, static_resolver

    if auth.static_dns:
        return static_resolver(auth.static_dns)
    return dns_resolver()


def require_verified(sender: Sender, tracker: TrackerConfig, has_edits: bool) -> None:
    """Refuse what ``verify_senders`` reserves for verified senders; the one place that does."""
    mode = tracker.verify_senders
    if mode == "off" or sender.verified:
        return
    if mode == "all":
        raise NotPermitted(
            f"{tracker.title} takes mail only from verified senders, and this mail carries "
            f"no proof that it comes from {sender.address}: {HOW_TO_VERIFY}"
        )
    if has_edits:
        raise NotPermitted(
            f"property changes need a verified sender, and this mail carries no proof that "
            f"it comes from {sender.address}: {HOW_TO_VERIFY}; nothing was changed"
        )
