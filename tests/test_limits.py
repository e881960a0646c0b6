"""Abuse limits: deferred over the limit, refused at three times it, counted per sender."""

from __future__ import annotations

from dataclasses import replace

from mailtracker.config import Config, LimitsConfig
from mailtracker.pipeline import process
from mailtracker.store import Store
from mailtracker.values import Envelope
from tests.harness import running_gateway, send

SMALL = LimitsConfig(
    new_issues_per_hour=2, messages_per_issue_per_hour=2, automatic_per_issue_per_day=1
)


def mail(n: int, sender: str = "eve@example.com", subject: str = "spam", extra: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: bugs@example.org\r\nSubject: {subject}\r\n{extra}"
        f"Message-ID: <limit-{n}@example.com>\r\n\r\nbody {n}\r\n"
    ).encode()


def test_new_issues_per_hour(store: Store, config: Config) -> None:
    small = replace(config, limits=SMALL)
    with running_gateway(small) as gateway:
        codes = [send(gateway.port, mail(n), ["bugs@example.org"])[0] for n in range(4)]
        assert send(gateway.port, mail(99, "ann@example.com"), ["bugs@example.org"])[0] == 250
    assert codes == [250, 250, 451, 451]  # per sender: Ann is not held back by Eve


def test_messages_per_issue_per_hour(store: Store, config: Config) -> None:
    small = replace(config, limits=SMALL)
    envelope = Envelope("eve@example.com", ("bugs+1@example.org",))
    assert process(
        store, small, mail(0, subject="first"), Envelope("eve@example.com", ("bugs@example.org",))
    ).stored == ("bugs/1",)
    replies = [process(store, small, mail(n), envelope).reply for n in range(1, 4)]
    assert [r[:3] for r in replies] == ["250", "451", "451"]
    assert replies[1] == (
        "451 4.3.0 too many messages from eve@example.com to one issue in "
        "an hour (the limit is 2); try again later"
    )


def test_automatic_mail_per_issue_per_day(store: Store, config: Config) -> None:
    small = replace(config, limits=SMALL)
    process(
        store,
        small,
        mail(0, "ann@example.com", "bug"),
        Envelope("ann@example.com", ("bugs@example.org",)),
    )
    auto = "Auto-Submitted: auto-replied\r\n"
    envelope = Envelope("bot@example.com", ("bugs+1@example.org",))
    first = process(store, small, mail(1, "bot@example.com", "away", auto), envelope)
    second = process(store, small, mail(2, "bot@example.com", "away", auto), envelope)
    assert first.stored == ("bugs/1",)
    assert second.reply == (
        "550 5.6.0 too many automatic mails from bot@example.com to one "
        "issue in a day (the limit is 1); automatic mail is not taken "
        "past it"
    )
