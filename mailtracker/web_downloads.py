"""Downloads (attachments, ``.eml``, the thread as mbox), the stylesheet and the one-click
unsubscribe pages.

Attachments are whatever strangers sent, served from the tracker's own origin: each goes
out with its recorded type if that is a well-formed MIME type, ``nosniff``, a sandboxing
Content-Security-Policy, and ``Content-Disposition: attachment`` unless it is a raster
image a browser can only display (SVG is not one: it can carry script).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mailtracker.templating import templates_dir
from mailtracker.web_api import read_body
from mailtracker.web_context import WebContext, context
from mailtracker.web_data import Download, attachment, raw_message, thread
from mailtracker.web_export import eml, mbox
from mailtracker.web_pages import render
from mailtracker.web_unsubscribe import describe, unsubscribe
from mailtracker.web_write import ApiError

__all__ = ["INLINE_TYPES", "ROUTES_DOWNLOADS", "content_disposition"]

INLINE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
SANDBOX = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
_MIME_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_MAX_FORM = 65536


def content_disposition(kind: str, filename: str) -> str:
    """RFC 6266: an ASCII ``filename`` for old clients and the real name in ``filename*``."""
    name = re.sub(r"[\x00-\x1f\x7f/\\]", "_", filename).strip() or "attachment"
    fallback = re.sub(r'[^\x20-\x7e]|["%]', "_", name)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _where(request: Request) -> tuple[WebContext, Any, int]:
    ctx = context(request)
    tracker = ctx.tracker(request.path_params["tracker"])
    number = int(request.path_params["number"])
    if tracker is None or not 0 < number < 10**9:
        raise HTTPException(404, "there is no such issue")
    return ctx, tracker, number


async def attachment_file(request: Request) -> Response:
    ctx, tracker, number = _where(request)
    sha256 = request.path_params["sha256"]
    found = None
    if _SHA256.match(sha256):
        found = await ctx.run(_attachment, ctx, tracker.name, number, sha256)
    if found is None:
        raise HTTPException(404, "this issue has no such attachment")
    kind = found.content_type.lower().split(";")[0].strip()
    kind = kind if _MIME_TYPE.match(kind) else "application/octet-stream"
    disposition = "inline" if kind in INLINE_TYPES else "attachment"
    headers = {
        "Content-Disposition": content_disposition(disposition, found.filename),
        "Content-Security-Policy": SANDBOX,
        "Cache-Control": "public, max-age=86400",
    }
    return Response(found.data, media_type=kind, headers=headers)


def _attachment(ctx: WebContext, tracker: str, number: int, sha256: str) -> Download | None:
    with ctx.store.read() as session:
        return attachment(session, tracker, number, sha256)


async def message_file(request: Request) -> Response:
    ctx, tracker, number = _where(request)
    name: str = request.path_params["message_id"]
    message_id = name.removesuffix(".eml")
    raw = await ctx.run(_raw, ctx, tracker.name, number, message_id)
    if raw is None or not name.endswith(".eml"):
        raise HTTPException(404, "this issue has no such message")
    data = eml(raw, message_id, tracker, number, ctx.masker())
    short = hashlib.sha256(message_id.encode()).hexdigest()[:12]
    filename = f"{tracker.name}-{number}-{short}.eml"
    headers = {"Content-Disposition": content_disposition("attachment", filename)}
    return Response(data, media_type="message/rfc822", headers=headers)


def _raw(ctx: WebContext, tracker: str, number: int, message_id: str) -> bytes | None:
    with ctx.store.read() as session:
        return raw_message(session, tracker, number, message_id)


async def mbox_file(request: Request) -> Response:
    ctx, tracker, number = _where(request)
    mails = await ctx.run(_thread, ctx, tracker.name, number)
    if mails is None:
        raise HTTPException(404, f"{tracker.title} has no issue {number}")
    data = await ctx.run(mbox, mails, tracker, number, ctx.masker())
    filename = f"{tracker.name}-{number}.mbox"
    headers = {"Content-Disposition": content_disposition("attachment", filename)}
    return Response(data, media_type="application/mbox", headers=headers)


def _thread(ctx: WebContext, tracker: str, number: int) -> Any:
    with ctx.store.read() as session:
        return thread(session, tracker, number)


async def stylesheet(request: Request) -> Response:
    css = (templates_dir() / "web" / "style.css").read_bytes()
    return Response(css, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


_PRIVATE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}


async def unsubscribe_page(request: Request) -> Response:
    """GET: say what a POST would stop, with a button; never act (link scanners GET)."""
    ctx = context(request)
    token = request.path_params["token"]
    what = await ctx.run(describe, ctx.store, ctx.config, token)
    response = render("unsubscribe.html", 200 if what else 404, what=_mask(ctx, what), done=False)
    response.headers.update(_PRIVATE)
    return response


async def unsubscribe_now(request: Request) -> Response:
    """POST ``List-Unsubscribe=One-Click`` (RFC 8058 §3.2), form-encoded or multipart."""
    ctx = context(request)
    try:
        body = await read_body(request, _MAX_FORM)
    except ApiError as exc:
        raise HTTPException(exc.status, exc.reason) from None
    if b"List-Unsubscribe" not in body or b"One-Click" not in body:
        raise HTTPException(400, "unsubscribing takes a POST of List-Unsubscribe=One-Click")
    what = await ctx.run(unsubscribe, ctx.store, ctx.config, request.path_params["token"])
    response = render("unsubscribe.html", 200 if what else 404, what=_mask(ctx, what), done=True)
    response.headers.update(_PRIVATE)
    return response


def _mask(ctx: WebContext, text: str | None) -> str | None:
    return ctx.masker().text(text) if text else text


ROUTES_DOWNLOADS: list[tuple[str, Any, list[str]]] = [
    ("/static/style.css", stylesheet, ["GET"]),
    ("/unsubscribe/{token}", unsubscribe_page, ["GET"]),
    ("/unsubscribe/{token}", unsubscribe_now, ["POST"]),
    ("/{tracker}/{number:int}.mbox", mbox_file, ["GET"]),
    ("/{tracker}/{number:int}/messages/{message_id:path}", message_file, ["GET"]),
    ("/{tracker}/{number:int}/attachments/{sha256}", attachment_file, ["GET"]),
]
