"""A mail that trips a bug is kept (250), shown to the admin, and re-run after the fix.

The bug is injected by replacing one pipeline stage with one that raises: the fault
injection a real bug would cause, and the fix is taking it away again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import event

from mailtracker import pipeline, quarantine
from mailtracker.cli import main
from mailtracker.config import Config
from mailtracker.control import held_mail
from mailtracker.models import Message
from mailtracker.store import Store
from mailtracker.values import Commands, Incoming, Target
from tests.conftest import MESSAGES
from tests.harness import running_gateway, send
from tests.inspect_db import count, show


def broken_interpret(incoming: Incoming, target: Target, *args: object) -> Commands:
    raise RuntimeError(f"bug while interpreting <{incoming.message_id}>")


def test_bug_quarantines_then_retry_after_the_fix(
    store: Store,
    config: Config,
    config_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    c = str(config_file)
    monkeypatch.setattr(pipeline, "interpret", broken_interpret)
    with running_gateway(config) as gateway:
        code, text = send(
            gateway.port, (MESSAGES / "new-issue.eml").read_bytes(), ["bugs@example.org"]
        )
    assert (code, text) == (250, b"2.0.0 Ok: kept for the administrators (quarantine 1)")
    assert count(store, Message) == 0
    assert main(["quarantine", "list", "--json", "-c", c]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["message_id"] == "new-1@example.com"
    assert entry["error"] == "RuntimeError: bug while interpreting <new-1@example.com>"
    assert main(["quarantine", "show", "1", "-c", c]) == 0
    shown = capsys.readouterr().out
    assert "Traceback" in shown and "Login page crashes on empty password" in shown

    assert main(["quarantine", "retry", "1", "-c", c]) == 70  # not fixed yet: stays
    assert "failed again" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["quarantine", "retry", "1", "-c", c]) == 0
    assert "stored as bugs/1" in capsys.readouterr().out
    assert show(store)["title"] == "Login page crashes on empty password"
    assert main(["quarantine", "retry", "1", "-c", c]) == 65  # done: nothing happens twice
    assert main(["quarantine", "list", "--json", "-c", c]) == 0
    assert json.loads(capsys.readouterr().out) == []  # done: off the list


def test_retry_of_a_mail_stored_meanwhile_is_a_duplicate(
    store: Store,
    config: Config,
    config_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw = (MESSAGES / "new-issue.eml").read_bytes()
    envelope = pipeline.Envelope("alice@example.com", ("bugs@example.org",))
    monkeypatch.setattr(pipeline, "interpret", broken_interpret)
    assert pipeline.process(store, config, raw, envelope).reply.endswith("(quarantine 1)")
    monkeypatch.undo()
    assert pipeline.process(store, config, raw, envelope).stored == ("bugs/1",)
    assert main(["quarantine", "retry", "1", "-c", str(config_file)]) == 0
    assert "already stored" in capsys.readouterr().out
    assert count(store, Message) == 1


def test_451_when_even_the_quarantine_cannot_be_written(
    store: Store, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_room(*args: object) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(pipeline, "interpret", broken_interpret)
    monkeypatch.setattr(pipeline.quarantine, "keep", no_room)
    raw = (MESSAGES / "new-issue.eml").read_bytes()
    outcome = pipeline.process(
        store, config, raw, pipeline.Envelope("a@example.com", ("bugs@example.org",))
    )
    assert outcome.reply == "451 4.3.0 internal error; nothing was stored"
    assert outcome.exit_code == 75


def test_lists_of_kept_mail_do_not_read_the_mails(
    store: Store, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``quarantine list`` and ``moderation list`` show a few fields of each mail; the bytes
    (up to the size limit each) are read only by ``show`` and ``retry``."""
    raw = (MESSAGES / "new-issue.eml").read_bytes()
    monkeypatch.setattr(pipeline, "interpret", broken_interpret)
    envelope = pipeline.Envelope("alice@example.com", ("bugs@example.org",))
    assert pipeline.process(store, config, raw, envelope).reply.endswith("(quarantine 1)")
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        (listed,) = quarantine.entries(store)
        with store.read() as session:
            assert held_mail(session) == []
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert listed.message_id == "new-1@example.com" and not hasattr(listed, "raw")
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2 and not any(".raw" in s for s in selects)
    found = quarantine.entry(store, 1)
    assert found is not None and found.raw == raw
