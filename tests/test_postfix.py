"""Postfix in front of the tracker, for real: the recipes in ``docs/postfix/`` run here.

A private Postfix instance (its own configuration, queue, data and log under a temporary
folder; smtpd on a free loopback port; a relayhost sink standing in for the internet) is
configured from the shipped files, mail goes in with a real client (swaks), and the test
checks what an operator would: the issue appears, a refusal becomes Postfix's bounce with
our reason, a tempfail stays in Postfix's queue until the database is back, each recipient
of an LMTP delivery is answered and delivered once, and notifications relayed through
Postfix arrive intact and DKIM-signed.

Needs root (Postfix's master runs as root; pipe(8) runs ``ingest`` as another user) and
Debian's apt, to install ``postfix`` and ``swaks`` once (not at all when both are there).
The system's own Postfix instance is never started. Skipped with the reason where root or
apt is missing; in CI (``CI`` set) that is a failure instead.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from mailtracker import store as store_module
from mailtracker.config import (
    Config,
    DatabaseConfig,
    LmtpConfig,
    OutgoingConfig,
    SmtpConfig,
    TrackerConfig,
)
from mailtracker.dkimcheck import static_resolver, verify_dkim
from mailtracker.dkimsign import Signer
from mailtracker.models import Issue, Message, Outbox, Tracker
from mailtracker.serve import Gateway
from mailtracker.store import Store
from tests.harness import Postfix, ensure_postfix, free_port, running_gateway
from tests.test_deliver import Sink

PIPE_USER = "nobody"  # pipe(8) refuses root; it stands for the recipe's `mailtracker` user
PIPE_TOML = """\
[database]
url = "sqlite:///{root}/pipe/tracker.db"
[smtp]
hostname = "tracker.example.org"
[outgoing]
maildir = "{root}/pipe/outgoing"
[[trackers]]
name = "bugs"
address = "bugs@example.org"
title = "Example bugs"
[[trackers]]
name = "docs"
address = "docs@example.org"
title = "Example docs"
"""


def as_pipe_user(*argv: str) -> subprocess.CompletedProcess[str]:
    command = ["runuser", "-u", PIPE_USER, "--", *argv]
    return subprocess.run(command, capture_output=True, text=True, cwd="/", check=False)


def pipe_program(root: Path) -> str | None:
    """What pipe(8) runs as the unprivileged user: this venv's ``mailtracker``, or where that
    user cannot reach the venv's interpreter (pyenv keeps it under /root) a launcher on the
    system's python3 of the same version with the venv's packages. ``None``: neither runs."""
    script = str(Path(sys.executable).parent / "mailtracker")
    if as_pipe_user(script, "--help").returncode == 0:
        return script
    launcher = root / "mailtracker"
    launcher.write_text(
        "#!/usr/bin/python3\nimport site, sys\n"
        f"assert sys.version_info[:2] == {tuple(sys.version_info[:2])!r}\n"  # one ABI
        f"site.addsitedir({sysconfig.get_paths()['purelib']!r})\n"
        "from mailtracker.cli import main\nsys.exit(main())\n"
    )
    launcher.chmod(0o755)
    return str(launcher) if as_pipe_user(str(launcher), "--help").returncode == 0 else None


@dataclass
class World:
    postfix: Postfix
    gateway: Gateway
    config: Config
    store: Store
    sink: Sink
    signer: Signer
    pipe: list[str] | None  # the pipe's command and -c FILE, when it can run here

    @property
    def root(self) -> Path:
        return self.postfix.root

    def stored_as(self, message_id: str) -> list[str]:
        """Where the tracker stored this mail: ``["bugs/1", ...]``."""
        query = (
            select(Tracker.name, Issue.number)
            .select_from(Message)
            .join(Issue, Issue.id == Message.issue_id)
            .join(Tracker, Tracker.id == Message.tracker_id)
            .where(Message.message_id == message_id)
            .order_by(Tracker.name)
        )
        with self.store.read() as session:
            return [f"{name}/{number}" for name, number in session.execute(query)]

    def received_by(self, rcpt: str, needle: str, timeout: float = 30) -> bytes:
        """The mail the sink got for ``rcpt`` that contains ``needle``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for got in list(self.sink.received):
                if rcpt in got.rcpt_tos and needle.encode() in got.data:
                    return bytes(got.data)
            time.sleep(0.1)
        seen = [(r.rcpt_tos, r.data[:200]) for r in self.sink.received]
        raise AssertionError(f"the sink got nothing for {rcpt} with {needle!r}, only {seen}")


def gateway_config(root: Path, smarthost_port: int) -> tuple[Config, Signer]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (root / "dkim.pem").write_bytes(pem)
    config = Config(
        database=DatabaseConfig(url=f"sqlite:///{root}/tracker.db"),
        smtp=SmtpConfig(listen="127.0.0.1:0", hostname="tracker.example.org"),
        lmtp=LmtpConfig(listen="127.0.0.1:0"),
        outgoing=OutgoingConfig(
            smarthost=f"127.0.0.1:{smarthost_port}",
            maildir="",
            dkim_domain="example.org",
            dkim_selector="mt",
            dkim_private_key=str(root / "dkim.pem"),
        ),
        trackers=(
            TrackerConfig(name="bugs", address="bugs@example.org", title="Example bugs"),
            TrackerConfig(name="docs", address="docs@example.org", title="Example docs"),
        ),
    )
    return config, Signer.from_pem("example.org", "mt", pem)


