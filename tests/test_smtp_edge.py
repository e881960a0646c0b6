"""The SMTP edge's limits, for real: our gateway on 127.0.0.1, spoken to with smtplib and,
where smtplib would repair what an attacker sends, with raw sockets.

Every reply code is asserted exactly; waits are bounded by socket timeouts, never timed.
"""

from __future__ import annotations

import random
import smtplib
import ssl
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailtracker import receive
from mailtracker.config import Config, config_from_mapping
from mailtracker.errors import ConfigError
from mailtracker.models import Message
from mailtracker.pipeline import Outcome
from mailtracker.receive import LINE_LENGTH_LIMIT, SMUGGLING_REFUSAL, smuggled_end_of_data
from mailtracker.store import Store
from tests.conftest import MESSAGES, make_config
from tests.harness import (
    RawSMTP,
    make_certificate,
    open_transaction,
    running_gateway,
    send,
    wait_until_admitted,
)

WAIT = 10.0  # seconds any single read may block before the test fails
MAIL = (
    b"From: Alice <alice@example.com>\r\nTo: bugs@example.org\r\nSubject: Printer on fire\r\n"
    b"Message-ID: <edge-1@example.com>\r\n\r\nThe printer is on fire."
)
FORGED = (
    b"MAIL FROM:<admin@example.org>\r\nRCPT TO:<bugs@example.org>\r\nDATA\r\n"
    b"From: admin@example.org\r\nTo: bugs@example.org\r\nSubject: forged\r\n"
    b"Message-ID: <forged@example.org>\r\n\r\nclose every issue\r\n"
)


def edge_config(tmp_path: Path, **smtp: Any) -> Config:
    base = make_config(f"sqlite:///{tmp_path / 'tracker.db'}", tmp_path)
    return replace(base, smtp=replace(base.smtp, **smtp))


def stored(config: Config) -> list[Message]:
    store = Store.open(config)
    try:
        with store.read() as session:
            return list(session.scalars(select(Message)))
    finally:
        store.close()


def deliver_then_quit(port: int, body: bytes) -> bytes:
    """Send ``body`` and the end of data, then QUIT: every byte the server said after DATA."""
    raw = open_transaction(port)
    try:
        raw.sock.sendall(body + b"\r\n.\r\nQUIT\r\n")
        return raw.rest()
    finally:
        raw.close()


# --- SMTP smuggling ---------------------------------------------------------------------


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r.\r\n"])
def test_smuggled_end_of_data_refuses_the_whole_mail(tmp_path: Path, fake_end: bytes) -> None:
    config = edge_config(tmp_path)
    with running_gateway(config) as gateway:
        said = deliver_then_quit(gateway.port, MAIL + fake_end + FORGED)
    # One reply to the one DATA, then QUIT's: the injected MAIL, RCPT, DATA were never run.
    assert said == SMUGGLING_REFUSAL.encode() + b"\r\n221 Bye\r\n"
    assert stored(config) == []


@pytest.mark.parametrize("fake_end", [b"\r\n.\n", b"\r\n.\r"])
def test_fake_end_after_crlf_stays_inside_one_message(tmp_path: Path, fake_end: bytes) -> None:
    # aiosmtpd reads DATA by CRLF lines: ".\nMAIL FROM..." is one line, dot-unstuffed.
    config = edge_config(tmp_path)
    with running_gateway(config) as gateway:
        said = deliver_then_quit(gateway.port, MAIL + fake_end + FORGED)
    assert said == b"250 2.0.0 Ok: stored as bugs/1\r\n221 Bye\r\n"
    [message] = stored(config)
    assert message.message_id == "edge-1@example.com"
    assert b"MAIL FROM:<admin@example.org>\r\n" in message.raw
    assert b"Subject: forged" in message.raw


