"""The ``mailtracker`` command (INTERFACE.md): one sub-command per job, ``-c FILE`` anywhere.

Heavy modules are imported inside the commands that need them. ``ingest``, which an MTA
starts once per mail, is run by ``pipe.run_ingest``: when the running gateway takes the
mail over LMTP, that process loads neither argparse nor the configuration's dataclasses nor
logging (docs/performance.md, "Pipe mode"), so even argparse is imported here only when a
parser is built.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from mailtracker import clicommands as run
from mailtracker.errors import ConfigError
from mailtracker.sysexits import EX_CONFIG, EX_USAGE

EX_SIGPIPE = 141  # what a shell reports for a process that SIGPIPE ended (128 + 13)

TYPE_CHECKING = False  # typing, argparse and the config dataclasses: 20 ms of a piped ingest
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from mailtracker.config import Config
    from mailtracker.pipe import IngestArgs

    Handler = Callable[[argparse.Namespace, Config], int]

__all__ = ["ingest_arguments", "log_to_stderr", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if _command_of(words) == "ingest":
        from mailtracker.pipe import run_ingest

        return run_ingest(words)
    parser = _parser()
    args = _parse(parser, words)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EX_USAGE
    log_to_stderr(args.verbose)
    if args.command == "init":
        from mailtracker.initialize import init

        return init(args.directory)
    from mailtracker.config import load_config

    try:
        config = load_config(args.config)
        func: Handler = args.func
        status = func(args, config)
        sys.stdout.flush()
        return status
    except ConfigError as exc:
        print(f"mailtracker: {exc}", file=sys.stderr)
        return EX_CONFIG
    except BrokenPipeError:
        return _reader_went_away()


def _reader_went_away() -> int:
    """The reader of our output left (``mailtracker issues --json | head``): end quietly,
    as a C program killed by SIGPIPE would. stdout now points at /dev/null, so the
    interpreter's final flush cannot raise again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EX_SIGPIPE


def ingest_arguments(words: list[str]) -> IngestArgs:
    """``ingest``'s arguments as argparse reads them, for what ``pipe`` does not read itself
    (``--help``, a mistake: argparse explains and exits 2). Only this parser is built:
    argparse translates every help text, and the other thirty would cost 10 ms."""
    from mailtracker.pipe import IngestArgs

    parser, sub, common = _top_parser()
    _ingest_parser(sub, common)
    args = _parse(parser, words)
    return IngestArgs(args.config, args.recipient, args.sender, args.verbose, args.lmtp)


def log_to_stderr(verbose: bool) -> None:
    """Log lines to stderr (an MTA quotes a pipe's stderr, systemd's journal takes serve's)."""
    import logging

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _command_of(words: Sequence[str]) -> str | None:
    """The sub-command: the first word that is neither an option nor ``-c``'s value."""
    value_follows = False
    for word in words:
        if value_follows:
            value_follows = False
        elif word in ("-c", "--config"):
            value_follows = True
        elif not word.startswith("-"):
            return word
    return None


def _top_parser() -> tuple[argparse.ArgumentParser, Any, argparse.ArgumentParser]:
    """The ``mailtracker`` parser, its sub-command table, and the options every one takes.

    The options are taken before and after the sub-command's name. Their defaults are
    SUPPRESS (``_parse`` fills them in): a sub-command's parser would otherwise write its
    own default over a ``-c FILE`` given before the name (``mailtracker -c F issues``)."""
    import argparse

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c", "--config", metavar="FILE", default=argparse.SUPPRESS, help="configuration file"
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log what happens"
    )
    parser = argparse.ArgumentParser(
        prog="mailtracker", description="An email-first issue tracker.", parents=[common]
    )
    return parser, parser.add_subparsers(dest="command", metavar="COMMAND"), common


