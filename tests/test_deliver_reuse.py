"""The delivery worker keeps its smarthost connection between batches, hangs up when idle,
replaces a connection the smarthost closed without deferring mail, and asks the database
for the day's digests once, not before every batch."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import event

from mailtracker.config import Config
from mailtracker.deliver import DeliveryReport, deliver_due, run_worker
from mailtracker.digest import run_due
from mailtracker.store import Store
from mailtracker.transport import transport_for
from tests.test_deliver import NOW, Sink, add_row, free_port, until

DUE = datetime(2000, 1, 1)


@dataclass
class Seen:
    """A sink that also counts the sessions it greets, the RSETs and the QUITs."""

    ehlo: int = 0
    rset: int = 0
    quit: int = 0


class CountingSink(Sink):
    def __init__(self) -> None:
        super().__init__()
        self.seen = Seen()

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.seen.ehlo += 1
        session.host_name = hostname
        return responses

    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> str:
        self.seen.rset += 1
        return "250 OK"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.seen.quit += 1
        return "221 Bye"


def pointed_at(config: Config, port: int) -> Config:
    """``config`` with the smarthost on ``port``."""
    return replace(config, outgoing=replace(config.outgoing, smarthost=f"127.0.0.1:{port}"))


def start_sink(port: int) -> tuple[CountingSink, Controller]:
    handler = CountingSink()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return handler, controller


def test_one_connection_while_mail_keeps_coming_and_a_hang_up_when_idle(
    store: Store, config: Config
) -> None:
    port = free_port()
    handler, controller = start_sink(port)
    config = pointed_at(config, port)
    add_row(store, "first@x", next_attempt_at=DUE)

    async def scenario() -> None:
        wake, stop = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(run_worker(store, config, wake, stop, poll_seconds=0.5))
        await until(lambda: len(handler.received) == 1, "the first round delivers")
        add_row(store, "second@x", next_attempt_at=DUE)
        wake.set()  # at once, before the poll interval can pass idle
        await until(lambda: len(handler.received) == 2, "the wake delivers")
        assert (handler.seen.ehlo, handler.seen.rset) == (1, 1)  # the same session, checked
        await until(lambda: handler.seen.quit == 1, "an idle worker hangs up")
        add_row(store, "third@x", next_attempt_at=DUE)
        wake.set()
        await until(lambda: len(handler.received) == 3, "a new connection after idling")
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    try:
        asyncio.run(scenario())
    finally:
        controller.stop()
    assert (handler.seen.ehlo, handler.seen.quit) == (2, 2)  # the stop hangs up too


def test_a_kept_connection_the_smarthost_closed_is_replaced_without_deferring(
    store: Store, config: Config
) -> None:
    port = free_port()
    handler, controller = start_sink(port)
    config = pointed_at(config, port)
    transport = transport_for(config)
    add_row(store, "before@x", next_attempt_at=DUE)
    first = deliver_due(store, config, now=NOW, transport=transport, keep_open=True)
    controller.stop()  # the smarthost restarts: the kept connection is gone
    handler, controller = start_sink(port)
    try:
        add_row(store, "after@x", next_attempt_at=DUE)
        second = deliver_due(store, config, now=NOW, transport=transport, keep_open=True)
        transport.close()
    finally:
        controller.stop()
    assert first == second == DeliveryReport(sent=1)
    assert handler.message_ids() == ["Message-ID: <after@x>"] and handler.seen.ehlo == 1


def test_the_days_digests_are_looked_up_once(store: Store, config: Config) -> None:
    writes: list[str] = []
    event.listen(store.engine, "begin", lambda conn: writes.append("begin"))
    morning = datetime(2026, 11, 25, 7, 0)
    run_due(store, config, morning)
    made = len(writes)
    run_due(store, config, morning.replace(hour=9))
    run_due(store, config, morning.replace(hour=23))
    assert made == len(config.trackers) and len(writes) == made  # one per tracker, ever
    run_due(store, config, morning.replace(day=26))  # a new day asks again
    assert len(writes) == 2 * made