def test_honest_dot_lines_are_not_smuggling() -> None:
    assert not smuggled_end_of_data(b"a\r\n.\r\nb\r\n")  # a "." line the client dot-stuffed
    assert not smuggled_end_of_data(b".\r\nfirst line was a dot\r\n")
    assert not smuggled_end_of_data(b"bare\n..\nLF mail, dot-stuffed by smtplib\r\n")
    assert not smuggled_end_of_data(b"ends.\r\n.5 percent\n")
    assert smuggled_end_of_data(b"a\r\n.\r\nb\n.\nc\r\n")  # found after an honest one too


def test_the_quick_test_agrees_with_the_pattern_alone() -> None:
    """The substring pre-check only skips mails the pattern would not flag: random mails
    of line ends, dots and letters get the same verdict as from the pattern alone."""
    rng = random.Random(5)
    for _ in range(20_000):
        data = bytes(rng.choice(b"\r\n.a") for _ in range(rng.randint(0, 12)))
        alone = any(
            m.group(1) not in (b"\r\n", b"") or m.group(2) != b"\r\n"
            for m in receive._DOT_LINE.finditer(data)
        )
        assert smuggled_end_of_data(data) == alone, data


# --- replies that echo the client's bytes -----------------------------------------------


def test_a_reply_echoing_bytes_that_are_not_utf8_is_sent_with_them_escaped(
    tmp_path: Path,
) -> None:
    """aiosmtpd decodes arguments with surrogateescape; echoed in a reply, those bytes made
    encoding the reply fail as a bug: 451 and a traceback, and the client retried."""
    with running_gateway(edge_config(tmp_path)) as gateway:
        raw = connect(gateway.port)
        try:
            assert raw.command(b"EHLO client.example.com").startswith(b"250-")
            vrfy = raw.command(b"VRFY caf\xe9\xff@")
            assert vrfy == b"502 Could not VRFY caf\\xe9\\xff@\r\n"
            assert raw.command(b"MAIL FROM:<alice@example.com>") == b"250 OK\r\n"
            assert raw.command(b"RCPT TO:<bugs\xff@example.org>") == (
                b"550 5.1.1 <bugs\\xff@example.org>: no such tracker address here\r\n"
            )
            assert raw.command(b"RCPT TO:<bugs@example.org>") == b"250 2.1.5 Ok\r\n"
        finally:
            raw.close()


def test_sendable_keeps_utf8_and_escapes_the_rest() -> None:
    assert receive.sendable("250 OK", True) == "250 OK"
    assert receive.sendable("550 <jörg@x> \udcff", True) == "550 <jörg@x> \\xff"
    assert receive.sendable("550 <jörg@x>", False) == "550 <j\\xc3\\xb6rg@x>"


def test_mixed_line_ends_without_a_fake_end_are_stored(tmp_path: Path) -> None:
    config = edge_config(tmp_path)
    with running_gateway(config) as gateway:
        said = deliver_then_quit(gateway.port, MAIL + b"\nsecond line\rthird line")
    assert said == b"250 2.0.0 Ok: stored as bugs/1\r\n221 Bye\r\n"


# --- line length ------------------------------------------------------------------------


def test_overlong_command_line_gets_500_and_the_session_goes_on(tmp_path: Path) -> None:
    with running_gateway(edge_config(tmp_path)) as gateway:
        raw = RawSMTP(gateway.port)
        try:
            assert raw.reply().startswith(b"220 ")
            huge = b"EHLO " + b"x" * (LINE_LENGTH_LIMIT * 2)
            assert raw.command(huge) == b"500 Command line too long\r\n"
            assert raw.command(b"NOOP") == b"250 OK\r\n"
        finally:
            raw.close()


def test_overlong_data_line_gets_500_and_nothing_is_stored(tmp_path: Path) -> None:
    config = edge_config(tmp_path)
    with running_gateway(config) as gateway:
        raw = open_transaction(gateway.port)
        try:
            raw.sock.sendall(MAIL + b"\r\n" + b"y" * (LINE_LENGTH_LIMIT + 10) + b"\r\n.\r\n")
            assert raw.reply() == b"500 Line too long (see RFC5321 4.5.3.1.6)\r\n"
            assert raw.command(b"MAIL FROM:<alice@example.com>") == b"250 OK\r\n"
        finally:
            raw.close()
    assert stored(config) == []


