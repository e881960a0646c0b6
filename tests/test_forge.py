"""GitHub webhooks: payloads shaped as GitHub documents them, signed with the configured
secret; bad signatures, replays and unknown repositories change nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from typing import Any

import pytest

from mailtracker.config import Config, GithubConfig
from mailtracker.forge import closing_references, references, resolved_status
from mailtracker.forge_github import handle, signature_ok
from mailtracker.pipeline import process
from mailtracker.store import Store
from mailtracker.values import Envelope
from tests.conftest import MESSAGES
from tests.inspect_db import outbox, show

SECRET = "s3cret"
REPO = "example/app"


@pytest.fixture
def forge_config(config: Config) -> Config:
    bugs = replace(config.trackers[0], github_repos=(REPO,), reference_prefix="bpo-")
    return replace(
        config, github=GithubConfig(webhook_secret=SECRET), trackers=(bugs, *config.trackers[1:])
    )


@pytest.fixture
def issue(store: Store, forge_config: Config) -> None:
    raw = (MESSAGES / "new-issue.eml").read_bytes()
    process(store, forge_config, raw, Envelope("alice@example.com", ("bugs@example.org",)))


def post(
    store: Store,
    config: Config,
    event: str,
    payload: dict[str, Any],
    delivery: str,
    secret: str = SECRET,
) -> tuple[int, dict[str, Any]]:
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "x-github-event": event,
        "x-github-delivery": delivery,
        "x-hub-signature-256": signature,
    }
    return handle(store, config, headers, body)


def pull(action: str, merged: bool = False, body: str = "") -> dict[str, Any]:
    return {
        "action": action,
        "pull_request": {
            "number": 7,
            "title": "bpo-1: handle empty passwords",
            "body": body,
            "merged": merged,
            "html_url": f"https://github.com/{REPO}/pull/7",
        },
        "repository": {"full_name": REPO, "default_branch": "main"},
        "sender": {"login": "octocat"},
    }


def push(branch: str, message: str) -> dict[str, Any]:
    return {
        "ref": f"refs/heads/{branch}",
        "repository": {"full_name": REPO, "default_branch": "main"},
        "commits": [
            {
                "id": "abc1234def5678",
                "message": message,
                "url": f"https://github.com/{REPO}/commit/abc1234",
                "author": {"name": "Octo Cat", "username": "octocat"},
            }
        ],
        "sender": {"login": "octocat"},
    }


def test_references_and_closing_keywords(forge_config: Config) -> None:
    bugs = forge_config.trackers[0]
    text = "Fixes bpo-12, see issue7 and [issue8] and bugs#9; not xbpo-5 nor issue10x"
    assert references(text, bugs) == [8, 7, 9, 12]
    assert closing_references(text, bugs) == [12]
    assert closing_references("closes bugs#3. Resolved: issue4", bugs) == [4, 3]
    assert resolved_status(bugs) == "resolved"


def test_signature_is_checked_before_anything(
    store: Store, forge_config: Config, issue: None
) -> None:
    assert signature_ok(
        SECRET, b"x", "sha256=" + hmac.new(b"s3cret", b"x", hashlib.sha256).hexdigest()
    )
    assert not signature_ok(SECRET, b"x", None)
    assert post(store, forge_config, "pull_request", pull("opened"), "d1", "wrong")[0] == 401
    assert post(store, replace(forge_config, github=GithubConfig()), "ping", {}, "d0")[0] == 404
    assert len(show(store)["messages"]) == 1


def test_pull_request_is_linked_once_with_follow_ups(
    store: Store, forge_config: Config, issue: None
) -> None:
    assert post(store, forge_config, "pull_request", pull("opened"), "d1") == (
        200,
        {"status": "ok", "messages": 1},
    )
    assert post(store, forge_config, "pull_request", pull("opened"), "d1")[1] == {
        "status": "duplicate delivery"
    }
    assert post(store, forge_config, "pull_request", pull("edited"), "d2")[1]["messages"] == 0
    shown = show(store)
    assert shown["messages"][-1]["body"].startswith(
        "Pull request #7 opened by octocat: bpo-1: handle empty passwords"
    )
    assert shown["links"] == [
        {
            "kind": "pull",
            "url": f"https://github.com/{REPO}/pull/7",
            "title": "bpo-1: handle empty passwords",
            "state": "open",
        }
    ]
    assert "bugs-forge@tracker.example.org" not in shown["nosy"]
    assert {r.recipient for r in outbox(store)} == {"alice@example.com", "carol@example.net"}
    merged = pull("closed", merged=True, body="Fixes bpo-1.")
    assert post(store, forge_config, "pull_request", merged, "d3")[1]["messages"] == 1
    shown = show(store)
    assert shown["status"] == "resolved"
    assert shown["links"][0]["state"] == "merged" and len(shown["links"]) == 1
    assert shown["history"][-1]["changes"] == [
        {"property": "status", "old": "new", "new": "resolved"}
    ]
    assert shown["history"][-1]["actor"] == "bugs-forge@tracker.example.org"
    reason = shown["history"][-1]["message_id"]
    assert [m["message_id"] for m in shown["messages"]][-1] == reason  # the link's message
    assert f"Closed by https://github.com/{REPO}/pull/7" in shown["messages"][-1]["body"]


def test_push_closes_only_on_the_default_branch(
    store: Store, forge_config: Config, issue: None
) -> None:
    assert (
        post(store, forge_config, "push", push("topic", "Fix login (closes issue1)"), "p1")[1][
            "messages"
        ]
        == 1
    )
    assert show(store)["status"] == "new"
    again = push("main", "Fix login (closes issue1)")
    again["commits"][0]["id"] = "fff0000aaa"
    assert post(store, forge_config, "push", again, "p2")[1]["messages"] == 1
    shown = show(store)
    assert shown["status"] == "resolved"
    assert shown["messages"][-1]["body"].startswith(
        "Commit fff0000 pushed to main by octocat: Fix login (closes issue1)"
    )


def test_unknown_repositories_and_events_are_ignored(
    store: Store, forge_config: Config, issue: None
) -> None:
    other = pull("opened")
    other["repository"]["full_name"] = "someone/else"
    assert post(store, forge_config, "pull_request", other, "u1")[0] == 202
    assert post(store, forge_config, "star", {"repository": {"full_name": REPO}}, "u2")[0] == 202
    comment = {
        "action": "created",
        "issue": {"number": 3},
        "comment": {"id": 99, "body": "This is bugs#1 again", "html_url": "https://x/c/99"},
        "repository": {"full_name": REPO},
        "sender": {"login": "octocat"},
    }
    assert post(store, forge_config, "issue_comment", comment, "u3")[1]["messages"] == 1
    assert len(show(store)["messages"]) == 2


def test_odd_payloads_are_taken_or_ignored_never_a_500(
    store: Store, forge_config: Config, issue: None
) -> None:
    """Signed payloads a fuzzer made (found failing in the driver, mostly on PostgreSQL):
    a reference past any issue number, NUL characters, a number that is no number."""
    huge = push("main", "Fix bpo-99999999999999999999 and bpo-1")
    assert post(store, forge_config, "push", huge, "o1") == (200, {"status": "ok", "messages": 1})
    nul = pull("opened", body="bpo-1 is\x00 fixed")
    nul["pull_request"]["title"] = "bpo-1: fix\x00"
    assert post(store, forge_config, "pull_request", nul, "o2\x00")[1]["messages"] == 1
    assert "\x00" not in show(store)["messages"][-1]["body"]
    junk = pull("opened", body="bpo-1")
    junk["pull_request"]["number"] = "x" * 400
    assert post(store, forge_config, "pull_request", junk, "o3") == (
        200,
        {"status": "ok", "messages": 0},
    )
    assert len(show(store)["messages"]) == 3


def test_webhook_over_http_on_the_running_server(
    forge_config: Config, store: Store, issue: None
) -> None:
    """The same deliveries POSTed to ``/hooks/github`` on the real web server."""
    import urllib.error
    import urllib.request

    from mailtracker.config import WebConfig
    from tests.harness import running_gateway

    config = replace(
        forge_config, web=WebConfig(listen="127.0.0.1:0", base_url="https://tracker.example.org")
    )

    def http(body: bytes, signature: str, delivery: str) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{gateway.web.port}/hooks/github",
            data=body,
            method="POST",
            headers={
                "X-GitHub-Event": "pull_request",
                "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": signature,
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    body = json.dumps(pull("opened")).encode()
    good = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    with running_gateway(config, web=True) as gateway:
        assert gateway.web is not None
        assert http(body, "sha256=" + "0" * 64, "h1")[0] == 401
        assert http(body, good, "h2") == (200, {"status": "ok", "messages": 1})
        assert http(body, good, "h2") == (200, {"status": "duplicate delivery"})
    assert show(store)["links"][0]["state"] == "open"


def test_issue_page_lists_the_links(forge_config: Config, store: Store, issue: None) -> None:
    import urllib.request

    from mailtracker.config import WebConfig
    from tests.harness import running_gateway

    post(store, forge_config, "pull_request", pull("opened"), "w1")
    config = replace(forge_config, web=WebConfig(listen="127.0.0.1:0"))
    with running_gateway(config, web=True) as gateway:
        assert gateway.web is not None
        url = f"http://127.0.0.1:{gateway.web.port}/bugs/1"
        with urllib.request.urlopen(url, timeout=30) as response:
            page = response.read().decode()
    assert "Pull requests and commits" in page
    assert f'href="https://github.com/{REPO}/pull/7"' in page and "(pull, open)" in page
