"""The REST API over HTTP: reads as ``--json``, writes that go through the mail pipeline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from mailtracker.cli import main
from mailtracker.models import Message, Outbox
from tests.web_harness import Tracker, tracker_fixture


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def tracker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Tracker]:
    yield from tracker_fixture(request, tmp_path_factory.mktemp("api"))


@pytest.fixture
def api(tracker: Tracker) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tracker.url + "/api/v1", timeout=10) as client:
        yield client


def auth(tracker: Tracker, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tracker.tokens[who]}"}


def test_trackers(api: httpx.Client) -> None:
    data = api.get("/trackers").json()
    assert [t["name"] for t in data] == ["bugs", "docs"]
    assert data[0]["statuses"][0] == "new" and data[0]["issues"] >= 2


def test_issue_list_is_the_cli_json_with_hidden_addresses(api: httpx.Client) -> None:
    response = api.get("/bugs/issues")
    assert response.status_code == 200
    issues = {i["number"]: i for i in response.json()}
    crash = issues[1]
    assert set(crash) == {
        "id",
        "tracker",
        "number",
        "title",
        "status",
        "priority",
        "assignee",
        "labels",
        "nosy",
        "created",
        "updated",
    }
    assert crash["id"] == "bugs/1" and crash["status"] == "new"
    assert all(e.endswith("@…") for e in crash["nosy"]) and "alice@…" in crash["nosy"]
    assert int(response.headers["x-total-count"]) == len(issues)
    assert [i["title"] for i in api.get("/bugs/issues", params={"q": "zebra"}).json()] == [
        "Search is slow"
    ]


def test_paging(api: httpx.Client) -> None:
    first = api.get("/bugs/issues", params={"per_page": 1})
    assert len(first.json()) == 1 and 'rel="next"' in first.headers["link"]
    assert first.headers["link"].startswith(
        "<https://tracker.example.org/api/v1/bugs/issues?per_page=1&page=2>"
    )
    second = api.get("/bugs/issues", params={"per_page": 1, "page": 2})
    assert second.json()[0]["number"] != first.json()[0]["number"]
    assert 'rel="prev"' in second.headers["link"]
    assert api.get("/bugs/issues", params={"per_page": 101}).status_code == 400
    assert api.get("/bugs/issues", params={"page": "x"}).json() == {
        "error": "page must be a whole number from 1 to 1000000"
    }


def test_one_issue_as_show_json(tracker: Tracker, api: httpx.Client) -> None:
    data = api.get("/bugs/issues/1").json()
    assert [m["message_id"] for m in data["messages"]][:2] == [
        "crash-1@example.com",
        "crash-2@example.com",
    ]
    assert data["messages"][0]["author"] == "alice@…"
    assert "alice@example.com" not in json.dumps(data)
    assert data["history"][0]["changes"][0]["property"] == "title"
    full = api.get("/bugs/issues/1", headers=auth(tracker, "dev")).json()
    assert full["messages"][0]["author"] == "alice@example.com"  # a developer sees all
    hidden = api.get("/bugs/issues/1", headers=auth(tracker, "carol")).json()
    assert hidden["messages"][0]["author"] == "alice@…"  # a user does not
    assert api.get("/bugs/issues/999").json() == {"error": "Example bugs has no issue 999"}
    assert api.get("/nope/issues/1").status_code == 404


def test_attachments_list(api: httpx.Client) -> None:
    data = api.get("/bugs/issues/1/attachments").json()
    assert {a["filename"] for a in data} == {"crash.log", "screen.png", "page.html"}
    assert all(a["url"].startswith("/bugs/1/attachments/") for a in data)


def test_writes_need_a_valid_token(tracker: Tracker, api: httpx.Client) -> None:
    missing = api.post("/bugs/issues/1/messages", json={"comment": "hi"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = api.post(
        "/bugs/issues/1/messages",
        json={"comment": "hi"},
        headers={"Authorization": "Bearer mt_nope"},
    )
    assert wrong.status_code == 401
    assert "not valid" in wrong.json()["error"]


def test_comment_goes_through_the_mail_pipeline(tracker: Tracker, api: httpx.Client) -> None:
    response = api.post(
        "/bugs/issues/1/messages",
        json={"comment": "Fixed on staging?"},
        headers=auth(tracker, "carol"),
    )
    assert response.status_code == 201, response.text
    data = response.json()
    last = data["messages"][-1]
    assert last["body"] == "Fixed on staging?" and last["author"] == "carol@…"
    assert last["verified"] is True and last["evidence"] == "api-token"
    assert response.headers["location"] == "/api/v1/bugs/issues/1"
    with tracker.store.read() as session:
        stored = session.scalar(select(Message).where(Message.message_id == last["message_id"]))
        assert stored is not None
        raw = stored.raw
        told = set(
            session.scalars(select(Outbox.recipient).where(Outbox.cause_message_pk == stored.id))
        )
    assert raw is not None and b"From: carol@example.com" in raw
    assert "alice@example.com" in told and "carol@example.com" not in told  # the nosy list


def test_refusals_carry_the_mail_reasons(tracker: Tracker, api: httpx.Client) -> None:
    bogus = api.patch("/bugs/issues/1", json={"status": "bogus"}, headers=auth(tracker, "dev"))
    assert bogus.status_code == 422
    assert bogus.json()["error"] == (
        "nothing was changed: status 'bogus' is not one of: new, open, pending, resolved, closed"
    )
    not_yours = api.patch(
        "/bugs/issues/1", json={"priority": "high"}, headers=auth(tracker, "carol")
    )
    assert not_yours.status_code == 403
    assert not_yours.json()["error"].startswith("you may not change priority")
    assert api.patch("/bugs/issues/1", json={}, headers=auth(tracker, "dev")).status_code == 422
    assert (
        api.patch(
            "/bugs/issues/1", json={"colour": "red"}, headers=auth(tracker, "dev")
        ).status_code
        == 422
    )
    injected = api.patch(
        "/bugs/issues/1",
        json={"status": "open\nAssignee: carol@example.com"},
        headers=auth(tracker, "dev"),
    )
    assert injected.status_code == 422
    looks_like_command = api.post(
        "/bugs/issues/1/messages", json={"comment": "Status: odd"}, headers=auth(tracker, "carol")
    )
    assert looks_like_command.status_code == 422
    assert (
        api.post(
            "/bugs/issues/1/messages", content=b"{not json", headers=auth(tracker, "carol")
        ).status_code
        == 400
    )
    huge = b'{"comment": "' + b"x" * 2_100_000 + b'"}'
    too_big = api.post("/bugs/issues/1/messages", content=huge, headers=auth(tracker, "carol"))
    assert too_big.status_code == 413


def test_changes_by_a_developer_and_by_the_reporter(tracker: Tracker, api: httpx.Client) -> None:
    changed = api.patch(
        "/bugs/issues/2",
        json={"priority": "high", "labels": ["perf", "+ui"], "assignee": "dev@example.com"},
        headers=auth(tracker, "dev"),
    )
    assert changed.status_code == 201, changed.text
    data = changed.json()
    assert (data["priority"], data["labels"], data["assignee"]) == (
        "high",
        ["perf", "ui"],
        "dev@example.com",
    )
    assert data["history"][-1]["actor"] == "dev@example.com"
    own = api.patch(
        "/bugs/issues/2",
        json={"status": "resolved", "comment": "Works now."},
        headers=auth(tracker, "carol"),
    )
    assert own.status_code == 201 and own.json()["status"] == "resolved"
    listed = api.get(
        "/bugs/issues",
        params={
            "status": "resolved",
            "assignee": "dev@example.com",
            "label": "perf",
            "priority": "high",
        },
    ).json()
    assert [i["number"] for i in listed] == [2]


def test_new_issue_and_idempotency(tracker: Tracker, api: httpx.Client) -> None:
    headers = {**auth(tracker, "bob"), "Idempotency-Key": "form-42"}
    labelled = {"title": "Dark mode", "comment": "Please add one.", "labels": "+ui"}
    refused = api.post("/bugs/issues", json=labelled, headers=auth(tracker, "bob"))
    assert refused.status_code == 403  # only developers set labels, as by mail
    body = {"title": "Dark mode", "comment": "Please add one."}
    created = api.post("/bugs/issues", json=body, headers=headers)
    assert created.status_code == 201, created.text
    number = created.json()["number"]
    assert created.json()["title"] == "Dark mode" and created.json()["status"] == "new"
    again = api.post("/bugs/issues", json=body, headers=headers)
    assert again.status_code == 200 and again.json()["number"] == number
    assert len(again.json()["messages"]) == 1
    assert (
        api.post("/bugs/issues", json={"title": "help"}, headers=auth(tracker, "bob")).status_code
        == 422
    )


def test_user_token_command(
    tracker: Tracker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "mailtracker.toml"
    config_file.write_text(
        f'[database]\nurl = "{tracker.config.database.url}"\n\n'
        '[[trackers]]\nname = "bugs"\naddress = "bugs@example.org"\ntitle = "Example bugs"\n'
        '[[trackers]]\nname = "docs"\naddress = "docs@example.org"\ntitle = "Example docs"\n'
    )
    assert main(["user", "token", "bob@example.com", "-c", str(config_file)]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("mt_")
    with httpx.Client(base_url=tracker.url + "/api/v1") as api:
        headers = {"Authorization": f"Bearer {token}"}
        assert (
            api.post(
                "/bugs/issues/1/messages", json={"comment": "From the CLI token."}, headers=headers
            ).status_code
            == 201
        )
        old = {"Authorization": f"Bearer {tracker.tokens['bob']}"}
        assert (
            api.post("/bugs/issues/1/messages", json={"comment": "x"}, headers=old).status_code
            == 401
        )  # replaced
        assert main(["user", "token", "bob@example.com", "--revoke", "-c", str(config_file)]) == 0
        assert (
            api.post("/bugs/issues/1/messages", json={"comment": "y"}, headers=headers).status_code
            == 401
        )
    assert main(["user", "token", "ghost@example.com", "-c", str(config_file)]) == 65


def test_openapi_document(api: httpx.Client) -> None:
    doc = api.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert "/api/v1/{tracker}/issues/{number}" in doc["paths"]
