"""The headers of the mail we send, where the stdlib's defaults would go wrong.

``EmailMessage`` parses every header it is given and folds it again on output. That is
right for text (names, subjects: RFC 2047 encoded words where they are not ASCII) and
wrong for tokens: a Message-ID is never text. ``put`` sets short plain values as they are
(parsing them only to fold them back unchanged was half the time of a notification),
``threading_headers`` builds In-Reply-To and References from ids that a 7-bit header
can carry, ``policy_for`` writes a mail to an address that is not ASCII in UTF-8, and
``mime_type`` gives the type an attachment can be written with. Found by fuzzing the
pipeline with mutated mail: each of these made rendering fail, and with it every later
comment on the issue, which went to quarantine.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.policy import EmailPolicy

from mailtracker.headers import SMTP_POLICY

__all__ = ["AS_SET", "mime_type", "policy_for", "put", "threading_headers"]

# A value put in with ``set_raw`` is sent as given, never parsed and refolded: the id
# headers are folded here, between ids (see ``threading_headers``).
AS_SET = SMTP_POLICY.clone(refold_source="none")
# RFC 6532: each policy's twin with UTF-8 headers, for an address that is not ASCII.
_UTF8 = {policy: policy.clone(utf8=True) for policy in (AS_SET, SMTP_POLICY)}
_FOLD_AT = 78  # the line length the policy folds at (RFC 5322 2.1.1)
_ID_HEADERS = frozenset({"In-Reply-To", "References"})
_LONGEST_ID = 250  # RFC 5322 sets none; a longer one is junk, and lines stop at 998
_ID_TOKEN = re.compile(r"[!-;=?-~]+")  # printable ASCII, no space and no angle brackets


def policy_for(
    recipient: str, base: EmailPolicy[EmailMessage] = AS_SET
) -> EmailPolicy[EmailMessage]:
    """How headers to ``recipient`` are written (``base``: ``AS_SET`` or ``SMTP_POLICY``):
    7-bit, or, for an address that is not ASCII, in UTF-8 (RFC 6532; the transport then
    asks for SMTPUTF8), since RFC 2047 encoded words are not allowed in an address."""
    return base if recipient.isascii() else _UTF8[base]


def put(msg: EmailMessage, name: str, value: str) -> None:
    """A short, printable ASCII value goes in as it is, since parsing it into a header
    object, only to fold it back on output unchanged, was half the time of a notification
    (``From`` is already quoted by ``Address``); anything else (long, non-ASCII, or what
    looks like an RFC 2047 encoded word) is parsed, encoded and folded. The id headers
    always go in as they are, as ``threading_headers`` made them."""
    short = len(name) + 2 + len(value) <= _FOLD_AT
    if name in _ID_HEADERS or (
        short and value.isascii() and value.isprintable() and "=?" not in value
    ):
        msg.set_raw(name, value)
    else:
        msg[name] = value


def threading_headers(root: str, cause: str | None) -> list[tuple[str, str]]:
    """In-Reply-To the issue's root, References the root and the mail that caused this.

    A Message-ID is a token, never text: RFC 2047 (section 5) keeps encoded words out of
    it, so ``<a=?utf-8?q?=FF?=@b>`` is just an id, which parsing it as a header would
    "decode" (into bytes that are no text at all). So the ids go in as they are, folded
    between ids. An id that cannot go into a 7-bit header (not printable ASCII, which
    RFC 6532 allows only in SMTPUTF8 mail, or longer than ``_LONGEST_ID``) is left out,
    and the mail threads by the ids that remain."""
    ids = [i for i in (root, cause) if _sendable_id(i)]
    if not ids:
        return []
    headers = [("References", _folded("References", [f"<{i}>" for i in ids]))]
    if ids[0] == root:
        headers.insert(0, ("In-Reply-To", f"<{root}>"))
    return headers


def _sendable_id(value: str | None) -> bool:
    if not value or len(value) > _LONGEST_ID:
        return False
    return _ID_TOKEN.fullmatch(value) is not None


def _folded(name: str, words: list[str]) -> str:
    """``words`` joined by spaces, a line break before each that would pass ``_FOLD_AT``."""
    lines = [words[0]]
    used = len(name) + 2 + len(words[0])
    for word in words[1:]:
        if used + 1 + len(word) > _FOLD_AT:
            lines.append(word)
            used = 1 + len(word)
        else:
            lines[-1] += " " + word
            used += 1 + len(word)
    return "\r\n ".join(lines)


def mime_type(content_type: str) -> tuple[str, str]:
    """The attachment's type, but ``message/delivery-status`` goes as ``text/plain``: the
    stdlib's generator writes that type only from parsed blocks of fields and failed on a
    stored attachment's bytes (a DSN attached to a comment sent its issue to quarantine).
    Its fields are text (RFC 3464), and the notice's body still names the type."""
    maintype, _, subtype = content_type.partition("/")
    if content_type.strip().lower() == "message/delivery-status":
        return "text", "plain"
    return maintype, subtype or "octet-stream"
