"""The SMTP edge for real: our gateway on 127.0.0.1, spoken to with smtplib."""

from __future__ import annotations

import smtplib
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailtracker import store as store_module
from mailtracker.config import Config
from mailtracker.models import Message
from mailtracker.store import Store
from tests.conftest import MESSAGES, make_config
from tests.harness import running_gateway, send


def message_count(config: Config) -> int:
    store = Store.open(config)
    try:
        with store.read() as session:
            return int(session.scalar(select(func.count()).select_from(Message)) or 0)
    finally:
        store.close()


def test_new_issue_and_reply_over_smtp(config: Config) -> None:
    with running_gateway(config) as gateway:
        code, text = send(
            gateway.port, (MESSAGES / "new-issue.eml").read_bytes(), ["bugs@example.org"]
        )
        assert (code, text) == (250, b"2.0.0 Ok: stored as bugs/1")
        code, text = send(
            gateway.port,
            (MESSAGES / "reply-by-subaddress.eml").read_bytes(),
            ["Bugs+1@Example.org"],
        )
        assert (code, text) == (250, b"2.0.0 Ok: stored as bugs/1")
    assert message_count(config) == 2


def test_unknown_recipient_refused_at_rcpt(config: Config) -> None:
    with running_gateway(config) as gateway, smtplib.SMTP("127.0.0.1", gateway.port) as c:
        c.ehlo("client.example.com")
        c.mail("alice@example.com")
        code, text = c.rcpt("nobody@example.org")
        assert code == 550
        assert text.startswith(b"5.1.1 <nobody@example.org>: no such tracker address")
        assert c.rcpt("bugs+help+x+y@example.org")[0] == 550
        assert c.rcpt("bugs+0@example.org")[0] == 550
        assert c.rcpt("bugs+7@example.org")[0] == 250


def test_missing_issue_refused_at_data(config: Config) -> None:
    with running_gateway(config) as gateway:
        code, text = send(
            gateway.port,
            (MESSAGES / "tag-names-missing-issue.eml").read_bytes(),
            ["bugs@example.org"],
        )
    assert code == 550
    assert text.startswith(b"5.6.0 the subject tag [issue99] names issue 99")


def test_size_announced_and_enforced(config: Config) -> None:
    limit = config.smtp.max_message_size
    with running_gateway(config) as gateway, smtplib.SMTP("127.0.0.1", gateway.port) as c:
        c.ehlo("client.example.com")
        assert c.esmtp_features["size"] == str(limit)
        c.mail("alice@example.com")
        c.rcpt("bugs@example.org")
        code, text = c.data(b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * (limit // 900))
        assert code == 552
        assert text.startswith(b"5.3.4 Message too big")
        c.rset()
        code, _ = c.mail("alice@example.com", [f"SIZE={limit + 1}"])
        assert code == 552
    assert message_count(config) == 0


def test_bare_lf_and_8bit_mail_is_accepted(config: Config) -> None:
    raw = (
        "From: Zoë <zoe@example.com>\nTo: bugs@example.org\nSubject: naïve\n"
        "Message-ID: <lf-1@example.com>\n\nbody with bare LF line ends\n"
    ).encode()
    with running_gateway(config) as gateway:
        code, text = send(gateway.port, raw, ["bugs@example.org"])
    assert (code, text) == (250, b"2.0.0 Ok: stored as bugs/1")


def test_duplicate_over_smtp_is_250(config: Config) -> None:
    raw = (MESSAGES / "new-issue.eml").read_bytes()
    with running_gateway(config) as gateway:
        assert send(gateway.port, raw, ["bugs@example.org"])[0] == 250
        code, text = send(gateway.port, raw, ["bugs@example.org"])
    assert code == 250 and b"already stored" in text
    assert message_count(config) == 1


def test_locked_database_answers_451_and_retry_succeeds(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    config = make_config(sqlite_url, tmp_path)
    raw = (MESSAGES / "new-issue.eml").read_bytes()
    with running_gateway(config) as gateway:
        locker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            code, text = send(gateway.port, raw, ["bugs@example.org"])
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert code == 451 and text.startswith(b"4.3.0 ")
        assert send(gateway.port, raw, ["bugs@example.org"]) == (250, b"2.0.0 Ok: stored as bugs/1")
    assert message_count(config) == 1
