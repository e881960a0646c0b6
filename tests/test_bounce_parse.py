"""mailtracker.bounces: which mail is a delivery report, and what it says failed.

Small inline reports in the shapes of the common MTAs first, then the oracle tests over the
sisimai corpus (589 real bounces from about 70 MTAs, with sisimai's expected status, reply code
and hard-bounce flag per recipient). The oracle tests score through ``bench/bounce_oracle.py``,
which prints the table quoted in ``docs/bounces.md``; each rate is asserted to be at least what
was measured, rounded down a little, so that a regression fails. They read ``shared/corpus``
and skip when it is absent, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from mailtracker.bounces import (
    MAX_DIAGNOSTIC,
    BounceReport,
    feedback_type,
    is_auto_reply,
    is_bounce,
    parse_bounce,
)
from tests.conftest import CORPUS

OUR_ADDRESS = "bugs-bounces+x1@tracker.example.org"


def mail(headers: str, body: str) -> bytes:
    return (headers.strip() + "\n\n" + body).replace("\n", "\r\n").encode()


RFC3464 = mail(
    """
From: Mail Delivery Subsystem <MAILER-DAEMON@relay.example.net>
To: bugs-bounces+x1@tracker.example.org
Subject: Returned mail: see transcript for details
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b0"
""",
    """--b0
Content-Type: text/plain

The original message was received at Mon, 23 Nov 2026 10:00:00 +0100

   ----- The following addresses had permanent fatal errors -----
<Judy@Example.com>
    (reason: 550 5.7.1 Relaying denied)

--b0
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.net

Original-Recipient: rfc822;Judy@Example.com
Final-Recipient: RFC822; judy.smith@mail.example.com
Action: failed
Status: 5.7.1
Remote-MTA: DNS; mail.example.com
Diagnostic-Code: SMTP; 550 5.7.1 Relaying denied

--b0
Content-Type: message/rfc822

