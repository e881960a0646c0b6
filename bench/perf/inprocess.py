"""The pipeline alone: CPU time per mail of ``pipeline.process`` on the bench's mix, in this
process, against SQLite; with ``--profile``, where that time goes.

    .venv/bin/python bench/perf/inprocess.py                  # CPU ms per mail
    .venv/bin/python bench/perf/inprocess.py --profile        # and cProfile's top functions
    .venv/bin/python bench/perf/inprocess.py --statements     # and the SQL statements per mail

Why: the ingest figures of ``bench/perf`` mix the pipeline with aiosmtpd, threads and the
delivery worker; a change to the pipeline is best judged here, before and after, on the
same mails (CPU time, not wall time, so a busy machine disturbs it less).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

import mix
import seed
import servers
from sqlalchemy import event

from mailtracker.config import load_config
from mailtracker.pipeline import process
from mailtracker.values import Envelope


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=600)
    parser.add_argument("--profile", action="store_true", help="print cProfile's top 40")
    parser.add_argument("--sort", default="tottime", help="cProfile sort key")
    parser.add_argument("--statements", action="store_true", help="count SQL statements")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mailtracker-inprocess-"))
    config_path = servers.write_config(folder, f"sqlite:///{folder / 'tracker.db'}", 1)
    config = load_config(str(config_path))
    store = seed.open_store(config_path)
    seed.register(store, mix.developers(), "developer")
    for mail in mix.warmup_mails():
        process(store, config, mail.data, Envelope(mail.sender, (mail.rcpt,)))
    mails = mix.measured_mails("inprocess", args.mails)
    statements = [0]
    if args.statements:
        event.listen(store.engine, "before_cursor_execute", lambda *a: _count(statements))
    profile = cProfile.Profile() if args.profile else None
    began = time.process_time()
    if profile is not None:
        profile.enable()
    for mail in mails:
        process(store, config, mail.data, Envelope(mail.sender, (mail.rcpt,)))
    if profile is not None:
        profile.disable()
    cpu = time.process_time() - began
    store.close()
    if profile is not None:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(args.sort).print_stats(40)
        print(out.getvalue())
    print(f"{args.mails} mails: {1000 * cpu / args.mails:.2f} ms of CPU per mail", end="")
    print(f", {statements[0] / args.mails:.1f} statements per mail" if args.statements else "")
    return 0


def _count(counter: list[int]) -> None:
    counter[0] += 1


if __name__ == "__main__":
    sys.exit(main())
