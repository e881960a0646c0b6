"""Delivery reports (bounces): tell them from other mail and read which recipients failed.

A bounce must never become a comment nor be answered (RFC 3464 §1, RFC 5321 §4.5.5: a report
on a report makes a loop). Most are RFC 3464 DSNs; the home-grown texts of other MTAs are read
by generic rules (an address, the remote MTA's reply under it), not one parser per MTA. Rates
on the sisimai corpus, and why flufl.bounce is not used: ``docs/bounces.md``. ``compat32``
reads the structure: 3× faster than ``policy.default`` (``is_bounce`` reads every incoming
mail), its header access never raises. Nothing here raises: bad reports give no record.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from typing import TypeVar

from mailtracker import headers as mh

__all__ = ["BounceReport", "feedback_type", "is_auto_reply", "is_bounce", "parse_bounce"]

MAX_DIAGNOSTIC = 500
_MAX_TEXT = 1 << 17  # of one part: a report is short, the original it returns may not be
_T = TypeVar("_T")
_ATOM = r"[\w.!#$%&'*+/=?^`{|}~-]"  # starting only where a run starts keeps the search linear
_ADDRESS = re.compile(rf"(?<!{_ATOM}){_ATOM}+@[\w-]+(?:\.[\w-]+)+", re.ASCII)
# RFC 3463 §2: class.subject.detail, not part of an IP address; 2.x.x is no failure.
_STATUS = re.compile(r"(?<![\d.])([45])\.\d{1,3}\.\d{1,3}(?!\d|\.\d)")
# RFC 5321 §4.2: three digits, then a space or (multi-line reply) a hyphen; Yahoo puts ":".
_REPLY = re.compile(r"(?m)(?<![\w.:/=#-])([45][0-5]\d)(?:[ -]|:\s|$)")
# RFC 2034 §4: the enhanced code right after the reply code is the remote MTA's own verdict.
_REPLY_STATUS = re.compile(r"(?<![\w.:/=#-])[45][0-5]\d(?:[ -]|: )'?([45]\.\d{1,3}\.\d{1,3})")
_CONTINUED_REPLY = re.compile(r"\n[ \t]*[45]\d\d[ -](?:[45]\.\d{1,3}\.\d{1,3}[ \t]+)?")
_FIELD = re.compile(r"([A-Za-z][\w-]*)[ \t]*:[ \t]*(.*)")
_DAEMON = re.compile(
    r"(?i)mailer-daemon|post_?master|mail ?delivery|administrator|no-?reply|\bndr\b"
)
_ANSWER = re.compile(r"(?i)\s*(?:re|aw|fwd?|wg|sv|vs)\s*:")
_SUBJECT = re.compile(
    r"(?i)undeliver|delivery (?:status|failure|failed|notification|problem)|returned mail|delayed"
    r"|failure notice|mail (?:delivery )?fail|could not be delivered|delivery has failed"
    r"|mail system error|non[- ]?remis|unzustellbar|nicht zugestellt|warning: message"
    r"|returning (?:message )?to sender|error sending|メールエラー|エラー通知|配信エラー|不達"
)
# The wording of reports' human-readable parts, named where one MTA owns it.
_BODY = re.compile(
    r"(?i)could ?n[o']t\s+be\s+delivered|wasn't able to deliver"  # qmail
    r"|following address(?:\(es\))?\s+failed|incorrectly constructed"  # Exim
    r"|delivery to the following recipients? (?:failed|has been delayed)"  # Gmail
    r"|did not reach the following recipient"  # Exchange 2003
    r"|(?:permanent|fatal|delivery) (?:fatal )?errors|transcript of session follows"  # Sendmail
    r"|error (?:has )?occurred while|error delivering your mail"  # OpenSMTPD, DragonFly
    r"|failed addresses follow|not be delivered|was not delivered to|undeliverable"
    r"|could not deliver|unable to deliver|delivery (?:has )?failed|rejected by a remote"
    r"|user unknown|unknown user|no such user|invalid user address|mailbox (?:is )?full"
)
# Where text-only reports start the copy of the original (Exim, qmail, Sendmail and Gmail,
# OpenSMTPD, DragonFly, PMDF, 1&1), or else its first header line.
_ORIGINAL = re.compile(
    r"(?im)^[ \t|-]*(?:this is a copy of (?:the|your) message|below this line is a copy"
    r"|(?:original|unsent|returned) message|below is a copy of the original"
    r"|message headers follow|message text follows|the header of the original)"
    r"|^(?:Received|Return-Path|DKIM-Signature|Message-ID|X-Received):[ \t]"
)
_TEMPORARY = re.compile(r"(?i)delay|deferred|will (?:be )?retr|temporar|warning")
_AUTO_SUBJECT = re.compile(
    r"(?i)auto(?:matic)?[ -]?(?:reply|response|antwort)|out of (?:the )?office|abwesenheit"
    r"|r[ée]ponse automatique|absence|vacation"
)
# The address itself is gone, what sisimai calls a hard bounce: RFC 3463 §3.2 x.1.1 bad
# mailbox, x.1.2 bad system, x.1.3 bad syntax, x.1.6 moved, §3.5 x.4.4 unroutable; RFC 7505
# x.1.10 null MX; or the remote MTA's words for those.
_GONE_STATUS = re.compile(r"[45]\.(?:1\.(?:1|2|3|6|10)|4\.4)")
_GONE = re.compile(
    r"(?i)user ?unknown|unknown (?:user|recipient|address|host)|no such (?:user|mailbox|recipient"
    r"|domain)|user not (?:exist|found)|doesn't have an? \S+ account|invalid (?:recipient"
    r"|mailbox|address)|not a registered|dns lookup failure|not accepting network messages"
    r"|does ?n[o']t exist|not listed|unrouteable|could ?n[o']t be found|host (?:not found"
    r"|unknown)|illegal host|domain (?:not found|is not reachable|may not exist)|no mx"
    r"|mail exchanger|no smtp service|does not accept mail|name is not recognized|no mailbox"
    r"|has moved|no longer"
)
_URL = re.compile(r"(?i)\b(?:https?|ftp)://\S+|\bmailto:")
_HEADER_LINE = re.compile(
    r"(?i)\s*(?:from|to|cc|sender|reply-to|return-path|subject|date|sent|message-id|received"
    r"|x-[\w-]+|reporting-mta|remote-mta|received-from-mta)\s*:"
)
# An address of the sender, of a message or of a helpdesk, not a failed recipient (RFC 5321
# MAIL FROM, Exim's "envelope-from", Received's "id <...>", Postfix's "please contact").
_NOT_RECIPIENT = re.compile(r"(?i)(?:from|sender|\bid|send mail to|contact|write to)\W{0,3}$")
_REPORTS = ("message/delivery-status", "message/global-delivery-status")  # RFC 3464, 6533
_ORIGINALS = ("message/rfc822", "message/global", "text/rfc822-headers", "message/rfc822-headers")
_NOT_FAILED = ("delivered", "relayed", "expanded")  # RFC 3464 §2.3.3 actions
# Amazon SES notifications by SNS mail are JSON (SES's own bounces are RFC 3464 DSNs): never
# taken for a person's mail, but their recipients are not read.
_SES = re.compile(r'\\?"notificationType\\?"\s*:\s*\\?"(Bounce|Delivery|Complaint)')


@dataclass(frozen=True)
class BounceReport:
    """One failed recipient of a delivery report."""

    recipient: str  # lower-cased address; "" when none can be found
    permanent: bool  # RFC 3463 class 5, else a 5xx reply; False for 4.x.x (delays)
    status: str  # RFC 3463 status as "5.1.1"; "" if the report gives none
    diagnostic: str  # the remote MTA's text, one line, at most MAX_DIAGNOSTIC characters
    reply_code: str  # RFC 5321 reply code as "550"; "" if the report gives none

    @property
    def hard(self) -> bool:
        """The address is gone (not a full mailbox, a filter): stop mailing it."""
        return bool(_GONE_STATUS.fullmatch(self.status) or _GONE.search(self.diagnostic))


@dataclass(frozen=True)
class _Mail:
    msg: Message
    heads: mh.Headers
    subject: str
    leaves: list[Message]  # the report's own parts, not the returned original's
    text: str  # their text, each cut where a copy of the original begins
    human: str  # the same without the delivery-status fields


def _safely(raw: bytes, judge: Callable[[_Mail], _T], default: _T) -> _T:
    """``judge`` on the report with LF line ends (DragonFly sends CR CR LF), else ``default``."""
    try:
        data = re.sub(rb"\r(?!\n)", b"\n", re.sub(rb"\r+\n", b"\n", raw))
        return judge(_mail(BytesParser(policy=policy.compat32).parsebytes(data)))
    except Exception:  # RecursionError on absurd nesting; any rule's unforeseen input
        return default


def _mail(msg: Message) -> _Mail:
    heads = mh.Headers(msg)
    try:
        subject = str(make_header(decode_header(heads.first_raw("subject"))))
    except Exception:  # bad base64, unknown charset: the RFC 2047 words as sent
        subject = heads.first_raw("subject")
    leaves = _leaves(msg, 0)
    return _Mail(msg, heads, subject, leaves, *_report_text(leaves))


def _leaves(msg: Message, depth: int) -> list[Message]:
    payload = msg.get_payload()
    if msg.get_content_type() in _ORIGINALS or depth > 10:
        return []
    if msg.get_content_maintype() != "multipart" or not isinstance(payload, list):
        return [msg]
    parts = (part for part in payload if isinstance(part, Message))
    return [leaf for part in parts for leaf in _leaves(part, depth + 1)]


def _report_text(leaves: list[Message]) -> tuple[str, str]:
    """A multipart whose boundary never comes (PMDF) is read as text."""
    texts, human = [], []
    for part in leaves:
        kind = part.get_content_type()
        if kind in _REPORTS or kind == "message/feedback-report":
            texts.append(_text(part))
        elif part.get_content_maintype() in ("text", "multipart"):
            text = _text(part)
            human.append(text[: cut.start()] if (cut := _ORIGINAL.search(text)) else text)
            texts.append(human[-1])
    return "\n\n".join(texts), "\n\n".join(human)


def _text(part: Message) -> str:
    """A part's decoded text; delivery-status (split into blocks by the parser) as fields."""
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = (block.raw_items() for block in payload if isinstance(block, Message))
        return "\n\n".join("\n".join(f"{k}: {mh.clean(str(v))}" for k, v in b) for b in blocks)
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    text = mh.decode_bytes(data[:_MAX_TEXT], part.get_content_charset())
    if part.get_content_subtype() == "html":
        text = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</tr>", "\n", text)
        text = html.unescape(re.sub(r"<[^<>]*>", " ", text))
    return re.sub(r"\r\n?", "\n", text)


