"""``mailtracker ingest`` handing mail to the running gateway over LMTP, and falling back to
the pipeline in its own process when no gateway answers: same verdicts, same exit codes,
and the cheap path really is cheap (what it imports is checked in a real process)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from mailtracker import sysexits
from mailtracker.cli import ingest_arguments
from mailtracker.config import Config, LmtpConfig
from mailtracker.handoff import combined, hand_over
from mailtracker.models import Issue
from mailtracker.pipe import _read_args
from mailtracker.store import Store
from tests.conftest import CONFIG_FILE, MESSAGES
from tests.harness import running_gateway
from tests.inspect_db import count, show

NEW = (MESSAGES / "new-issue.eml").read_bytes()
ROOT = Path(__file__).resolve().parents[1]

# Runs ``main`` and reports which expensive modules the process loaded.
PROBE = (
    "import sys; from mailtracker.cli import main; code = main(sys.argv[1:]); "
    "heavy = ('sqlalchemy', 'mailtracker.config', 'logging', 'dkim', 'smtplib', 'argparse', "
    "'dataclasses', 'tomllib'); "
    "print(' '.join(m for m in heavy if m in sys.modules)); sys.exit(code)"
)


def ingest(
    config_path: Path, raw: bytes, *args: str, probe: bool = False
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    head = ["-c", PROBE] if probe else ["-m", "mailtracker"]
    return subprocess.run(
        [sys.executable, *head, "ingest", "-c", str(config_path), *args],
        input=raw,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def socket_path(tmp_path: Path) -> Path:
    return tmp_path / "lmtp.sock"


@pytest.fixture
def piped_config(db_url: str, tmp_path: Path, socket_path: Path) -> Path:
    """The operator's file: the gateway's LMTP socket, given relative to the file."""
    path = tmp_path / "mailtracker.toml"
    path.write_text(CONFIG_FILE.format(url=db_url) + '\n[lmtp]\nlisten = "lmtp.sock"\n')
    return path


@pytest.fixture
def gateway_config(config: Config, socket_path: Path) -> Config:
    return replace(config, lmtp=LmtpConfig(listen=str(socket_path)))


def issues(config: Config) -> int:
    store = Store.open(config)
    try:
        return count(store, Issue)
    finally:
        store.close()


def test_handed_over_mail_is_stored_without_loading_the_pipeline(
    gateway_config: Config, piped_config: Path
) -> None:
    with running_gateway(gateway_config):
        done = ingest(piped_config, NEW, "--recipient", "bugs@example.org", probe=True)
    assert (done.returncode, done.stderr.decode()) == (0, "")
    assert done.stdout.split() == [b"tomllib"]  # to read the file; none of the heavy modules
    assert issues(gateway_config) == 1


def test_told_the_gateway_it_never_reads_the_file(
    gateway_config: Config, tmp_path: Path, socket_path: Path
) -> None:
    """``--lmtp``: the address comes from the command line, so the file is not even parsed
    (here it is not TOML at all); a fallback would have to read it, and would fail."""
    broken = tmp_path / "broken.toml"
    broken.write_text("this is [not toml\n")
    with running_gateway(gateway_config):
        lmtp = f"--lmtp={socket_path}"
        done = ingest(broken, NEW, lmtp, "--recipient", "bugs@example.org", probe=True)
    assert (done.returncode, done.stderr.decode()) == (0, "")
    assert done.stdout.split() == []  # not even tomllib
    assert issues(gateway_config) == 1


def test_told_a_gateway_that_is_not_there_it_runs_here(
    gateway_config: Config, piped_config: Path, tmp_path: Path
) -> None:
    nowhere = f"--lmtp={tmp_path / 'nobody.sock'}"
    done = ingest(piped_config, NEW, nowhere, "--recipient", "bugs@example.org", probe=True)
    assert done.returncode == 0, done.stderr
    assert b"sqlalchemy" in done.stdout.split()
    assert issues(gateway_config) == 1


def test_told_a_gateway_without_recipients_it_hands_over_to_that_one(
    gateway_config: Config, config_file: Path, socket_path: Path
) -> None:
    """The file names no LMTP listener, only the trackers: ``--lmtp`` says where the
    gateway is, the file's first tracker address is the recipient. Before, ``--lmtp``
    without ``--recipient`` was silently ignored."""
    with running_gateway(gateway_config):
        done = ingest(config_file, NEW, f"--lmtp={socket_path}", probe=True)
    assert (done.returncode, done.stderr.decode()) == (0, "")
    assert b"sqlalchemy" not in done.stdout.split()  # the gateway took it
    assert issues(gateway_config) == 1


@pytest.mark.parametrize("lmtp", ["nonsense:port", "127.0.0.1:", "[::1]:99999"])
def test_a_malformed_lmtp_address_keeps_the_mail_in_the_queue(
    config: Config, config_file: Path, lmtp: str
) -> None:
    """A mistake in the MTA's command line: EX_TEMPFAIL and one line saying what is wrong,
    so the mail waits until it is fixed. Before, the pipeline ran here, unnoticed."""
    done = ingest(config_file, NEW, "--lmtp", lmtp, "--recipient", "bugs@example.org")
    assert done.returncode == 75
    message = f"mailtracker: --lmtp must be HOST:PORT or a socket's path, not {lmtp!r}\n"
    assert done.stderr.decode() == message
    assert issues(config) == 0


def test_without_a_gateway_the_pipeline_runs_here(
    gateway_config: Config, piped_config: Path, socket_path: Path
) -> None:
    assert not socket_path.exists()
    done = ingest(piped_config, NEW, "--recipient", "bugs@example.org", probe=True)
    assert done.returncode == 0, done.stderr
    assert b"sqlalchemy" in done.stdout.split()
    assert issues(gateway_config) == 1


def test_a_stale_socket_file_falls_back_too(
    gateway_config: Config, piped_config: Path, socket_path: Path
) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(socket_path))  # bound, never listening: connect() is refused
    try:
        assert ingest(piped_config, NEW, "--recipient", "bugs@example.org").returncode == 0
    finally:
        dead.close()
    assert issues(gateway_config) == 1


def test_verdicts_per_recipient_become_one_exit_code(
    gateway_config: Config, piped_config: Path
) -> None:
    with running_gateway(gateway_config):
        unknown = ingest(piped_config, NEW, "--recipient", "nobody@example.org")
        both = ingest(
            piped_config, NEW, "--recipient", "nobody@example.org", "--recipient", "bugs@x.org"
        )
        missing = ingest(piped_config, NEW, "--recipient", "bugs+999@example.org")
    assert unknown.returncode == sysexits.EX_NOUSER
    assert unknown.stderr.decode() == (
        "mailtracker: <nobody@example.org>: 5.1.1 <nobody@example.org>: "
        "no such tracker address here\n"
    )
    assert both.returncode == sysexits.EX_NOUSER
    assert both.stderr.decode().count("no such tracker address here") == 2
    assert missing.returncode == sysexits.EX_DATAERR
    assert "has no issue 999" in missing.stderr.decode()
    assert issues(gateway_config) == 0


def test_duplicate_and_sender_from_return_path(gateway_config: Config, piped_config: Path) -> None:
    """A retried pipe is a duplicate (250, exit 0); without --sender, Return-Path is used,
    and a null one stays null (a bounce is never answered)."""
    bounce_like = b"Return-Path: <>\n" + NEW.replace(b"\r\n", b"\n")
    with running_gateway(gateway_config):
        first = ingest(piped_config, bounce_like, "--recipient", "bugs@example.org")
        again = ingest(piped_config, bounce_like, "--recipient", "bugs@example.org")
    assert (first.returncode, again.returncode) == (0, 0)
    assert issues(gateway_config) == 1


def test_bare_lf_and_leading_dots_arrive_intact(gateway_config: Config, piped_config: Path) -> None:
    raw = (
        b"From: Alice <alice@example.com>\nTo: bugs@example.org\nSubject: Dots\n"
        b"Message-ID: <dots-1@example.com>\n\n.hidden file is lost\n..two dots\n.\nend\n"
    )
    with running_gateway(gateway_config):
        assert ingest(piped_config, raw, "--recipient", "bugs@example.org").returncode == 0
    store = Store.open(gateway_config)
    try:
        body = show(store)["messages"][0]["body"]
    finally:
        store.close()
    assert body == ".hidden file is lost\n..two dots\n.\nend"


@contextmanager
def fake_peer(path: Path, script: list[bytes]) -> Iterator[None]:
    """A socket that answers each line it reads with the next reply of ``script``, then
    hangs up: the misbehaving peers the client must survive."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(script[0])
            for reply in script[1:]:
                if not lines.readline():
                    return
                conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.close()
        thread.join(10)


