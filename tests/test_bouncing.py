"""Bounces of our notifications come back through the real SMTP path: recorded, scored,
never stored as comments, never answered; an address that keeps bouncing is disabled."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mailtracker.cli import main
from mailtracker.config import Config
from mailtracker.models import Bounce, BounceScore, Issue, Message
from mailtracker.store import Store
from tests.conftest import CONFIG_FILE, MESSAGES
from tests.harness import running_gateway, send
from tests.inspect_db import count, outbox

CONFIG = (
    CONFIG_FILE
    + '[[trackers]]\nname = "docs"\naddress = "docs@example.org"\ntitle = "Example docs"\n'
)


def dsn(recipient: str, n: int, status: str = "5.1.1") -> bytes:
    """An RFC 3464 delivery status notification, as Postfix sends one."""
    return (
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        "To: bugs-bounces@example.org\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-{n}@mx.example.net>\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your "
        "message could not be delivered.\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} <{recipient}>: Recipient address rejected\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        "From: bugs@example.org\r\nSubject: [issue1] Login page crashes\r\n\r\n--B--\r\n"
    ).encode()


@pytest.fixture
def config_file(db_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "mailtracker.toml"
    path.write_text(CONFIG.format(url=db_url))
    return path


def verp_of(store: Store, recipient: str) -> str:
    row = next(r for r in reversed(outbox(store)) if r.recipient == recipient)
    assert row.envelope_from == f"bugs-bounces+{row.verp_token}@example.org"
    return row.envelope_from


def test_bounce_to_a_verp_address_is_recorded_and_scored(
    store: Store, config: Config, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_gateway(config) as gateway:
        send(gateway.port, (MESSAGES / "new-issue.eml").read_bytes(), ["bugs@example.org"])
        send(
            gateway.port,
            (MESSAGES / "reply-by-subaddress.eml").read_bytes(),
            ["bugs+1@example.org"],
        )
        messages = count(store, Message)
        for day in range(3):
            verp = verp_of(store, "carol@example.net")
            code, text = send(gateway.port, dsn("carol@example.net", day), [verp], sender="")
            assert (code, text) == (250, b"2.0.0 Ok: delivery report recorded (1 recipients)")
            assert send(gateway.port, dsn("carol@example.net", day), [verp], sender="")[0] == 250
            with store.write() as session:  # a day passes
                for score in session.scalars(select(BounceScore)):
                    score.last_bounce_at -= timedelta(days=1)
            raw = (MESSAGES / "reply-by-references-only.eml").read_bytes()
            raw = raw.replace(b"dave-1@", f"dave-{day}@".encode())
            send(gateway.port, raw, ["bugs@example.org"])
    assert count(store, Message) == messages + 3  # Dave's replies; no bounce became a comment
    with store.read() as session:
        bounces = list(session.scalars(select(Bounce)))
        assert [(b.address, b.status, b.permanent) for b in bounces] == [
            ("carol@example.net", "5.1.1", True)
        ] * 3
        assert session.scalar(select(Issue.id).where(Issue.number == 2)) is None
    # After the third bounce Carol is disabled: Dave's last reply was not mailed to her.
    assert [r.recipient for r in outbox(store)[-2:]] == ["alice@example.com", "bob@example.com"]
    assert main(["bounces", "list", "--json", "-c", str(config_file)]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert (entry["address"], entry["score"], entry["disabled"]) == ("carol@example.net", 3, True)
    assert main(["bounces", "reset", "carol@example.net", "-c", str(config_file)]) == 0
    assert main(["bounces", "reset", "carol@example.net", "-c", str(config_file)]) == 65


def test_report_to_the_tracker_address_is_not_an_issue(store: Store, config: Config) -> None:
    with running_gateway(config) as gateway:
        code, text = send(gateway.port, dsn("zoe@example.com", 9), ["bugs@example.org"], sender="")
    assert code == 250 and b"delivery report recorded" in text
    assert count(store, Issue) == 0
    with store.read() as session:
        assert session.scalars(select(Bounce.address)).all() == ["zoe@example.com"]


def test_temporary_failures_are_recorded_but_not_scored(store: Store, config: Config) -> None:
    with running_gateway(config) as gateway:
        send(gateway.port, (MESSAGES / "new-issue.eml").read_bytes(), ["bugs@example.org"])
        send(
            gateway.port,
            (MESSAGES / "reply-by-subaddress.eml").read_bytes(),
            ["bugs+1@example.org"],
        )
        verp = verp_of(store, "alice@example.com")
        report = dsn("alice@example.com", 1, "4.2.2").replace(b"Action: failed", b"Action: delayed")
        assert send(gateway.port, report, [verp], sender="")[0] == 250
    with store.read() as session:
        assert session.scalars(select(Bounce.permanent)).all() == [False]
        assert session.scalars(select(BounceScore)).all() == []
