"""Route: which issue of a tracker a mail belongs to, or that it opens a new one.

Order (issue #2, INTERFACE.md): the sub-address (``bugs+42@``) is the most deliberate choice a
sender can make; then the In-Reply-To and References headers, strict threading as
public-inbox does it (nearest ancestor first, matched against mail we stored and every
notification we sent); then the ``[issue42]`` subject tag. No guessing by subject text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mailtracker.addresses import Recipient
from mailtracker.config import TrackerConfig
from mailtracker.errors import Rejected
from mailtracker.subject import find_tag
from mailtracker.values import Incoming, Target, TargetKind

__all__ = ["Lookup", "route", "thread_ids"]


class Lookup(Protocol):
    """What routing needs to know from the store, for one tracker."""

    def issue_exists(self, number: int) -> bool: ...

    def issue_for_ids(self, ids: Sequence[str]) -> int | None: ...


def thread_ids(incoming: Incoming) -> list[str]:
    """In-Reply-To, then References from the nearest ancestor back to the root.

    Some clients (older Outlook) send only In-Reply-To, others only References; some put
    several ids in In-Reply-To. Each id is tried once, nearest first.
    """
    return list(dict.fromkeys([*incoming.in_reply_to, *reversed(incoming.references)]))


def route(
    incoming: Incoming, recipient: Recipient, tracker: TrackerConfig, lookup: Lookup
) -> Target:
    """Decide the target; raise ``Rejected`` when the mail names an issue that is not there."""
    if recipient.kind == "help":
        return Target(tracker.name, TargetKind.HELP, how="help address")
    if recipient.number is not None:
        _require(lookup, recipient.number, tracker, f"the address {recipient.address}")
        return Target(tracker.name, TargetKind.ISSUE, recipient.number, how="sub-address")
    by_headers = lookup.issue_for_ids(thread_ids(incoming))
    if by_headers is not None:
        return Target(tracker.name, TargetKind.ISSUE, by_headers, how="headers")
    tagged = find_tag(incoming.subject, tracker.subject_tag)
    if tagged is not None:
        _require(lookup, tagged, tracker, f"the subject tag [{tracker.subject_tag}{tagged}]")
        return Target(tracker.name, TargetKind.ISSUE, tagged, how="subject tag")
    return Target(tracker.name, TargetKind.NEW_ISSUE, how="new")


def _require(lookup: Lookup, number: int, tracker: TrackerConfig, named_by: str) -> None:
    if not lookup.issue_exists(number):
        raise Rejected(
            f"{named_by} names issue {number}, but {tracker.title} has no issue {number}; "
            f"write to {tracker.address} to open a new issue"
        )
