"""LMTP (RFC 2033): how the MTA in front hands mail to the tracker, as Postfix does for
Mailman 3 and todo.sr.ht.

LMTP is SMTP for the last hop, where the server keeps no queue: after the end of data it
answers **once per accepted recipient, in RCPT order** (RFC 2033 4.2), so the MTA learns the
fate of each recipient and retries or bounces only that one. aiosmtpd's ``LMTP`` class only
swaps EHLO for LHLO and answers DATA once; the MTA reads that reply as the first
recipient's, waits for the others, times out, and delivers the mail again later.

Here every accepted recipient goes through ``pipeline.process`` on its own, so a mail to
``bugs+42@`` and ``bugs+999@`` (no such issue) is stored on issue 42 (250) and refused for
the other (550). A mail to several addresses of one tracker is still stored once: the
tracker's Message-ID is unique, so the later addresses are duplicates (250). Recipients
are processed most specific first (a bounce address, then other sub-addresses, the main
address last), so ``bugs@`` + ``bugs+42@`` land on issue 42 in either RCPT order, as they
do over SMTP; the replies still follow RCPT order.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AnyStr

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, syntax

from mailtracker.addresses import classify
from mailtracker.config import Config, lmtp_socket_path
from mailtracker.listeners import SOCKET_MODE, bind_tcp, bind_unix, remove_socket
from mailtracker.pipeline import Outcome, process
from mailtracker.receive import (
    BUSY,
    ConnectionLimits,
    GatewaySMTP,
    Handler,
    edge_options,
    process_timeout,
)
from mailtracker.store import Store
from mailtracker.values import Envelope

__all__ = [
    "SOCKET_MODE",
    "GatewayLMTP",
    "LmtpHandler",
    "LmtpListener",
    "per_recipient",
    "processing_order",
]

log = logging.getLogger(__name__)

INTERNAL = "451 4.3.0 Local error in processing"
# Which recipient is processed first, as the pipeline ranks a tracker's addresses: the
# bounce address is the surest evidence; the main address, the only one routed by headers
# or subject, goes last, so a sub-address in the same mail decides the issue.
_ORDER = {"bounces": 0, "main": 2}
# RFC 2034 codes for aiosmtpd's own bare replies (its 500 "not recognized", 503 "need RCPT"…);
# the 220 greeting goes without (RFC 2034 3).
_BARE = re.compile(r"^(?!220)([245])(\d\d) (?!\d\.\d{1,3}\.\d{1,3}( |$))")
_DETAIL = {"500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4"}


def processing_order(rcpt_tos: Sequence[str], config: Config) -> list[int]:
    """Indexes into ``rcpt_tos``, most specific address first, RCPT order among equals."""

    def rank(i: int) -> int:
        found = classify(rcpt_tos[i], config.trackers)
        return _ORDER.get(found.kind if found is not None else "main", 1)

    return sorted(range(len(rcpt_tos)), key=rank)


def per_recipient(status: str | bytes, count: int) -> list[str]:
    """The ``count`` replies owed after DATA (RFC 2033 4.2): the handler's one line per
    recipient, or one verdict on the whole mail (too big, smuggled, a 451) for each."""
    text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
    lines = text.split("\r\n")
    if len(lines) == count:
        return lines
    if len(lines) == 1:
        return lines * count
    log.error("%d replies for %d recipients: %r", len(lines), count, lines)
    return [INTERNAL] * count


class GatewayLMTP(GatewaySMTP, LMTP):
    """The SMTP edge's limits and replies, LHLO instead of EHLO (aiosmtpd's ``LMTP``), and
    one reply per recipient after DATA, whoever produced the verdict: our handler, the DATA
    reader (552 too big, 500 line too long), or aiosmtpd itself (451 after an exception)."""

    def __init__(self, handler: LmtpHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._replies_due = 0  # recipients owed a reply once the mail's data is in
        self._in_lhlo = False

    @syntax("LHLO hostname")
    async def smtp_LHLO(self, arg: str) -> None:
        self._in_lhlo = True  # RFC 2034 3: the greeting's lines carry no status codes
        try:
            await super().smtp_LHLO(arg)
        finally:
            self._in_lhlo = False

    async def push(self, status: AnyStr) -> None:
        if self._replies_due:
            count, self._replies_due = self._replies_due, 0
            for line in per_recipient(status, count):
                await self._push_one(line)
            return
        if isinstance(status, str) and status.startswith("354") and self.envelope is not None:
            # Past 354 the next reply is DATA's final one; refusals before it stay single.
            self._replies_due = len(self.envelope.rcpt_tos)
        await self._push_one(status)

    async def _push_one(self, status: AnyStr) -> None:
        """RFC 2033 5 makes ENHANCEDSTATUSCODES (RFC 2034) mandatory: every 2xx, 4xx and 5xx
        reply but LHLO's carries one, aiosmtpd's own replies included."""
        reply = self._enhanced(status)
        if isinstance(reply, str) and not self._in_lhlo:
            match = _BARE.match(reply)
            if match is not None:
                code = match.group(1) + match.group(2)
                detail = _DETAIL.get(code, f"{match.group(1)}.0.0")
                reply = f"{code} {detail} {reply[4:]}"
        await super().push(reply)


class LmtpHandler(Handler):
    """The SMTP handler's hooks (RCPT checks, smuggling, timeouts, in-flight count) with one
    step replaced: ``_process`` gives each recipient a verdict of its own."""

    async def handle_EHLO(
        self, server: SMTP, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        """RFC 2033 5: an LMTP server must offer PIPELINING (RFC 2920; aiosmtpd reads
        pipelined commands in order) and ENHANCEDSTATUSCODES (RFC 2034; every reply has one)."""
        kept = await super().handle_EHLO(server, session, envelope, hostname, responses)
        return [kept[0], "250-PIPELINING", "250-ENHANCEDSTATUSCODES", *kept[1:]]

    async def _process(self, envelope: Any) -> Outcome:
        """One line per recipient, in RCPT order, for ``GatewayLMTP`` to send apart."""
        rcpts = list(envelope.rcpt_tos)
        outcomes = await self._each(envelope.original_content or b"", envelope.mail_from, rcpts)
        return Outcome(
            "\r\n".join(o.reply for o in outcomes),
            max(o.exit_code for o in outcomes),
            tuple(ref for o in outcomes for ref in o.stored),
            sum(o.queued for o in outcomes),
        )

    async def _each(self, raw: bytes, mail_from: str | None, rcpts: list[str]) -> list[Outcome]:
        """Each recipient alone through the pipeline, within one deadline: those not done
        by then get 451, and the MTA's retry of them is a duplicate if the work went on."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + process_timeout(self.config.smtp.command_timeout)
        done: dict[int, Outcome] = {}
        for i in processing_order(rcpts, self.config):
            env = Envelope(mail_from=mail_from or "", rcpt_tos=(rcpts[i],))
            work = loop.run_in_executor(self.executor, process, self.store, self.config, raw, env)
            try:
                done[i] = await asyncio.wait_for(asyncio.shield(work), deadline - loop.time())
            except TimeoutError:
                log.warning("LMTP processing past its deadline; %s answered 451", rcpts[i])
                break
        return [done.get(i, BUSY) for i in range(len(rcpts))]


