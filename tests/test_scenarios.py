"""Scenario mails from ``tests/messages/`` through the real pipeline, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from email import message_from_bytes, policy

from sqlalchemy import select

from mailtracker.config import Config
from mailtracker.models import Attachment, Issue, Message, Outbox
from mailtracker.pipeline import Outcome, process
from mailtracker.store import Store
from mailtracker.values import Envelope
from tests.conftest import MESSAGES
from tests.inspect_db import count, outbox, show


def deliver(
    store: Store,
    config: Config,
    name: str,
    rcpt: str = "bugs@example.org",
    sender: str = "someone@example.com",
) -> Outcome:
    raw = (MESSAGES / name).read_bytes()
    return process(store, config, raw, Envelope(sender, (rcpt,)))


def test_new_issue_takes_author_and_cc_into_nosy(store: Store, config: Config) -> None:
    outcome = deliver(store, config, "new-issue.eml")
    assert outcome.reply == "250 2.0.0 Ok: stored as bugs/1"
    assert outcome.exit_code == 0
    issue = show(store, 1)
    assert issue["title"] == "Login page crashes on empty password"
    assert issue["status"] == "new"
    assert issue["nosy"] == ["alice@example.com", "carol@example.net"]
    assert issue["messages"][0]["author"] == "alice@example.com"
    assert issue["messages"][0]["date"] == "Mon, 23 Nov 2026 10:00:00 +0100"
    assert "traceback instead of an error" in issue["messages"][0]["body"]
    assert issue["history"][0]["changes"][1] == {"property": "status", "old": None, "new": "new"}
    # Carol was Cc'd on the very mail: she has it already, so nobody is notified.
    assert outbox(store) == []


def test_reply_by_subaddress_notifies_nosy_but_author(store: Store, config: Config) -> None:
    deliver(store, config, "new-issue.eml")
    outcome = deliver(store, config, "reply-by-subaddress.eml", rcpt="bugs+1@example.org")
    assert outcome.reply == "250 2.0.0 Ok: stored as bugs/1"
    assert sorted(row.recipient for row in outbox(store)) == [
        "alice@example.com",
        "carol@example.net",
    ]
    issue = show(store, 1)
    assert issue["title"] == "Login page crashes on empty password"  # never renamed
    assert "bob@example.com" in issue["nosy"]


def test_reply_by_references_and_by_subject_tag(store: Store, config: Config) -> None:
    deliver(store, config, "new-issue.eml")
    assert deliver(store, config, "reply-by-references-only.eml").stored == ("bugs/1",)
    assert deliver(store, config, "reply-by-subject-tag.eml").stored == ("bugs/1",)
    assert count(store, Issue) == 1
    assert len(show(store, 1)["messages"]) == 3


def test_tag_naming_a_missing_issue_is_refused(store: Store, config: Config) -> None:
    outcome = deliver(store, config, "tag-names-missing-issue.eml")
    assert outcome.reply.startswith("550 5.6.0 ")
    assert "has no issue 99" in outcome.reply
    assert outcome.exit_code == 65
    assert count(store, Message) == 0


def test_same_message_id_twice_changes_nothing(store: Store, config: Config) -> None:
    deliver(store, config, "new-issue.eml")
    deliver(store, config, "reply-by-subaddress.eml", rcpt="bugs+1@example.org")
    before = (count(store, Message), count(store, Outbox), count(store, Issue))
    again = deliver(store, config, "reply-by-subaddress.eml", rcpt="bugs+1@example.org")
    assert again.reply.startswith("250 2.0.0 Ok: ") and "already stored" in again.reply
    assert (count(store, Message), count(store, Outbox), count(store, Issue)) == before


def test_auto_reply_is_stored_but_mails_nobody(store: Store, config: Config) -> None:
    deliver(store, config, "new-issue.eml")
    outcome = deliver(store, config, "auto-reply.eml", rcpt="bugs+1@example.org")
    assert outcome.stored == ("bugs/1",) and outcome.queued == 0
    assert outbox(store) == []


def test_null_sender_mails_nobody(store: Store, config: Config) -> None:
    deliver(store, config, "new-issue.eml")
    outcome = deliver(
        store, config, "reply-by-subaddress.eml", rcpt="bugs+1@example.org", sender=""
    )
    assert outcome.stored == ("bugs/1",) and outcome.queued == 0


def test_own_loop_is_dropped(store: Store, config: Config) -> None:
    deliver(store, config, "new-issue.eml")
    outcome = deliver(store, config, "own-loop.eml", rcpt="bugs+1@example.org")
    assert outcome.accepted and outcome.stored == ()
    assert count(store, Message) == 1


def test_reply_to_a_notification_threads_by_its_message_id(store: Store, config: Config) -> None:
    deliver(store, config, "new-issue.eml")
    deliver(store, config, "reply-by-subaddress.eml", rcpt="bugs+1@example.org")
    note = message_from_bytes(outbox(store)[0].raw, policy=policy.default)
    reply = (
        f"From: alice@example.com\r\nTo: bugs@example.org\r\n"
        f"Subject: Re: {note['Subject']}\r\nMessage-ID: <alice-2@example.com>\r\n"
        f"In-Reply-To: {note['Message-ID']}\r\n\r\nThanks, Bob.\r\n"
    ).encode()
    outcome = process(store, config, reply, Envelope("alice@example.com", ("bugs@example.org",)))
    assert outcome.stored == ("bugs/1",)


def test_non_ascii_names_and_attachment(store: Store, config: Config) -> None:
    outcome = deliver(store, config, "non-ascii-name-and-filename.eml")
    assert outcome.stored == ("bugs/1",)
    issue = show(store, 1)
    assert issue["title"] == "Umlaute im Dateinamen ärgern den Export"
    message = issue["messages"][0]
    assert message["author"] == "joerg@example.de"
    assert message["body"] == "Der Export schlägt fehl, siehe Anhang."
    assert message["attachments"] == [
        {
            "filename": "übersicht €.txt",
            "content_type": "text/plain",
            "size": 11,
            "sha256": hashlib.sha256(b"Hallo Welt\n").hexdigest(),
        }
    ]
    with store.read() as session:
        assert session.scalar(select(Attachment.size)) == len(b"Hallo Welt\n")


def test_html_only_mail_becomes_readable_text(store: Store, config: Config) -> None:
    deliver(store, config, "html-only.eml")
    body = show(store, 1)["messages"][0]["body"]
    assert "café" in body
    assert "first step" in body and "second step" in body
    assert "https://example.com/search?q=caf%C3%A9" in body
    assert "<p>" not in body


def test_one_mail_to_two_trackers_is_stored_once_in_each(store: Store, config: Config) -> None:
    raw = (MESSAGES / "new-issue.eml").read_bytes()
    rcpts = ("bugs@example.org", "docs@example.org", "bugs@example.org")
    outcome = process(store, config, raw, Envelope("alice@example.com", rcpts))
    assert outcome.stored == ("bugs/1", "docs/1")
    again = process(store, config, raw, Envelope("alice@example.com", rcpts))
    assert again.accepted and count(store, Message) == 2


def test_unknown_recipient_and_too_big(store: Store, config: Config) -> None:
    raw = (MESSAGES / "new-issue.eml").read_bytes()
    nobody = process(store, config, raw, Envelope("a@example.com", ("nobody@example.org",)))
    assert nobody.reply.startswith("550 5.1.1") and nobody.exit_code == 67
    big = raw + b"x" * config.smtp.max_message_size
    too_big = process(store, config, big, Envelope("a@example.com", ("bugs@example.org",)))
    assert too_big.reply.startswith("552 5.3.4") and too_big.exit_code == 65


def test_a_refusal_in_one_tracker_stores_and_sends_nothing(store: Store, config: Config) -> None:
    deliver(store, config, "new-issue.eml")
    deliver(store, config, "reply-by-subaddress.eml", rcpt="bugs+1@example.org")
    before = (count(store, Message), count(store, Outbox))
    raw = (MESSAGES / "reply-by-references-only.eml").read_bytes()
    outcome = process(
        store, config, raw, Envelope("dave@example.com", ("bugs@example.org", "docs+5@example.org"))
    )
    assert outcome.reply.startswith("550 5.6.0 the address docs+5@example.org names issue 5")
    assert (count(store, Message), count(store, Outbox)) == before


def test_notifications_show_the_visible_text_only(store: Store, config: Config) -> None:
    deliver(store, config, "new-issue.eml")
    deliver(store, config, "reply-with-quote-and-signature.eml", rcpt="bugs+1@example.org")
    message = show(store)["messages"][-1]
    assert "> traceback instead of an error message." in message["body"]  # full text kept
    assert message["visible"] == "Confirmed on 2.3.0 as well."
    note = message_from_bytes(outbox(store)[0].raw, policy=policy.default)
    body = note.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "Confirmed on 2.3.0 as well." in text
    assert "traceback instead" not in text and "Bob Builder, QA" not in text
