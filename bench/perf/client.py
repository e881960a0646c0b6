"""The one SMTP client every measurement uses: plain asyncio sockets, no smtplib.

Why its own client: the client shares the machine with the server, so it has to be cheap
and identical for the ceiling and for ``serve``. Two ways to drive a server:

- ``closed_loop``: each of N connections sends its next mail as soon as the last one is
  answered; gives the throughput.
- ``open_loop``: mail ``i`` is due at ``start + i / rate``, whatever the server is doing;
  a mail's latency runs from when it was due to its reply, so a server that falls behind
  shows it in the tail instead of quietly slowing the client down (no coordinated omission).

Every reply is kept: a run where the server refused mail is reported, never averaged in.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from mix import Mail

__all__ = ["Result", "closed_loop", "open_loop", "prepare", "run_closed", "run_open"]


@dataclass
class Result:
    """What a run did: mails answered, seconds, each mail's latency, reply codes."""

    sent: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)
    server_cpu_s: float = 0.0  # the server process's CPU during the run, where measured
    # The server's and its smarthost's CPU from the run's start until its outbox is
    # delivered: all a mail costs the machine, but the client and PostgreSQL's own.
    delivered_cpu_s: float = 0.0
    sink_cpu_s: float = 0.0  # the smarthost's share of that
    client_cpu_s: float = 0.0  # the client's own CPU (this process) during the run

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    @property
    def refused(self) -> int:
        return sum(n for code, n in self.codes.items() if not code.startswith("2"))


@dataclass(frozen=True)
class Wire:
    """A mail as it goes on the wire: commands and the dot-stuffed DATA block."""

    mail_from: bytes
    rcpt_to: bytes
    data: bytes


def prepare(mails: Sequence[Mail]) -> list[Wire]:
    """Encode once, before the clock starts: dot-stuffing is the client's job, not timed."""
    wires = []
    for mail in mails:
        stuffed = mail.data.replace(b"\r\n.", b"\r\n..")
        if stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        if not stuffed.endswith(b"\r\n"):
            stuffed += b"\r\n"
        wires.append(
            Wire(
                f"MAIL FROM:<{mail.sender}>\r\n".encode(),
                f"RCPT TO:<{mail.rcpt}>\r\n".encode(),
                stuffed + b".\r\n",
            )
        )
    return wires


class Connection:
    """One SMTP session; ``send`` returns the DATA reply's first line."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        conn = cls(reader, writer)
        await conn.reply()
        await conn.command(b"EHLO bench.client\r\n")
        return conn

    async def reply(self) -> str:
        first = b""
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("the server closed the connection")
            first = first or line
            if line[3:4] != b"-":
                return first.decode("ascii", "replace").strip()

    async def command(self, line: bytes) -> str:
        self.writer.write(line)
        return await self.reply()

    async def send(self, wire: Wire) -> str:
        for line in (wire.mail_from, wire.rcpt_to, b"DATA\r\n"):
            answer = await self.command(line)
            if answer[:1] not in ("2", "3"):
                await self.command(b"RSET\r\n")
                return answer
        self.writer.write(wire.data)
        return await self.reply()

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self.command(b"QUIT\r\n")
        self.writer.close()


async def closed_loop(port: int, wires: Sequence[Wire], connections: int) -> Result:
    """Send every mail over ``connections`` sessions, each as fast as replies come back."""
    result = Result()
    queue = iter(wires)
    conns = [await Connection.open(port) for _ in range(connections)]

    async def worker(conn: Connection) -> None:
        for wire in queue:
            began = time.perf_counter()
            answer = await conn.send(wire)
            result.latencies.append(time.perf_counter() - began)
            result.codes[answer[:3]] += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    result.seconds = time.perf_counter() - start
    result.sent = len(result.latencies)
    for conn in conns:
        await conn.close()
    return result


async def open_loop(port: int, wires: Sequence[Wire], rate: float, connections: int) -> Result:
    """Offer ``rate`` mails a second; latency counts from when each mail was due."""
    result = Result()
    queue = iter(enumerate(wires))
    conns = [await Connection.open(port) for _ in range(connections)]
    start = time.perf_counter()

    async def worker(conn: Connection) -> None:
        for index, wire in queue:
            due = start + index / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            answer = await conn.send(wire)
            result.latencies.append(time.perf_counter() - due)
            result.codes[answer[:3]] += 1

    await asyncio.gather(*(worker(c) for c in conns))
    result.seconds = time.perf_counter() - start
    result.sent = len(result.latencies)
    for conn in conns:
        await conn.close()
    return result


def run_closed(port: int, wires: Sequence[Wire], connections: int) -> Result:
    return asyncio.run(closed_loop(port, wires, connections))


def run_open(port: int, wires: Sequence[Wire], rate: float, connections: int) -> Result:
    return asyncio.run(open_loop(port, wires, rate, connections))
