"""Transports: how a finished mail leaves, to a smarthost over SMTP or into a Maildir.

A transport is a three-method seam (``open``, ``send``, ``close``) that raises
``TransportError(temporary, reason)``: a 4xx reply or a lost connection is temporary, a 5xx
is not. The delivery worker (``deliver.py``) decides what to do with either; tests and other
transports plug in here without monkeypatching.
"""

from __future__ import annotations

import mailbox
import os
import re
import smtplib
from functools import lru_cache
from typing import Protocol

from mailtracker.config import Config, OutgoingConfig, parse_hostport
from mailtracker.dkimsign import Signer
from mailtracker.errors import ConfigError, MailtrackerError

__all__ = [
    "SMTP_TIMEOUT",
    "MaildirTransport",
    "SigningTransport",
    "SmtpTransport",
    "Transport",
    "TransportError",
    "describe",
    "transport_for",
]

SMTP_TIMEOUT = 30.0


class TransportError(MailtrackerError):
    """A mail was not handed over; ``temporary`` says whether trying again may help."""

    def __init__(self, temporary: bool, reason: str) -> None:
        super().__init__(reason)
        self.temporary = temporary
        self.reason = reason


class Transport(Protocol):
    """Where mail goes. ``open`` and ``send`` raise ``TransportError``; ``close`` never raises."""

    def open(self) -> None: ...

    def send(self, envelope_from: str, recipient: str, raw: bytes) -> None: ...

    def close(self) -> None: ...


class SmtpTransport:
    """One SMTP connection, kept from batch to batch while mail keeps coming: the delivery
    worker runs a batch per committed mail under load, and a new connection each time (TCP,
    greeting, EHLO, QUIT) is work for both ends and a connection for the MTA to log and
    count. Postfix's smtp client caches its connections the same way. A kept connection is
    checked with RSET before a batch, and replaced when the smarthost has closed it. Once
    the connection is lost within a batch, every later send fails fast with the same
    reason, so the rest of the batch is deferred instead of timing out."""

    def __init__(self, host: str, port: int, helo: str, timeout: float = SMTP_TIMEOUT) -> None:
        self.host, self.port, self.helo, self.timeout = host, port, helo, timeout
        self._smtp: smtplib.SMTP | None = None
        self._broken = "not connected"

    def open(self) -> None:
        """Connect, or keep the connection the last batch left open if it still answers."""
        if self._smtp is not None and self._answers(self._smtp):
            return
        smtp = smtplib.SMTP(local_hostname=self.helo, timeout=self.timeout)
        try:
            smtp.connect(self.host, self.port)
            smtp.ehlo_or_helo_if_needed()
        except OSError as exc:  # smtplib.SMTPException is an OSError too
            smtp.close()
            raise self._lost(f"{self.host}:{self.port}: {describe(exc)}") from exc
        self._smtp = smtp

    def send(self, envelope_from: str, recipient: str, raw: bytes) -> None:
        if self._smtp is None:
            raise TransportError(True, self._broken)
        data = _crlf(raw)
        options = self._mail_options(envelope_from + recipient, data)
        try:
            self._smtp.sendmail(envelope_from, [recipient], data, options)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise self._reply_error(code, text) from exc
        except smtplib.SMTPResponseException as exc:
            raise self._reply_error(exc.smtp_code, exc.smtp_error) from exc
        except (UnicodeEncodeError, smtplib.SMTPNotSupportedError) as exc:
            raise TransportError(False, f"cannot send to this server: {exc}") from exc
        except OSError as exc:  # disconnected, timed out, reset
            raise self._lost(describe(exc)) from exc

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except OSError:
            smtp.close()

    def _answers(self, smtp: smtplib.SMTP) -> bool:
        """RSET on a kept connection: 250 if the session is still there (RFC 5321 4.1.1.5)."""
        try:
            code = smtp.rset()[0]
        except OSError:  # closed by the server's idle timeout, or reset
            code = 0
        if code != 250:
            self._smtp = None
            smtp.close()
        return code == 250

    def _mail_options(self, addresses: str, data: bytes) -> list[str]:
        """RFC 6152 and RFC 6531: declare 8-bit bodies and non-ASCII addresses."""
        assert self._smtp is not None
        options = []
        if not data.isascii() and self._smtp.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        if not addresses.isascii() and self._smtp.has_extn("smtputf8"):
            options.append("SMTPUTF8")
        return options

    def _reply_error(self, code: int, text: bytes | str) -> TransportError:
        reply = " ".join(f"{code} {_text(text)}".split())
        if code == 421:  # the server closes the connection (RFC 5321 3.8)
            return self._lost(reply)
        return TransportError(not 500 <= code < 600, reply)

    def _lost(self, reason: str) -> TransportError:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()
        self._broken = reason
        return TransportError(True, reason)


