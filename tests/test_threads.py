"""A real mailing-list month, fed in order: each thread must become one issue.

The oracle is the list archive's own thread tree (``expected_threads.json``). Its ``_about``
names the messages where the archive departs from strict header threading; those are the
only ones allowed elsewhere.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mailtracker.config import Config
from mailtracker.limits import UNLIMITED
from mailtracker.pipeline import process
from mailtracker.store import Store
from mailtracker.values import Envelope
from tests.conftest import CORPUS

FEDORA = CORPUS / "threads-fedora-devel-2010-01"
# idx 3 has no parent in the archive; 153 and 285 are grouped by subject there ("_about").
ARCHIVE_DEPARTS = {3, 153, 285}
_FROM_LINE = re.compile(rb"^From .*\d\d \d\d\d\d$")


def split_mbox(path: Path) -> list[bytes]:
    """Split as the oracle did: on lines matching ``^From .*\\d\\d \\d\\d\\d\\d$``."""
    messages: list[list[bytes]] = []
    for line in path.read_bytes().splitlines(keepends=True):
        if _FROM_LINE.match(line.rstrip(b"\r\n")):
            messages.append([])
        elif messages:
            messages[-1].append(line)
    return [b"".join(lines) for lines in messages]


def walk(node: dict[str, Any], root: int) -> Iterator[tuple[int, int]]:
    """(message, the message whose issue it must share). Below a message where the archive
    departs from header threading, the subtree follows that message instead."""
    yield node["idx"], root
    below = node["idx"] if node["idx"] in ARCHIVE_DEPARTS else root
    for child in node["children"]:
        yield from walk(child, below)


@pytest.fixture(scope="module")
def oracle() -> dict[str, Any]:
    if not FEDORA.exists():
        if os.environ.get("CI"):
            pytest.fail(f"corpus missing at {FEDORA}")
        pytest.skip(f"corpus not found at {FEDORA}")
    return dict(json.loads((FEDORA / "expected_threads.json").read_text()))


def test_mailing_list_threads_become_issues(
    store: Store, config: Config, oracle: dict[str, Any]
) -> None:
    config = replace(config, limits=UNLIMITED)  # fed at once, as an import is
    messages = split_mbox(FEDORA / "2010-January.mbox")
    assert len(messages) == oracle["n_messages"] == 292
    issue_of: dict[int, str] = {}
    for idx, raw in enumerate(messages):
        outcome = process(
            store, config, raw, Envelope("list@example.org", ("bugs@example.org",)), notify=False
        )
        assert outcome.accepted, (idx, outcome.reply)
        issue_of[idx] = outcome.stored[0] if outcome.stored else "duplicate"
    root_of = dict(pair for tree in oracle["threads"] for pair in walk(tree, tree["idx"]))
    assert len(root_of) == 292
    misplaced = {idx for idx, root in root_of.items() if issue_of[idx] != issue_of[root]}
    assert misplaced <= ARCHIVE_DEPARTS, sorted(misplaced - ARCHIVE_DEPARTS)
    roots = [t["idx"] for t in oracle["threads"] if t["idx"] not in ARCHIVE_DEPARTS]
    assert len({issue_of[r] for r in roots}) == len(roots)  # each thread its own issue
