"""Turn the raw bytes of one mail into an ``Incoming``: the first pure stage of the pipeline.

The stdlib parser (``BytesParser`` with ``policy.default``) is the faithful one: it never
raised on the 1,270 messages of our corpus. Reading values from its result can raise, though
(CPython 3.11 raises ``AttributeError`` reading ``To: unlisted-recipients:; (comment)``,
``get_content()`` raises ``LookupError`` on an unknown charset), so every header access and
every decode here is guarded and falls back to the raw text. Nothing but ``Rejected`` leaves
this module on purpose, and only when there is nothing to take: no bytes at all, MIME nested
deeper than ``MAX_DEPTH`` or more than ``MAX_PARTS`` parts (both are denial-of-service shapes).

Header values are read by ``headers.py``. Which part is the body (``text``):

* ``multipart/alternative``: the *last* ``text/plain`` alternative (RFC 2046 5.1.4: the last
  is the richest the sender offers); without one, the last alternative. The HTML alternative
  becomes ``html``; the other renderings are dropped, any other kind of part is kept.
* Elsewhere, in order: every inline ``text/plain`` part without a filename is body text, joined
  by a blank line (list footers, signed mail, pasted patches); a ``text/html`` part is the body
  (converted by ``htmltext``) only if no body text came before it. The very first part is
  body text even with a filename (McAfee's bounces and some clients name the body itself).
* Every other part is an attachment: a filename or ``Content-Disposition: attachment``, any
  non-text type, ``message/rfc822`` as one ``.eml`` (its own parts are not walked),
  signatures of ``multipart/signed``.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass, field
from email.feedparser import BytesFeedParser
from email.generator import BytesGenerator
from email.message import Message
from io import BytesIO

from mailtracker import headers as mh
from mailtracker.bigparts import BigRuns, elide
from mailtracker.errors import Rejected
from mailtracker.htmltext import html_to_text
from mailtracker.payloads import payload
from mailtracker.values import AttachmentData, Incoming

__all__ = ["MAX_DEPTH", "MAX_PARTS", "parse"]

MAX_DEPTH = 20
MAX_PARTS = 1_000
MAX_FILENAME = 200
_FEED_CHUNK = 1 << 16

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")
_BIDI_CONTROLS = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# RFC 2045 5.1: type "/" subtype, each a token (no controls, spaces or tspecials).
_TOKEN = r"[a-z0-9!#$%&'*+.^_`{|}~-]+"
_MEDIA_TYPE = re.compile(_TOKEN + "/" + _TOKEN)
# RFC 2046 5.1.4: the same content in another format; not kept when another alternative won.
_RENDERINGS = frozenset({"text/plain", "text/html", "text/enriched", "text/richtext"})
_CONTENT_HEADERS = ("content-type", "content-disposition", "content-transfer-encoding")


def parse(raw: bytes) -> Incoming:
    """Parse ``raw``; raises ``Rejected`` only for mail there is nothing to take from."""
    if not raw or raw.isspace():  # not raw.strip(): that copies the whole mail
        raise Rejected("the message is empty")
    try:
        return _parse(raw)
    except RecursionError:
        raise Rejected("the message is nested too deeply to be parsed") from None


def _parse(raw: bytes) -> Incoming:
    reduced, big = elide(raw)
    msg = _parse_bytes(reduced)
    del reduced  # the structure is in ``msg`` now; the runs are read from ``raw``
    parts = _check_shape(msg)
    headers = mh.Headers(msg)
    body = _Body(_linesep(raw), big)
    _walk(msg, body, main=True)
    if not msg.keys() and not body.has_text() and not body.attachments:
        raise Rejected("the message has neither a header nor a body")
    message_id, synthetic = mh.message_id(headers, raw)
    from_addr, from_name = mh.author(headers)
    return Incoming(
        raw=raw,
        message_id=message_id,
        in_reply_to=mh.ids(headers.raw("in-reply-to")),
        references=mh.ids(headers.raw("references")),
        from_addr=from_addr,
        from_name=from_name,
        to=mh.recipients(headers, "to"),
        cc=mh.recipients(headers, "cc"),
        subject=" ".join(headers.text("subject").split()),
        date=headers.first_raw("date"),
        text=body.text(),
        html=body.html,
        attachments=tuple(body.attachments),
        auto_submitted=mh.first_token(headers.first_raw("auto-submitted")),
        precedence=headers.first_raw("precedence").lower(),
        loop=tuple(headers.raw("x-mailtracker-loop")),
        auth_results=tuple(headers.raw("authentication-results")),
        defects=tuple(sorted(headers.defects | _part_defects(parts))),
        synthetic_id=synthetic,
    )


def _parse_bytes(raw: bytes) -> Message:
    """What ``BytesParser`` returns, fed in chunks: ``BytesParser`` first decodes the whole
    mail into one str and a StringIO (4 bytes a character), about 8x the mail at peak."""
    parser = BytesFeedParser(policy=mh.DEFAULT_POLICY)
    view = memoryview(raw)
    for start in range(0, len(raw), _FEED_CHUNK):
        parser.feed(view[start : start + _FEED_CHUNK].tobytes())
    return parser.close()


# --- shape: depth and part limits, checked before anything is decoded ----------------------


def _check_shape(msg: Message) -> list[Message]:
    """Every entity of the tree (enclosed messages included), iteratively, so no depth of
    nesting can exhaust the stack; raises ``Rejected`` beyond MAX_DEPTH or MAX_PARTS."""
    entities: list[Message] = []
    stack: list[tuple[Message, int]] = [(msg, 0)]
    leaves = 0
    while stack:
        part, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Rejected(f"the message is nested more than {MAX_DEPTH} MIME levels deep")
        entities.append(part)
        children = _children(part)
        if not children:
            leaves += 1
        if leaves > MAX_PARTS:
            raise Rejected(f"the message has more than {MAX_PARTS} MIME parts")
        stack.extend((child, depth + 1) for child in reversed(children))
    return entities


def _children(part: Message) -> list[Message]:
    """Sub-entities; the header blocks of a delivery-status report are not MIME parts."""
    if not part.is_multipart() or _content_type(part) == "message/delivery-status":
        return []
    return _subparts(part)


def _subparts(part: Message) -> list[Message]:
    """The entities in a multipart or ``message/*`` part. Only call ``get_payload()`` on
    those: on a leaf with 8-bit bytes it decodes them with the declared charset and lets
    that codec's UnicodeError through (CPython 3.11 ``Message.get_payload``)."""
    payload = part.get_payload() if part.is_multipart() else []
    return [child for child in payload if isinstance(child, Message)]


def _part_defects(parts: list[Message]) -> set[str]:
    names = {type(defect).__name__ for part in parts for defect in part.defects}
    for part in parts:
        reader = mh.Headers(part)
        for name in _CONTENT_HEADERS:
            reader.decoded(name)
        names |= reader.defects
    return names


# --- body and attachments ------------------------------------------------------------------


@dataclass
class _Body:
    """What the walk collects: body texts in order, the HTML alternative, attachments;
    and what it reads with: the mail's line ending and its big runs (``bigparts``)."""

    linesep: str
    big: BigRuns
    leaves: int = 0
    texts: list[str] = field(default_factory=list)
    html: str | None = None
    attachments: list[AttachmentData] = field(default_factory=list)

    def attach(self, filename: str, content_type: str, data: bytes) -> None:
        name = _sanitise(filename) or f"attachment-{len(self.attachments) + 1}"
        digest = hashlib.sha256(data).hexdigest()
        self.attachments.append(AttachmentData(name, content_type, data, digest))

    def has_text(self) -> bool:
        return any(not text.isspace() for text in self.texts if text)

    def text(self) -> str:
        """The body texts joined by a blank line; the HTML alternative's text when they
        are all blank (some clients send an empty text/plain next to the real HTML)."""
        texts = self.texts
        if not self.has_text() and self.html is not None:
            texts = [html_to_text(self.html)]
        return "\n\n".join(filter(None, (_normalise(t) for t in texts)))


def _walk(part: Message, body: _Body, main: bool) -> None:
    """Sort ``part`` into body text, HTML or attachments; ``main`` is False inside an
    alternative that lost to another (its text is a second rendering of the same content)."""
    ctype = _content_type(part)
    if ctype.startswith("message/"):
        body.attach(*_enclosed(part, ctype, body))
    elif part.is_multipart():
        children = _subparts(part)
        chosen = _chosen(children) if ctype == "multipart/alternative" else None
        for index, child in enumerate(children):
            _walk(child, body, main and chosen in (None, index))
    else:
        _leaf(part, ctype, body, main)


def _chosen(alternatives: list[Message]) -> int:
    """RFC 2046 5.1.4: the last text/plain alternative; without one, the last of all."""
    plain = [
        index
        for index, part in enumerate(alternatives)
        if _content_type(part) == "text/plain" and _disposition(part) != "attachment"
    ]
    return plain[-1] if plain else len(alternatives) - 1


def _leaf(part: Message, ctype: str, body: _Body, main: bool) -> None:
    first, body.leaves = body.leaves == 0, body.leaves + 1
    if _is_attachment(part, first) or not ctype.startswith("text/"):
        body.attach(_filename(part), ctype, payload(part, body.big))
    elif main and ctype == "text/plain":
        body.texts.append(_text(part, body.big))
    elif main and ctype == "text/html" and not body.has_text():
        html = _text(part, body.big)
        body.html = html if body.html is None else body.html
        body.texts.append(html_to_text(html))
    elif not main and ctype == "text/html" and body.html is None:
        body.html = _text(part, body.big)
    elif main or ctype not in _RENDERINGS:
        body.attach("", ctype, payload(part, body.big))


def _enclosed(part: Message, ctype: str, body: _Body) -> tuple[str, str, bytes]:
    """A ``message/*`` part as one attachment: the enclosed message's bytes, named after
    its Subject for ``message/rfc822`` and ``message/global`` (RFC 6532)."""
    if not part.is_multipart():
        return _filename(part), ctype, payload(part, body.big)
    inner = _subparts(part)
    data = b"".join(_flatten(m, body) for m in inner)
    if ctype not in ("message/rfc822", "message/global") or not inner:
        return _filename(part), ctype, data
    subject = " ".join(mh.Headers(inner[0]).text("subject").split())
    name = subject.replace("/", "-").replace("\\", "-")[: MAX_FILENAME - 4]
    return (f"{name}.eml" if _sanitise(name) else "message.eml"), ctype, data


def _flatten(msg: Message, body: _Body) -> bytes:
    """The bytes of an enclosed message as the parser read them: no refolding, 8-bit kept,
    big runs put back."""
    body.big.restore(msg)
    out = BytesIO()
    try:
        options = msg.policy.clone(linesep=body.linesep, max_line_length=0)
        BytesGenerator(out, mangle_from_=False, policy=options).flatten(msg)
    except Exception:  # the generator trips over header values the parser let through
        return payload(msg, body.big) if not msg.is_multipart() else b""
    return out.getvalue()


def _content_type(part: Message) -> str:
    """Lower-case type/subtype; RFC 2045 5.2's default text/plain for an invalid one, and
    for a multipart that lost its boundary (the parser keeps it as one unparsed body)."""
    try:
        ctype = part.get_content_type()
    except Exception:  # a Content-Type the header parser chokes on
        return "text/plain"
    if ctype.startswith("multipart/") and not part.is_multipart():
        return "text/plain"
    # RFC 2045 5.2: an invalid type is text/plain. The stdlib passes garbage through (a NUL
    # in it made PostgreSQL refuse the attachment row, and the mail was deferred forever).
    return ctype if _MEDIA_TYPE.fullmatch(ctype) else "text/plain"


def _is_attachment(part: Message, first: bool) -> bool:
    """``Content-Disposition: attachment``, or a filename on any but the first part."""
    return _disposition(part) == "attachment" or (not first and bool(_filename(part)))


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:  # unparsable Content-Disposition: decide by the filename
        return None


def _filename(part: Message) -> str:
    """The filename (RFC 2231 and the RFC 2047 that Outlook and Gmail put in quotes),
    from Content-Disposition, else Content-Type's ``name``."""
    try:
        name = part.get_filename()
    except Exception:  # parameter parsing failed: treat as unnamed
        return ""
    return mh.clean(name) if isinstance(name, str) else ""


def _sanitise(filename: str) -> str:
    """A name safe to store and offer: the last path component (a sender's directories
    mean nothing here), no control characters, no bidi overrides that make ``gpj.exe``
    read as ``exe.jpg``, at most MAX_FILENAME characters."""
    name = re.split(r"[/\\]", filename)[-1]
    name = "".join(c for c in name if unicodedata.category(c) != "Cc")
    name = _BIDI_CONTROLS.sub("", name).strip()
    if name in ("", ".", ".."):
        return ""
    if len(name) > MAX_FILENAME:
        stem, ext = os.path.splitext(name)
        name = stem[: MAX_FILENAME - len(ext[:20])] + ext[:20]
    return name


def _text(part: Message, big: BigRuns) -> str:
    """A text part decoded, with LF line ends and no NUL (PostgreSQL text cannot hold it)."""
    try:
        charset = part.get_content_charset()
    except Exception:  # unparsable Content-Type parameters
        charset = None
    data = payload(part, big)
    return _LINE_BREAK.sub("\n", mh.decode_bytes(data, charset)).replace("\x00", "")


def _normalise(text: str) -> str:
    """LF line endings, no blank lines at the start, no trailing whitespace at the end."""
    return _LEADING_BLANK_LINES.sub("", _LINE_BREAK.sub("\n", text).rstrip())


def _linesep(raw: bytes) -> str:
    """The line ending the mail uses, so enclosed messages come out as they came in."""
    end = raw.find(b"\n")
    if end > 0 and raw[end - 1 : end] == b"\r":
        return "\r\n"
    return "\r" if end < 0 and b"\r" in raw else "\n"