def _blocks(text: str) -> list[dict[str, str]]:
    """Recipients' groups of ``Name: value`` fields: in the delivery-status part, or pasted
    into the text by MTAs that send no MIME report (Amazon WorkMail, old Sendmail). A repeated
    field or a second recipient starts a group too: some MTAs leave out the blank lines."""
    blocks: list[dict[str, str]] = [{}]
    name = ""
    for line in text.split("\n"):
        if line[:1] in (" ", "\t") and name in blocks[-1]:  # RFC 5322 §2.2.3 folding
            blocks[-1][name] += " " + line.strip()
            continue
        match = _FIELD.fullmatch(line.strip())
        name = match[1].lower() if match else ""
        # RFC 3464 §2.3: Original-Recipient comes first in a recipient's group
        seen = {"original-recipient", "final-recipient"} if name == "original-recipient" else {name}
        if not match or seen & blocks[-1].keys():
            blocks.append({})
        if match:
            blocks[-1][name] = match[2].strip()
    named = ("final-recipient", "original-recipient")
    return [b for b in blocks if any(n in b for n in named) and ("status" in b or "action" in b)]


def _from_fields(block: dict[str, str], mail: _Mail) -> BounceReport | None:
    """One report from a recipient's group, None if it did not fail; the Original-Recipient
    (RFC 3464 §2.3.1: the address we gave) if it is an address, else the Final-Recipient."""
    action = mh.first_token(block.get("action", ""))
    if action in _NOT_FAILED or block.get("status", "").strip().startswith("2"):
        return None
    address = _address(block.get("original-recipient", "") + " " + block.get("final-recipient", ""))
    diagnostic = block.get("diagnostic-code", "")
    if not diagnostic and address and address in mail.human.lower():  # only in the text
        lines = mail.human.split("\n")
        segment = "\n".join(lines[_first_line(lines, address) :][:40])
        diagnostic = _from_segment(address, segment, False).diagnostic
    return _from_values(address, block.get("status", ""), diagnostic, action == "delayed")


