"""The measurements: ingest against the ceiling, growth, fan-out, memory, pipe mode.

Why interleaved: on a shared, noisy machine two numbers taken minutes apart can differ by
more than the effect measured. Every server under comparison is started first, then the
rounds alternate between them, and each figure is the median of its rounds, so a burst of
noise hits all of them alike and their ratios hold.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import client
import mix
import seed
import servers
from client import Result, Wire

__all__ = ["Settings", "fanout", "growth", "ingest", "memory", "pipe"]

Figures = dict[str, Any]


@dataclass(frozen=True)
class Settings:
    """How much of everything to run (``--quick`` shrinks it)."""

    workdir: Path
    rounds: int
    mails: int
    rate: float
    latency_mails: int
    growth: tuple[int, ...]
    postgres: bool
    fanout_nosy: int
    fanout_subscribers: int
    mail_size: int
    pipe_mails: int


def _summary(results: list[Result]) -> Figures:
    """Median throughput over rounds; latency over every mail of every round."""
    latencies = [x for r in results for x in r.latencies]
    merged = Result(latencies=latencies)
    refused = sum(r.refused for r in results)
    return {
        "mails_per_s": round(statistics.median(r.rate for r in results), 1),
        "server_cpu_ms_per_mail": _cpu_per_mail(results, "server_cpu_s"),
        "delivered_cpu_ms_per_mail": _cpu_per_mail(results, "delivered_cpu_s"),
        "sink_cpu_ms_per_mail": _cpu_per_mail(results, "sink_cpu_s"),
        "client_cpu_ms_per_mail": _cpu_per_mail(results, "client_cpu_s"),
        "rounds": [round(r.rate, 1) for r in results],
        "p50_ms": round(merged.percentile(0.5) * 1000, 2),
        "p99_ms": round(merged.percentile(0.99) * 1000, 2),
        "refused": refused,
    }


def _cpu_per_mail(results: list[Result], field: str) -> float:
    """The median over rounds of a CPU figure, in ms per mail answered."""
    per_mail = (1000 * getattr(r, field) / max(r.sent, 1) for r in results)
    return round(float(statistics.median(per_mail)), 2)


def _prepared_db(name: str, workdir: Path, url: str) -> Path:
    """Schema, developers registered: the state an admin leaves a new tracker in."""
    folder = workdir / name
    folder.mkdir(parents=True, exist_ok=True)
    store = seed.open_store(servers.write_config(folder, url, 1))
    seed.register(store, mix.developers(), "developer")
    store.close()
    return folder


def _warm(server: servers.Server) -> None:
    """Open the threads that replies answer, then a round to fill caches and pools."""
    result = client.run_closed(server.port, client.prepare(mix.warmup_mails()), 1)
    if result.refused:
        raise RuntimeError(f"{server.name}: warm-up refused {result.refused} mails: {result.codes}")
    client.run_closed(server.port, client.prepare(mix.measured_mails("warm", 100)), 4)
    servers.drain(server)


# The second serve of each database: a gateway process per core (up to 8).
PROCESSES = min(8, max(2, os.cpu_count() or 1))


@contextmanager
def _targets(
    settings: Settings, with_null: bool = True
) -> Iterator[tuple[dict[str, servers.Server], servers.Server]]:
    """The null server and ``serve`` on SQLite (and PostgreSQL), all running at once, and
    the null smarthost they send their notifications to."""
    started: dict[str, servers.Server] = {}
    pg_name = f"mailtracker_bench_{os.getpid()}"
    sink = servers.null_server(settings.workdir, counting=True)
    smarthost = f"127.0.0.1:{sink.port}"
    try:
        if with_null:
            started["ceiling"] = servers.null_server(settings.workdir)
        for processes in (1, PROCESSES):
            name = "sqlite" + _processes_suffix(processes)
            url = f"sqlite:///{settings.workdir / name / 'tracker.db'}"
            folder = _prepared_db(name, settings.workdir, url)
            started[name] = servers.serve(name, folder, url, smarthost, processes=processes)
        for processes in (1, PROCESSES) if settings.postgres else ():
            name = "postgresql" + _processes_suffix(processes)
            pg_url = servers.postgres_database(pg_name + _processes_suffix(processes))
            if pg_url:
                folder = _prepared_db(name, settings.workdir, pg_url)
                started[name] = servers.serve(name, folder, pg_url, smarthost, processes=processes)
        for name, server in started.items():
            if name != "ceiling":
                _warm(server)
        yield started, sink
    finally:
        for server in [*started.values(), sink]:
            server.stop()
        for processes in (1, PROCESSES):
            if "postgresql" + _processes_suffix(processes) in started:
                servers.drop_postgres_database(pg_name + _processes_suffix(processes))


def _processes_suffix(processes: int) -> str:
    """How a target with several gateway processes is named (``[smtp] processes``)."""
    return "" if processes == 1 else f"_{processes}_processes"


Run = Callable[[int, list[Wire]], Result]


def _rounds(
    targets: dict[str, servers.Server],
    settings: Settings,
    run: Run,
    tag: str,
    old: list[str] | None = None,
    count: int = 0,
    sink: servers.Server | None = None,
) -> dict[str, list[Result]]:
    """``settings.rounds`` rounds, each target once per round, the same mails to each;
    with ``sink`` (the smarthost), also the CPU until the outbox is delivered."""
    results: dict[str, list[Result]] = {name: [] for name in targets}
    for r in range(settings.rounds):
        mails = mix.measured_mails(f"{tag}-r{r}", count or settings.mails, old_ids=old)
        wires = client.prepare(mails)
        for name, server in targets.items():
            cpu = server.cpu_seconds()
            sink_cpu = sink.cpu_seconds() if sink else 0.0
            client_cpu = time.process_time()
            result = run(server.port, wires)
            result.client_cpu_s = time.process_time() - client_cpu
            result.server_cpu_s = server.cpu_seconds() - cpu
            results[name].append(result)
            if server.url:
                servers.drain(server)
            if sink and server.url:
                result.sink_cpu_s = sink.cpu_seconds() - sink_cpu
                result.delivered_cpu_s = server.cpu_seconds() - cpu + result.sink_cpu_s
    return results


def _closed(connections: int) -> Run:
    return lambda port, wires: client.run_closed(port, wires, connections)


def ingest(settings: Settings) -> Figures:
    """Throughput over 1 and 4 connections, latency at a fixed offered rate; each mode
    as a share of the ceiling measured in the same rounds."""
    figures: Figures = {}
    with _targets(settings) as (targets, sink):
        for conns in (1, 4):
            runs = _rounds(targets, settings, _closed(conns), f"c{conns}", sink=sink)
            figures[f"{conns}_connections"] = {name: _summary(rs) for name, rs in runs.items()}
        rate = settings.rate
        runs = _rounds(
            targets,
            settings,
            lambda p, w: client.run_open(p, w, rate, 8),
            "lat",
            count=settings.latency_mails,
        )
        figures["latency"] = {name: _summary(rs) for name, rs in runs.items()}
        figures["latency"]["offered_per_s"] = rate
    figures["floor"] = _floor(settings)
    figures["cores"] = os.cpu_count() or 1
    return figures


def _floor(settings: Settings) -> Figures:
    """``floor.py`` in its own process: the least CPU a mail costs with these libraries."""
    argv = [servers.PYTHON, str(servers.HERE / "floor.py"), "--json"]
    done = subprocess.run([*argv, "--mails", str(settings.mails)], capture_output=True, check=True)
    figures: Figures = json.loads(done.stdout)
    return figures


def growth(settings: Settings) -> Figures:
    """Throughput (4 connections) and p99 at the fixed rate with 0 … N mails stored."""
    figures: Figures = {"seed_seconds": {}}
    started: dict[str, servers.Server] = {}
    old = seed.old_ids(max(settings.growth))
    sink = servers.null_server(settings.workdir, counting=True)
    try:
        for size in settings.growth:
            name = f"stored-{size}"
            url = f"sqlite:///{settings.workdir / name / 'tracker.db'}"
            folder = _prepared_db(name, settings.workdir, url)
            began = time.perf_counter()
            store = seed.open_store(folder / "mailtracker.toml")
            seed.seed_growth(store, size)
            store.close()
            figures["seed_seconds"][str(size)] = round(time.perf_counter() - began, 1)
            started[name] = servers.serve(name, folder, url, f"127.0.0.1:{sink.port}")
            _warm(started[name])
        thru = _rounds(started, settings, lambda p, w: client.run_closed(p, w, 4), "g4", old)
        rate = settings.rate
        lat = _rounds(
            started,
            settings,
            lambda p, w: client.run_open(p, w, rate, 8),
            "glat",
            old,
            count=settings.latency_mails,
        )
    finally:
        for server in [*started.values(), sink]:
            server.stop()
    for name in started:
        figures[name] = {"throughput": _summary(thru[name]), "latency": _summary(lat[name])}
    return figures


def fanout(settings: Settings) -> Figures:
    """One comment to an issue with thousands of followers: time to 250 (every mail
    rendered and committed to the outbox, in the mail's transaction), then until the last
    one reached the smarthost, a null SMTP sink that counts."""
    workdir = settings.workdir / "fanout"
    workdir.mkdir(parents=True, exist_ok=True)
    sink = servers.null_server(workdir, counting=True)
    try:
        url = f"sqlite:///{workdir / 'tracker.db'}"
        folder = _prepared_db("db", workdir, url)
        server = servers.serve("fanout", folder, url, smarthost=f"127.0.0.1:{sink.port}")
        try:
            return _fanout_run(settings, server, sink, folder)
        finally:
            server.stop()
    finally:
        sink.stop()


def _fanout_run(
    settings: Settings, server: servers.Server, sink: servers.Server, folder: Path
) -> Figures:
    first = client.prepare(mix.warmup_mails()[:1])
    client.run_closed(server.port, first, 1)
    store = seed.open_store(folder / "mailtracker.toml")
    seed.populate_fanout(
        store, f"warm-0@{mix.DOMAIN}", settings.fanout_nosy, settings.fanout_subscribers
    )
    store.close()
    time.sleep(1.5)  # let the worker deliver the opening mail's notification first
    before = _sink_count(sink.port)
    comment = mix.plain_mail("fanout", extra=[f"In-Reply-To: <warm-0@{mix.DOMAIN}>"])
    began = time.perf_counter()
    reply = client.run_closed(server.port, client.prepare([comment]), 1)
    accepted = time.perf_counter() - began
    expected = settings.fanout_nosy + settings.fanout_subscribers
    delivered = _wait_for_sink(sink.port, before + expected, began)
    return {
        "recipients": expected,
        "nosy": settings.fanout_nosy,
        "subscribers": settings.fanout_subscribers,
        "reply": dict(reply.codes),
        "rendered_in_outbox_s": round(accepted, 2),
        "delivered_s": round(delivered, 2) if delivered else None,
    }


def _sink_count(port: int) -> int:
    import asyncio

    async def ask() -> int:
        conn = await client.Connection.open(port)
        answer = await conn.command(b"NOOP\r\n")
        await conn.close()
        return int(answer.split()[1])

    return asyncio.run(ask())


def _wait_for_sink(port: int, target: int, began: float, limit: float = 600.0) -> float | None:
    while time.perf_counter() - began < limit:
        if _sink_count(port) >= target:
            return time.perf_counter() - began
        time.sleep(0.05)
    return None


def memory(settings: Settings) -> Figures:
    """Peak memory for one big mail, over SMTP (``serve``; stored, and held for a moderator
    as mail from an unknown sender is) and through the pipe (``ingest``), as a multiple of
    the mail's size: the growth of the process's peak RSS (VmHWM, or ru_maxrss for the
    pipe) over what it held before the mail."""
    workdir = settings.workdir / "memory"
    big = mix.big_mail(settings.mail_size)
    url = f"sqlite:///{workdir / 'smtp' / 'tracker.db'}"
    folder = _prepared_db("smtp", workdir, url)
    smtp = _server_memory(servers.serve("memory", folder, url), big, "small-1")
    url = f"sqlite:///{workdir / 'held' / 'tracker.db'}"
    folder = _prepared_db("held", workdir, url)
    server = servers.serve("memory-held", folder, url, unknown_senders="moderate")
    held = _server_memory(server, big, "small-3")
    log = mix.big_log_mail(settings.mail_size)
    url = f"sqlite:///{workdir / 'log' / 'tracker.db'}"
    folder = _prepared_db("log", workdir, url)
    text = _server_memory(servers.serve("memory-log", folder, url), log, "small-4")
    return {
        "mail_bytes": len(big.data),
        "serve": smtp,
        "held": held,
        "log": {**text, "mail_bytes": len(log.data)},
        "ingest": _pipe_memory(workdir, big),
        "ceiling": _null_memory(workdir, big),
    }


def _null_memory(workdir: Path, big: mix.Mail) -> Figures:
    """The same mail into the null server: what aiosmtpd alone holds while reading DATA."""
    return _server_memory(servers.null_server(workdir), big, "small-0")


def _server_memory(server: servers.Server, big: mix.Mail, small: str) -> Figures:
    """A small mail (so the process holds what any mail needs), then ``big``: the growth of
    the peak RSS over the RSS after the small one. Stops the server."""
    try:
        client.run_closed(server.port, client.prepare([mix.plain_mail(small)]), 1)
        before = server.rss_kb("VmRSS")
        reply = client.run_closed(server.port, client.prepare([big]), 1)
        peak = server.rss_kb("VmHWM")
    finally:
        server.stop()
    return _memory_figures(len(big.data), before, peak, dict(reply.codes))


def _memory_figures(size: int, before_kb: int, peak_kb: int, codes: dict[str, int]) -> Figures:
    return {
        "reply": codes,
        "rss_before_mb": round(before_kb / 1024, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "multiple_of_mail": round((peak_kb - before_kb) * 1024 / size, 2),
    }


def _pipe_memory(workdir: Path, big: mix.Mail) -> Figures:
    url = f"sqlite:///{workdir / 'pipe' / 'tracker.db'}"
    folder = _prepared_db("pipe", workdir, url)
    config = folder / "mailtracker.toml"
    small_kb, _ = _ingest_rss(config, mix.plain_mail("small-2"))
    peak_kb, code = _ingest_rss(config, big)
    return _memory_figures(len(big.data), small_kb, peak_kb, {f"exit {code}": 1})


# The child of a large process starts with a copy of that process's pages, which ru_maxrss
# would count: a small launcher starts ``ingest`` and reports its children's peak.
_LAUNCHER = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:], stdin=sys.stdin, stderr=subprocess.DEVNULL).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)"
)


def _ingest_rss(config: Path, mail: mix.Mail) -> tuple[int, int]:
    """Peak RSS (KiB) and exit code of one ``mailtracker ingest`` of ``mail``."""
    argv = [servers.PYTHON, "-c", _LAUNCHER, *_ingest_argv(config, mail)]
    done = subprocess.run(argv, input=mail.data, capture_output=True, check=True)
    peak, code = done.stdout.split()
    return int(peak), int(code)


def _ingest_argv(
    config: Path, mail: mix.Mail, command: str = servers.MAILTRACKER, lmtp: str = ""
) -> list[str]:
    told = [f"--lmtp={lmtp}"] if lmtp else []
    envelope = ["--recipient", mail.rcpt, "--sender", mail.sender]
    return [command, "ingest", "-c", str(config), *told, *envelope]


def pipe(settings: Settings) -> Figures:
    """``mailtracker ingest`` once per mail, as Postfix's pipe(8) runs it: one at a time,
    and two at a time (an MTA delivers in parallel; the machine has two cores). Twice:
    alone (no gateway running: each process runs the pipeline), and with ``serve``
    running with an LMTP socket in the same configuration, to which ``ingest`` hands over,
    told its address (``--lmtp``, as docs/deployment.md advises) and, for comparison,
    reading it from the file. ``ingest`` runs as a regular install has it
    (``servers.plain_install``)."""
    command = servers.plain_install(settings.workdir)
    url = f"sqlite:///{settings.workdir / 'pipe' / 'tracker.db'}"
    folder = _prepared_db("pipe", settings.workdir, url)
    config = folder / "mailtracker.toml"
    _warm_in_process(config)
    figures: Figures = {"alone": _pipe_rounds(config, settings.pipe_mails, "alone", command)}
    socket = folder / "lmtp.sock"
    server = servers.serve("pipe-gateway", folder, url, lmtp=str(socket))
    try:
        figures["handed_over"] = _pipe_rounds(
            config, settings.pipe_mails, "handed", command, str(socket)
        )
        figures["handed_over_reading_file"] = _pipe_rounds(
            config, settings.pipe_mails, "file", command
        )
    finally:
        server.stop()
    return figures


def _pipe_rounds(config: Path, count: int, name: str, command: str, lmtp: str = "") -> Figures:
    figures: Figures = {}
    for parallel in (1, 2):
        mails = mix.measured_mails(f"pipe-{name}-{parallel}", count)
        began = time.perf_counter()
        codes = _ingest_all(config, mails, parallel, command, lmtp)
        seconds = time.perf_counter() - began
        figures[f"{parallel}_at_a_time"] = {
            "mails_per_s": round(len(mails) / seconds, 2),
            "ms_per_mail": round(1000 * seconds / len(mails), 1),
            "exit_codes": codes,
        }
    return figures


def _warm_in_process(config: Path) -> None:
    from mailtracker.config import load_config
    from mailtracker.pipeline import process
    from mailtracker.values import Envelope

    cfg = load_config(str(config))
    store = seed.open_store(config)
    for mail in mix.warmup_mails():
        process(store, cfg, mail.data, Envelope(mail.sender, (mail.rcpt,)))
    store.close()


def _ingest_all(
    config: Path, mails: list[mix.Mail], parallel: int, command: str, lmtp: str
) -> dict[str, int]:
    codes: dict[str, int] = {}
    pending = list(mails)
    while pending:
        batch, pending = pending[:parallel], pending[parallel:]
        procs = []
        for mail in batch:
            proc = subprocess.Popen(
                _ingest_argv(config, mail, command, lmtp),
                stdin=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            procs.append((proc, mail))
        for proc, mail in procs:
            proc.communicate(mail.data)
            codes[str(proc.returncode)] = codes.get(str(proc.returncode), 0) + 1
    return codes


def clean(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
