"""``mailtracker init DIR``: a commented configuration with every option, and the database.

The file documents itself: an operator reads the options where they set them. Nothing is
overwritten: an existing ``mailtracker.toml`` is left alone and reported.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mailtracker.config import load_config
from mailtracker.errors import ConfigError
from mailtracker.sysexits import EX_CONFIG

__all__ = ["CONFIG_TEMPLATE", "init"]

CONFIG_TEMPLATE = """\
# mailtracker configuration. Relative paths are relative to this file's folder.
# Reference: docs/configuration.md

[database]
# SQLite file (the default), or PostgreSQL for several gateways on one database:
#   url = "postgresql+psycopg://mailtracker@127.0.0.1/mailtracker"
url = "sqlite:///mailtracker.db"

[smtp]
# Where the SMTP listener accepts mail (behind your MTA, keep it on loopback).
listen = "127.0.0.1:8025"
# EHLO name, and the domain of every Message-ID we generate.
hostname = "localhost"
# Larger mail is refused with 552 5.3.4 (and announced in EHLO SIZE).
max_message_size = 26214400
# STARTTLS (RFC 3207): PEM certificate chain and unencrypted PEM key, both or neither.
# tls_cert = "tls/fullchain.pem"
# tls_key = "tls/privkey.pem"
# Refuse MAIL with 530 5.7.0 until the client has sent STARTTLS (needs tls_cert, tls_key).
# require_tls = false
# Connections open at once, in total and from one client address; more get 421.
# Counted per gateway process (see processes).
# max_connections = 100
# max_connections_per_ip = 10
# Gateway processes sharing the listening sockets (SMTP, LMTP, web), each with its own
# delivery worker: with PostgreSQL, one per core lets serve use them all; on SQLite,
# whose writers take turns, keep 1 (docs/deployment.md).
# processes = 1
# Seconds a client may stay silent, or take to upload a mail, before 421 (RFC 5321
# 4.5.3.2.7 asks for at least 5 minutes); storing a mail may take 80 % of it, then 451.
# command_timeout = 300

[outgoing]
# Notifications are written to this Maildir (for trying things out) ...
maildir = "outgoing"
# ... or sent to your MTA: set smarthost (then maildir is ignored).
# smarthost = "127.0.0.1:25"
# Sign notifications with DKIM (optional):
# dkim_domain = "example.org"
# dkim_selector = "mt"
# dkim_private_key = "dkim.pem"

[lmtp]
# LMTP listener for Postfix/Exim ("127.0.0.1:8024" or a unix socket path); empty: off.
listen = ""

[web]
listen = "127.0.0.1:8080"
# Base of every link we mail.
base_url = "http://127.0.0.1:8080"

[github]
# Secret of the GitHub webhook (POST /hooks/github); empty: off.
webhook_secret = ""

[limits]
# Per sender: over these a person's mail is deferred (451), automatic mail refused (550).
new_issues_per_hour = 20
messages_per_issue_per_hour = 30
automatic_per_issue_per_day = 5

[authentication]
# Honour Authentication-Results headers added by these hosts only.
trusted_authserv_ids = []
# Verify DKIM signatures ourselves as well.
verify_dkim = true
# TXT records used instead of DNS (offline sites, tests).
static_dns = {}

# One [[trackers]] table per tracker address.
[[trackers]]
name = "tracker"
address = "tracker@localhost"
title = "Tracker"
# [issue42] in subjects.
subject_tag = "issue"
# Mail from addresses without an account: register | reject | moderate
unknown_senders = "register"
# Which mail needs a verified sender: commands | all | off
verify_senders = "commands"
# GitHub repositories ("owner/name") whose PRs and commits link to this tracker.
github_repos = []
# Also link forge texts that say e.g. "bpo-42" (empty: only issue42, [issue42], NAME#42).
reference_prefix = ""
# The first status is the one a new issue gets.
statuses = ["new", "open", "pending", "resolved", "closed"]
priorities = ["low", "normal", "high", "urgent"]
# When the daily digest leaves (HH:MM, UTC).
digest_time = "06:00"
# A fixed list of labels; empty: any label may be used.
labels = []
"""


def init(directory: str) -> int:
    """Write ``DIR/mailtracker.toml`` unless it exists, then create the database."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mailtracker.toml"
    if path.exists():
        print(f"mailtracker: {path} exists; left as it is", file=sys.stderr)
    else:
        path.write_text(CONFIG_TEMPLATE, encoding="utf-8")
        print(f"wrote {path}")
    try:
        config = load_config(str(path))
    except ConfigError as exc:
        print(f"mailtracker: {exc}", file=sys.stderr)
        return EX_CONFIG
    from mailtracker import tokens
    from mailtracker.store import Store

    store = Store.open(config)
    with store.write() as session:
        tokens.current_key(session)  # the secret of reply tokens, kept in the database
    store.close()
    print(f"database ready: {config.database.url}")
    return 0
