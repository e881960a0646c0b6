"""The HTML pages: trackers, an issue list with filters and search, one issue's thread.

Plain HTML from Jinja2 templates in ``templates/web/`` (autoescaped), one stylesheet, no
JavaScript: quoted text folds away in ``<details>``, which every browser opens without
scripts. Addresses are hidden (``alice@…``) except the tracker's own, which are how to take
part. The data is the API's (``web_data``), so a page shows what the API returns.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from mailtracker.config import TrackerConfig
from mailtracker.templating import filesize, templates_dir
from mailtracker.web_context import WebContext, context
from mailtracker.web_data import author_names, issue_detail, issue_list, trackers_data
from mailtracker.web_search import Filters

__all__ = ["ROUTES_PAGES", "linkify", "render", "web_environment", "when"]

PER_PAGE = 50
_URL = re.compile(r"https?://(?:[^\s<>&\"')\]]|&amp;)+")  # on escaped text


@lru_cache(maxsize=4)
def web_environment(path: Path | None = None) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(path or templates_dir())),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(filesize=filesize, linkify=linkify, when=when, quote=quote_id)
    return env


def linkify(text: str) -> Markup:
    """Escaped text whose http(s) URLs are links (``nofollow``: these are strangers' links)."""
    escaped = str(escape(text))
    return Markup(
        _URL.sub(
            lambda m: f'<a href="{m.group(0)}" rel="nofollow noopener">{m.group(0)}</a>', escaped
        )
    )


def when(value: str | None) -> str:
    """``2026-11-25T16:30:00Z`` → ``2026-11-25 16:30 UTC``."""
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return value


def quote_id(message_id: str) -> str:
    return quote(message_id, safe="@!$&'()*+,;=:-._~")


def render(template: str, code: int = 200, **values: Any) -> HTMLResponse:
    page = web_environment().get_template(f"web/{template}").render(**values)
    return HTMLResponse(page, status_code=code)


def _tracker(ctx: WebContext, request: Request) -> TrackerConfig:
    tracker = ctx.tracker(request.path_params["tracker"])
    if tracker is None:
        raise HTTPException(404, f"there is no tracker '{request.path_params['tracker']}'")
    return tracker


async def home(request: Request) -> Response:
    ctx = context(request)
    return render("trackers.html", trackers=await ctx.run(_trackers, ctx))


def _trackers(ctx: WebContext) -> list[dict[str, Any]]:
    with ctx.store.read() as session:
        return trackers_data(session, ctx.config)


async def to_list(request: Request) -> Response:
    _tracker(context(request), request)
    return RedirectResponse(f"/{request.path_params['tracker']}/", status_code=308)


async def issues(request: Request) -> Response:
    ctx = context(request)
    tracker = _tracker(ctx, request)
    query = request.query_params
    filters = Filters(**{k: query.get(k, "")[:200] for k in Filters.__dataclass_fields__})
    page = int(query["page"]) if query.get("page", "").isdigit() else 1
    page = min(max(page, 1), 10**6)
    data, found = await ctx.run(_issues, ctx, tracker.name, filters, page)
    chosen = {k: v for k, v in vars(filters).items() if v}
    return render(
        "issues.html",
        tracker=tracker,
        issues=data,
        found=found,
        filters=filters,
        page_url=lambda n: f"?{urlencode({**chosen, 'page': n})}",
    )


def _issues(ctx: WebContext, tracker: str, filters: Filters, page: int) -> Any:
    with ctx.store.read() as session:
        return issue_list(session, tracker, filters, page, PER_PAGE, ctx.masker())


async def issue(request: Request) -> Response:
    ctx = context(request)
    tracker = _tracker(ctx, request)
    number = _number(request)
    data, names = await ctx.run(_issue, ctx, tracker.name, number)
    if data is None:
        raise HTTPException(404, f"{tracker.title} has no issue {number}")
    return render(
        "issue.html",
        tracker=tracker,
        issue=data,
        names=[ctx.masker().text(n) for n in names],
        reply=tracker.issue_address(number),
        follow=f"{tracker.local_part}+{number}+subscribe@{tracker.domain}",
        subscribe=f"{tracker.local_part}+subscribe@{tracker.domain}",
    )


def _issue(ctx: WebContext, tracker: str, number: int) -> tuple[Any, list[str]]:
    with ctx.store.read() as session:
        data = issue_detail(session, tracker, number, ctx.masker())
        return data, author_names(session, tracker, number) if data else []


def _number(request: Request) -> int:
    number = int(request.path_params["number"])
    if not 0 < number < 10**9:
        raise HTTPException(404, f"there is no issue {number}")
    return number


ROUTES_PAGES: list[tuple[str, Any, list[str]]] = [
    ("/", home, ["GET"]),
    ("/{tracker}", to_list, ["GET"]),
    ("/{tracker}/", issues, ["GET"]),
    ("/{tracker}/{number:int}", issue, ["GET"]),
]
