"""Large bodies kept out of the stdlib parser, and taken from the mail's own bytes.

The stdlib ``FeedParser`` keeps a leaf part's body as a list of one ``str`` per line, joins
them, then cuts the last line end off (another copy): for a 25 MB attachment about 2.7 times
the mail on top of the mail itself. So before parsing, every *run* of at least ``BIG_RUN``
bytes is replaced by a one-line token (random, so no mail can forge one) that the parser
treats exactly as it would have treated the run's lines, so it sees the same structure:

- a run of whole lines made only of the base64 alphabet: such lines hold no colon, no dash,
  no blank and no empty line, so they can be neither a header, nor a boundary, nor the end
  of a header block;
- a *text block*: the lines that follow an empty line, up to the next empty line or the
  next line that begins with a dash (a boundary begins with two), when its first line does
  not look like a header (the parser's own test). After an empty line the parser is in a
  body, or starts the header block of an enclosed message, which a first line that is no
  header ends at once, with the token as with the lines. A log file or quoted-printable
  text attached whole is such a block.

``parse.py`` then asks this module for what the parser would have held:

- ``run``: the bytes of the one run a base64 body consists of, as a memoryview on the mail,
  for ``binascii.a2b_base64`` (which skips line ends and decodes without another copy);
- ``payload_bytes``: a leaf's payload as the stdlib would encode it for decoding
  (``get_payload(decode=True)``), the runs' bytes taken from the mail, in one copy;
- ``restore``: the runs put back as text into a part or a whole tree, before the stdlib
  reads it (another transfer encoding, an enclosed message being flattened, a bad run).
"""

from __future__ import annotations

import bisect
import re
import secrets
from email.message import Message
from functools import cached_property

__all__ = ["BIG_RUN", "BigRuns", "elide"]

BIG_RUN = 1 << 20
# The bytes a base64 run is made of: its alphabet and line ends; and a table that turns
# them into b"a" and every other byte into b" ", so ``bytes.find`` can look for the others.
_RUN_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n"
_MARKS = bytes(ord("a") if byte in _RUN_BYTES else ord(" ") for byte in range(256))
# An empty line is a line end followed by another (CRLF, LF or a lone CR each end a line):
# in bytes, one of these pairs.
_EMPTY_LINES = (b"\n\n", b"\n\r", b"\r\r")
_LINE_ENDS = b"\r\n"
# The stdlib feedparser's test for a header line (``email.feedparser.headerRE``).
_HEADER_LIKE = re.compile(rb"From |[\041-\071\073-\176]*:|[\t ]")


