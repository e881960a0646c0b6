"""The ceiling: aiosmtpd with a handler that does nothing, run as its own process.

Why: whatever ``serve`` does per mail, it cannot accept mail faster than aiosmtpd alone on
the same event loop, the same machine, the same client. The server options are those of
``serve`` (size limit, SMTPUTF8, timeout), so the only difference is the handler.

    python bench/perf/nullserver.py PORT [--count]

With ``--count`` it also answers ``NOOP`` with how many mails it took, so the fan-out
measurement can use it as the smarthost sink and ask when every notification arrived.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from aiosmtpd.smtp import SMTP

__all__ = ["NullHandler", "main"]


class NullHandler:
    """Takes every mail and keeps nothing but a count."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 2.0.0 Ok"


class CountingSMTP(SMTP):
    """``NOOP`` answers ``250 <mails taken>``: a sink that can be asked how far it got."""

    async def smtp_NOOP(self, arg: str) -> None:
        await self.push(f"250 {self.event_handler.count}")


async def serve(port: int, counting: bool) -> None:
    handler = NullHandler()
    kind = CountingSMTP if counting else SMTP

    def protocol() -> SMTP:
        return kind(
            handler,
            hostname="null.bench",
            ident="null",
            data_size_limit=26_214_400,
            enable_SMTPUTF8=True,
            timeout=300.0,
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol, "127.0.0.1", port)
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    print("ready", flush=True)
    await done.wait()
    server.close()


def main() -> None:
    asyncio.run(serve(int(sys.argv[1]), "--count" in sys.argv[2:]))


if __name__ == "__main__":
    main()
