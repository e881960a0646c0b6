"""A big mail for real: through our gateway on 127.0.0.1 over SMTP and LMTP, into SQLite and
PostgreSQL. Its base64 attachment is large enough to be decoded from the mail's bytes
(``bigparts``) and, on SQLite, written through blob I/O (``blobio``); the mail read from
DATA into one buffer (``dataread``). What is stored must be the mail and the file byte for
byte, and the refusals after DATA must come after the whole DATA was read: data lines that
look like commands are never run as commands.

Waits are bounded by socket timeouts, never timed.
"""

from __future__ import annotations

import base64
import hashlib
import random
import sqlite3
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import select

from mailtracker import pipeline, quarantine
from mailtracker.bigparts import BIG_RUN
from mailtracker.blobio import LARGE
from mailtracker.config import Config, LmtpConfig
from mailtracker.models import Attachment, Blob, HeldMail, Message
from mailtracker.moderation import approve
from mailtracker.pipeline import process
from mailtracker.receive import LINE_LENGTH_LIMIT
from mailtracker.store import Store, ensure_trackers, make_engine, upgrade_schema
from mailtracker.values import Envelope
from tests.conftest import make_config
from tests.harness import RawLMTP, open_transaction, running_gateway, send
from tests.test_quarantine import broken_interpret

WAIT = 30.0
LIMIT = 4_000_000
PAYLOAD = random.Random(7).randbytes(2_000_000)
DOTTED = b".leading dot\r\n..two dots\r\n.\r\nend of the text\r\n"


def big_mail(message_id: str, payload: bytes = PAYLOAD) -> bytes:
    """A new issue with ``payload`` attached in base64, and text lines DATA must dot-stuff."""
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return (
        b"From: Alice <alice@example.com>\r\nTo: bugs@example.org\r\nSubject: core dump\r\n"
        b"Message-ID: <" + message_id.encode() + b">\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="cut"\r\n\r\n'
        b"--cut\r\nContent-Type: text/plain\r\n\r\n" + DOTTED + b"--cut\r\n"
        b'Content-Type: application/octet-stream; name="core.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--cut--\r\n"
    )


def big_config(config: Config) -> Config:
    return replace(config, smtp=replace(config.smtp, max_message_size=LIMIT))


def stored(config: Config) -> tuple[list[tuple[bytes, str]], list[Attachment], list[bytes]]:
    """(raw bytes and body of every message, attachment rows, blob contents)."""
    store = Store.open(config)
    try:
        with store.read() as session:
            messages = [(m.raw, m.body) for m in session.scalars(select(Message))]
            attachments = list(session.scalars(select(Attachment)))
            blobs = list(session.scalars(select(Blob.data)))
            return messages, attachments, blobs
    finally:
        store.close()


def test_the_mail_is_big_enough_to_take_the_big_paths() -> None:
    mail = big_mail("size@example.com")
    assert len(PAYLOAD) > LARGE and len(base64.encodebytes(PAYLOAD)) > BIG_RUN
    assert LARGE < len(mail) < LIMIT


def test_a_big_attachment_is_stored_byte_for_byte(config: Config) -> None:
    config = big_config(config)
    mail = big_mail("big-1@example.com")
    with running_gateway(config) as gateway:
        assert send(gateway.port, mail, ["bugs@example.org"]) == (
            250,
            b"2.0.0 Ok: stored as bugs/1",
        )
    messages, attachments, blobs = stored(config)
    assert messages[0][0] == mail  # dot-unstuffed: the lines read as they were written
    assert ".leading dot\n..two dots\n.\nend of the text" in messages[0][1]
    assert [(a.filename, a.size, a.sha256) for a in attachments] == [
        ("core.bin", len(PAYLOAD), hashlib.sha256(PAYLOAD).hexdigest())
    ]
    assert blobs == [PAYLOAD]


