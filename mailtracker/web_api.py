"""The REST API under ``/api/v1/``: the JSON of ``--json``, and writes that are mail.

Reads are public, with addresses hidden (``alice@…``) unless the request carries the API
token of a developer or admin. Writes need a token (``mailtracker user token EMAIL``) and
are run through ``pipeline.process`` by ``web_write``: the same checks as mail, the same
reasons in ``{"error": …}``. Paging: ``page`` and ``per_page`` (at most 100), a ``Link``
header (RFC 8288) to the next and previous pages and ``X-Total-Count``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailtracker.config import TrackerConfig
from mailtracker.models import Issue, Message, Tracker
from mailtracker.pipeline import Outcome, process
from mailtracker.store import Store
from mailtracker.values import Envelope
from mailtracker.views import find_issue
from mailtracker.web_context import WebContext, context
from mailtracker.web_data import issue_detail, issue_list, trackers_data
from mailtracker.web_openapi import openapi_document
from mailtracker.web_search import MAX_PER_PAGE, Filters
from mailtracker.web_tokens import token_owner
from mailtracker.web_write import ApiError, Write, http_status, mail_for, parse_write, reason_of

__all__ = ["ROUTES_API", "api_error", "issue_number", "read_body"]

_TRUSTED_ROLES = ("admin", "developer")


@dataclass(frozen=True)
class Caller:
    email: str
    name: str
    role: str


def api_error(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


async def _caller(request: Request, *, required: bool) -> Caller | None:
    """The token's owner; 401 for a bad token, or for none where a write needs one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        if required:
            raise ApiError(401, "this needs an API token: Authorization: Bearer TOKEN")
        return None
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "send the token as Authorization: Bearer TOKEN")
    ctx = context(request)
    found = await ctx.run(_owner, ctx.store, token.strip())
    if found is None:
        raise ApiError(401, "this API token is not valid (revoked, replaced or mistyped)")
    return found


def _owner(store: Store, token: str) -> Caller | None:
    with store.read() as session:
        user = token_owner(session, token)
        return Caller(user.email, user.name, user.role) if user else None


def _tracker(ctx: WebContext, name: str) -> TrackerConfig:
    tracker = ctx.tracker(name)
    if tracker is None:
        raise ApiError(404, f"there is no tracker '{name}'")
    return tracker


def issue_number(request: Request) -> int:
    """The issue number of the path; numbers past any issue's are simply not found."""
    number = int(request.path_params["number"])
    if not 0 < number < 10**9:
        raise ApiError(404, f"there is no issue {number}")
    return number


def _int_param(request: Request, name: str, default: int, top: int) -> int:
    value = request.query_params.get(name, "")
    if value == "":
        return default
    if not value.isdigit() or not 1 <= int(value) <= top:
        raise ApiError(400, f"{name} must be a whole number from 1 to {top}")
    return int(value)


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(context(request).config))


async def trackers(request: Request) -> Response:
    ctx = context(request)
    return JSONResponse(await ctx.run(_trackers, ctx))


def _trackers(ctx: WebContext) -> list[dict[str, Any]]:
    with ctx.store.read() as session:
        return trackers_data(session, ctx.config)


async def issues(request: Request) -> Response:
    ctx = context(request)
    tracker = _tracker(ctx, request.path_params["tracker"])
    caller = await _caller(request, required=False)
    page = _int_param(request, "page", 1, 10**6)
    per_page = _int_param(request, "per_page", 50, MAX_PER_PAGE)
    query = request.query_params
    filters = Filters(**{k: query.get(k, "")[:200] for k in Filters.__dataclass_fields__})
    data, found = await ctx.run(_issues, ctx, tracker.name, filters, page, per_page, caller)
    links = [
        f'<{_page_url(ctx, request, n)}>; rel="{rel}"'
        for n, rel in ((page + 1, "next"), (page - 1, "prev"))
        if 1 <= n <= found.pages
    ]
    headers = {"X-Total-Count": str(found.total)}
    if links:
        headers["Link"] = ", ".join(links)
    return JSONResponse(data, headers=headers)


def _page_url(ctx: WebContext, request: Request, page: int) -> str:
    """The same query on another page, under ``base_url`` (the proxy's view, not ours)."""
    query = urlencode({**request.query_params, "page": page})
    return f"{ctx.config.web.base_url.rstrip('/')}{request.url.path}?{query}"


def _issues(
    ctx: WebContext, tracker: str, filters: Filters, page: int, per_page: int, who: Caller | None
) -> tuple[list[dict[str, Any]], Any]:
    with ctx.store.read() as session:
        return issue_list(session, tracker, filters, page, per_page, _masker(ctx, who))


def _masker(ctx: WebContext, who: Caller | None) -> Any:
    return ctx.masker(enabled=who is None or who.role not in _TRUSTED_ROLES)