class MaildirTransport:
    """Write each mail into a Maildir (tmp, then renamed into new: atomic; then synced).
    For demos and sites whose MTA picks outgoing mail up from a folder."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._box: mailbox.Maildir | None = None

    def open(self) -> None:
        """Create the folders first, each tolerating the others' creation: the stdlib's
        ``create=True`` checks, then makes, and two workers starting at once (``serve`` and
        ``deliver --once``) could fail on each other's folder."""
        try:
            for sub in ("tmp", "new", "cur"):
                os.makedirs(os.path.join(self.path, sub), mode=0o700, exist_ok=True)
            self._box = mailbox.Maildir(self.path, create=False)
        except OSError as exc:
            raise TransportError(True, f"cannot open Maildir {self.path}: {exc}") from exc

    def send(self, envelope_from: str, recipient: str, raw: bytes) -> None:
        if self._box is None:
            raise TransportError(True, f"Maildir {self.path} is not open")
        try:
            self._box.add(raw)  # the stdlib syncs the file in tmp, then renames it
            _fsync(os.path.join(self.path, "new"))
        except (OSError, mailbox.Error) as exc:
            raise TransportError(True, f"cannot write to Maildir {self.path}: {exc}") from exc

    def close(self) -> None:
        self._box = None


def transport_for(config: Config) -> Transport:
    """The transport the configuration names: the smarthost if set, else the Maildir;
    wrapped in DKIM signing when ``dkim_*`` is configured."""
    outgoing = config.outgoing
    inner: Transport
    if outgoing.smarthost:
        where = str(config.path or "configuration")
        host, port = parse_hostport(outgoing.smarthost, "outgoing.smarthost", where)
        inner = SmtpTransport(host, port, config.smtp.hostname)
    elif outgoing.maildir:
        inner = MaildirTransport(outgoing.maildir)
    else:
        raise ConfigError("outgoing: set either 'smarthost' or 'maildir'")
    signer = _signer(outgoing)
    return SigningTransport(inner, signer) if signer else inner


@lru_cache(maxsize=4)
def _signer(outgoing: OutgoingConfig) -> Signer | None:
    """Read the key once per configuration, not on every round of the worker."""
    return Signer.from_config(outgoing)


class SigningTransport:
    """Signs each mail with DKIM just before it leaves (RFC 6376), outside any database
    transaction: signing is the slow part of a large fan-out (about 9 ms a mail with RSA)."""

    def __init__(self, inner: Transport, signer: Signer) -> None:
        self.inner = inner
        self.signer = signer

    def open(self) -> None:
        self.inner.open()

    def send(self, envelope_from: str, recipient: str, raw: bytes) -> None:
        try:
            signed = self.signer.sign(raw)
        except ValueError as exc:
            raise TransportError(False, f"cannot DKIM-sign this mail: {exc}") from exc
        self.inner.send(envelope_from, recipient, signed)

    def close(self) -> None:
        self.inner.close()


def _fsync(path: str) -> None:
    """Flush a folder's entries to disk. The stdlib's Maildir syncs a mail's file before
    renaming it into ``new``, but not the rename; the row is marked sent next, and a power
    cut must not lose the mail in between (qmail and Postfix sync the folder too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _crlf(raw: bytes) -> bytes:
    """SMTP wants CRLF line ends (RFC 5321 2.3.8); a bare LF is refused by strict servers.
    Our own mail has CRLF already: two counts tell, without the copy a substitution makes."""
    if raw.count(b"\n") == raw.count(b"\r\n"):
        return raw
    return re.sub(rb"\r?\n", b"\r\n", raw)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def describe(exc: BaseException) -> str:
    """One line for the log and ``last_error``; an SMTP reply as ``CODE text``."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}".splitlines()[0]
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
