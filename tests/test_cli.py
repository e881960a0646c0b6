"""The ``mailtracker`` command as people and MTAs use it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailtracker.cli import main
from tests.conftest import CONFIG_FILE, MESSAGES


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
    path.write_text(CONFIG_FILE.format(url="postgresql+psycopg://postgres@127.0.0.1:1/none"))
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
        "links",
    }
    assert shown["created"].endswith("Z")
    assert main(["issues", "-c", c, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [i["id"] for i in listed] == ["bugs/1"] and "messages" not in listed[0]
    assert main(["issues", "-c", c]) == 0
    table = capsys.readouterr().out
    assert "bugs/1" in table and "Login page crashes" in table
    assert main(["-c", c, "-v", "issues"]) == 0  # the options before the name count too
    assert capsys.readouterr().out == table
    assert main(["show", "bugs/1", "-c", c]) == 0
    assert "traceback instead of an error" in capsys.readouterr().out
    assert main(["show", "bugs/7", "-c", c]) == 65


def test_numbers_past_any_row_are_not_found_not_a_traceback(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """PostgreSQL's integer ends at 2147483647: asking it for more failed in the driver."""
    c = str(config_file)
    capsys.readouterr()
    assert main(["show", "bugs/99999999999999999999", "-c", c]) == 65
    assert capsys.readouterr().err == "mailtracker: no issue bugs/99999999999999999999\n"
    assert main(["show", "2147483647", "-c", c]) == 65  # the largest: asked, not found
    assert capsys.readouterr().err == "mailtracker: no issue bugs/2147483647\n"
    for words in (["quarantine", "show"], ["quarantine", "retry"], ["moderation", "approve"]):
        with pytest.raises(SystemExit) as stopped:
            main([*words, "99999999999999999999", "-c", c])
        assert stopped.value.code == 2
        said = capsys.readouterr().err
        assert "'99999999999999999999' is not an id: a whole number from 1 to 2147483647" in said


@pytest.mark.parametrize("typed", ["bob", "bob@", "@example.com", "bob @example.com", "<b@x>"])
def test_what_is_not_a_mail_address_is_refused(
    config_file: Path, capsys: pytest.CaptureFixture[str], typed: str
) -> None:
    c = str(config_file)
    assert main(["user", "add", typed, "-c", c]) == 65
    assert capsys.readouterr().err == f"mailtracker: '{typed}' is not a mail address\n"
    assert main(["user", "add", "bob@example.com", "-c", c]) == 0
    assert main(["user", "add-address", "bob@example.com", typed, "-c", c]) == 65
    capsys.readouterr()
    assert main(["user", "list", "--json", "-c", c]) == 0
    (user,) = json.loads(capsys.readouterr().out)
    assert typed not in [user["email"], *user.get("addresses", [])]


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
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[smtp]\nlisten = "nowhere"\n')
    assert main(["issues", "-c", str(path)]) == 78
    err = capsys.readouterr().err.strip()
    assert err == f"mailtracker: {path}: 'smtp.listen' must be HOST:PORT, not 'nowhere'"
    path.write_text('[smtp]\nlisten_on = "x"\n')
    assert main(["issues", "-c", str(path)]) == 78
    assert "unknown key 'smtp.listen_on'" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"Subject: x\n\nx\n")))
    assert main(["ingest", "-c", str(path)]) == 75  # an MTA keeps the mail queued


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