def _from_values(address: str, status: str, diagnostic: str, temporary: bool) -> BounceReport:
    """Permanent by status class (RFC 3463 §3.1), else reply's (RFC 5321 §4.2.1), else words."""
    diagnostic = " ".join(mh.clean(diagnostic).split())
    diagnostic = re.sub(r"(?i)^(?:smtp|x-[\w-]+|x400|unix)\s*;\s*", "", diagnostic)  # RFC 3464
    status, reply = _best_status(status, diagnostic), _REPLY.search(diagnostic)
    code = reply[1] if reply else ""
    permanent = (status or code or ("4" if temporary else "5"))[0] == "5"
    return BounceReport(_address(address), permanent, status, diagnostic[:MAX_DIAGNOSTIC], code)


def _address(value: str) -> str:
    match = _ADDRESS.search(value)
    return match[0].lower().strip(".") if match else ""


def _best_status(field: str, diagnostic: str) -> str:
    """The remote MTA's status if of the field's class (Sendmail says 4.4.7, PMDF 5.0.0)."""
    stated, found = _STATUS.search(field), _status_in(diagnostic)
    if found and (not stated or found[0] == stated[1]):
        return found
    return stated[0] if stated else ""


def _status_in(text: str) -> str:
    after_reply = _REPLY_STATUS.search(text)
    match = _STATUS.search(after_reply[1] if after_reply else text)
    return match[0] if match else ""


