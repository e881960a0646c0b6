"""Servers under test, each in its own process: ``mailtracker serve`` and the null server.

Why processes: the client must not share a GIL with what it measures, and ``serve`` is
measured as operators run it (its own event loop, thread pool and delivery worker).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mix import AUTHSERV, TRACKER

__all__ = [
    "HERE",
    "PYTHON",
    "ROOT",
    "Server",
    "drain",
    "free_port",
    "null_server",
    "postgres_database",
    "serve",
    "write_config",
]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PYTHON = sys.executable
MAILTRACKER = str(Path(PYTHON).with_name("mailtracker"))
PG_ADMIN = os.environ.get(
    "MAILTRACKER_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def plain_install(workdir: Path) -> str:
    """A ``mailtracker`` command as a regular install has it, for pipe mode.

    The bench runs from a development venv, where ``pip install -e`` (setuptools' default
    editable mode) adds an import hook that every Python process of the venv loads at
    start: 5 to 15 ms of each ``ingest``, which no deployment following
    docs/deployment.md pays (it installs in ``strict`` mode: a static path, no hook). So:
    a venv whose only ``.pth`` names this source tree and the development venv's packages,
    and a console script like pip's."""
    home = workdir / "plain-venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(home)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    paths = [str(HERE.parents[1]), sysconfig.get_paths()["purelib"]]
    (home / "lib" / version / "site-packages" / "mailtracker-bench.pth").write_text(
        "\n".join(paths) + "\n"
    )
    script = home / "bin" / "mailtracker"
    script.write_text(
        f"#!{home / 'bin' / 'python'}\nimport sys\nfrom mailtracker.cli import main\n"
        "if __name__ == '__main__':\n    sys.exit(main())\n"
    )
    script.chmod(0o755)
    return str(script)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """A running server process and the port it listens on."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    url: str = ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def cpu_seconds(self) -> float:
        """User and system CPU the server has used so far (``/proc/PID/stat``): its process
        and, for ``serve`` with ``[smtp] processes``, the gateway processes it forked."""
        return sum(_cpu_seconds(pid) for pid in _with_children(self.process.pid))

    def rss_kb(self, field: str = "VmRSS") -> int:
        """``VmRSS`` (now) or ``VmHWM`` (peak) of the server process, in KiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise LookupError(field)


def _with_children(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *(int(child) for child in children)]


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0  # it ended between the listing and now
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_listening(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            code = server.process.returncode
            raise RuntimeError(f"{server.name} exited with {code}; see {server.log.name}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), 1) as sock:
                if sock.recv(512).startswith(b"220"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{server.name} did not start; see {server.log.name}")


def _start(name: str, argv: list[str], port: int, workdir: Path) -> Server:
    log = (workdir / f"{name}.log").open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    server = Server(name, port, process, log)
    try:
        _wait_listening(server)
    except RuntimeError:
        server.stop()  # never leave a half-started server behind
        raise
    return server


def null_server(workdir: Path, counting: bool = False) -> Server:
    port = free_port()
    argv = [PYTHON, str(HERE / "nullserver.py"), str(port), *(["--count"] if counting else [])]
    return _start("null" + ("-sink" if counting else ""), argv, port, workdir)


def write_config(
    workdir: Path,
    url: str,
    port: int,
    smarthost: str = "",
    lmtp: str = "",
    unknown_senders: str = "register",
    processes: int = 1,
) -> Path:
    """A tracker configured as a site would be, plus what the bench needs: trusted
    Authentication-Results (so commands are verified without DNS), limits that a bench
    of a few thousand mails from 400 senders cannot reach (their queries still run), and
    no web listener (several gateways run at once; the web is not on the mail path)."""
    outgoing = f'smarthost = "{smarthost}"' if smarthost else f'maildir = "{workdir / "outgoing"}"'
    text = f"""
[database]
url = "{url}"

[smtp]
listen = "127.0.0.1:{port}"
hostname = "tracker.bench.example"
max_connections = 200
max_connections_per_ip = 100
processes = {processes}

[outgoing]
{outgoing}

[web]
listen = ""

[lmtp]
listen = "{lmtp}"

[authentication]
trusted_authserv_ids = ["{AUTHSERV}"]
verify_dkim = false

[limits]
new_issues_per_hour = 1000000
messages_per_issue_per_hour = 1000000
automatic_per_issue_per_day = 1000000

[[trackers]]
name = "tracker"
address = "{TRACKER}"
title = "Bench tracker"
unknown_senders = "{unknown_senders}"
"""
    path = workdir / "mailtracker.toml"
    path.write_text(text)
    return path


def serve(
    name: str,
    workdir: Path,
    url: str,
    smarthost: str = "",
    lmtp: str = "",
    unknown_senders: str = "register",
    processes: int = 1,
) -> Server:
    """``mailtracker serve`` on ``url`` in ``workdir``; outgoing mail to ``smarthost``, or
    to a Maildir there; an LMTP listener at ``lmtp`` if given; mail from people it does not
    know registered, or held for a moderator (``unknown_senders = "moderate"``); with
    ``processes`` gateway processes."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = write_config(workdir, url, port, smarthost, lmtp, unknown_senders, processes)
    server = _start(name, [MAILTRACKER, "serve", "-c", str(config)], port, workdir)
    server.url = url
    return server


def drain(server: Server, limit: float = 120.0) -> None:
    """Wait until ``server`` has delivered its outbox, so the notifications of one round
    are not sent on the next round's (another server's) time."""
    from sqlalchemy import create_engine, text

    engine = create_engine(server.url)
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                queued = conn.scalar(text("SELECT count(*) FROM outbox WHERE status = 'queued'"))
            if not queued:
                return
            time.sleep(0.1)
    finally:
        engine.dispose()


def postgres_database(name: str) -> str | None:
    """A fresh PostgreSQL database for the bench, or ``None`` when the server is not there."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    try:
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    except OperationalError:
        return None
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def drop_postgres_database(name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
