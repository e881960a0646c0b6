"""The web server: pages, downloads and the REST API, in ``serve``'s process and event loop.

Starlette (routing, requests, responses) under uvicorn's server, started as a task on the
gateway's loop: SMTP, delivery and HTTP share one loop and one thread pool for the
database, and ``Gateway.stop`` stops them together. Every response carries a strict
Content-Security-Policy (no script at all, styles from our own stylesheet), ``nosniff``, no
framing and no referrer (unsubscribe URLs carry tokens).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from urllib.parse import unquote_to_bytes

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailtracker.config import parse_hostport
from mailtracker.listeners import bind_tcp
from mailtracker.web_api import ROUTES_API, api_error
from mailtracker.web_context import WebContext
from mailtracker.web_downloads import ROUTES_DOWNLOADS
from mailtracker.web_hooks import ROUTES_HOOKS
from mailtracker.web_pages import ROUTES_PAGES, render
from mailtracker.web_write import ApiError

__all__ = ["CSP", "WebServer", "make_app"]

log = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


class SecurityHeaders:
    """Adds the security headers to every response; a CSP set by a handler (the stricter
    sandbox of downloads) is kept."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [h for h in SECURITY_HEADERS if h[0] not in names]
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", CSP.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RefuseNul:
    """A NUL in the path or the query is answered 400 before any handler sees it: no
    address of ours holds one, and PostgreSQL text cannot, so a filter or id with ``%00``
    failed deep in a query as a 500 (found by fuzzing the web against PostgreSQL)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_nul(scope):
            reason = "the address holds a NUL character"
            response: Response
            if _is_api(str(scope["path"])):
                response = api_error(400, reason)
            else:
                response = render("error.html", 400, status=400, reason=reason)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _has_nul(scope: Scope) -> bool:
    query = bytes(scope.get("query_string", b""))
    return "\x00" in str(scope["path"]) or b"\x00" in unquote_to_bytes(query)


def _is_api(path: str) -> bool:
    return path.startswith("/api/")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return api_error(exc.status, exc.reason, headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    reason = exc.detail if exc.status_code != 404 or exc.detail != "Not Found" else "not found"
    if _is_api(request.url.path):
        return api_error(exc.status_code, str(reason), dict(exc.headers or {}))
    return render("error.html", exc.status_code, status=exc.status_code, reason=reason)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    if _is_api(request.url.path):
        return api_error(500, "internal error; the administrators can read the log")
    return render("error.html", 500, status=500, reason="internal error")


def make_app(web: WebContext) -> Starlette:
    routes = [
        Route(path, endpoint, methods=methods)
        for path, endpoint, methods in (
            *ROUTES_API,
            *ROUTES_DOWNLOADS,
            *ROUTES_PAGES,
            *ROUTES_HOOKS,
        )
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders), Middleware(RefuseNul)],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
    app.state.web = web
    return app


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: ``serve`` owns SIGTERM and SIGINT
    and stops the web together with SMTP (``Gateway.stop``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebServer:
    """The HTTP listener on ``[web] listen``, as a task on the running loop."""

    def __init__(self, web: WebContext) -> None:
        self.web = web
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._sockets: tuple[socket.socket, ...] = ()

    @property
    def port(self) -> int:
        assert self._sockets
        return int(self._sockets[0].getsockname()[1])

    async def start(self, bound: tuple[socket.socket, ...] = ()) -> None:
        """Listen on ``[web] listen``, or on the sockets the supervisor bound there. Bound
        before uvicorn starts, so a port in use stops ``serve`` with one clear error."""
        where = str(self.web.config.path or "config")
        host = parse_hostport(self.web.config.web.listen, "web.listen", where)[0]
        self._sockets = bound or bind_tcp(self.web.config.web.listen, "web.listen", where)
        config = uvicorn.Config(
            make_app(self.web),
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            http="h11",
            ws="none",
            timeout_graceful_shutdown=10,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=list(self._sockets)))
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()  # raises what stopped it
        log.info("web listening on %s:%d", host, self.port)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
