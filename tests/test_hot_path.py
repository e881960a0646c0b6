"""The mail path's database work: few statements, and the same rows as before it was
written against Core tables instead of the ORM (issue 7).

The statement bound is a guard, not a target: a change that adds a query to every reply
should be a decision, made where this number is raised, not an accident.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from sqlalchemy import event, select, text

from mailtracker.config import Config
from mailtracker.models import Address, Issue, JournalEntry, Message, Nosy, User
from mailtracker.pipeline import Outcome, process
from mailtracker.store import Store
from mailtracker.values import Envelope
from tests.conftest import MESSAGES

# BEGIN, tracker, three threading lookups, duplicate, author, issue, abuse limit, message,
# references, nosy, issue update, who is told, notice, signing key, recipients' users,
# outbox: 18 on SQLite (PostgreSQL's BEGIN is implicit). It was 22 before issue 7's Core
# rewrite of the path.
REPLY_STATEMENTS = 18


@contextmanager
def counted(store: Store) -> Iterator[list[str]]:
    """The SQL statements run on ``store`` inside the block."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", record)


def mail(sender: str, message_id: str, headers: str = "", body: str = "Hello.") -> bytes:
    return (
        f"From: {sender}\r\nTo: bugs@example.org\r\nSubject: Re: Login page crashes\r\n"
        f"Message-ID: <{message_id}>\r\n{headers}\r\n{body}\r\n"
    ).encode()


def deliver(store: Store, config: Config, raw: bytes, sender: str) -> Outcome:
    return process(store, config, raw, Envelope(sender, ("bugs@example.org",)))


def opened(store: Store, config: Config) -> None:
    """Issue 1 by Alice with Carol Cc'd, and a first reply by Dave (which makes the key of
    reply tokens), so the reply measured afterwards is an ordinary one."""
    raw = (MESSAGES / "new-issue.eml").read_bytes()
    assert deliver(store, config, raw, "alice@example.com").stored == ("bugs/1",)
    first = mail("dave@example.com", "dave-1@example.com", "References: <new-1@example.com>\r\n")
    assert deliver(store, config, first, "dave@example.com").stored == ("bugs/1",)


def test_a_reply_by_references_stays_within_its_statements(store: Store, config: Config) -> None:
    opened(store, config)
    raw = mail("dave@example.com", "dave-2@example.com", "References: <new-1@example.com>\r\n")
    with counted(store) as statements:
        outcome = deliver(store, config, raw, "dave@example.com")
    assert outcome.stored == ("bugs/1",) and outcome.queued == 2
    assert len(statements) <= REPLY_STATEMENTS, "\n".join(statements)


def test_every_reply_runs_the_same_statement_texts_so_the_drivers_keep_them_prepared(
    store: Store, config: Config
) -> None:
    """The drivers prepare a statement once per connection and find it again by its text:
    sqlite3 keeps 128 per connection, psycopg prepares on the server after 5 runs. That
    holds only while no value is rendered into the SQL, which this guards."""
    opened(store, config)
    texts = []
    for n in range(2, 7):
        raw = mail(
            "dave@example.com", f"dave-{n}@example.com", "References: <new-1@example.com>\r\n"
        )
        with counted(store) as statements:
            assert deliver(store, config, raw, "dave@example.com").stored == ("bugs/1",)
        texts.append(statements)
    assert texts[-1] == texts[-2] == texts[-3], "\n".join(texts[-1])
    if store.engine.dialect.name == "postgresql":  # one connection did all of it here
        with store.engine.connect() as conn:
            names = conn.scalars(text("SELECT name FROM pg_prepared_statements")).all()
        assert len(names) >= len(set(texts[-1])) - 1, names  # all but the one run last


def test_a_reply_moves_updated_at_and_a_new_issue_starts_with_it(
    store: Store, config: Config
) -> None:
    opened(store, config)
    with store.read() as session:
        issue = session.scalars(select(Issue)).one()
        last = session.scalars(select(Message).order_by(Message.id.desc())).first()
        assert last is not None and issue.updated_at == last.received_at
        assert issue.created_at < issue.updated_at
        first = session.scalars(select(Message).order_by(Message.id)).first()
        assert first is not None and issue.created_at == first.received_at


def test_cc_in_two_spellings_is_one_new_user(store: Store, config: Config) -> None:
    headers = "Cc: Carol <Carol@Example.NET>, carol@example.net\r\n"
    raw = mail("alice@example.com", "cc-1@example.com", headers).replace(b"Re: ", b"")
    assert deliver(store, config, raw, "alice@example.com").stored == ("bugs/1",)
    with store.read() as session:
        emails = session.scalars(select(Address.email).order_by(Address.email)).all()
        assert emails == ["alice@example.com", "carol@example.net"]
        assert len(session.scalars(select(Nosy)).all()) == 2


def test_a_known_author_without_a_name_gets_the_one_they_send(store: Store, config: Config) -> None:
    opened(store, config)  # Carol was registered from a Cc, with the name given there
    raw = mail("Dave Example <dave@example.com>", "dave-3@example.com", "", "Again.")
    raw = raw.replace(b"Re: Login", b"[issue1] Login")
    with store.write() as session:
        dave = session.scalars(
            select(User).join(Address).where(Address.email == "dave@example.com")
        )
        dave.one().name = ""
    assert deliver(store, config, raw, "dave@example.com").stored == ("bugs/1",)
    with store.read() as session:
        query = select(User.name).join(Address).where(Address.email == "dave@example.com")
        assert session.scalars(query).one() == "Dave Example"


def test_a_command_changes_the_issue_and_is_journalled(store: Store, config: Config) -> None:
    """Both edits and ``updated_at`` land (in one UPDATE), with one journal entry."""
    config = replace(
        config, trackers=tuple(replace(t, verify_senders="off") for t in config.trackers)
    )
    opened(store, config)
    with store.write() as session:
        alice = session.scalars(
            select(User).join(Address).where(Address.email == "alice@example.com")
        ).one()
        alice.role = "developer"
    raw = mail(
        "alice@example.com",
        "alice-2@example.com",
        "References: <new-1@example.com>\r\n",
        "status: open\r\npriority: high\r\n\r\nOn it.",
    )
    assert deliver(store, config, raw, "alice@example.com").stored == ("bugs/1",)
    with store.read() as session:
        issue = session.scalars(select(Issue)).one()
        assert (issue.status, issue.priority) == ("open", "high")
        last = session.scalars(select(Message).order_by(Message.id.desc())).first()
        assert last is not None and issue.updated_at == last.received_at
        entry = session.scalars(select(JournalEntry).order_by(JournalEntry.id.desc())).first()
        assert entry is not None and entry.message_pk == last.id
        assert {c["property"] for c in entry.changes} == {"status", "priority"}