From: Tracker <bugs@tracker.example.org>
To: Judy@Example.com
Subject: [bugs #42] Crash on start

The crash is fixed in 1.2.
--b0--
""",
)

POSTFIX = mail(
    """
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: bugs-bounces+x1@tracker.example.org
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"
""",
    """--b1
Content-Type: text/plain

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<alice@example.com>: host mail.example.com[192.0.2.5] said: 550 5.1.1
    <alice@example.com>: Recipient address rejected: User unknown (in reply to
    RCPT TO command)

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
Arrival-Date: Mon, 23 Nov 2026 10:00:00 +0100

Final-Recipient: rfc822; alice@example.com
Action: failed
Status: 5.1.1
Remote-MTA: dns; mail.example.com
Diagnostic-Code: smtp; 550 5.1.1 <alice@example.com>: Recipient address
    rejected: User unknown (in reply to RCPT TO command)

Final-Recipient: rfc822; bob@example.com
Action: delivered
Status: 2.0.0

--b1
Content-Type: text/rfc822-headers

From: Tracker <bugs@tracker.example.org>
To: alice@example.com, bob@example.com
Subject: [bugs #42] Crash on start
--b1--
""",
)

POSTFIX_DELAY = mail(
    """
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: bugs-bounces+x1@tracker.example.org
Subject: Delayed Mail (still being retried)
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b2"
""",
    """--b2
Content-Type: text/plain

This is the mail system at host mx.example.net.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

<carol@example.org>: connect to mx.example.org[192.0.2.9]:25: Connection timed out

--b2
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: 4ZpQ2x1Hn3z

Final-Recipient: rfc822; carol@example.org
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.example.org[192.0.2.9]:25: Connection
    timed out
Will-Retry-Until: Fri, 27 Nov 2026 10:00:00 +0100

--b2--
""",
)

EXIM = mail(
    """
From: Mail Delivery System <Mailer-Daemon@mail.example.net>
To: bugs-bounces+x1@tracker.example.org
Subject: Mail delivery failed: returning message to sender
Auto-Submitted: auto-replied
X-Failed-Recipients: dave@example.com
""",
    """This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  dave@example.com
    host mx.example.com [192.0.2.7]
    SMTP error from remote mail server after RCPT TO:<dave@example.com>:
    552 5.2.2 Mailbox full

------ This is a copy of the message, including all the headers. ------

Return-path: <bugs-bounces+x1@tracker.example.org>
From: Tracker <bugs@tracker.example.org>
To: dave@example.com
Subject: [bugs #42] Crash on start
""",
)

QMAIL = mail(
    """
From: MAILER-DAEMON@mx.example.net
To: bugs-bounces+x1@tracker.example.org
Subject: failure notice
""",
    """Hi. This is the qmail-send program at mx.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<erin@example.com>:
192.0.2.3 does not like recipient.
Remote host said: 550 sorry, no mailbox here by that name (#5.1.1)
Giving up on 192.0.2.3.

<frank@example.com>:
Sorry, I couldn't find any host named example.com. (#5.1.2)

--- Below this line is a copy of the message.

Return-Path: <bugs-bounces+x1@tracker.example.org>
To: erin@example.com, frank@example.com
""",
)

VACATION = mail(
    """
From: Grace Hopper <grace@example.com>
To: bugs@tracker.example.org
Subject: Out of Office: [bugs #42] Crash on start
Auto-Submitted: auto-replied
""",
    "I am away until 1 December and will not read mail before then. Undeliverable "
    "parcels go to reception.\n",
)

HUMAN = mail(
    """
From: Heidi <heidi@example.com>
To: bugs+42@tracker.example.org
Subject: Re: [bugs #42] Mail delivery failed for the list
In-Reply-To: <n-42-1@tracker.example.org>
""",
    "Still happening: my mail to the list could not be delivered, the server said\n"
    "550 5.1.1 user unknown. Log attached tomorrow.\n",
)

ARF = mail(
    """
From: feedback@isp.example
To: abuse@tracker.example.org
Subject: complaint
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="b3"
""",
    """--b3
Content-Type: text/plain

This is an email abuse report.

--b3
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1

--b3--
""",
)


# --- the verdicts on inline reports -------------------------------------------------------------


def test_rfc3464_report_names_the_address_we_gave_with_the_remote_reply() -> None:
    assert is_bounce(RFC3464, "")
    assert parse_bounce(RFC3464) == [
        BounceReport("judy@example.com", True, "5.7.1", "550 5.7.1 Relaying denied", "550")
    ]
    assert not parse_bounce(RFC3464)[0].hard  # a policy refusal: the address may be fine


def test_postfix_report_names_only_the_failed_recipient() -> None:
    assert is_bounce(POSTFIX, "")
    assert parse_bounce(POSTFIX) == [
        BounceReport(
            "alice@example.com",
            True,
            "5.1.1",
            "550 5.1.1 <alice@example.com>: Recipient address rejected: User unknown (in reply"
            " to RCPT TO command)",
            "550",
        )
    ]
    assert parse_bounce(POSTFIX)[0].hard  # bob@ was delivered


def test_diagnostic_only_in_the_text_part_is_found_there() -> None:
    raw = re.sub(rb"Diagnostic-Code:[^\r]*\r\n    [^\r]*\r\n", b"", POSTFIX)
    [report] = parse_bounce(raw)
    assert report.diagnostic.startswith("550 5.1.1 <alice@example.com>: Recipient address")
    assert (report.status, report.reply_code) == ("5.1.1", "550")


@pytest.mark.parametrize("report", [RFC3464, POSTFIX])
def test_crlf_cr_and_lf_reports_read_alike(report: bytes) -> None:
    lf, cr = report.replace(b"\r\n", b"\n"), report.replace(b"\r\n", b"\r")
    assert parse_bounce(lf) == parse_bounce(cr) == parse_bounce(report)
    assert is_bounce(lf, "") and is_bounce(cr, "")


def test_delay_warning_is_temporary() -> None:
    assert is_bounce(POSTFIX_DELAY, "")
    [report] = parse_bounce(POSTFIX_DELAY)
    assert (report.recipient, report.permanent, report.status) == (
        "carol@example.org",
        False,
        "4.4.1",
    )
    assert report.diagnostic.startswith("connect to mx.example.org[192.0.2.9]:25: Connection")


def test_exim_text_report_with_failed_recipients_header() -> None:
    assert is_bounce(EXIM, "")
    [report] = parse_bounce(EXIM)
    assert report == BounceReport(
        "dave@example.com", True, "5.2.2", "552 5.2.2 Mailbox full", "552"
    )
    assert not report.hard  # a full mailbox is not a dead address


def test_qmail_report_gives_one_record_per_recipient() -> None:
    assert is_bounce(QMAIL, "")
    erin, frank = parse_bounce(QMAIL)
    assert (erin.recipient, erin.reply_code, erin.status) == ("erin@example.com", "550", "5.1.1")
    assert (
        erin.diagnostic
        == "550 sorry, no mailbox here by that name (#5.1.1) Giving up on 192.0.2.3."
    )
    assert (frank.recipient, frank.status, frank.permanent) == ("frank@example.com", "5.1.2", True)
    assert frank.diagnostic.startswith("Sorry, I couldn't find any host named example.com.")


def test_vacation_auto_reply_is_not_a_bounce() -> None:
    assert not is_bounce(VACATION, "")  # null envelope sender, as RFC 3834 §3.3 asks
    assert is_auto_reply(VACATION)
    assert feedback_type(VACATION) is None


def test_human_reply_about_a_delivery_failure_is_not_a_bounce() -> None:
    assert not is_bounce(HUMAN, "heidi@example.com")
    assert not is_auto_reply(HUMAN)
    assert parse_bounce(HUMAN) == []


def test_person_writing_about_bounces_with_a_report_subject_is_not_one() -> None:
    raw = mail(
        "From: Ivan <ivan@example.com>\nTo: bugs@tracker.example.org\n"
        "Subject: Delivery Status Notification (Failure) after upgrade",
        "Every mail I send could not be delivered since 2.3.\n",
    )
    assert not is_bounce(raw, "ivan@example.com")


def test_bounces_and_auto_replies_are_told_apart_although_exim_marks_both() -> None:
    assert not is_auto_reply(EXIM)  # Auto-Submitted: auto-replied on a bounce
    assert is_auto_reply(VACATION)


def test_success_report_is_a_report_but_names_no_failure() -> None:
    raw = POSTFIX.replace(b"Action: failed", b"Action: delivered").replace(
        b"Status: 5.1.1", b"Status: 2.0.0"
    )
    assert is_bounce(raw, "")
    assert parse_bounce(raw) == []


def test_arf_complaint_is_a_feedback_report_not_a_bounce() -> None:
    assert feedback_type(ARF) == "abuse"
    assert not is_bounce(ARF, "")
    assert feedback_type(POSTFIX) is None


def test_diagnostic_is_one_line_of_at_most_500_characters() -> None:
    raw = POSTFIX.replace(b"User unknown (in reply", b"User unknown " + b"x " * 400 + b"(in reply")
    [report] = parse_bounce(raw)
    assert len(report.diagnostic) == MAX_DIAGNOSTIC == 500
    assert "\n" not in report.diagnostic


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage",
        b"Content-Type: multipart/report; report-type=delivery-status\n\nno boundary",
        b"Content-Type: multipart/mixed; boundary=a\n\n"
        + b"--a\nContent-Type: multipart/mixed; boundary=a\n\n" * 3000,
        POSTFIX[: len(POSTFIX) // 2],
        POSTFIX.replace(b"Final-Recipient: rfc822; alice@example.com", b"Final-Recipient: ;;;"),
    ],
    ids=["empty", "binary", "no-boundary", "deep-nesting", "truncated", "bad-recipient"],
)
def test_malformed_input_never_raises(raw: bytes) -> None:
    assert isinstance(parse_bounce(raw), list)
    assert isinstance(is_bounce(raw, ""), bool)
    assert isinstance(is_auto_reply(raw), bool)
    assert feedback_type(raw) in (None, "abuse")


def test_huge_lines_take_linear_time() -> None:
    # One 300 KB line each of word characters, dotted words, blanks, "<" in HTML, and many
    # addresses: a search that restarts inside a run would take minutes, not milliseconds.
    lines = [b"x@y.org " * 30_000, b"a" * 300_000, b"a." * 150_000, b" " * 300_000 + b"x"]
    body = b"\r\n".join(lines) + b"\r\n"
    html = b"<p>" + b"<" * 300_000 + b"</p>"
    raw = (
        b"From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail\r\n"
        b'Content-Type: multipart/mixed; boundary="z"\r\n\r\n--z\r\n\r\n'
        + body
        + b"--z\r\nContent-Type: text/html\r\n\r\n"
        + html
        + b"\r\n--z--\r\n"
    )
    assert is_bounce(raw, "")
    assert [r.recipient for r in parse_bounce(raw)] == ["x@y.org"]


# --- the sisimai oracle --------------------------------------------------------------------------

# Measured with bench/bounce_oracle.py (docs/bounces.md), each rounded down a little.
FLOORS = {
    "detected": 99.0,  # 563 / 566
    "detected_content": 99.0,  # 562 / 566
    "recipient": 99.0,  # 588 / 592
    "count": 97.5,  # 554 / 566
    "status": 96.5,  # 436 / 449
    "permanent": 97.0,  # 576 / 592
    "hard": 85.5,  # 509 / 592
    "reply_code": 92.5,  # 401 / 432
    "feedback": 100.0,  # 18 / 18
    "auto_reply": 100.0,  # 5 / 5
    "not_bounce": 100.0,  # 23 / 23
    "ordinary": 100.0,  # 2 / 2
    "line_endings": 100.0,  # 128 / 128
}


def _corpus() -> Path:
    if not (CORPUS / "sisimai" / "expected.json").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"the shared corpus is not at {CORPUS} (CI must run the oracle tests)")
        pytest.skip(f"the shared corpus is not at {CORPUS}")
    return CORPUS


def _oracle() -> ModuleType:
    """bench/bounce_oracle.py, which scores the same way as the docs."""
    path = Path(__file__).resolve().parents[1] / "bench" / "bounce_oracle.py"
    spec = importlib.util.spec_from_file_location("bounce_oracle", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bounce_oracle"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@functools.cache
def _measures(corpus: Path) -> dict[str, Any]:
    oracle = _oracle()
    measures: dict[str, Any] = oracle.measure(oracle.load_cases(corpus), corpus)
    return measures


@pytest.mark.parametrize("key", sorted(FLOORS))
def test_sisimai_rate_does_not_regress(key: str) -> None:
    found = _measures(_corpus())[key]
    assert found.percent >= FLOORS[key], f"{found.name}: {found.failures[:5]}"


def test_sisimai_non_bounces_are_not_detected() -> None:
    folder = _corpus() / "sisimai" / "maildir" / "not"
    names = sorted(path.name for path in folder.glob("*.eml"))
    assert names == ["is-not-bounce-01.eml", "is-not-bounce-02.eml"]
    for name in names:
        raw = (folder / name).read_bytes()
        assert not is_bounce(raw, ""), name  # even with a null envelope sender
        assert parse_bounce(raw) == [], name


@pytest.mark.parametrize(
    ("name", "status", "words"),
    [
        ("office365.eml", "5.1.10", "RESOLVER.ADR.RecipientNotFound; Recipient noname@example.com"),
        ("zed.eml", "5.1.1", "The email account that you tried to reach does"),
    ],
)
def test_flanker_bounce_verdicts(name: str, status: str, words: str) -> None:
    raw = (_corpus() / "flanker" / "messages" / "bounce" / name).read_bytes()
    assert is_bounce(raw, "")
    [report] = parse_bounce(raw)
    assert (report.status, report.permanent) == (status, True)
    assert words in report.diagnostic


def test_flanker_read_receipt_and_complaints_are_not_bounces() -> None:
    messages = _corpus() / "flanker" / "messages"
    assert not is_bounce((messages / "disposition-notification.eml").read_bytes(), "")
    for name in ("aol.eml", "yahoo.eml"):
        raw = (messages / "complaints" / name).read_bytes()
        assert not is_bounce(raw, ""), name
        assert feedback_type(raw) is not None, name


def test_mailing_list_posts_are_neither_bounces_nor_auto_replies() -> None:
    # 292 real posts of a month of fedora-devel, judged as if each had a null sender.
    mbox = (_corpus() / "threads-fedora-devel-2010-01" / "2010-January.mbox").read_bytes()
    posts = re.split(rb"(?m)^From [^\r\n]*\r?\n", mbox)[1:]
    assert len(posts) == 292
    assert [i for i, raw in enumerate(posts) if is_bounce(raw, "")] == []
    assert [i for i, raw in enumerate(posts) if is_auto_reply(raw)] == []


def test_only_flankers_bounces_are_bounces() -> None:
    messages = _corpus() / "flanker" / "messages"
    found = {p.relative_to(messages).as_posix() for p in messages.rglob("*.eml")}
    bounces = {name for name in found if is_bounce((messages / name).read_bytes(), "")}
    assert bounces == {name for name in found if name.startswith("bounce/")}
    assert len(bounces) == 9
