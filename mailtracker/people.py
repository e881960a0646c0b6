"""Users and their addresses as plain rows, for the mail path.

``apply`` and ``notify`` read the author (id, name, role, addresses) and the people to
tell for every mail; as ORM ``User`` objects with their ``addresses`` relationship that
took a query more and most of the time of each lookup. The statements are built once.
The ORM versions in ``store`` stay for the rarer paths (subscriptions, moderation, the
web, the CLI).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from sqlalchemy import String, bindparam, literal, select, union_all, update
from sqlalchemy.orm import Session

from mailtracker.models import Address, BounceScore, Nosy, Subscription, User
from mailtracker.store import table

__all__ = [
    "Follower",
    "Person",
    "add_person",
    "followers",
    "person_by_address",
    "set_user_name",
    "user_ids_by_address",
]

_USERS = table(User)
_ADDRESSES = table(Address)


class Person(NamedTuple):
    """A user as the mail path needs them: no ORM object (a query less, no unit of work)."""

    id: int
    name: str
    role: str
    emails: tuple[str, ...]  # the first registered first: the one we write to


_OTHER = _ADDRESSES.alias("other")
_PERSON = (
    select(_USERS.c.id, _USERS.c.name, _USERS.c.role, _OTHER.c.email)
    .join(_ADDRESSES, _ADDRESSES.c.user_id == _USERS.c.id)
    .join(_OTHER, _OTHER.c.user_id == _USERS.c.id)
    .where(_ADDRESSES.c.email == bindparam("email"))
    .order_by(_OTHER.c.id)
)


def person_by_address(session: Session, email: str) -> Person | None:
    """The user with the address and all their addresses, in one query."""
    rows = session.execute(_PERSON, {"email": email.lower()}).all()
    if not rows:
        return None
    first = rows[0]
    return Person(first.id, first.name, first.role, tuple(r.email for r in rows))


_NEW_USER = _USERS.insert().returning(_USERS.c.id)
_NEW_ADDRESS = _ADDRESSES.insert()


def add_person(session: Session, email: str, name: str = "") -> Person:
    """A new user with one address (``create_user`` without the ORM)."""
    pk = int(session.execute(_NEW_USER, {"name": name, "role": "user"}).scalar_one())
    session.execute(_NEW_ADDRESS, {"user_id": pk, "email": email.lower()})
    return Person(pk, name, "user", (email.lower(),))


_RENAME = update(_USERS).where(_USERS.c.id == bindparam("user_pk"))


def set_user_name(session: Session, user_id: int, name: str) -> None:
    session.execute(_RENAME, {"user_pk": user_id, "name": name})


_OWNERS = select(_ADDRESSES.c.email, _ADDRESSES.c.user_id).where(
    _ADDRESSES.c.email.in_(bindparam("emails", expanding=True))
)


def user_ids_by_address(session: Session, emails: Iterable[str]) -> dict[str, int]:
    """``{address: user id}`` for those of ``emails`` that belong to a user."""
    wanted = sorted({e.lower() for e in emails})
    if not wanted:
        return {}
    return {email: user_id for email, user_id in session.execute(_OWNERS, {"emails": wanted})}


class Follower(NamedTuple):
    """Someone told about an issue's mail: why (``nosy``, else their subscription's mode)
    and their addresses, the first registered first, each with whether it is disabled."""

    reason: str
    addresses: dict[str, bool]


_NOSY = table(Nosy)
_SUBSCRIPTIONS = table(Subscription)
_BOUNCE_SCORES = table(BounceScore)
_FOLLOWING = union_all(
    select(_NOSY.c.user_id, literal("nosy", String).label("reason")).where(
        _NOSY.c.issue_id == bindparam("issue_pk")
    ),
    select(_SUBSCRIPTIONS.c.user_id, _SUBSCRIPTIONS.c.mode).where(
        _SUBSCRIPTIONS.c.tracker_id == bindparam("tracker_pk"),
        _SUBSCRIPTIONS.c.mode.in_(bindparam("modes", expanding=True)),
    ),
).subquery("following")
_FOLLOWERS = (
    select(
        _FOLLOWING.c.user_id,
        _FOLLOWING.c.reason,
        _ADDRESSES.c.email,
        _BOUNCE_SCORES.c.disabled_at,
    )
    .join(_ADDRESSES, _ADDRESSES.c.user_id == _FOLLOWING.c.user_id)
    .outerjoin(_BOUNCE_SCORES, _BOUNCE_SCORES.c.address == _ADDRESSES.c.email)
    .where(_FOLLOWING.c.user_id != bindparam("author_pk"))
    .order_by(_ADDRESSES.c.id)
)


def followers(
    session: Session, issue_id: int, tracker_id: int, modes: Sequence[str], author_id: int
) -> dict[int, Follower]:
    """The issue's nosy list and the tracker's subscribers in ``modes``, less the author,
    with their addresses and bounce state: one query where four were (users without an
    address are left out)."""
    params = {
        "issue_pk": issue_id,
        "tracker_pk": tracker_id,
        "modes": list(modes),
        "author_pk": author_id,
    }
    found: dict[int, Follower] = {}
    for user_id, reason, email, disabled_at in session.execute(_FOLLOWERS, params):
        known = found.setdefault(user_id, Follower(reason, {}))
        if reason == "nosy" != known.reason:
            known = found[user_id] = Follower(reason, known.addresses)
        known.addresses[email] = disabled_at is not None
    return found
