"""The MTA pipe edge: ``mailtracker ingest`` takes one mail on stdin; the exit code is the
verdict (sysexits), and the reason goes to stderr, which MTAs quote in their bounces.

Two ways to the same pipeline. With ``[lmtp] listen`` set and the gateway running, the mail
is handed to it over LMTP (``handoff``), and this process never loads the configuration's
dataclasses, SQLAlchemy or logging: an MTA starts it once per mail, so its imports are most
of its cost. Otherwise this process opens the store and runs the pipeline itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from mailtracker.configfile import (
    DEFAULT_COMMAND_TIMEOUT,
    find_config_file,
    lmtp_socket_path,
    parse_hostport,
    read_config_file,
    resolve_socket,
)
from mailtracker.errors import ConfigError
from mailtracker.sysexits import EX_TEMPFAIL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mailtracker.config import Config

__all__ = ["IngestArgs", "envelope_sender", "ingest", "run_ingest", "to_gateway"]

# How long the gateway may take to answer beyond its own command timeout: it bounds one
# mail's processing below that timeout (receive.process_timeout), so this only catches a hang.
_REPLY_MARGIN = 10


class IngestArgs:
    """``ingest``'s command line: ``-c FILE``, ``--recipient`` (repeated), ``--sender``,
    ``--lmtp ADDRESS`` (the gateway's, so the file need not be read), ``-v``."""

    __slots__ = ("config", "lmtp", "recipients", "sender", "verbose")

    def __init__(
        self,
        config: str | None = None,
        recipients: Sequence[str] = (),
        sender: str | None = None,
        verbose: bool = False,
        lmtp: str | None = None,
    ) -> None:
        self.config = config
        self.recipients = list(recipients)
        self.sender = sender
        self.verbose = verbose
        self.lmtp = lmtp


def run_ingest(words: list[str]) -> int:
    """``mailtracker ingest``: to the running gateway if the configuration names one that
    answers, else through the pipeline here; the exit code is the verdict."""
    args = _read_args(words)
    if args is None:  # --help, a mistake, a form MTAs do not use: argparse's to explain
        from mailtracker.cli import ingest_arguments

        args = ingest_arguments(words)
    raw = sys.stdin.buffer.read()
    if args.verbose:
        from mailtracker.cli import log_to_stderr

        log_to_stderr(True)
    mail_from = envelope_sender(raw, args.sender)
    verdict = to_gateway(args.config, raw, args.recipients, mail_from, args.lmtp)
    return verdict if verdict is not None else _here(args, raw, mail_from)


def _here(args: IngestArgs, raw: bytes, mail_from: str) -> int:
    from mailtracker.cli import log_to_stderr
    from mailtracker.config import load_config

    log_to_stderr(args.verbose)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"mailtracker: {exc}", file=sys.stderr)
        # An MTA bounces mail on EX_CONFIG; a broken configuration is ours to fix, so the
        # mail waits in its queue (EX_TEMPFAIL) until we have.
        return EX_TEMPFAIL
    return ingest(config, raw, args.recipients, mail_from)


_VALUED = {
    "-c": "config",
    "--config": "config",
    "--recipient": "recipients",
    "--sender": "sender",
    "--lmtp": "lmtp",
}


def _read_args(words: list[str]) -> IngestArgs | None:
    """The forms an MTA's command line uses (``-c FILE``, ``--config[=]FILE``,
    ``--recipient[=]ADDR``, ``--sender[=]ADDR``, ``--lmtp[=]ADDRESS``, ``-v``), without
    importing argparse (8 ms with what it loads); ``None`` for anything else, which
    argparse then reads."""
    args, rest, command_seen = IngestArgs(), iter(words), False
    for word in rest:
        name, equals, value = word.partition("=") if word.startswith("--") else (word, "", "")
        if word == "ingest" and not command_seen:
            command_seen = True
        elif word in ("-v", "--verbose"):
            args.verbose = True
        elif name in _VALUED:
            given = value if equals else next(rest, None)
            if given is None:
                return None
            if name == "--recipient":
                args.recipients.append(given)
            else:
                setattr(args, _VALUED[name], given)
        else:
            return None
    return args if command_seen else None


