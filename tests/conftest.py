"""Shared fixtures: settings, a database (SQLite and PostgreSQL), the corpus folder.

Every storage test takes ``store`` and so runs twice: on a SQLite file and on the PostgreSQL
server at 127.0.0.1:5432. Where that server is not reachable the PostgreSQL run is skipped,
except in CI (``CI`` set), where it fails: CI must never skip it silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from mailtracker.config import (
    Config,
    DatabaseConfig,
    OutgoingConfig,
    SmtpConfig,
    TrackerConfig,
)
from mailtracker.store import Store

PG_ADMIN_URL = os.environ.get(
    "MAILTRACKER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
PG_TEST_DB = f"mailtracker_test_{os.getpid()}"  # one per run: parallel runs never collide
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
MESSAGES = Path(__file__).resolve().parent / "messages"

_pg_state: dict[str, str] = {}


def _postgres_url() -> str:
    """Create the test database once per run; skip (or fail in CI) if unreachable."""
    if "url" in _pg_state:
        return _pg_state["url"]
    if "error" in _pg_state:
        _no_postgres(_pg_state["error"])
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            exists = conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": PG_TEST_DB}
            )
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{PG_TEST_DB}"'))
        admin.dispose()
    except OperationalError as exc:
        _pg_state["error"] = str(exc).splitlines()[0]
        _no_postgres(_pg_state["error"])
    _pg_state["url"] = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + PG_TEST_DB
    return _pg_state["url"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop this run's PostgreSQL database."""
    if "url" not in _pg_state:
        return
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{PG_TEST_DB}" WITH (FORCE)'))
    admin.dispose()


def _no_postgres(reason: str) -> None:
    message = f"PostgreSQL at 127.0.0.1:5432 not reachable: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must run the PostgreSQL tests)")
    pytest.skip(message)


def _reset_postgres(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tracker.db'}"
    url = _postgres_url()
    _reset_postgres(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tracker.db'}"


def make_config(db_url: str, tmp_path: Path, **outgoing: str) -> Config:
    """A two-tracker configuration like an operator's: bugs@ and docs@ example.org."""
    out = OutgoingConfig(maildir=str(tmp_path / "outgoing"), smarthost="")
    if outgoing:
        out = OutgoingConfig(**{"maildir": "", **outgoing})
    return Config(
        database=DatabaseConfig(url=db_url),
        smtp=SmtpConfig(
            listen="127.0.0.1:0", hostname="tracker.example.org", max_message_size=1_000_000
        ),
        outgoing=out,
        trackers=(
            TrackerConfig(name="bugs", address="bugs@example.org", title="Example bugs"),
            TrackerConfig(name="docs", address="docs@example.org", title="Example docs"),
        ),
    )


CONFIG_FILE = """\
[database]
url = "{url}"
[smtp]
hostname = "tracker.example.org"
[outgoing]
maildir = "out"
[web]
listen = ""
[[trackers]]
name = "bugs"
address = "bugs@example.org"
title = "Example bugs"
"""


@pytest.fixture
def config_file(db_url: str, tmp_path: Path) -> Path:
    """A ``mailtracker.toml`` for the CLI, on the same database as ``store``."""
    path = tmp_path / "mailtracker.toml"
    path.write_text(CONFIG_FILE.format(url=db_url))
    return path


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Config:
    return make_config(db_url, tmp_path)


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    opened = Store.open(config)
    yield opened
    opened.close()
