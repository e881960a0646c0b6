"""Faults caused for real: concurrent writers, a gateway killed with SIGKILL under load,
two gateways sharing one PostgreSQL database, a smarthost that is down."""

from __future__ import annotations

import signal
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from mailtracker.config import Config
from mailtracker.models import Issue, Message, Nosy, Outbox
from mailtracker.store import Store, make_engine
from tests.conftest import MESSAGES
from tests.harness import free_port, running_gateway, send, start_serve
from tests.inspect_db import count, show

ROOT = Path(__file__).resolve().parents[1]


def new_issue(n: int) -> bytes:
    return (
        f"From: user{n}@example.com\r\nTo: bugs@example.org\r\nSubject: report {n}\r\n"
        f"Message-ID: <load-{n}@example.com>\r\n\r\nReport number {n}.\r\n"
    ).encode()


def reply(n: int) -> bytes:
    return (
        f"From: user{n}@example.com\r\nTo: bugs+1@example.org\r\nSubject: Re: report\r\n"
        f"Message-ID: <reply-{n}@example.com>\r\n\r\nMe too ({n}).\r\n"
    ).encode()


def test_concurrent_mail_loses_nothing_and_numbers_stay_gap_free(
    store: Store, config: Config
) -> None:
    with running_gateway(config) as gateway, ThreadPoolExecutor(8) as pool:
        assert send(gateway.port, new_issue(0), ["bugs@example.org"])[0] == 250
        news = [
            pool.submit(send, gateway.port, new_issue(n), ["bugs@example.org"])
            for n in range(1, 21)
        ]
        replies = [
            pool.submit(send, gateway.port, reply(n), ["bugs+1@example.org"]) for n in range(1, 31)
        ]
        codes = [f.result()[0] for f in news + replies]
    assert codes == [250] * 50
    with store.read() as session:
        numbers = sorted(session.scalars(select(Issue.number)))
        nosy = list(session.execute(select(Nosy.issue_id, Nosy.user_id)))
    assert numbers == list(range(1, 22))
    assert len(nosy) == len(set(nosy))
    assert count(store, Message) == 51
    assert len(show(store, 1)["messages"]) == 31
    assert len(show(store, 1)["nosy"]) == 31  # the reporter user0 and user1..30, once each


class Sink:
    """A smarthost that records each mail's Message-ID."""

    def __init__(self) -> None:
        self.ids: Counter[str] = Counter()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for line in envelope.original_content.split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                with self.lock:
                    self.ids[line.split(b":", 1)[1].strip().decode()] += 1
                break
        return "250 2.0.0 Ok"


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler, port = Sink(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def write_config(tmp_path: Path, db_url: str, smtp_port: int, sink_port: int) -> Path:
    path = tmp_path / f"gateway-{smtp_port}.toml"
    path.write_text(
        f'[database]\nurl = "{db_url}"\n[smtp]\nlisten = "127.0.0.1:{smtp_port}"\n'
        f'hostname = "tracker.example.org"\n[outgoing]\nsmarthost = "127.0.0.1:{sink_port}"\n'
        '[web]\nlisten = ""\n'
        f'[[trackers]]\nname = "bugs"\naddress = "bugs@example.org"\ntitle = "Example bugs"\n'
    )
    return path


def wait_until(predicate: Any, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def queued_ids(store: Store) -> set[str]:
    with store.read() as session:
        return {f"<{m}>" for m in session.scalars(select(Outbox.message_id))}


def test_sigkill_under_load_loses_no_accepted_mail(
    store: Store, config: Config, tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    handler, sink_port = sink
    port = free_port()
    path = write_config(tmp_path, config.database.url, port, sink_port)
    accepted: list[str] = []
    proc = start_serve(path, port)
    assert send(port, (MESSAGES / "new-issue.eml").read_bytes(), ["bugs@example.org"])[0] == 250
    stop = threading.Event()

    def load() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                if send(port, reply(n), ["bugs+1@example.org"])[0] == 250:
                    accepted.append(f"reply-{n}@example.com")
            except (OSError, smtplib.SMTPException):
                time.sleep(0.05)  # the server is down: an MTA would retry later

    thread = threading.Thread(target=load)
    thread.start()
    wait_until(lambda: len(accepted) >= 15)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    stop.set()
    thread.join(60)
    proc = start_serve(path, port)
    try:
        with store.read() as session:
            stored = set(session.scalars(select(Message.message_id)))
        assert set(accepted) <= stored
        # Rows the killed worker had claimed are handed back by the new one at its start
        # (claims.py), without waiting for their lease (10 minutes).
        wait_until(lambda: queued_ids(store) <= set(handler.ids))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    # Each notification reached the smarthost; a resend after the kill keeps its Message-ID.
    assert set(handler.ids) == queued_ids(store)


def test_two_gateways_on_one_postgresql_send_each_mail_once(
    db_url: str, store: Store, tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("several gateways share one database only on PostgreSQL")
    handler, sink_port = sink
    ports = [free_port(), free_port()]
    procs = [start_serve(write_config(tmp_path, db_url, p, sink_port), p) for p in ports]
    try:
        assert (
            send(ports[0], (MESSAGES / "new-issue.eml").read_bytes(), ["bugs@example.org"])[0]
            == 250
        )
        for n in range(1, 41):
            assert send(ports[n % 2], reply(n), ["bugs+1@example.org"])[0] == 250
        wait_until(lambda: queued_ids(store) <= set(handler.ids))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(60) == 0
    assert len(queued_ids(store)) > 100
    assert set(handler.ids) == queued_ids(store)
    assert max(handler.ids.values()) == 1


def test_sqlite_commits_are_fsynced_before_the_250(sqlite_url: str) -> None:
    """WAL with synchronous=NORMAL loses the last commits on a power cut; the MTA has
    deleted its copy by then, so 250 must wait for the fsync (synchronous=FULL, 2)."""
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()
