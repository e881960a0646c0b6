"""The LMTP listener for real (RFC 2033), and one mail to several tracker addresses over
SMTP, LMTP and ``ingest``: stored once per tracker, never twice in one.

The dialogues are driven by hand (``RawLMTP``): smtplib's LMTP client reads one reply after
DATA where RFC 2033 4.2 owes one per accepted recipient, which is the very point tested.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from mailtracker import store as store_module
from mailtracker.config import Config, LmtpConfig, config_from_mapping
from mailtracker.errors import ConfigError
from mailtracker.lmtp import per_recipient, processing_order
from mailtracker.models import Issue, Message
from mailtracker.serve import Gateway
from mailtracker.store import Store
from tests.conftest import MESSAGES, make_config
from tests.harness import RawLMTP, dot_stuffed, lmtp_send, running_gateway, send
from tests.inspect_db import count, show

NEW = (MESSAGES / "new-issue.eml").read_bytes()
REPLY = (MESSAGES / "reply-by-subaddress.eml").read_bytes()  # no threading headers
MISSING_999 = (
    b"550 5.6.0 the address bugs+999@example.org names issue 999, but Example bugs has no"
    b" issue 999; write to bugs@example.org to open a new issue\r\n"
)


def with_lmtp(config: Config, listen: str = "127.0.0.1:0") -> Config:
    return replace(config, lmtp=LmtpConfig(listen=listen))


def lmtp_port(gateway: Gateway) -> int:
    assert gateway.lmtp is not None
    return gateway.lmtp.port


def stored(config: Config) -> tuple[int, int]:
    """(issues, messages) in the database."""
    store = Store.open(config)
    try:
        return count(store, Issue), count(store, Message)
    finally:
        store.close()


def messages_on(config: Config, tracker: str, number: int) -> int:
    store = Store.open(config)
    try:
        return len(show(store, number, tracker)["messages"])
    finally:
        store.close()


def test_lhlo_offers_what_rfc_2033_requires(config: Config) -> None:
    with running_gateway(with_lmtp(config)) as gateway:
        client = RawLMTP(lmtp_port(gateway))
        try:
            assert client.greeting.startswith(b"220 tracker.example.org")
            assert client.command(b"EHLO client.example.com").startswith(b"500 5.5.2 ")
            assert client.command(b"HELO client.example.com").startswith(b"500 5.5.2 ")
            lines = client.command(b"LHLO client.example.com").split(b"\r\n")
            assert b"250-PIPELINING" in lines and b"250-ENHANCEDSTATUSCODES" in lines
            assert not [line for line in lines if b"AUTH" in line]
            assert client.command(b"NOOP") == b"250 2.0.0 OK\r\n"
        finally:
            client.close()


def test_a_refused_address_that_is_not_utf8_is_echoed_escaped(config: Config) -> None:
    """The same reply encoding as SMTP's (``receive.sendable``): 550, not a 451 for a bug."""
    with running_gateway(with_lmtp(config)) as gateway:
        client = RawLMTP(lmtp_port(gateway))
        try:
            client.command(b"LHLO client.example.com")
            assert client.command(b"MAIL FROM:<alice@example.com>").startswith(b"250 ")
            assert client.command(b"RCPT TO:<bugs\xff@example.org>") == (
                b"550 5.1.1 <bugs\\xff@example.org>: no such tracker address here\r\n"
            )
        finally:
            client.close()


def test_one_reply_per_recipient_in_rcpt_order(config: Config) -> None:
    with running_gateway(with_lmtp(config)) as gateway:
        port = lmtp_port(gateway)
        assert lmtp_send(port, NEW, ["bugs@example.org"]) == [b"250 2.0.0 Ok: stored as bugs/1\r\n"]
        client = RawLMTP(port)
        try:
            replies = client.transaction(
                REPLY, ["bugs+1@example.org", "nobody@example.org", "bugs+999@example.org"]
            )
            assert replies[3].startswith(b"550 5.1.1 <nobody@example.org>")  # at RCPT
            assert replies[-2:] == [b"250 2.0.0 Ok: stored as bugs/1\r\n", MISSING_999]
            assert client.command(b"NOOP") == b"250 2.0.0 OK\r\n"  # nothing left on the wire
        finally:
            client.close()
    assert stored(config) == (1, 2)