def _from_text(mail: _Mail, temporary: bool) -> list[BounceReport]:
    """One report per address, the lines up to the next as its diagnostic (Exim, qmail,
    Sendmail, Gmail, Domino ...); Exim's and Google's ``X-Failed-Recipients`` if there."""
    lines = mail.text.split("\n")
    failed = [a.lower() for _, a in mail.heads.addresses("x-failed-recipients") if "@" in a]
    starts = sorted((_first_line(lines, a), a) for a in dict.fromkeys(failed))
    starts = starts or _recipient_lines(lines, mail)
    reports = []
    for n, (i, address) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(lines)
        segment = "\n".join(lines[i : max(i + 1, min(end, i + 40))])
        reports.append(_from_segment(address, segment, temporary))
    return reports


def _recipient_lines(lines: list[str], mail: _Mail) -> list[tuple[int, str]]:
    """Each address the text names (not the report's author), with its first line."""
    found: dict[str, int] = {}
    own = {address.lower() for _, address in mail.heads.addresses("from")}
    for i, line in enumerate(lines):
        line = "" if _HEADER_LINE.match(line) else _URL.sub(" ", line)
        for match in _ADDRESS.finditer(line):
            address = match[0].lower().strip(".")
            sender = _NOT_RECIPIENT.search(line, max(0, match.start() - 20), match.start())
            if address not in own and not sender and "mailer-daemon" not in address:
                found.setdefault(address, i)
    return sorted((i, address) for address, i in found.items())


def _first_line(lines: list[str], address: str) -> int:
    return next((i for i, line in enumerate(lines) if address in line.lower()), 0)


def _from_segment(address: str, segment: str, temporary: bool) -> BounceReport:
    """The first SMTP reply under the address, else the text after it (``because:`` skipped)."""
    reply = _REPLY.search(segment)
    if reply:
        diagnostic = _CONTINUED_REPLY.sub(" ", segment[reply.start() :].split("\n\n", 1)[0])
    else:
        after = segment[segment.lower().find(address) + len(address) :] if address else segment
        lines = [line.strip() for line in after.split("\n")]
        diagnostic = " ".join([line for line in lines if line and line[-1] != ":"][:3])
    return _from_values(address, _status_in(segment), diagnostic.lstrip(">:.,; "), temporary)


def _unnamed(mail: _Mail, temporary: bool) -> list[BounceReport]:
    """A report wrapped in another (Trend Micro), or one about the original's only recipient."""
    returned = (p.get_payload() for p in mail.msg.walk() if p.get_content_type() in _ORIGINALS)
    inner = next((p[0] for p in returned if isinstance(p, list) and p), None)
    if isinstance(inner, Message) and any(p.get_content_type() in _REPORTS for p in inner.walk()):
        return _parse(_mail(inner))
    author = _DAEMON.search(" ".join(mail.heads.raw("from")))  # not a person's mail either
    if not (author or inner) or not (_REPLY.search(mail.text) or _BODY.search(mail.text)):
        return []
    to = mh.Headers(inner).addresses("to") if isinstance(inner, Message) else []
    address = to[0][1] if len(to) == 1 else ""
    return [replace(_from_segment("", mail.text, temporary), recipient=_address(address))]


def parse_bounce(raw: bytes) -> list[BounceReport]:
    """Every failed or delayed recipient, once; [] if none can be read or all got it."""
    return _safely(raw, lambda mail: [] if _SES.search(mail.text) else _dedupe(_parse(mail)), [])


