"""Deliver the outbox: send each queued mail to the smarthost (or a Maildir), with retries.

The outbox rows were committed with the change that caused them (ARCHITECTURE rule 4), so
this worker is the only place a notification leaves the system. It must never lose one and
should send each one once:

- A batch is *claimed* in one short transaction: ``attempts + 1`` and ``next_attempt_at =
  now + LEASE``. On PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets any number of workers claim
  side by side; on SQLite ``store.write()`` already holds the one write lock.
- The mail is sent outside any transaction, then its outcome is written in a new short
  transaction, fenced on ``attempts`` so a worker whose lease ran out cannot overwrite the
  row another worker claimed since.
- A worker that dies mid-batch leaves its rows claimed; after the lease they are claimed
  again and sent with the same bytes, hence the same Message-ID, so receivers dedupe. A
  claim names its worker (``claims.py``), so a worker starting on the same host takes
  back the claims of a dead one at once.

Transports (smarthost, Maildir) live in ``transport.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Update, bindparam, func, select, update
from sqlalchemy.exc import DBAPIError

from mailtracker import claims as claims_module
from mailtracker.config import Config
from mailtracker.models import Outbox, utcnow
from mailtracker.store import Store, table
from mailtracker.transport import Transport, TransportError, describe, transport_for

__all__ = [
    "BACKOFF",
    "LEASE",
    "MAX_AGE",
    "DeliveryReport",
    "backoff",
    "deliver_all_now",
    "deliver_due",
    "run_worker",
]

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=10)
MAX_AGE = timedelta(days=5)
BACKOFF = tuple(timedelta(minutes=m) for m in (1, 5, 15, 30, 60, 120, 240))
BATCH = 100
# Outcomes written per transaction while a batch is sent.
RECORD_EVERY = 25
# Stop sending a batch well before its lease runs out, so no other worker can claim a row
# this one is still about to send.
SEND_BUDGET = LEASE / 2


@dataclass(frozen=True)
class DeliveryReport:
    """What one ``deliver_due`` call did; ``released`` rows were claimed but not tried."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    released: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.deferred + self.failed + self.released


@dataclass(frozen=True)
class _Claim:
    id: int
    message_id: str
    envelope_from: str
    recipient: str
    raw: bytes
    attempts: int
    created_at: datetime


_OUTBOX = table(Outbox)
_CLAIMED = [_OUTBOX.c[f.name] for f in fields(_Claim)]


