"""Reading subjects: reply prefixes of many languages, list tags and our ``[issue42]`` tag.

Clients prefix replies in their user's language (Outlook ``AW:``/``SV:``/``VS:``/``Antw:``,
Apple Mail ``Ang:``), sometimes with a counter (``Re[2]:``), and mailing lists insert tags
like ``[dev-list]``; none of that may rename an issue or hide its tag.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["clean_title", "find_tag", "strip_prefixes"]

_PREFIX = re.compile(
    r"^\s*(?:(?:re|fwd?|aw|sv|vs|antw|ang|tr|wg|rif|r)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*"
    r"|\[[^\[\]]*\]\s*(?=\S))",
    re.IGNORECASE,
)
_REPLY_ONLY = re.compile(
    r"^\s*(?:re|fwd?|aw|sv|vs|antw|ang|tr|wg|rif)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*", re.IGNORECASE
)


@lru_cache(maxsize=64)
def _tag_pattern(tag: str) -> re.Pattern[str]:
    return re.compile(r"\[\s*" + re.escape(tag) + r"\s*(\d{1,9})\s*\]", re.IGNORECASE)


def find_tag(subject: str, tag: str) -> int | None:
    """The issue number of the first ``[issueN]`` anywhere in ``subject``, if any."""
    match = _tag_pattern(tag).search(subject)
    return int(match.group(1)) if match else None


def strip_prefixes(subject: str) -> str:
    """Remove leading reply/forward prefixes and list tags: what the subject is about."""
    previous = None
    while previous != subject:
        previous = subject
        subject = _PREFIX.sub("", subject, count=1)
    return subject.strip()


def clean_title(subject: str, tag: str) -> str:
    """A new issue's title: reply prefixes and our own tag gone, other tags kept."""
    title = _tag_pattern(tag).sub(" ", subject)
    previous = None
    while previous != title:
        previous = title
        title = _REPLY_ONLY.sub("", title, count=1)
    title = " ".join(title.split())
    return title or "(no subject)"
