"""Interpret: what the mail asks for besides its comment, validated against the tracker.

The grammar is Roundup's (INTERFACE.md): a trailing subject suffix
``[status=resolved; priority=urgent; labels=+crash,-ui; nosy=+carol@example.org]``, and the
same ``Key: value`` lines at the very top of the body. Only known keys count in the body,
so ``Note: …`` or ``Hi:`` stay text. Everything is checked before anything is applied; every
bad item is named in one refusal, with the valid choices, so a sender can fix the whole
mail at once. ``help_text`` describes this grammar from the same tables the parser uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from mailtracker.config import TrackerConfig
from mailtracker.errors import Rejected
from mailtracker.quotes import visible_text
from mailtracker.subject import clean_title
from mailtracker.values import Commands, Edit, Incoming, Target, TargetKind

__all__ = ["PROPERTIES", "help_properties", "interpret", "parse_assignments", "split_suffix"]

PROPERTIES = ("status", "priority", "assignee", "labels", "nosy", "title")
_ALIASES = {"label": "labels", "assignedto": "assignee", "assigned": "assignee"}
_SUFFIX = re.compile(r"\[([^\[\]]*=[^\[\]]*)\]\s*$")
_BODY_LINE = re.compile(r"^([A-Za-z][A-Za-z-]*)[ \t]*:[ \t]*(.*?)[ \t]*$")
_CLEAR = ("", "none", "nobody")

UserExists = Callable[[str], bool]


@dataclass(frozen=True)
class Assignment:
    key: str
    value: str


def interpret(
    incoming: Incoming, target: Target, tracker: TrackerConfig, user_exists: UserExists
) -> Commands:
    """Split the mail into title, comment and validated edits; ``Rejected`` lists every error."""
    subject, suffix = split_suffix(incoming.subject)
    errors: list[str] = []
    assignments = parse_assignments(suffix, errors) if suffix is not None else []
    body_assignments, comment = _body_block(incoming.text)
    edits = _validate([*assignments, *body_assignments], tracker, user_exists, errors)
    if errors:
        raise Rejected(_refusal(errors))
    title = ""
    if target.kind is TargetKind.NEW_ISSUE:
        title = clean_title(subject, tracker.subject_tag)
    return Commands(
        title=title, comment=comment, changes=tuple(edits), visible=visible_text(comment)
    )


def split_suffix(subject: str) -> tuple[str, str | None]:
    """``"Crash [status=open]"`` → ``("Crash", "status=open")``; no suffix → ``None``."""
    match = _SUFFIX.search(subject)
    if match is None:
        return subject, None
    return subject[: match.start()].rstrip(), match.group(1)


def parse_assignments(suffix: str, errors: list[str]) -> list[Assignment]:
    """``"status=resolved; priority = high"`` → assignments; unknown keys become errors."""
    found = []
    for item in (i.strip() for i in suffix.split(";")):
        if not item:
            continue
        key, eq, value = item.partition("=")
        name = _canonical(key)
        if name is None:
            errors.append(f"'{key.strip()}' is not a property; use one of: {', '.join(PROPERTIES)}")
            continue
        if not eq:
            errors.append(f"'{key.strip()}' has no value; write {name}=VALUE")
            continue
        found.append(Assignment(name, value.strip()))
    return found


def _canonical(key: str) -> str | None:
    name = key.strip().lower()
    name = _ALIASES.get(name, name)
    return name if name in PROPERTIES else None


def _body_block(text: str) -> tuple[list[Assignment], str]:
    """Known ``Key: value`` lines at the very top; the rest is the comment."""
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    found: list[Assignment] = []
    end = start
    for line in lines[start:]:
        match = _BODY_LINE.match(line)
        name = _canonical(match.group(1)) if match else None
        if match is None or name is None:
            break
        found.append(Assignment(name, match.group(2)))
        end += 1
    if not found:
        return [], text
    return found, "\n".join(lines[end:]).strip("\n")


def _validate(
    assignments: list[Assignment],
    tracker: TrackerConfig,
    user_exists: UserExists,
    errors: list[str],
) -> list[Edit]:
    edits: list[Edit] = []
    for a in assignments:
        checker = _CHECKERS[a.key]
        edits.extend(checker(a.value, tracker, user_exists, errors))
    return edits


def _choice(prop: str, value: str, choices: tuple[str, ...], errors: list[str]) -> str | None:
    for choice in choices:
        if choice.lower() == value.lower():
            return choice
    errors.append(f"{prop} '{value}' is not one of: {', '.join(choices)}")
    return None


def _status(value: str, tracker: TrackerConfig, _u: UserExists, errors: list[str]) -> list[Edit]:
    chosen = _choice("status", value, tracker.statuses, errors)
    return [Edit("status", "set", chosen)] if chosen else []


def _priority(value: str, tracker: TrackerConfig, _u: UserExists, errors: list[str]) -> list[Edit]:
    if value.lower() in _CLEAR:
        return [Edit("priority", "set", "")]
    chosen = _choice("priority", value, tracker.priorities, errors)
    return [Edit("priority", "set", chosen)] if chosen else []


def _title(value: str, _t: TrackerConfig, _u: UserExists, errors: list[str]) -> list[Edit]:
    if not value.strip():
        errors.append("title cannot be empty")
        return []
    return [Edit("title", "set", " ".join(value.split()))]


def _assignee(
    value: str, tracker: TrackerConfig, user_exists: UserExists, errors: list[str]
) -> list[Edit]:
    if value.lower() in _CLEAR:
        return [Edit("assignee", "set", "")]
    address = value.strip("<>").lower()
    if not user_exists(address):
        errors.append(f"assignee '{value}' is not a user of {tracker.title}")
        return []
    return [Edit("assignee", "set", address)]


def _items(value: str) -> list[tuple[str, str]]:
    """``"+a, -b"`` → ``[("add","a"), ("remove","b")]``; ``"a,b"`` → one ``set`` of both."""
    items = [i.strip() for i in value.split(",") if i.strip()]
    if not any(i[0] in "+-" for i in items):
        return [("set", ",".join(items))]
    return [
        ("remove", i[1:].strip()) if i[0] == "-" else ("add", i.lstrip("+").strip()) for i in items
    ]


def _labels(value: str, tracker: TrackerConfig, _u: UserExists, errors: list[str]) -> list[Edit]:
    edits = []
    for op, item in _items(value):
        names = [n for n in item.split(",") if n] if op == "set" else [item]
        bad = [n for n in names if tracker.labels and n not in tracker.labels]
        for name in bad:
            errors.append(f"label '{name}' is not one of: {', '.join(tracker.labels)}")
        if not bad:
            edits.append(Edit("labels", op, item))
    return edits


def _nosy(
    value: str, tracker: TrackerConfig, user_exists: UserExists, errors: list[str]
) -> list[Edit]:
    edits = []
    for op, item in _items(value):
        names = [n.strip("<>").lower() for n in item.split(",") if n]
        bad = [n for n in names if not user_exists(n)]
        for name in bad:
            errors.append(f"nosy: '{name}' is not a user of {tracker.title}")
        if not bad:
            edits.append(Edit("nosy", op, ",".join(names)))
    return edits


_CHECKERS = {
    "status": _status,
    "priority": _priority,
    "title": _title,
    "assignee": _assignee,
    "labels": _labels,
    "nosy": _nosy,
}


def help_properties(tracker: TrackerConfig) -> list[dict[str, str]]:
    """What each key accepts on this tracker, for the help mail: the parser's own tables."""
    labels = f"one of: {', '.join(tracker.labels)}" if tracker.labels else "any name"
    texts = {
        "status": f"one of: {', '.join(tracker.statuses)}",
        "priority": f"one of: {', '.join(tracker.priorities)} (empty clears it)",
        "assignee": "a user's address (empty or 'nobody' clears it)",
        "labels": f"+name,-name adds and removes; name,name sets them; {labels}",
        "nosy": "+address,-address adds and removes people; address,address sets the list",
        "title": "renames the issue",
    }
    return [{"key": key, "text": texts[key]} for key in PROPERTIES]


def _refusal(errors: list[str]) -> str:
    return "nothing was changed: " + "; ".join(errors)