def pipe_setup(root: Path) -> tuple[list[str] | None, dict[str, str]]:
    """The pipe's database folder (the pipe user's), its config, and the master.cf edits."""
    (root / "pipe").mkdir()
    shutil.chown(root / "pipe", PIPE_USER)
    (root / "pipe.toml").write_text(PIPE_TOML.format(root=root))
    program = pipe_program(root)
    edits = {
        "user=mailtracker": f"user={PIPE_USER}",
        "/etc/mailtracker/mailtracker.toml": str(root / "pipe.toml"),
        "/opt/mailtracker/.venv/bin/mailtracker": program or "/bin/false",
    }
    return ([program, "-c", str(root / "pipe.toml")] if program else None), edits


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    ensure_postfix()
    root = Path(tempfile.mkdtemp(prefix="mailtracker-postfix-"))
    root.chmod(0o755)  # Postfix's daemons and the pipe user work in here
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    postfix = Postfix(root, free_port(), controller.port)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", 1000)  # tempfail sooner
            config, signer = gateway_config(root, postfix.port)
            with running_gateway(config, deliver=True) as gateway:
                pipe, edits = pipe_setup(root)
                postfix.configure(edits)
                postfix.start()
                store = Store.open(config)
                try:
                    yield World(postfix, gateway, config, store, sink, signer, pipe)
                finally:
                    store.close()
                    postfix.stop()
    finally:
        controller.stop()
        shutil.rmtree(root, ignore_errors=True)


def mail(
    message_id: str,
    subject: str,
    to: str = "bugs@example.org",
    sender: str = "Alice Example <alice@example.com>",
    body: str = "Steps: open /login, press Enter.",
) -> bytes:
    head = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        "Date: Mon, 23 Nov 2026 10:00:00 +0100",
        f"Message-ID: <{message_id}>",
        "Content-Type: text/plain; charset=utf-8",
    ]
    return ("\r\n".join(head) + f"\r\n\r\n{body}\r\n").encode()


def flat(raw: bytes) -> str:
    """A bounce's text with folding and wrapping undone, to search for our reason."""
    return " ".join(raw.decode("utf-8", "replace").split())


def lmtp_ports(world: World) -> dict[str, str]:
    assert world.gateway.lmtp is not None
    return {"8024": str(world.gateway.lmtp.port)}


def test_lmtp_recipe_answers_and_delivers_each_recipient_once(world: World) -> None:
    postfix = world.postfix
    postfix.use("lmtp", lmtp_ports(world))
    qid = postfix.send(mail("lmtp-new@example.com", "Crash on save"), ["bugs@example.org"])
    postfix.wait_log(rf"{qid}: removed")
    [ref] = world.stored_as("lmtp-new@example.com")
    issue = f"bugs+{ref.split('/')[1]}@example.org"
    rcpts = [issue, "bugs+999@example.org", "bugs@example.org"]  # a reply-all, one mistyped
    qid = postfix.send(mail("lmtp-reply@example.com", "Re: Crash on save", to=issue), rcpts)
    postfix.wait_log(rf"{qid}: removed")
    assert world.stored_as("lmtp-reply@example.com") == [ref]
    outcomes = re.findall(rf"{qid}: to=<([^>]+)>.*status=(\w+)", postfix.log())
    assert sorted(outcomes) == sorted(  # one line each: nothing delivered twice
        [(issue, "sent"), ("bugs@example.org", "sent"), ("bugs+999@example.org", "bounced")]
    )
    bounce = flat(world.received_by("alice@example.com", "lmtp-reply@example.com"))
    assert "<bugs+999@example.org>: host 127.0.0.1[127.0.0.1] said: 550 5.6.0" in bounce
    assert "names issue 999, but Example bugs has no issue 999" in bounce
    assert postfix.queue() == []