def test_import_mbox_threads_and_is_idempotent(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mbox = tmp_path / "archive.mbox"
    parts = [
        (MESSAGES / n).read_bytes()
        for n in ("new-issue.eml", "reply-by-references-only.eml", "tag-names-missing-issue.eml")
    ]
    mbox.write_bytes(
        b"".join(
            b"From someone Mon Nov 23 10:00:00 2026\n" + p.replace(b"\r\n", b"\n") + b"\n"
            for p in parts
        )
    )
    c = str(config_file)
    assert main(["import", str(mbox), "-c", c]) == 65  # one message refused
    out = capsys.readouterr()
    assert out.out.strip() == "imported: 2, refused: 1"
    assert "message 3: 550 5.6.0" in out.err
    assert main(["import", str(mbox), "-c", c]) == 65
    assert capsys.readouterr().out.strip() == "duplicates or ignored: 2, refused: 1"
    assert main(["show", "1", "--json", "-c", c]) == 0
    assert len(json.loads(capsys.readouterr().out)["messages"]) == 2
    assert main(["outbox", "--json", "-c", c]) == 0
    assert json.loads(capsys.readouterr().out) == []  # no notifications without --notify


def test_outbox_and_deliver_once(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = str(config_file)
    run("ingest", "-c", c, stdin=(MESSAGES / "new-issue.eml").read_bytes())
    run(
        "ingest",
        "-c",
        c,
        "--recipient",
        "bugs+1@example.org",
        stdin=(MESSAGES / "reply-by-subaddress.eml").read_bytes(),
    )
    assert main(["outbox", "--json", "-c", c]) == 0
    queued = json.loads(capsys.readouterr().out)
    assert sorted(r["recipient"] for r in queued) == ["alice@example.com", "carol@example.net"]
    assert {r["status"] for r in queued} == {"queued"}
    assert main(["deliver", "--once", "-c", c]) == 0
    assert capsys.readouterr().out.strip() == "sent 2, deferred 0, failed 0"
    assert main(["outbox", "--json", "-c", c]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert len(list((config_file.parent / "out" / "new").iterdir())) == 2


def test_serve_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    import signal
    import smtplib

    from tests.harness import free_port, start_serve

    port = free_port()
    path = tmp_path / "mailtracker.toml"
    db = f"sqlite:///{tmp_path / 't.db'}"
    path.write_text(
        CONFIG_FILE.format(url=db).replace("[smtp]\n", f'[smtp]\nlisten = "127.0.0.1:{port}"\n')
    )
    proc = start_serve(path, port, log=True)
    try:
        client = smtplib.SMTP("127.0.0.1", port, timeout=30)
        with client:
            reply = client.sendmail(
                "alice@example.com", ["bugs@example.org"], (MESSAGES / "new-issue.eml").read_bytes()
            )
            assert reply == {}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert "received SIGTERM" in stderr
    assert "stored as bugs/1" in stderr


def test_roles_and_addresses(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = str(config_file)
    assert main(["user", "add", "bob@example.com", "-c", c]) == 0
    assert main(["user", "set-role", "BOB@example.com", "developer", "-c", c]) == 0
    assert main(["user", "set-role", "nobody@example.com", "admin", "-c", c]) == 65
    assert main(["user", "add-address", "bob@example.com", "Bob@Work.example", "-c", c]) == 0
    assert main(["user", "add-address", "bob@example.com", "bob@work.example", "-c", c]) == 65
    capsys.readouterr()
    assert main(["user", "list", "--json", "-c", c]) == 0
    (bob,) = json.loads(capsys.readouterr().out)
    assert bob["role"] == "developer"
    assert bob["addresses"] == ["bob@example.com", "bob@work.example"]


def test_moderation_cli(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mailtracker.toml"
    path.write_text(CONFIG_FILE.format(url=db_url) + 'unknown_senders = "moderate"\n')
    c = str(path)
    assert run("ingest", "-c", c, stdin=(MESSAGES / "new-issue.eml").read_bytes()).returncode == 0
    assert run("ingest", "-c", c, stdin=(MESSAGES / "html-only.eml").read_bytes()).returncode == 0
    capsys.readouterr()
    assert main(["issues", "--json", "-c", c]) == 0
    assert json.loads(capsys.readouterr().out) == []  # invisible until approved
    assert main(["moderation", "list", "--json", "-c", c]) == 0
    held = json.loads(capsys.readouterr().out)
    assert [(h["id"], h["sender"]) for h in held] == [
        (1, "alice@example.com"),
        (2, "grace@example.com"),
    ]
    assert main(["moderation", "approve", "1", "-c", c]) == 0
    assert "250 2.0.0 Ok: stored as bugs/1" in capsys.readouterr().out
    assert main(["moderation", "reject", "2", "-c", c]) == 0
    assert main(["moderation", "reject", "2", "-c", c]) == 65
    capsys.readouterr()
    assert main(["moderation", "list", "--json", "-c", c]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["issues", "--json", "-c", c]) == 0
    assert [i["id"] for i in json.loads(capsys.readouterr().out)] == ["bugs/1"]


def test_ingest_exit_77_when_the_policy_refuses(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "mailtracker.toml"
    path.write_text(CONFIG_FILE.format(url=db_url) + 'unknown_senders = "reject"\n')
    result = run("ingest", "-c", str(path), stdin=(MESSAGES / "new-issue.eml").read_bytes())
    assert result.returncode == 77
    assert b"takes mail only from registered users" in result.stderr


def test_ingest_keeps_a_null_sender_null(config_file: Path) -> None:
    c = str(config_file)
    run("ingest", "-c", c, stdin=(MESSAGES / "new-issue.eml").read_bytes())
    reply = (MESSAGES / "reply-by-subaddress.eml").read_bytes()
    assert (
        run(
            "ingest", "-c", c, "--sender", "", "--recipient", "bugs+1@example.org", stdin=reply
        ).returncode
        == 0
    )
    assert main(["outbox", "--json", "-c", c]) == 0  # a bounce-like mail notifies nobody


def test_import_maildir(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import mailbox

    box = mailbox.Maildir(str(tmp_path / "Maildir"), create=True)
    for name in ("new-issue.eml", "reply-by-references-only.eml"):
        box.add((MESSAGES / name).read_bytes())
    c = str(config_file)
    assert main(["import", str(tmp_path / "Maildir"), "-c", c]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == "imported: 2"
    assert "... 2/2 messages" in out.err
    assert main(["import", str(tmp_path / "Maildir"), "--tracker", "nope", "-c", c]) == 65
    assert "no tracker 'nope'; there are: bugs" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "missing"), "-c", c]) == 66


def test_tokens_rotate(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tokens", "rotate", "-c", str(config_file)]) == 0
    assert main(["tokens", "rotate", "-c", str(config_file)]) == 0
    out = capsys.readouterr().out
    assert "reply tokens now use key 2;" in out and "older keys are honoured for 30" in out


def test_output_into_a_closed_pipe_ends_quietly(config_file: Path) -> None:
    """``mailtracker issues --json | head -1``: the reader is gone before we write; no
    traceback, and the status a shell reports for SIGPIPE."""
    new = run("ingest", "-c", str(config_file), stdin=(MESSAGES / "new-issue.eml").read_bytes())
    assert new.returncode == 0, new.stderr
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mailtracker", "issues", "--json", "-c", str(config_file)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.stderr == b""
    assert done.returncode == 141
