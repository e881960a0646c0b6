"""The newcomer's story, for real: mail in over SMTP, notification out to the Maildir,
a reply to that notification back in over SMTP, landing in the same issue. Then the same
with a smarthost: a real aiosmtpd sink receives the notification."""

from __future__ import annotations

import mailbox
import re
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from mailtracker.config import Config
from mailtracker.store import Store
from mailtracker.views import find_issue, issue_json
from tests.conftest import MESSAGES, make_config
from tests.harness import free_port, running_gateway, send


def wait_for(predicate: Callable[[], bool], seconds: float = 20.0) -> None:
    """Poll until the worker has done its job (bounded; the worker polls every second)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the delivery worker")
        time.sleep(0.05)


def maildir_box(path: Path) -> mailbox.Maildir | None:
    """The outgoing Maildir once the delivery worker has made all of it, else None: it makes
    ``tmp``, ``new`` and ``cur`` in that order, and reading a half-made one fails."""
    return mailbox.Maildir(str(path), create=False) if (path / "cur").is_dir() else None


def maildir_messages(path: Path) -> list[EmailMessage]:
    box = maildir_box(path)
    if box is None:
        return []
    found = [message_from_bytes(box.get_bytes(k), policy=policy.default) for k in box.iterkeys()]
    return [m for m in found if isinstance(m, EmailMessage)]


def issue(config: Config, number: int) -> dict[str, Any]:
    store = Store.open(config)
    try:
        with store.read() as session:
            row = find_issue(session, "bugs", number)
            assert row is not None
            return issue_json(session, row, full=True)
    finally:
        store.close()


def test_reply_from_the_maildir_lands_in_the_same_issue(config: Config) -> None:
    maildir = Path(config.outgoing.maildir)
    with running_gateway(config, deliver=True) as gateway:
        assert (
            send(gateway.port, (MESSAGES / "new-issue.eml").read_bytes(), ["bugs@example.org"])[0]
            == 250
        )
        assert (
            send(
                gateway.port,
                (MESSAGES / "reply-by-subaddress.eml").read_bytes(),
                ["bugs+1@example.org"],
            )[0]
            == 250
        )
        wait_for(lambda: len(maildir_messages(maildir)) == 2)
        note = next(m for m in maildir_messages(maildir) if m["To"] == "alice@example.com")
        reply_to = note["Reply-To"].addresses[0].addr_spec
        assert re.fullmatch(r"bugs\+1\+\d+-[a-z2-7]{16}@example\.org", reply_to)
        reply = (
            f"From: Alice Example <alice@example.com>\r\nTo: {reply_to}\r\n"
            f"Subject: Re: {note['Subject']}\r\nMessage-ID: <alice-2@example.com>\r\n"
            f"In-Reply-To: {note['Message-ID']}\r\nReferences: {note['References']} "
            f"{note['Message-ID']}\r\n\r\nThanks Bob, that helps.\r\n"
        ).encode()
        assert send(gateway.port, reply, [reply_to])[0] == 250
        wait_for(lambda: len(maildir_messages(maildir)) == 4)  # to Bob and Carol
    shown = issue(config, 1)
    assert [m["author"] for m in shown["messages"]] == [
        "alice@example.com",
        "bob@example.com",
        "alice@example.com",
    ]
    assert shown["title"] == "Login page crashes on empty password"
    assert shown["messages"][2]["verified"] is True  # replied through her own token
    assert shown["messages"][2]["evidence"] == "token:bugs/1"
    assert shown["messages"][1]["verified"] is False


class Sink:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(
            (envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        )
        return "250 2.0.0 Ok"


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def test_notifications_reach_a_smarthost(
    db_url: str, tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    handler, port = sink
    config = make_config(db_url, tmp_path, smarthost=f"127.0.0.1:{port}")
    with running_gateway(config, deliver=True) as gateway:
        send(gateway.port, (MESSAGES / "new-issue.eml").read_bytes(), ["bugs@example.org"])
        send(
            gateway.port,
            (MESSAGES / "reply-by-subaddress.eml").read_bytes(),
            ["bugs+1@example.org"],
        )
        wait_for(lambda: len(handler.received) == 2)
    assert sorted(rcpts for _, rcpts, _ in handler.received) == [
        ["alice@example.com"],
        ["carol@example.net"],
    ]
    senders = {frm for frm, _, _ in handler.received}
    assert len(senders) == 2  # one VERP envelope sender per notification
    assert all(re.fullmatch(r"bugs-bounces\+[0-9a-f]{16}@example\.org", s) for s in senders)
    raw = handler.received[0][2]
    assert b"I can reproduce this on Firefox as well." in raw
    assert b"Auto-Submitted: auto-generated" in raw
