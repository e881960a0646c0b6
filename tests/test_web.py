"""The web pages and downloads over HTTP, against the real server on loopback."""

from __future__ import annotations

import mailbox
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest

from mailtracker.models import Nosy
from mailtracker.store import issue_by_number, tracker_row, user_by_address
from mailtracker.tokens import unsubscribe_minter
from tests.conftest import CONFIG_FILE
from tests.harness import free_port
from tests.web_harness import PNG, Tracker, deliver, mail, tracker_fixture


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def tracker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Tracker]:
    yield from tracker_fixture(request, tmp_path_factory.mktemp("web"))


@pytest.fixture
def http(tracker: Tracker) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tracker.url, timeout=10) as client:
        yield client


def test_every_page_carries_a_strict_policy(http: httpx.Client) -> None:
    for path in ("/", "/bugs/", "/bugs/1", "/nope/", "/api/v1/trackers"):
        response = http.get(path)
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize(
    "path",
    [
        "/bugs/?status=%00",
        "/bugs/?label=open%00",
        "/bugs/?assignee=%00",
        "/bugs/2/messages/a%00b",
        "/unsubscribe/%00",
        "/api/v1/bugs/issues?status=%00",
        "/api/v1/bugs/issues?assignee=%00",
    ],
)
def test_a_nul_in_the_address_is_a_bad_request(http: httpx.Client, path: str) -> None:
    """PostgreSQL text cannot hold NUL: these were 500s there, failing deep in a query."""
    response = http.get(path)
    assert response.status_code == 400
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    if path.startswith("/api/"):
        assert response.json() == {"error": "the address holds a NUL character"}
    else:
        assert "the address holds a NUL character" in response.text


def test_tracker_list(http: httpx.Client) -> None:
    page = http.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "Example bugs" in page.text and "Example docs" in page.text
    assert 'href="mailto:bugs@example.org"' in page.text


def test_issue_list_filters_and_search(http: httpx.Client) -> None:
    everything = http.get("/bugs/")
    assert "Login page crashes" in everything.text and "Search is slow" in everything.text
    assert "Typo" not in everything.text  # another tracker's
    found = http.get("/bugs/", params={"q": "zebra"}).text
    assert "Search is slow" in found and "Login page crashes" not in found
    by_title = http.get("/bugs/", params={"q": "CRASHES login"}).text
    assert "Login page crashes" in by_title and "Search is slow" not in by_title
    by_prefix = http.get("/bugs/", params={"q": "zeb*"}).text
    assert "Search is slow" in by_prefix
    assert "No issues match" in http.get("/bugs/", params={"q": "\"' OR 1=1 --"}).text
    assert "No issues match" in http.get("/bugs/", params={"status": "closed"}).text
    assert "Search is slow" in http.get("/bugs/", params={"assignee": "nobody"}).text


def test_a_tracker_without_slash_redirects(http: httpx.Client) -> None:
    response = http.get("/bugs")
    assert response.status_code == 308 and response.headers["location"] == "/bugs/"
    assert http.get("/nope/").status_code == 404


def test_issue_page_shows_the_thread_without_addresses(http: httpx.Client) -> None:
    page = http.get("/bugs/1")
    assert page.status_code == 200
    text = page.text
    assert "Login page crashes on empty password" in text
    assert "alice@example.com" not in text and "bob@example.com" not in text
    assert "alice@…" in text and "Alice Example" in text
    assert 'href="mailto:bugs+1@example.org' in text  # where to reply
    assert "bugs+1+subscribe@example.org" in text  # how to follow
    assert "<details>" in text  # the quote of the reply, folded
    assert "crash.log" in text and "/bugs/1/attachments/" in text
    assert "/bugs/1.mbox" in text
    assert http.get("/bugs/99").status_code == 404


def test_page_text_is_escaped(tracker: Tracker, http: httpx.Client) -> None:
    raw = mail(
        "mallory@example.com",
        "<script>alert(1)</script> in title",
        "<img src=x onerror=alert(1)> https://example.com/?a=1&b=<2>",
        message_id="xss-1@example.com",
    )
    deliver(tracker.store, tracker.config, raw)
    listing = http.get("/bugs/", params={"q": "alert"}).text
    assert "<script>alert" not in listing and "&lt;script&gt;" in listing
    number = re.findall(r'href="/bugs/(\d+)"', listing)[0]
    page = http.get(f"/bugs/{number}").text
    assert "<img src=x" not in page
    assert '<a href="https://example.com/?a=1&amp;b=" rel="nofollow noopener">' in page


def _attachment_url(http: httpx.Client, name: str) -> str:
    data = http.get("/api/v1/bugs/issues/1/attachments").json()
    return next(a["url"] for a in data if a["filename"] == name)


def test_attachments_download_safely(http: httpx.Client) -> None:
    log = http.get(_attachment_url(http, "crash.log"))
    assert log.status_code == 200 and log.content == b"Traceback: empty password\n"
    assert log.headers["content-type"].startswith("text/plain")
    assert log.headers["content-disposition"].startswith("attachment;")
    image = http.get(_attachment_url(http, "screen.png"))
    assert image.content == PNG and image.headers["content-type"] == "image/png"
    assert image.headers["content-disposition"].startswith("inline;")
    html = http.get(_attachment_url(http, "page.html"))
    assert html.headers["content-disposition"].startswith("attachment;")
    assert "sandbox" in html.headers["content-security-policy"]
    assert html.headers["x-content-type-options"] == "nosniff"
    assert http.get("/bugs/2/attachments/" + "0" * 64).status_code == 404


