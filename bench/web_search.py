"""How long the web's search takes on a big tracker: ``python -m bench.web_search [N] [DB]``.

Fills a SQLite database (migrated like any other) with N messages (default 1,000,000) on
N/20 issues, bodies drawn from a Zipf-like vocabulary so some words are in most messages
and others in a handful, then times ``web_search.search_issues`` (page 1 and the count) for
common, rare, combined and prefix queries, with and without filters. The numbers go into
docs/web.md. The database is kept, so a second run only measures.
"""

from __future__ import annotations

import random
import sqlite3
import sys
import time
from pathlib import Path

from mailtracker.config import Config, DatabaseConfig, TrackerConfig
from mailtracker.store import Store
from mailtracker.web_search import Filters, search_issues

WORDS = [f"w{i}" for i in range(5000)]
RARE = ["zebra", "quokka", "narwhal"]
QUERIES = [
    ("one common word", Filters(q="w1")),
    ("two common words", Filters(q="w1 w2")),
    ("a rare word", Filters(q="zebra")),
    ("rare and common", Filters(q="zebra w3")),
    ("a prefix", Filters(q="w12*")),
    ("a missing word", Filters(q="doesnotexist")),
    ("common word + status", Filters(q="w1", status="open")),
    ("no query, status", Filters(status="open")),
]


def fill(path: Path, count: int) -> None:
    config = Config(
        database=DatabaseConfig(url=f"sqlite:///{path}"),
        trackers=(TrackerConfig(name="bugs", address="bugs@example.org"),),
    )
    Store.open(config).close()
    db = sqlite3.connect(path)
    issues = max(1, count // 20)
    rng = random.Random(7)
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO issues (id, tracker_id, number, title, status, thread_root, created_at,"
        " updated_at) VALUES (?, 1, ?, ?, ?, ?, '2026-01-01', ?)",
        (
            (
                i,
                i,
                _text(rng, 6),
                rng.choice(["new", "open", "closed"]),
                f"r{i}@x",
                f"2026-01-01 00:{i % 60:02d}:00",
            )
            for i in range(1, issues + 1)
        ),
    )
    db.executemany(
        "INSERT INTO messages (tracker_id, issue_id, message_id, subject, date, received_at,"
        ' in_reply_to, "references", body, is_comment, verified, evidence, quiet, raw)'
        " VALUES (1, ?, ?, '', '', '2026-01-01', '', '', ?, 1, 0, '', 0, x'')",
        ((rng.randint(1, issues), f"m{n}@x", _body(rng, n)) for n in range(count)),
    )
    db.execute("UPDATE trackers SET next_number = ?", (issues + 1,))
    db.commit()
    db.close()


def _text(rng: random.Random, length: int) -> str:
    return " ".join(WORDS[min(int(rng.paretovariate(1.0)) - 1, 4999)] for _ in range(length))


def _body(rng: random.Random, n: int) -> str:
    extra = f" {RARE[n % 3]}" if n % 50_000 == 0 else ""
    return _text(rng, 40) + extra


def measure(path: Path) -> None:
    store = Store.open(
        Config(
            database=DatabaseConfig(url=f"sqlite:///{path}"),
            trackers=(TrackerConfig(name="bugs", address="bugs@example.org"),),
        )
    )
    with store.read() as session:
        messages = session.connection().exec_driver_sql("SELECT count(*) FROM messages").scalar()
        print(f"{messages:,} messages")
        for name, filters in QUERIES:
            best = min(_timed(session, filters) for _ in range(3))
            found = search_issues(session, "bugs", filters, 1, 50)
            print(f"{name:24s} {best * 1000:8.1f} ms  {found.total:>7,} issues")
    store.close()


def _timed(session: object, filters: Filters) -> float:
    start = time.perf_counter()
    search_issues(session, "bugs", filters, 1, 50)  # type: ignore[arg-type]
    return time.perf_counter() - start


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    path = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(f"bench/results/search-{count}.db")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        start = time.perf_counter()
        fill(path, count)
        print(f"filled in {time.perf_counter() - start:.0f} s")
    measure(path)


if __name__ == "__main__":
    main()
