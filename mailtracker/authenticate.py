"""Authenticate: who wrote the mail, how far we trust it, and whether it may cause mail.

Today the sender is the From address (Roundup's behaviour); the trust evidence (DKIM,
Authentication-Results, reply tokens) plugs in here and only here. This stage also kills
loops (ARCHITECTURE rule 6): our own notifications coming back are ignored, and mail that
is auto-submitted (RFC 3834), bulk, or a bounce is stored but never answered.
"""

from __future__ import annotations

import logging

from mailtracker.config import Config, TrackerConfig
from mailtracker.errors import Ignored, Rejected
from mailtracker.values import Envelope, Incoming, Sender

__all__ = ["LOOP_HEADER", "authenticate", "is_quiet", "require_verified"]

log = logging.getLogger(__name__)

LOOP_HEADER = "X-Mailtracker-Loop"
_BULK_PRECEDENCE = ("bulk", "junk")


def authenticate(
    incoming: Incoming, envelope: Envelope, tracker: TrackerConfig, config: Config
) -> Sender:
    """Return the ``Sender``; raise ``Ignored`` for our own loop, ``Rejected`` if anonymous."""
    ours = {t.address.lower() for t in config.trackers}
    if any(value.lower() in ours for value in incoming.loop):
        raise Ignored(f"mail carries our own {LOOP_HEADER} header: a loop, dropped")
    address = incoming.from_addr or envelope.mail_from.lower()
    if not address or "@" not in address:
        raise Rejected(
            "the mail has no From address and no envelope sender, "
            "so we cannot tell who wrote it; add a From header"
        )
    quiet = is_quiet(incoming, envelope) or address in ours
    return Sender(address=address, name=incoming.from_name, quiet=quiet)


def require_verified(sender: Sender, tracker: TrackerConfig, has_edits: bool) -> None:
    """The one place that refuses commands from senders we could not verify.

    No verification evidence is gathered yet (DKIM, Authentication-Results and reply tokens
    arrive with the trust work, issue #5), so ``verify_senders`` cannot be honoured and the
    From header is trusted, as Roundup does; this is the seam where that check lands.
    """
    if sender.verified or not has_edits or tracker.verify_senders == "off":
        return
    log.debug("%s: commands from an unverified sender accepted (no verification yet)",
              sender.address)


def is_quiet(incoming: Incoming, envelope: Envelope) -> bool:
    """True for mail that must never trigger mail: auto-replies, bulk, bounces.

    RFC 3834 §5: anything but ``Auto-Submitted: no`` is automatic. ``Precedence: bulk/junk``
    is the older convention vacation programs still honour. A null envelope sender
    (``MAIL FROM:<>``) is a delivery report (RFC 5321 §4.5.5) and must not be answered.
    """
    auto = incoming.auto_submitted not in ("", "no")
    bulk = incoming.precedence in _BULK_PRECEDENCE
    null_sender = envelope.mail_from.strip("<>") == ""
    return auto or bulk or null_sender
