"""``serve`` with ``[smtp] processes = 2``: a supervisor and two gateway processes on the
same sockets, on SQLite and PostgreSQL, driven over real SMTP and LMTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailtracker.models import Message
from mailtracker.prefork import QUICK_DEATHS_LIMIT
from mailtracker.store import Store
from mailtracker.sysexits import EX_OSERR, EX_SOFTWARE
from tests.conftest import MESSAGES
from tests.harness import free_port, lmtp_send, send, start_serve
from tests.test_faults import Sink, queued_ids, reply, sink, wait_until

__all__ = ["sink"]  # the smarthost fixture, shared with test_faults

ROOT = Path(__file__).resolve().parents[1]


def prefork_config(tmp_path: Path, db_url: str, port: int, sink_port: int) -> Path:
    path = tmp_path / "prefork.toml"
    path.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f'[smtp]\nlisten = "127.0.0.1:{port}"\nhostname = "tracker.example.org"\nprocesses = 2\n'
        f'[outgoing]\nsmarthost = "127.0.0.1:{sink_port}"\n'
        f'[lmtp]\nlisten = "{tmp_path / "lmtp.sock"}"\n[web]\nlisten = ""\n'
        '[[trackers]]\nname = "bugs"\naddress = "bugs@example.org"\ntitle = "Example bugs"\n'
    )
    return path


def gateway_pids(supervisor: int) -> set[int]:
    """The supervisor's children, as the kernel lists them (none once it has exited)."""
    try:
        children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    except OSError:
        return set()
    return {int(pid) for pid in children}


def start(config: Path, port: int) -> subprocess.Popen[bytes]:
    """``serve`` logging to a file beside its configuration: a pipe nobody reads until the
    end would fill with two processes' lines and stop them mid-mail."""
    with (config.parent / "serve.log").open("wb") as log:
        return start_serve(config, port, stderr=log)


def stop(proc: subprocess.Popen[bytes], config: Path) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(90)
    return code, (config.parent / "serve.log").read_text()


def test_two_processes_take_mail_on_shared_sockets_and_send_each_notification_once(
    db_url: str, store: Store, tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    handler, sink_port = sink
    port = free_port()
    config = prefork_config(tmp_path, db_url, port, sink_port)
    proc = start(config, port)
    lmtp = str(tmp_path / "lmtp.sock")
    try:
        wait_until(lambda: len(gateway_pids(proc.pid)) == 2 and os.path.exists(lmtp))
        children = gateway_pids(proc.pid)
        new = (MESSAGES / "new-issue.eml").read_bytes()
        assert send(port, new, ["bugs@example.org"])[0] == 250
        with ThreadPoolExecutor(8) as pool:  # eight connections at once, half of them LMTP
            smtp = [pool.submit(send, port, reply(n), ["bugs+1@example.org"]) for n in range(20)]
            over_lmtp = [
                pool.submit(lmtp_send, lmtp, reply(n), ["bugs+1@example.org"])
                for n in range(20, 40)
            ]
            assert [f.result()[0] for f in smtp] == [250] * 20
            assert [f.result() for f in over_lmtp] == [[b"250 2.0.0 Ok: stored as bugs/1\r\n"]] * 20
        assert send(port, reply(3), ["bugs+1@example.org"])[0] == 250  # a retry: no duplicate
        wait_until(lambda: queued_ids(store) <= set(handler.ids))
    finally:
        code, log = stop(proc, config)
    assert code == 0, log
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)
    assert not os.path.exists(lmtp)  # the supervisor removed the socket file it made
    assert {f"[{pid}]: SMTP listening" in log for pid in children} == {True}
    with store.read() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 41
    assert max(handler.ids.values()) == 1 and len(handler.ids) == len(queued_ids(store))


def test_a_gateway_process_that_dies_is_replaced(
    sqlite_url: str, tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    port = free_port()
    config = prefork_config(tmp_path, sqlite_url, port, sink[1])
    proc = start(config, port)
    try:
        wait_until(lambda: len(gateway_pids(proc.pid)) == 2)
        killed = min(gateway_pids(proc.pid))
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: len(gateway_pids(proc.pid) - {killed}) == 2)
        new = (MESSAGES / "new-issue.eml").read_bytes()
        assert send(port, new, ["bugs@example.org"])[0] == 250
    finally:
        code, log = stop(proc, config)
    assert code == 0, log
    assert f"gateway process {killed} was killed by SIGKILL; starting another" in log


@pytest.mark.parametrize("processes", [1, 2])
def test_a_port_in_use_stops_serve_with_one_line(tmp_path: Path, processes: int) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "taken.toml"
        path.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "t.db"}"\n'
            f'[smtp]\nlisten = "127.0.0.1:{port}"\nprocesses = {processes}\n[web]\nlisten = ""\n'
        )
        done = subprocess.run(
            [sys.executable, "-m", "mailtracker", "serve", "-c", str(path)],
            capture_output=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    assert done.returncode == EX_OSERR
    last = done.stderr.decode().strip().splitlines()[-1]
    assert last == f"mailtracker: smtp.listen 127.0.0.1:{port}: Address already in use"
    assert "Traceback" not in done.stderr.decode()


def test_the_supervisor_gives_up_when_its_processes_keep_dying_at_start(
    sqlite_url: str, tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    """Five deaths in a row, each within 10 s of the start: restarting will not fix it."""
    port = free_port()
    config = prefork_config(tmp_path, sqlite_url, port, sink[1])
    proc = start(config, port)
    killed: set[int] = set()
    for _ in range(QUICK_DEATHS_LIMIT):
        wait_until(lambda: proc.poll() is not None or len(gateway_pids(proc.pid) - killed) == 2)
        if proc.poll() is not None:
            break
        victim = min(gateway_pids(proc.pid) - killed)
        os.kill(victim, signal.SIGKILL)
        killed.add(victim)
    assert proc.wait(90) == EX_SOFTWARE
    log = (tmp_path / "serve.log").read_text()
    assert f"gateway processes died {QUICK_DEATHS_LIMIT} times in a row at start" in log
    assert not os.path.exists(tmp_path / "lmtp.sock")
