"""Hand a piped mail to the running gateway over LMTP, as Cyrus's ``deliver`` hands mail to
its ``lmtpd``.

Why: an MTA starts ``mailtracker ingest`` once per mail, and loading the pipeline (SQLAlchemy
with its ORM, the models, Jinja2) costs about 0.4 s of every start, where the running
``serve`` has all of it loaded. When ``[lmtp] listen`` is set and a gateway answers there,
``ingest`` sends the mail over LMTP (RFC 2033) and turns the per-recipient replies into one
exit code. The same pipeline decides either way; only the process that runs it differs.

The client speaks just the LMTP this needs (LHLO, MAIL, RCPT, DATA, QUIT) over a plain
socket. Why not ``smtplib.LMTP``: importing it (with ``ssl``, ``hmac`` and half of ``email``)
costs about 20 ms, a third of a handed-over mail's whole budget. Nothing here imports the
pipeline either, so a handed-over mail costs an interpreter start, the configuration and
one LMTP transaction.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Sequence

from mailtracker import sysexits
from mailtracker.configfile import lmtp_socket_path, parse_hostport
from mailtracker.errors import ConfigError

TYPE_CHECKING = False  # typing itself costs a piped ingest 3 ms
if TYPE_CHECKING:
    from typing import BinaryIO

__all__ = ["Handed", "combined", "hand_over"]

_BARE_LF = re.compile(rb"(?<!\r)\n")
_LEADING_DOT = re.compile(rb"(?m)^\.")
_MAX_LINE = 8192  # a reply line longer than this is not a gateway speaking LMTP


class Handed:
    """The gateway's verdict: one reply line per recipient, and the exit code for all."""

    __slots__ = ("exit_code", "replies")

    def __init__(self, replies: tuple[str, ...], exit_code: int) -> None:
        self.replies = replies
        self.exit_code = exit_code


class _Gone(Exception):
    """The gateway closed the connection or answered something that is not LMTP."""


def hand_over(
    listen: str, raw: bytes, sender: str, recipients: Sequence[str], timeout: float
) -> Handed | None:
    """Deliver ``raw`` to the gateway at ``listen``; ``None`` if no gateway listens there.

    ``None`` means "run the pipeline here": the socket is missing, refuses connections or
    is not ours to use. Once a gateway has answered, every failure is its verdict or a
    temporary one (the MTA retries; a mail stored already is then a duplicate, answered 250).
    """
    try:
        sock = _connect(listen, timeout)
    except (FileNotFoundError, ConnectionRefusedError, PermissionError, ConfigError) as exc:
        _note(f"no gateway at {listen} ({exc}); running the pipeline here")
        return None  # a malformed address: the full configuration check will report it
    except OSError as exc:
        return _temporary(recipients, f"the gateway at {listen} did not answer: {exc}")
    try:
        with sock, sock.makefile("rb") as replies:
            lmtp = _Lmtp(sock, replies)
            answers = lmtp.transaction(_crlf(raw), sender, recipients)
            lmtp.quit()
    except (OSError, _Gone) as exc:
        return _temporary(recipients, f"the gateway at {listen} failed mid-transaction: {exc}")
    return Handed(answers, combined(answers))


def combined(replies: Sequence[str]) -> int:
    """One exit code for several recipients: retry if any may succeed later (duplicates are
    harmless), else the first refusal, else success."""
    codes = [sysexits.for_reply(reply) for reply in replies]
    if sysexits.EX_TEMPFAIL in codes:
        return sysexits.EX_TEMPFAIL
    return next((code for code in codes if code != sysexits.EX_OK), sysexits.EX_OK)