def test_lines_longer_than_rfc_5321_but_within_the_limit_are_kept(tmp_path: Path) -> None:
    config = edge_config(tmp_path)
    long_line = b"z" * 5000  # RFC 5321 4.5.3.1.6 says 1000; real mail is longer
    with running_gateway(config) as gateway:
        assert deliver_then_quit(gateway.port, MAIL + b"\r\n" + long_line).startswith(b"250 ")
    assert long_line + b"\r\n" in stored(config)[0].raw


# --- recipients -------------------------------------------------------------------------


def test_the_101st_recipient_gets_452(tmp_path: Path) -> None:
    with (
        running_gateway(edge_config(tmp_path)) as gateway,
        smtplib.SMTP("127.0.0.1", gateway.port, timeout=WAIT) as client,
    ):
        client.ehlo("client.example.com")
        client.mail("alice@example.com")
        for _ in range(receive.MAX_RECIPIENTS):
            assert client.rcpt("bugs@example.org") == (250, b"2.1.5 Ok")
        code, text = client.rcpt("bugs@example.org")
        assert (code, text) == (452, b"4.5.3 Too many recipients (at most 100 per mail)")


# --- connections ------------------------------------------------------------------------


def connect(port: int, source: str = "127.0.0.1") -> RawSMTP:
    raw = RawSMTP(port, source, WAIT)
    assert raw.reply() == b"220 tracker.example.org mailtracker\r\n"
    return raw


def refused(port: int, source: str = "127.0.0.1") -> bytes:
    raw = RawSMTP(port, source, WAIT)
    try:
        return raw.rest()
    finally:
        raw.close()


def test_connections_from_one_address_are_capped(tmp_path: Path) -> None:
    with running_gateway(edge_config(tmp_path, max_connections_per_ip=2)) as gateway:
        held = [connect(gateway.port) for _ in range(2)]
        assert refused(gateway.port) == b"421 4.7.0 Too many connections from your address\r\n"
        try:
            other = connect(gateway.port, source="127.0.0.2")  # another client: admitted
        except OSError:
            pass  # no 127.0.0.2 on this system's loopback
        else:
            other.close()
        assert held[0].command(b"QUIT") == b"221 Bye\r\n" and held[0].rest() == b""
        held[0].close()
        wait_until_admitted(gateway.port)  # the closed connection's slot is free again
        held[1].close()


def test_connections_in_total_are_capped(tmp_path: Path) -> None:
    config = edge_config(tmp_path, max_connections=2, max_connections_per_ip=5)
    with running_gateway(config) as gateway:
        held = [connect(gateway.port) for _ in range(2)]
        assert refused(gateway.port) == b"421 4.3.2 Too many connections; try again later\r\n"
        for raw in held:
            raw.close()


# --- timeouts ---------------------------------------------------------------------------


def test_idle_client_hears_421_and_is_disconnected(tmp_path: Path) -> None:
    with running_gateway(edge_config(tmp_path, command_timeout=1)) as gateway:
        raw = connect(gateway.port)
        try:
            assert raw.rest() == b"421 4.4.2 tracker.example.org Error: timeout exceeded\r\n"
        finally:
            raw.close()


def test_slow_processing_answers_451_before_the_connection_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow_process(*args: Any) -> Outcome:
        time.sleep(2.5)  # longer than the 2 s command timeout
        return Outcome("250 2.0.0 Ok: too late to matter", 0)

    monkeypatch.setattr(receive, "process", slow_process)
    assert receive.process_timeout(300) == 240
    with running_gateway(edge_config(tmp_path, command_timeout=2)) as gateway:
        raw = open_transaction(gateway.port)
        try:
            raw.sock.sendall(MAIL + b"\r\n.\r\n")
            assert raw.reply() == b"451 4.3.0 The tracker is too busy; try again later\r\n"
        finally:
            raw.close()


