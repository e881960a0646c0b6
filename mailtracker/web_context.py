"""What every web handler needs: the store, the configuration and the gateway's thread pool.

Handlers are coroutines on the gateway's event loop, which also serves SMTP: every database
call goes through ``run`` into the gateway's thread pool, so the loop never blocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from starlette.requests import Request

from mailtracker.config import Config, TrackerConfig
from mailtracker.store import Store
from mailtracker.web_mask import Masker

__all__ = ["WebContext", "context"]

T = TypeVar("T")


@dataclass(frozen=True)
class WebContext:
    store: Store
    config: Config
    executor: Executor
    wake: asyncio.Event | None = None  # the delivery worker's: set after a write queued mail

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(func, *args))

    def masker(self, *, enabled: bool = True) -> Masker:
        return Masker(self.config.trackers, enabled=enabled)

    def tracker(self, name: str) -> TrackerConfig | None:
        return next((t for t in self.config.trackers if t.name == name), None)


def context(request: Request) -> WebContext:
    found: WebContext = request.app.state.web
    return found
