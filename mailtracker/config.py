"""Configuration: read once from TOML into frozen dataclasses and passed in explicitly.

Lookup order (INTERFACE.md): ``-c FILE``, ``$MAILTRACKER_CONFIG``, ``./mailtracker.toml``,
built-in defaults. Relative paths in a file are taken relative to that file's folder, so a
tracker made by ``mailtracker init DIR`` works from any working directory.
Every problem is one line naming the key and the file (``ConfigError``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mailtracker.configfile import (
    DEFAULT_COMMAND_TIMEOUT,
    find_config_file,
    lmtp_socket_path,
    parse_hostport,
    read_config_file,
    resolve_socket,
)
from mailtracker.errors import ConfigError

__all__ = [
    "AuthenticationConfig",
    "Config",
    "DatabaseConfig",
    "GithubConfig",
    "LimitsConfig",
    "LmtpConfig",
    "OutgoingConfig",
    "SmtpConfig",
    "TrackerConfig",
    "WebConfig",
    "find_config_file",
    "lmtp_socket_path",
    "load_config",
    "parse_hostport",
]

MAX_PROCESSES = 256  # a typo's guard: past the cores, more processes only queue on locks
UNKNOWN_SENDER_POLICIES = ("register", "reject", "moderate")
VERIFY_SENDER_MODES = ("commands", "all", "off")


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite:///mailtracker.db"


@dataclass(frozen=True)
class SmtpConfig:
    listen: str = "127.0.0.1:8025"
    hostname: str = "localhost"
    max_message_size: int = 26_214_400
    tls_cert: str = ""  # STARTTLS (RFC 3207): PEM certificate chain ...
    tls_key: str = ""  # ... and its unencrypted PEM private key; both or neither
    require_tls: bool = False  # 530 5.7.0 to MAIL before STARTTLS
    max_connections: int = 100
    max_connections_per_ip: int = 10
    command_timeout: int = DEFAULT_COMMAND_TIMEOUT
    processes: int = 1  # gateway processes sharing the listening sockets (prefork.py)


@dataclass(frozen=True)
class OutgoingConfig:
    smarthost: str = ""
    maildir: str = "outgoing"
    dkim_domain: str = ""
    dkim_selector: str = ""
    dkim_private_key: str = ""


@dataclass(frozen=True)
class LmtpConfig:
    listen: str = ""


@dataclass(frozen=True)
class WebConfig:
    listen: str = "127.0.0.1:8080"
    base_url: str = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class GithubConfig:
    webhook_secret: str = ""


@dataclass(frozen=True)
class AuthenticationConfig:
    trusted_authserv_ids: tuple[str, ...] = ()
    verify_dkim: bool = True
    static_dns: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LimitsConfig:
    """Abuse limits per sender; over them the mail is deferred (451), far over them refused."""

    new_issues_per_hour: int = 20
    messages_per_issue_per_hour: int = 30
    automatic_per_issue_per_day: int = 5


@dataclass(frozen=True)
class TrackerConfig:
    name: str = "tracker"
    address: str = "tracker@localhost"
    title: str = "Tracker"
    subject_tag: str = "issue"
    unknown_senders: str = "register"
    verify_senders: str = "commands"
    github_repos: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ("new", "open", "pending", "resolved", "closed")
    priorities: tuple[str, ...] = ("low", "normal", "high", "urgent")
    labels: tuple[str, ...] = ()
    digest_time: str = "06:00"  # UTC, when the daily digest leaves
    reference_prefix: str = ""  # e.g. "bpo-": forge texts saying "bpo-42" mean issue 42

    @property
    def local_part(self) -> str:
        return self.address.rsplit("@", 1)[0].lower()

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1].lower()

    @property
    def list_id(self) -> str:
        """RFC 2919 list identifier: ``bugs.example.org``."""
        return f"{self.local_part}.{self.domain}"

    @property
    def help_address(self) -> str:
        return f"{self.local_part}+help@{self.domain}"

    def issue_address(self, number: int) -> str:
        return f"{self.local_part}+{number}@{self.domain}"


@dataclass(frozen=True)
class Config:
    database: DatabaseConfig = DatabaseConfig()
    smtp: SmtpConfig = SmtpConfig()
    outgoing: OutgoingConfig = OutgoingConfig()
    lmtp: LmtpConfig = LmtpConfig()
    web: WebConfig = WebConfig()
    github: GithubConfig = GithubConfig()
    authentication: AuthenticationConfig = AuthenticationConfig()
    limits: LimitsConfig = LimitsConfig()
    trackers: tuple[TrackerConfig, ...] = (TrackerConfig(),)
    path: Path | None = None

    def tracker(self, name: str) -> TrackerConfig:
        for tracker in self.trackers:
            if tracker.name == name:
                return tracker
        raise KeyError(name)


_SECTIONS: dict[str, type[Any]] = {
    "database": DatabaseConfig,
    "smtp": SmtpConfig,
    "outgoing": OutgoingConfig,
    "lmtp": LmtpConfig,
    "web": WebConfig,
    "github": GithubConfig,
    "authentication": AuthenticationConfig,
    "limits": LimitsConfig,
}


def load_config(explicit: str | None = None) -> Config:
    """Read and validate the configuration; raises ``ConfigError`` with one clear line."""
    found = find_config_file(explicit)
    if found is None:
        return _validated(Config(), Path.cwd(), "built-in defaults")
    return config_from_mapping(read_config_file(found), Path(found))


def config_from_mapping(data: Mapping[str, Any], path: Path) -> Config:
    """Build a ``Config`` from parsed TOML, checking every key and value."""
    where = str(path)
    sections: dict[str, Any] = {}
    for key, value in data.items():
        if key == "trackers":
            continue
        if key not in _SECTIONS:
            raise ConfigError(f"{where}: unknown section '{key}'")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{key}' must be a table ([{key}])")
        sections[key] = _build(_SECTIONS[key], value, key, where)
    trackers = _trackers(data.get("trackers"), where)
    config = Config(**sections, trackers=trackers, path=path.resolve())
    return _validated(config, path.resolve().parent, where)


def _trackers(raw: Any, where: str) -> tuple[TrackerConfig, ...]:
    if raw is None:
        return (TrackerConfig(),)
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: 'trackers' must be one or more [[trackers]] tables")
    result = []
    for i, table in enumerate(raw):
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: 'trackers[{i}]' must be a table")
        result.append(_build(TrackerConfig, table, f"trackers[{i}]", where))
    return tuple(result)


def _build(cls: type[Any], table: Mapping[str, Any], prefix: str, where: str) -> Any:
    defaults = cls()
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}.{key}"
        if key not in cls.__dataclass_fields__:
            raise ConfigError(f"{where}: unknown key '{name}'")
        values[key] = _coerce(getattr(defaults, key), value, name, where)
    return cls(**values)


def _coerce(default: Any, value: Any, name: str, where: str) -> Any:
    """Check ``value`` against the type of the default; lists become tuples."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: '{name}' must be true or false, not {value!r}")
        return value
    if isinstance(default, int):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{where}: '{name}' must be a positive whole number, not {value!r}")
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: '{name}' must be a string, not {value!r}")
        return value.strip()
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: '{name}' must be a list of strings, not {value!r}")
        return tuple(v.strip() for v in value)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f"{where}: '{name}' must be a table of strings, not {value!r}")
    return dict(value)