@pytest.mark.parametrize(
    "script",
    [
        [b"421 4.3.2 busy, try later\r\n"],
        [b"220 hi\r\n", b"250-hi\r\n250 PIPELINING\r\n", b"250 ok\r\n"],  # hangs up at RCPT
        [b"220 hi\r\n", b"this is not LMTP\r\n"],
    ],
    ids=["busy", "hangs-up", "not-lmtp"],
)
def test_a_gateway_that_fails_is_a_temporary_failure(tmp_path: Path, script: list[bytes]) -> None:
    path = tmp_path / "peer.sock"
    with fake_peer(path, script):
        handed = hand_over(str(path), NEW, "alice@example.com", ["bugs@example.org"], 10)
    assert handed is not None
    assert handed.exit_code == sysexits.EX_TEMPFAIL
    assert handed.replies[0][:3] in ("421", "451")


def test_no_socket_means_run_here(tmp_path: Path) -> None:
    assert hand_over(str(tmp_path / "none.sock"), NEW, "a@x", ["bugs@example.org"], 5) is None
    assert hand_over("[::1]:notaport", NEW, "a@x", ["bugs@example.org"], 5) is None


def test_exit_codes_follow_the_replies() -> None:
    assert sysexits.for_reply("250 2.0.0 Ok") == sysexits.EX_OK
    assert sysexits.for_reply("451 4.3.0 busy") == sysexits.EX_TEMPFAIL
    assert sysexits.for_reply("550 5.1.1 no such tracker") == sysexits.EX_NOUSER
    assert sysexits.for_reply("550 5.7.1 not permitted") == sysexits.EX_NOPERM
    assert sysexits.for_reply("552 5.3.4 too big") == sysexits.EX_DATAERR
    assert sysexits.for_reply("garbage") == sysexits.EX_TEMPFAIL
    assert combined(["250 2.0.0 Ok", "550 5.1.1 no"]) == sysexits.EX_NOUSER
    assert combined(["550 5.7.1 no", "451 4.3.0 later"]) == sysexits.EX_TEMPFAIL
    assert combined(["250 2.0.0 Ok", "250 2.0.0 Ok"]) == sysexits.EX_OK