# --- STARTTLS ---------------------------------------------------------------------------


def tls_config(tmp_path: Path, **smtp: Any) -> tuple[Config, ssl.SSLContext]:
    """The gateway's config with TLS, and a client context that trusts its certificate."""
    cert, key = make_certificate(tmp_path / "tls")
    config = edge_config(tmp_path, tls_cert=str(cert), tls_key=str(key), **smtp)
    return config, ssl.create_default_context(cafile=str(cert))


def test_starttls_then_mail_is_stored_and_plain_mail_still_works(tmp_path: Path) -> None:
    config, client_tls = tls_config(tmp_path)
    with running_gateway(config) as gateway:
        with smtplib.SMTP("127.0.0.1", gateway.port, timeout=WAIT) as client:
            client.ehlo("client.example.com")
            assert client.has_extn("starttls")
            assert client.starttls(context=client_tls) == (220, b"Ready to start TLS")
            assert isinstance(client.sock, ssl.SSLSocket)
            assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
            client.ehlo("client.example.com")
            assert not client.has_extn("starttls")
            assert not client.has_extn("auth")  # we take no logins: nothing to advertise
            client.mail("alice@example.com")
            client.rcpt("bugs@example.org")
            assert client.data(MAIL) == (250, b"2.0.0 Ok: stored as bugs/1")
        raw = (MESSAGES / "new-issue.eml").read_bytes()
        assert send(gateway.port, raw, ["bugs@example.org"]) == (250, b"2.0.0 Ok: stored as bugs/2")


def test_require_tls_refuses_mail_until_starttls(tmp_path: Path) -> None:
    config, client_tls = tls_config(tmp_path, require_tls=True)
    with (
        running_gateway(config) as gateway,
        smtplib.SMTP("127.0.0.1", gateway.port, timeout=WAIT) as client,
    ):
        client.ehlo("client.example.com")
        assert client.mail("alice@example.com") == (
            530,
            b"5.7.0 Must issue a STARTTLS command first",
        )
        client.starttls(context=client_tls)
        client.ehlo("client.example.com")
        assert client.mail("alice@example.com") == (250, b"OK")
        assert client.rcpt("bugs@example.org") == (250, b"2.1.5 Ok")


def test_starttls_connection_is_counted_once(tmp_path: Path) -> None:
    config, client_tls = tls_config(tmp_path, max_connections_per_ip=2)
    with running_gateway(config) as gateway:
        client = smtplib.SMTP("127.0.0.1", gateway.port, timeout=WAIT)
        client.ehlo("client.example.com")
        client.starttls(context=client_tls)
        client.ehlo("client.example.com")
        second = connect(gateway.port)  # STARTTLS did not take a second slot
        assert refused(gateway.port) == b"421 4.7.0 Too many connections from your address\r\n"
        client.quit()
        second.close()
        wait_until_admitted(gateway.port)


def test_failed_tls_handshake_frees_its_slot_once(tmp_path: Path) -> None:
    # After a failed handshake the SSL layer never reports the loss; aiosmtpd calls
    # connection_lost() itself. Kept, the slot would leak; freed twice, another
    # connection's slot would be given away.
    config, _ = tls_config(tmp_path, max_connections_per_ip=2)
    with running_gateway(config) as gateway:
        holder = connect(gateway.port)
        broken = connect(gateway.port)
        assert broken.command(b"STARTTLS") == b"220 Ready to start TLS\r\n"
        broken.sock.sendall(b"this is not a TLS ClientHello\r\n" * 10)
        assert broken.rest() == b""
        broken.close()
        wait_until_admitted(gateway.port)
        third = connect(gateway.port)
        assert refused(gateway.port) == b"421 4.7.0 Too many connections from your address\r\n"
        third.close()
        holder.close()


