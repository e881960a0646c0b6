"""DATA read into one buffer (``dataread.DataBuffer``, ``GatewaySMTP.smtp_DATA``) answers
exactly as aiosmtpd's own ``smtp_DATA`` does.

The buffer is tested alone, then both servers run on loopback, each with a handler that
records what it was given, and receive the same bytes: the replies and the recorded mail
must agree, 552's enhanced wording (ours) aside. Waits are bounded by socket timeouts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from mailtracker.dataread import TOO_LONG, TOO_MUCH, DataBuffer
from mailtracker.receive import GatewaySMTP
from tests.harness import RawSMTP, free_port

LINE_LIMIT = 200
SIZE_LIMIT = 2_000
WAIT = 10.0


def fed(pieces: list[bytes], size_limit: int | None = SIZE_LIMIT) -> DataBuffer:
    """A buffer given ``pieces`` in order, as the server hands them over."""
    data = DataBuffer(size_limit, LINE_LIMIT)
    for piece in pieces:
        data.take(piece)
    return data


# --- the buffer alone -------------------------------------------------------------------


def test_lines_are_dot_unstuffed_and_end_at_a_lone_dot() -> None:
    data = fed([b"Subject: x\r\n", b"\r\n", b"..one\r\n", b"..\r\n", b".x\r\n", b".\r\n"])
    assert data.complete and data.refusal is None
    assert data.content() == b"Subject: x\r\n\r\n.one\r\n.\r\nx\r\n"


def test_content_is_handed_over_once() -> None:
    data = fed([b"body\r\n", b".\r\n"])
    assert data.content() == b"body\r\n"
    with pytest.raises(RuntimeError):
        data.content()


def test_an_empty_mail_is_empty() -> None:
    data = fed([b".\r\n"])
    assert data.complete and data.content() == b""


def test_a_dot_that_ends_an_overlong_line_is_not_the_end() -> None:
    data = DataBuffer(SIZE_LIMIT, LINE_LIMIT)
    data.take(b"first\r\n")
    data.overrun()
    data.take(b"x" * (LINE_LIMIT + 1))
    data.take(b".\r\n")  # the rest of the over-long line
    assert not data.complete
    data.take(b".\r\n")
    assert data.complete and data.refusal == TOO_LONG
    with pytest.raises(RuntimeError):
        data.content()


def test_a_line_one_byte_over_the_limit_is_refused() -> None:
    at_limit = b"x" * (LINE_LIMIT - 2) + b"\r\n"
    assert fed([at_limit, b".\r\n"]).content() == at_limit
    assert fed([b"x" + at_limit, b".\r\n"]).refusal == TOO_LONG


def test_too_much_data_is_read_to_the_end_then_refused() -> None:
    line = b"y" * 98 + b"\r\n"
    data = fed([line] * 20)
    assert data.refusal is None
    data.take(b"z\r\n")  # 2,003 bytes
    assert data.refusal == TOO_MUCH and not data.complete
    data.take(line)
    data.take(b".\r\n")
    assert data.complete and data.refusal == TOO_MUCH


def test_dots_count_towards_the_size_and_no_limit_means_none() -> None:
    stuffed = [b"." + b"y" * 97 + b"\r\n"] * 20  # 2,000 bytes as sent, 1,980 unstuffed
    assert fed([*stuffed, b".\r\n"]).refusal is None
    assert fed([*stuffed, b"..\r\n", b".\r\n"]).refusal == TOO_MUCH
    assert fed([b"y" * 98 + b"\r\n"] * 50 + [b".\r\n"], size_limit=None).refusal is None


def test_the_first_verdict_stands() -> None:
    line = b"y" * 198 + b"\r\n"
    big_then_long = fed([line] * 11)
    big_then_long.overrun()
    assert big_then_long.refusal == TOO_MUCH
    long_then_big = DataBuffer(SIZE_LIMIT, LINE_LIMIT)
    long_then_big.overrun()
    for piece in [line] * 11:
        long_then_big.take(piece)
    assert long_then_big.refusal == TOO_LONG


# --- against aiosmtpd's own smtp_DATA, on loopback -----------------------------------------


class Recorder:
    """Keeps what each server handed its handler."""

    def __init__(self) -> None:
        self.mails: list[tuple[bytes, Any]] = []

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.mails.append((envelope.original_content, envelope.content))
        return "250 2.0.0 Taken"


class StockSMTP(SMTP):
    line_length_limit = LINE_LIMIT


class OurSMTP(GatewaySMTP):
    line_length_limit = LINE_LIMIT


class Server(Controller):
    """One of the two servers, in a thread of its own, with a recorder."""

    def __init__(self, kind: type[SMTP], **options: Any) -> None:
        self.kind = kind
        self.recorder = Recorder()
        super().__init__(self.recorder, hostname="127.0.0.1", port=free_port(), **options)

    def factory(self) -> SMTP:
        return self.kind(self.recorder, **self.SMTP_kwargs)


@pytest.fixture(scope="module", params=[{}, {"decode_data": True, "enable_SMTPUTF8": False}])
def servers(request: pytest.FixtureRequest) -> Iterator[tuple[Server, Server]]:
    options = {"data_size_limit": SIZE_LIMIT, "server_hostname": "mx.example.org", **request.param}
    pair = (Server(StockSMTP, **options), Server(OurSMTP, **options))
    for server in pair:
        server.start()
    try:
        yield pair
    finally:
        for server in pair:
            server.stop()


def dialogue(port: int, commands: list[bytes], data: bytes | None) -> list[bytes]:
    """Every reply to ``commands``; if DATA got 354, ``data`` is sent and then NOOP, whose
    reply shows that the server read the whole of it."""
    client = RawSMTP(port, timeout=WAIT)
    try:
        replies = [client.reply()]
        replies += [client.command(line) for line in commands]
        if data is not None and replies[-1].startswith(b"354"):
            client.sock.sendall(data)
            replies += [client.reply(), client.command(b"NOOP")]
        return replies
    finally:
        client.close()


TRANSACTION = [b"EHLO client.example.com", b"MAIL FROM:<a@example.com>", b"RCPT TO:<b@x.org>"]
LONG = b"x" * (LINE_LIMIT * 3)
STREAMS = {
    "plain": b"Subject: a\r\n\r\nbody\r\n.\r\n",
    "dots": b"Subject: dots\r\n\r\n..one\r\n..\r\n...\r\n.x\r\n.\r\n",
    "empty": b".\r\n",
    "bare line ends": b"a\nb\rc\r\nx\n.\ny\r\n.\r\n",
    "8-bit": "Subject: Zoë\r\n\r\nnaïve\r\n".encode() + b"\xff\xfe\r\n.\r\n",
    "at the line limit": b"x" * (LINE_LIMIT - 2) + b"\r\n.\r\n",
    "one over the line limit": b"x" * (LINE_LIMIT - 1) + b"\r\n.\r\n",
    "overlong line": b"a\r\n" + LONG + b"\r\nb\r\n.\r\n",
    "overlong line ending in a dot": b"a\r\n" + LONG + b".\r\nb\r\n.\r\n",
    "too much": (b"y" * 98 + b"\r\n") * 30 + b".\r\n",
    "too much, then overlong": (b"y" * 98 + b"\r\n") * 30 + LONG + b"\r\n.\r\n",
    "overlong, then too much": LONG + b"\r\n" + (b"y" * 98 + b"\r\n") * 30 + b".\r\n",
}


def same_replies(stock: list[bytes], ours: list[bytes]) -> bool:
    """Equal, but for 552, where ours carries the enhanced code and the limit."""
    if [r[:4] for r in stock] != [r[:4] for r in ours]:
        return False
    return all(s == o or (o.startswith(b"552 5.3.4 ")) for s, o in zip(stock, ours, strict=True))


@pytest.mark.parametrize("name", list(STREAMS))
def test_data_as_aiosmtpd_reads_it(servers: tuple[Server, Server], name: str) -> None:
    results = []
    for server in servers:
        del server.recorder.mails[:]
        replies = dialogue(server.port, [*TRANSACTION, b"DATA"], STREAMS[name])
        results.append((replies, list(server.recorder.mails)))
    (stock, stock_mails), (ours, our_mails) = results
    assert same_replies(stock, ours), (stock, ours)
    assert our_mails == stock_mails
    for original, content in our_mails:
        assert content is original or not isinstance(content, bytes)


@pytest.mark.parametrize(
    "commands",
    [
        [b"EHLO client.example.com", b"MAIL FROM:<a@example.com>", b"DATA"],
        [b"EHLO client.example.com", b"DATA"],
        [b"DATA"],
        [*TRANSACTION, b"DATA now"],
        [b"EHLO client.example.com", b"HELP DATA"],
    ],
)
def test_refusals_before_data_as_aiosmtpd(
    servers: tuple[Server, Server], commands: list[bytes]
) -> None:
    stock, ours = (dialogue(server.port, commands, None) for server in servers)
    assert ours == stock