def test_eml_is_the_mail_without_addresses(http: httpx.Client) -> None:
    response = http.get("/bugs/1/messages/crash-1@example.com.eml")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("message/rfc822")
    assert b"alice@example.com" not in response.content
    msg = message_from_bytes(response.content, policy=policy.default)
    assert msg["Message-ID"] == "<crash-1@example.com>"
    assert msg["From"].addresses[0].addr_spec == "bugs+1@example.org"
    assert "Alice Example (alice@…)" in msg["From"].addresses[0].display_name
    assert msg["Reply-To"] == "bugs+1@example.org"
    assert http.get("/bugs/2/messages/crash-1@example.com.eml").status_code == 404


def test_mbox_threads_back_to_the_issue(
    tracker: Tracker, http: httpx.Client, tmp_path: Path
) -> None:
    response = http.get("/bugs/1.mbox")
    assert response.status_code == 200 and b"bob@example.com" not in response.content
    (tmp_path / "thread.mbox").write_bytes(response.content)
    messages = list(mailbox.mbox(str(tmp_path / "thread.mbox")))
    assert [m["Message-ID"] for m in messages][:2] == [
        "<crash-1@example.com>",
        "<crash-2@example.com>",
    ]
    assert messages[1]["In-Reply-To"] == "<crash-1@example.com>"
    # A reply from the user's own client, to the address and ids the download gave it.
    answer = mail(
        "carol@example.com",
        "Re: " + str(messages[1]["Subject"]),
        "Me too.",
        to=str(messages[1]["Reply-To"]),
        message_id="carol-too@example.com",
        in_reply_to=str(messages[1]["Message-ID"]).strip("<>"),
    )
    assert "bugs/1" in deliver(tracker.store, tracker.config, answer, "bugs@example.org")


def _nosy_token(tracker: Tracker, email: str, number: int) -> tuple[str, int, int]:
    with tracker.store.write() as session:
        user = user_by_address(session, email)
        issue = issue_by_number(session, tracker_row(session, "bugs").id, number)
        assert user is not None and issue is not None
        token = unsubscribe_minter(session, "bugs", str(number))(user.id)
        return f"bugs.{token}", issue.id, user.id


def _on_nosy(tracker: Tracker, issue_id: int, user_id: int) -> bool:
    with tracker.store.read() as session:
        return session.get(Nosy, (issue_id, user_id)) is not None


def test_scanner_get_unsubscribes_nobody(tracker: Tracker, http: httpx.Client) -> None:
    token, issue_id, user_id = _nosy_token(tracker, "bob@example.com", 1)
    for _ in range(3):  # a link scanner, a preview, a curious person
        page = http.get(f"/unsubscribe/{token}")
        assert page.status_code == 200 and '<form method="post">' in page.text
        assert http.head(f"/unsubscribe/{token}").status_code == 200
    assert _on_nosy(tracker, issue_id, user_id)
    assert page.headers["cache-control"] == "no-store"


def test_one_click_post_unsubscribes(tracker: Tracker, http: httpx.Client) -> None:
    token, issue_id, user_id = _nosy_token(tracker, "carol@example.com", 2)
    assert http.post(f"/unsubscribe/{token}").status_code == 400  # no RFC 8058 body
    assert _on_nosy(tracker, issue_id, user_id)
    done = http.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "no longer receive" in done.text
    assert not _on_nosy(tracker, issue_id, user_id)
    again = http.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200
    forged = token[:-2] + ("aa" if not token.endswith("aa") else "bb")
    assert (
        http.post(f"/unsubscribe/{forged}", data={"List-Unsubscribe": "One-Click"}).status_code
        == 404
    )
    assert http.get("/unsubscribe/nonsense").status_code == 404


def test_notifications_offer_https_one_click(tracker: Tracker) -> None:
    raw = mail(
        "alice@example.com",
        "Re: [issue1] more",
        "Still broken.",
        message_id="notify-https@example.com",
    )
    deliver(tracker.store, tracker.config, raw, "bugs+1@example.org")
    from sqlalchemy import select

    from mailtracker.models import Outbox

    with tracker.store.read() as session:
        rows = list(
            session.scalars(select(Outbox.raw).where(Outbox.recipient == "dev@example.com"))
        )
        rows = rows or list(session.scalars(select(Outbox.raw).order_by(Outbox.id.desc()).limit(1)))
    msg = message_from_bytes(rows[-1], policy=policy.default)
    assert "<https://tracker.example.org/unsubscribe/bugs." in str(msg["List-Unsubscribe"])
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_serve_runs_the_web_and_stops_it_on_sigterm(tmp_path: Path) -> None:
    """``mailtracker serve``: SMTP and the web in one process; SIGTERM stops both, exit 0."""
    smtp_port, web_port = free_port(), free_port()
    path = tmp_path / "mailtracker.toml"
    path.write_text(
        CONFIG_FILE.format(url=f"sqlite:///{tmp_path / 't.db'}")
        .replace("[smtp]\n", f'[smtp]\nlisten = "127.0.0.1:{smtp_port}"\n')
        .replace('[web]\nlisten = ""\n', f'[web]\nlisten = "127.0.0.1:{web_port}"\n')
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailtracker", "serve", "-c", str(path)],
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{web_port}/", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        assert page.status_code == 200 and "Example bugs" in page.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert "web listening on 127.0.0.1" in stderr and "received SIGTERM" in stderr
