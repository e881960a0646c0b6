"""The floor: the least CPU a mail costs any gateway built on this project's libraries.

    .venv/bin/python bench/perf/floor.py [--mails N] [--statements K] [--json]

Why: issue 7 asks for ingest at half the null aiosmtpd server's rate. Whatever the
gateway's own code does, three things happen before a 250 (ARCHITECTURE rule 1), each
through a library the brief names, and none of them can be skipped:

- **parse**: the stdlib parser (``policy.default``, the faithful one), every leaf's content
  read once;
- **store**: one SQLite transaction (WAL, ``synchronous=FULL``, as ``store.py`` sets it)
  of ``K`` SQLAlchemy Core statements built once with ``bindparam``: one INSERT of the mail
  and ``K - 1`` lookups by an indexed key. ``K = 10`` is the fewest a stored reply with one
  notification needs (the thread by Message-ID, the tracker, the author, the issue, the
  message, its references, the nosy list, the journal, who is told, the outbox row);
  mailtracker's pipeline runs about 16;
- **render**: one notification made from a Jinja2 template and given its threading and
  list headers by the stdlib's ``EmailMessage`` (rule 6, RFC 2369/2919).

One more figure is not part of the floor but prices rule 1 for the team: **spool**, one
INSERT of the raw mail and its commit, alone. It is what a gateway would spend before its
250 if the rule allowed accepting into a durable spool and running the pipeline afterwards
(as Postfix's smtpd and Mailman's LMTP runner do). It prices a burst, not a sustained
load: the pipeline's work still follows every spooled mail.

Both the parser and ``EmailMessage`` run with ``headers.py``'s policies, which make each
header name's class once (the stdlib makes a new class for every header it parses, 25 µs
each): the library at its best, as mailtracker uses it. Each is timed alone on the bench's
mix of mails, CPU time in this process, so the sum is a
lower bound: no event loop, no threads, no logging, no trust or routing decisions. The
bench adds the null server's own CPU per mail to it and reports the ratio a gateway that
cost only this could reach (one core: the GIL, and SQLite's one writer).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime
from pathlib import Path

import jinja2
import mix
from sqlalchemy import (
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    insert,
    select,
)

from mailtracker.headers import DEFAULT_POLICY, SMTP_POLICY
from mailtracker.store import make_engine

MINIMUM_STATEMENTS = 10
_WHEN = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
_TEMPLATE = jinja2.Template(
    "{{ author }} added a comment to [{{ tag }}{{ number }}] {{ title }}:\n\n{{ comment }}\n\n"
    "----------\nstatus: {{ status }}\n{{ link }}\n",
    autoescape=False,
)


def parse(raw: bytes) -> None:
    msg = BytesParser(policy=DEFAULT_POLICY).parsebytes(raw)
    for part in msg.walk():
        if not part.is_multipart():
            part.get_content()


def render(number: int) -> bytes:
    body = _TEMPLATE.render(
        author="Alice",
        tag="tracker",
        number=number,
        title="Login page crashes",
        comment="I see it too.\n" * 5,
        status="open",
        link=f"https://tracker.example/issue{number}",
    )
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = "Alice via Bench tracker <tracker@bench.example>"
    msg["To"] = "bob@example.org"
    msg["Subject"] = f"[tracker{number}] Login page crashes"
    msg["Date"] = format_datetime(_WHEN)
    msg["Message-ID"] = f"<n{number}@tracker.bench.example>"
    msg["In-Reply-To"] = f"<root{number}@bench.example>"
    msg["References"] = f"<root{number}@bench.example> <cause{number}@bench.example>"
    msg["List-Id"] = "Bench tracker <tracker.bench.example>"
    msg["List-Post"] = f"<mailto:tracker+{number}@bench.example>"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body, charset="utf-8")
    return msg.as_bytes()


class Statements:
    """One INSERT and ``count - 1`` indexed lookups, built once, in one transaction."""

    def __init__(self, folder: Path, count: int, name: str = "floor.db") -> None:
        self.engine = make_engine(f"sqlite:///{folder / name}")
        meta = MetaData()
        self.table = Table(
            "mails",
            meta,
            Column("id", Integer, primary_key=True),
            Column("key", String(200), unique=True),
            Column("raw", LargeBinary),
        )
        meta.create_all(self.engine)
        self.insert = insert(self.table).values(key=bindparam("k"), raw=bindparam("r"))
        self.lookup = select(self.table.c.id).where(self.table.c.key == bindparam("k"))
        self.count = count

    def run(self, key: str, raw: bytes) -> None:
        with self.engine.begin() as conn:
            for _ in range(self.count - 1):
                conn.execute(self.lookup, {"k": key}).first()
            conn.execute(self.insert, {"k": key, "r": raw})


def cpu_ms(action: Callable[[int], object], count: int) -> float:
    began = time.process_time()
    for i in range(count):
        action(i)
    return 1000 * (time.process_time() - began) / count


def _warmed(store: Statements, raws: list[bytes]) -> Statements:
    for i in range(50):  # warm: the statement cache, the page cache
        store.run(f"warm-{i}", raws[i % len(raws)])
    return store


def measure(mails: int, statements: int) -> dict[str, float]:
    raws = [m.data for m in mix.measured_mails("floor", mails)]
    with tempfile.TemporaryDirectory(prefix="mailtracker-floor-") as folder:
        store = _warmed(Statements(Path(folder), statements), raws)
        figures = {
            "parse_ms": cpu_ms(lambda i: parse(raws[i]), mails),
            "store_ms": cpu_ms(lambda i: store.run(f"m-{i}", raws[i]), mails),
            "render_ms": cpu_ms(render, mails),
        }
        spool = _warmed(Statements(Path(folder), 1, "spool.db"), raws)
        spool_ms = cpu_ms(lambda i: spool.run(f"s-{i}", raws[i]), mails)
        spool.engine.dispose()
        store.engine.dispose()
    figures["total_ms"] = sum(figures.values())
    figures["spool_ms"] = spool_ms
    figures["statements"] = statements
    return {k: round(v, 3) for k, v in figures.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=600)
    parser.add_argument("--statements", type=int, default=MINIMUM_STATEMENTS)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = measure(args.mails, args.statements)
    if args.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name:>12}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