def _parse(parser: argparse.ArgumentParser, words: list[str]) -> argparse.Namespace:
    """``parse_args``, with the common options' defaults where they were not given."""
    args = parser.parse_args(words)
    for name, default in (("config", None), ("verbose", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    return args


def _ingest_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    text = "one message from stdin, as an MTA pipe"  # run by pipe.run_ingest, not by a func
    ingest = sub.add_parser("ingest", parents=[common], help=text, description=text)
    ingest.add_argument("--recipient", action="append", default=[], metavar="ADDR")
    ingest.add_argument("--sender", metavar="ADDR", help="envelope sender (MAIL FROM)")
    ingest.add_argument(
        "--lmtp",
        metavar="ADDRESS",
        help="the running gateway's [lmtp] listen (socket path or HOST:PORT): hand the mail "
        "to it without reading the configuration file",
    )


def _parser() -> argparse.ArgumentParser:
    parser, sub, common = _top_parser()
    init = sub.add_parser("init", parents=[common], help="write a commented mailtracker.toml")
    init.add_argument("directory", nargs="?", default=".")
    init.set_defaults(func=lambda a, c: 0)
    _add(sub, common, "serve", "SMTP listener and delivery worker", run.serve)
    _ingest_parser(sub, common)
    _issue_parsers(sub, common)
    _user_parsers(sub, common)
    _moderation_parsers(sub, common)
    _quarantine_parsers(sub, common)
    _bounce_parsers(sub, common)
    _subscription_parsers(sub, common)
    _maintenance_parsers(sub, common)
    return parser


def _issue_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    imp = _add(sub, common, "import", "an mbox file or Maildir, threaded", run.import_archive)
    imp.add_argument("path")
    imp.add_argument("--tracker", metavar="T")
    imp.add_argument("--notify", action="store_true", help="send notifications too")
    issues = _add(sub, common, "issues", "list issues", run.issues)
    issues.add_argument("--tracker", metavar="T")
    issues.add_argument("--status", metavar="S")
    issues.add_argument("--json", action="store_true")
    show = _add(sub, common, "show", "one issue with its messages", run.show)
    show.add_argument("issue", metavar="ISSUE", help="42, issue42 or TRACKER/42")
    show.add_argument("--json", action="store_true")


def _maintenance_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    tok = sub.add_parser("tokens", parents=[common], help="reply-address token keys")
    tok_sub = tok.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)
    text = "new key for reply tokens; old ones work 30 days more"
    _add(tok_sub, common, "rotate", text, run.tokens_rotate)
    outbox = _add(sub, common, "outbox", "queued and failed outgoing mail", run.outbox)
    outbox.add_argument("--json", action="store_true")
    outbox.add_argument("--all", action="store_true", help="include mail already sent")
    deliver = _add(sub, common, "deliver", "send queued mail", run.deliver)
    deliver.add_argument(
        "--once",
        action="store_true",
        required=True,
        help="try every queued mail now, whatever its backoff says",
    )
    db = sub.add_parser("db", parents=[common], help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    _add(db_sub, common, "upgrade", "apply schema migrations", run.db_upgrade)


def _quarantine_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    q = sub.add_parser("quarantine", parents=[common], help="mail that tripped a bug")
    q_sub = q.add_subparsers(dest="quarantine_command", metavar="ACTION", required=True)
    listing = _add(q_sub, common, "list", "list quarantined mail", run.quarantine_list)
    listing.add_argument("--all", action="store_true", help="include mail retried already")
    listing.add_argument("--json", action="store_true")
    show = _add(
        q_sub, common, "show", "the error, a diagnosis of the mail, the mail", run.quarantine_show
    )
    show.add_argument("id", type=_row_id)
    show.add_argument("--json", action="store_true")
    retry = _add(q_sub, common, "retry", "run a quarantined mail again", run.quarantine_retry)
    retry.add_argument("id", type=_row_id)


def _bounce_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    b = sub.add_parser("bounces", parents=[common], help="addresses whose mail bounces")
    b_sub = b.add_subparsers(dest="bounces_command", metavar="ACTION", required=True)
    listing = _add(b_sub, common, "list", "addresses and their bounce scores", run.bounces_list)
    listing.add_argument("--json", action="store_true")
    reset = _add(
        b_sub, common, "reset", "clear an address's score and mail it again", run.bounces_reset
    )
    reset.add_argument("address")


def _subscription_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    subs = sub.add_parser("subscriptions", parents=[common], help="tracker-wide subscribers")
    s_sub = subs.add_subparsers(dest="subscriptions_command", metavar="ACTION", required=True)
    listing = _add(s_sub, common, "list", "list subscribers", run.subscriptions_list)
    listing.add_argument("--tracker", metavar="T")
    listing.add_argument("--json", action="store_true")
    add = _add(
        s_sub, common, "add", "subscribe an address (no confirmation)", run.subscriptions_add
    )
    add.add_argument("email")
    add.add_argument("--tracker", metavar="T")
    add.add_argument("--mode", choices=("all", "new", "digest"), default="all")
    remove = _add(s_sub, common, "remove", "unsubscribe an address", run.subscriptions_remove)
    remove.add_argument("email")
    remove.add_argument("--tracker", metavar="T")


def _row_id(text: str) -> int:
    """An id the database can hold (``LARGEST_ID``): a larger one made the driver fail
    with a traceback instead of the command saying there is no such row."""
    import argparse

    from mailtracker.values import LARGEST_ID

    if not text.isdigit() or not 0 < int(text) <= LARGEST_ID:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an id: a whole number from 1 to {LARGEST_ID}"
        )
    return int(text)


def _add(
    sub: Any, common: argparse.ArgumentParser, name: str, text: str, func: Handler
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, parents=[common], help=text, description=text
    )
    parser.set_defaults(func=func)
    return parser


def _user_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    user = sub.add_parser("user", parents=[common], help="manage users")
    user_sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = _add(user_sub, common, "add", "add a user", run.user_add)
    add.add_argument("email")
    add.add_argument("--name", default="")
    add.add_argument("--role", choices=("admin", "developer", "user"), default="user")
    listing = _add(user_sub, common, "list", "list users", run.user_list)
    listing.add_argument("--json", action="store_true")
    role = _add(user_sub, common, "set-role", "change a user's role", run.user_set_role)
    role.add_argument("email")
    role.add_argument("role", choices=("admin", "developer", "user"))
    address = _add(
        user_sub, common, "add-address", "give a user another address", run.user_add_address
    )
    address.add_argument("email", help="an address the user has")
    address.add_argument("new_address")
    token = _add(
        user_sub, common, "token", "a new API token for the user (replaces theirs)", run.user_token
    )
    token.add_argument("email")
    token.add_argument("--revoke", action="store_true", help="remove the user's token")


def _moderation_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    mod = sub.add_parser("moderation", parents=[common], help="mail held from unknown senders")
    mod_sub = mod.add_subparsers(dest="moderation_command", metavar="ACTION", required=True)
    listing = _add(mod_sub, common, "list", "list held mail", run.moderation_list)
    listing.add_argument("--json", action="store_true")
    for name, text in (
        ("approve", "accept a held mail and register its sender"),
        ("reject", "discard a held mail"),
    ):
        action = _add(mod_sub, common, name, text, run.moderation_decide)
        action.add_argument("id", type=_row_id)
