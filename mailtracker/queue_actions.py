"""What the CLI sub-commands on mail that waits for an administrator do: ``moderation``
(held mail), ``quarantine`` (mail a bug stopped), ``bounces`` (scores that stop mailing an
address) and ``outbox`` (mail still to send).

Split from ``actions.py`` so each command module does one job; output goes through
``output.py`` (a table, or the JSON of INTERFACE.md with ``--json``). Each command imports
the module it drives inside, so that it pays only for its own (``quarantine show`` alone loads
mail-parser).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from mailtracker.config import Config
from mailtracker.output import print_json, table
from mailtracker.store import Store
from mailtracker.sysexits import EX_DATAERR, EX_OK, EX_SOFTWARE, EX_TEMPFAIL

if TYPE_CHECKING:
    from mailtracker.quarantine import Listed

__all__ = [
    "bounces_list",
    "bounces_reset",
    "moderation_decide",
    "moderation_list",
    "quarantine_list",
    "quarantine_retry",
    "quarantine_show",
    "show_outbox",
]


def moderation_list(store: Store, as_json: bool) -> int:
    from mailtracker.control import held_mail
    from mailtracker.views import iso

    with store.read() as session:
        data = [
            {
                "id": h.id,
                "sender": h.sender,
                "subject": h.subject,
                "to": h.rcpt,
                "received": iso(h.created_at),
            }
            for h in held_mail(session)
        ]
    if as_json:
        print_json(data)
    else:
        table(
            ["ID", "RECEIVED", "FROM", "TO", "SUBJECT"],
            [[str(d[k]) for k in ("id", "received", "sender", "to", "subject")] for d in data],
        )
    return EX_OK


def moderation_decide(store: Store, config: Config, held_id: int, approve: bool) -> int:
    from mailtracker import moderation

    if not approve:
        if moderation.discard(store, held_id):
            print(f"held mail {held_id} discarded")
            return EX_OK
        print(f"mailtracker: there is no held mail {held_id}", file=sys.stderr)
        return EX_DATAERR
    outcome = moderation.approve(store, config, held_id)
    print(f"held mail {held_id}: {outcome.reply}")
    return outcome.exit_code


def quarantine_list(store: Store, include_done: bool, as_json: bool) -> int:
    from mailtracker import quarantine

    data = [_quarantined(e) for e in quarantine.entries(store, include_done)]
    if as_json:
        print_json(data)
    else:
        table(
            ["ID", "RECEIVED", "STATUS", "MESSAGE-ID", "ERROR"],
            [
                [str(d[k]) for k in ("id", "received", "status", "message_id", "error")]
                for d in data
            ],
        )
    return EX_OK


def _quarantined(entry: Listed) -> dict[str, Any]:
    """What ``quarantine list`` shows of a mail, and ``quarantine show --json`` starts with;
    ``error`` is the traceback's last line (the exception)."""
    from mailtracker.views import iso

    return {
        "id": entry.id,
        "message_id": entry.message_id,
        "received": iso(entry.created_at),
        "status": entry.status,
        "error": (entry.error.strip().splitlines() or [""])[-1],
        "outcome": entry.outcome,
    }


def quarantine_show(store: Store, quarantine_id: int, as_json: bool) -> int:
    """The error, mail-parser's diagnosis of the raw mail (``diagnose.py``), and the mail."""
    from mailtracker import quarantine
    from mailtracker.diagnose import diagnose

    found = quarantine.entry(store, quarantine_id)
    if found is None:
        print(f"mailtracker: there is no quarantined mail {quarantine_id}", file=sys.stderr)
        return EX_DATAERR
    diagnosis = diagnose(found.raw)
    mail = found.raw.decode("utf-8", "replace")
    if as_json:
        print_json(
            _quarantined(found)
            | {
                "mail_from": found.mail_from,
                "rcpt_tos": list(found.rcpt_tos),
                "traceback": found.error.rstrip(),
                "diagnosis": diagnosis.to_json(),
                "mail": mail,
            }
        )
        return EX_OK
    print(
        f"quarantine {found.id}: <{found.message_id}> from <{found.mail_from}> "
        f"to {', '.join(found.rcpt_tos)}, {found.status}"
    )
    if found.outcome:
        print(f"last retry: {found.outcome}")
    print(found.error.rstrip())
    print("--- diagnosis (mail-parser) ---")
    print("\n".join(diagnosis.lines()))
    print("--- the mail ---")
    print(mail)
    return EX_OK