class BigRuns:
    """The runs taken out of one mail (token → span in ``raw``), and how to put them back."""

    def __init__(
        self, raw: bytes, spans: list[tuple[int, int]], base64: frozenset[int] = frozenset()
    ) -> None:
        self.raw = raw
        self.spans = spans
        self.base64 = base64  # indexes of the spans made only of the base64 alphabet
        self.prefix = f"mailtrackerelided{secrets.token_hex(12)}n"

    # Compiled only for a mail that has runs: the prefix is new for every mail, so the re
    # module's cache never holds them, and compiling both cost every mail 0.3 ms.
    @cached_property
    def _token(self) -> re.Pattern[str]:
        return re.compile(re.escape(self.prefix) + "([0-9]+)z")

    @cached_property
    def _alone(self) -> re.Pattern[str]:
        return re.compile(r"[\r\n\t ]*" + self._token.pattern + r"[\r\n\t ]*")

    def token(self, index: int) -> bytes:
        return f"{self.prefix}{index}z".encode("ascii")

    def run(self, part: Message) -> memoryview | None:
        """The run a leaf's body consists of (line ends and blanks around it aside), else
        None. Read as parsed: ``get_payload()`` would copy the text to look for 8-bit."""
        text = _parsed_payload(part)
        if not self.spans or not isinstance(text, str) or self.prefix not in text:
            return None
        found = self._alone.fullmatch(text)
        if found is None or int(found.group(1)) not in self.base64:
            return None
        start, end = self.spans[int(found.group(1))]
        return memoryview(self.raw)[start:end]

    def payload_bytes(self, part: Message) -> bytes | memoryview | None:
        """The leaf's payload as ``get_payload(decode=True)`` has it before decoding (the
        parsed text, 8-bit bytes as surrogates, encoded back), runs in place; ``None`` if
        no run was taken out of it. A payload that is one run and nothing else (the usual
        attachment) is a view on the mail: no copy at all."""
        text = _parsed_payload(part)
        if not self.spans or not isinstance(text, str) or self.prefix not in text:
            return None
        whole = self._token.fullmatch(text)
        if whole is not None:
            start, end = self.spans[int(whole.group(1))]
            return memoryview(self.raw)[start:end]
        pieces: list[bytes] = []
        done = 0
        try:
            for found in self._token.finditer(text):
                start, end = self.spans[int(found.group(1))]
                pieces += [text[done : found.start()].encode("ascii", "surrogateescape")]
                pieces.append(self.raw[start:end])
                done = found.end()
            pieces.append(text[done:].encode("ascii", "surrogateescape"))
        except UnicodeEncodeError:  # not what a bytes parser makes: the stdlib's way
            return None
        return b"".join(pieces)

    def text(self, text: str) -> str:
        """``text`` with every token replaced by the run it stands for."""
        if not self.spans or self.prefix not in text:
            return text
        return self._token.sub(self._original, text)

    def _original(self, found: re.Match[str]) -> str:
        start, end = self.spans[int(found.group(1))]
        return self.raw[start:end].decode("ascii", "surrogateescape")  # as the parser reads

    def restore(self, msg: Message) -> None:
        """Put the runs back into ``msg`` and every entity below it (payloads, preambles,
        epilogues). Iterative: the depth of nesting is the sender's."""
        if not self.spans:
            return
        stack = [msg]
        while stack:
            part = stack.pop()
            for name in ("preamble", "epilogue"):
                value = getattr(part, name, None)
                if isinstance(value, str) and self.prefix in value:
                    setattr(part, name, self.text(value))
            payload = _parsed_payload(part)
            if isinstance(payload, list):
                stack.extend(child for child in payload if isinstance(child, Message))
            elif isinstance(payload, str) and self.prefix in payload:
                part.set_payload(self.text(payload))  # a str without a charset is kept as is


def _parsed_payload(part: Message) -> object:
    """The payload as the parser stored it: ``get_payload()`` decodes a str holding 8-bit
    bytes with the part's charset, and putting runs back must not change anything else."""
    return vars(part).get("_payload")


def elide(raw: bytes) -> tuple[bytes, BigRuns]:
    """``raw`` with its big runs (base64 runs, text blocks) replaced by tokens (``raw``
    itself if there are none), and the runs to put back."""
    if len(raw) < BIG_RUN:
        return raw, BigRuns(raw, [])
    base64 = _base64_runs(raw)
    spans = _with_text_blocks(raw, base64)
    runs = BigRuns(raw, spans, frozenset(i for i, span in enumerate(spans) if span in base64))
    if not spans:
        return raw, runs
    view = memoryview(raw)
    pieces: list[bytes | memoryview] = []
    done = 0
    for index, (start, end) in enumerate(spans):
        pieces += [view[done:start], runs.token(index)]
        done = end
    pieces.append(view[done:])
    return b"".join(pieces), runs


