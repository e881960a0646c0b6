"""``smtpaddr.command_address`` through ``GatewaySMTP._getaddr`` answers as aiosmtpd's own
``SMTP._getaddr`` does, for hand-picked edge cases, every Return-Path in the corpus and
random arguments, with and without a local-part limit; where aiosmtpd's parser crashes, it
answers "malformed", and a real server says so with 553."""

from __future__ import annotations

import random
import re
import smtplib
from pathlib import Path

import pytest
from aiosmtpd.handlers import Sink
from aiosmtpd.smtp import SMTP

from mailtracker.receive import GatewaySMTP
from mailtracker.smtpaddr import command_address
from tests.conftest import CORPUS, make_config
from tests.harness import running_gateway

EDGE_CASES = [
    "",
    "<>",
    "<> SIZE=100",
    "<bob@example.org>",
    "bob@example.org",
    "  <bob@example.org>",
    "<bob@example.org> SIZE=12345 BODY=8BITMIME SMTPUTF8",
    "<bob@example.org>SIZE=1",
    "<bob@example.org> (a comment) SIZE=1",
    '<"quoted > local"@example.org> SIZE=2',
    '"odd local"@example.org',
    "<@relay.example:bob@example.org>",
    "<bob@[127.0.0.1]>",
    "<jörg@bücher.example>",
    "<bob@example.org",
    "bob@",
    "<<bob@example.org>>",
    "<bob(x)@example.org>",
    "plain",
    "<" + "a" * 70 + "@example.org>",
]
_RETURN_PATH = re.compile(rb"^Return-Path:[ \t]*(.*?)\r?$", re.MULTILINE | re.IGNORECASE)


def _corpus_arguments() -> list[str]:
    """Every Return-Path in the corpus: real envelope senders, as MTAs wrote them down."""
    if not CORPUS.is_dir():
        pytest.fail(f"the shared corpus is not at {CORPUS}")
    found = set()
    for path in CORPUS.rglob("*"):
        if path.is_file() and path.stat().st_size < 2_000_000:
            for value in _RETURN_PATH.findall(path.read_bytes()):
                found.add(value.decode("utf-8", "replace"))
    return sorted(found)


def _random_arguments(count: int) -> list[str]:
    rng = random.Random(7)
    alphabet = 'ab@.<> "()\\:[],;é=\t-+'
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24))) for _ in range(count)]


@pytest.mark.parametrize("limit", [0, 64])
def test_answers_as_aiosmtpd_does(limit: int) -> None:
    ours = GatewaySMTP(Sink())  # type: ignore[arg-type]
    theirs = SMTP(Sink())
    ours.local_part_limit = theirs.local_part_limit = limit  # a class attribute in aiosmtpd
    arguments = EDGE_CASES + _corpus_arguments() + _random_arguments(3000)
    assert len(arguments) > len(EDGE_CASES) + 3000  # the corpus gave some
    crashed = 0
    for arg in arguments + EDGE_CASES:  # the edge cases twice: remembered answers too
        expected = _aiosmtpd(theirs, arg)
        crashed += expected == "crash"
        assert ours._getaddr(arg) == ((None, None) if expected == "crash" else expected), arg
    assert crashed  # the random arguments reach the parser's crashes


def _aiosmtpd(server: SMTP, arg: str) -> tuple[str | None, str | None] | str:
    """aiosmtpd's answer, and "crash" where its parser raises something else than
    ``HeaderParseError`` (which ours answers as malformed: see below)."""
    try:
        return server._getaddr(arg)  # type: ignore[no-any-return]
    except Exception:
        return "crash"


def test_remembers_a_recurring_argument() -> None:
    command_address.cache_clear()
    for _ in range(3):
        command_address("<tracker@example.org>")
    info = command_address.cache_info()
    assert (info.hits, info.misses) == (2, 1)


@pytest.mark.parametrize("command", ["MAIL FROM:bob@", "RCPT TO:<.@[", "RCPT TO:<@"])
def test_a_real_server_refuses_what_the_parser_cannot_read_with_553(
    tmp_path: Path, command: str
) -> None:
    """aiosmtpd alone answered these 451 (its exception hook: our bug, retry later); the
    client must hear that the address is wrong, for good."""
    config = make_config(f"sqlite:///{tmp_path / 'tracker.db'}", tmp_path)
    with (
        running_gateway(config) as gateway,
        smtplib.SMTP("127.0.0.1", gateway.port, timeout=10.0) as client,
    ):
        client.ehlo("client.example.com")
        if command.startswith("RCPT"):
            assert client.mail("alice@example.com")[0] == 250
        verb, _, arg = command.partition(" ")
        assert client.docmd(verb, arg) == (553, b"5.1.3 Error: malformed address")
        assert client.mail("alice@example.com")[0] in (250, 503)  # the session goes on