async def issue(request: Request) -> Response:
    ctx = context(request)
    tracker = _tracker(ctx, request.path_params["tracker"])
    caller = await _caller(request, required=False)
    number = issue_number(request)
    data = await ctx.run(_detail, ctx, tracker.name, number, caller)
    if data is None:
        raise ApiError(404, f"{tracker.title} has no issue {number}")
    return JSONResponse(data)


def _detail(ctx: WebContext, tracker: str, number: int, who: Caller | None) -> Any:
    with ctx.store.read() as session:
        return issue_detail(session, tracker, number, _masker(ctx, who))


async def attachments(request: Request) -> Response:
    """Every attachment of the issue, with the URL that downloads it."""
    response = await issue(request)
    data = json.loads(bytes(response.body))
    base = f"/{data['tracker']}/{data['number']}/attachments/"
    found = {
        a["sha256"]: dict(a, url=base + a["sha256"], message_id=m["message_id"])
        for m in data["messages"]
        for a in m["attachments"]
    }
    return JSONResponse(list(found.values()))


async def create_issue(request: Request) -> Response:
    return await _write(request, "new")


async def comment(request: Request) -> Response:
    return await _write(request, "comment")


async def change(request: Request) -> Response:
    return await _write(request, "change")


async def _write(request: Request, kind: str) -> Response:
    """Check the caller and the body, then hand the mail it makes to the pipeline."""
    ctx = context(request)
    caller = await _caller(request, required=True)
    assert caller is not None
    tracker = _tracker(ctx, request.path_params["tracker"])
    number = issue_number(request) if "number" in request.path_params else None
    try:
        data = json.loads(await read_body(request, ctx.config.smtp.max_message_size * 2))
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON") from None
    write = parse_write(data, kind, ctx.config.smtp.max_message_size)
    title = await ctx.run(_title, ctx.store, tracker.name, number) if number else ""
    if title is None:
        raise ApiError(404, f"{tracker.title} has no issue {number}")
    key = request.headers.get("idempotency-key", "")[:200]
    return await _submit(ctx, caller, tracker, number, write, title, key)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes before it is all read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body is over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"the request body is over {limit} bytes")
    return bytes(body)


def _title(store: Store, tracker: str, number: int) -> str | None:
    with store.read() as session:
        found = find_issue(session, tracker, number)
        return found.title if found else None


async def _submit(
    ctx: WebContext,
    caller: Caller,
    tracker: TrackerConfig,
    number: int | None,
    write: Write,
    title: str,
    key: str,
) -> Response:
    author = (caller.email, caller.name)
    raw, message_id = mail_for(write, author, tracker, number, title, ctx.config.smtp.hostname, key)
    rcpt = tracker.issue_address(number) if number else tracker.address
    envelope = Envelope(caller.email, (rcpt,), vouched="api-token")
    outcome: Outcome = await ctx.run(process, ctx.store, ctx.config, raw, envelope)
    if ctx.wake is not None and outcome.queued:
        ctx.wake.set()
    if not outcome.accepted:
        retry = {"Retry-After": "60"} if outcome.reply.startswith("4") else None
        return api_error(http_status(outcome.reply), reason_of(outcome.reply), retry)
    data = await ctx.run(_result, ctx, tracker.name, message_id, caller)
    if data is None:  # accepted, yet not on an issue: quarantined for the administrators
        return api_error(500, reason_of(outcome.reply))
    status = 201 if outcome.stored else 200
    location = {"Location": f"/api/v1/{data['tracker']}/issues/{data['number']}"}
    return JSONResponse(data, status_code=status, headers=location)


def _result(ctx: WebContext, tracker: str, message_id: str, who: Caller) -> Any:
    """The issue the mail ended on, as the caller may see it."""
    with ctx.store.read() as session:
        number = session.scalar(
            select(Issue.number)
            .join(Message, Message.issue_id == Issue.id)
            .join(Tracker, Tracker.id == Message.tracker_id)
            .where(Tracker.name == tracker, Message.message_id == message_id)
        )
        if number is None:
            return None
        return issue_detail(session, tracker, number, _masker(ctx, who))


ROUTES_API: list[tuple[str, Any, list[str]]] = [
    ("/api/v1/openapi.json", openapi, ["GET"]),
    ("/api/v1/trackers", trackers, ["GET"]),
    ("/api/v1/{tracker}/issues", issues, ["GET"]),
    ("/api/v1/{tracker}/issues", create_issue, ["POST"]),
    ("/api/v1/{tracker}/issues/{number:int}", issue, ["GET"]),
    ("/api/v1/{tracker}/issues/{number:int}", change, ["PATCH"]),
    ("/api/v1/{tracker}/issues/{number:int}/messages", comment, ["POST"]),
    ("/api/v1/{tracker}/issues/{number:int}/attachments", attachments, ["GET"]),
]
