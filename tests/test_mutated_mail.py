"""Mutated mail and mutated SMTP commands never trip a bug.

The test mails of ``tests/messages`` are mutated (junk put into header values, headers
repeated, dropped or added with broken encoded words, 8-bit bytes, angle brackets) with a
fixed seed and run through the whole pipeline on a real database, with failures raised
instead of quarantined: every one must end in a reply, not an exception. Likewise random
MAIL, RCPT and VRFY arguments sent to a real gateway must never be answered as a bug
(451 4.3.0) or logged as one. Each bug these found when they were written (a Cc'd address
that is not ASCII, an id holding encoded-word syntax, a DSN attached to a comment, 8-bit
bytes echoed in a reply, addresses the stdlib's parser crashes on) has its own test too.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from mailtracker.config import Config
from mailtracker.pipeline import process
from mailtracker.store import Store
from mailtracker.values import Envelope
from tests.conftest import MESSAGES, make_config
from tests.harness import RawSMTP, running_gateway

JUNK = [
    b"=?utf-8?q?=FF=FE?=",
    b"=?x-unknown?b?AAAA?=",
    b"=?utf-8?b?",
    b"\xff\xfe",
    b"\xc3",
    b"\x00",
    "jörg@bücher.example".encode(),
    b"<>",
    b"<<a@b>>",
    b"(",
    b'"',
    b"\\",
    b"@",
    b",",
    b"\r\n\t",
    b"[issue999999999999999999]",
    b"[status=]",
    b'; charset="bogus"',
    b"; boundary=",
]
HEADERS = [b"From", b"Cc", b"To", b"Subject", b"Message-ID", b"In-Reply-To", b"References"]
HEADERS += [b"Content-Type", b"Content-Transfer-Encoding", b"Reply-To", b"Date"]
MUTANTS = 300


def mutant(raw: bytes, rng: random.Random) -> bytes:
    head, sep, body = raw.partition(b"\n\n" if b"\r\n\r\n" not in raw else b"\r\n\r\n")
    lines = head.splitlines()
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(lines))
        choice = rng.random()
        if choice < 0.5:
            cut = rng.randint(0, len(lines[at]))
            lines[at] = lines[at][:cut] + rng.choice(JUNK) + lines[at][cut:]
        elif choice < 0.65:
            lines.insert(at, lines[at])
        elif choice < 0.75 and len(lines) > 1:
            del lines[at]
        else:
            value = b"".join(rng.choice(JUNK) for _ in range(rng.randint(1, 3)))
            lines.insert(at, rng.choice(HEADERS) + b": " + value)
    return b"\r\n".join(lines) + sep + body


def test_no_mutated_mail_trips_a_bug(config: Config, store: Store) -> None:
    rng = random.Random(3)  # with the code before the fixes, the 15th mutant failed
    seeds = [path.read_bytes() for path in sorted(MESSAGES.glob("*.eml"))]
    replies = set()
    for _ in range(MUTANTS):
        raw = mutant(rng.choice(seeds), rng)
        rcpt = rng.choice(["bugs@example.org", "bugs+1@example.org", "bugs+2@example.org"])
        sender = rng.choice(["alice@example.com", "", "bob@example.net"])
        outcome = process(store, config, raw, Envelope(sender, (rcpt,)), keep_failures=False)
        replies.add(outcome.reply[:3])
    assert "250" in replies and "550" in replies  # mutants both stored and refused


def test_no_mutated_command_is_answered_as_a_bug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(2026)
    alphabet = b'ab@.<> "()\\:[],;=-+\t\x00\x7f\xc3\xa9\xff' + b"SIZE=BODY=8BITMIME SMTPUTF8"
    config = make_config(f"sqlite:///{tmp_path / 'tracker.db'}", tmp_path)
    codes: set[bytes] = set()
    with running_gateway(config) as gateway, caplog.at_level(logging.ERROR):
        for _ in range(10):
            raw = RawSMTP(gateway.port)
            try:
                assert raw.reply().startswith(b"220 ")
                assert raw.command(b"EHLO client.example.com").startswith(b"250")
                for _ in range(20):
                    verb = rng.choice([b"MAIL FROM:", b"RCPT TO:", b"VRFY "])
                    arg = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
                    if verb == b"RCPT TO:":
                        raw.command(b"MAIL FROM:<alice@example.com>")
                    reply = raw.command(verb + arg)
                    assert not reply.startswith((b"451", b"421")), (verb + arg, reply)
                    codes.add(reply[:3])
            finally:
                raw.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert {b"550", b"553"} <= codes  # unknown recipients, malformed addresses
