"""The listening sockets of ``serve``, bound before any gateway process starts.

With ``[smtp] processes`` above 1 the supervisor (``prefork.py``) binds SMTP, LMTP and web
once and every gateway process it forks accepts on the same sockets, as Postfix's master(8)
hands its listening socket to each smtpd. A shared socket balances by readiness: the kernel
wakes the processes waiting in ``accept`` and a process busy with a mail is not one of
them, where ``SO_REUSEPORT`` would hash each connection to a fixed process whether it is
busy or not, and cannot share a unix socket at all. Binding first also means a port in use
stops ``serve`` with one line before anything is forked.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from dataclasses import dataclass
from typing import Any

from mailtracker.config import Config, parse_hostport
from mailtracker.configfile import lmtp_socket_path
from mailtracker.errors import ConfigError

__all__ = [
    "SOCKET_MODE",
    "ListenError",
    "Listeners",
    "bind_listeners",
    "bind_tcp",
    "bind_unix",
    "remove_socket",
]

BACKLOG = 128
# The MTA's user reaches the LMTP socket through its group (``adduser postfix mailtracker``);
# other local users cannot inject mail past the MTA's checks.
SOCKET_MODE = 0o660


@dataclass(frozen=True)
class Listeners:
    """Sockets bound by the supervisor; each gateway process serves them all."""

    smtp: tuple[socket.socket, ...]
    lmtp: tuple[socket.socket, ...]
    web: tuple[socket.socket, ...]

    def close(self) -> None:
        for sock in (*self.smtp, *self.lmtp, *self.web):
            sock.close()


def bind_listeners(config: Config) -> Listeners:
    """Bind what ``serve`` listens on; closes what it bound if a later one fails."""
    where = str(config.path or "config")
    smtp = bind_tcp(config.smtp.listen, "smtp.listen", where)
    bound: list[socket.socket] = list(smtp)
    try:
        lmtp = _bind_lmtp(config, where)
        bound.extend(lmtp)
        web = bind_tcp(config.web.listen, "web.listen", where) if config.web.listen else ()
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    return Listeners(smtp, lmtp, web)


def _bind_lmtp(config: Config, where: str) -> tuple[socket.socket, ...]:
    listen = config.lmtp.listen
    path = lmtp_socket_path(listen)
    if path is not None:
        return (bind_unix(path, where),)
    return bind_tcp(listen, "lmtp.listen", where) if listen else ()


def bind_tcp(listen: str, key: str, where: str) -> tuple[socket.socket, ...]:
    """Every address ``HOST:PORT`` resolves to, as ``asyncio``'s ``create_server`` would."""
    host, port = parse_hostport(listen, key, where)
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(found):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            _bind(sock, address, f"{key} {listen}")
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return tuple(sockets)


def bind_unix(path: str, where: str) -> socket.socket:
    """A unix socket at ``path`` (a stale one a killed ``serve`` left is replaced)."""
    _clear_stale_socket(path, where)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _bind(sock, path, f"lmtp.listen {path}")
        os.chmod(path, SOCKET_MODE)
    except BaseException:
        sock.close()
        raise
    return sock


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _clear_stale_socket(path: str, where: str) -> None:
    """Remove the socket a killed ``serve`` left behind, but never take over a live one or
    delete a file that is not a socket."""
    if not os.path.lexists(path):
        return
    if not _is_socket(path):
        raise ConfigError(f"{where}: 'lmtp.listen' {path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise
            os.unlink(path)
            return
    raise ConfigError(f"{where}: 'lmtp.listen' {path}: another process is listening there")


def remove_socket(path: str) -> None:
    """Remove a unix socket's file at the end (Python 3.11 leaves it), never another file."""
    if _is_socket(path):
        os.unlink(path)


class ListenError(OSError):
    """A socket ``serve`` must listen on could not be bound (``serve`` says so in one line)."""


def _bind(sock: socket.socket, address: tuple[Any, ...] | str, what: str) -> None:
    try:
        sock.bind(address)
    except OSError as exc:
        raise ListenError(exc.errno, f"{what}: {exc.strerror}") from exc
    sock.listen(BACKLOG)
    sock.setblocking(False)
