"""A leaf part's content decoded from its transfer encoding, the way ``get_payload(decode=True)``
decodes it, but without the stdlib's copies where a body is large.

Why apart from ``parse.py``: the stdlib decodes a 25 MB body by way of three more copies
(bytes, lines, joined); a body the parser never saw (a run that ``bigparts`` took out) is
decoded here from the mail's own bytes instead, and what the stdlib gets wrong
(quoted-printable with CR-only line ends) is put right. Everything else goes the stdlib's
way, so the result is the same bytes (``tests/test_bigparts.py`` holds them equal on the
whole corpus).
"""

from __future__ import annotations

import binascii
import re
from contextlib import suppress
from email.message import Message

from mailtracker import headers as mh
from mailtracker.bigparts import BigRuns

__all__ = ["BIG_PAYLOAD", "leaf_text", "payload"]

# From this size a base64 body the parser did see is decoded in one call, not line by line.
BIG_PAYLOAD = 1 << 20
_LONE_CR = re.compile(r"\r(?!\n)")
_LONE_CR_BYTES = re.compile(rb"\r(?!\n)")
# Transfer encodings the stdlib leaves as they are (any it does not know, too; those
# go its way).
_IDENTITY = ("", "7bit", "8bit", "binary")


def leaf_text(part: Message) -> str:
    """A leaf's payload as parsed (8-bit bytes as surrogates), "" if it cannot be had."""
    try:
        payload = part.get_payload()
    except Exception:  # the declared charset's codec raised (see parse._subparts)
        return ""
    return payload if isinstance(payload, str) else ""


def payload(part: Message, big: BigRuns) -> bytes:
    """The decoded content (base64, quoted-printable, uuencode); the raw bytes if the
    transfer encoding cannot be applied."""
    special = _decode_specially(part, big)
    if special is not None:
        return special
    big.restore(part)  # the stdlib reads the payload itself
    try:
        data = part.get_payload(decode=True)
    except Exception:  # a Content-Transfer-Encoding header the policy cannot parse
        data = None
    if isinstance(data, bytes):
        return data
    return leaf_text(part).encode("utf-8", "surrogateescape")


def _decode_specially(part: Message, big: BigRuns) -> bytes | None:
    """The cases the stdlib path handles badly, else None. A large body the parser never
    saw (a run, ``bigparts``): the stdlib would make three more copies of it (bytes, lines,
    joined), so it is decoded straight from the mail's bytes. Quoted-printable with CR-only
    line ends (old Mac mail): ``a2b_qp`` stops at the first ``=\\r`` soft line break, so make
    the line ends CRLF first (RFC 2045 6.7)."""
    cte = mh.Headers(part).first_raw("content-transfer-encoding").lower()
    if cte in _IDENTITY:
        data = big.payload_bytes(part)
        return None if data is None else bytes(data)
    if cte == "quoted-printable":
        return _quoted_printable(part, big)
    if cte != "base64":
        return None
    run = big.run(part)
    if run is not None:
        with suppress(binascii.Error):  # bad padding: decoded below, as the stdlib would
            return binascii.a2b_base64(run)
    big.restore(part)
    text = leaf_text(part)
    if len(text) >= BIG_PAYLOAD:
        with suppress(binascii.Error, ValueError):  # 8-bit junk or bad padding: stdlib copes
            return binascii.a2b_base64(text)
    return None


def _quoted_printable(part: Message, big: BigRuns) -> bytes | None:
    """What the stdlib's ``quopri.decodestring`` gives, from the mail's bytes for a run."""
    data: bytes | memoryview | None = big.payload_bytes(part)
    if data is None:
        text = leaf_text(part)
        if not _LONE_CR.search(text):
            return None
        data = _LONE_CR.sub("\r\n", text).encode("utf-8", "surrogateescape")
    elif _LONE_CR_BYTES.search(data):
        data = _LONE_CR_BYTES.sub(b"\r\n", data)
    with suppress(binascii.Error, ValueError):  # never seen; the stdlib's way then
        return binascii.a2b_qp(data)
    return None