def test_tempfail_stays_in_postfix_queue_until_the_database_is_back(world: World) -> None:
    postfix = world.postfix
    postfix.use("lmtp", lmtp_ports(world))
    locker = sqlite3.connect(world.root / "tracker.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # the database is out of reach for the tracker
    try:
        qid = postfix.send(mail("tempfail@example.com", "Slow search"), ["bugs@example.org"])
        postfix.wait_log(rf"{qid}: to=<bugs@example.org>.*status=deferred")
        [queued] = postfix.queue()
        assert queued["queue_id"] == qid and queued["queue_name"] == "deferred"
        assert "451 4.3.0 the tracker's database is unavailable" in flat(
            queued["recipients"][0]["delay_reason"].encode()
        )
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert world.stored_as("tempfail@example.com") == []
    postfix.command("postqueue", "-c", str(postfix.etc), "-f")
    postfix.wait_log(rf"{qid}: removed")
    assert len(world.stored_as("tempfail@example.com")) == 1
    assert postfix.queue() == []


def test_smtp_recipe_stores_and_bounces(world: World) -> None:
    postfix = world.postfix
    postfix.use("smtp", {"8025": str(world.gateway.port)})
    qid = postfix.send(mail("smtp-new@example.com", "Typo in the guide"), ["docs@example.org"])
    postfix.wait_log(rf"{qid}: removed")
    assert [ref[:5] for ref in world.stored_as("smtp-new@example.com")] == ["docs/"]
    missing = mail("smtp-missing@example.com", "[issue99] still wrong", to="docs@example.org")
    qid = postfix.send(missing, ["docs@example.org"])
    postfix.wait_log(rf"{qid}: removed")
    bounce = flat(world.received_by("alice@example.com", "smtp-missing@example.com"))
    assert "the subject tag [issue99] names issue 99, but Example docs has no issue 99" in bounce
    assert world.stored_as("smtp-missing@example.com") == []


def test_lmtp_over_a_unix_socket(world: World) -> None:
    path = world.root / "lmtp.sock"
    config = replace(world.config, lmtp=LmtpConfig(listen=str(path)))
    with running_gateway(config):
        shutil.chown(path, group="postfix")  # stands for `adduser postfix mailtracker`
        world.postfix.use("lmtp-socket", {"/run/mailtracker/lmtp.sock": str(path)})
        qid = world.postfix.send(mail("socket@example.com", "Via socket"), ["bugs@example.org"])
        world.postfix.wait_log(rf"{qid}: removed")
    assert len(world.stored_as("socket@example.com")) == 1


def pipe_issues(world: World) -> list[str]:
    assert world.pipe is not None
    listed = as_pipe_user(world.pipe[0], "issues", "--json", *world.pipe[1:])
    assert listed.returncode == 0, listed.stderr
    return sorted(issue["id"] for issue in json.loads(listed.stdout))


def test_pipe_recipe_stores_bounces_and_retries(world: World) -> None:
    if world.pipe is None:
        pytest.skip(f"the user {PIPE_USER} can run no mailtracker here (pipe(8) refuses root)")
    postfix = world.postfix
    postfix.use("pipe", {})
    rcpts = ["bugs@example.org", "docs@example.org"]
    qid = postfix.send(mail("pipe-new@example.com", "Pipe works"), rcpts)
    postfix.wait_log(rf"{qid}: removed")
    assert pipe_issues(world) == ["bugs/1", "docs/1"], postfix.log()[-3000:]
    qid = postfix.send(mail("pipe-missing@example.com", "[issue99] gone"), ["bugs@example.org"])
    postfix.wait_log(rf"{qid}: removed")
    bounce = flat(world.received_by("alice@example.com", "pipe-missing@example.com"))
    assert "the subject tag [issue99] names issue 99, but Example bugs has no issue 99" in bounce
    (world.root / "pipe").chmod(0)  # the database cannot be opened
    try:
        qid = postfix.send(mail("pipe-later@example.com", "Later"), ["bugs@example.org"])
        postfix.wait_log(rf"{qid}: to=<bugs@example.org>.*status=deferred")
        [queued] = postfix.queue()
        assert queued["queue_id"] == qid and queued["queue_name"] == "deferred"
        assert "database unavailable" in queued["recipients"][0]["delay_reason"]
    finally:
        (world.root / "pipe").chmod(0o755)
    postfix.command("postqueue", "-c", str(postfix.etc), "-f")
    postfix.wait_log(rf"{qid}: removed")
    assert pipe_issues(world) == ["bugs/1", "bugs/2", "docs/1"]


def test_notifications_leave_through_postfix_intact_and_signed(world: World) -> None:
    postfix = world.postfix
    postfix.use("lmtp", lmtp_ports(world))
    qid = postfix.send(mail("notify@example.com", "Login fails"), ["bugs@example.org"])
    postfix.wait_log(rf"{qid}: removed")
    [ref] = world.stored_as("notify@example.com")
    issue = f"bugs+{ref.split('/')[1]}@example.org"
    bob, text = "Bob <bob@example.com>", "Confirmed with Firefox, behind Postfix."
    comment = mail("notify-bob@example.com", "Re: Login fails", issue, bob, text)
    postfix.send(comment, [issue], sender="bob@example.com")
    got = world.received_by("alice@example.com", text)  # the reporter is told
    message_id = str(message_from_bytes(got, policy=policy.default)["Message-ID"]).strip("<>")
    with world.store.read() as session:
        row = session.scalars(select(Outbox).where(Outbox.message_id == message_id)).one()
    assert row.envelope_from.startswith("bugs-bounces+")  # VERP survives the relay
    assert [r.mail_from for r in world.sink.received if r.data == got] == [row.envelope_from]
    dns = static_resolver({world.signer.dns_name: world.signer.dns_record()})
    assert verify_dkim(got, "example.org", dns).verified
    unwrapped = re.sub(rb"^(?:(?:Received|DKIM-Signature):.*\r\n(?:[ \t].*\r\n)*)+", b"", got)
    assert unwrapped == re.sub(rb"\r?\n", b"\r\n", row.raw)  # byte for byte, but the trace