def quarantine_retry(store: Store, config: Config, quarantine_id: int) -> int:
    """Run the mail again; it leaves the list once it is stored or refused for good."""
    from mailtracker import quarantine
    from mailtracker.pipeline import process

    found = quarantine.entry(store, quarantine_id)
    if found is None or found.status == "done":
        why = "there is no" if found is None else "already retried:"
        print(f"mailtracker: {why} quarantined mail {quarantine_id}", file=sys.stderr)
        return EX_DATAERR
    try:
        outcome = process(store, config, found.raw, found.envelope, keep_failures=False)
    except Exception as exc:
        quarantine.record_retry(store, quarantine_id, f"failed again: {exc!r}", done=False)
        print(f"quarantine {quarantine_id} failed again: {exc!r}", file=sys.stderr)
        return EX_SOFTWARE
    final = not outcome.reply.startswith("4")
    quarantine.record_retry(store, quarantine_id, outcome.reply, done=final)
    print(f"quarantine {quarantine_id}: {outcome.reply}")
    return EX_OK if final else EX_TEMPFAIL


def bounces_list(store: Store, as_json: bool) -> int:
    from sqlalchemy import select

    from mailtracker.models import Bounce, BounceScore
    from mailtracker.views import iso

    with store.read() as session:
        scores = list(session.scalars(select(BounceScore).order_by(BounceScore.address)))
        last = {b.address: b for b in session.scalars(select(Bounce).order_by(Bounce.id))}
        data: list[dict[str, Any]] = [
            {
                "address": s.address,
                "score": s.score,
                "disabled": s.disabled_at is not None,
                "last_bounce": iso(s.last_bounce_at),
                "status": last[s.address].status if s.address in last else "",
                "diagnostic": last[s.address].diagnostic if s.address in last else "",
            }
            for s in scores
        ]
    if as_json:
        print_json(data)
    else:
        table(
            ["ADDRESS", "SCORE", "DISABLED", "LAST BOUNCE", "STATUS", "DIAGNOSTIC"],
            [
                [
                    d["address"],
                    str(d["score"]),
                    "yes" if d["disabled"] else "no",
                    str(d["last_bounce"]),
                    d["status"],
                    d["diagnostic"][:50],
                ]
                for d in data
            ],
        )
    return EX_OK


def bounces_reset(store: Store, address: str) -> int:
    from mailtracker.models import BounceScore

    with store.write() as session:
        score = session.get(BounceScore, address.lower())
        if score is not None:
            session.delete(score)
    if score is None:
        print(f"mailtracker: {address.lower()} has no bounce score", file=sys.stderr)
        return EX_DATAERR
    print(f"{address.lower()}: score cleared, mailed again")
    return EX_OK


def show_outbox(store: Store, include_sent: bool, as_json: bool) -> int:
    from mailtracker.outbox_view import outbox_rows

    rows = outbox_rows(store, include_sent=include_sent)
    if as_json:
        print_json([r.to_json() for r in rows])
        return EX_OK
    table(
        ["ID", "STATUS", "TRIES", "RECIPIENT", "NEXT TRY", "LAST ERROR"],
        [
            [
                str(r.id),
                r.status,
                str(r.attempts),
                r.recipient,
                str(r.to_json().get("next_attempt_at") or ""),
                r.last_error[:60],
            ]
            for r in rows
        ],
    )
    return EX_OK
