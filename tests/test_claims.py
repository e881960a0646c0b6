"""Claims of dead workers are handed back at once; live and foreign ones keep their lease.

The owners are real processes: one still running, one that has exited, and this one.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from mailtracker import claims
from mailtracker.config import Config
from mailtracker.deliver import LEASE, deliver_due
from mailtracker.models import Outbox, utcnow
from mailtracker.store import Store
from tests.test_deliver import add_row, row

HOST = socket.gethostname()


def identity(process: subprocess.Popen[bytes]) -> str:
    ticks = claims._start_ticks(process.pid)
    assert ticks is not None
    return f"{HOST}:{process.pid}:{ticks}"


def dead_owner() -> str:
    """The claimant name of a process that ran and has exited."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        return identity(process)
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process
    process.kill()
    process.wait()


def test_who_is_gone(sleeper: subprocess.Popen[bytes]) -> None:
    alive = identity(sleeper)
    gone = dead_owner()
    pid, ticks = alive.split(":")[1:]
    assert not claims.is_gone(claims.owner())
    assert not claims.is_gone(alive)
    assert claims.is_gone(gone)
    assert claims.is_gone(f"{HOST}:{pid}:{int(ticks) + 1}")  # the PID, reused by another
    assert not claims.is_gone(f"elsewhere.example.org:{gone.split(':')[1]}:1")  # not ours
    assert not claims.is_gone("not a claimant")


def test_a_starting_worker_takes_back_only_dead_claims(
    store: Store, config: Config, sleeper: subprocess.Popen[bytes]
) -> None:
    later = utcnow() + LEASE
    owners = {
        "dead@x": dead_owner(),
        "alive@x": identity(sleeper),
        "foreign@x": "elsewhere.example.org:4242:77",
        "mine@x": claims.owner(),
    }
    ids = {mid: add_row(store, mid, attempts=1, next_attempt_at=later) for mid in owners}
    with store.write() as session:
        for mid, owner in owners.items():
            session.execute(update(Outbox).where(Outbox.id == ids[mid]).values(claimed_by=owner))
    assert claims.release_gone(store) == 1
    assert claims.release_gone(store) == 0  # handed back once
    taken_back = row(store, ids["dead@x"])
    assert taken_back.claimed_by is None and taken_back.next_attempt_at <= utcnow()
    assert taken_back.attempts == 1  # the try the dead worker may have made still counts
    for mid in ("alive@x", "foreign@x", "mine@x"):
        assert row(store, ids[mid]).next_attempt_at == later
    report = deliver_due(store, config, now=utcnow() + timedelta(seconds=1))
    assert report.total == 1  # only the dead worker's mail is due before the lease ends


def test_an_outcome_gives_the_lease_up(store: Store, config: Config) -> None:
    row_id = add_row(store, "plain@x", next_attempt_at=utcnow())
    deliver_due(store, config)
    done = row(store, row_id)
    assert done.status == "sent" and done.claimed_by is None
