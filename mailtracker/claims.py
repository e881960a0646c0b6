"""Who holds an outbox claim, and handing back the claims of a worker that died.

A claimed notification waits for its lease (``deliver.LEASE``, 10 minutes) before another
worker may take it, because a worker that is merely slow must not have its mail sent
twice. But a worker on this host whose process is gone is not slow: its claims can be
taken back at once, as Postfix's queue manager moves its ``active`` queue back when it
starts. So each claim names its owner, ``HOST:PID:START`` (``START``: the process's start
time in clock ticks since boot, from ``/proc``, so a PID reused by another process is not
taken for the old one), and a starting delivery worker hands back the claims of owners on
its own host that no longer run. Claims of other hosts (several gateways on PostgreSQL)
wait for their lease: their processes cannot be checked from here.
"""

from __future__ import annotations

import logging
import os
import socket
from functools import cache
from pathlib import Path

from sqlalchemy import select, update

from mailtracker.models import Outbox, utcnow
from mailtracker.store import Store, table

__all__ = ["is_gone", "owner", "release_gone"]

log = logging.getLogger(__name__)

_OUTBOX = table(Outbox)


@cache
def owner() -> str:
    """This process as a claim's owner: ``HOST:PID:START``."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or ''}"


def is_gone(claimant: str) -> bool:
    """Whether ``claimant`` names a process of this host that no longer runs; an owner of
    another host, or one that cannot be read, is taken to be alive."""
    parts = claimant.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    host, pid, started = parts[0], int(parts[1]), parts[2]
    if host != socket.gethostname():
        return False
    if Path("/proc/self/stat").exists():
        now_started = _start_ticks(pid)
        return now_started is None or (started != "" and str(now_started) != started)
    return not _signalable(pid)


def release_gone(store: Store) -> int:
    """Make the claims of this host's dead workers due now; returns how many."""
    now = utcnow()
    with store.write() as session:
        conn = session.connection()
        claimants = conn.scalars(
            select(_OUTBOX.c.claimed_by)
            .where(_OUTBOX.c.status == "queued", _OUTBOX.c.claimed_by.is_not(None))
            .distinct()
        ).all()
        gone = [c for c in claimants if c is not None and c != owner() and is_gone(c)]
        if not gone:
            return 0
        released = conn.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.status == "queued", _OUTBOX.c.claimed_by.in_(gone))
            .values(next_attempt_at=now, claimed_by=None)
        ).rowcount
    log.info("outbox: %d mails claimed by workers that died handed back (%s)", released, gone)
    return int(released)


def _start_ticks(pid: int) -> int | None:
    """The process's start time (field 22 of ``/proc/PID/stat``), None if it is not there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def _signalable(pid: int) -> bool:
    """Without ``/proc``: whether a process with this PID exists (signal 0 tests only)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