def _check_lmtp(listen: str, where: str) -> None:
    """A socket path must fit sun_path: 108 bytes on Linux with the final NUL (unix(7))."""
    path = lmtp_socket_path(listen)
    if path is not None and len(os.fsencode(path)) > 107:
        raise ConfigError(f"{where}: 'lmtp.listen' socket path is over 107 bytes: {listen!r}")
    if path is None and listen:
        parse_hostport(listen, "lmtp.listen", where)


def _validated(config: Config, base: Path, where: str) -> Config:
    parse_hostport(config.smtp.listen, "smtp.listen", where)
    if config.web.listen:
        parse_hostport(config.web.listen, "web.listen", where)
    _check_lmtp(config.lmtp.listen, where)
    if config.outgoing.smarthost:
        parse_hostport(config.outgoing.smarthost, "outgoing.smarthost", where)
    _check_trackers(config.trackers, where)
    smtp = config.smtp
    if bool(smtp.tls_cert) != bool(smtp.tls_key):
        raise ConfigError(f"{where}: 'smtp.tls_cert' and 'smtp.tls_key' must be set together")
    if smtp.require_tls and not smtp.tls_cert:
        raise ConfigError(f"{where}: 'smtp.require_tls' needs 'smtp.tls_cert' and 'smtp.tls_key'")
    if smtp.processes > MAX_PROCESSES:
        raise ConfigError(f"{where}: 'smtp.processes' is at most {MAX_PROCESSES}")
    return _resolve_paths(config, base, where)