class LmtpListener:
    """One gateway's LMTP server on ``lmtp.listen``: ``HOST:PORT``, or a unix socket path.

    The MTA in front already caps its own concurrency (Postfix: ``lmtp`` process limit), and
    all its connections come from one address, so only the total is capped here."""

    def __init__(
        self, store: Store, config: Config, executor: ThreadPoolExecutor, wake: asyncio.Event
    ) -> None:
        self.config = config
        self.handler = LmtpHandler(store, config, executor, wake)
        self.path = lmtp_socket_path(config.lmtp.listen)
        total = config.smtp.max_connections
        self.limits = ConnectionLimits(total, total)
        self._servers: list[asyncio.Server] = []
        self._owns_path = True
        self._protocols: set[GatewayLMTP] = set()

    @property
    def port(self) -> int:
        """The TCP port (useful when ``lmtp.listen`` asked for port 0)."""
        assert self._servers and self.path is None
        return int(self._servers[0].sockets[0].getsockname()[1])

    @property
    def where(self) -> str:
        return self.path or f"{self.config.lmtp.listen.rpartition(':')[0]}:{self.port}"

    @property
    def in_flight(self) -> int:
        return self.handler.in_flight

    async def start(self, bound: tuple[socket.socket, ...] = ()) -> None:
        """Listen on ``lmtp.listen``, or on the sockets the supervisor bound there (then the
        supervisor, not this process, removes a unix socket's file at the end)."""
        loop = asyncio.get_running_loop()
        self._owns_path = not bound
        if not bound:
            where = str(self.config.path or "config")
            listen = self.config.lmtp.listen
            unix = self.path
            bound = (bind_unix(unix, where),) if unix else bind_tcp(listen, "lmtp.listen", where)
        for sock in bound:
            if sock.family == socket.AF_UNIX:
                server = await loop.create_unix_server(self._protocol, sock=sock)
            else:
                server = await loop.create_server(self._protocol, sock=sock)
            self._servers.append(server)
        log.info("LMTP listening on %s", self.where)

    def _protocol(self) -> GatewayLMTP:
        proto = GatewayLMTP(self.handler, limits=self.limits, **edge_options(self.config.smtp))
        self._protocols = {p for p in self._protocols if p.transport is not None}
        self._protocols.add(proto)
        return proto

    def stop_accepting(self) -> None:
        """Close the listening socket (and remove a unix socket's file: Python 3.11 leaves it)."""
        if not self._servers:
            return  # never bound: a socket file there is someone else's
        for server in self._servers:
            server.close()
        if self._owns_path and self.path is not None:
            remove_socket(self.path)

    def close_connections(self) -> None:
        for proto in list(self._protocols):
            if proto.transport is not None:
                proto.transport.close()
