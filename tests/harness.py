"""Real servers on loopback for tests: the gateway in a thread with its own event loop,
a raw SMTP client, and a throw-away TLS certificate."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailtracker.config import Config
from mailtracker.serve import Gateway


@contextmanager
def running_gateway(config: Config, *, deliver: bool = False) -> Iterator[Gateway]:
    """Start ``serve``'s gateway on 127.0.0.1 (a free port) and stop it afterwards."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    gateway: Gateway = asyncio.run_coroutine_threadsafe(_make(config, deliver), loop).result(30)
    try:
        asyncio.run_coroutine_threadsafe(gateway.start(), loop).result(60)
        yield gateway
    finally:
        asyncio.run_coroutine_threadsafe(gateway.stop(), loop).result(120)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _make(config: Config, deliver: bool) -> Gateway:
    return Gateway(config, deliver=deliver)


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
