"""What the CLI sub-commands on people do: ``user`` (accounts, roles, addresses) and
``subscriptions`` (who gets every issue's mail, set by an administrator without confirmation).

Split from ``actions.py`` so each command module does one job; output goes through
``output.py`` (a table, or the JSON of INTERFACE.md with ``--json``).
"""

from __future__ import annotations

import sys

from sqlalchemy.exc import IntegrityError

from mailtracker.addresses import is_address
from mailtracker.config import Config
from mailtracker.output import print_json, table
from mailtracker.store import Store
from mailtracker.sysexits import EX_DATAERR, EX_OK

__all__ = [
    "subscriptions_list",
    "subscriptions_set",
    "user_add",
    "user_add_address",
    "user_list",
    "user_set_role",
]


def user_add(store: Store, email: str, name: str, role: str) -> int:
    from mailtracker import store as queries

    if not is_address(email):
        print(f"mailtracker: '{email}' is not a mail address", file=sys.stderr)
        return EX_DATAERR
    try:
        with store.write() as session:
            if queries.user_by_address(session, email) is not None:
                raise IntegrityError("", None, Exception("exists"))
            queries.create_user(session, email, name, role)
    except IntegrityError:
        print(f"mailtracker: a user with the address {email.lower()} exists", file=sys.stderr)
        return EX_DATAERR
    print(f"added {email.lower()} ({role})")
    return EX_OK


def user_list(store: Store, as_json: bool) -> int:
    from mailtracker.views import users_json

    with store.read() as session:
        data = users_json(session)
    if as_json:
        print_json(data)
    else:
        table(["EMAIL", "NAME", "ROLE"], [[u["email"], u["name"], u["role"]] for u in data])
    return EX_OK


def user_set_role(store: Store, email: str, role: str) -> int:
    from mailtracker import store as queries

    with store.write() as session:
        user = queries.user_by_address(session, email)
        if user is not None:
            user.role = role
    if user is None:
        print(f"mailtracker: no user has the address {email.lower()}", file=sys.stderr)
        return EX_DATAERR
    print(f"{user.email} is now {role}")
    return EX_OK


def user_add_address(store: Store, email: str, new_address: str) -> int:
    from mailtracker import store as queries
    from mailtracker.models import Address

    if not is_address(new_address):
        print(f"mailtracker: '{new_address}' is not a mail address", file=sys.stderr)
        return EX_DATAERR
    with store.write() as session:
        user = queries.user_by_address(session, email)
        taken = queries.user_by_address(session, new_address)
        if user is not None and taken is None:
            session.add(Address(user_id=user.id, email=new_address.lower()))
    if user is None or taken is not None:
        problem = (
            f"no user has the address {email}"
            if user is None
            else (f"{new_address.lower()} already belongs to {taken.email if taken else ''}")
        )
        print(f"mailtracker: {problem}", file=sys.stderr)
        return EX_DATAERR
    print(f"{new_address.lower()} added to {user.email}")
    return EX_OK


def subscriptions_list(store: Store, config: Config, tracker: str | None, as_json: bool) -> int:
    from sqlalchemy import select

    from mailtracker.models import Subscription, Tracker, User
    from mailtracker.views import iso

    query = (
        select(Tracker.name, User, Subscription)
        .join(Tracker, Tracker.id == Subscription.tracker_id)
        .join(User, User.id == Subscription.user_id)
        .order_by(Tracker.name, Subscription.id)
    )
    if tracker:
        query = query.where(Tracker.name == tracker)
    with store.read() as session:
        data = [
            {"tracker": name, "email": user.email, "mode": sub.mode, "since": iso(sub.created_at)}
            for name, user, sub in session.execute(query)
        ]
    if as_json:
        print_json(data)
    else:
        table(
            ["TRACKER", "EMAIL", "MODE", "SINCE"],
            [[str(d[k]) for k in ("tracker", "email", "mode", "since")] for d in data],
        )
    return EX_OK


def subscriptions_set(
    store: Store, config: Config, email: str, tracker: str | None, mode: str | None
) -> int:
    """An admin subscribes (no confirmation needed) or unsubscribes an address."""
    from mailtracker import store as queries
    from mailtracker.subscriptions import set_subscription

    names = [t.name for t in config.trackers]
    if not is_address(email) or (tracker is not None and tracker not in names):
        problem = (
            f"'{email}' is not a mail address"
            if "@" not in email
            else (f"no tracker '{tracker}'; there are: {', '.join(names)}")
        )
        print(f"mailtracker: {problem}", file=sys.stderr)
        return EX_DATAERR
    chosen = config.tracker(tracker or names[0])
    with store.write() as session:
        user = queries.user_by_address(session, email) or queries.create_user(session, email)
        set_subscription(session, chosen, user.id, mode)
    print(
        f"{email.lower()}: "
        + (f"subscribed to {chosen.name} ({mode})" if mode else f"unsubscribed from {chosen.name}")
    )
    return EX_OK
