"""One SQLite writer at a time, across threads and processes, woken the moment it is free.

SQLite allows one write transaction at a time, and a connection that finds the lock taken
polls for it (``sqlite3_busy_timeout`` sleeps 1, 2, 5 … up to 100 ms between tries). Under
load that turns a 1 ms wait into tens of milliseconds and a p99 of a second (measured with
four connections in one process). So writers queue on a lock of their own before ``BEGIN
IMMEDIATE``: a thread lock within the process and, for a database file, ``flock(2)`` on a
file beside it, which the kernel grants to the next waiter as soon as it is released. That
covers every writer that goes through ``Store``: the processes of ``serve`` (``[smtp]
processes``), a piped ``ingest`` and the admin commands. Anything else that writes the file
(the ``sqlite3`` shell) still falls back on the busy timeout, as before.

The lock file is opened per process (``flock`` locks belong to an open file, which a forked
child would share with its parent), and lazily, so opening a ``Store`` for a read writes
nothing beside the database. It is opened read-only and made with the database's mode and,
when made by root, its owner (as SQLite makes ``-wal`` and ``-shm``), so an admin command
run as root does not lock ``serve`` out; if it cannot be opened, writers fall back on the
busy timeout, with a warning.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from types import TracebackType

__all__ = ["WriterLock", "lock_path"]

log = logging.getLogger(__name__)


def lock_path(database: str | None) -> str | None:
    """The lock file of an SQLite database file (``None`` for an in-memory database)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return f"{database}-writer.lock"


class WriterLock:
    """A re-entrant lock that, for a database file, also holds ``flock`` on the file's lock
    file (``lock_path``) while taken."""

    def __init__(self, database: str | None) -> None:
        self.database = database
        self.path = lock_path(database)
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._fd_pid = 0

    def __enter__(self) -> WriterLock:
        self._thread_lock.acquire()
        try:
            fd = self._file() if self._depth == 0 and self.path is not None else None
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)  # releases the GIL while it waits
        except BaseException:
            self._thread_lock.release()
            raise
        self._depth += 1
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def _file(self) -> int | None:
        """This process's descriptor of the lock file: a child of ``fork`` opens its own."""
        assert self.path is not None
        if self._fd is None or self._fd_pid != os.getpid():
            try:
                self._fd = _open(self.path, self.database)
            except OSError as exc:
                log.warning("%s: %s; SQLite's busy timeout orders writers instead", self.path, exc)
                self.path = self._fd = None
                return None
            self._fd_pid = os.getpid()
        return self._fd

    def close(self) -> None:
        if self._fd is not None and self._fd_pid == os.getpid():
            os.close(self._fd)
        self._fd = None


def _open(path: str, database: str | None) -> int:
    """The lock file, made with the database's mode and, by root, its owner."""
    try:
        made = os.stat(database) if database else None
    except FileNotFoundError:
        made = None
    mode = made.st_mode & 0o666 if made is not None else 0o644
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, mode)
    if made is not None and os.geteuid() == 0 and os.fstat(fd).st_uid != made.st_uid:
        os.fchown(fd, made.st_uid, made.st_gid)
    return fd
