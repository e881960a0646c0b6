"""Notifications rendered from the real templates: headers, threading, encodings."""

from __future__ import annotations

import hashlib
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

from mailtracker.config import TrackerConfig
from mailtracker.notify import ATTACH_LIMIT, Addressee, Notice, render
from mailtracker.outheaders import threading_headers
from mailtracker.replies import _reply_message
from mailtracker.values import AttachmentData

TRACKER = TrackerConfig(name="bugs", address="bugs@example.org", title="Example bugs")


def notice(**overrides: object) -> Notice:
    data = b"Hallo Welt\n"
    values: dict[str, object] = {
        "tracker": TRACKER,
        "hostname": "tracker.example.org",
        "number": 42,
        "title": "Login page crashes on empty password",
        "status": "new",
        "thread_root": "issue42.bugs@tracker.example.org",
        "author_name": "Jörg Müller",
        "author_email": "joerg@example.de",
        "cause_id": "joerg-1@example.de",
        "comment": "Der Export schlägt fehl.",
        "created": False,
        "changes": (),
        "attachments": (
            AttachmentData("übersicht €.txt", "text/plain", data, hashlib.sha256(data).hexdigest()),
        ),
        "when": datetime(2026, 11, 24, 8, 0, 0),
    }
    values.update(overrides)
    return Notice(**values)  # type: ignore[arg-type]


