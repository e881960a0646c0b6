"""The database: engine, sessions, schema upgrades and the queries by key.

No other module writes SQL. SQLite runs in WAL mode with a busy timeout, and write
transactions start with ``BEGIN IMMEDIATE`` so two writers queue on the lock instead of one
failing half-way when it upgrades a read lock. PostgreSQL is reached through psycopg 3.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

from sqlalchemy import (
    Engine,
    RowMapping,
    Table,
    bindparam,
    create_engine,
    event,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, joinedload, sessionmaker

from mailtracker import threads
from mailtracker.config import Config
from mailtracker.models import (
    Address,
    Base,
    BounceScore,
    Issue,
    Message,
    MessageRef,
    Nosy,
    Tracker,
    User,
)
from mailtracker.writerlock import WriterLock

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
        # FULL: WAL's commit is fsynced, so a 250 outlives a power cut. NORMAL would let
        # the last commits roll back after one, after the MTA had deleted its copy (rule 1).
        cursor.execute("PRAGMA synchronous=FULL")
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
        # SQLite has one writer at a time; writers queue on a lock that wakes the next one
        # the moment it is free, in this process and in others (writerlock.py).
        sqlite = engine.dialect.name == "sqlite"
        self._write_lock: WriterLock | nullcontext[None] = (
            WriterLock(engine.url.database) if sqlite else nullcontext()
        )
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
        if isinstance(self._write_lock, WriterLock):
            self._write_lock.close()


def table(model: type[Base]) -> Table:
    """A model's table, for Core statements built once and run many times (a prepared
    statement skips building the expression and its cache key, and the ORM's unit of
    work and entity loading: about a fifth of the time of an ORM query, measured)."""
    found = model.__table__
    assert isinstance(found, Table)
    return found


_TRACKERS = table(Tracker)
_ISSUES = table(Issue)
_MESSAGES = table(Message)
_REFS = table(MessageRef)
_ADDRESSES = table(Address)
_NOSY = table(Nosy)
_BOUNCE_SCORES = table(BounceScore)


def ensure_trackers(session: Session, names: Iterable[str]) -> None:
    existing = set(session.scalars(select(Tracker.name)))
    for name in names:
        if name not in existing:
            session.add(Tracker(name=name, next_number=1))
    session.flush()


class TrackerRow(NamedTuple):
    """What the mail path needs of a tracker's row: its id (no ORM object to load)."""

    id: int
    name: str


_TRACKER = select(_TRACKERS.c.id, _TRACKERS.c.name).where(_TRACKERS.c.name == bindparam("name"))


def tracker_row(session: Session, name: str) -> TrackerRow:
    """The tracker's row, looked up once per transaction: each stage of a mail asks for it
    (not once per session: a transaction that rolled back may have created the row)."""
    transaction = session.get_transaction()
    cached = session.info.get("tracker_rows")
    if cached is None or cached[0] is not transaction:
        cached = session.info["tracker_rows"] = (transaction, {})
    rows: dict[str, TrackerRow] = cached[1]
    if name not in rows:
        found = session.execute(_TRACKER, {"name": name}).first()
        if found is None:
            raise LookupError(f"tracker {name!r} has no row; is the database upgraded?")
        rows[name] = TrackerRow(found.id, found.name)
    return rows[name]


_NEXT_NUMBER = (
    update(_TRACKERS)
    .where(_TRACKERS.c.id == bindparam("tracker_pk"))
    .values(next_number=_TRACKERS.c.next_number + 1)
    .returning(_TRACKERS.c.next_number)
)


def next_issue_number(session: Session, tracker_id: int) -> int:
    """Take the tracker's next number; the row lock makes numbers unique and gap-free."""
    number = session.execute(_NEXT_NUMBER, {"tracker_pk": tracker_id}).scalar_one()
    return int(number) - 1


def issue_by_number(session: Session, tracker_id: int, number: int) -> Issue | None:
    return session.scalar(
        select(Issue).where(Issue.tracker_id == tracker_id, Issue.number == number)
    )


