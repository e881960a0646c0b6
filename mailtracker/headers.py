"""Header values of a parsed mail, read so that nothing raises and nothing is lost.

The ``email`` policy decodes most headers well, but reading its values can raise (CPython
3.11: ``AttributeError`` on ``To: unlisted-recipients:; (comment)``), it turns raw Latin-1
bytes into U+FFFD, and its decoding is quadratic in the number of encoded words. So every
value here has a raw fallback, 8-bit bytes are decoded by ``decode_bytes``, and very long
headers skip the policy. Used by ``parse.py``.
"""

from __future__ import annotations

import hashlib
import re
from email import policy
from email.header import decode_header
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import Message
from email.utils import getaddresses
from typing import Any

__all__ = [
    "DEFAULT_POLICY",
    "SMTP_POLICY",
    "CachedHeaderRegistry",
    "Headers",
    "author",
    "clean",
    "decode_bytes",
    "first_token",
    "ids",
    "message_id",
    "recipients",
]

LONG_HEADER = 1 << 15
_BRACKETED_ID = re.compile(r"<([^<>]*)>")
_ADDR_SPEC = re.compile(r"[^\s<>()\[\],;:\"]+@[^\s<>()\[\],;:\"]+")
_ID_SEPARATORS = re.compile(r"[\s,]+")
_FIRST_TOKEN = re.compile(r"[^\s;(]+")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Names clients use that Python's codecs do not know, or that mean a superset in practice.
_CHARSET_ALIASES = {
    "gb2312": "gb18030",  # senders label GBK/GB18030 text as gb2312
    "iso-8859-8-i": "iso-8859-8",  # RFC 1556 logical-order Hebrew, same bytes
    "windows-874": "cp874",
    "x-sjis": "shift_jis",
}

# --- policies ------------------------------------------------------------------------------


class CachedHeaderRegistry(HeaderRegistry):
    """The stdlib registry, but each header name's class is made once, and a short header
    value is parsed once.

    ``HeaderRegistry.__getitem__`` builds a new class with ``type()`` on every header read
    or written (CPython 3.11), about 25 µs each: a third of the time of rendering a
    notification. And every ``get_content_type()``, ``get_filename()`` … parses the header
    again: six parses of each part's Content-Type per mail. The classes made for one name
    are interchangeable and parsed headers are immutable (``str`` with a parse tree), so
    handing out the same ones changes nothing but the time.
    """

    CACHED_VALUE = 1_000  # longer values are rare and would make the cache big
    CACHE_SIZE = 4_096

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}
        self._parsed: dict[tuple[str, str], BaseHeader] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made

    def __call__(self, name: str, value: Any) -> BaseHeader:
        if not isinstance(value, str) or len(value) > self.CACHED_VALUE:
            return self[name](name, value)  # an Address object, a list of them, a long one
        key = (name, value)
        header = self._parsed.get(key)
        if header is None:
            if len(self._parsed) >= self.CACHE_SIZE:
                self._parsed.clear()
            header = self._parsed[key] = self[name](name, value)
        return header


# ``policy.default`` and ``policy.SMTP`` with the cached registry: the same output.
DEFAULT_POLICY = policy.default.clone(header_factory=CachedHeaderRegistry())
SMTP_POLICY = policy.SMTP.clone(header_factory=CachedHeaderRegistry())

# --- headers ---------------------------------------------------------------------------------


class Headers:
    """Header values of one entity, decoded by the policy where it can, raw text where not."""

    def __init__(self, msg: Message) -> None:
        self.msg = msg
        self.defects: set[str] = set()

    def unfolded(self, name: str) -> list[str]:
        """Every value as sent, unfolded; 8-bit bytes are still surrogates."""
        values = (str(value) for key, value in self.msg.raw_items() if key.lower() == name)
        return [_LINE_BREAK.sub("", value).strip() for value in values]

    def raw(self, name: str) -> list[str]:
        """Every value as sent: unfolded, 8-bit bytes decoded, RFC 2047 words left alone."""
        return [clean(value) for value in self.unfolded(name)]

    def first_raw(self, name: str) -> str:
        values = self.raw(name)
        return values[0] if values else ""

    def decoded(self, name: str) -> list[str] | None:
        """Every value decoded by the policy; None when its parser raised, or would take
        too long: it is quadratic in the number of encoded words (1 s for 170 KB)."""
        if sum(map(len, self.unfolded(name))) > LONG_HEADER:
            return None
        try:
            values = self.msg.get_all(name) or []
            texts = [str(value) for value in values]
        except Exception:  # CPython 3.11: AttributeError on an empty group with a comment
            return None
        for value in values:
            self.defects.update(type(d).__name__ for d in getattr(value, "defects", ()))
        return [clean(text) for text in texts]

    def text(self, name: str) -> str:
        """The first value, RFC 2047 decoded. Raw 8-bit values are decoded here: the
        policy turns Latin-1 bytes into U+FFFD where UTF-8 fails. Only the first
        LONG_HEADER characters count: ``decode_header`` is quadratic in words too."""
        unfolded = [value[:LONG_HEADER] for value in self.unfolded(name)]
        plain = not any(map(_SURROGATE.search, unfolded))
        decoded = self.decoded(name) if plain else None
        if decoded is None:
            decoded = [_decode_words(clean(value)) for value in unfolded]
        return decoded[0] if decoded else ""

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """``(display name, address)`` pairs. ``getaddresses`` on the raw text copes with
        groups and junk, and keeps RFC 822 comment names (``addr (Name)``) that the policy's
        ``str()`` drops; RFC 2047 forbids specials in a phrase's encoded words (section 5),
        so decoding the names afterwards cannot split an address. 8-bit bytes are decoded
        address by address (``_utf8``), so junk beside a UTF-8 address (RFC 6532) no longer
        turns the whole header to Latin-1."""
        self.decoded(name)  # for the policy's defects only
        pairs = _getaddresses(self.unfolded(name))
        return [(_decode_words(clean(display)), _utf8(address)) for display, address in pairs]


