"""The web tests' tracker: a gateway with its web server on loopback, and a small history.

One gateway per test module (starting one migrates a fresh database), on SQLite and on
PostgreSQL like the storage tests. The history is sent through ``pipeline.process``, as
mail, so the pages and the API read what mail really leaves behind.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailtracker.config import Config, WebConfig
from mailtracker.pipeline import process
from mailtracker.serve import Gateway
from mailtracker.store import Store, create_user, user_by_address
from mailtracker.values import Envelope
from mailtracker.web_tokens import issue_token
from tests.conftest import _postgres_url, _reset_postgres, make_config
from tests.harness import running_gateway

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@dataclass(frozen=True)
class Tracker:
    """A running gateway with its web address and the API tokens of its users."""

    gateway: Gateway
    url: str
    config: Config
    tokens: dict[str, str]

    @property
    def store(self) -> Store:
        assert self.gateway.store is not None
        return self.gateway.store


def database_url(kind: str, folder: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{folder / 'web.db'}"
    url = _postgres_url()
    _reset_postgres(url)
    return url


def web_config(db_url: str, folder: Path, base_url: str = "https://tracker.example.org") -> Config:
    return replace(
        make_config(db_url, folder), web=WebConfig(listen="127.0.0.1:0", base_url=base_url)
    )


@contextmanager
def running_tracker(config: Config) -> Iterator[Tracker]:
    with running_gateway(config, web=True) as gateway:
        assert gateway.store is not None and gateway.web is not None
        tokens = seed(gateway.store, config)
        yield Tracker(gateway, f"http://127.0.0.1:{gateway.web.port}", config, tokens)


def tracker_fixture(request: pytest.FixtureRequest, folder: Path) -> Iterator[Tracker]:
    with running_tracker(web_config(database_url(request.param, folder), folder)) as tracker:
        yield tracker


def mail(
    sender: str,
    subject: str,
    body: str,
    *,
    to: str = "bugs@example.org",
    cc: str = "",
    message_id: str = "",
    in_reply_to: str = "",
    attachments: tuple[tuple[str, str, bytes], ...] = (),
) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Date"] = "Wed, 25 Nov 2026 10:00:00 +0000"
    if cc:
        msg["Cc"] = cc
    if message_id:
        msg["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        msg["In-Reply-To"] = msg["References"] = f"<{in_reply_to}>"
    msg.set_content(body)
    for filename, content_type, data in attachments:
        maintype, subtype = content_type.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def deliver(store: Store, config: Config, raw: bytes, rcpt: str = "bugs@example.org") -> str:
    sender = "alice@example.com"
    outcome = process(store, config, raw, Envelope(sender, (rcpt,)))
    assert outcome.accepted, outcome.reply
    return outcome.reply


FILES = (
    ("crash.log", "text/plain", b"Traceback: empty password\n"),
    ("screen.png", "image/png", PNG),
    ("page.html", "text/html", b"<script>alert(1)</script>"),
)
CRASH = "Pressing Login with an empty password shows a 500 page.\n\n-- \nAlice, alice@example.com\n"
REPLY = (
    "I see it too, in Firefox.\n\nOn Wed, Alice Example <alice@example.com> wrote:\n"
    "> Pressing Login with an empty password shows a 500 page.\n"
)
HISTORY = (
    (
        "Alice Example <alice@example.com>",
        "Login page crashes on empty password",
        CRASH,
        {"cc": "bob@example.com", "message_id": "crash-1@example.com", "attachments": FILES},
    ),
    (
        "Bob <bob@example.com>",
        "Re: [issue1] Login page crashes on empty password",
        REPLY,
        {"message_id": "crash-2@example.com", "in_reply_to": "crash-1@example.com"},
    ),
    (
        "carol@example.com",
        "Search is slow",
        "Searching for zebra takes ten seconds.",
        {"message_id": "slow-1@example.com"},
    ),
    (
        "carol@example.com",
        "Typo on the front page",
        "Teh front page.",
        {"message_id": "typo-1@example.com", "to": "docs@example.org"},
    ),
)


def seed(store: Store, config: Config) -> dict[str, str]:
    """bugs/1: a crash with attachments and a quoted reply; bugs/2: a slow search;
    docs/1: a typo. Users: alice (reporter), bob, carol, dev (developer), each with an
    API token."""
    for sender, subject, body, extra in HISTORY:
        rcpt = str(extra.get("to", "bugs@example.org"))
        deliver(store, config, mail(sender, subject, body, **extra), rcpt)
    with store.write() as session:
        dev = create_user(session, "dev@example.com", "Dev Eloper", "developer")
        tokens = {"dev": issue_token(session, dev.id)}
        for name in ("alice", "bob", "carol"):
            user = user_by_address(session, f"{name}@example.com")
            assert user is not None
            tokens[name] = issue_token(session, user.id)
    return tokens
