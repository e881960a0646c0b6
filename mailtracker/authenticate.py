"""Authenticate: who wrote the mail, how far we trust it, and whether it may cause mail.

The sender is the From address; ``trust.py`` then weighs the evidence that it is true
(DKIM, Authentication-Results, reply tokens). This stage also kills
loops (ARCHITECTURE rule 6): our own notifications coming back are ignored, and mail that
is auto-submitted (RFC 3834), bulk, or a bounce is stored but never answered.
"""

from __future__ import annotations

from mailtracker.config import Config, TrackerConfig
from mailtracker.errors import Ignored, Rejected
from mailtracker.values import Envelope, Incoming, Sender

__all__ = ["LOOP_HEADER", "authenticate", "is_quiet"]

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
