"""Real servers on loopback for tests: the gateway in a thread with its own event loop."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

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
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
