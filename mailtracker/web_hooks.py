"""Forge webhooks on the web server: ``POST /hooks/github`` (forge_github.py does the work).

The body is read whole and handed over untouched, because the signature covers the exact
bytes; the check, the parsing and the database work run in the gateway's thread pool.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailtracker.forge_github import handle
from mailtracker.web_context import context

__all__ = ["ROUTES_HOOKS"]

MAX_BODY = 5 * 1024 * 1024  # GitHub caps payloads at 25 MB; pushes we use are far smaller


async def github(request: Request) -> Response:
    body = await request.body()
    if len(body) > MAX_BODY:
        return JSONResponse({"error": "payload too large"}, status_code=413)
    ctx = context(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    status, answer = await ctx.run(handle, ctx.store, ctx.config, headers, body)
    if status == 200 and answer.get("messages") and ctx.wake is not None:
        ctx.wake.set()  # notifications were queued: tell the delivery worker
    return JSONResponse(answer, status_code=status)


ROUTES_HOOKS = (("/hooks/github", github, ["POST"]),)
