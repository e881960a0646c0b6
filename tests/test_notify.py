"""Notifications rendered from the real templates: headers, threading, encodings."""

from __future__ import annotations

import hashlib
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

from mailtracker.config import TrackerConfig
from mailtracker.notify import ATTACH_LIMIT, Addressee, Notice, render
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
