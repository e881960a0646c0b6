"""Receive: the SMTP edge. aiosmtpd speaks the protocol; this adapter only turns the
pipeline's ``Outcome`` into SMTP replies.

Unknown recipients are refused at RCPT, before the body travels. The body is processed in
a bounded thread pool (a sync SQLAlchemy engine, which measured faster than AsyncSession on
SQLite), so the event loop never blocks, and ``250`` is sent only after the commit.
aiosmtpd's connection ``timeout`` also runs while ``handle_DATA`` works, so processing is
bounded below it: past ``PROCESS_TIMEOUT`` the client gets 451 and retries; if the work
did commit meanwhile, the retry is answered as a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP

from mailtracker.config import Config
from mailtracker.pipeline import Outcome, process, refusal_for_recipient
from mailtracker.store import Store
from mailtracker.values import Envelope

__all__ = ["MAX_RECIPIENTS", "SMTP_TIMEOUT", "GatewaySMTP", "Handler"]

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 100
SMTP_TIMEOUT = 300.0
PROCESS_TIMEOUT = 240.0
LINE_LENGTH_LIMIT = 65_536  # RFC 5321 says 1000, but real clients send longer lines


class GatewaySMTP(SMTP):
    """aiosmtpd's server with RFC 3463 enhanced codes on its own size refusals.

    aiosmtpd answers an over-size mail with a bare ``552 Error: Too much mail data``; MTAs
    and people read ``552 5.3.4`` better, with the limit in the text.
    """

    line_length_limit = LINE_LENGTH_LIMIT

    def __init__(self, handler: Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._limit = kwargs.get("data_size_limit")

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str) and status.startswith("552 Error"):
            status = f"552 5.3.4 Message too big: this tracker takes at most {self._limit} bytes"
        await super().push(status)


class Handler:
    """aiosmtpd hooks; all decisions are the pipeline's."""

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
        try:
            return await asyncio.wait_for(asyncio.shield(work), PROCESS_TIMEOUT)
        except TimeoutError:
            log.warning("processing took longer than %.0f s; answered 451", PROCESS_TIMEOUT)
            return Outcome("451 4.3.0 The tracker is too busy; try again later", 75)
