"""Configuration: every documented key is accepted, every mistake is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailtracker.config import load_config
from mailtracker.errors import ConfigError
from mailtracker.initialize import CONFIG_TEMPLATE

INTERFACE_SAMPLE = """
[database]
url = "sqlite:///mailtracker.db"
[smtp]
listen = "127.0.0.1:8025"
hostname = "tracker.example.org"
max_message_size = 26214400
[outgoing]
smarthost = "127.0.0.1:25"
dkim_domain = "example.org"
dkim_selector = "mt"
dkim_private_key = "dkim.pem"
[lmtp]
listen = ""
[web]
listen = "127.0.0.1:8080"
base_url = "https://tracker.example.org"
[github]
webhook_secret = ""
[authentication]
trusted_authserv_ids = ["mx.example.org"]
verify_dkim = true
static_dns = {}
[[trackers]]
name = "bugs"
address = "bugs@example.org"
title = "Example bugs"
subject_tag = "issue"
unknown_senders = "register"
verify_senders = "commands"
github_repos = []
statuses = ["new", "open", "pending", "resolved", "closed"]
priorities = ["low", "normal", "high", "urgent"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mailtracker.toml"
    path.write_text(text)
    return path


def test_every_documented_key_is_accepted(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path, INTERFACE_SAMPLE)))
    assert config.smtp.hostname == "tracker.example.org"
    assert config.outgoing.smarthost == "127.0.0.1:25" and config.outgoing.maildir == ""
    assert config.outgoing.dkim_private_key == str(tmp_path / "dkim.pem")
    assert config.database.url == f"sqlite:///{tmp_path / 'mailtracker.db'}"
    assert config.authentication.trusted_authserv_ids == ("mx.example.org",)
    assert config.trackers[0].statuses[0] == "new"


def test_init_template_is_a_valid_config(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path, CONFIG_TEMPLATE)))
    assert config.outgoing.maildir == str(tmp_path / "outgoing")
    assert config.trackers[0].address == "tracker@localhost"


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILTRACKER_CONFIG", raising=False)
    config = load_config(None)
    assert config.path is None
    assert config.smtp.listen == "127.0.0.1:8025"
    assert config.trackers[0].address == "tracker@localhost"
    assert config.database.url == f"sqlite:///{tmp_path / 'mailtracker.db'}"


def test_environment_variable_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '[smtp]\nhostname = "from-env.example.org"\n')
    monkeypatch.setenv("MAILTRACKER_CONFIG", str(path))
    assert load_config(None).smtp.hostname == "from-env.example.org"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[smtp]\nport = 25\n", "unknown key 'smtp.port'"),
        ("[smpt]\n", "unknown section 'smpt'"),
        ("[smtp]\nmax_message_size = -1\n", "'smtp.max_message_size' must be a positive"),
        ('[smtp]\nmax_message_size = "big"\n', "'smtp.max_message_size' must be a positive"),
        ("[smtp]\nprocesses = 0\n", "'smtp.processes' must be a positive whole number"),
        ("[smtp]\nprocesses = 1000\n", "'smtp.processes' is at most 256"),
        ('[authentication]\nverify_dkim = "yes"\n', "'authentication.verify_dkim' must be"),
        ('[[trackers]]\nname = "b"\naddress = "nope"\n', "'trackers[0].address' must be"),
        (
            '[[trackers]]\nunknown_senders = "maybe"\n',
            "'trackers[0].unknown_senders' must be one of register, reject, moderate",
        ),
        ("[[trackers]]\nstatuses = []\n", "'trackers[0].statuses' needs distinct"),
        (
            '[[trackers]]\nname = "a"\n[[trackers]]\nname = "a"\naddress = "b@x.org"\n',
            "'trackers[1]' repeats",
        ),
        ('[database]\nurl = "mysql://x"\n', "'database.url' must be"),
        ('[outgoing]\nsmarthost = "relay"\n', "'outgoing.smarthost' must be HOST:PORT"),
        ("this is = not toml =", "not valid TOML"),
    ],
)
def test_mistakes_name_key_and_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(str(tmp_path / "nope.toml"))