def _with_text_blocks(raw: bytes, base64: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The base64 runs, and the text blocks that overlap none of them, in order."""
    spans = list(base64)
    for start, end in _text_blocks(raw):
        if not any(start < b_end and b_start < end for b_start, b_end in base64):
            spans.append((start, end))
    return sorted(spans)


def _text_blocks(raw: bytes) -> list[tuple[int, int]]:
    """Text blocks at least BIG_RUN long (see the module's docstring); each ends where its
    last line's line end begins. Found with ``bytes.find``: a regex over 25 MB took 0.3 s."""
    pairs = _empty_line_pairs(raw)
    blocks = []
    for index, pair in enumerate(pairs):
        start = _after(raw, pair + 1)  # past the empty line's own line end
        later = bisect.bisect_left(pairs, start, index + 1)
        limit = _line_end_before(raw, pairs[later]) if later < len(pairs) else len(raw)
        if limit - start < BIG_RUN or raw[start : start + 1] in (b"-", b"\r", b"\n", b""):
            continue
        if _HEADER_LIKE.match(raw, start):
            continue
        end = _block_end(raw, start, limit)
        if end - start >= BIG_RUN:
            blocks.append((start, end))
    return blocks


def _empty_line_pairs(raw: bytes) -> list[int]:
    """Where two line ends meet: each position holds the last byte of a line end that the
    next byte begins another after (``_EMPTY_LINES``), in order."""
    found = set()
    for pair in _EMPTY_LINES:
        at = raw.find(pair)
        while at >= 0:
            found.add(at)
            at = raw.find(pair, at + 1)
    return sorted(found)


def _after(raw: bytes, line_end: int) -> int:
    """The position after the line end that begins at ``line_end``."""
    return line_end + (2 if raw.startswith(b"\r\n", line_end) else 1)


def _line_end_before(raw: bytes, pair: int) -> int:
    """Where the line end whose last byte is at ``pair`` begins (a CRLF one byte earlier)."""
    return pair - 1 if raw[pair] == 0x0A and pair and raw[pair - 1] == 0x0D else pair


def _block_end(raw: bytes, start: int, limit: int) -> int:
    """Where the block's last line ends: at ``limit`` (the line end before the next empty
    line, or the end of the mail) or before the first line that begins with a dash."""
    end = limit
    for mark in (b"\n-", b"\r-"):
        at = raw.find(mark, start, end)
        if at >= 0:
            end = at
    while end > start and raw[end - 1] in _LINE_ENDS:
        end -= 1
    return end


def _base64_runs(raw: bytes) -> list[tuple[int, int]]:
    """Spans of whole lines of the base64 alphabet, at least BIG_RUN long, with no empty
    line inside; each ends where its last line's line end begins.

    A run that long covers at least one whole slice of BIG_RUN / 2 aligned on that size,
    so only slices with no other byte (``bytes.translate`` deleting the run's bytes leaves
    nothing) are looked at closer. A regex over the whole mail took 0.15 s for 25 MB of
    base64 and 0.25 s for 25 MB of text, most of the time this function now saves."""
    spans: list[tuple[int, int]] = []
    step = max(BIG_RUN // 2, 1)
    at = 0
    while at < len(raw):
        if raw[at : at + step].translate(None, _RUN_BYTES):
            at += step
            continue
        start, end = _run_around(raw, at, min(len(raw), at + step), step)
        span = _whole_lines(raw, _first_line_start(raw, start, end), end)
        if span is not None:
            spans.append(span)
        at = (end // step + 1) * step  # ``end`` is another byte, or the end of the mail
    return spans


def _run_around(raw: bytes, first: int, last: int, step: int) -> tuple[int, int]:
    """The widest span of run bytes around ``raw[first:last]`` (known to be all run bytes),
    looked for a slice at a time on either side."""
    start = first
    while start > 0:
        low = max(0, start - step)
        other = raw[low:start].translate(_MARKS).rfind(b" ")
        if other >= 0:
            start = low + other + 1
            break
        start = low
    end = last
    while end < len(raw):
        other = raw[end : end + step].translate(_MARKS).find(b" ")
        if other >= 0:
            end += other
            break
        end = min(len(raw), end + step)
    return start, end


def _first_line_start(raw: bytes, start: int, end: int) -> int:
    """The first place in the span where a line begins with an alphabet byte (as the
    regex ``(?m)^`` sees lines: after LF only); ``end`` if there is none."""
    at = start
    while at < end:
        if (at == 0 or raw[at - 1] == 10) and raw[at] not in _LINE_ENDS:
            return at
        line_feed = raw.find(b"\n", at, end)
        if line_feed < 0:
            return end
        at = line_feed + 1
    return end


def _whole_lines(raw: bytes, start: int, stop: int) -> tuple[int, int] | None:
    """The run from ``start``, cut to its last whole line, if long enough and unbroken."""
    if stop - start < BIG_RUN:
        return None
    end = _last_line_end(raw, start, stop)
    if end - start < BIG_RUN or any(raw.find(e, start, end) >= 0 for e in _EMPTY_LINES):
        return None
    return start, end


def _last_line_end(raw: bytes, start: int, stop: int) -> int:
    """Where the content of the stretch's last whole line ends. A stretch that stops inside
    a line (on a dash, a colon, a blank) loses that line: it is not made of the alphabet."""
    if stop < len(raw) and raw[stop - 1] not in _LINE_ENDS:
        stop = max(raw.rfind(b"\n", start, stop), raw.rfind(b"\r", start, stop))
        if stop < 0:
            return start
    while stop > start and raw[stop - 1] in _LINE_ENDS:
        stop -= 1
    return stop
