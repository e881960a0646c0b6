"""What the CLI sub-commands that feed mail in or read issues do, beyond parsing their
arguments (``cli.py``): ``ingest``'s in-process path, ``import``, ``issues`` and ``show``.

Output for people is a table; ``--json`` prints the JSON of INTERFACE.md for scripts
(``output.py``). ``ingest`` speaks sysexits to the MTA that pipes mail into it: the reason for
a refusal goes to stderr, which MTAs quote in the bounce they send. The administrators'
commands are in ``user_actions.py`` (users, subscriptions) and ``queue_actions.py`` (held,
quarantined, bouncing and outgoing mail).
"""

from __future__ import annotations

import mailbox
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError

from mailtracker.config import Config
from mailtracker.limits import UNLIMITED
from mailtracker.output import print_json, table
from mailtracker.pipe import envelope_sender
from mailtracker.store import Store
from mailtracker.sysexits import EX_DATAERR, EX_NOINPUT, EX_OK, EX_TEMPFAIL
from mailtracker.values import Envelope

__all__ = ["import_path", "ingest_here", "list_issues", "show_issue"]


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
        print_json(data)
        return EX_OK
    rows = [
        [d["id"], d["status"], d["priority"] or "", d["updated"][:16].replace("T", " "), d["title"]]
        for d in data
    ]
    table(["ISSUE", "STATUS", "PRIORITY", "UPDATED", "TITLE"], rows)
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
        print_json(data)
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
