"""The part of a reply its author newly wrote, so notifications do not snowball.

Every reply to a notification carries the whole thread below it (Gmail, Outlook and Apple Mail
all quote by default), so relaying bodies verbatim makes each notification longer than the
last. The full body is stored; :func:`visible_text` is what notifications show. It removes:

- quoted lines (``>``) and the attribution above them ("On … wrote:", also wrapped over up to
  three lines and in the common locales); an attribution followed by *unprefixed* text (Gmail
  and Apple Mail in HTML-to-text form, Outlook) cuts the rest of the body;
- Outlook and webmail header blocks ("-----Original Message-----", "From:/Sent:/To:/Subject:"
  and their translations), which also cut the rest of the body;
- signatures: the ``-- `` block, mobile taglines ("Sent from my iPhone"), the Mailman list
  footer and a lone "-Name" sign-off at the very end.

Inline replies keep the author's interleaved text; a forwarded message ("---------- Forwarded
message ----------") is new to the thread and kept verbatim. If nothing is left (a pure forward,
a quote-only body) the whole body is returned, stripped: a notification is never empty.

The rules were measured against the quote-stripping oracles of talon, GitHub's and Zapier's
email_reply_parser and mail-parser-reply (``docs/quotes.md``, ``bench/quotes_oracle.py``); none
of those libraries did better on them, so the rules are ours. Every regular expression is
anchored or bounded and runs only on lines of at most ``RULE_LINE_MAX`` characters, so the
time is linear in the body size, whatever the input (GitHub's 750 KB ``>>>>`` line included).

This module scans the lines and cuts; ``quotemarks.py`` recognises the lines that mark a
quote (attributions, header blocks, dividers, forward markers) in each client's locales.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailtracker.quotemarks import (
    RULE_LINE_MAX,
    WINDOW,
    ends_like_attribution,
    header_block_at,
    header_role,
    is_blank_or_rule,
    is_forward_marker,
    is_original_divider,
    is_strong,
    is_weak_or_strong,
    split_shared_line,
    window_start,
)

__all__ = ["strip_quotes", "visible_text"]

_ATTRIBUTION_GAP = 5  # blank lines allowed between an attribution and its quote (Apple Mail: 4)


def visible_text(text: str) -> str:
    """What the author of this reply wrote: quotes, attributions and signatures removed."""
    lines = _lines(text)
    reply = _scan(lines)
    return _join(_strip_signature(reply.own), reply.forwarded) or "\n".join(lines).strip()


def strip_quotes(text: str) -> str:
    """The reply with quotes and attributions removed but signatures kept."""
    lines = _lines(text)
    reply = _scan(lines)
    return _join(reply.own, reply.forwarded) or "\n".join(lines).strip()


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _join(own: Sequence[str], forwarded: Sequence[str]) -> str:
    head = "\n".join(own).strip()
    tail = "\n".join(forwarded).strip()
    return f"{head}\n\n{tail}" if head and tail else head or tail


# --- the scan: one pass over the lines, top to bottom -------------------------------------------


@dataclass
class _Reply:
    own: list[str]  # the author's lines, quotes removed
    forwarded: list[str]  # a forwarded message below them, kept verbatim


@dataclass
class _Scan:
    lines: list[str]
    kept: list[int]  # indices of the author's lines so far
    i: int = 0
    first_text: int | None = None  # first kept line that is neither blank nor a header line
    attributed: bool = False  # the quote block ahead already had its attribution removed


def _scan(lines: list[str]) -> _Reply:
    scan = _Scan(list(lines), [])  # a copy: a line may be shortened, the fallback needs it
    while scan.i < len(lines):
        line = lines[scan.i]
        if _is_quoted(line):
            _drop_quote(scan)
        elif is_forward_marker(line):
            return _Reply(_kept(scan), lines[scan.i :])
        elif _cuts_here(scan):
            _drop_trailing_separators(scan)
            break
        elif not _attribution_at(scan):
            _keep(scan)
            scan.i += 1
    return _Reply(_kept(scan), [])


def _keep(scan: _Scan) -> None:
    line = scan.lines[scan.i]
    scan.kept.append(scan.i)
    if scan.first_text is None and line.strip() and header_role(line) is None:
        scan.first_text = scan.i


def _kept(scan: _Scan) -> list[str]:
    return [scan.lines[k] for k in scan.kept]


def _cuts_here(scan: _Scan) -> bool:
    """An "Original Message" divider, or an Outlook header block below the author's text.

    A header block with no text above is the message's own (a pasted or forwarded header, as
    in mail-parser-reply's Polish fixtures), not the start of a quote.
    """
    if is_original_divider(scan.lines[scan.i]):
        return True
    return scan.first_text is not None and header_block_at(scan.lines, scan.i)


def _drop_trailing_separators(scan: _Scan) -> None:
    # Outlook puts "________________________________" above its header block, Gmail's
    # HTML-to-text puts "------------------------------" there.
    while scan.kept and is_blank_or_rule(scan.lines[scan.kept[-1]]):
        scan.kept.pop()


# --- quoted blocks ------------------------------------------------------------------------------


def _is_quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _drop_quote(scan: _Scan) -> None:
    """Skip a ``>`` block with the blank lines in and after it; drop a weak attribution above."""
    if not scan.attributed:
        _drop_weak_attribution(scan)
    scan.attributed = False
    lines, i = scan.lines, scan.i
    while i < len(lines) and (_is_quoted(lines[i]) or _is_wrapped_quote(lines, i)):
        i += 1
    if i < len(lines) and not lines[i - 1].strip() and _ends_with_text(scan):
        i -= 1  # keep one blank line between the author's paragraphs around the quote
    scan.i = i


def _ends_with_text(scan: _Scan) -> bool:
    return bool(scan.kept) and bool(scan.lines[scan.kept[-1]].strip())


def _is_wrapped_quote(lines: list[str], i: int) -> bool:
    """A line inside a ``>`` block that lost its marker, or a blank line in or after the block.

    A long link pushes the marker to the line's end, or wraps out of it (talon's fixtures);
    a quoted-printable soft break ("=" at the end) left undecoded splits a quoted line
    (mail-parser-reply's fixtures).
    """
    line = lines[i].rstrip()
    if not line:
        return True
    if i + 1 >= len(lines) or not _is_quoted(lines[i + 1]) or len(line) > RULE_LINE_MAX:
        return False
    above = lines[i - 1].rstrip()
    last_word = above.rsplit(None, 1)[-1] if above else ""
    wrapped_link = "://" in last_word and not last_word.endswith(")")
    return line.endswith(" >") or wrapped_link or above.endswith("=")


# --- attributions ("On … wrote:"), cut out of the scan ------------------------------------------


def _attribution_at(scan: _Scan) -> bool:
    """Handle an attribution ending on the current line; False if there is none."""
    span = _attribution_span(scan)
    if span is None:
        return False
    start, before = span
    _unkeep_from(scan, start)
    if before:
        scan.lines[scan.i] = before  # text before "On … wrote:" on the same line stays
        _keep(scan)
    nxt = _next_nonblank(scan.lines, scan.i + 1, _ATTRIBUTION_GAP)
    if nxt is None or not _is_quoted(scan.lines[nxt]):
        scan.i = len(scan.lines)  # the quote is not prefixed: everything below is quoted
    else:
        scan.i, scan.attributed = nxt, True
    return True


def _attribution_span(scan: _Scan) -> tuple[int, str] | None:
    """(first line, text before it on the line) of a strong attribution ending here."""
    line = scan.lines[scan.i]
    if len(line) > RULE_LINE_MAX or not ends_like_attribution(line):
        return None
    start = window_start(scan.lines, scan.i, scan.kept, is_strong)
    if start is not None:
        return start, ""
    before, rest = split_shared_line(line)
    if before and is_strong(rest):
        return scan.i, before
    return (scan.i, "") if is_strong(line) else None


def _drop_weak_attribution(scan: _Scan) -> None:
    tail = [k for k in scan.kept[-_ATTRIBUTION_GAP - WINDOW :] if scan.lines[k].strip()]
    if not tail or scan.i - tail[-1] > _ATTRIBUTION_GAP + 1:
        return
    start = window_start(scan.lines, tail[-1], scan.kept, is_weak_or_strong)
    if start is None and is_weak_or_strong(scan.lines[tail[-1]]):
        start = tail[-1]
    if start is not None:
        _unkeep_from(scan, start)


def _unkeep_from(scan: _Scan, start: int) -> None:
    while scan.kept and scan.kept[-1] >= start:
        scan.kept.pop()
    if scan.first_text is not None and scan.first_text >= start:
        scan.first_text = None


def _next_nonblank(lines: list[str], i: int, gap: int) -> int | None:
    for k in range(i, min(len(lines), i + gap + 1)):
        if lines[k].strip():
            return k
    return None


# --- signatures ---------------------------------------------------------------------------------

# Taglines mobile clients append: iOS "Sent from my iPhone" (and de/fr/es/pt/it/nl/sv/da/pl/ja/zh
# translations), BlackBerry "Sent from my Verizon Wireless BlackBerry", Samsung "Sent from
# Samsung Mobile", Outlook "Get Outlook for iOS", Sparrow "Sent with Sparrow (…)". "Sent from my"
# takes at most four words, so "Sent from my desk, is much easier…" stays (GitHub's fixtures).
_TAGLINE = re.compile(
    r"^\s*(?:sent from my(?: [\w'\u2019.-]+){1,4}"
    r"|sent (?:from|with|via|using) (?:my )?(?:iphone|ipad|android|samsung|mobile|outlook"
    r"|mail for windows|yahoo mail|aol|blackberry|acompli|gmail|proton ?mail|spark|sparrow"
    r"|airmail|windows phone|nine|newton|edison mail|bluemail)\b[^,;!?()<>]{0,60}"
    r"(?:[(<][^()<>]{0,100}[)>])?"
    r"|get outlook for (?:ios|android)\S*"
    r"|von meinem [\w' .-]{1,40} gesendet|envoyé (?:de|depuis) mon [\w' .-]{1,40}"
    r"|enviado (?:desde mi|do meu|de mi|del mio) [\w' .-]{1,40}|inviato da(?:l mio)? [\w' .-]{1,40}"
    r"|verzonden (?:vanaf|met) mijn [\w' .-]{1,40}|verstuurd vanaf mijn [\w' .-]{1,40}"
    r"|skickat från min [\w' .-]{1,40}|sendt fra min [\w' .-]{1,40}"
    r"|wysłane z (?:mojego )?[\w' .\u2019-]{1,40}"
    r"|\u043e\u0442\u043f\u0440\u0430\u0432\u043b\u0435\u043d\u043e \u0441 [\w' .-]{1,40}"
    r"|(?:iphone|ipad|android)から送信|发自我的(?:iphone|ipad))\s*$",
    re.IGNORECASE,
)
_SIGN_OFF = re.compile(r"^\s*-[^\W\d_][\w.'\u2019]*(?: [\w.'\u2019]+){0,3}\s*$")  # "-Name"
_LIST_RULE = re.compile(r"^\s*_{10,}\s*$")


def _strip_signature(lines: list[str]) -> list[str]:
    """Cut the ``-- `` block and the Mailman footer, then trailing taglines and sign-offs."""
    end = _list_footer_start(lines, _signature_start(lines))
    end = _skip_blank_back(lines, end)
    while end and _is_trailing_signature(lines, end):
        end = _skip_blank_back(lines, end - 1)
    return lines[:end]


def _skip_blank_back(lines: list[str], end: int) -> int:
    while end and not lines[end - 1].strip():
        end -= 1
    return end


def _signature_start(lines: list[str]) -> int:
    """The first ``-- `` line (RFC 3676; many clients drop the space) below the first text."""
    seen_text = False
    for k, line in enumerate(lines):
        if seen_text and line.rstrip() == "--":
            return k
        seen_text = seen_text or bool(line.strip())
    return len(lines)


def _list_footer_start(lines: list[str], end: int) -> int:
    """Mailman's footer: a rule of underscores, then "<list> mailing list"."""
    for k in range(end - 1):
        rule = len(lines[k]) <= RULE_LINE_MAX and _LIST_RULE.match(lines[k])
        if rule and lines[k + 1].rstrip().endswith("mailing list"):
            return k
    return end


def _is_trailing_signature(lines: list[str], end: int) -> bool:
    """A mobile tagline, or a "-Name" sign-off after a blank line, ends ``lines[:end]``."""
    last = lines[end - 1]
    if len(last) > RULE_LINE_MAX:
        return False
    if _TAGLINE.match(last):
        return True
    after_blank = end == 1 or not lines[end - 2].strip()
    return after_blank and _SIGN_OFF.match(last) is not None
