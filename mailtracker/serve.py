"""``mailtracker serve``: the SMTP listener and the delivery worker on one event loop (and
the LMTP listener, ``lmtp.py``, when ``lmtp.listen`` is set).

The gateway owns the edge's state: the STARTTLS context (built at start, so a bad
certificate stops ``serve`` with one line) and the connection counts, kept per gateway rather
than per process so two gateways in one process (tests) never share limits.

SIGTERM (or SIGINT) stops accepting connections, lets the mail being processed finish its
transaction and its reply, then closes idle connections and exits 0: a mail is never cut
off between commit and ``250``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mailtracker.config import Config, parse_hostport
from mailtracker.deliver import run_worker
from mailtracker.listeners import Listeners, bind_tcp
from mailtracker.lmtp import LmtpListener
from mailtracker.receive import (
    ConnectionLimits,
    GatewaySMTP,
    Handler,
    edge_options,
    tls_context,
)
from mailtracker.store import Store
from mailtracker.transport import transport_for
from mailtracker.web import WebServer
from mailtracker.web_context import WebContext

__all__ = ["DB_THREADS", "Gateway", "serve_forever"]

log = logging.getLogger(__name__)

DB_THREADS = 4
SHUTDOWN_GRACE = 60.0


class Gateway:
    """One running tracker: SMTP server, worker thread pool, delivery worker."""

    def __init__(
        self,
        config: Config,
        *,
        deliver: bool = True,
        web: bool = False,
        listeners: Listeners | None = None,
    ) -> None:
        self.config = config
        self.listeners = listeners  # bound by the supervisor (``[smtp] processes``), or None
        self.deliver = deliver
        self.serve_web = web and bool(config.web.listen)  # ``serve`` asks for it
        self.web: WebServer | None = None
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.executor = ThreadPoolExecutor(DB_THREADS, thread_name_prefix="mailtracker-db")
        self.store: Store | None = None
        self.handler: Handler | None = None
        self._servers: list[asyncio.Server] = []
        self._protocols: set[GatewaySMTP] = set()
        self._worker: asyncio.Task[None] | None = None
        self.lmtp: LmtpListener | None = None  # with ``lmtp.listen`` set, for an MTA in front
        self._tls: ssl.SSLContext | None = None
        self.limits = ConnectionLimits(
            config.smtp.max_connections, config.smtp.max_connections_per_ip
        )

    @property
    def port(self) -> int:
        assert self._servers
        return int(self._servers[0].sockets[0].getsockname()[1])

    async def start(self) -> None:
        transport_for(self.config)  # a bad DKIM key or smarthost stops the start, not later
        self._tls = tls_context(self.config.smtp, str(self.config.path or "config"))
        loop = asyncio.get_running_loop()
        self.store = await loop.run_in_executor(
            self.executor, lambda: Store.open(self.config, pool_size=DB_THREADS + 1)
        )
        self.handler = Handler(self.store, self.config, self.executor, self.wake)
        bound = self.listeners
        listen = self.config.smtp.listen
        host = parse_hostport(listen, "smtp.listen", "config")[0]
        smtp = (
            bound.smtp
            if bound
            else bind_tcp(listen, "smtp.listen", str(self.config.path or "config"))
        )
        for sock in smtp:
            self._servers.append(await loop.create_server(self._protocol, sock=sock))
        if self.serve_web:
            self.web = WebServer(WebContext(self.store, self.config, self.executor, self.wake))
            await self.web.start(bound.web if bound else ())
        if self.config.lmtp.listen:
            self.lmtp = LmtpListener(self.store, self.config, self.executor, self.wake)
            await self.lmtp.start(bound.lmtp if bound else ())
        if self.deliver:
            self._worker = asyncio.create_task(
                run_worker(self.store, self.config, self.wake, self.stopping)
            )
        log.info("SMTP listening on %s:%d", host, self.port)

    def _protocol(self) -> GatewaySMTP:
        assert self.handler is not None
        smtp = self.config.smtp
        proto = GatewaySMTP(
            self.handler,
            limits=self.limits,
            tls_context=self._tls,
            require_starttls=smtp.require_tls,  # RFC 3207 4: 530 until STARTTLS
            **edge_options(smtp),
        )
        self._protocols = {p for p in self._protocols if p.transport is not None}
        self._protocols.add(proto)
        return proto

    async def stop(self) -> None:
        """Stop accepting, finish in-flight mail, close connections, stop the worker."""
        for server in self._servers:
            server.close()
        if self.web is not None:  # finishes the requests it is answering
            await self.web.stop()
        if self.lmtp is not None:
            self.lmtp.stop_accepting()
        await self._drain()
        for proto in list(self._protocols):
            if proto.transport is not None:
                proto.transport.close()
        if self.lmtp is not None:
            self.lmtp.close_connections()
        self.stopping.set()
        if self._worker is not None:
            await self._worker
        self.executor.shutdown(wait=True)
        if self.store is not None:
            self.store.close()

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_GRACE
        while self._in_flight() and loop.time() < deadline:
            await asyncio.sleep(0.05)

    def _in_flight(self) -> int:
        """Mail being processed now, over SMTP and LMTP."""
        lmtp = self.lmtp.in_flight if self.lmtp is not None else 0
        return (self.handler.in_flight if self.handler else 0) + lmtp


async def serve_forever(config: Config, listeners: Listeners | None = None) -> int:
    """Run until SIGTERM or SIGINT; returns the exit code. ``listeners``: the sockets a
    supervisor bound (``prefork.py``); without them the gateway binds its own."""
    gateway = Gateway(config, web=True, listeners=listeners)
    await gateway.start()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _request_stop, done, sig)
    await done.wait()
    await gateway.stop()
    log.info("stopped")
    return 0


def _request_stop(done: asyncio.Event, sig: Any) -> None:
    log.info("received %s: finishing in-flight mail", signal.Signals(sig).name)
    done.set()