_ISSUE_ROW = select(
    _ISSUES.c.id,
    _ISSUES.c.number,
    _ISSUES.c.reporter_id,
    _ISSUES.c.title,
    _ISSUES.c.status,
    _ISSUES.c.priority,
    _ISSUES.c.assignee_id,
).where(_ISSUES.c.tracker_id == bindparam("tracker_pk"), _ISSUES.c.number == bindparam("number"))


def issue_row(session: Session, tracker_id: int, number: int) -> RowMapping | None:
    """What ``apply`` reads of an issue (id, reporter and the properties edits change)."""
    params = {"tracker_pk": tracker_id, "number": number}
    return session.execute(_ISSUE_ROW, params).mappings().first()


_MESSAGE_EXISTS = select(_MESSAGES.c.id).where(
    _MESSAGES.c.tracker_id == bindparam("tracker_pk"),
    _MESSAGES.c.message_id == bindparam("message_id"),
)


def message_exists(session: Session, tracker_id: int, message_id: str) -> bool:
    params = {"tracker_pk": tracker_id, "message_id": message_id}
    return session.execute(_MESSAGE_EXISTS, params).first() is not None


def add_message_refs(
    session: Session, tracker_id: int, message_pk: int, ids: Iterable[str]
) -> None:
    rows = [
        {"tracker_id": tracker_id, "message_pk": message_pk, "ref_id": i}
        for i in dict.fromkeys(ids)
    ]
    if rows:
        session.execute(_REFS.insert(), rows)


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


_NOSY_IDS = select(_NOSY.c.user_id).where(_NOSY.c.issue_id == bindparam("issue_pk"))


def nosy_user_ids(session: Session, issue_id: int) -> set[int]:
    return set(session.execute(_NOSY_IDS, {"issue_pk": issue_id}).scalars())


def insert_ignore(session: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    """Insert rows, skipping those whose key is already there (concurrent mail may race)."""
    if not rows:
        return
    session.execute(_insert_ignore(session.get_bind().dialect.name, model), rows)


@cache
def _insert_ignore(dialect: str, model: Any) -> Any:
    """Built once per dialect and table; the dialect modules are imported only here: the
    PostgreSQL one costs a SQLite user (``mailtracker ingest``, once per mail) 40 ms."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table(model)).on_conflict_do_nothing()
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table(model)).on_conflict_do_nothing()


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


_DISABLED = select(_BOUNCE_SCORES.c.address).where(
    _BOUNCE_SCORES.c.address.in_(bindparam("emails", expanding=True)),
    _BOUNCE_SCORES.c.disabled_at.is_not(None),
)


def disabled_addresses(session: Session, emails: Iterable[str]) -> set[str]:
    """Those of ``emails`` whose mail bounced too often to be sent any more."""
    wanted = sorted(set(emails))
    if not wanted:
        return set()
    return set(session.execute(_DISABLED, {"emails": wanted}).scalars())


_ISSUE_EXISTS = select(_ISSUES.c.id).where(
    _ISSUES.c.tracker_id == bindparam("tracker_pk"), _ISSUES.c.number == bindparam("number")
)
_USER_EXISTS = select(_ADDRESSES.c.id).where(_ADDRESSES.c.email == bindparam("email"))


class TrackerLookup:
    """What routing and interpreting ask of the store, for one tracker, in one transaction."""

    def __init__(self, session: Session, tracker_id: int) -> None:
        self._session = session
        self._tracker_id = tracker_id

    def issue_exists(self, number: int) -> bool:
        params = {"tracker_pk": self._tracker_id, "number": number}
        return self._session.execute(_ISSUE_EXISTS, params).first() is not None

    def issue_for_ids(self, ids: Sequence[str]) -> int | None:
        return threads.issue_for_message_ids(self._session, self._tracker_id, ids)

    def user_exists(self, address: str) -> bool:
        params = {"email": address.lower()}
        return self._session.execute(_USER_EXISTS, params).first() is not None