def _utf8(address: str) -> str:
    """An address with its 8-bit bytes read as UTF-8, the only charset an address may have
    (RFC 6532); ``""`` (no address) if they are not UTF-8: no mail could reach it."""
    if not _SURROGATE.search(address):
        return address.replace("\x00", "")
    try:
        return address.encode("utf-8", "surrogateescape").decode("utf-8").replace("\x00", "")
    except UnicodeError:
        return ""


def _getaddresses(values: list[str]) -> list[tuple[str, str]]:
    try:
        return getaddresses(values)
    except RecursionError:  # _parseaddr recurses per ":" (mimekit stack-overflow.txt)
        return [("", address) for address in _ADDR_SPEC.findall(" ".join(values))]


def _decode_words(value: str) -> str:
    """RFC 2047 decoding that never raises: each word's charset, then UTF-8, then Latin-1;
    the text as sent if the words are too broken to split."""
    if "=?" not in value:
        return value
    try:
        chunks = decode_header(value)
    except Exception:  # HeaderParseError on bad base64
        return value
    # decode_header hands back unencoded stretches as raw-unicode-escape bytes
    texts = (
        c if isinstance(c, str) else decode_bytes(c, charset or "raw-unicode-escape")
        for c, charset in chunks
    )
    return clean("".join(texts))


def clean(text: str) -> str:
    """No lone surrogates (8-bit bytes the parser could not decode) and no NUL, which
    PostgreSQL text cannot hold."""
    if _SURROGATE.search(text):
        try:
            data = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate that stands for no byte
            data = text.encode("utf-8", "replace")
        text = decode_bytes(data, None)
    return text.replace("\x00", "")


def _is_address(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain) and not any(c.isspace() for c in address)


def author(headers: Headers) -> tuple[str, str]:
    """Address and name from From, else Sender, else Reply-To; the pipeline falls back to
    the envelope when all are missing."""
    for name in ("from", "sender", "reply-to"):
        for display, address in headers.addresses(name):
            if _is_address(address):
                return address.lower(), " ".join(display.split())
    return "", ""


def recipients(headers: Headers, name: str) -> tuple[str, ...]:
    found = (address.lower() for _, address in headers.addresses(name))
    return tuple(dict.fromkeys(address for address in found if _is_address(address)))


def message_id(headers: Headers, raw: bytes) -> tuple[str, bool]:
    """The Message-ID without ``<>``; for mail without one (brain-dead clients and some
    bounce generators) an id from the bytes, so a redelivery is still a duplicate."""
    value = headers.first_raw("message-id")
    match = _BRACKETED_ID.search(value)
    found = "".join((match[1] if match else value).split()).strip("<>")
    if found:
        return found, False
    return f"{hashlib.sha256(raw).hexdigest()[:32]}@mailtracker.invalid", True


def ids(values: list[str]) -> tuple[str, ...]:
    """Every ``<id>``, in order, once; for clients that drop the brackets, the words with
    an ``@``."""
    found: list[str] = []
    for value in values:
        ids = ["".join(i.split()) for i in _BRACKETED_ID.findall(value)]
        if not any(ids):
            ids = [word.strip(";\"'()<>") for word in _ID_SEPARATORS.split(value) if "@" in word]
        found += ids
    return tuple(dict.fromkeys(i for i in found if i))


def first_token(value: str) -> str:
    match = _FIRST_TOKEN.search(value)
    return match[0].lower() if match else ""


def decode_bytes(data: bytes, charset: str | None) -> str:
    """The declared charset, then UTF-8, then Latin-1 with replacement; a result with lone
    surrogates (utf-7, unicode-escape) counts as a failure."""
    for candidate in (_CHARSET_ALIASES.get(charset or "", charset), "utf-8"):
        if not candidate:
            continue
        try:
            text = data.decode(candidate)
        except (LookupError, UnicodeError, ValueError):  # unknown, lying or bogus charset
            continue
        if not _SURROGATE.search(text):
            return text
    return data.decode("latin-1", errors="replace")
