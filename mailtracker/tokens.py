"""Reply-address tokens: ``bugs+42+TOKEN@`` vouches for the one recipient it was made for.

A token is ``<user id>-<mac>``: the mac is an HMAC-SHA256 over (tracker, issue, user id)
under a secret kept in the database, cut to 80 bits and written in lower-case base32, since
MTAs may fold the case of local parts. A mail to a token address from one of that user's
own addresses is verified; from anyone else it is only that sender's unverified comment,
so a forwarded notification grants nothing. A token whose mac does not check out is forged
or damaged and the mail is refused. Keys rotate: a retired key is honoured for
``GRACE`` so replies to older notifications keep working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailtracker.models import SigningKey, utcnow

__all__ = [
    "GRACE",
    "current_key",
    "current_secret",
    "minter",
    "rotate",
    "token_user",
    "unsubscribe_minter",
    "unsubscribe_target",
]

GRACE = timedelta(days=30)
_MAC_LENGTH = 16


def _mac(secret: str, tracker: str, number: int, user_id: int) -> str:
    message = f"{tracker}\0{number}\0{user_id}".encode()
    digest = hmac.new(bytes.fromhex(secret), message, hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:_MAC_LENGTH]


def current_key(session: Session) -> SigningKey:
    """The key new tokens are made with; the first is created on first use."""
    key = session.scalar(
        select(SigningKey).where(SigningKey.retired_at.is_(None)).order_by(SigningKey.id.desc())
    )
    if key is None:
        key = SigningKey(secret=secrets.token_hex(32), created_at=utcnow())
        session.add(key)
        session.flush()
    return key


_CURRENT = (
    select(SigningKey.__table__.c.secret)
    .where(SigningKey.__table__.c.retired_at.is_(None))
    .order_by(SigningKey.__table__.c.id.desc())
    .limit(1)
)


def current_secret(session: Session) -> str:
    """The current key's secret, read without loading a ``SigningKey``: every notified mail
    asks, and the ORM's entity load was most of the lookup's time."""
    secret = session.execute(_CURRENT).scalar()
    return str(secret) if secret is not None else current_key(session).secret


def minter(session: Session, tracker: str, number: int, secret: str = "") -> Callable[[int], str]:
    """Makes the tokens of one issue's notifications: one key lookup for any fan-out (none
    when the caller already has the current ``secret``)."""
    secret = secret or current_secret(session)
    return lambda user_id: f"{user_id}-{_mac(secret, tracker, number, user_id)}"


def token_user(session: Session, tracker: str, number: int, token: str) -> int | None:
    """The user a token was issued to, or ``None`` if it is forged, damaged or expired."""
    user, _, mac = token.lower().partition("-")
    if not user.isdigit() or len(mac) != _MAC_LENGTH:
        return None
    keys = _honoured_keys(session)
    for key in keys:
        if hmac.compare_digest(_mac(key.secret, tracker, number, int(user)), mac):
            return int(user)
    return None


def _honoured_keys(session: Session) -> list[SigningKey]:
    """The current key and those retired less than ``GRACE`` ago."""
    oldest = utcnow() - GRACE
    query = select(SigningKey).where(
        (SigningKey.retired_at.is_(None)) | (SigningKey.retired_at > oldest)
    )
    return list(session.scalars(query))


def rotate(session: Session) -> SigningKey:
    """Retire the current key and make a new one; old tokens work for ``GRACE`` more."""
    now = utcnow()
    for key in session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))):
        key.retired_at = now
    key = SigningKey(secret=secrets.token_hex(32), created_at=now)
    session.add(key)
    session.flush()
    return key


def unsubscribe_minter(
    session: Session, tracker: str, scope: str, secret: str = ""
) -> Callable[[int], str]:
    """Tokens for a notification's one-click ``List-Unsubscribe`` address (RFC 8058 by
    mail): ``scope`` is ``all`` for a tracker subscription or the issue number for nosy."""
    secret = secret or current_secret(session)
    return lambda user_id: f"{user_id}-{scope}-{_mac(secret, tracker, _scope_key(scope), user_id)}"


def unsubscribe_target(session: Session, tracker: str, token: str) -> tuple[int, str] | None:
    """``(user id, scope)`` of a valid unsubscribe token, else ``None``."""
    user, _, rest = token.lower().partition("-")
    scope, _, mac = rest.partition("-")
    if not user.isdigit() or not (scope == "all" or scope.isdigit()):
        return None
    keys = _honoured_keys(session)
    for key in keys:
        expected = _mac(key.secret, tracker, _scope_key(scope), int(user))
        if len(mac) == _MAC_LENGTH and hmac.compare_digest(expected, mac):
            return int(user), scope
    return None


def _scope_key(scope: str) -> int:
    """Unsubscribe macs never collide with reply-token macs: negative issue numbers."""
    return -1 if scope == "all" else -1 - int(scope)
