"""The ``mailtracker`` command as people and MTAs use it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailtracker.cli import main
from tests.conftest import MESSAGES

CONFIG = """\
[database]
url = "{url}"
[smtp]
hostname = "tracker.example.org"
[outgoing]
maildir = "out"
[[trackers]]
name = "bugs"
address = "bugs@example.org"
title = "Example bugs"
"""


@pytest.fixture
def config_file(db_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "mailtracker.toml"
    path.write_text(CONFIG.format(url=db_url))
    return path


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "mailtracker", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_ingest_speaks_sysexits(config_file: Path) -> None:
    c = str(config_file)
    new = run("ingest", "-c", c, stdin=(MESSAGES / "new-issue.eml").read_bytes())
    assert new.returncode == 0, new.stderr
    again = run(
        "ingest",
        "--recipient",
        "bugs@example.org",
        "-c",
        c,
        stdin=(MESSAGES / "new-issue.eml").read_bytes(),
    )
    assert again.returncode == 0
    missing = run("ingest", "-c", c, stdin=(MESSAGES / "tag-names-missing-issue.eml").read_bytes())
    assert missing.returncode == 65
    assert b"has no issue 99" in missing.stderr
    nouser = run(
        "ingest",
        "-c",
        c,
        "--recipient",
        "nobody@example.org",
        stdin=(MESSAGES / "new-issue.eml").read_bytes(),
    )
    assert nouser.returncode == 67
    assert b"none of nobody@example.org is ours" in nouser.stderr


def test_ingest_tempfails_when_the_database_is_down(tmp_path: Path) -> None:
    path = tmp_path / "mailtracker.toml"
    path.write_text(CONFIG.format(url="postgresql+psycopg://postgres@127.0.0.1:1/none"))
    result = run("ingest", "-c", str(path), stdin=(MESSAGES / "new-issue.eml").read_bytes())
    assert result.returncode == 75
    assert b"database unavailable" in result.stderr


def test_show_and_issues_json(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = str(config_file)
    assert run("ingest", "-c", c, stdin=(MESSAGES / "new-issue.eml").read_bytes()).returncode == 0
    capsys.readouterr()
    assert main(["show", "issue1", "-c", c, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == "bugs/1" and shown["number"] == 1
    assert set(shown) == {
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
        "messages",
        "history",
    }
    assert shown["created"].endswith("Z")
    assert main(["issues", "-c", c, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [i["id"] for i in listed] == ["bugs/1"] and "messages" not in listed[0]
    assert main(["issues", "-c", c]) == 0
    table = capsys.readouterr().out
    assert "bugs/1" in table and "Login page crashes" in table
    assert main(["show", "bugs/1", "-c", c]) == 0
    assert "traceback instead of an error" in capsys.readouterr().out
    assert main(["show", "bugs/7", "-c", c]) == 65


def test_user_add_and_list(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = str(config_file)
    assert (
        main(["user", "add", "Bob@Example.com", "--name", "Bob", "--role", "developer", "-c", c])
        == 0
    )
    assert main(["user", "add", "bob@example.com", "-c", c]) == 65
    capsys.readouterr()
    assert main(["user", "list", "--json", "-c", c]) == 0
    users = json.loads(capsys.readouterr().out)
    assert [(u["email"], u["name"], u["role"]) for u in users] == [
        ("bob@example.com", "Bob", "developer")
    ]


def test_bad_config_is_one_line_naming_key_and_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[smtp]\nlisten = "nowhere"\n')
    assert main(["issues", "-c", str(path)]) == 78
    err = capsys.readouterr().err.strip()
    assert err == f"mailtracker: {path}: 'smtp.listen' must be HOST:PORT, not 'nowhere'"
    path.write_text('[smtp]\nlisten_on = "x"\n')
    assert main(["issues", "-c", str(path)]) == 78
    assert "unknown key 'smtp.listen_on'" in capsys.readouterr().err


def test_init_writes_a_config_that_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "site"
    assert main(["init", str(target)]) == 0
    assert (target / "mailtracker.toml").exists()
    assert (target / "mailtracker.db").exists()
    assert main(["issues", "-c", str(target / "mailtracker.toml")]) == 0
    assert main(["init", str(target)]) == 0  # a second run leaves the file alone
    assert "left as it is" in capsys.readouterr().err
