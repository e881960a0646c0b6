"""API tokens: one per user, for writes through the REST API (``Authorization: Bearer``).

``mailtracker user token EMAIL`` makes one and prints it once; making another replaces it
(rotation), ``--revoke`` removes it. Only the SHA-256 of a token is stored: tokens are 256
random bits, so a fast hash is enough and a copy of the database does not let anyone write
as anyone. A token only says who writes; what they may do is decided by the same checks as
their mail (``pipeline.process`` with ``Envelope.vouched``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mailtracker import store as queries
from mailtracker.models import ApiToken, User, utcnow
from mailtracker.store import Store
from mailtracker.sysexits import EX_DATAERR, EX_OK

__all__ = ["PREFIX", "issue_token", "revoke_token", "token_owner", "user_token"]

PREFIX = "mt_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, user_id: int) -> str:
    """A new token for the user; the one they had stops working at once."""
    revoke_token(session, user_id)
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user_id, token_hash=_digest(token), created_at=utcnow()))
    session.flush()
    return token


def revoke_token(session: Session, user_id: int) -> bool:
    result = session.execute(delete(ApiToken).where(ApiToken.user_id == user_id))
    return bool(getattr(result, "rowcount", 0))


def token_owner(session: Session, token: str) -> User | None:
    """The user a presented token belongs to, or ``None``."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    digest = _digest(token)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return session.get(User, row.user_id)


def user_token(store: Store, email: str, revoke: bool) -> int:
    """``mailtracker user token EMAIL [--revoke]``: the token alone on stdout, for scripts."""
    with store.write() as session:
        user = queries.user_by_address(session, email)
        if user is None:
            print(f"mailtracker: no user has the address {email.lower()}", file=sys.stderr)
            return EX_DATAERR
        if revoke:
            gone = revoke_token(session, user.id)
            print(f"{user.email}: API token {'revoked' if gone else 'was not set'}")
            return EX_OK
        token = issue_token(session, user.id)
    print(token)
    print(
        f"API token for {user.email}; shown only now (the tracker keeps its hash), "
        "and any earlier token of theirs no longer works",
        file=sys.stderr,
    )
    return EX_OK