def test_too_big_is_refused_after_the_whole_data(sqlite_url: str, tmp_path: Path) -> None:
    config = make_config(sqlite_url, tmp_path)
    limit = config.smtp.max_message_size
    line = b"y" * 998 + b"\r\n"
    over = line * (limit // len(line)) + b"QUIT\r\nRSET\r\n" + line * 10
    with running_gateway(config) as gateway:
        client = open_transaction(gateway.port, WAIT)
        try:
            client.sock.sendall(b"Subject: big\r\n\r\n" + over + b".\r\n")
            refusal = f"552 5.3.4 Message too big: this tracker takes at most {limit} bytes"
            assert client.reply() == refusal.encode() + b"\r\n"
            assert client.command(b"NOOP") == b"250 OK\r\n"  # QUIT was data, not a command
            assert client.command(b"MAIL FROM:<alice@example.com>") == b"250 OK\r\n"
        finally:
            client.close()
    assert stored(config)[0] == []


def test_an_overlong_line_ending_in_a_dot_does_not_end_data(
    sqlite_url: str, tmp_path: Path
) -> None:
    config = make_config(sqlite_url, tmp_path)
    body = b"Subject: long\r\n\r\n" + b"z" * (LINE_LENGTH_LIMIT * 2) + b".\r\nQUIT\r\n"
    with running_gateway(config) as gateway:
        client = open_transaction(gateway.port, WAIT)
        try:
            client.sock.sendall(body + b".\r\n")
            assert client.reply() == b"500 Line too long (see RFC5321 4.5.3.1.6)\r\n"
            assert client.command(b"NOOP") == b"250 OK\r\n"
        finally:
            client.close()
    assert stored(config)[0] == []


def with_lmtp(config: Config) -> Config:
    return replace(big_config(config), lmtp=LmtpConfig(listen="127.0.0.1:0"))


def test_lmtp_stores_a_big_mail_for_each_recipient(config: Config) -> None:
    config = with_lmtp(config)
    mail = big_mail("big-2@example.com")
    with running_gateway(config) as gateway:
        assert gateway.lmtp is not None
        client = RawLMTP(gateway.lmtp.port, timeout=WAIT)
        try:
            replies = client.transaction(mail, ["bugs@example.org", "docs@example.org"])
        finally:
            client.close()
    assert replies[-2:] == [
        b"250 2.0.0 Ok: stored as bugs/1\r\n",
        b"250 2.0.0 Ok: stored as docs/1\r\n",
    ]
    messages, attachments, blobs = stored(config)
    assert [raw for raw, _ in messages] == [mail, mail]
    assert len(attachments) == 2 and blobs == [PAYLOAD]  # the file is kept once


def test_lmtp_answers_an_overlong_line_for_each_recipient(config: Config) -> None:
    config = with_lmtp(config)
    body = b"Subject: long\r\n\r\n" + b"z" * (LINE_LENGTH_LIMIT * 2) + b"\r\n"
    with running_gateway(config) as gateway:
        assert gateway.lmtp is not None
        client = RawLMTP(gateway.lmtp.port, timeout=WAIT)
        try:
            replies = client.transaction(body, ["bugs@example.org", "docs@example.org"])
            assert client.command(b"NOOP") == b"250 2.0.0 OK\r\n"
        finally:
            client.close()
    assert [r[:10] for r in replies[-2:]] == [b"500 5.5.2 "] * 2
    assert stored(config)[0] == []


# --- SQLite: the mail's bytes are the last column, so a zeroblob stays a length ----------


def columns(path: Path, name: str = "messages") -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[1] for row in db.execute(f"PRAGMA table_info({name})")]


@pytest.mark.parametrize("name", ["messages", "held_mail", "quarantine", "bounces"])
def test_raw_is_the_last_column(sqlite_url: str, tmp_path: Path, name: str) -> None:
    """A migration that adds a column to a table that keeps whole mails must move ``raw``
    after it again (migrations 0011, 0012): otherwise SQLite builds a big mail's row in
    memory, twice."""
    Store.open(make_config(sqlite_url, tmp_path)).close()
    assert columns(tmp_path / "tracker.db", name)[-1] == "raw"


def test_a_big_mail_held_for_a_moderator_is_kept_whole(config: Config) -> None:
    """Held (``blobio.insert_row``), then approved: stored byte for byte, file and all."""
    config = big_config(config)
    config = replace(
        config, trackers=tuple(replace(t, unknown_senders="moderate") for t in config.trackers)
    )
    mail = big_mail("held-1@example.com")
    with running_gateway(config) as gateway:
        assert send(gateway.port, mail, ["bugs@example.org"]) == (
            250,
            b"2.0.0 Ok: held for a moderator",
        )
    store = Store.open(config)
    try:
        with store.read() as session:
            assert session.scalars(select(HeldMail.raw)).all() == [mail]
        assert "stored as bugs/1" in approve(store, config, 1).reply
    finally:
        store.close()
    messages, _, blobs = stored(config)
    assert [raw for raw, _ in messages] == [mail] and blobs == [PAYLOAD]


def test_a_big_mail_that_trips_a_bug_is_quarantined_whole(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = big_config(config)
    monkeypatch.setattr(pipeline, "interpret", broken_interpret)
    mail = big_mail("bug-1@example.com")
    with running_gateway(config) as gateway:
        code, text = send(gateway.port, mail, ["bugs@example.org"])
    assert (code, text) == (250, b"2.0.0 Ok: kept for the administrators (quarantine 1)")
    store = Store.open(config)
    try:
        found = quarantine.entry(store, 1)
        assert found is not None and found.raw == mail
        assert found.envelope.rcpt_tos == ("bugs@example.org",)
    finally:
        store.close()


def test_moving_raw_keeps_every_stored_mail(sqlite_url: str, tmp_path: Path) -> None:
    """Mail stored at revision 0010 (``raw`` in the middle of the row) is all there after
    0011: the bytes, the attachment rows and files, the full-text index of the bodies."""
    config = big_config(make_config(sqlite_url, tmp_path))
    engine = make_engine(sqlite_url)
    alembic = AlembicConfig()
    alembic.set_main_option("script_location", str(resources.files("mailtracker") / "migrations"))
    with engine.begin() as conn:
        alembic.attributes["connection"] = conn
        command.upgrade(alembic, "0010")
    path = tmp_path / "tracker.db"
    assert columns(path)[-1] == "evidence"
    store = Store(engine)
    with store.write() as session:
        ensure_trackers(session, ["bugs"])
    mails = [big_mail("old-1@example.com"), big_mail("old-2@example.com", PAYLOAD[:1000])]
    for mail in mails:
        outcome = process(store, config, mail, Envelope("alice@example.com", ("bugs@example.org",)))
        assert outcome.accepted, outcome.reply
    upgrade_schema(engine)
    store.close()
    assert columns(path)[-1] == "raw"
    messages, attachments, blobs = stored(config)
    assert [raw for raw, _ in messages] == mails
    assert len(attachments) == 2 and sorted(blobs, key=len) == [PAYLOAD[:1000], PAYLOAD]
    with sqlite3.connect(path) as db:
        found = db.execute("SELECT rowid FROM messages_fts WHERE messages_fts MATCH 'leading'")
        assert [row[0] for row in found] == [1, 2]
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
