"""Who may change what: one rule set, used by every interface (mail now, web and REST later).

- developers and admins may change everything;
- the reporter of an issue may change its status;
- anyone may add or remove themselves on the nosy list;
- nobody else changes properties (anyone allowed to write may still comment).

A refusal names the rule, so the sender knows what they may do instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailtracker.errors import NotPermitted
from mailtracker.values import Edit

__all__ = ["ROLES", "Actor", "check"]

ROLES = ("admin", "developer", "user")
_FULL = ("admin", "developer")


@dataclass(frozen=True)
class Actor:
    user_id: int
    role: str
    addresses: frozenset[str]


def check(actor: Actor, reporter_id: int | None, edits: tuple[Edit, ...]) -> None:
    """Raise ``NotPermitted`` naming the first edit ``actor`` may not make."""
    if actor.role in _FULL:
        return
    for edit in edits:
        if not _allowed(actor, reporter_id, edit):
            raise NotPermitted(_reason(edit))


def _allowed(actor: Actor, reporter_id: int | None, edit: Edit) -> bool:
    if edit.prop == "status":
        return reporter_id == actor.user_id
    if edit.prop == "nosy":
        names = {n for n in edit.value.split(",") if n}
        return edit.op in ("add", "remove") and names <= actor.addresses
    return False


def _reason(edit: Edit) -> str:
    what = "set the nosy list" if edit.prop == "nosy" else f"change {edit.prop}"
    return (
        f"you may not {what}: only developers change properties; a reporter may change the "
        "status of their own issue, and anyone may add or remove themselves on the nosy list "
        "(nosy=+you@example.org); nothing was changed"
    )
