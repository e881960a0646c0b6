"""The database: engine, sessions, schema upgrades and the queries by key.

No other module writes SQL. SQLite runs in WAL mode with a busy timeout, and write
transactions start with ``BEGIN IMMEDIATE`` so two writers queue on the lock instead of one
failing half-way when it upgrades a read lock. PostgreSQL is reached through psycopg 3.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from importlib import resources
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, joinedload, sessionmaker

from mailtracker.config import Config
from mailtracker.models import (
    Address,
    BounceScore,
    Issue,
    Message,
    MessageRef,
    Nosy,
    Outbox,
    Subscription,
    Tracker,
    User,
)

__all__ = ["Store", "make_engine", "upgrade_schema"]

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 15_000
_READONLY = "mailtracker_readonly"


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """An engine tuned for the gateway: WAL and immediate writes on SQLite."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
        )
        _tune_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size)


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        readonly = conn.get_execution_options().get(_READONLY, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def upgrade_schema(engine: Engine) -> None:
    """Bring the schema to the newest migration; on an empty database this creates it.

    A schema already at the newest revision is left alone without loading alembic and
    the migration scripts: that took a third of ``mailtracker ingest``'s time per mail."""
    if _schema_revision(engine) == head_revision():
        return
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.files("mailtracker") / "migrations"))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two gateways starting at once must not both create the tables.
            conn.execute(text("SELECT pg_advisory_xact_lock(7305550001)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def head_revision() -> str:
    """The newest migration's revision: every file in ``migrations/versions`` is named
    after its revision id (``0007_subscriptions.py`` holds revision ``0007``)."""
    folder = resources.files("mailtracker") / "migrations" / "versions"
    names = [entry.name for entry in folder.iterdir() if entry.name[:4].isdigit()]
    return max(names)[:4] if names else ""


def _schema_revision(engine: Engine) -> str | None:
    """The revision the database is at, ``None`` if it has no schema yet."""
    try:
        with engine.connect().execution_options(**{_READONLY: True}) as conn:
            version = conn.scalar(text("SELECT version_num FROM alembic_version"))
    except DBAPIError:  # no alembic_version table: a new database
        return None
    return None if version is None else str(version)


class Store:
    """Sessions and lookups over one engine; thread-safe, one session per unit of work."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # SQLite has one writer at a time, and a connection that finds the lock taken polls
        # for it in sleeps of up to 100 ms (sqlite3_busy_timeout): under load, writers of
        # one process queue here instead, woken the moment the lock is free (measured:
        # 4 connections went from 48-78 mails/s with p99 ~1 s to the 1-connection rate).
        self._write_lock = threading.RLock() if engine.dialect.name == "sqlite" else nullcontext()
        self._writer = sessionmaker(engine, expire_on_commit=False)
        self._reader = sessionmaker(
            engine.execution_options(**{_READONLY: True}), expire_on_commit=False
        )

    @classmethod
    def open(cls, config: Config, pool_size: int = 5) -> Store:
        """Connect, create or upgrade the schema, and make sure every tracker has its row."""
        store = cls(make_engine(config.database.url, pool_size))
        upgrade_schema(store.engine)
        with store.write() as session:
            ensure_trackers(session, (t.name for t in config.trackers))
        return store

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose work commits at the end of the block, or rolls back on error."""
        with self._write_lock, self._writer() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()


def ensure_trackers(session: Session, names: Iterable[str]) -> None:
    existing = set(session.scalars(select(Tracker.name)))
    for name in names:
        if name not in existing:
            session.add(Tracker(name=name, next_number=1))
    session.flush()


def tracker_row(session: Session, name: str) -> Tracker:
    """The tracker's row, looked up once per session: each stage of a mail asks for it."""
    cache: dict[str, Tracker] = session.info.setdefault("tracker_rows", {})
    tracker = cache.get(name)
    if tracker is not None and tracker in session:  # not if a rollback expunged it
        return tracker
    tracker = session.scalar(select(Tracker).where(Tracker.name == name))
    if tracker is None:
        raise LookupError(f"tracker {name!r} has no row; is the database upgraded?")
    cache[name] = tracker
    return tracker


def next_issue_number(session: Session, tracker_id: int) -> int:
    """Take the tracker's next number; the row lock makes numbers unique and gap-free."""
    number = session.execute(
        update(Tracker)
        .where(Tracker.id == tracker_id)
        .values(next_number=Tracker.next_number + 1)
        .returning(Tracker.next_number)
    ).scalar_one()
    return int(number) - 1


def issue_by_number(session: Session, tracker_id: int, number: int) -> Issue | None:
    return session.scalar(
        select(Issue).where(Issue.tracker_id == tracker_id, Issue.number == number)
    )


def message_exists(session: Session, tracker_id: int, message_id: str) -> bool:
    found = session.scalar(
        select(Message.id).where(Message.tracker_id == tracker_id, Message.message_id == message_id)
    )
    return found is not None


def issue_for_message_ids(session: Session, tracker_id: int, ids: Sequence[str]) -> int | None:
    """The issue of the nearest id in ``ids`` that we stored, sent or use as a thread root;
    failing that, the issue of a stored mail that names the same (missing) ancestor."""
    if not ids:
        return None
    found = _first_in_order(ids, _direct_matches(session, tracker_id, ids))
    if found is None:
        found = _first_in_order(ids, _ghost_matches(session, tracker_id, ids))
    return found


def _direct_matches(session: Session, tracker_id: int, ids: Sequence[str]) -> list[Any]:
    stored = (
        select(Message.message_id, Issue.number)
        .join(Issue, Issue.id == Message.issue_id)
        .where(Message.tracker_id == tracker_id, Message.message_id.in_(ids))
    )
    sent = (
        select(Outbox.message_id, Issue.number)
        .join(Issue, Issue.id == Outbox.issue_id)
        .where(Outbox.tracker_id == tracker_id, Outbox.message_id.in_(ids))
    )
    roots = select(Issue.thread_root, Issue.number).where(
        Issue.tracker_id == tracker_id, Issue.thread_root.in_(ids)
    )
    return [*session.execute(stored), *session.execute(sent), *session.execute(roots)]


def _ghost_matches(session: Session, tracker_id: int, ids: Sequence[str]) -> list[Any]:
    query = (
        select(MessageRef.ref_id, Issue.number)
        .join(Message, Message.id == MessageRef.message_pk)
        .join(Issue, Issue.id == Message.issue_id)
        .where(MessageRef.tracker_id == tracker_id, MessageRef.ref_id.in_(ids))
        .order_by(MessageRef.id)
    )
    return list(session.execute(query))


def _first_in_order(ids: Sequence[str], rows: list[Any]) -> int | None:
    found: dict[str, int] = {}
    for mid, number in rows:
        found.setdefault(mid, number)
    return next((found[i] for i in ids if i in found), None)


def add_message_refs(
    session: Session, tracker_id: int, message_pk: int, ids: Iterable[str]
) -> None:
    rows = [
        {"tracker_id": tracker_id, "message_pk": message_pk, "ref_id": i}
        for i in dict.fromkeys(ids)
    ]
    if rows:
        session.execute(insert(MessageRef), rows)


def user_by_address(session: Session, email: str) -> User | None:
    """The user with the address, their addresses loaded in the same query (the
    relationship's own ``selectin`` would take a second one)."""
    query = (
        select(User)
        .join(Address, Address.user_id == User.id)
        .where(Address.email == email.lower())
        .options(joinedload(User.addresses))
    )
    return session.scalars(query).unique().first()


def create_user(session: Session, email: str, name: str = "", role: str = "user") -> User:
    user = User(name=name, role=role)
    session.add(user)
    session.flush()
    session.add(Address(user_id=user.id, email=email.lower()))
    session.flush()
    session.refresh(user)
    return user


def nosy_user_ids(session: Session, issue_id: int) -> set[int]:
    return set(session.scalars(select(Nosy.user_id).where(Nosy.issue_id == issue_id)))


def insert_ignore(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert rows, skipping those whose key is already there (concurrent mail may race)."""
    if not rows:
        return
    # The dialect modules are imported here: the PostgreSQL one costs a SQLite user
    # (``mailtracker ingest``, started once per mail) 40 ms at start-up.
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        session.execute(postgresql.insert(table).on_conflict_do_nothing(), rows)
    else:
        from sqlalchemy.dialects import sqlite

        session.execute(sqlite.insert(table).on_conflict_do_nothing(), rows)


def add_nosy(session: Session, issue_id: int, user_ids: Iterable[int]) -> None:
    """Add users to the nosy list; those already on it stay once (the insert skips them,
    so there is no need to read the list first)."""
    rows = [{"issue_id": issue_id, "user_id": u} for u in sorted(set(user_ids))]
    insert_ignore(session, Nosy, rows)


def users_by_ids(session: Session, ids: Iterable[int]) -> list[User]:
    wanted = sorted(set(ids))
    if not wanted:
        return []
    return list(session.scalars(select(User).where(User.id.in_(wanted)).order_by(User.id)))


def addresses_by_user(session: Session, ids: Iterable[int]) -> dict[int, list[str]]:
    """``{user id: addresses}``, each user's first-registered address (the one we write
    to) first; users without an address are left out. One query, no ORM objects: a
    fan-out asks this for thousands of users."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = (
        select(Address.user_id, Address.email)
        .where(Address.user_id.in_(wanted))
        .order_by(Address.user_id, Address.id)
    )
    found: dict[int, list[str]] = {}
    for user_id, email in session.execute(query):
        found.setdefault(user_id, []).append(email)
    return found


def user_ids_by_address(session: Session, emails: Iterable[str]) -> dict[str, int]:
    """``{address: user id}`` for those of ``emails`` that belong to a user."""
    wanted = sorted({e.lower() for e in emails})
    if not wanted:
        return {}
    rows = session.execute(select(Address.email, Address.user_id).where(Address.email.in_(wanted)))
    return {email: user_id for email, user_id in rows}


def subscriber_ids(session: Session, tracker_id: int, modes: Sequence[str]) -> dict[int, str]:
    """``{user id: mode}`` of the tracker's subscribers in one of ``modes``."""
    query = select(Subscription.user_id, Subscription.mode).where(
        Subscription.tracker_id == tracker_id, Subscription.mode.in_(list(modes))
    )
    return {user_id: mode for user_id, mode in session.execute(query)}


def disabled_addresses(session: Session, emails: Iterable[str]) -> set[str]:
    """Those of ``emails`` whose mail bounced too often to be sent any more."""
    wanted = sorted(set(emails))
    if not wanted:
        return set()
    query = select(BounceScore.address).where(
        BounceScore.address.in_(wanted), BounceScore.disabled_at.is_not(None)
    )
    return set(session.scalars(query))


def count_messages(session: Session, issue_id: int) -> int:
    return int(session.scalar(select(func.count()).where(Message.issue_id == issue_id)) or 0)


class TrackerLookup:
    """What routing and interpreting ask of the store, for one tracker, in one transaction."""

    def __init__(self, session: Session, tracker_id: int) -> None:
        self._session = session
        self._tracker_id = tracker_id

    def issue_exists(self, number: int) -> bool:
        return issue_by_number(self._session, self._tracker_id, number) is not None

    def issue_for_ids(self, ids: Sequence[str]) -> int | None:
        return issue_for_message_ids(self._session, self._tracker_id, ids)

    def user_exists(self, address: str) -> bool:
        return user_by_address(self._session, address) is not None
