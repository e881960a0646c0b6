"""mailtracker's performance bench: one command, one table, one JSON file.

    .venv/bin/python bench/perf            # the full run (about 10 minutes)
    .venv/bin/python bench/perf --quick    # a smaller run (a minute or two)
    .venv/bin/python bench/perf --only ingest,fanout --json /tmp/perf.json

Why one command: every figure in ``docs/performance.md`` is a ratio to something measured in
the same invocation on the same machine (the null-handler ceiling, the empty store), so
the numbers can be checked by anyone, on any machine, without trusting absolute values.
The targets are those of issue 7; the bench reports them, tests never assert times.
"""

from __future__ import annotations

import argparse
import compileall
import json
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import report
import scenarios
from scenarios import Settings

SCENARIOS: dict[str, Callable[[Settings], dict[str, Any]]] = {
    "ingest": scenarios.ingest,
    "growth": scenarios.growth,
    "fanout": scenarios.fanout,
    "memory": scenarios.memory,
    "pipe": scenarios.pipe,
}
DEFAULT_JSON = Path(__file__).resolve().parent / "last-run.json"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/perf", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer mails, a smaller seed")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where the JSON goes")
    parser.add_argument("--growth", help="stored-message counts, e.g. 0,100000,1000000")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--rate", type=float, default=30.0, help="offered mails/s for latency")
    parser.add_argument("--fanout-nosy", type=int, default=1000, help="nosy members")
    parser.add_argument(
        "--fanout-subscribers",
        type=int,
        default=5000,
        help="tracker-wide subscribers on top (0 and --fanout-nosy 6000: all on the nosy list)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace, workdir: Path) -> Settings:
    quick = args.quick
    growth = args.growth or ("0,20000" if quick else "0,100000,1000000")
    return Settings(
        workdir=workdir,
        rounds=2 if quick else 3,
        mails=150 if quick else 400,
        rate=args.rate,
        latency_mails=100 if quick else 300,
        growth=tuple(int(n) for n in growth.split(",")),
        postgres=not args.no_postgres,
        fanout_nosy=args.fanout_nosy,
        fanout_subscribers=args.fanout_subscribers,
        mail_size=25_000_000,
        pipe_mails=10 if quick else 30,
    )


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import os

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def _compile_bytecode() -> None:
    """Write the package's ``.pyc`` files, as ``pip install`` does: an editable install
    under ``PYTHONDONTWRITEBYTECODE`` would otherwise compile every module in every process,
    which costs a piped ``ingest`` more than its mail does."""
    import mailtracker

    compileall.compile_dir(Path(mailtracker.__file__).parent, quiet=1, force=False)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    chosen = [name for name in args.only.split(",") if name]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        print(f"bench: unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
        return 2
    _compile_bytecode()
    workdir = Path(tempfile.mkdtemp(prefix="mailtracker-bench-"))
    settings = _settings(args, workdir)
    results: dict[str, Any] = {"machine": machine(), "settings": report.settings_json(settings)}
    began = time.perf_counter()
    try:
        for name in chosen:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            results[name] = SCENARIOS[name](settings)
    finally:
        if not args.keep:
            scenarios.clean(workdir)
    results["seconds"] = round(time.perf_counter() - began, 1)
    results["table"] = report.rows(results)
    print(report.table(results))
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
