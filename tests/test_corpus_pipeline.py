"""Every message of the shared corpus through the whole pipeline, on SQLite and PostgreSQL.

Each must be answered 250 or refused with a 5xx that gives a reason; a 4xx here would mean
a bug (the database is up), and an exception escaping ``process`` would drop a connection.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace

import pytest

from mailtracker.config import Config
from mailtracker.limits import UNLIMITED
from mailtracker.pipeline import process
from mailtracker.store import Store
from mailtracker.values import Envelope
from tests.conftest import CORPUS
from tests.test_parse_corpus import corpus_files


def test_every_corpus_message_gets_a_final_answer(store: Store, config: Config) -> None:
    if not CORPUS.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"the shared corpus is not at {CORPUS}")
        pytest.skip(f"the shared corpus is not at {CORPUS}")
    config = replace(config, limits=UNLIMITED)  # fed at once, as an import is
    verdicts: Counter[str] = Counter()
    unclear: dict[str, str] = {}
    for name, raw in corpus_files():
        outcome = process(store, config, raw, Envelope("corpus@example.com", ("bugs@example.org",)))
        code = outcome.reply[:3]
        verdicts[code] += 1
        if not (code == "250" or (code.startswith("5") and len(outcome.reply) > 20)):
            unclear[name] = outcome.reply
    assert unclear == {}
    assert sum(verdicts.values()) >= 1270
    assert verdicts["250"] >= 1200, verdicts
