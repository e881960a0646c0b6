"""What mail-parser sees in a quarantined mail: its Received chain, its defects, its structure.

Why mail-parser here and not in ``parse.py``: the stdlib parser with ``policy.default`` is the
faithful one for the hot path, where every byte counts; mail-parser parses with the legacy
``compat32`` policy and silently drops undecodable header bytes, so it never decides where a
mail goes. What it does better than our own code is what an operator needs when a mail has
tripped a bug (``mailtracker quarantine show``): it splits every Received header into its
clauses (from, by, with, date), orders the hops from the origin to us and computes the delay
between them, and it names every defect it finds, in the MIME parts (a boundary that never
closes, a header block cut short) and in the headers (Received clauses it cannot split, dates
with the wrong weekday, addresses it cannot read).

Only ``quarantine show`` imports this module, inside the command, so ``ingest`` never loads
mail-parser. mail-parser raises on some real mail (4.8 raises ``AttributeError`` when a start
boundary is missing and the message has no epilogue, as in several real bounces) and logs a
warning for every part type it does not turn into text: ``diagnose`` never raises (a failure
is the result's ``error``), and mail-parser's loggers are silenced while it runs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from typing import Any

import mailparser

__all__ = ["Defect", "Diagnosis", "Hop", "Part", "diagnose"]

_RECEIVED = re.compile(r"\breceived\[(\d+)\]")


@dataclass(frozen=True)
class Hop:
    """One Received header; hop 1 is the origin, the last is the newest (our MTA or its peer).

    ``delay`` is mail-parser's: seconds from the previous hop's date to this one's (negative when
    a clock is wrong); ``None`` for the origin and where either date is missing or unreadable.
    ``raw`` is the whole header, set only where mail-parser found no from, by or with clause
    (qmail's ``(qmail 123 invoked from network)``, or a header it could not split).
    """

    number: int
    from_: str | None
    by: str | None
    with_: str | None
    date: str | None
    date_utc: datetime | None
    delay: float | None
    raw: str | None

    def line(self) -> str:
        """``  2  2012-06-30T13:05:59Z        +2s  by luna.example.net with SMTP``"""
        when = _iso(self.date_utc) or (f"unreadable date {self.date}" if self.date else "no date")
        delay = "origin" if self.number == 1 else _duration(self.delay)
        clauses = (("from", self.from_), ("by", self.by), ("with", self.with_))
        route = (
            f"Received: {self.raw}" if self.raw else " ".join(f"{k} {v}" for k, v in clauses if v)
        )
        return f"  {self.number:>2}  {when:<20}  {delay:>9}  {route}"

    def to_json(self) -> dict[str, Any]:
        return {
            "hop": self.number,
            "from": self.from_,
            "by": self.by,
            "with": self.with_,
            "date": self.date,
            "date_utc": _iso(self.date_utc),
            "delay": self.delay,
            "raw": self.raw,
        }


@dataclass(frozen=True)
class Defect:
    """One defect as mail-parser reports it.

    ``where`` is the content type of the part, or the header group (``received-headers``,
    ``date-headers``, ``address-headers``, ``mime-headers``); ``kind`` is the defect's class
    (``CloseBoundaryNotFoundDefect``, ``DateHeaderDefect``); ``detail`` says what is wrong.
    """

    where: str
    kind: str
    detail: str


@dataclass(frozen=True)
class Part:
    """One node of the MIME tree as parsed: a declared multipart whose boundary never appears
    shows up here without children."""

    depth: int
    content_type: str


@dataclass(frozen=True)
class Diagnosis:
    """The whole diagnosis; with ``error`` set, mail-parser failed and the rest is empty."""

    hops: tuple[Hop, ...] = ()
    defects: tuple[Defect, ...] = ()
    declared_type: str | None = None
    structure: tuple[Part, ...] = ()
    error: str | None = None

    def lines(self) -> list[str]:
        """For people: declared and parsed structure, the hops with their delays, the defects."""
        if self.error:
            return [f"mail-parser could not diagnose this mail: {self.error}"]
        lines = [f"declared Content-Type: {self.declared_type or 'none (text/plain by default)'}"]
        lines.append("parsed structure:")
        lines += [f"  {'  ' * p.depth}{p.content_type}" for p in self.structure]
        lines.append(
            f"Received, origin first: {len(self.hops)} hops" if self.hops else "no Received"
        )
        lines += [h.line() for h in self.hops]
        lines.append(f"defects: {len(self.defects)}")
        lines += [f"  {d.where}: {d.kind}: {d.detail}" for d in self.defects]
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "error": self.error,
            "declared_content_type": self.declared_type,
            "structure": [
                {"depth": p.depth, "content_type": p.content_type} for p in self.structure
            ],
            "hops": [h.to_json() for h in self.hops],
            "defect_count": len(self.defects),
            "defects": [
                {"where": d.where, "kind": d.kind, "detail": d.detail} for d in self.defects
            ],
        }


def diagnose(raw: bytes) -> Diagnosis:
    """Parse ``raw`` with mail-parser; never raises, whatever the mail or mail-parser does."""
    try:
        with _quiet():
            parsed = mailparser.parse_from_bytes(raw)
            message: Message | None = parsed.message
            hops = _hops(parsed.received, parsed.received_raw[::-1])
            return Diagnosis(
                hops=hops,
                defects=_defects(parsed.defects, len(hops)),
                declared_type=_text(message.get("Content-Type")) if message else None,
                structure=_structure(message),
            )
    except Exception as exc:
        return Diagnosis(error=_clean(f"{type(exc).__name__}: {exc}"))


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence mail-parser's loggers: its warnings ("content 'report' not handled") say
    nothing about the mail, and its error messages repeat whole headers on stderr."""
    logger = logging.getLogger("mailparser")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _hops(received: list[dict[str, Any]], raws: list[str]) -> tuple[Hop, ...]:
    """mail-parser's Received list is already in order from the origin (hop 1) to us;
    ``raws`` are the same headers, unparsed, in the same order."""
    hops: list[Hop] = []
    for entry, raw in zip(received, raws, strict=True):
        when = _utc(entry.get("date_utc"))
        before = hops[-1].date_utc if hops else None
        clauses = any(entry.get(k) for k in ("from", "by", "with"))
        hops.append(
            Hop(
                number=int(entry["hop"]),
                from_=_text(entry.get("from")),
                by=_text(entry.get("by")),
                with_=_text(entry.get("with")),
                date=_text(entry.get("date")),
                date_utc=when,
                delay=float(entry["delay"]) if when is not None and before is not None else None,
                raw=None if clauses else _text(entry.get("raw") or raw),
            )
        )
    return tuple(hops)


def _defects(reported: list[dict[str, list[str]]], hops: int) -> tuple[Defect, ...]:
    """mail-parser groups its defects as ``[{where: ["Kind: detail", ...]}, ...]``.

    It names a Received header by its place in the mail (``received[0]`` is the topmost, the
    last hop); the hop number is added, so the defect can be found in the chain."""
    found: list[Defect] = []
    for group in reported:
        for where, texts in group.items():
            for text in texts:
                kind, _, detail = _clean(text).partition(": ")
                detail = _RECEIVED.sub(lambda m: f"{m[0]} (hop {hops - int(m[1])})", detail)
                found.append(Defect(_clean(where), kind, " ".join(detail.split())))
    return tuple(found)


def _structure(message: Message | None) -> tuple[Part, ...]:
    """The MIME tree depth first, without recursion (mail-parser has parsed it already)."""
    parts: list[Part] = []
    stack: list[tuple[int, Message]] = [(0, message)] if message is not None else []
    while stack:
        depth, part = stack.pop()
        parts.append(Part(depth, _clean(part.get_content_type())))
        payload = part.get_payload()
        if isinstance(payload, list):  # a multipart or message/rfc822: its parts, in order
            stack.extend((depth + 1, c) for c in reversed(payload) if isinstance(c, Message))
    return tuple(parts)


def _utc(value: object) -> datetime | None:
    """mail-parser gives each hop's date as an ISO string in UTC, or nothing."""
    if not isinstance(value, str) or not value:
        return None
    when = datetime.fromisoformat(value)
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def _duration(seconds: float | None) -> str:
    """``+2s``, ``+1h 5m``, ``-163d``: a negative delay means a clock along the way is wrong."""
    if seconds is None:
        return "?"
    left = round(abs(seconds))
    units: list[str] = []
    for name, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, left = divmod(left, size)
        if count:
            units.append(f"{count}{name}")
    return ("-" if seconds < 0 else "+") + (" ".join(units) or "0s")


def _iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _text(value: object) -> str | None:
    """A header value on one line, or ``None`` when absent or empty."""
    if value is None:
        return None
    return " ".join(_clean(str(value)).split()) or None


def _clean(text: str) -> str:
    """Undecodable bytes (surrogate escapes of the stdlib parser) as visible ``\\udcxx``
    escapes, so that printing and JSON never fail on them."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
