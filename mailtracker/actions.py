"""What the CLI sub-commands do, beyond parsing their arguments (``cli.py``).

Output for people is a table; ``--json`` prints the JSON of INTERFACE.md for scripts.
``ingest`` speaks sysexits to the MTA that pipes mail into it: the reason for a refusal
goes to stderr, which MTAs quote in the bounce they send.
"""

from __future__ import annotations

import json
import mailbox
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError, IntegrityError

from mailtracker.config import Config
from mailtracker.limits import UNLIMITED
from mailtracker.pipe import envelope_sender
from mailtracker.store import Store
from mailtracker.sysexits import EX_DATAERR, EX_NOINPUT, EX_OK, EX_SOFTWARE, EX_TEMPFAIL
from mailtracker.values import Envelope

if TYPE_CHECKING:
    from mailtracker.quarantine import Listed

__all__ = ["import_path", "ingest_here", "list_issues", "show_issue", "user_add", "user_list"]


def ingest_here(config: Config, raw: bytes, envelope: Envelope) -> int:
    """One mail from an MTA pipe, through the pipeline in this process (``pipe.ingest``)."""
    from mailtracker.pipeline import process

    try:
        store = Store.open(config)
    except DBAPIError as exc:
        print(f"mailtracker: database unavailable, try again later: {exc.orig}", file=sys.stderr)
        return EX_TEMPFAIL
    try:
        outcome = process(store, config, raw, envelope)
    finally:
        store.close()
    if not outcome.accepted:
        print(f"mailtracker: {outcome.reply[4:]}", file=sys.stderr)
    return outcome.exit_code


def import_path(config: Config, path: Path, tracker: str | None, notify: bool) -> int:
    """Feed an mbox file or a Maildir through the pipeline, in order, threaded by headers.

    Re-running it changes nothing (every mail is a duplicate the second time)."""
    if not path.exists():
        print(f"mailtracker: {path}: no such file or folder", file=sys.stderr)
        return EX_NOINPUT
    names = [t.name for t in config.trackers]
    if tracker is not None and tracker not in names:
        print(
            f"mailtracker: no tracker '{tracker}'; there are: {', '.join(names)}", file=sys.stderr
        )
        return EX_DATAERR
    address = config.tracker(tracker or names[0]).address
    config = replace(config, limits=UNLIMITED)  # an archive's history is not a flood
    store = Store.open(config)
    try:
        counts = _import_all(store, config, path, address, notify)
    finally:
        store.close()
    print(", ".join(f"{v}: {n}" for v, n in sorted(counts.items())) or "no messages")
    return EX_OK if counts["refused"] == counts["deferred"] == 0 else EX_DATAERR


def _import_all(
    store: Store, config: Config, path: Path, address: str, notify: bool
) -> Counter[str]:
    from mailtracker.pipeline import process

    counts: Counter[str] = Counter()
    total, messages = _messages(path)
    for i, raw in enumerate(messages, 1):
        envelope = Envelope(envelope_sender(raw, None), (address,))
        outcome = process(store, config, raw, envelope, notify=notify)
        counts[_verdict(outcome.reply)] += 1
        if not outcome.accepted:
            print(f"\rmessage {i}: {outcome.reply}", file=sys.stderr)
        _progress(i, total)
    return counts


def _progress(done: int, total: int) -> None:
    """A bar on a terminal; a line every 100 messages in a log."""
    if sys.stderr.isatty():
        filled = 30 * done // max(total, 1)
        end = "\n" if done == total else ""
        print(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}",
            end=end,
            file=sys.stderr,
            flush=True,
        )
    elif done % 100 == 0 or done == total:
        print(f"... {done}/{total} messages", file=sys.stderr)


def _verdict(reply: str) -> str:
    if reply.startswith("250") and "stored as" in reply:
        return "imported"
    if reply.startswith("250"):
        return "duplicates or ignored"
    return "deferred" if reply.startswith("4") else "refused"


def _messages(path: Path) -> tuple[int, Iterator[bytes]]:
    """How many messages, and the messages in order: an mbox as stored, a Maildir by
    delivery time (its unique file names start with it)."""
    box: mailbox.Mailbox[Any]
    if path.is_dir():
        box = mailbox.Maildir(str(path), factory=None, create=False)
    else:
        box = mailbox.mbox(str(path), create=False)
    keys = sorted(box.keys()) if path.is_dir() else list(box.keys())
    return len(keys), (box.get_bytes(key) for key in keys)


def list_issues(
    store: Store, config: Config, tracker: str | None, status: str | None, as_json: bool
) -> int:
    from mailtracker.views import issue_json
    from mailtracker.views import list_issues as query

    with store.read() as session:
        data = [issue_json(session, i, full=False) for i in query(session, tracker, status)]
    if as_json:
        _print_json(data)
        return EX_OK
    rows = [
        [d["id"], d["status"], d["priority"] or "", d["updated"][:16].replace("T", " "), d["title"]]
        for d in data
    ]
    _table(["ISSUE", "STATUS", "PRIORITY", "UPDATED", "TITLE"], rows)
    return EX_OK


def show_issue(store: Store, config: Config, ref: str, as_json: bool) -> int:
    from mailtracker.views import find_issue, issue_json, parse_issue_ref

    try:
        tracker, number = parse_issue_ref(ref, config)
    except ValueError as exc:
        print(f"mailtracker: {exc}", file=sys.stderr)
        return EX_DATAERR
    with store.read() as session:
        issue = find_issue(session, tracker, number)
        data = issue_json(session, issue, full=True) if issue else None
    if data is None:
        print(f"mailtracker: no issue {tracker}/{number}", file=sys.stderr)
        return EX_DATAERR
    if as_json:
        _print_json(data)
    else:
        _print_issue(data)
    return EX_OK


def _print_issue(data: dict[str, Any]) -> None:
    print(f"{data['id']}: {data['title']}")
    print(
        f"  status: {data['status']}   priority: {data['priority'] or '-'}   "
        f"assignee: {data['assignee'] or '-'}"
    )
    print(f"  nosy: {', '.join(data['nosy']) or '-'}")
    print(f"  created {data['created']}, updated {data['updated']}")
    for n, m in enumerate(data["messages"], 1):
        print(f"\n--- message {n} from {m['author']} ({m['date'] or 'no date'}) ---")
        print(m["body"].rstrip() or "(no text)")
        for a in m["attachments"]:
            print(f"  [attachment] {a['filename']} ({a['content_type']}, {a['size']} bytes)")


def user_add(store: Store, email: str, name: str, role: str) -> int:
    from mailtracker import store as queries

    if "@" not in email:
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

    if "@" not in new_address:
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
        _print_json(data)
    else:
        _table(
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
        _print_json(data)
    else:
        _table(
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
        _print_json(
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
        _print_json(data)
    else:
        _table(
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
        _print_json(data)
    else:
        _table(
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
    if "@" not in email or (tracker is not None and tracker not in names):
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


def user_list(store: Store, as_json: bool) -> int:
    from mailtracker.views import users_json

    with store.read() as session:
        data = users_json(session)
    if as_json:
        _print_json(data)
    else:
        _table(["EMAIL", "NAME", "ROLE"], [[u["email"], u["name"], u["role"]] for u in data])
    return EX_OK


def show_outbox(store: Store, include_sent: bool, as_json: bool) -> int:
    from mailtracker.deliver import outbox_rows

    rows = outbox_rows(store, include_sent=include_sent)
    if as_json:
        _print_json([r.to_json() for r in rows])
        return EX_OK
    _table(
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


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _table(header: list[str], rows: list[list[str]]) -> None:
    if not rows:
        print("(none)")
        return
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
