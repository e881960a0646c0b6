"""Running an issue from a mail client: every rule through the real SMTP path."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailtracker import store as queries
from mailtracker.config import Config
from mailtracker.models import HeldMail, Message
from mailtracker.serve import Gateway
from mailtracker.store import Store
from tests.conftest import MESSAGES, make_config
from tests.harness import running_gateway, send
from tests.inspect_db import outbox, show


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Config:
    """These tests are about the grammar and the permissions, so From is trusted here
    (``verify_senders = "off"``); what verification adds is tested in test_trust.py."""
    base = make_config(db_url, tmp_path)
    return replace(base, trackers=tuple(replace(t, verify_senders="off") for t in base.trackers))


@pytest.fixture
def gateway(store: Store, config: Config) -> Iterator[Gateway]:
    """A running gateway with a developer, an admin and issue 1 (by Alice, Cc Carol)."""
    with store.write() as session:
        queries.create_user(session, "dev@example.com", "Dev Eloper", "developer")
        queries.create_user(session, "admin@example.com", "Ad Min", "admin")
    with running_gateway(config) as running:
        assert mail(running, "new-issue.eml")[0] == 250
        assert mail(running, "reply-by-subaddress.eml", "bugs+1@example.org")[0] == 250
        yield running


def mail(gateway: Gateway, name: str, rcpt: str = "bugs@example.org") -> tuple[int, str]:
    code, text = send(gateway.port, (MESSAGES / name).read_bytes(), [rcpt])
    return code, text.decode()


def test_developer_opens_an_issue_with_properties(gateway: Gateway, store: Store) -> None:
    assert mail(gateway, "cmd-new-issue-with-suffix.eml") == (250, "2.0.0 Ok: stored as bugs/2")
    issue = show(store, 2)
    assert (issue["title"], issue["priority"]) == ("Slow search", "high")
    assert issue["labels"] == ["performance", "search"]
    assert issue["history"][0]["changes"] == [
        {"property": "title", "old": None, "new": "Slow search"},
        {"property": "status", "old": None, "new": "new"},
        {"property": "priority", "old": None, "new": "high"},
        {"property": "labels", "old": None, "new": "performance, search"},
    ]


def test_reporter_resolves_by_body_lines(gateway: Gateway, store: Store) -> None:
    before = len(outbox(store))
    assert mail(gateway, "cmd-reporter-resolves-in-body.eml", "bugs+1@example.org")[0] == 250
    issue = show(store)
    assert issue["status"] == "resolved"
    assert issue["messages"][-1]["body"] == "Fixed by the last release, thanks."
    assert issue["history"][-1]["actor"] == "alice@example.com"
    assert issue["history"][-1]["changes"] == [
        {"property": "status", "old": "new", "new": "resolved"}
    ]
    notes = outbox(store)[before:]
    assert sorted(n.recipient for n in notes) == ["bob@example.com", "carol@example.net"]
    body = message_from_bytes(notes[0].raw, policy=policy.default).get_body(("plain",))
    assert body is not None
    assert "status: new → resolved" in body.get_content()


def test_commands_with_empty_body_add_no_message(gateway: Gateway, store: Store) -> None:
    assert mail(gateway, "cmd-only-no-body.eml")[0] == 250
    issue = show(store)
    assert (issue["status"], issue["assignee"]) == ("closed", "dev@example.com")
    assert len(issue["messages"]) == 2  # the command mail is kept, but is no comment
    with store.read() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 3
    text = message_from_bytes(outbox(store)[-1].raw, policy=policy.default).get_body(("plain",))
    assert text is not None
    content = text.get_content()
    assert "status: new → closed" in content and "(no text)" not in content


def test_every_bad_item_is_named_and_nothing_changes(gateway: Gateway, store: Store) -> None:
    code, text = mail(gateway, "cmd-bad-values.eml", "bugs+1@example.org")
    assert code == 550
    assert text.startswith("5.6.0 nothing was changed: 'colour' is not a property")
    assert "status 'bogus' is not one of: new, open, pending, resolved, closed" in text
    assert "assignee 'ghost@example.com' is not a user of Example bugs" in text
    assert "priority 'sky-high' is not one of: low, normal, high, urgent" in text
    assert show(store)["status"] == "new" and len(show(store)["messages"]) == 2


def test_plain_user_may_not_change_priority(gateway: Gateway, store: Store) -> None:
    code, text = mail(gateway, "cmd-user-changes-priority.eml", "bugs+1@example.org")
    assert code == 550
    assert text.startswith("5.7.1 you may not change priority: only developers change")
    assert show(store)["priority"] is None


def test_anyone_may_leave_the_nosy_list(gateway: Gateway, store: Store) -> None:
    assert "carol@example.net" in show(store)["nosy"]
    assert mail(gateway, "cmd-user-leaves-nosy.eml", "bugs+1@example.org")[0] == 250
    assert "carol@example.net" not in show(store)["nosy"]  # and not put back as author


def test_unknown_body_keys_stay_in_the_comment(gateway: Gateway, store: Store) -> None:
    assert mail(gateway, "cmd-note-stays-text.eml", "bugs+1@example.org")[0] == 250
    assert show(store)["messages"][-1]["body"].startswith("Note: this only happens on Tuesdays.")


@pytest.mark.parametrize(
    ("name", "rcpt"),
    [("help-by-address.eml", "bugs+help@example.org"), ("help-by-subject.eml", "bugs@example.org")],
)
def test_help_by_mail(gateway: Gateway, store: Store, name: str, rcpt: str) -> None:
    before = len(outbox(store))
    assert mail(gateway, name, rcpt) == (250, "2.0.0 Ok: help is on its way")
    assert mail(gateway, name, rcpt)[0] == 250  # redelivered: answered once
    rows = outbox(store)[before:]
    assert [r.recipient for r in rows] == ["new@example.com"]
    assert rows[0].envelope_from == ""  # RFC 3834: responses go out with a null sender
    reply = message_from_bytes(rows[0].raw, policy=policy.default)
    assert reply["Auto-Submitted"] == "auto-replied"
    body = reply.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "status    one of: new, open, pending, resolved, closed" in text
    assert "bugs+42@example.org" in text and "[issue42]" in text
    with store.read() as session:
        assert queries.issue_by_number(session, 1, 2) is None  # no issue was created


def test_unknown_sender_refused_by_policy(store: Store, config: Config) -> None:
    strict = replace(
        config, trackers=(replace(config.trackers[0], unknown_senders="reject"), config.trackers[1])
    )
    with running_gateway(strict) as running:
        code, text = mail(running, "new-issue.eml")
    assert code == 550
    assert text == (
        "5.7.1 Example bugs takes mail only from registered users, and "
        "alice@example.com is not one; ask the tracker's administrators for an "
        "account"
    )


def test_moderation_holds_until_an_admin_approves_by_mail(store: Store, config: Config) -> None:
    moderated = replace(
        config,
        trackers=(replace(config.trackers[0], unknown_senders="moderate"), config.trackers[1]),
    )
    with store.write() as session:
        queries.create_user(session, "admin@example.com", "Ad Min", "admin")
    with running_gateway(moderated) as running:
        assert mail(running, "new-issue.eml") == (250, "2.0.0 Ok: held for a moderator")
        with store.read() as session:
            held = session.scalars(select(HeldMail)).one()
            assert queries.issue_by_number(session, held.tracker_id, 1) is None
        request = outbox(store)[-1]
        assert request.recipient == "admin@example.com"
        approve = f"bugs+approve+{held.token}@example.org"
        assert approve.encode() in request.raw
        raw = (
            f"From: admin@example.com\r\nTo: {approve}\r\nSubject: ok\r\n"
            f"Message-ID: <approve-1@example.com>\r\n\r\nyes\r\n"
        ).encode()
        code, text = send(running.port, raw, [approve])
        assert code == 250 and "stored as bugs/1" in text.decode()
        assert send(running.port, raw, [approve])[0] == 250  # redelivery: nothing more
    assert show(store)["messages"][0]["author"] == "alice@example.com"
    with store.read() as session:
        assert session.scalars(select(HeldMail)).all() == []


def test_moderation_refuses_non_admins(store: Store, config: Config) -> None:
    moderated = replace(
        config,
        trackers=(replace(config.trackers[0], unknown_senders="moderate"), config.trackers[1]),
    )
    with running_gateway(moderated) as running:
        mail(running, "new-issue.eml")
        with store.read() as session:
            token = session.scalars(select(HeldMail.token)).one()
        rcpt = f"bugs+approve+{token}@example.org"
        raw = (
            f"From: mallory@example.com\r\nTo: {rcpt}\r\nSubject: ok\r\n"
            f"Message-ID: <approve-2@example.com>\r\n\r\nyes\r\n"
        ).encode()
        code, text = send(running.port, raw, [rcpt])
    assert code == 550 and b"only admins of Example bugs may moderate" in text