def test_plain_server_does_not_offer_starttls(tmp_path: Path) -> None:
    with (
        running_gateway(edge_config(tmp_path)) as gateway,
        smtplib.SMTP("127.0.0.1", gateway.port, timeout=WAIT) as client,
    ):
        client.ehlo("client.example.com")
        assert not client.has_extn("starttls")
        assert client.docmd("STARTTLS") == (454, b"TLS not available")


# --- TLS configuration ------------------------------------------------------------------


def test_tls_context_is_a_server_context_of_tls_1_2_or_later(tmp_path: Path) -> None:
    config, _ = tls_config(tmp_path)
    context = receive.tls_context(config.smtp, "mailtracker.toml")
    assert context is not None
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert receive.tls_context(edge_config(tmp_path).smtp, "mailtracker.toml") is None


def broken_tls(tmp_path: Path, case: str) -> tuple[str, str]:
    """Certificate and key paths that are wrong in the way ``case`` names."""
    cert, key = make_certificate(tmp_path / "good")
    _, other_key = make_certificate(tmp_path / "other")
    _, locked_key = make_certificate(tmp_path / "locked", password=b"secret")
    return {
        "missing cert": (str(tmp_path / "nope.pem"), str(key)),
        "missing key": (str(cert), str(tmp_path / "nope.pem")),
        "key as cert": (str(key), str(key)),
        "other key": (str(cert), str(other_key)),
        "encrypted key": (str(cert), str(locked_key)),
    }[case]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing cert", "'smtp.tls_cert' cannot read {cert}: No such file or directory"),
        ("missing key", "'smtp.tls_key' cannot read {key}: No such file or directory"),
        ("key as cert", "'smtp.tls_cert' {cert} holds no PEM certificate"),
        ("other key", "'smtp.tls_key' {key} is not the PEM private key of 'smtp.tls_cert'"),
        ("encrypted key", "'smtp.tls_key' {key} is encrypted"),
    ],
)
def test_unusable_tls_files_stop_the_start(tmp_path: Path, case: str, message: str) -> None:
    cert, key = broken_tls(tmp_path, case)
    config = edge_config(tmp_path, tls_cert=cert, tls_key=key)
    with pytest.raises(ConfigError) as caught, running_gateway(config):
        pass
    assert str(caught.value).startswith("config: " + message.format(cert=cert, key=key))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("smtp", "message"),
    [
        ({"tls_cert": "cert.pem"}, "'smtp.tls_cert' and 'smtp.tls_key' must be set together"),
        ({"tls_key": "key.pem"}, "'smtp.tls_cert' and 'smtp.tls_key' must be set together"),
        ({"require_tls": True}, "'smtp.require_tls' needs 'smtp.tls_cert' and 'smtp.tls_key'"),
        ({"max_connections": 0}, "'smtp.max_connections' must be a positive whole number"),
        ({"command_timeout": "5m"}, "'smtp.command_timeout' must be a positive whole number"),
    ],
)
def test_tls_and_limit_mistakes_name_the_key(
    tmp_path: Path, smtp: dict[str, Any], message: str
) -> None:
    path = tmp_path / "mailtracker.toml"
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"smtp": smtp}, path)
    assert str(caught.value).startswith(f"{path}: {message}")


def test_tls_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    smtp = {"tls_cert": "tls/cert.pem", "tls_key": "/etc/ssl/key.pem", "require_tls": True}
    config = config_from_mapping({"smtp": smtp}, tmp_path / "mailtracker.toml")
    assert config.smtp.tls_cert == str(tmp_path / "tls" / "cert.pem")
    assert config.smtp.tls_key == "/etc/ssl/key.pem"
    assert (config.smtp.max_connections, config.smtp.max_connections_per_ip) == (100, 10)
    assert config.smtp.command_timeout == 300
