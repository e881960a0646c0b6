"""The SQLite writers' lock: held across processes, re-entrant, per process after fork."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
from pathlib import Path

import pytest
from sqlalchemy import text

from mailtracker.store import Store, make_engine
from mailtracker.writerlock import WriterLock, lock_path


def _try_lock(path: str) -> bool:
    """Whether another open file of ``path`` can take the lock right now."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_held_for_other_processes_while_taken_and_freed_after(tmp_path: Path) -> None:
    lock = WriterLock(str(tmp_path / "db"))
    with lock:
        assert lock.path is not None and not _try_lock(lock.path)
        with lock:  # re-entrant: a nested block neither blocks nor frees it
            pass
        assert not _try_lock(lock.path)
    assert _try_lock(lock.path)
    lock.close()


def test_a_forked_child_opens_its_own_file(tmp_path: Path) -> None:
    """A child that inherited the parent's descriptor would share its lock (flock(2))."""
    lock = WriterLock(str(tmp_path / "db"))
    with lock:
        pass
    parent_fd = lock._fd
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[bool] = context.Queue()
    child = context.Process(target=_child_reports, args=(lock, parent_fd, queue))
    with lock:
        child.start()
        assert queue.get(timeout=30) is True  # its own file, which our lock excludes
    child.join(30)
    assert child.exitcode == 0 and lock._fd == parent_fd
    lock.close()


def _child_reports(
    lock: WriterLock, parent_fd: int | None, queue: multiprocessing.Queue[bool]
) -> None:
    fd = lock._file()
    assert fd is not None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the inherited file would succeed
    except BlockingIOError:
        queue.put(fd != parent_fd)
    else:
        queue.put(False)


def test_an_unopenable_lock_file_falls_back_to_the_busy_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lock = WriterLock(str(tmp_path / "missing" / "db"))
    with lock:
        pass
    assert lock.path is None and "busy timeout" in caplog.text


def test_the_store_takes_it_for_sqlite_files_only(tmp_path: Path) -> None:
    database = tmp_path / "tracker.db"
    assert lock_path(str(database)) == f"{database}-writer.lock"
    assert lock_path(":memory:") is None and lock_path("") is None
    store = Store(make_engine(f"sqlite:///{database}"))
    with store.write() as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
        assert not _try_lock(f"{database}-writer.lock")
    assert _try_lock(f"{database}-writer.lock")
    store.close()
