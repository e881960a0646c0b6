"""GitHub webhooks (``POST /hooks/github``): checked, then turned into ``ForgeEvent``s.

The ``X-Hub-Signature-256`` HMAC is checked, in constant time, before a byte of the body
is parsed: a bad or missing signature gets 401 and changes nothing. ``X-GitHub-Delivery``
ids make a redelivery a no-op. Events handled: ``pull_request`` (opened, reopened,
closed/merged), ``push`` (each commit; closing keywords count on the default branch) and
``issue_comment``; other events and repositories no tracker names get 202 and are ignored.
A GitLab or Gitea module would be a sibling with its own header check and payload reader.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from mailtracker.config import Config
from mailtracker.forge import ForgeEvent, apply_events
from mailtracker.forge_models import KEY_LENGTH, WebhookDelivery
from mailtracker.models import utcnow
from mailtracker.store import Store

__all__ = ["events_from", "handle", "signature_ok"]

log = logging.getLogger(__name__)

Reply = tuple[int, dict[str, Any]]


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """``sha256=<hex>`` over the raw body with the shared secret (GitHub's scheme)."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256="))


def handle(store: Store, config: Config, headers: Mapping[str, str], body: bytes) -> Reply:
    """The HTTP status and JSON answer for one webhook request (headers lower-cased)."""
    if not config.github.webhook_secret:
        return 404, {"error": "the GitHub webhook is not configured ([github] webhook_secret)"}
    if not signature_ok(config.github.webhook_secret, body, headers.get("x-hub-signature-256")):
        return 401, {"error": "missing or wrong X-Hub-Signature-256"}
    event = headers.get("x-github-event", "")
    delivery = headers.get("x-github-delivery", "").replace("\x00", "")[:100]
    try:
        payload = _without_nul(json.loads(body))
    except ValueError:
        return 400, {"error": "the body is not JSON"}
    if event == "ping":
        return 200, {"status": "pong"}
    if not isinstance(payload, dict) or not _known_repo(config, payload):
        return 202, {"status": "ignored: no tracker links this repository"}
    if _seen(store, delivery):
        return 200, {"status": "duplicate delivery"}
    events = events_from(event, payload)
    if events is None:
        return 202, {"status": f"ignored: event '{event}'"}
    written = apply_events(store, config, events)
    _remember(store, delivery, event)
    return 200, {"status": "ok", "messages": written}


def _known_repo(config: Config, payload: dict[str, Any]) -> bool:
    name = str(_get(payload, "repository", "full_name")).lower()
    return any(name == r.lower() for t in config.trackers for r in t.github_repos)


def _seen(store: Store, delivery: str) -> bool:
    if not delivery:
        return False
    with store.read() as session:
        return (
            session.scalar(
                select(WebhookDelivery.id).where(
                    WebhookDelivery.forge == "github", WebhookDelivery.delivery_id == delivery
                )
            )
            is not None
        )


def _remember(store: Store, delivery: str, event: str) -> None:
    if not delivery:
        return
    try:
        with store.write() as session:
            session.add(
                WebhookDelivery(
                    forge="github", delivery_id=delivery[:100], event=event, created_at=utcnow()
                )
            )
    except IntegrityError:  # the same delivery handled twice at once: once is recorded
        log.info("github delivery %s recorded by another request", delivery)


def _without_nul(data: Any) -> Any:
    """The payload without NUL characters, which JSON may carry and PostgreSQL text cannot
    (a signed payload with one failed deep in an INSERT as a 500; found by fuzzing)."""
    if isinstance(data, str):
        return data.replace("\x00", "")
    if isinstance(data, list):
        return [_without_nul(item) for item in data]
    if isinstance(data, dict):
        return {_without_nul(key): _without_nul(value) for key, value in data.items()}
    return data


def _get(data: Any, *path: str) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data if data is not None else ""


def events_from(event: str, payload: dict[str, Any]) -> list[ForgeEvent] | None:
    """The events a payload describes; ``None`` for an event type we do not handle."""
    reader = {"pull_request": _pull_request, "push": _push, "issue_comment": _comment}
    if event not in reader:
        return None
    # A key longer than its column names nothing GitHub sends (a number that is no number).
    return [e for e in reader[event](payload) if len(e.key) <= KEY_LENGTH]


def _pull_request(payload: dict[str, Any]) -> list[ForgeEvent]:
    action, pr = str(payload.get("action", "")), _get(payload, "pull_request")
    merged = action == "closed" and bool(_get(pr, "merged"))
    state = "merged" if merged else {"closed": "closed"}.get(action, "open")
    if action not in ("opened", "reopened", "closed", "edited"):
        return []
    number, title, actor = _get(pr, "number"), str(_get(pr, "title")), _actor(payload)
    repo = str(_get(payload, "repository", "full_name"))
    verb = {"open": "opened", "merged": "merged", "closed": "closed"}[state]
    return [
        ForgeEvent(
            repo=repo,
            kind="pull",
            key=f"pr:{repo}#{number}",
            url=str(_get(pr, "html_url")),
            title=title,
            state=state,
            actor=actor,
            text=f"{title}\n{_get(pr, 'body')}",
            summary=f"Pull request #{number} {verb} by {actor}: {title}",
            closes=merged,
        )
    ]


def _push(payload: dict[str, Any]) -> list[ForgeEvent]:
    repo = str(_get(payload, "repository", "full_name"))
    branch = str(payload.get("ref", "")).removeprefix("refs/heads/")
    default = branch == str(_get(payload, "repository", "default_branch"))
    commits = payload.get("commits") if isinstance(payload.get("commits"), list) else []
    return [_commit(repo, branch, default, c) for c in commits or [] if isinstance(c, dict)]


def _commit(repo: str, branch: str, default: bool, commit: dict[str, Any]) -> ForgeEvent:
    sha, message = str(commit.get("id", "")), str(commit.get("message", ""))
    first = message.splitlines()[0] if message else ""
    actor = str(_get(commit, "author", "username") or _get(commit, "author", "name"))
    return ForgeEvent(
        repo=repo,
        kind="commit",
        key=f"commit:{repo}@{sha}",
        url=str(commit.get("url", "")),
        title=first,
        state="pushed",
        actor=actor,
        text=message,
        summary=f"Commit {sha[:7]} pushed to {branch} by {actor}: {first}",
        closes=default,
    )


def _comment(payload: dict[str, Any]) -> list[ForgeEvent]:
    if payload.get("action") != "created":
        return []
    comment, issue = _get(payload, "comment"), _get(payload, "issue")
    repo, actor = str(_get(payload, "repository", "full_name")), _actor(payload)
    body = str(_get(comment, "body"))
    first = body.splitlines()[0][:120] if body else ""
    return [
        ForgeEvent(
            repo=repo,
            kind="comment",
            key=f"comment:{repo}:{_get(comment, 'id')}",
            url=str(_get(comment, "html_url")),
            title=first,
            state="posted",
            actor=actor,
            text=body,
            summary=f"Comment by {actor} on #{_get(issue, 'number')}: {first}",
            closes=False,
        )
    ]


def _actor(payload: dict[str, Any]) -> str:
    return str(_get(payload, "sender", "login")) or "someone"