def backoff(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failed try."""
    return BACKOFF[min(max(attempts, 1), len(BACKOFF)) - 1]


def deliver_due(
    store: Store,
    config: Config,
    *,
    now: datetime | None = None,
    force: bool = False,
    limit: int = BATCH,
    transport: Transport | None = None,
    cancelled: Callable[[], bool] | None = None,
    keep_open: bool = False,
) -> DeliveryReport:
    """Claim due rows (every queued row if ``force``), send them and record each outcome.

    ``now`` fixes the clock (tests); ``cancelled`` is polled between mails, and rows not yet
    tried when it turns true are handed back at once. With ``keep_open`` the transport is
    left open for the next batch (the worker's, which closes it when idle).
    """
    chosen = transport if transport is not None else transport_for(config)  # before claiming
    clock = utcnow if now is None else (lambda: _naive_utc(now))
    claims = _claim(store, clock(), force, limit)
    if not claims:
        return DeliveryReport()
    sent = _send_batch(store, chosen, claims, clock, cancelled or (lambda: False))
    if not keep_open:
        chosen.close()
    return sent


def deliver_all_now(store: Store, config: Config) -> DeliveryReport:
    """``mailtracker deliver --once``: try every queued mail once, whatever its backoff or
    lease says (after a crash, rows a dead worker had claimed need not wait their lease)."""
    with store.read() as session:
        queued = session.scalar(select(func.count()).where(Outbox.status == "queued")) or 0
    if not queued:
        return DeliveryReport()
    return deliver_due(store, config, force=True, limit=int(queued))


def _claim(store: Store, now: datetime, force: bool, limit: int) -> list[_Claim]:
    query = select(*_CLAIMED).where(_OUTBOX.c.status == "queued")
    if not force:
        query = query.where(_OUTBOX.c.next_attempt_at <= now)
    query = query.order_by(_OUTBOX.c.next_attempt_at, _OUTBOX.c.id).limit(limit)
    if store.dialect == "postgresql":
        query = query.with_for_update(skip_locked=True)
    with store.write() as session:
        conn = session.connection()  # plain rows: one UPDATE claims them all
        claims = [_Claim(*row) for row in conn.execute(query)]
        if claims:
            lease = {
                "attempts": _OUTBOX.c.attempts + 1,
                "next_attempt_at": now + LEASE,
                "claimed_by": claims_module.owner(),
            }
            ids = [claim.id for claim in claims]
            conn.execute(update(_OUTBOX).where(_OUTBOX.c.id.in_(ids)).values(lease))
    return [replace(claim, attempts=claim.attempts + 1) for claim in claims]


def _send_batch(
    store: Store,
    transport: Transport,
    claims: Sequence[_Claim],
    clock: Callable[[], datetime],
    cancelled: Callable[[], bool],
) -> DeliveryReport:
    tally: Counter[str] = Counter()
    deadline = time.monotonic() + SEND_BUDGET.total_seconds()
    broken = _open(transport)
    tried: list[tuple[_Claim, TransportError | None]] = []
    try:
        for index, claim in enumerate(claims):
            if cancelled() or time.monotonic() > deadline:
                tally["released"] += _release(store, claims[index:], clock())
                break
            tried.append((claim, broken or _attempt(transport, claim)))
            if len(tried) >= RECORD_EVERY:
                tally.update(_record(store, tried, clock()))
                tried = []
        tally.update(_record(store, tried, clock()))
    except BaseException:
        transport.close()
        raise
    return DeliveryReport(tally["sent"], tally["deferred"], tally["failed"], tally["released"])


def _open(transport: Transport) -> TransportError | None:
    try:
        transport.open()
    except TransportError as exc:
        log.warning("outbox: cannot open the transport: %s", exc.reason)
        return exc
    return None


def _attempt(transport: Transport, claim: _Claim) -> TransportError | None:
    try:
        transport.send(claim.envelope_from, claim.recipient, claim.raw)
    except TransportError as exc:
        return exc
    except Exception as exc:  # a transport bug must not leave the row claimed for good
        log.exception("%s to %s: transport error", _mid(claim), claim.recipient)
        return TransportError(True, f"{type(exc).__name__}: {exc}")
    return None


def _record(
    store: Store, tried: Sequence[tuple[_Claim, TransportError | None]], now: datetime
) -> list[str]:
    """Write each outcome whose row is still ours, in one transaction; returns the kinds
    (sent, deferred or failed). A transaction per mail took the write lock thousands of
    times for one fan-out; a crash before this runs re-sends at most ``RECORD_EVERY``
    mails after the lease, with the same bytes (rule 4)."""
    if not tried:
        return []
    outcomes = [(claim, *_outcome(claim, error, now)) for claim, error in tried]
    with store.write() as session:
        conn = session.connection()  # plain UPDATEs: no ORM objects to keep in step
        owned = [
            conn.execute(_fenced(frozenset(values)), _fence(claim) | values).first()
            for claim, _, values in outcomes
        ]
    for (claim, kind, values), mine in zip(outcomes, owned, strict=True):
        if mine is None:
            log.warning(
                "%s to %s: lease lost, outcome not recorded: %s", _mid(claim), claim.recipient, kind
            )
        else:
            _log_outcome(claim, kind, values)
    return [kind for _, kind, _ in outcomes]


def _outcome(
    claim: _Claim, error: TransportError | None, now: datetime
) -> tuple[str, dict[str, Any]]:
    if error is None:
        return "sent", {"status": "sent", "sent_at": now}
    if not error.temporary:
        return "failed", {"status": "failed", "last_error": error.reason}
    if now - claim.created_at >= MAX_AGE:
        tries = f"{claim.attempts} attempt{'s' if claim.attempts != 1 else ''}"
        return "failed", {
            "status": "failed",
            "last_error": f"gave up after {tries}: {error.reason}",
        }
    retry = now + backoff(claim.attempts)
    return "deferred", {"next_attempt_at": retry, "last_error": error.reason}


def _release(store: Store, claims: Sequence[_Claim], now: datetime) -> int:
    """Hand back rows claimed but not tried: due at once, the claim not counted."""
    statement = _fenced(frozenset(("attempts", "next_attempt_at")))
    with store.write() as session:
        conn = session.connection()
        for claim in claims:
            conn.execute(
                statement, _fence(claim) | {"attempts": claim.attempts - 1, "next_attempt_at": now}
            )
    log.info("outbox: handed back %d claimed mails", len(claims))
    return len(claims)


def _fence(claim: _Claim) -> dict[str, Any]:
    """The parameters that pick the claim's row for ``_fenced``."""
    return {"claim_id": claim.id, "claim_attempts": claim.attempts}


@cache
def _fenced(columns: frozenset[str]) -> Update:
    """An UPDATE of ``columns`` (values bound per row) of a row only while it is still this
    worker's claim, which it gives up; built once per set of columns (four in all), since
    building the statement cost more than running it."""
    values: dict[str, Any] = {name: bindparam(name) for name in sorted(columns)}
    return (
        update(_OUTBOX)
        .where(_OUTBOX.c.id == bindparam("claim_id"))
        .where(_OUTBOX.c.attempts == bindparam("claim_attempts"))
        .where(_OUTBOX.c.status == "queued")
        .values({**values, "claimed_by": None})
        .returning(_OUTBOX.c.id)
    )


def _log_outcome(claim: _Claim, kind: str, values: dict[str, Any]) -> None:
    head = f"{_mid(claim)} to {claim.recipient}"
    if kind == "sent":
        log.info("%s: sent (attempt %d)", head, claim.attempts)
    elif kind == "deferred":
        when = _iso(values["next_attempt_at"])
        log.info("%s: deferred until %s: %s", head, when, values["last_error"])
    else:
        log.warning("%s: failed: %s", head, values["last_error"])


async def run_worker(
    store: Store,
    config: Config,
    wake: asyncio.Event,
    stop: asyncio.Event,
    poll_seconds: float = 1.0,
) -> None:
    """Deliver whenever ``wake`` is set, or every ``poll_seconds``, until ``stop`` is set."""
    log.info("outbox: delivery worker started")
    with suppress(DBAPIError):  # the database is down: the leases still run out
        await asyncio.to_thread(claims_module.release_gone, store)
    problem = ""
    transport = transport_for(config)  # one for every round: its connection is kept
    try:
        while not stop.is_set():
            wake.clear()
            report, problem = await _round(store, config, stop, problem, transport)
            if report is not None and report.total >= BATCH and not report.released:
                continue  # a full batch: more may be due right now
            if not await _wait(wake, stop, poll_seconds):  # idle: hang up on the smarthost
                await asyncio.to_thread(transport.close)
    finally:
        await asyncio.to_thread(transport.close)
    log.info("outbox: delivery worker stopped")


def _work(
    store: Store, config: Config, cancelled: Callable[[], bool], transport: Transport
) -> DeliveryReport:
    """One round of the worker: make the daily digests that are due, then deliver."""
    from mailtracker.digest import run_due

    run_due(store, config, utcnow())
    return deliver_due(store, config, cancelled=cancelled, transport=transport, keep_open=True)


async def _round(
    store: Store, config: Config, stop: asyncio.Event, problem: str, transport: Transport
) -> tuple[DeliveryReport | None, str]:
    """One ``deliver_due`` in a thread; a failure is logged once, not every round."""
    try:
        # Event.is_set only reads a flag, so the worker thread may poll it.
        report = await asyncio.to_thread(_work, store, config, stop.is_set, transport)
    except Exception as exc:
        now_problem = describe(exc)
        if now_problem != problem:
            trace = not isinstance(exc, DBAPIError)  # a database that is down needs no trace
            log.warning("outbox: delivery failed, will retry: %s", now_problem, exc_info=trace)
        return None, now_problem
    if problem:
        log.info("outbox: delivering again")
    return report, ""


async def _wait(wake: asyncio.Event, stop: asyncio.Event, seconds: float) -> bool:
    """Wait for a wake-up, a stop or the poll interval; True unless the interval ran out."""
    waiters = [asyncio.create_task(wake.wait()), asyncio.create_task(stop.wait())]
    try:
        done, _ = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    return bool(done)


def _naive_utc(moment: datetime) -> datetime:
    """Tables hold naive UTC; an aware time is converted, a naive one taken as UTC."""
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)


def _iso(moment: datetime) -> str:
    return _naive_utc(moment).replace(microsecond=0).isoformat() + "Z"


def _mid(claim: _Claim) -> str:
    mid = claim.message_id
    return mid if mid.startswith("<") else f"<{mid}>"
