"""Finding and reading the configuration file, without building the ``Config`` from it.

Why apart from ``config``: a piped ``ingest`` that hands its mail to the running gateway
needs three values from the file (the LMTP socket, the command timeout, the first tracker's
address) and nothing else; building the frozen dataclasses of ``config`` costs it about 15
ms of a 50 ms budget. This module imports only ``tomllib``, and that only to read a file. ``config``
builds on it, so the lookup order and the path rules are written once. Paths are plain
strings here (``os.path``): importing ``pathlib`` would cost that ``ingest`` 3 ms more.
"""

from __future__ import annotations

import os

from mailtracker.errors import ConfigError

__all__ = [
    "DEFAULT_COMMAND_TIMEOUT",
    "find_config_file",
    "lmtp_socket_path",
    "parse_hostport",
    "read_config_file",
    "resolve_socket",
]

DEFAULT_COMMAND_TIMEOUT = 300  # seconds; RFC 5321 4.5.3.2.7 asks for at least 5 minutes


def find_config_file(explicit: str | None) -> str | None:
    """The file to read, by INTERFACE.md's order; ``None`` means built-in defaults."""
    if explicit:
        return explicit
    from_env = os.environ.get("MAILTRACKER_CONFIG")
    if from_env:
        return from_env
    return "mailtracker.toml" if os.path.exists("mailtracker.toml") else None


def read_config_file(path: str) -> dict[str, object]:
    """The parsed TOML; ``ConfigError`` with one line naming the file if it cannot be had.
    ``tomllib`` is imported here, not above: with what it loads, a quarter of an ``ingest``
    that is told the gateway's address (``--lmtp``) and never reads the file."""
    import tomllib

    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def parse_hostport(value: str, name: str, where: str) -> tuple[str, int]:
    """``"127.0.0.1:8025"`` or ``"[::1]:8025"`` → ``(host, port)``."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{where}: '{name}' must be HOST:PORT, not {value!r}")
    return host, int(port)


def lmtp_socket_path(listen: str) -> str | None:
    """The unix socket path ``lmtp.listen`` names; ``None`` for ``HOST:PORT`` or off."""
    return listen if listen and ("/" in listen or ":" not in listen) else None


def resolve_socket(listen: str, base: str) -> str:
    """A relative socket path is taken relative to the configuration's folder ``base``."""
    path = lmtp_socket_path(listen)
    if path is None or os.path.isabs(path):
        return listen
    return os.path.join(base, path)
