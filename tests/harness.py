"""Real servers on loopback for tests: the gateway in a thread with its own event loop,
a raw SMTP client, and a throw-away TLS certificate."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailtracker.config import Config
from mailtracker.serve import Gateway


@contextmanager
def running_gateway(
    config: Config, *, deliver: bool = False, web: bool = False
) -> Iterator[Gateway]:
    """Start ``serve``'s gateway on 127.0.0.1 (a free port) and stop it afterwards; with
    ``web``, its web server too (on ``config.web.listen``)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    made = asyncio.run_coroutine_threadsafe(_make(config, deliver, web), loop)
    gateway: Gateway = made.result(30)
    try:
        asyncio.run_coroutine_threadsafe(gateway.start(), loop).result(60)
        yield gateway
    finally:
        asyncio.run_coroutine_threadsafe(gateway.stop(), loop).result(120)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _make(config: Config, deliver: bool, web: bool) -> Gateway:
    return Gateway(config, deliver=deliver, web=web)


def send(
    port: int, raw: bytes, rcpts: list[str], sender: str = "alice@example.com"
) -> tuple[int, bytes]:
    """One SMTP transaction; returns the DATA reply (code, text)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.com")
        client.mail(sender)
        for rcpt in rcpts:
            code, text = client.rcpt(rcpt)
            if code >= 400:
                return code, text
        return client.data(raw)


def free_port() -> int:
    """A port nobody listens on right now (for servers that cannot bind port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RawSMTP:
    """A hand-driven SMTP client: the bytes go out exactly as written (smtplib would repair
    bare line ends and dot-stuff, which is what smuggling and line-length tests must not)."""

    def __init__(self, port: int, source: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout, (source, 0))
        self.file = self.sock.makefile("rb")

    def reply(self) -> bytes:
        """One whole reply, continuation lines included; b"" once the server has closed."""
        lines = [self.file.readline()]
        while lines[-1][3:4] == b"-":
            lines.append(self.file.readline())
        return b"".join(lines)

    def command(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def rest(self) -> bytes:
        """Everything the server still says until it closes the connection."""
        return self.file.read()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def open_transaction(port: int, timeout: float = 10.0) -> RawSMTP:
    """Greeting, EHLO, MAIL, RCPT and DATA done on the gateway at ``port``; the body is the
    caller's."""
    raw = RawSMTP(port, timeout=timeout)
    assert raw.reply().startswith(b"220 ")
    assert raw.command(b"EHLO client.example.com").startswith(b"250-tracker.example.org")
    assert raw.command(b"MAIL FROM:<alice@example.com>") == b"250 OK\r\n"
    assert raw.command(b"RCPT TO:<bugs@example.org>") == b"250 2.1.5 Ok\r\n"
    assert raw.command(b"DATA") == b"354 End data with <CR><LF>.<CR><LF>\r\n"
    return raw


def make_certificate(folder: Path, password: bytes | None = None) -> tuple[Path, Path]:
    """A self-signed certificate for tracker.example.org and 127.0.0.1, and its PEM key
    (encrypted with ``password`` if given): ``(cert_path, key_path)`` in ``folder``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tracker.example.org")])
    alt = [x509.DNSName("tracker.example.org"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    crypt: serialization.KeySerializationEncryption = serialization.NoEncryption()
    if password:
        crypt = serialization.BestAvailableEncryption(password)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, crypt)
    key_path.write_bytes(pem)
    return cert_path, key_path


def wait_until_admitted(port: int, timeout: float = 10.0) -> None:
    """A freed connection slot shows up once the server has seen the close, which happens
    on its own loop: poll, boundedly, until a new connection is greeted with 220."""
    deadline = time.monotonic() + timeout
    while True:
        raw = RawSMTP(port, timeout=timeout)
        greeting = raw.reply()
        raw.close()
        if greeting.startswith(b"220 ") or time.monotonic() > deadline:
            assert greeting.startswith(b"220 ")
            return
        time.sleep(0.05)


class RawLMTP(RawSMTP):
    """A hand-driven LMTP client over TCP (a port) or a unix socket (a path). It reads the
    one reply per accepted recipient that RFC 2033 4.2 owes after DATA, which smtplib.LMTP
    cannot: it reads one reply and leaves the rest on the wire."""

    def __init__(self, where: int | str, timeout: float = 30.0) -> None:
        if isinstance(where, int):
            self.sock = socket.create_connection(("127.0.0.1", where), timeout)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(where)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def transaction(
        self, raw: bytes, rcpts: list[str], sender: str = "alice@example.com"
    ) -> list[bytes]:
        """LHLO, MAIL, one RCPT each, DATA: every reply, the per-recipient ones last."""
        replies = [
            self.command(b"LHLO client.example.com"),
            self.command(f"MAIL FROM:<{sender}>".encode()),
        ]
        accepted = 0
        for rcpt in rcpts:
            replies.append(self.command(f"RCPT TO:<{rcpt}>".encode()))
            accepted += replies[-1].startswith(b"250")
        replies.append(self.command(b"DATA"))
        if not replies[-1].startswith(b"354"):
            return replies
        self.sock.sendall(dot_stuffed(raw) + b".\r\n")
        return replies + [self.reply() for _ in range(accepted)]


def dot_stuffed(raw: bytes) -> bytes:
    """The mail as DATA sends it: CRLF line ends, a leading dot doubled (RFC 5321 4.5.2)."""
    text = re.sub(rb"\r\n|\r|\n", b"\r\n", raw)
    text = re.sub(rb"(?m)^\.", b"..", text)
    return text if text.endswith(b"\r\n") else text + b"\r\n"


def lmtp_send(
    where: int | str, raw: bytes, rcpts: list[str], sender: str = "alice@example.com"
) -> list[bytes]:
    """One LMTP transaction; the replies after DATA, one per accepted recipient."""
    client = RawLMTP(where)
    try:
        replies = client.transaction(raw, rcpts, sender)
        return replies[3 + len(rcpts) :]
    finally:
        client.close()


# A private Postfix instance (tests/test_postfix.py), configured from the shipped recipe.
POSTFIX_DOCS = Path(__file__).resolve().parents[1] / "docs" / "postfix"
APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
APT_GET = ["apt-get", "-q", "-y", "-o", "DPkg::Lock::Timeout=300"]
# Debian's "No configuration": no /etc/postfix/main.cf, so the system instance has nothing
# to run even where the package's scripts try to start it.
DEBCONF = "postfix postfix/main_mailer_type select No configuration\n"

# The test instance around the recipe: private directories, loopback only, no local
# delivery, and everything not for the tracker relayed to the sink.
MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
maillog_file = {root}/postfix.log
maillog_file_prefixes = {root}
myhostname = mx.example.org
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
relayhost = [127.0.0.1]:{sink}
"""


def _fail_or_skip(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the Postfix test)")
    pytest.skip(reason)


def ensure_postfix() -> None:
    """Install postfix and swaks with apt unless both are there; skip where that cannot be."""
    if shutil.which("postfix", path="/usr/sbin:/usr/bin") and shutil.which("swaks"):
        return
    if os.geteuid() != 0:
        _fail_or_skip("needs root to install and run Postfix")
    if shutil.which("apt-get") is None:
        _fail_or_skip("needs apt-get (Debian) to install postfix and swaks")
    subprocess.run(["debconf-set-selections"], input=DEBCONF.encode(), check=True)
    with _services_never_start():
        install = [*APT_GET, "install", "--no-install-recommends", "postfix", "swaks"]
        if _apt(install).returncode != 0:
            _apt([*APT_GET, "update"])
            result = _apt(install)
            if result.returncode != 0:
                _fail_or_skip(f"apt-get install postfix swaks failed: {result.stderr[-500:]!r}")


def _apt(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, env=APT_ENV, capture_output=True, timeout=600, check=False)


class _services_never_start:
    """Debian's policy-rc.d (invoke-rc.d(8)): exit 101 forbids the package's scripts to
    start the system's Postfix, which the machine's other services must not meet."""

    path = Path("/usr/sbin/policy-rc.d")

    def __enter__(self) -> None:
        self.made = not self.path.exists()
        if self.made:
            self.path.write_text("#!/bin/sh\nexit 101\n")
            self.path.chmod(0o755)

    def __exit__(self, *exc: object) -> None:
        if self.made:
            self.path.unlink()


@dataclass
class Postfix:
    """One private Postfix instance (``postfix -c DIR``), started and stopped by this test."""

    root: Path
    port: int
    sink: int

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    def command(self, *argv: str) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"{argv}: {done.stderr}\n{self.log()[-3000:]}"
        return done.stdout

    def configure(self, pipe: dict[str, str]) -> None:
        """main.cf and master.cf: the test's instance around the shipped recipe."""
        for sub in ("etc", "queue", "data"):
            (self.root / sub).mkdir()
        shutil.chown(self.root / "data", "postfix")
        recipe = (POSTFIX_DOCS / "main.cf").read_text().replace("/etc/postfix/", f"{self.etc}/")
        main = MAIN_CF.format(root=self.root, sink=self.sink) + recipe
        (self.etc / "main.cf").write_text(main)
        services = (POSTFIX_DOCS / "master.cf").read_text()
        for old, new in pipe.items():
            services = services.replace(old, new)
        (self.etc / "master.cf").write_text(self._stock_services() + services)
        self.use("", {})

    def _stock_services(self) -> str:
        """Debian's master.cf, unchrooted (no copies of /etc inside a temporary queue) and
        with smtpd on the test's port only."""
        text = Path("/usr/share/postfix/master.cf.dist").read_text()
        text = re.sub(r"(?m)^smtp +inet .*$", f"127.0.0.1:{self.port} inet n - n - - smtpd", text)
        return re.sub(r"(?m)^(\S+ +\S+ +\S+ +\S+ +)y ", r"\1n ", text)

    def use(self, name: str, ports: dict[str, str]) -> None:
        """Install ``docs/postfix/transport.NAME`` (for bugs@ and, alike, docs@) as the map."""
        text = (POSTFIX_DOCS / f"transport.{name}").read_text() if name else ""
        for old, new in ports.items():
            text = text.replace(old, new)
        lines = [line for line in text.splitlines() if line.startswith("bugs")]
        text += "".join(line.replace("bugs", "docs", 1) + "\n" for line in lines)
        (self.etc / "mailtracker_transport").write_text(text)
        self.command("postmap", "-c", str(self.etc), f"hash:{self.etc}/mailtracker_transport")
        if (self.root / "queue" / "pid" / "master.pid").exists():
            self.command("postfix", "-c", str(self.etc), "reload")

    def start(self) -> None:
        self.command("postfix", "-c", str(self.etc), "start")

    def master_pid(self) -> int | None:
        pidfile = self.root / "queue" / "pid" / "master.pid"
        return int(pidfile.read_text().split()[0]) if pidfile.exists() else None

    def stop(self) -> None:
        """Stop by the master's pid; whatever of this instance still runs is killed by pid."""
        pid = self.master_pid()
        subprocess.run(["postfix", "-c", str(self.etc), "stop"], capture_output=True, check=False)
        deadline = time.monotonic() + 20
        while self._ours() and time.monotonic() < deadline:
            time.sleep(0.1)
        for left in self._ours():
            os.kill(left, signal.SIGKILL)
        assert pid is None or not _alive(pid)

    def _ours(self) -> list[int]:
        """Live processes of this instance: Postfix passes MAIL_CONFIG to every daemon."""
        mine = f"MAIL_CONFIG={self.etc}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and _alive(int(entry.name)):
                try:
                    if mine in (entry / "environ").read_bytes().split(b"\0"):
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found

    def log(self) -> str:
        path = self.root / "postfix.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def queue(self) -> list[dict[str, Any]]:
        out = self.command("postqueue", "-c", str(self.etc), "-j")
        return [json.loads(line) for line in out.splitlines()]

    def send(self, raw: bytes, rcpts: list[str], sender: str = "alice@example.com") -> str:
        """swaks into Postfix; returns the queue id Postfix answered with."""
        path = self.root / f"mail-{time.monotonic_ns()}.eml"
        path.write_bytes(raw)
        server = f"127.0.0.1:{self.port}"
        argv = ["swaks", "--server", server, "--from", sender, "--to", ",".join(rcpts)]
        out = self.command(*argv, "--helo", "client.example.com", "--data", f"@{path}")
        found = re.search(r"<[-~]\s+250 2\.0\.0 Ok: queued as (\w+)", out)
        assert found, out
        return found.group(1)

    def wait_log(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """Block until Postfix's log has a line matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.log())
            if found or time.monotonic() > deadline:
                assert found, f"no {pattern!r} in Postfix's log:\n{self.log()[-3000:]}"
                return found
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    """Running, not a zombie that the machine's init has yet to reap."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def start_serve(
    config_path: Path, port: int, *, log: bool = False, stderr: Any = None
) -> subprocess.Popen[bytes]:
    """``mailtracker serve`` as its own process, once its SMTP port answers; with ``log``
    its stderr is kept in a pipe for the test to read at the end, or goes to the file
    ``stderr``. The pipe is for a few lines only: a ``serve`` that logs more than the pipe
    holds (64 KiB; two gateway processes taking mail soon do) blocks mid-mail."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailtracker", "serve", "-c", str(config_path)],
        env=env,
        stderr=stderr or (subprocess.PIPE if log else subprocess.DEVNULL),
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            smtplib.SMTP("127.0.0.1", port, timeout=5).quit()
            return proc
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