def _parse(mail: _Mail) -> list[BounceReport]:
    temporary = bool(_TEMPORARY.search(mail.subject))
    blocks = _blocks(mail.text)
    if not blocks:
        return _from_text(mail, temporary) or _unnamed(mail, temporary)
    reports = [r for r in (_from_fields(block, mail) for block in blocks) if r is not None]
    if len(reports) == 1 and not reports[0].recipient:  # Final-Recipient: a file (Exim)
        named = _from_text(mail, temporary)
        return [replace(reports[0], recipient=named[0].recipient)] if len(named) == 1 else reports
    return reports


def _dedupe(reports: list[BounceReport]) -> list[BounceReport]:
    """MTAs repeat themselves (Mail.ru in two languages): the first with a diagnostic wins."""
    seen: dict[str, BounceReport] = {}
    for r in reports:
        if r.recipient not in seen or not seen[r.recipient].diagnostic:
            seen[r.recipient] = r
    return list(seen.values())


def is_bounce(raw: bytes, mail_from: str) -> bool:
    """Whether ``raw`` is a delivery report. The null envelope sender ``mail_from`` of reports
    (RFC 5321 §4.5.5) is also that of auto-replies (RFC 3834 §3.3; see ``is_auto_reply``) and
    read receipts (RFC 8098 §2.1). Complaints (``feedback_type``) are not bounces."""
    return _safely(raw, lambda mail: _is_bounce(mail, mail_from), False)


def _is_bounce(mail: _Mail, mail_from: str) -> bool:
    if _feedback(mail) is not None:
        return False
    kind = str(mail.msg.get_param("report-type", "")).lower()  # RFC 6522 §3
    parts = any(p.get_content_type() in _REPORTS for p in mail.leaves)  # RFC 3464
    if kind == "delivery-status" or parts or mail.heads.first_raw("x-failed-recipients"):  # Exim
        return True
    return bool(_SES.search(mail.text)) or _by_wording(mail, mail_from)


def _by_wording(mail: _Mail, mail_from: str) -> bool:
    """A null or daemon sender with a report's subject (not ``Re:``) or wording: a person
    who writes about a delivery problem is neither. Auto-replies have a null sender too."""
    author = " ".join(mail.heads.raw("from"))
    null = not mail_from.strip("<> ") and not _auto_marked(mail)
    daemon = null or _DAEMON.search(author) or not _ADDRESS.search(author)  # "<>": m-FILTER
    subject = not _ANSWER.match(mail.subject) and _SUBJECT.search(mail.subject)
    return bool(daemon and (subject or _BODY.search(mail.text[:20000])))


def is_auto_reply(raw: bytes) -> bool:
    """An RFC 3834 automatic response (vacation) that is no delivery report (Exim puts
    ``Auto-Submitted: auto-replied``, RFC 3834 §5, on its bounces too)."""
    return _safely(raw, _is_auto_reply, False)


def _is_auto_reply(mail: _Mail) -> bool:
    return _auto_marked(mail) and not _is_bounce(mail, "") and _feedback(mail) is None


def _auto_marked(mail: _Mail) -> bool:
    first = mail.heads.first_raw
    submitted = mh.first_token(first("auto-submitted")) == "auto-replied"
    marked = first("x-autoreply") or first("x-autorespond") or _AUTO_SUBJECT.search(mail.subject)
    return submitted or mh.first_token(first("precedence")) == "auto_reply" or bool(marked)


def feedback_type(raw: bytes) -> str | None:
    """The Feedback-Type of an ARF report (RFC 5965 §3.1: abuse, fraud, opt-out ...), a
    complaint about mail we sent and not a delivery failure; None for any other mail."""
    return _safely(raw, _feedback, None)


def _feedback(mail: _Mail) -> str | None:
    """RFC 5965; Microsoft's JMRP, Apple Mail's unsubscribe mail, an SES complaint."""
    for part in mail.leaves:
        if part.get_content_type() == "message/feedback-report":
            found = re.search(r"(?im)^feedback-type:\s*([\w-]+)", _text(part))
            return found[1].lower() if found else "abuse"
    if mail.heads.first_raw("x-apple-unsubscribe").lower() == "true":
        return "opt-out"
    jmrp = mail.subject.lower().startswith("complaint about message from")
    ses = _SES.search(mail.text)
    return "abuse" if jmrp or (ses and ses[1] == "Complaint") else None
