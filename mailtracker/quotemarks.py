"""Recognising the lines a mail client writes around the message it quotes, per locale.

A reply's quote is announced by an attribution ("On Mon, … Alice <a@x.org> wrote:", in some
twenty languages and wrapped over up to three lines), by an Outlook or webmail header block
("From:/Sent:/To:/Subject:" and their translations), by an "-----Original Message-----"
divider or a rule line; a forwarded message by "---------- Forwarded message ----------".
These recognisers are pure functions of lines; ``quotes.py`` scans a body with them and
decides what to cut. Kept apart because the locale tables grow with every client measured
(``docs/quotes.md``) while the scan does not.

Every regular expression is anchored or bounded and runs only on lines of at most
``RULE_LINE_MAX`` characters, so the time is linear in the body size.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = [
    "RULE_LINE_MAX",
    "WINDOW",
    "ends_like_attribution",
    "header_block_at",
    "header_role",
    "is_blank_or_rule",
    "is_forward_marker",
    "is_original_divider",
    "is_strong",
    "is_weak_or_strong",
    "split_shared_line",
    "window_start",
]

RULE_LINE_MAX = 400  # longer lines are never attributions, header lines or taglines
WINDOW = 3  # an attribution wraps over at most this many lines (Gmail: 2, Apple Mail: 3)
_HEADER_SPAN = 12  # lines scanned for the rest of an Outlook header block
_ADDRESS_MAX = 120  # "Name <address>" after an attribution's verb


# --- attributions ("On … wrote:") ---------------------------------------------------------------

# The verb of an attribution line, per client locale: Gmail and Apple Mail "wrote", Outlook for
# Mac "sent", Thunderbird and Gmail de "schrieb", fr "a écrit", nl "schreef" and "het volgende
# geschreven", sv/da/no "skrev", pl "napisał(a)", es "escribió", pt "escreveu", it "ha scritto",
# fi "kirjoitti", ru "napisal(a)" (Android Mail), cs "napsal(a)", tr "yazdi", vi "đã viết",
# el "égrapse", zh "xiedao", ja "kakimashita", ko "jakseong".
_VERB = re.compile(
    r"\b(?:wrote|writes|sent|schrieb|a [ée]crit|schreef|geschreven|skrev|napisała?|napisal"
    r"|escribió|escreveu|ha scritto|kirjoitti|napsala?|đã viết|έγραψε"
    r"|\u043d\u0430\u043f\u0438\u0441\u0430\u043b\u0430?|yazd\u0131)\b"
    r"|写道|寫道|書きました|작성",
    re.IGNORECASE,
)
# First word of a wrapped attribution: en "On", de "Am", fr "Le", nl "Op", sv/da "Den",
# no "På", es "El", it "Il", pt "Em", pl "W dniu"/"Dnia", vi "Vào", cs "Dne", ru "V", el "Stis".
_OPENER = re.compile(
    r"^(?:on|am|le|op|den|på|el|il|em|w dniu|dnia|vào|dne|dňa|\u0432|στις)\s"
    r"|^\d{1,4}(?:[./\-年]|\s)|^[-*]",  # or a date: "2014-10-17", "02.04.2012", "2022年1月1日"
    re.IGNORECASE,
)
_DASHES = "-\u2013\u2014_ "  # hyphen, en and em dash (Android, talon's fixtures), underscore
_COLONS = (":", "\uff1a")  # ASCII and full-width (Gmail zh/ja)
_SHARED_ON = re.compile(r"[\s\-]On\s")  # "reply On Wed, …": a client glued reply and attribution


def ends_like_attribution(line: str) -> bool:
    end = line.rstrip()
    return end.endswith(_COLONS) or end.lstrip().startswith(("--", "\u2014"))


def is_strong(text: str) -> bool:
    """An attribution that is certain enough to cut unprefixed text below it."""
    if len(text) > RULE_LINE_MAX:
        return False
    core = text.strip()
    if core.startswith(("--", "\u2014")):  # Android "---- Name wrote ----" (talon's fixtures)
        words = core.strip(_DASHES).split()  # none for "--\t_": only dashes and blanks
        return bool(words) and _VERB.search(words[-1]) is not None
    has_anchor = any(ch.isdigit() for ch in core) or "@" in core
    return core.endswith(_COLONS) and has_anchor and _verb_then_address(core)


def _verb_then_address(core: str) -> bool:
    """The verb ends the line or only a name and address follow it ("schrieb Name <a@b>:").

    This keeps "We sent 2 emails:" from passing for an attribution.
    """
    verbs = list(_VERB.finditer(core))
    if not verbs:
        return False
    rest = core[verbs[-1].end() :].strip(" :\uff1a")
    return not rest or ("@" in rest and len(rest) <= _ADDRESS_MAX)


def _is_weak(text: str) -> bool:
    """An attribution recognised only directly above a ``>`` block: it may lack the verb.

    Gmail in some locales writes "2014-10-17 11:28 GMT+03:00 Name <address>:" (talon's
    fixtures) and Gmail ja "2022年1月1日(金) 9:00 Name <address>:" (mail-parser-reply's).
    """
    core = text.strip()
    if len(core) > RULE_LINE_MAX or not core.endswith((*_COLONS, ">")):
        return False
    has_digit = any(ch.isdigit() for ch in core)
    return has_digit and ("@" in core or _verb_then_address(core))


def window_start(
    lines: list[str], end: int, kept: list[int], test: Callable[[str], bool]
) -> int | None:
    """Start of the tightest attribution window that ends at ``end`` and passes ``test``.

    Gmail and Apple Mail wrap long attributions over two or three lines; the window must begin
    with an opener ("On", "Am", a date) because the line above it may be the author's own.
    """
    for start in (end, *_kept_run_above(lines, end, kept)):
        window = " ".join(lines[k].strip() for k in range(start, end + 1))
        if _OPENER.match(lines[start].lstrip()) and test(window):
            return start
    return None


def _kept_run_above(lines: list[str], end: int, kept: list[int]) -> list[int]:
    """Up to ``WINDOW - 1`` kept, non-blank, consecutive lines directly above ``end``."""
    run: list[int] = []
    for k in reversed(kept):
        if k >= end:
            continue
        if k != end - len(run) - 1 or not lines[k].strip() or len(run) == WINDOW - 1:
            break
        run.append(k)
    return run


def split_shared_line(line: str) -> tuple[str, str]:
    """Split "reply On Wed, … wrote:" into "reply" and the attribution (talon's fixtures)."""
    match = _SHARED_ON.search(line)
    if match is None:
        return "", line
    return line[: match.start() + 1].rstrip(_DASHES), line[match.start() + 1 :]


def is_weak_or_strong(text: str) -> bool:
    return _is_weak(text) or is_strong(text)


# --- Outlook header blocks, dividers, forwards --------------------------------------------------

# Header names of the reply header block that Outlook (and Yahoo, AOL, Gmail when forwarding)
# writes above the quoted message, per locale: en, de, fr, nl, da/no, sv, pl, es, it, pt, fi,
# cs, ru, ja, zh. Role "from" or "date" must come first; two roles make a block.
_HEADER_ROLES = {
    "from": "from von de van fra från od da lähettäjä от 差出人 发件人",
    "date": "sent date gesendet datum envoyé envoye verzonden sendt dato skickat wysłano "
    "enviado enviada inviato data fecha lähetetty odesláno отправлено дата 送信日時 日付 发送时间",
    "to": "to an à a aan til till do para vastaanottaja komu кому 宛先 收件人",
    "cc": "cc kopia kopie dw копия",
    "subject": "subject betreff objet onderwerp emne ämne temat asunto oggetto assunto aihe "
    "předmět тема 件名 主题",
}
_ROLE_OF = {name: role for role, names in _HEADER_ROLES.items() for name in names.split()}
_HEADER = re.compile(
    r"^\s*\*?\s*(" + "|".join(sorted(map(re.escape, _ROLE_OF), key=len, reverse=True)) + r")"
    r"\s*\*?\s*[:\uff1a]",
    re.IGNORECASE,
)
# A rule line: "_____" (Outlook), "-----" (Gmail HTML-to-text), "* * *" (html2text's <hr>, which
# Outlook and Hotmail HTML replies put above the header block).
_RULE = re.compile(r"^\s*(?:[-_=*\u2013\u2014]\s*){3,}$")
# "-----Original Message-----" (Outlook, AOL, Yahoo) and its translations.
_ORIGINAL = re.compile(
    r"^\s*[-_=*]{2,}\s*(?:original message|ursprüngliche nachricht|original nachricht"
    r"|message d'origine|oorspronkelijk bericht|oprindelig meddelelse|opprinnelig melding"
    r"|ursprungligt meddelande|alkuperäinen viesti|mensaje original|messaggio originale"
    r"|mensagem original|wiadomość oryginalna|oryginalna wiadomość|původní zpráva"
    r"|исходное сообщение|原始邮件|元のメッセージ)\b",
    re.IGNORECASE,
)
# Gmail "---------- Forwarded message ---------", Apple Mail "Begin forwarded message:".
_FORWARD = re.compile(
    r"^\s*(?:[-_=*]{2,}\s*(?:forwarded message|weitergeleitete nachricht|message transféré"
    r"|doorgestuurd bericht|videresendt meddelelse|vidarebefordrat meddelande"
    r"|mensaje reenviado|messaggio inoltrato|mensagem encaminhada|przekazana wiadomość"
    r"|пересылаемое сообщение)"
    r"|(?:begin forwarded message|anfang der weitergeleiteten nachricht"
    r"|début du message réexpédié|inicio del mensaje reenviado)\s*:\s*$)",
    re.IGNORECASE,
)


def is_blank_or_rule(line: str) -> bool:
    return not line.strip() or (len(line) <= RULE_LINE_MAX and _RULE.match(line) is not None)


def is_original_divider(line: str) -> bool:
    return len(line) <= RULE_LINE_MAX and _ORIGINAL.match(line) is not None


def is_forward_marker(line: str) -> bool:
    return len(line) <= RULE_LINE_MAX and _FORWARD.match(line) is not None


def header_role(line: str) -> str | None:
    match = _HEADER.match(line) if len(line) <= RULE_LINE_MAX else None
    return _ROLE_OF[match.group(1).lower()] if match else None


def header_block_at(lines: list[str], i: int) -> bool:
    """A "From:" (or "Date:") line followed by another header of the block before a blank line.

    Continuation lines are allowed: Outlook wraps long "To:" and "From: … [mailto:" values.
    """
    if header_role(lines[i]) not in ("from", "date"):
        return False
    roles: set[str | None] = set()
    for line in lines[i : i + _HEADER_SPAN]:
        if not line.strip():
            break
        roles.add(header_role(line))
    return len(roles - {None}) >= 2