def _check_trackers(trackers: tuple[TrackerConfig, ...], where: str) -> None:
    names: set[str] = set()
    addresses: set[str] = set()
    for i, t in enumerate(trackers):
        key = f"trackers[{i}]"
        if not t.name or not t.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"{where}: '{key}.name' must be letters, digits, - or _")
        if t.address.count("@") != 1 or "+" in t.local_part or not t.local_part or not t.domain:
            raise ConfigError(f"{where}: '{key}.address' must be LOCAL@DOMAIN without '+'")
        if not t.subject_tag.isalnum():
            raise ConfigError(f"{where}: '{key}.subject_tag' must be letters and digits")
        _check_choice(t.unknown_senders, UNKNOWN_SENDER_POLICIES, f"{key}.unknown_senders", where)
        _check_choice(t.verify_senders, VERIFY_SENDER_MODES, f"{key}.verify_senders", where)
        if not _is_hhmm(t.digest_time):
            raise ConfigError(
                f"{where}: '{key}.digest_time' must be HH:MM (UTC), not {t.digest_time!r}"
            )
        if len(set(t.labels)) != len(t.labels) or not all(t.labels):
            raise ConfigError(f"{where}: '{key}.labels' needs distinct, non-empty values")
        for listname in ("statuses", "priorities"):
            values = getattr(t, listname)
            if not values or len(set(values)) != len(values) or not all(values):
                raise ConfigError(f"{where}: '{key}.{listname}' needs distinct, non-empty values")
        if t.name in names or t.address.lower() in addresses:
            raise ConfigError(f"{where}: '{key}' repeats the name or address of another tracker")
        names.add(t.name)
        addresses.add(t.address.lower())


def _is_hhmm(value: str) -> bool:
    hours, sep, minutes = value.partition(":")
    digits = hours.isdigit() and minutes.isdigit() and len(minutes) == 2
    return bool(sep) and digits and int(hours) < 24 and int(minutes) < 60


def _check_choice(value: str, choices: tuple[str, ...], name: str, where: str) -> None:
    if value not in choices:
        raise ConfigError(f"{where}: '{name}' must be one of {', '.join(choices)}, not {value!r}")


def _resolve_paths(config: Config, base: Path, where: str) -> Config:
    """Make file paths absolute against the config file's folder."""
    url = config.database.url
    if not url.startswith(("sqlite", "postgresql")):
        raise ConfigError(f"{where}: 'database.url' must be a sqlite:/// or postgresql URL")
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != "sqlite://" and not url[len(prefix) :].startswith("/"):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:":
            url = prefix + str(base / rest)
    outgoing = config.outgoing
    maildir = "" if outgoing.smarthost else outgoing.maildir
    if maildir and not os.path.isabs(maildir):
        maildir = str(base / maildir)
    key = outgoing.dkim_private_key
    if key and not os.path.isabs(key):
        key = str(base / key)
    tls = [
        p if not p or os.path.isabs(p) else str(base / p)
        for p in (config.smtp.tls_cert, config.smtp.tls_key)
    ]
    return Config(
        database=DatabaseConfig(url=url),
        smtp=replace(config.smtp, tls_cert=tls[0], tls_key=tls[1]),
        outgoing=OutgoingConfig(
            smarthost=outgoing.smarthost,
            maildir=maildir,
            dkim_domain=outgoing.dkim_domain,
            dkim_selector=outgoing.dkim_selector,
            dkim_private_key=key,
        ),
        lmtp=LmtpConfig(listen=resolve_socket(config.lmtp.listen, str(base))),
        web=config.web,
        github=config.github,
        authentication=config.authentication,
        limits=config.limits,
        trackers=config.trackers,
        path=config.path,
    )
