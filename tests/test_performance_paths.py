"""The shortcuts the hot path takes for speed (issue 7) must not change what it does.

Each test pins one assumption a shortcut relies on: migration files named after their
revision (``upgrade_schema`` skips alembic when the database is at the newest one), and
cached header parsing that gives what the stdlib gives. No timing is asserted here; the
numbers are ``bench/perf``'s.
"""

from __future__ import annotations

import re
from email import policy
from email.policy import EmailPolicy
from importlib import resources
from pathlib import Path

from sqlalchemy import create_engine

from mailtracker.headers import DEFAULT_POLICY, SMTP_POLICY
from mailtracker.store import _schema_revision, head_revision, upgrade_schema

HEADERS = [
    ("To", "Alice <alice@example.com>, bob@example.org"),
    ("From", "=?utf-8?q?J=C3=BCrgen?= <j@example.de>"),
    ("Content-Type", 'multipart/mixed; boundary="=-x-="'),
    ("Content-Disposition", "attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf"),
    ("Subject", "Re: [issue42] crash"),
    ("To", "unlisted-recipients:; (no To-header on input)"),
    ("Message-ID", "<abc@example.com>"),
]


def test_each_migration_is_named_after_its_revision() -> None:
    folder = resources.files("mailtracker") / "migrations" / "versions"
    files = sorted(e.name for e in folder.iterdir() if re.match(r"\d{4}_.*\.py$", e.name))
    for name in files:
        text = (folder / name).read_text()
        assert f'revision = "{name[:4]}"' in text, name
    assert head_revision() == files[-1][:4]


def test_a_new_database_is_upgraded_and_then_left_alone(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'new.db'}")
    assert _schema_revision(engine) is None
    upgrade_schema(engine)
    assert _schema_revision(engine) == head_revision()
    upgrade_schema(engine)  # at the newest revision: returns without alembic
    engine.dispose()


def _parsed(chosen: EmailPolicy, name: str, value: str) -> tuple[object, ...]:
    """What reading the header gives: its text, classes, defects and folded form, or
    the exception (CPython 3.11 raises on an empty group with a comment, cached or not)."""
    try:
        header = chosen.header_fetch_parse(name, value)
    except Exception as exc:
        return (type(exc),)
    defects = [type(d) for d in header.defects]
    return str(header), type(header).__mro__[1:], defects, chosen.fold(name, header)


def test_cached_headers_parse_as_the_stdlib_does() -> None:
    for ours, theirs in ((DEFAULT_POLICY, policy.default), (SMTP_POLICY, policy.SMTP)):
        for name, value in HEADERS:
            assert _parsed(ours, name, value) == _parsed(theirs, name, value)


def test_a_header_value_is_parsed_once() -> None:
    first = DEFAULT_POLICY.header_fetch_parse("Content-Type", "text/plain; charset=utf-8")
    again = DEFAULT_POLICY.header_fetch_parse("Content-Type", "text/plain; charset=utf-8")
    assert first is again