def _connect(listen: str, timeout: float) -> socket.socket:
    path = lmtp_socket_path(listen)
    if path is None:
        host, port = parse_hostport(listen, "lmtp.listen", "configuration")
        return socket.create_connection((host, port), timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


class _Lmtp:
    """One client conversation (RFC 2033): replies are read as RFC 5321 4.2 writes them."""

    def __init__(self, sock: socket.socket, replies: BinaryIO) -> None:
        self.sock = sock
        self.replies = replies
        self.extensions: set[str] = set()
        self.utf8 = False

    def transaction(self, data: bytes, sender: str, recipients: Sequence[str]) -> tuple[str, ...]:
        """Greeting, LHLO, MAIL, one RCPT each, DATA: a reply per recipient, in their order."""
        greeting = self.reply()
        if not greeting.startswith("220"):
            return tuple(greeting for _ in recipients)  # 421: busy, try later
        self.hello()
        mail = self.command(f"MAIL FROM:<{sender}>{self.options(data, sender, recipients)}")
        if not mail.startswith("250"):
            return tuple(mail for _ in recipients)
        answers = [self.command(f"RCPT TO:<{recipient}>") for recipient in recipients]
        accepted = [i for i, answer in enumerate(answers) if answer.startswith("25")]
        if accepted:
            for index, answer in zip(accepted, self.data(data, len(accepted)), strict=True):
                answers[index] = answer
        return tuple(answers)

    def hello(self) -> None:
        lines = self.command("LHLO localhost", all_lines=True).split("\n")
        if not lines[-1].startswith("250"):
            raise _Gone(f"LHLO refused: {lines[-1]}")
        self.extensions = {line[4:].split(" ")[0].upper() for line in lines[1:]}

    def options(self, data: bytes, sender: str, recipients: Sequence[str]) -> str:
        """SIZE lets the gateway refuse a mail over its limit before it is sent; 8BITMIME and
        SMTPUTF8 declare what the mail carries, where the gateway offers them."""
        options = f" SIZE={len(data)}" if "SIZE" in self.extensions else ""
        if "8BITMIME" in self.extensions and not data.isascii():
            options += " BODY=8BITMIME"
        addresses_ascii = all(a.isascii() for a in (sender, *recipients))
        if "SMTPUTF8" in self.extensions and not addresses_ascii:
            options += " SMTPUTF8"
            self.utf8 = True
        return options

    def data(self, data: bytes, count: int) -> list[str]:
        """RFC 2033 4.2: after the final dot, one reply for each accepted recipient."""
        go_ahead = self.command("DATA")
        if not go_ahead.startswith("354"):
            return [go_ahead] * count  # DATA itself refused: the same for everyone
        ending = b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n"
        self.sock.sendall(_LEADING_DOT.sub(b"..", data) + ending)
        return [self.reply() for _ in range(count)]

    def quit(self) -> None:
        with contextlib.suppress(OSError, _Gone):  # the verdicts are in already
            self.command("QUIT")

    def command(self, line: str, all_lines: bool = False) -> str:
        encoding = "utf-8" if self.utf8 else "ascii"
        self.sock.sendall(line.encode(encoding, "replace") + b"\r\n")
        return self.reply(all_lines)

    def reply(self, all_lines: bool = False) -> str:
        """``"250 2.1.5 Ok"``: one reply, its continuation lines joined or dropped."""
        lines: list[str] = []
        while True:
            line = self.replies.readline(_MAX_LINE)
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if not line.endswith(b"\n") or len(text) < 3 or not text[:3].isdigit():
                raise _Gone(f"unexpected reply {text!r}" if line else "connection closed")
            lines.append(" ".join(text.split()))
            if text[3:4] != "-":
                return "\n".join(lines) if all_lines else lines[-1]


def _crlf(raw: bytes) -> bytes:
    """SMTP's line ending: an MTA pipes mail with bare LF (Postfix's pipe(8) does)."""
    return _BARE_LF.sub(b"\r\n", raw) if raw.count(b"\n") != raw.count(b"\r\n") else raw


def _note(text: str) -> None:
    """Log through ``logging`` without importing it (5 ms): it is loaded when ``-v`` set it
    up, and otherwise nothing below WARNING would be shown anyway."""
    import sys

    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger(__name__).info("%s", text)


def _temporary(recipients: Sequence[str], reason: str) -> Handed:
    _note(reason)  # the reason reaches stderr with the reply
    reply = f"451 4.4.1 {reason}"
    return Handed(tuple(reply for _ in recipients), sysexits.EX_TEMPFAIL)
