"""The delivery worker against a real SMTP server on loopback and a real Maildir.

Every test that takes ``store`` runs on SQLite and on PostgreSQL. Time is injected through
``now=``, so backoff, leases and give-up are tested without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import mailbox
import os
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from mailtracker import transport as transport_module
from mailtracker.config import Config
from mailtracker.deliver import (
    LEASE,
    MAX_AGE,
    DeliveryReport,
    backoff,
    deliver_due,
    run_worker,
)
from mailtracker.errors import ConfigError
from mailtracker.models import Issue, Outbox, Tracker
from mailtracker.outbox_view import outbox_rows
from mailtracker.pipeline import process
from mailtracker.store import Store
from mailtracker.transport import MaildirTransport, SmtpTransport
from mailtracker.values import Envelope
from tests.conftest import make_config

NOW = datetime(2030, 1, 1, 12, 0, 0)
SENDER = "bugs-bounces+abc@example.org"
RCPT = "alice@example.net"
ACCEPT = "250 OK"
TEMP = "451 4.3.0 try later"
PERM = "550 5.1.1 no such user"


def raw_mail(mid: str, body: str = "Hello.") -> bytes:
    head = f"From: bugs@example.org\r\nTo: {RCPT}\r\nMessage-ID: <{mid}>\r\nSubject: [issue1] x"
    return f"{head}\r\n\r\n{body}\r\n".encode()


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...] = field(default=(), compare=False)


@dataclass
class Sink:
    """An aiosmtpd handler: answers DATA with ``data_reply``, RCPT from ``rcpt_replies``."""

    data_reply: str = ACCEPT
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    data_calls: int = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_calls += 1
        if self.data_reply == ACCEPT:
            got = Received(
                envelope.mail_from,
                tuple(envelope.rcpt_tos),
                envelope.original_content,
                tuple(envelope.mail_options),
            )
            self.received.append(got)
        return self.data_reply

    def message_ids(self) -> list[str]:
        return [
            line
            for r in self.received
            for line in r.data.decode().splitlines()
            if line.startswith("Message-ID:")
        ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler, port = Sink(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture
def smtp_config(db_url: str, tmp_path: Path, sink: tuple[Sink, int]) -> Config:
    return make_config(db_url, tmp_path, smarthost=f"127.0.0.1:{sink[1]}")


def add_row(store: Store, mid: str, **columns: Any) -> int:
    with store.write() as session:
        tracker_id = session.scalar(select(Tracker.id).where(Tracker.name == "bugs"))
        values: dict[str, Any] = {
            "tracker_id": tracker_id,
            "message_id": mid,
            "envelope_from": SENDER,
            "recipient": RCPT,
            "raw": raw_mail(mid),
            "created_at": NOW,
            "next_attempt_at": NOW,
        }
        row = Outbox(**{**values, **columns})
        session.add(row)
        session.flush()
        return row.id


def row(store: Store, row_id: int) -> Outbox:
    with store.read() as session:
        found = session.get(Outbox, row_id)
        assert found is not None
        return found


def deliver(store: Store, config: Config, at: datetime = NOW, **kw: Any) -> DeliveryReport:
    return deliver_due(store, config, now=at, **kw)


def test_backoff_grows_then_stays_at_four_hours() -> None:
    minutes = [backoff(n) / timedelta(minutes=1) for n in range(1, 10)]
    assert minutes == [1, 5, 15, 30, 60, 120, 240, 240, 240]


def test_delivered_once_with_exact_bytes_and_envelope(
    store: Store, smtp_config: Config, sink: tuple[Sink, int]
) -> None:
    row_id = add_row(store, "n1@tracker.example.org")
    assert deliver(store, smtp_config) == DeliveryReport(sent=1)
    expected = Received(SENDER, (RCPT,), raw_mail("n1@tracker.example.org"))
    assert sink[0].received == [expected]
    sent = row(store, row_id)
    assert (sent.status, sent.attempts, sent.sent_at) == ("sent", 1, NOW)
    assert deliver(store, smtp_config, NOW + timedelta(days=1), force=True) == DeliveryReport()
    assert len(sink[0].received) == 1


def test_bare_lf_goes_out_as_crlf_and_8bit_is_declared(
    store: Store, smtp_config: Config, sink: tuple[Sink, int]
) -> None:
    add_row(store, "lf@x", raw="Subject: é\n\nline one\nline two\n".encode())
    assert deliver(store, smtp_config) == DeliveryReport(sent=1)
    got = sink[0].received[0]
    assert got.data == "Subject: é\r\n\r\nline one\r\nline two\r\n".encode()
    assert "BODY=8BITMIME" in got.mail_options


def test_temporary_failure_backs_off_then_delivers(
    store: Store, smtp_config: Config, sink: tuple[Sink, int]
) -> None:
    handler = sink[0]
    handler.data_reply = TEMP
    row_id = add_row(store, "t1@x")
    assert deliver(store, smtp_config) == DeliveryReport(deferred=1)
    first = row(store, row_id)
    assert (first.status, first.attempts, first.last_error) == ("queued", 1, TEMP)
    assert first.next_attempt_at == NOW + timedelta(minutes=1)
    assert deliver(store, smtp_config, NOW + timedelta(seconds=59)) == DeliveryReport()
    second_try = NOW + timedelta(minutes=1)
    assert deliver(store, smtp_config, second_try) == DeliveryReport(deferred=1)
    assert row(store, row_id).next_attempt_at == second_try + timedelta(minutes=5)
    handler.data_reply = ACCEPT
    third_try = second_try + timedelta(minutes=5)
    assert deliver(store, smtp_config, third_try) == DeliveryReport(sent=1)
    done = row(store, row_id)
    assert (done.status, done.attempts, done.sent_at) == ("sent", 3, third_try)
    assert handler.message_ids() == ["Message-ID: <t1@x>"]


def test_permanent_failure_is_recorded_with_the_reply(
    store: Store, smtp_config: Config, sink: tuple[Sink, int]
) -> None:
    sink[0].data_reply = PERM
    row_id = add_row(store, "p1@x")
    assert deliver(store, smtp_config) == DeliveryReport(failed=1)
    failed = row(store, row_id)
    assert (failed.status, failed.last_error, failed.sent_at) == ("failed", PERM, None)
    assert deliver(store, smtp_config, NOW + timedelta(days=1), force=True) == DeliveryReport()


def test_refused_recipients_do_not_stop_the_batch(
    store: Store, smtp_config: Config, sink: tuple[Sink, int]
) -> None:
    handler = sink[0]
    handler.rcpt_replies = {"gone@x": PERM, "busy@x": "450 4.2.1 mailbox busy"}
    gone = add_row(store, "r1@x", recipient="gone@x")
    busy = add_row(store, "r2@x", recipient="busy@x")
    fine = add_row(store, "r3@x")
    assert deliver(store, smtp_config) == DeliveryReport(sent=1, deferred=1, failed=1)
    assert (row(store, gone).status, row(store, gone).last_error) == ("failed", PERM)
    assert row(store, busy).status == "queued"
    assert row(store, busy).last_error == "450 4.2.1 mailbox busy"
    assert row(store, fine).status == "sent"
    assert handler.message_ids() == ["Message-ID: <r3@x>"]


def test_connection_refused_defers_every_row(store: Store, db_url: str, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    config = make_config(db_url, tmp_path, smarthost=f"127.0.0.1:{port}")
    ids = [add_row(store, "c1@x"), add_row(store, "c2@x")]
    assert deliver(store, config) == DeliveryReport(deferred=2)
    for row_id in ids:
        deferred = row(store, row_id)
        assert (deferred.status, deferred.attempts) == ("queued", 1)
        assert deferred.last_error.startswith(f"127.0.0.1:{port}: ")
        assert "refused" in deferred.last_error.lower()
        assert deferred.next_attempt_at == NOW + timedelta(minutes=1)


def test_server_closing_the_connection_defers_the_rest_of_the_batch(
    store: Store, smtp_config: Config, sink: tuple[Sink, int]
) -> None:
    handler = sink[0]
    handler.data_reply = "421 4.3.2 shutting down"
    ids = [add_row(store, "d1@x"), add_row(store, "d2@x")]
    assert deliver(store, smtp_config) == DeliveryReport(deferred=2)
    assert handler.data_calls == 1
    assert [row(store, i).last_error for i in ids] == ["421 4.3.2 shutting down"] * 2


def test_gives_up_after_max_age(store: Store, smtp_config: Config, sink: tuple[Sink, int]) -> None:
    sink[0].data_reply = TEMP
    old = add_row(store, "old@x", created_at=NOW - MAX_AGE, attempts=11)
    young = add_row(store, "young@x", created_at=NOW - MAX_AGE + timedelta(minutes=1))
    assert deliver(store, smtp_config) == DeliveryReport(deferred=1, failed=1)
    gave_up = row(store, old)
    assert gave_up.status == "failed"
    assert gave_up.last_error == f"gave up after 12 attempts: {TEMP}"
    assert row(store, young).status == "queued"


def test_force_ignores_next_attempt_at(
    store: Store, smtp_config: Config, sink: tuple[Sink, int]
) -> None:
    row_id = add_row(store, "f1@x", next_attempt_at=NOW + timedelta(hours=3))
    assert deliver(store, smtp_config) == DeliveryReport()
    assert deliver(store, smtp_config, force=True) == DeliveryReport(sent=1)
    assert row(store, row_id).status == "sent"
    assert sink[0].message_ids() == ["Message-ID: <f1@x>"]


class Broken:
    """A transport of its own (no base class needed) with a bug in ``send``."""

    def open(self) -> None:
        pass

    def send(self, envelope_from: str, recipient: str, raw: bytes) -> None:
        raise RuntimeError("a bug in the transport")

    def close(self) -> None:
        pass


def test_a_transport_bug_defers_the_row(store: Store, config: Config) -> None:
    row_id = add_row(store, "bug@x")
    assert deliver(store, config, transport=Broken()) == DeliveryReport(deferred=1)
    deferred = row(store, row_id)
    assert (deferred.status, deferred.last_error) == (
        "queued",
        "RuntimeError: a bug in the transport",
    )


def test_no_outgoing_route_claims_nothing(store: Store, db_url: str, tmp_path: Path) -> None:
    config = make_config(db_url, tmp_path, smarthost="", maildir="")
    row_id = add_row(store, "nowhere@x")
    with pytest.raises(ConfigError, match="smarthost"):
        deliver(store, config)
    assert (row(store, row_id).attempts, row(store, row_id).next_attempt_at) == (0, NOW)


class Crash(BaseException):
    """The process dies: nothing in ``deliver_due`` may catch this."""


class CrashAfterSend(SmtpTransport):
    def send(self, envelope_from: str, recipient: str, raw: bytes) -> None:
        super().send(envelope_from, recipient, raw)
        raise Crash


def test_a_crash_after_sending_resends_the_same_mail_after_the_lease(
    store: Store, smtp_config: Config, sink: tuple[Sink, int]
) -> None:
    row_id = add_row(store, "crash@x")
    crashing = CrashAfterSend("127.0.0.1", sink[1], "tracker.example.org")
    with pytest.raises(Crash):
        deliver(store, smtp_config, transport=crashing)
    claimed = row(store, row_id)
    assert (claimed.status, claimed.attempts, claimed.next_attempt_at) == ("queued", 1, NOW + LEASE)
    assert deliver(store, smtp_config, NOW + LEASE - timedelta(seconds=1)) == DeliveryReport()
    assert deliver(store, smtp_config, NOW + LEASE) == DeliveryReport(sent=1)
    first, second = sink[0].received
    assert first == second
    assert sink[0].message_ids() == ["Message-ID: <crash@x>"] * 2
    assert row(store, row_id).attempts == 2


def test_cancelling_hands_back_the_untried_rows(
    store: Store, smtp_config: Config, sink: tuple[Sink, int]
) -> None:
    handler = sink[0]
    ids = [add_row(store, f"k{i}@x") for i in range(3)]
    report = deliver(store, smtp_config, cancelled=lambda: len(handler.received) >= 1)
    assert report == DeliveryReport(sent=1, released=2)
    back = [row(store, i) for i in ids[1:]]
    assert [(r.status, r.attempts, r.next_attempt_at) for r in back] == [("queued", 0, NOW)] * 2
    assert deliver(store, smtp_config) == DeliveryReport(sent=2)


class StolenDuringSend(SmtpTransport):
    """While this worker sends, another one claims the same row (its lease ran out)."""

    def __init__(self, store: Store, port: int) -> None:
        super().__init__("127.0.0.1", port, "tracker.example.org")
        self.store = store

    def send(self, envelope_from: str, recipient: str, raw: bytes) -> None:
        with self.store.write() as session:
            session.execute(update(Outbox).values(attempts=Outbox.attempts + 1))
        super().send(envelope_from, recipient, raw)


def test_an_outcome_is_not_written_over_another_workers_claim(
    store: Store, smtp_config: Config, sink: tuple[Sink, int]
) -> None:
    row_id = add_row(store, "stolen@x")
    deliver(store, smtp_config, transport=StolenDuringSend(store, sink[1]))
    still = row(store, row_id)
    assert (still.status, still.attempts, still.sent_at) == ("queued", 2, None)


class MeetFirst(SmtpTransport):
    """Opens only once both workers have claimed their batches."""

    def __init__(self, port: int, barrier: threading.Barrier) -> None:
        super().__init__("127.0.0.1", port, "tracker.example.org")
        self.barrier = barrier

    def open(self) -> None:
        self.barrier.wait()
        super().open()


def test_two_workers_on_postgresql_send_each_row_once(
    store: Store, smtp_config: Config, sink: tuple[Sink, int]
) -> None:
    if store.dialect != "postgresql":
        pytest.skip("SQLite has one writer; concurrent claims need PostgreSQL")
    mids = [f"w{i}@x" for i in range(10)]
    for mid in mids:
        add_row(store, mid)
    barrier = threading.Barrier(2, timeout=20)

    def worker() -> DeliveryReport:
        return deliver(store, smtp_config, limit=5, transport=MeetFirst(sink[1], barrier))

    with ThreadPoolExecutor(2) as pool:
        reports = [f.result(timeout=60) for f in [pool.submit(worker), pool.submit(worker)]]
    assert reports == [DeliveryReport(sent=5), DeliveryReport(sent=5)]
    assert sorted(sink[0].message_ids()) == sorted(f"Message-ID: <{m}>" for m in mids)


def test_postgresql_skips_rows_another_worker_is_claiming(
    store: Store, smtp_config: Config, sink: tuple[Sink, int]
) -> None:
    if store.dialect != "postgresql":
        pytest.skip("row locks are a PostgreSQL feature")
    locked, free = add_row(store, "locked@x"), add_row(store, "free@x")
    with ThreadPoolExecutor(1) as pool, store.write() as session:
        session.execute(select(Outbox).where(Outbox.id == locked).with_for_update())
        report = pool.submit(deliver, store, smtp_config).result(timeout=20)
    assert report == DeliveryReport(sent=1)
    assert (row(store, locked).status, row(store, free).status) == ("queued", "sent")


def test_maildir_gets_the_exact_bytes(store: Store, config: Config) -> None:
    add_row(store, "m1@x")
    assert deliver(store, config) == DeliveryReport(sent=1)
    box = mailbox.Maildir(config.outgoing.maildir, create=False)
    files = list(Path(config.outgoing.maildir, "new").iterdir())
    assert len(box) == 1
    assert [f.read_bytes() for f in files] == [raw_mail("m1@x")]


def test_maildir_half_made_by_another_worker_is_completed(store: Store, config: Config) -> None:
    """Another worker has made the folder but not yet its tmp/new/cur (the moment two
    starting workers race in): we finish it instead of failing on it."""
    Path(config.outgoing.maildir).mkdir(parents=True)
    add_row(store, "m3@x")
    assert deliver(store, config) == DeliveryReport(sent=1)
    assert len(list(Path(config.outgoing.maildir, "new").iterdir())) == 1


def test_maildir_that_cannot_be_written_is_a_temporary_failure(
    store: Store, db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    config = make_config(db_url, tmp_path, maildir=str(tmp_path / "a-file" / "outgoing"))
    row_id = add_row(store, "m2@x")
    assert deliver(store, config) == DeliveryReport(deferred=1)
    deferred = row(store, row_id)
    assert deferred.status == "queued"
    assert deferred.last_error.startswith("cannot open Maildir ")


async def until(condition: Callable[[], bool], what: str) -> None:
    """Yield to the worker until ``condition`` holds; a guard against hanging, not a timer."""
    for _ in range(4000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


def test_run_worker_delivers_on_wake_and_stops(
    store: Store, smtp_config: Config, sink: tuple[Sink, int]
) -> None:
    handler = sink[0]
    add_row(store, "first@x", next_attempt_at=datetime(2000, 1, 1))

    async def scenario() -> None:
        wake, stop = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(run_worker(store, smtp_config, wake, stop, poll_seconds=3600))
        await until(lambda: len(handler.received) == 1, "first round delivers")
        add_row(store, "woken@x", next_attempt_at=datetime(2000, 1, 1))
        wake.set()  # with an hour between polls, only the wake can deliver this one
        await until(lambda: len(handler.received) == 2, "wake delivers")
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    asyncio.run(scenario())
    assert handler.message_ids() == ["Message-ID: <first@x>", "Message-ID: <woken@x>"]


class FlakyStore(Store):
    """The real store, except that ``write`` fails while ``down`` is set."""

    down = True
    calls = 0

    @contextmanager
    def write(self) -> Iterator[Session]:
        self.calls += 1
        if self.down:
            raise OperationalError("BEGIN", {}, ConnectionRefusedError("database is down"))
        with super().write() as session:
            yield session


def test_run_worker_survives_a_database_outage(
    store: Store, smtp_config: Config, sink: tuple[Sink, int], caplog: pytest.LogCaptureFixture
) -> None:
    flaky = FlakyStore(store.engine)
    add_row(store, "later@x", next_attempt_at=datetime(2000, 1, 1))

    async def scenario() -> None:
        wake, stop = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(run_worker(flaky, smtp_config, wake, stop, poll_seconds=0.01))
        await until(lambda: flaky.calls >= 3, "three failed rounds")
        flaky.down = False
        await until(lambda: len(sink[0].received) == 1, "delivery after the outage")
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    with caplog.at_level(logging.INFO, logger="mailtracker.deliver"):
        asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "database is down" in warnings[0]
    assert "outbox: delivering again" in caplog.messages


def test_log_lines_start_with_the_message_id(
    store: Store, smtp_config: Config, sink: tuple[Sink, int], caplog: pytest.LogCaptureFixture
) -> None:
    add_row(store, "log@x")
    with caplog.at_level(logging.INFO, logger="mailtracker.deliver"):
        deliver(store, smtp_config)
    assert caplog.messages == [f"<log@x> to {RCPT}: sent (attempt 1)"]


def add_issue(store: Store, number: int) -> int:
    with store.write() as session:
        tracker_id = session.scalar(select(Tracker.id).where(Tracker.name == "bugs"))
        issue = Issue(
            tracker_id=tracker_id,
            number=number,
            title="t",
            status="new",
            thread_root=f"issue{number}.bugs@tracker.example.org",
        )
        session.add(issue)
        session.flush()
        return issue.id


def test_outbox_rows_lists_queued_and_failed_with_json(store: Store) -> None:
    issue_id = add_issue(store, 7)
    queued = add_row(
        store,
        "q@x",
        issue_id=issue_id,
        attempts=2,
        last_error=TEMP,
        next_attempt_at=NOW + timedelta(minutes=5, microseconds=7),
    )
    failed = add_row(store, "f@x", status="failed", last_error=PERM)
    add_row(store, "s@x", status="sent", sent_at=NOW)
    assert [v.id for v in outbox_rows(store)] == [queued, failed]
    views = outbox_rows(store, include_sent=True)
    assert [(v.message_id, v.issue, v.status) for v in views] == [
        ("q@x", 7, "queued"),
        ("f@x", None, "failed"),
        ("s@x", None, "sent"),
    ]
    assert views[0].to_json() == {
        "id": queued,
        "message_id": "q@x",
        "tracker": "bugs",
        "issue": 7,
        "recipient": RCPT,
        "status": "queued",
        "attempts": 2,
        "next_attempt_at": "2030-01-01T12:05:00Z",
        "last_error": TEMP,
        "created_at": "2030-01-01T12:00:00Z",
        "sent_at": None,
    }
    assert views[2].to_json()["sent_at"] == "2030-01-01T12:00:00Z"


def test_a_maildir_delivery_is_synced_before_it_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row is marked sent right after: the file (synced by the stdlib, in ``tmp``) and
    its entry in ``new`` (synced by us, after the rename) are on disk."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))  # which file (Linux)
        real_fsync(fd)

    monkeypatch.setattr(transport_module.os, "fsync", fsync)
    box = MaildirTransport(str(tmp_path / "out"))
    box.open()
    box.send(SENDER, RCPT, raw_mail("synced@x"))
    (name,) = os.listdir(tmp_path / "out" / "new")
    assert synced == [str(tmp_path / "out" / "tmp" / name), str(tmp_path / "out" / "new")]


def test_a_ccd_address_that_is_not_ascii_gets_its_notifications_over_smtputf8(
    store: Store, db_url: str, tmp_path: Path
) -> None:
    """RFC 6531/6532 end to end: a Cc'd ``jörg@bücher.example`` joins the nosy list, the
    next comment is rendered with a UTF-8 To and sent with SMTPUTF8. Before, rendering it
    failed, and every later comment on the issue went to quarantine."""
    handler, port = Sink(), free_port()
    server = Controller(
        handler, hostname="127.0.0.1", port=port, server_kwargs={"enable_SMTPUTF8": True}
    )
    server.start()
    try:
        config = make_config(db_url, tmp_path, smarthost=f"127.0.0.1:{port}")
        head = "From: Alice <alice@example.com>\r\nTo: bugs@example.org\r\n"
        opened = f"{head}Cc: jörg@bücher.example\r\nSubject: Export fails\r\n"
        opened += "Message-ID: <eai-1@example.com>\r\n\r\nIt fails.\r\n"
        comment = f"{head}Subject: Re: Export fails\r\nIn-Reply-To: <eai-1@example.com>\r\n"
        comment += "Message-ID: <eai-2@example.com>\r\n\r\nStill fails.\r\n"
        envelope = Envelope("alice@example.com", ("bugs@example.org",))
        assert process(store, config, opened.encode(), envelope).stored == ("bugs/1",)
        outcome = process(store, config, comment.encode(), envelope)
        assert (outcome.stored, outcome.queued) == (("bugs/1",), 1)
        assert deliver_due(store, config) == DeliveryReport(sent=1)
    finally:
        server.stop()
    (got,) = handler.received
    assert got.rcpt_tos == ("jörg@bücher.example",)
    assert "SMTPUTF8" in got.mail_options
    assert "To: jörg@bücher.example\r\n".encode() in got.data
