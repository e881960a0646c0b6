"""Following a tracker like a mailing list: real SMTP dialogues for the whole confirm and
unsubscribe round trip, forged and expired tokens, subscribers who are also nosy, digests
over a simulated day (the clock is passed in, never slept)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from mailtracker.cli import main
from mailtracker.config import Config
from mailtracker.digest import run_due
from mailtracker.models import Outbox, Subscription, SubscriptionRequest, utcnow
from mailtracker.serve import Gateway
from mailtracker.store import Store
from tests.conftest import MESSAGES
from tests.harness import running_gateway, send
from tests.inspect_db import outbox, show


def mail(sender: str, subject: str, n: int, body: str = "hello") -> bytes:
    return (
        f"From: {sender}\r\nTo: bugs@example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <sub-{n}@example.com>\r\n\r\n{body}\r\n"
    ).encode()


def parsed(row: Outbox) -> EmailMessage:
    message = message_from_bytes(row.raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def text(row: Outbox) -> str:
    body = parsed(row).get_body(("plain",))
    assert body is not None
    return str(body.get_content()).replace("\r\n", "\n")


def to(store: Store, address: str) -> list[Outbox]:
    return [row for row in outbox(store) if row.recipient == address]


def subscribe(gateway: Gateway, store: Store, address: str, n: int, words: str = "") -> None:
    """The whole double opt-in: ask, get the confirmation request, reply to it."""
    code, reply = send(
        gateway.port, mail(address, f"subscribe {words}", n), ["bugs+subscribe@example.org"]
    )
    assert (code, reply) == (250, f"2.0.0 Ok: confirmation request sent to {address}".encode())
    request = to(store, address)[-1]
    confirm = parsed(request)["Reply-To"].addresses[0].addr_spec
    assert confirm.startswith("bugs+confirm+")
    assert request.envelope_from == ""  # a response: null sender, RFC 3834
    answer = mail(address, f"Re: {parsed(request)['Subject']}", n + 1000, "yes")
    assert send(gateway.port, answer, [confirm])[0] == 250


def test_subscribe_confirm_then_receive_everything(store: Store, config: Config) -> None:
    with running_gateway(config) as gateway:
        send(gateway.port, mail("sam@example.net", "subscribe", 1), ["bugs+subscribe@example.org"])
        with store.read() as session:
            assert session.scalars(select(Subscription)).all() == []  # not before confirming
        assert len(to(store, "sam@example.net")) == 1  # only the confirmation request
        request = to(store, "sam@example.net")[0]
        confirm = parsed(request)["Reply-To"].addresses[0].addr_spec
        assert confirm in text(request)
        assert send(gateway.port, mail("sam@example.net", "Re: confirm", 2), [confirm]) == (
            250,
            b"2.0.0 Ok: sam@example.net: subscribed",
        )
        assert "now receives all activity of Example bugs" in text(to(store, "sam@example.net")[-1])
        send(gateway.port, (MESSAGES / "new-issue.eml").read_bytes(), ["bugs@example.org"])
        send(
            gateway.port,
            (MESSAGES / "reply-by-subaddress.eml").read_bytes(),
            ["bugs+1@example.org"],
        )
    notes = to(store, "sam@example.net")[2:]
    assert len(notes) == 2  # the new issue and the reply
    assert "subscribed to all activity of Example bugs" in text(notes[0])
    head = parsed(notes[0])
    assert head["List-Subscribe"] == "<mailto:bugs+subscribe@example.org>"
    assert head["List-Unsubscribe"].startswith("<mailto:bugs+unsubscribe+")
    assert head["In-Reply-To"] == parsed(notes[1])["In-Reply-To"]  # one thread per issue


def test_forged_and_expired_confirmations_are_refused(store: Store, config: Config) -> None:
    with running_gateway(config) as gateway:
        code, reply = send(
            gateway.port,
            mail("sam@example.net", "x", 1),
            ["bugs+confirm+00112233445566778899aabb@example.org"],
        )
        assert code == 550 and b"not valid or has expired" in reply
        send(gateway.port, mail("sam@example.net", "subscribe", 2), ["bugs+subscribe@example.org"])
        with store.write() as session:
            for request in session.scalars(select(SubscriptionRequest)):
                request.expires_at = utcnow() - timedelta(seconds=1)
        confirm = parsed(to(store, "sam@example.net")[0])["Reply-To"].addresses[0].addr_spec
        code, reply = send(gateway.port, mail("sam@example.net", "Re: x", 3), [confirm])
    assert code == 550 and b"write to bugs+subscribe@example.org to ask again" in reply
    with store.read() as session:
        assert session.scalars(select(Subscription)).all() == []


def test_new_issues_only_and_nobody_twice(store: Store, config: Config) -> None:
    with running_gateway(config) as gateway:
        subscribe(gateway, store, "nina@example.net", 1, "new")
        subscribe(gateway, store, "carol@example.net", 3)  # also Cc'd: nosy on issue 1
        send(gateway.port, (MESSAGES / "new-issue.eml").read_bytes(), ["bugs@example.org"])
        send(
            gateway.port,
            (MESSAGES / "reply-by-subaddress.eml").read_bytes(),
            ["bugs+1@example.org"],
        )
    nina = [r for r in to(store, "nina@example.net") if "[issue1]" in str(parsed(r)["Subject"])]
    assert len(nina) == 1 and "subscribed to the new issues" in text(nina[0])
    carol = [r for r in to(store, "carol@example.net") if "[issue1]" in str(parsed(r)["Subject"])]
    assert len(carol) == 1  # the new issue reached her directly (Cc); the reply once
    assert "you are on the nosy list of issue1" in text(carol[0])


def test_one_click_unsubscribe_by_mail(store: Store, config: Config) -> None:
    with running_gateway(config) as gateway:
        subscribe(gateway, store, "sam@example.net", 1)
        send(gateway.port, (MESSAGES / "new-issue.eml").read_bytes(), ["bugs@example.org"])
        note = to(store, "sam@example.net")[-1]
        leave = parsed(note)["List-Unsubscribe"].strip("<>").removeprefix("mailto:")
        assert send(gateway.port, mail("anyone@example.org", "unsubscribe", 5), [leave]) == (
            250,
            b"2.0.0 Ok: unsubscribed from Example bugs",
        )
        before = len(to(store, "sam@example.net"))
        send(
            gateway.port,
            (MESSAGES / "reply-by-subaddress.eml").read_bytes(),
            ["bugs+1@example.org"],
        )
        assert len(to(store, "sam@example.net")) == before
        carol = [r for r in to(store, "carol@example.net")][-1]
        nosy_leave = parsed(carol)["List-Unsubscribe"].strip("<>").removeprefix("mailto:")
        assert send(gateway.port, mail("carol@example.net", "stop", 6), [nosy_leave])[1] == (
            b"2.0.0 Ok: unsubscribed from issue1"
        )
    assert "carol@example.net" not in show(store)["nosy"]


def test_follow_one_issue_needs_confirmation(store: Store, config: Config) -> None:
    with running_gateway(config) as gateway:
        send(gateway.port, (MESSAGES / "new-issue.eml").read_bytes(), ["bugs@example.org"])
        code, _ = send(
            gateway.port, mail("fay@example.net", "follow", 1), ["bugs+1+subscribe@example.org"]
        )
        assert code == 250 and "fay@example.net" not in show(store)["nosy"]
        confirm = parsed(to(store, "fay@example.net")[0])["Reply-To"].addresses[0].addr_spec
        assert "follow issue issue1 of Example bugs" in text(to(store, "fay@example.net")[0])
        send(gateway.port, mail("fay@example.net", "Re: follow", 2), [confirm])
        assert "fay@example.net" in show(store)["nosy"]
        assert (
            send(gateway.port, mail("fay@example.net", "x", 3), ["bugs+9+subscribe@example.org"])[0]
            == 550
        )


def test_digest_over_a_simulated_day(store: Store, config: Config) -> None:
    with running_gateway(config) as gateway:
        subscribe(gateway, store, "dana@example.net", 1, "digest")
        send(gateway.port, (MESSAGES / "new-issue.eml").read_bytes(), ["bugs@example.org"])
        send(
            gateway.port,
            (MESSAGES / "reply-by-subaddress.eml").read_bytes(),
            ["bugs+1@example.org"],
        )
    assert not [r for r in to(store, "dana@example.net") if "[issue1]" in r.raw.decode()[:2000]]
    # The next 06:01 after the mail: its digest covers the 24 hours before, so the mail is
    # in it whatever the time of day the test runs (tomorrow's would miss a mail sent
    # between midnight and 06:00).
    now = utcnow()
    morning = datetime.combine(now.date(), datetime.min.time()) + timedelta(hours=6, minutes=1)
    if morning <= now:
        morning += timedelta(days=1)
    early = morning - timedelta(hours=1, minutes=1)
    assert run_due(store, config, early) == 0  # before digest_time (06:00): nothing
    assert run_due(store, config, morning) == 1
    assert run_due(store, config, morning + timedelta(hours=1)) == 0  # once a day
    digest = to(store, "dana@example.net")[-1]
    body = text(digest)
    assert str(parsed(digest)["Subject"]).startswith("Example bugs digest, ")
    assert "[issue1] Login page crashes on empty password  (status: new)" in body
    assert "bugs+1@example.org" in body
    quiet_day = morning + timedelta(days=1)
    assert run_due(store, config, quiet_day) == 0  # nothing happened: nothing sent


def test_subscriptions_cli(
    store: Store, config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mailtracker.toml"
    path.write_text(
        f'[database]\nurl = "{config.database.url}"\n[[trackers]]\nname = "bugs"\n'
        'address = "bugs@example.org"\ntitle = "Example bugs"\n'
    )
    c = str(path)
    assert main(["subscriptions", "add", "Ann@Example.net", "--mode", "new", "-c", c]) == 0
    assert main(["subscriptions", "add", "bob@example.net", "-c", c]) == 0
    assert main(["subscriptions", "add", "bob@example.net", "--tracker", "nope", "-c", c]) == 65
    capsys.readouterr()
    assert main(["subscriptions", "list", "--json", "-c", c]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(s["email"], s["mode"]) for s in listed] == [
        ("ann@example.net", "new"),
        ("bob@example.net", "all"),
    ]
    assert main(["subscriptions", "remove", "ann@example.net", "-c", c]) == 0
    capsys.readouterr()
    assert main(["subscriptions", "list", "--json", "-c", c]) == 0
    assert [s["email"] for s in json.loads(capsys.readouterr().out)] == ["bob@example.net"]