def test_pipelined_transaction_gets_every_reply(config: Config) -> None:
    """RFC 2920 as Postfix's LMTP client uses it: MAIL, the RCPTs and DATA in one write."""
    with running_gateway(with_lmtp(config)) as gateway:
        client = RawLMTP(lmtp_port(gateway))
        try:
            client.command(b"LHLO client.example.com")
            client.sock.sendall(
                b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<bugs@example.org>\r\n"
                b"RCPT TO:<docs@example.org>\r\nDATA\r\n"
            )
            assert [client.reply()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
            client.sock.sendall(dot_stuffed(NEW) + b".\r\n")
            assert [client.reply() for _ in range(2)] == [
                b"250 2.0.0 Ok: stored as bugs/1\r\n",
                b"250 2.0.0 Ok: stored as docs/1\r\n",
            ]
        finally:
            client.close()


def test_reply_all_to_issue_and_tracker_is_stored_once_on_the_issue(config: Config) -> None:
    """The main address comes first in RCPT order, yet the sub-address decides (as over
    SMTP): the mail has no threading headers, so ``bugs@`` alone would open a new issue."""
    with running_gateway(with_lmtp(config)) as gateway:
        port = lmtp_port(gateway)
        lmtp_send(port, NEW, ["bugs@example.org"])
        replies = lmtp_send(port, REPLY, ["bugs@example.org", "bugs+1@example.org"])
        assert replies[0] == b"250 2.0.0 Ok: message <bob-1@example.com> is already stored\r\n"
        assert replies[1] == b"250 2.0.0 Ok: stored as bugs/1\r\n"
        assert lmtp_send(port, REPLY, ["bugs+1@example.org"])[0].startswith(b"250 2.0.0 Ok: mes")
    assert stored(config) == (1, 2)
    assert messages_on(config, "bugs", 1) == 2


def test_two_trackers_store_once_each(config: Config) -> None:
    rcpts = ["bugs@example.org", "docs@example.org", "BUGS@example.org"]
    with running_gateway(with_lmtp(config)) as gateway:
        replies = lmtp_send(lmtp_port(gateway), NEW, rcpts)
    assert replies == [
        b"250 2.0.0 Ok: stored as bugs/1\r\n",
        b"250 2.0.0 Ok: stored as docs/1\r\n",
        b"250 2.0.0 Ok: message <new-1@example.com> is already stored\r\n",
    ]
    assert stored(config) == (2, 2)


def test_unix_socket_replaces_a_stale_one_and_is_removed(sqlite_url: str, tmp_path: Path) -> None:
    path = tmp_path / "lmtp.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # what a killed ``serve`` leaves behind
    stale.close()
    config = with_lmtp(make_config(sqlite_url, tmp_path), str(path))
    with running_gateway(config):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        lmtp_send(str(path), NEW, ["bugs@example.org"])
        replies = lmtp_send(str(path), REPLY, ["bugs+999@example.org", "bugs+1@example.org"])
        assert replies == [MISSING_999, b"250 2.0.0 Ok: stored as bugs/1\r\n"]
    assert not path.exists()
    assert stored(config) == (1, 2)


def test_a_live_socket_is_never_taken_over(sqlite_url: str, tmp_path: Path) -> None:
    config = with_lmtp(make_config(sqlite_url, tmp_path), str(tmp_path / "lmtp.sock"))
    refused = pytest.raises(ConfigError, match="another process is listening there")
    with running_gateway(config), refused, running_gateway(config):
        pass


def test_whole_mail_refusals_are_repeated_for_each_recipient(config: Config) -> None:
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 1100
    smuggled = NEW + b"\n.\r\nMAIL FROM:<eve@example.com>\r\n"
    with running_gateway(with_lmtp(config)) as gateway:
        client = RawLMTP(lmtp_port(gateway))
        try:
            too_big = client.transaction(big, ["bugs@example.org", "docs@example.org"])[-2:]
            assert [r[:10] for r in too_big] == [b"552 5.3.4 "] * 2
            assert client.command(b"NOOP") == b"250 2.0.0 OK\r\n"
            client.sock.sendall(
                b"MAIL FROM:<eve@example.com>\r\nRCPT TO:<bugs@example.org>\r\n"
                b"RCPT TO:<docs@example.org>\r\nDATA\r\n" + smuggled + b".\r\n"
            )
            sneaky = [client.reply() for _ in range(6)][-2:]  # not normalised: the bare LF stays
            assert [r[:10] for r in sneaky] == [b"554 5.5.2 "] * 2
        finally:
            client.close()
    assert stored(config) == (0, 0)


def test_locked_database_tempfails_every_recipient(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    config = with_lmtp(make_config(sqlite_url, tmp_path))
    rcpts = ["bugs@example.org", "docs@example.org"]
    with running_gateway(config) as gateway:
        port = lmtp_port(gateway)
        locker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            replies = lmtp_send(port, NEW, rcpts)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert [r[:10] for r in replies] == [b"451 4.3.0 "] * 2
        assert [r[:3] for r in lmtp_send(port, NEW, rcpts)] == [b"250"] * 2
    assert stored(config) == (2, 2)


def test_smtp_reply_all_is_one_reply_and_stored_once(config: Config) -> None:
    with running_gateway(config) as gateway:
        send(gateway.port, NEW, ["bugs@example.org"])
        code, text = send(gateway.port, REPLY, ["bugs@example.org", "bugs+1@example.org"])
        assert (code, text) == (250, b"2.0.0 Ok: stored as bugs/1")
        code, text = send(gateway.port, NEW, ["docs@example.org", "bugs+1@example.org"])
        assert (code, text) == (250, b"2.0.0 Ok: stored as docs/1")
    assert stored(config) == (2, 3)


INGEST_TOML = """\
[database]
url = "{url}"
[outgoing]
maildir = "out"
[[trackers]]
name = "bugs"
address = "bugs@example.org"
title = "Example bugs"
[[trackers]]
name = "docs"
address = "docs@example.org"
title = "Example docs"
"""


def ingest(path: Path, rcpts: list[str], raw: bytes) -> subprocess.CompletedProcess[bytes]:
    """``mailtracker ingest`` as an MTA's pipe runs it: one process, one verdict."""
    argv = [sys.executable, "-m", "mailtracker", "ingest", "-c", str(path)]
    argv += [f"--recipient={rcpt}" for rcpt in rcpts]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(argv, input=raw, capture_output=True, env=env, timeout=120, check=False)


def test_ingest_with_several_recipients_stores_once_per_tracker(
    db_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "mailtracker.toml"
    path.write_text(INGEST_TOML.format(url=db_url))
    rcpts = ["bugs@example.org", "docs@example.org"]
    assert ingest(path, rcpts, NEW).returncode == 0
    result = ingest(path, [*rcpts, "bugs+1@example.org"], REPLY)
    assert result.returncode == 0, result.stderr
    config = make_config(db_url, tmp_path)
    assert stored(config) == (3, 4)
    assert messages_on(config, "bugs", 1) == 2
    assert messages_on(config, "docs", 1) == 1
    assert messages_on(config, "docs", 2) == 1  # docs@ alone: a new issue there


def test_processing_order_puts_the_main_address_last(config: Config) -> None:
    rcpts = ["bugs@example.org", "docs+3@example.org", "bugs-bounces@example.org", "x@y"]
    assert processing_order(rcpts, config) == [2, 1, 0, 3]


def test_per_recipient_replies() -> None:
    assert per_recipient("250 a\r\n550 b", 2) == ["250 a", "550 b"]
    assert per_recipient(b"451 4.3.0 down", 3) == ["451 4.3.0 down"] * 3
    assert per_recipient("250 a\r\n250 b", 3) == ["451 4.3.0 Local error in processing"] * 3


def test_lmtp_listen_is_checked_and_a_relative_socket_is_resolved(tmp_path: Path) -> None:
    def listen(value: str) -> str:
        return config_from_mapping({"lmtp": {"listen": value}}, tmp_path / "m.toml").lmtp.listen

    assert listen("lmtp.sock") == str(tmp_path / "lmtp.sock")
    assert listen("/run/mailtracker/lmtp.sock") == "/run/mailtracker/lmtp.sock"
    assert listen("[::1]:8024") == "[::1]:8024"
    with pytest.raises(ConfigError, match=r"'lmtp\.listen' must be HOST:PORT"):
        listen("localhost:lmtp")
    with pytest.raises(ConfigError, match="socket path is over 107 bytes"):
        listen("/run/" + "x" * 120)