def test_unsigned_mail_never_loads_dkimpy(config_file: Path) -> None:
    """Most mail carries no DKIM-Signature: dkimpy and dnspython (70 ms) stay unloaded."""
    done = ingest(config_file, NEW, "--recipient", "bugs@example.org", probe=True)
    assert done.returncode == 0, done.stderr
    assert b"dkim" not in done.stdout.split()


@pytest.mark.parametrize(
    "words",
    [
        ["ingest", "-c", "/etc/m.toml", "--sender=a@x", "--recipient=bugs@x", "--recipient=b@x"],
        ["-c", "/etc/m.toml", "ingest", "--sender", "", "--recipient", "bugs+1@x"],
        ["ingest", "--config=/etc/m.toml", "-v"],
        ["ingest", "--lmtp", "/run/mailtracker/lmtp.sock", "--recipient=bugs@x"],
        ["ingest", "--lmtp=127.0.0.1:8024", "--recipient", "bugs@x", "-c", "/etc/m.toml"],
        ["ingest"],
    ],
)
def test_the_quick_reading_agrees_with_argparse(words: list[str]) -> None:
    quick = _read_args(words)
    assert quick is not None
    full = ingest_arguments(words)
    seen = [(a.config, a.recipients, a.sender, a.verbose, a.lmtp) for a in (quick, full)]
    assert seen[0] == seen[1]


@pytest.mark.parametrize(
    "words", [["ingest", "--help"], ["ingest", "-cfile"], ["ingest", "--recip", "a"], ["x"]]
)
def test_other_forms_are_left_to_argparse(words: list[str]) -> None:
    assert _read_args(words) is None


def test_a_mistake_gets_argparse_usage(config_file: Path) -> None:
    done = ingest(config_file, NEW, "--recipent", "bugs@example.org")
    assert done.returncode == 2
    assert b"unrecognized arguments: --recipent" in done.stderr
