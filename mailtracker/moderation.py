"""Moderation: approve or discard mail held from unknown senders (CLI and mail share this).

Approving registers the sender and runs the held mail through the pipeline as if it had
just arrived, so it threads, notifies and is checked like any other mail; the held copy is
removed only once the pipeline has given a final answer (stored or refused for good).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import delete

from mailtracker import store as queries
from mailtracker.config import Config
from mailtracker.models import HeldMail
from mailtracker.store import Store
from mailtracker.sysexits import EX_DATAERR
from mailtracker.values import Envelope

if TYPE_CHECKING:
    from mailtracker.pipeline import Outcome

__all__ = ["approve", "discard"]

log = logging.getLogger(__name__)


def approve(store: Store, config: Config, held_id: int) -> Outcome:
    """Register the sender, run the mail, and drop it from the queue unless it must retry."""
    from mailtracker.pipeline import Outcome, process

    with store.write() as session:
        held = session.get(HeldMail, held_id)
        if held is None:
            return Outcome(f"550 5.0.0 there is no held mail {held_id}", EX_DATAERR)
        if queries.user_by_address(session, held.sender) is None:
            queries.create_user(session, held.sender)
        raw, envelope = held.raw, Envelope(held.mail_from, (held.rcpt,))
    outcome = process(store, config, raw, envelope)
    if not outcome.reply.startswith("4"):
        with store.write() as session:
            session.execute(delete(HeldMail).where(HeldMail.id == held_id))
    log.info("held mail %d approved: %s", held_id, outcome.reply)
    return outcome


def discard(store: Store, held_id: int) -> bool:
    """Drop a held mail without a word to its sender (no backscatter); False if not there."""
    with store.write() as session:
        held = session.get(HeldMail, held_id)
        if held is None:
            return False
        session.delete(held)
    return True
