"""Writes through the REST API become mail, and go through ``pipeline.process``.

The web calls what mail calls: a comment or a property change is written as the RFC 5322
message its author would have sent (From them, To ``bugs+42@``, ``Key: value`` lines at
the top of the body, then the comment) and run through the same stages, so validation,
permissions, abuse limits, journal and notifications cannot differ from mail. The API token
stands in for DKIM (``Envelope.vouched``). The SMTP reply becomes the HTTP answer: its text
after the codes is the ``error``, word for word what a mail sender would read.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from mailtracker.commands import PROPERTIES, split_suffix
from mailtracker.config import TrackerConfig
from mailtracker.subject import find_tag

__all__ = ["ApiError", "Write", "http_status", "mail_for", "parse_write", "reason_of"]

MAX_VALUE = 1000
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_COMMAND_LINE = re.compile(
    r"^\s*(status|priority|assignee|assignedto|assigned|labels?|nosy|title)\s*:", re.I
)


class ApiError(Exception):
    """A request refused before it became mail: HTTP status and the reason, in JSON."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Write:
    """A validated write: the comment and the property lines, in the mail's grammar."""

    comment: str
    properties: tuple[tuple[str, str], ...]
    title: str = ""


def parse_write(data: Any, kind: str, max_size: int) -> Write:
    """Check a JSON body; ``kind`` is ``comment``, ``change`` or ``new``."""
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    allowed = {"comment", *PROPERTIES}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ApiError(422, f"'{unknown[0]}' is not a field; use: {', '.join(sorted(allowed))}")
    comment = data.get("comment", "")
    if not isinstance(comment, str) or len(comment.encode(errors="replace")) > max_size:
        raise ApiError(422, f"comment must be text of at most {max_size} bytes")
    if "\0" in comment or not _encodable(comment):
        raise ApiError(422, "comment must be text without NUL characters or lone surrogates")
    properties = tuple(
        (key, _value(key, data[key])) for key in PROPERTIES if key in data and key != "title"
    )
    if kind != "new" and "title" in data:
        properties += (("title", _value("title", data["title"])),)
    write = Write(comment.replace("\r\n", "\n"), properties, _title(data) if kind == "new" else "")
    _check_meaning(write, kind)
    return write


def _value(key: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list) and key in ("labels", "nosy"):
        if not all(isinstance(v, str) for v in value):
            raise ApiError(422, f"{key} must be a string or a list of strings")
        value = ", ".join(value)
    if not isinstance(value, str) or not _encodable(value):
        raise ApiError(422, f"{key} must be a string")
    if len(value) > MAX_VALUE or len(value.splitlines()) > 1 or _CONTROL.search(value):
        raise ApiError(422, f"{key} must be one line of at most {MAX_VALUE} characters")
    return value.strip()


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # lone surrogates: JSON allows them, UTF-8 does not
        return False
    return True


def _title(data: dict[str, Any]) -> str:
    title = _value("title", data.get("title"))
    if not title:
        raise ApiError(422, "a new issue needs a title")
    return title


def _check_meaning(write: Write, kind: str) -> None:
    """Refuse what mail would read differently from what a JSON client means."""
    if kind == "comment" and not write.comment.strip():
        raise ApiError(422, "comment cannot be empty")
    if kind == "change" and not write.properties:
        raise ApiError(422, f"name at least one property to change: {', '.join(PROPERTIES)}")
    first = next((line for line in write.comment.split("\n") if line.strip()), "")
    if not write.properties and _COMMAND_LINE.match(first):
        raise ApiError(
            422,
            f"the comment starts with '{first.split(':')[0].strip()}:', which the tracker reads "
            "as a property change (as in mail); set it in its own field, or begin the comment "
            "with other text",
        )
    if write.title and split_suffix(write.title)[1] is not None:
        raise ApiError(422, "a title cannot end with [key=value]; use the fields instead")
    if kind == "new" and write.title.strip().lower() == "help":
        raise ApiError(422, "'help' asks the tracker for its help text; choose another title")


def mail_for(
    write: Write,
    author: tuple[str, str],
    tracker: TrackerConfig,
    number: int | None,
    issue_title: str,
    hostname: str,
    idempotency_key: str = "",
) -> tuple[bytes, str]:
    """The RFC 5322 mail that asks for ``write``, and its Message-ID (without ``<>``)."""
    email, name = author
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = Address(name, addr_spec=email)
    msg["To"] = tracker.issue_address(number) if number else tracker.address
    msg["Subject"] = _subject(write, tracker, number, issue_title)
    msg["Date"] = format_datetime(datetime.now(UTC))
    message_id = _message_id(email, idempotency_key, hostname)
    msg["Message-ID"] = f"<{message_id}>"
    msg["X-Mailtracker-Via"] = "api"
    lines = [f"{key.capitalize()}: {value}" for key, value in write.properties]
    body = "\n".join(lines) + ("\n\n" if lines else "") + write.comment
    msg.set_content(body + "\n", charset="utf-8")
    return msg.as_bytes(), message_id


def _subject(write: Write, tracker: TrackerConfig, number: int | None, title: str) -> str:
    if number is None:
        if find_tag(write.title, tracker.subject_tag) is not None:
            raise ApiError(422, f"a new title cannot contain [{tracker.subject_tag}N]")
        return write.title
    tag = f"[{tracker.subject_tag}{number}]"
    safe = title if split_suffix(title)[1] is None else ""
    return f"Re: {tag} {' '.join(safe.split())}".strip()


def _message_id(email: str, key: str, hostname: str) -> str:
    """Random, or derived from the client's ``Idempotency-Key``: a retried request is then
    the same mail, which the pipeline stores once (ARCHITECTURE rule 3)."""
    if key:
        digest = hashlib.sha256(f"{email}\0{key}".encode()).hexdigest()[:32]
        return f"api.{digest}@{hostname}"
    return f"api.{secrets.token_hex(16)}@{hostname}"


def reason_of(reply: str) -> str:
    """``"550 5.6.0 nothing was changed: …"`` → ``"nothing was changed: …"``."""
    parts = reply.split(" ", 2)
    if len(parts) == 3 and re.fullmatch(r"\d\.\d{1,3}\.\d{1,3}", parts[1]):
        return parts[2]
    return reply[4:]


def http_status(reply: str) -> int:
    """The HTTP status for an SMTP reply that refused the mail."""
    if reply.startswith("4"):
        return 503
    enhanced = reply.split(" ", 2)[1] if " " in reply else ""
    return {"5.7.1": 403, "5.1.1": 404, "5.3.4": 413}.get(enhanced, 422)
