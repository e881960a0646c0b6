"""Receive: the SMTP edge. aiosmtpd speaks the protocol; this adapter turns the pipeline's
``Outcome`` into SMTP replies and holds the limits that keep one client from taking the
gateway down.

Unknown recipients are refused at RCPT, before the body travels. The body is processed in
a bounded thread pool (a sync SQLAlchemy engine, which measured faster than AsyncSession on
SQLite), so the event loop never blocks, and ``250`` is sent only after the commit.
aiosmtpd's connection ``timeout`` (``smtp.command_timeout``) also runs while
``handle_DATA`` works, so processing is bounded below it: past ``process_timeout()`` the
client gets 451 and retries; if the work did commit meanwhile, the retry is answered as a
duplicate.

Edge limits, each against a named abuse:

- connections: ``smtp.max_connections`` in total and ``smtp.max_connections_per_ip`` from
  one address, counted by ``ConnectionLimits``; one more gets ``421`` and is closed, so a
  single host cannot hold every slot open for a whole timeout each (slow-loris);
- ``MAX_RECIPIENTS`` per mail (RFC 5321 4.5.3.1.8 asks for at least 100), then ``452``;
- ``LINE_LENGTH_LIMIT`` per line, beyond which the line is drained, not kept, and answered
  ``500`` (a DATA line once the data has ended), so memory per connection stays bounded;
- DATA is read into one buffer (``dataread``), so a mail takes its own size in memory while
  it arrives, where aiosmtpd's list of lines took four times as much;
- SMTP smuggling: aiosmtpd (since 1.4.5) ends DATA only on ``<CRLF>.<CRLF>``
  (RFC 5321 4.1.1.4), so commands hidden after ``<LF>.<LF>`` are never run; a mail that
  still carries such a look-alike end is refused whole (``smuggled_end_of_data``);
- STARTTLS (RFC 3207) with ``smtp.tls_cert``/``smtp.tls_key``; ``smtp.require_tls``
  refuses MAIL on a plain connection.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, TLSSetupException

from mailtracker.config import Config, SmtpConfig
from mailtracker.dataread import BufferedDataSMTP
from mailtracker.errors import ConfigError
from mailtracker.pipeline import Outcome, process, refusal_for_recipient
from mailtracker.smtpaddr import command_address
from mailtracker.store import Store
from mailtracker.sysexits import EX_TEMPFAIL
from mailtracker.values import Envelope

__all__ = [
    "LINE_LENGTH_LIMIT",
    "MAX_RECIPIENTS",
    "ConnectionLimits",
    "GatewaySMTP",
    "Handler",
    "process_timeout",
    "sendable",
    "smuggled_end_of_data",
    "tls_context",
]

log = logging.getLogger(__name__)
# The answer when processing outlasts its bound (``process_timeout``): the MTA retries.
BUSY = Outcome("451 4.3.0 The tracker is too busy; try again later", EX_TEMPFAIL)

MAX_RECIPIENTS = 100
# RFC 5321 4.5.3.1.6 allows 1000 octets per line, but real clients (HTML mail, long
# headers from list software) send longer lines; 64 KiB still bounds memory per line.
LINE_LENGTH_LIMIT = 65_536
# Share of the command timeout that DATA processing may take: the 451 must reach the client
# before aiosmtpd's timer closes the connection (300 s → 240 s by default).
PROCESS_SHARE = 0.8

TOO_MANY_FROM_YOU = "421 4.7.0 Too many connections from your address"
TOO_MANY_IN_TOTAL = "421 4.3.2 Too many connections; try again later"
SMUGGLING_REFUSAL = (
    "554 5.5.2 Refused: a '.' line next to a bare CR or LF (RFC 5321 2.3.8; SMTP smuggling)"
)

# A line holding only "." bounded by any kind of line break. Only <CRLF>.<CRLF> (or a dot
# line at the very start) is honest; the rest are ends of data to some other server, where
# a relayed copy would be cut in two and the tail run as a second, forged transaction.
_DOT_LINE = re.compile(rb"(\r\n|\r|\n|^)\.(?=(\r\n|\r|\n))")
# Whatever _DOT_LINE matches holds one of these: a quick test for "no line is only a dot".
_DOT_FIRST = (b".\r", b".\n")
_DOT_BETWEEN = (b"\n.\n", b"\n.\r", b"\r.\r", b"\r.\n")


def process_timeout(command_timeout: float) -> float:
    """How long DATA processing may run: below the connection timer, so the client hears
    451 (and retries) instead of losing the connection without a reply."""
    return command_timeout * PROCESS_SHARE


def smuggled_end_of_data(data: bytes) -> bool:
    """Whether the (dot-unstuffed) mail holds an end-of-data look-alike such as ``<LF>.<LF>``,
    ``<CR>.<CR>`` or ``<LF>.<CRLF>``: the SMTP smuggling attack (SEC Consult, 2023).

    Nearly every mail has no line that is only a dot, which four substring searches show
    at C speed (about 17 µs for a mail of the bench's mix, where the pattern took 86 µs)."""
    if not data.startswith(_DOT_FIRST) and not any(d in data for d in _DOT_BETWEEN):
        return False
    for match in _DOT_LINE.finditer(data):
        if match.group(1) not in (b"\r\n", b"") or match.group(2) != b"\r\n":
            return True
    return False


def tls_context(smtp: SmtpConfig, where: str) -> ssl.SSLContext | None:
    """The server-side STARTTLS context, or ``None`` when no certificate is configured.

    Built once at start, so a missing, unreadable or mismatched file stops ``serve`` with
    one line naming the key, instead of failing every client's handshake later.
    """
    if not smtp.tls_cert:
        return None
    _check_readable(smtp.tls_cert, "smtp.tls_cert", where)
    _check_readable(smtp.tls_key, "smtp.tls_key", where)
    _check_certificate(smtp.tls_cert, where)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8996 deprecates TLS 1.0 and 1.1
    _load_key(context, smtp, where)
    return context


def _check_readable(path: str, key: str, where: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{where}: '{key}' cannot read {path}: {exc.strerror}") from None


def _check_certificate(path: str, where: str) -> None:
    """OpenSSL blames a bad certificate and a bad key alike ("PEM lib"); reading the
    certificate alone, into a throw-away context, tells which key to name."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"{where}: 'smtp.tls_cert' {path} holds no PEM certificate ({exc.reason})"
        ) from None


def _load_key(context: ssl.SSLContext, smtp: SmtpConfig, where: str) -> None:
    def no_password() -> bytes:
        # Without a callback OpenSSL would prompt on the terminal and hang a daemon.
        raise ConfigError(f"{where}: 'smtp.tls_key' {smtp.tls_key} is encrypted; decrypt it")

    try:
        context.load_cert_chain(smtp.tls_cert, smtp.tls_key, password=no_password)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"{where}: 'smtp.tls_key' {smtp.tls_key} is not the PEM private key of"
            f" 'smtp.tls_cert' {smtp.tls_cert} ({exc.reason or exc})"
        ) from None


class ConnectionLimits:
    """Connections open now, in total and per client address, against the caps.

    One per ``Gateway`` and touched only on its event loop, so plain counters suffice.
    """

    def __init__(self, total: int, per_ip: int) -> None:
        self.total = total
        self.per_ip = per_ip
        self.open: Counter[str] = Counter()

    def admit(self, ip: str) -> str | None:
        """Count a new connection from ``ip``; the 421 reply if it is one too many."""
        if self.open[ip] >= self.per_ip:
            return TOO_MANY_FROM_YOU
        if self.open.total() >= self.total:
            return TOO_MANY_IN_TOTAL
        self.open[ip] += 1
        return None

    def release(self, ip: str) -> None:
        self.open[ip] -= 1
        if self.open[ip] <= 0:
            del self.open[ip]


class GatewaySMTP(BufferedDataSMTP):
    """aiosmtpd's server with connection limits, RFC 3463 enhanced codes on its own
    refusals, a 421 before it closes an idle connection, and DATA read into one buffer."""

    line_length_limit = LINE_LENGTH_LIMIT

    def __init__(
        self, handler: Handler, *, limits: ConnectionLimits | None = None, **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        self._limit = kwargs.get("data_size_limit")
        self._limits = limits
        self._counted: str | None = None  # the address this connection is counted under
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # aiosmtpd calls this again after STARTTLS on the same connection: count it once.
        if self._limits is not None and self._counted is None:
            ip = _peer_ip(transport)
            refusal = self._limits.admit(ip)
            if refusal is not None:
                self._refuse(transport, refusal)
                return
            self._counted = ip
        super().connection_made(transport)

    def _refuse(self, transport: asyncio.BaseTransport, reply: str) -> None:
        """RFC 5321 3.8: a server that will not serve answers 421, then closes."""
        log.warning("%s: refused, %s", transport.get_extra_info("peername"), reply)
        self._refused = True
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(reply.encode("ascii") + b"\r\n")
        transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:  # aiosmtpd never started on this connection
            return
        if self._limits is not None and self._counted is not None:
            self._limits.release(self._counted)
            self._counted = None
        super().connection_lost(error)

    def _timeout_cb(self) -> None:
        """aiosmtpd closes silently on timeout (RFC 5321 4.5.3.2.7); a 421 first (3.8) tells
        the client why, so an MTA retries later instead of guessing (Postfix does the same)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        log.info("%s: past the command timeout, closed", transport.get_extra_info("peername"))
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(f"421 4.4.2 {self.hostname} Error: timeout exceeded\r\n".encode())
        transport.close()  # connection_lost() then cleans up, as in aiosmtpd's own callback

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's reading of a MAIL or RCPT argument, remembered (``smtpaddr``)."""
        address, rest = command_address(arg)
        limit = self.local_part_limit
        if address and limit and len(address.rpartition("@")[0]) > limit:
            return None, None
        return address, rest

    def restart_timeout(self) -> None:
        """Give DATA processing the whole command timeout, however long the upload took."""
        self._reset_timeout()

    async def push(self, status: AnyStr) -> None:
        reply = self._enhanced(status)
        if isinstance(reply, str):
            reply = sendable(reply, self.enable_SMTPUTF8)
        await super().push(reply)

    def _enhanced(self, status: AnyStr) -> AnyStr:
        """aiosmtpd's bare replies with RFC 3463 codes, which MTAs and people read better."""
        if isinstance(status, str) and status.startswith("552 Error"):
            return f"552 5.3.4 Message too big: this tracker takes at most {self._limit} bytes"
        if isinstance(status, str) and status.startswith("530 Must issue a STARTTLS"):
            return "530 5.7.0 Must issue a STARTTLS command first"  # RFC 3207 4
        return status


def sendable(reply: str, utf8: bool) -> str:
    """A reply that echoes the client's bytes (a VRFY argument, a refused address) may hold
    bytes that were not UTF-8, which aiosmtpd decoded as lone surrogates: encoding the reply
    then failed as if it were our bug, and the client heard 451 and retried. Such bytes are
    shown as ``\\xNN`` instead (and any non-ASCII, where SMTPUTF8 is off)."""
    if reply.isascii():
        return reply
    return reply.encode("utf-8", "surrogateescape").decode(
        "utf-8" if utf8 else "ascii", "backslashreplace"
    )


def _peer_ip(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")


class Handler:
    """aiosmtpd hooks; all decisions about mail are the pipeline's."""

    def __init__(
        self,
        store: Store,
        config: Config,
        executor: ThreadPoolExecutor,
        wake: asyncio.Event | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.executor = executor
        self.wake = wake
        self.in_flight = 0

    async def handle_EHLO(
        self, server: SMTP, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        """Drop the AUTH keyword aiosmtpd adds after STARTTLS: this gateway takes no logins
        and its built-in LOGIN/PLAIN refuse everyone, so an MTA holding credentials for us
        would fail where it should just send. (The hook must set ``host_name``.)"""
        session.host_name = hostname
        return responses[:1] + [r for r in responses[1:] if not r[4:].upper().startswith("AUTH")]

    async def handle_exception(self, error: Exception) -> str:
        """A failed TLS handshake is the client's (scanners, old protocols): one line, not a
        traceback. Anything else is our bug; RFC 5321 4.2.3's 451 lets the client retry,
        where aiosmtpd would answer 500 with the exception's text."""
        if isinstance(error, TLSSetupException):
            log.info("TLS handshake failed: %s", error.__cause__)
            return "421 4.7.0 TLS handshake failed"  # not sent: aiosmtpd closes at once
        log.exception("SMTP session error")
        return "451 4.3.0 Local error in processing"

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = refusal_for_recipient(address, self.config)
        if refusal is not None:
            return refusal
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return f"452 4.5.3 Too many recipients (at most {MAX_RECIPIENTS} per mail)"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        if smuggled_end_of_data(envelope.original_content or b""):
            log.warning("%s: refused a mail with an end-of-data look-alike", session.peer)
            return SMUGGLING_REFUSAL
        if isinstance(server, GatewaySMTP):
            server.restart_timeout()
        self.in_flight += 1
        try:
            outcome = await self._process(envelope)
        finally:
            self.in_flight -= 1
        if outcome.queued and self.wake is not None:
            self.wake.set()
        return outcome.reply

    async def _process(self, envelope: Any) -> Outcome:
        raw: bytes = envelope.original_content or b""
        env = Envelope(mail_from=envelope.mail_from or "", rcpt_tos=tuple(envelope.rcpt_tos))
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self.executor, process, self.store, self.config, raw, env)
        bound = process_timeout(self.config.smtp.command_timeout)
        try:
            return await asyncio.wait_for(asyncio.shield(work), bound)
        except TimeoutError:
            log.warning("processing took longer than %g s; answered 451", bound)
            return BUSY


def edge_options(smtp: SmtpConfig) -> dict[str, Any]:
    """The aiosmtpd options SMTP and LMTP listeners share (identity, size, timeout)."""
    return {
        "hostname": smtp.hostname,
        "ident": "mailtracker",
        "data_size_limit": smtp.max_message_size,
        "enable_SMTPUTF8": True,
        "timeout": float(smtp.command_timeout),
    }
