"""Public copies of stored mail for download: one ``.eml``, or a whole issue as an mbox.

The stored raw mail is the record and is never changed (ARCHITECTURE rule 5); what the
public downloads is a copy with nobody's address in it. It keeps what a mail client needs
to show and thread the conversation (Message-ID, In-Reply-To, References, Date, Subject,
the MIME structure) and drops the rest (Received, DKIM, Authentication-Results: they carry
addresses and hosts). ``From`` becomes the issue's own address with the author's name and
hidden address as its display name, as mailing lists do, and ``Reply-To`` is the issue's
address: pressing Reply on a downloaded mail comments on the issue, correctly threaded.
Text parts have their addresses hidden too; attachments are left as they are.
"""

from __future__ import annotations

import logging
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses

from mailtracker.config import TrackerConfig
from mailtracker.web_mask import Masker

__all__ = ["eml", "mbox", "public_copy"]

log = logging.getLogger(__name__)

_KEEP = {"date", "subject", "message-id", "in-reply-to", "references", "mime-version"}
_MIME = ("content-",)
_EML = policy.default.clone(linesep="\r\n", max_line_length=78)
_MBOX = policy.default.clone(linesep="\n", max_line_length=78)


def public_copy(
    raw: bytes, message_id: str, tracker: TrackerConfig, number: int, masker: Masker
) -> EmailMessage:
    """The stored mail without any address in it, replying to the issue."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    author, subject = _header(msg, "From"), _header(msg, "Subject")
    for name in set(msg.keys()):
        lowered = name.lower()
        if lowered not in _KEEP and not lowered.startswith(_MIME):
            del msg[name]
    issue_address = tracker.issue_address(number)
    _replace(msg, "From", Address(_display(author, masker), addr_spec=issue_address))
    _replace(msg, "To", issue_address)
    _replace(msg, "Reply-To", issue_address)
    _replace(msg, "Subject", masker.text(subject))
    if not _header(msg, "Message-ID"):  # stored under an id derived from its bytes
        _replace(msg, "Message-ID", f"<{message_id}>")
    _mask_parts(msg, masker)
    return msg


def _header(msg: EmailMessage, name: str) -> str:
    """A header as text; a header too broken to decode counts as absent."""
    try:
        return str(msg.get(name, "") or "")
    except Exception:  # the email package raises many kinds on hostile headers
        return ""


def _replace(msg: EmailMessage, name: str, value: object) -> None:
    del msg[name]
    msg[name] = value


def _display(author: str, masker: Masker) -> str:
    pairs = getaddresses([author])
    name, address = pairs[0] if pairs else ("", "")
    hidden = masker.text(address) if address else "unknown"
    return f"{masker.text(name)} ({hidden})" if name else hidden


def _mask_parts(msg: EmailMessage, masker: Masker) -> None:
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        if part.get_content_disposition() == "attachment":
            continue
        subtype = part.get_content_subtype()
        try:
            text = masker.text(str(part.get_content()))
        except Exception:  # unknown charset, broken encoding: never show it unmasked
            log.info("a text part could not be decoded; left out of the public copy")
            text = "[this part could not be read]\n"
        part.set_content(text, subtype=subtype, charset="utf-8")


def eml(raw: bytes, message_id: str, tracker: TrackerConfig, number: int, masker: Masker) -> bytes:
    return public_copy(raw, message_id, tracker, number, masker).as_bytes(policy=_EML)


def mbox(
    mails: list[tuple[bytes, str, datetime]], tracker: TrackerConfig, number: int, masker: Masker
) -> bytes:
    """The mails as one mboxrd file (``>From`` quoting undone by readers that know it)."""
    out = bytearray()
    for raw, message_id, received in mails:
        copy = public_copy(raw, message_id, tracker, number, masker).as_bytes(policy=_MBOX)
        out += f"From {tracker.address} {received.strftime('%a %b %d %H:%M:%S %Y')}\n".encode()
        for line in copy.split(b"\n"):
            if line.lstrip(b">").startswith(b"From "):
                line = b">" + line
            out += line + b"\n"
        out += b"\n"
    return bytes(out)
