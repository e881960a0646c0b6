"""What each ``mailtracker`` sub-command does, given its parsed arguments and the
configuration (``cli`` builds the parsers and points each sub-command here).

Each imports what it needs inside, so that the command line pays only for its command;
the module itself imports nothing, as ``cli`` (which a piped ``ingest`` loads) imports it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from mailtracker.config import Config

__all__ = [
    "bounces_list",
    "bounces_reset",
    "db_upgrade",
    "deliver",
    "import_archive",
    "issues",
    "moderation_decide",
    "moderation_list",
    "outbox",
    "quarantine_list",
    "quarantine_retry",
    "quarantine_show",
    "serve",
    "show",
    "subscriptions_add",
    "subscriptions_list",
    "subscriptions_remove",
    "tokens_rotate",
    "user_add",
    "user_add_address",
    "user_list",
    "user_set_role",
    "user_token",
]


def _open_store(config: Config) -> Any:
    from mailtracker.store import Store

    return Store.open(config)


def serve(args: argparse.Namespace, config: Config) -> int:
    import asyncio
    import logging
    import sys

    from mailtracker.serve import serve_forever
    from mailtracker.sysexits import EX_OSERR

    logging.getLogger().setLevel(logging.INFO)
    if not args.verbose:  # aiosmtpd logs every SMTP command at INFO
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
    from mailtracker.listeners import ListenError

    try:
        if config.smtp.processes == 1:
            return asyncio.run(serve_forever(config))
        from mailtracker.prefork import run_supervisor

        tagged = logging.Formatter("%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
        for handler in logging.getLogger().handlers:  # whose line is whose, as syslog has it
            handler.setFormatter(tagged)
        return run_supervisor(config)
    except ListenError as exc:  # a port in use: one line, as for a bad configuration
        print(f"mailtracker: {exc.strerror}", file=sys.stderr)
        return EX_OSERR


def import_archive(args: argparse.Namespace, config: Config) -> int:
    from pathlib import Path

    from mailtracker.actions import import_path

    return import_path(config, Path(args.path), args.tracker, args.notify)


def issues(args: argparse.Namespace, config: Config) -> int:
    from mailtracker.actions import list_issues

    return list_issues(_open_store(config), config, args.tracker, args.status, args.json)


def show(args: argparse.Namespace, config: Config) -> int:
    from mailtracker.actions import show_issue

    return show_issue(_open_store(config), config, args.issue, args.json)


def user_add(args: argparse.Namespace, config: Config) -> int:
    from mailtracker.user_actions import user_add

    return user_add(_open_store(config), args.email, args.name, args.role)


def user_list(args: argparse.Namespace, config: Config) -> int:
    from mailtracker.user_actions import user_list

    return user_list(_open_store(config), args.json)


def user_set_role(args: argparse.Namespace, config: Config) -> int:
    from mailtracker.user_actions import user_set_role

    return user_set_role(_open_store(config), args.email, args.role)


def user_add_address(args: argparse.Namespace, config: Config) -> int:
    from mailtracker.user_actions import user_add_address

    return user_add_address(_open_store(config), args.email, args.new_address)


def user_token(args: argparse.Namespace, config: Config) -> int:
    from mailtracker.web_tokens import user_token

    return user_token(_open_store(config), args.email, args.revoke)


def moderation_list(args: argparse.Namespace, config: Config) -> int:
    from mailtracker.queue_actions import moderation_list

    return moderation_list(_open_store(config), args.json)


def moderation_decide(args: argparse.Namespace, config: Config) -> int:
    from mailtracker.queue_actions import moderation_decide

    approve = args.moderation_command == "approve"
    return moderation_decide(_open_store(config), config, args.id, approve)


def quarantine_list(args: argparse.Namespace, config: Config) -> int:
    from mailtracker.queue_actions import quarantine_list

    return quarantine_list(_open_store(config), args.all, args.json)


def quarantine_show(args: argparse.Namespace, config: Config) -> int:
    from mailtracker.queue_actions import quarantine_show

    return quarantine_show(_open_store(config), args.id, args.json)


def quarantine_retry(args: argparse.Namespace, config: Config) -> int:
    from mailtracker.queue_actions import quarantine_retry

    return quarantine_retry(_open_store(config), config, args.id)


def bounces_list(args: argparse.Namespace, config: Config) -> int:
    from mailtracker.queue_actions import bounces_list

    return bounces_list(_open_store(config), args.json)


def bounces_reset(args: argparse.Namespace, config: Config) -> int:
    from mailtracker.queue_actions import bounces_reset

    return bounces_reset(_open_store(config), args.address)


def tokens_rotate(args: argparse.Namespace, config: Config) -> int:
    from mailtracker import tokens

    with _open_store(config).write() as session:
        key = tokens.rotate(session)
        print(
            f"reply tokens now use key {key.id}; older keys are honoured for "
            f"{tokens.GRACE.days} more days"
        )
    return 0


def subscriptions_list(args: argparse.Namespace, config: Config) -> int:
    from mailtracker.user_actions import subscriptions_list

    return subscriptions_list(_open_store(config), config, args.tracker, args.json)


def subscriptions_add(args: argparse.Namespace, config: Config) -> int:
    from mailtracker.user_actions import subscriptions_set

    return subscriptions_set(_open_store(config), config, args.email, args.tracker, args.mode)


def subscriptions_remove(args: argparse.Namespace, config: Config) -> int:
    from mailtracker.user_actions import subscriptions_set

    return subscriptions_set(_open_store(config), config, args.email, args.tracker, None)


def outbox(args: argparse.Namespace, config: Config) -> int:
    from mailtracker.queue_actions import show_outbox

    return show_outbox(_open_store(config), args.all, args.json)


def deliver(args: argparse.Namespace, config: Config) -> int:
    from mailtracker.deliver import deliver_all_now

    report = deliver_all_now(_open_store(config), config)
    print(f"sent {report.sent}, deferred {report.deferred}, failed {report.failed}")
    return 0


def db_upgrade(args: argparse.Namespace, config: Config) -> int:
    store = _open_store(config)
    print(f"database at the newest schema ({store.dialect})")
    return 0