def parsed(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_headers_follow_the_interface() -> None:
    mails = render(
        notice(), (Addressee("alice@example.com", "7-abc"), Addressee("bob@example.com"))
    )
    assert [m.recipient for m in mails] == ["alice@example.com", "bob@example.com"]
    first = parsed(mails[0].raw)
    assert first["To"] == "alice@example.com"
    assert str(first["From"]) == "Jörg Müller via Example bugs <bugs@example.org>"
    assert first["Reply-To"] == "bugs+42+7-abc@example.org"  # the recipient's own token
    assert parsed(mails[1].raw)["Reply-To"] == "bugs+42@example.org"
    assert first["Subject"] == "[issue42] Login page crashes on empty password"
    assert first["In-Reply-To"] == "<issue42.bugs@tracker.example.org>"
    assert first["References"] == ("<issue42.bugs@tracker.example.org> <joerg-1@example.de>")
    assert first["List-Id"] == "Example bugs <bugs.example.org>"
    assert first["Auto-Submitted"] == "auto-generated"
    assert first["X-Mailtracker-Loop"] == "bugs@example.org"
    assert first["Message-ID"] == f"<{mails[0].message_id}>"
    assert mails[0].message_id.endswith("@tracker.example.org")
    assert mails[0].message_id != mails[1].message_id


def test_non_ascii_is_encoded_on_the_wire() -> None:
    raw = render(notice(), (Addressee("alice@example.com"),))[0].raw
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert b"=?utf-8?" in head  # RFC 2047 for the display name
    assert b"filename*=utf-8''%C3%BCbersicht%20%E2%82%AC.txt" in raw  # RFC 2231
    message = parsed(raw)
    attachments = list(message.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["übersicht €.txt"]
    assert attachments[0].get_content() == "Hallo Welt\n"
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content().replace("\r\n", "\n")
    assert "Jörg Müller <joerg@example.de> added a comment:" in text
    assert "Der Export schlägt fehl." in text
    assert "übersicht €.txt (text/plain, 11 bytes)" in text
    assert "\n-- \n" in text


def test_large_attachments_are_listed_not_sent() -> None:
    big = b"x" * (ATTACH_LIMIT + 1)
    part = AttachmentData(
        "dump.bin", "application/octet-stream", big, hashlib.sha256(big).hexdigest()
    )
    with_web = notice(attachments=(part,), base_url="https://tracker.example.org/")
    message = parsed(render(with_web, (Addressee("a@example.com"),))[0].raw)
    assert list(message.iter_attachments()) == []
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "dump.bin (application/octet-stream, 100.0 KB), not attached" in text
    assert f"https://tracker.example.org/bugs/42/attachments/{part.sha256}" in text


def test_new_issue_and_changes_are_said_above_the_comment() -> None:
    mail = render(
        notice(created=True, changes=(("status", "new", "resolved"),)),
        (Addressee("a@example.com"),),
    )[0]
    body = parsed(mail.raw).get_body(("plain",))
    assert body is not None
    text = body.get_content().replace("\r\n", "\n")
    assert text.index("New issue issue42 from Jörg Müller") < text.index("status: new → resolved")
    assert text.index("status: new → resolved") < text.index("Der Export")


# --- ids and addresses the 7-bit header path could not carry (found by fuzzing) ---------


def test_an_id_holding_encoded_word_syntax_is_kept_verbatim() -> None:
    """RFC 2047 section 5: no encoded words in a msg-id, so ``=?utf-8?q?=FF=FE?=`` there
    is part of the id. Parsed as a header it "decoded" into bytes that are no text, and
    rendering failed: every later comment on that issue went to quarantine."""
    odd = "g=?utf-8?q?=FF=FE?=roups-1@example.org"
    raw = render(notice(cause_id=odd), (Addressee("alice@example.com"),))[0].raw
    references = f"References: <issue42.bugs@tracker.example.org>\r\n <{odd}>\r\n"
    assert references.encode() in raw  # folded between the ids, never inside one
    assert parsed(raw)["In-Reply-To"] == "<issue42.bugs@tracker.example.org>"


def test_ids_that_a_7bit_header_cannot_carry_are_left_out() -> None:
    for cause in ("rö@example.org", "a b@example.org", "x>y@example.org", "z" * 251):
        raw = render(notice(cause_id=cause), (Addressee("alice@example.com"),))[0].raw
        message = parsed(raw)
        assert message["References"] == "<issue42.bugs@tracker.example.org>", cause
    raw = render(notice(thread_root="wurzel-ö@example.org"), (Addressee("a@example.com"),))[0].raw
    message = parsed(raw)
    assert message["In-Reply-To"] is None
    assert message["References"] == "<joerg-1@example.de>"
    both = notice(thread_root="ö@example.org", cause_id="ü@example.org")
    message = parsed(render(both, (Addressee("a@example.com"),))[0].raw)
    assert message["In-Reply-To"] is None and message["References"] is None


def test_long_references_fold_between_ids() -> None:
    root, cause = "r" * 60 + "@example.org", "c" * 60 + "@example.org"
    raw = render(notice(thread_root=root, cause_id=cause), (Addressee("a@example.com"),))[0].raw
    assert f"References: <{root}>\r\n <{cause}>\r\n".encode() in raw
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_a_recipient_whose_address_is_not_ascii_gets_a_utf8_to_header() -> None:
    """RFC 6532: the address goes in as UTF-8 (the transport then asks for SMTPUTF8).
    Before, folding it as 7-bit failed, and a Cc'd ``jörg@bücher.example`` broke every
    later notification of that issue. The others' mail stays 7-bit."""
    mails = render(notice(), (Addressee("jörg@bücher.example"), Addressee("bob@example.com")))
    head = mails[0].raw.split(b"\r\n\r\n", 1)[0]
    assert "To: jörg@bücher.example\r\n".encode() in head
    assert mails[1].raw.split(b"\r\n\r\n", 1)[0].isascii()


def test_a_delivery_status_attachment_goes_as_text() -> None:
    """The stdlib writes message/delivery-status only from parsed field blocks; the bytes
    of a stored attachment made rendering fail (and the issue's later comments with it)."""
    data = b"Reporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; a@b\r\n"
    part = AttachmentData("status", "message/delivery-status", data, "0" * 64)
    message = parsed(render(notice(attachments=(part,)), (Addressee("a@example.com"),))[0].raw)
    (attached,) = message.iter_attachments()
    assert attached.get_content_type() == "text/plain"
    assert attached.get_content().replace("\r\n", "\n") == data.decode().replace("\r\n", "\n")


def test_a_reply_to_a_sender_threads_by_the_id_as_sent_and_writes_utf8_for_eai() -> None:
    when = datetime(2026, 11, 24, 8, 0, 0)
    odd = "g=?utf-8?q?=FF=FE?=x@example.org"
    raw = _reply_message(TRACKER, "a@example.com", "Re: s", "Hello.", "mt.1@h", odd, when)
    assert f"In-Reply-To: <{odd}>\r\nReferences: <{odd}>\r\n".encode() in raw
    raw = _reply_message(TRACKER, "jörg@bücher.example", "Re: s", "Hello.", "mt.2@h", "", when)
    assert "To: jörg@bücher.example\r\n".encode() in raw  # RFC 6532, not encoded words
    assert b"In-Reply-To" not in raw


def test_threading_headers_keep_only_ids_a_7bit_header_carries() -> None:
    assert threading_headers("root@x", "cause@x") == [
        ("In-Reply-To", "<root@x>"),
        ("References", "<root@x> <cause@x>"),
    ]
    assert threading_headers("", "cause@x") == [("References", "<cause@x>")]
    assert threading_headers("röot@x", None) == []