def to_gateway(
    config_file: str | None,
    raw: bytes,
    recipients: Sequence[str],
    mail_from: str,
    lmtp: str | None = None,
) -> int | None:
    """The exit code from the running gateway, or ``None``: no gateway, run it here.

    With ``lmtp`` (``--lmtp``) and recipients given, the file is not read at all. Else
    only ``[lmtp] listen``, ``[smtp] command_timeout`` and the first tracker's address are
    read from it; the gateway that answers checked the whole file when it started, and a
    fallback to this process checks it again.
    """
    if lmtp and lmtp_socket_path(lmtp) is None:
        try:
            parse_hostport(lmtp, "--lmtp", "mailtracker ingest")
        except ConfigError:  # the MTA keeps the mail until its command line is fixed
            print(
                f"mailtracker: --lmtp must be HOST:PORT or a socket's path, not {lmtp!r}",
                file=sys.stderr,
            )
            return EX_TEMPFAIL
    if lmtp and recipients:
        found: tuple[str, float, str] | None = (
            resolve_socket(lmtp, os.getcwd()),
            DEFAULT_COMMAND_TIMEOUT + _REPLY_MARGIN,
            "",
        )
    else:
        found = _gateway_settings(config_file, lmtp)
    if found is None:
        return None
    listen, timeout, first_address = found
    rcpt_tos = tuple(recipients) or ((first_address,) if first_address else ())
    if not rcpt_tos:
        return None  # the default tracker address is the full configuration's to give
    from mailtracker.handoff import hand_over

    handed = hand_over(listen, raw, mail_from, rcpt_tos, timeout)
    if handed is None:
        return None
    _report(rcpt_tos, handed.replies)
    return handed.exit_code


def ingest(config: Config, raw: bytes, recipients: Sequence[str], mail_from: str) -> int:
    """One mail through the pipeline in this process (no gateway took it)."""
    from mailtracker.actions import ingest_here
    from mailtracker.values import Envelope

    rcpt_tos = tuple(recipients) or (config.trackers[0].address,)
    return ingest_here(config, raw, Envelope(mail_from, rcpt_tos))


def envelope_sender(raw: bytes, given: str | None) -> str:
    """The envelope sender: as the MTA passed it, else the Return-Path it wrote, else the
    From address (the address only: it becomes ``MAIL FROM:<...>`` when handed over).

    Postfix's pipe(8) adds Return-Path with its ``R`` flag; a null Return-Path (``<>``)
    marks a bounce and must stay null so that it is never answered.
    """
    if given is not None:
        return given.strip("<>")
    from email.parser import BytesHeaderParser
    from email.utils import parseaddr

    headers = BytesHeaderParser().parsebytes(raw[:65536])
    return_path = headers.get("Return-Path")
    if return_path is not None:
        return parseaddr(str(return_path))[1]
    found = parseaddr(str(headers.get("From", "")))[1]
    return found or "unknown@invalid"


def _gateway_settings(config_file: str | None, lmtp: str | None) -> tuple[str, float, str] | None:
    """(LMTP address, reply timeout, first tracker address) from the file, if it names a
    gateway or ``lmtp`` (``--lmtp``, which wins) does; ``None`` for no file, no LMTP
    listener, or a file the full check must judge."""
    path = find_config_file(config_file)
    if path is None:
        return None
    try:
        data = read_config_file(path)
    except ConfigError:
        return None
    listen = _value(data, "lmtp", "listen")
    base = os.path.dirname(os.path.realpath(path))
    if lmtp:
        listen, base = lmtp, os.getcwd()
    if not isinstance(listen, str) or not listen.strip():
        return None
    timeout = _value(data, "smtp", "command_timeout")
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0:
        timeout = DEFAULT_COMMAND_TIMEOUT
    trackers = data.get("trackers")
    first = trackers[0] if isinstance(trackers, list) and trackers else {}
    address = first.get("address", "") if isinstance(first, dict) else ""
    return resolve_socket(listen.strip(), base), timeout + _REPLY_MARGIN, str(address).strip()


def _value(data: dict[str, object], section: str, key: str) -> object:
    table = data.get(section)
    return table.get(key) if isinstance(table, dict) else None


def _report(recipients: Sequence[str], replies: Sequence[str]) -> None:
    """What the gateway said about each recipient it did not take, for the MTA's bounce."""
    for recipient, reply in zip(recipients, replies, strict=True):
        if not reply.startswith("2"):
            print(f"mailtracker: <{recipient}>: {reply[4:]}", file=sys.stderr)
