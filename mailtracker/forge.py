"""Forge links: pull requests and commits that mention an issue show up on it.

Forge-neutral on purpose: a forge module (``forge_github.py``; GitLab and Gitea would be
siblings) turns a webhook into ``ForgeEvent`` values, and this module finds the issue
references in their text, links each pull request or commit to each issue once, and
writes what happened as a message through the mail pipeline itself: authored by the
tracker's forge user, validated, journaled and notified like any mail, threaded into the
issue's conversation. A merged pull request or a commit on the default branch that says
``fixes issue42`` sets the issue to the tracker's resolved status.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailtracker import store as queries
from mailtracker.config import Config, TrackerConfig
from mailtracker.forge_models import ForgeLink
from mailtracker.models import utcnow
from mailtracker.store import Store
from mailtracker.values import FORGE_EVIDENCE, LARGEST_ID, Envelope

__all__ = [
    "FORGE_EVIDENCE",
    "ForgeEvent",
    "apply_events",
    "closing_references",
    "forge_address",
    "references",
    "resolved_status",
]

log = logging.getLogger(__name__)

_CLOSING = r"(?:fix(?:e[sd])?|close[sd]?|resolve[sd]?)\s*:?\s+"


@dataclass(frozen=True)
class ForgeEvent:
    """One thing that happened on a forge, in words for people and a key for linking.

    ``key`` names the pull request or commit (``pr:owner/name#7``), so a later event about
    it is a follow-up, not a second link; ``closes`` marks a merge or a push to the
    default branch, where closing keywords count."""

    repo: str
    kind: str
    key: str
    url: str
    title: str
    state: str
    actor: str
    text: str
    summary: str
    closes: bool


def _patterns(tracker: TrackerConfig) -> list[str]:
    tag = re.escape(tracker.subject_tag)
    found = [rf"\[{tag}(\d+)\]", rf"\b{tag}(\d+)\b", rf"\b{re.escape(tracker.name)}#(\d+)\b"]
    if tracker.reference_prefix:
        found.append(rf"(?<![\w-]){re.escape(tracker.reference_prefix)}(\d+)\b")
    return found


def references(text: str, tracker: TrackerConfig) -> list[int]:
    """Issue numbers mentioned: ``issue42``, ``[issue42]``, ``bugs#42``, ``bpo-42``."""
    return _numbers(text, _patterns(tracker))


def closing_references(text: str, tracker: TrackerConfig) -> list[int]:
    """Issue numbers after ``fixes``/``closes``/``resolves`` (and their tenses)."""
    return _numbers(text, [_CLOSING + pattern for pattern in _patterns(tracker)])


def _numbers(text: str, patterns: list[str]) -> list[int]:
    """Each number the patterns find, once, in order. One past ``LARGEST_ID`` names no
    issue and would fail in the driver (``bpo-99999999999999999999`` in a commit made
    the webhook a 500, found by fuzzing): it is no reference."""
    found: dict[int, None] = {}
    for pattern in patterns:
        for match in re.finditer(pattern, text, re.IGNORECASE):
            number = int(match.group(1))
            if number <= LARGEST_ID:
                found.setdefault(number, None)
    return list(found)


def resolved_status(tracker: TrackerConfig) -> str:
    """The status a closing keyword sets: ``resolved`` if the tracker has it, else the
    last-but-one (the default list ends with ``resolved, closed``)."""
    if "resolved" in tracker.statuses:
        return "resolved"
    return tracker.statuses[-2] if len(tracker.statuses) > 1 else tracker.statuses[-1]


def apply_events(store: Store, config: Config, events: list[ForgeEvent]) -> int:
    """Link and report every event on every tracker whose repositories include it;
    returns the number of messages written."""
    from mailtracker.pipeline import process

    written = 0
    for event in events:
        for tracker in config.trackers:
            if event.repo.lower() not in {r.lower() for r in tracker.github_repos}:
                continue
            for number, raw in _messages(store, config, tracker, event):
                envelope = Envelope(
                    forge_address(config, tracker),
                    (tracker.issue_address(number),),
                    vouched=FORGE_EVIDENCE,
                )
                outcome = process(store, config, raw, envelope)
                if outcome.accepted:
                    _record_link(store, tracker, number, event)
                written += bool(outcome.stored)
                log.info("%s on %s/%d: %s", event.key, tracker.name, number, outcome.reply)
    return written


def forge_address(config: Config, tracker: TrackerConfig) -> str:
    """The forge's own user: a developer, so a closing keyword may change the status."""
    return f"{tracker.local_part}-forge@{config.smtp.hostname}"


def _messages(
    store: Store, config: Config, tracker: TrackerConfig, event: ForgeEvent
) -> list[tuple[int, bytes]]:
    """A mail for each referenced issue where the event is new (not linked yet, or linked
    in another state)."""
    closing = set(closing_references(event.text, tracker)) if event.closes else set()
    out = []
    with store.write() as session:
        _ensure_forge_user(session, config, tracker)
        tracker_id = queries.tracker_row(session, tracker.name).id
        for number in references(event.text, tracker):
            issue = queries.issue_by_number(session, tracker_id, number)
            if issue is not None and _is_news(session, issue.id, event):
                out.append((number, _mail(config, tracker, number, event, number in closing)))
    return out


def _ensure_forge_user(session: Session, config: Config, tracker: TrackerConfig) -> None:
    address = forge_address(config, tracker)
    if queries.user_by_address(session, address) is None:
        queries.create_user(session, address, "GitHub", "developer")


def _find_link(session: Session, issue_id: int, key: str) -> ForgeLink | None:
    return session.scalar(
        select(ForgeLink).where(ForgeLink.issue_id == issue_id, ForgeLink.key == key)
    )


def _is_news(session: Session, issue_id: int, event: ForgeEvent) -> bool:
    link = _find_link(session, issue_id, event.key)
    return link is None or link.state != event.state


def _record_link(store: Store, tracker: TrackerConfig, number: int, event: ForgeEvent) -> None:
    """Remember the link once its message is stored, so a redelivery changes nothing."""
    with store.write() as session:
        issue = queries.issue_by_number(
            session, queries.tracker_row(session, tracker.name).id, number
        )
        assert issue is not None
        link = _find_link(session, issue.id, event.key)
        if link is None:
            session.add(
                ForgeLink(
                    issue_id=issue.id,
                    key=event.key,
                    kind=event.kind,
                    url=event.url,
                    title=event.title,
                    state=event.state,
                    created_at=utcnow(),
                )
            )
        else:
            link.state, link.title = event.state, event.title


def _mail(
    config: Config, tracker: TrackerConfig, number: int, event: ForgeEvent, close: bool
) -> bytes:
    """The event as a mail from the forge user to the issue's address."""
    msg = EmailMessage()
    msg["From"] = f"GitHub <{forge_address(config, tracker)}>"
    msg["To"] = tracker.issue_address(number)
    msg["Subject"] = f"[{tracker.subject_tag}{number}] {event.summary}"
    msg["Date"] = format_datetime(utcnow().astimezone())
    # The same event always makes the same Message-ID: a retry is a duplicate, not a copy.
    digest = hashlib.sha256(f"{event.key}\0{event.state}\0{number}".encode()).hexdigest()
    msg["Message-ID"] = f"<forge.{digest[:32]}.{tracker.name}{number}@{config.smtp.hostname}>"
    status = f"Status: {resolved_status(tracker)}\n\n" if close else ""
    reason = f"Closed by {event.url}\n" if close else ""
    msg.set_content(f"{status}{event.summary}\n{event.url}\n{reason}")
    return msg.as_bytes()
