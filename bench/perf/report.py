"""The bench's table: each figure next to what it is compared with and the issue's target.

Why rows as data: the same rows are printed, written to the JSON and pasted into
``docs/performance.md``, so the document cannot say something the run did not.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from scenarios import Settings

__all__ = ["rows", "settings_json", "table"]

Row = dict[str, str]


def settings_json(settings: Settings) -> dict[str, Any]:
    data = asdict(settings)
    data["workdir"] = str(settings.workdir)
    return data


def _row(
    measure: str,
    value: str,
    against: str = "",
    ratio: str = "",
    target: str = "",
    met: bool | None = None,
) -> Row:
    verdict = "" if met is None else ("yes" if met else "NO")
    return {
        "measure": measure,
        "value": value,
        "against": against,
        "ratio": ratio,
        "target": target,
        "met": verdict,
    }


def _ingest_rows(data: dict[str, Any]) -> list[Row]:
    out = []
    for conns in (1, 4):
        block = data[f"{conns}_connections"]
        ceiling = block["ceiling"]["mails_per_s"]
        for mode in _modes(block):
            value = block[mode]["mails_per_s"]
            ratio = value / ceiling if ceiling else 0.0
            target = conns == 4 and mode.startswith("sqlite")
            out.append(
                _row(
                    f"ingest {_label(mode)}, {conns} conn",
                    f"{value:.0f} mails/s",
                    f"ceiling {ceiling:.0f}/s",
                    f"{ratio:.3f}",
                    "≥ 0.5" if target else "",
                    (ratio >= 0.5) if target else None,
                )
            )
    lat = data["latency"]
    for mode in ("ceiling", *_modes(lat)):
        if mode in lat:
            f = lat[mode]
            out.append(
                _row(
                    f"latency {_label(mode)} at {lat['offered_per_s']:.0f}/s",
                    f"p50 {f['p50_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms",
                )
            )
    return out + _cpu_rows(data)


def _modes(block: dict[str, Any]) -> list[str]:
    """The ``serve`` targets of a block, in the order the bench started them."""
    return [mode for mode, f in block.items() if mode != "ceiling" and isinstance(f, dict)]


def _label(mode: str) -> str:
    """``sqlite_2_processes`` reads "sqlite, 2 processes" in the table."""
    base, _, processes = mode.partition("_")
    return f"{base}, {processes.replace('_', ' ')}" if processes else base


def _cpu_rows(data: dict[str, Any]) -> list[Row]:
    """Server CPU per mail over 4 connections, and the floor (``floor.py``): the best share
    of the ceiling a gateway could reach that spent only the floor on top of aiosmtpd."""
    block = data["4_connections"]
    if "server_cpu_ms_per_mail" not in block["ceiling"]:
        return []  # a JSON file from before CPU was measured
    costs = {mode: block[mode]["server_cpu_ms_per_mail"] for mode in block}
    null = costs["ceiling"]
    out = [
        _row(
            "server CPU per mail, 4 conn",
            ", ".join(f"{_label(mode)} {ms:.2f} ms" for mode, ms in costs.items()),
        )
    ]
    floor = data.get("floor")
    if floor and null:
        best = null / (null + floor["total_ms"])
        parts = f"parse {floor['parse_ms']:.2f} + store {floor['store_ms']:.2f}"
        out.append(
            _row(
                f"floor: stdlib parse, {floor['statements']} statements, 1 render",
                f"{floor['total_ms']:.2f} ms ({parts} + render {floor['render_ms']:.2f})",
                f"ceiling {null:.2f} ms/mail",
                f"{best:.3f}",
                "≥ 0.5",
                best >= 0.5,
            )
        )
    if floor and null and "spool_ms" in floor:
        out.append(_spool_row(null, floor["spool_ms"]))
    return out + _delivered_rows(data)


def _spool_row(null: float, spool: float) -> Row:
    """What rule 1 costs: the share of the ceiling a gateway could take in a burst if it
    answered 250 once the raw mail alone was committed to a spool, and ran the pipeline
    afterwards (not allowed by ARCHITECTURE.md; the team's decision, not the bench's)."""
    share = null / (null + spool)
    return _row(
        "spool alone, if rule 1 allowed it: 1 INSERT, commit (a burst, not sustained)",
        f"{spool:.2f} ms",
        f"ceiling {null:.2f} ms/mail",
        f"{share:.3f}",
    )


def _delivered_rows(data: dict[str, Any]) -> list[Row]:
    """What a mail costs the machine until its notifications are delivered (``serve`` and
    the smarthost), and the most this machine's cores would allow a gateway that cost
    only the floor and still had its notifications delivered, beside the bench's client
    (where measured): an upper bound, as it leaves out the delivery worker and PostgreSQL."""
    block = data["4_connections"]
    modes = [m for m in _modes(block) if "delivered_cpu_ms_per_mail" in block[m]]
    floor, cores = data.get("floor"), data.get("cores", 1)
    if not modes or not floor:
        return []  # a JSON file from before this was measured
    costs = ", ".join(f"{_label(m)} {block[m]['delivered_cpu_ms_per_mail']:.2f} ms" for m in modes)
    null = block["ceiling"]["server_cpu_ms_per_mail"]
    sink = block[modes[0]]["sink_cpu_ms_per_mail"]
    client = block["ceiling"].get("client_cpu_ms_per_mail", 0.0)
    rate = cores * 1000 / (null + floor["total_ms"] + sink + client)
    ceiling = block["ceiling"]["mails_per_s"]
    parts = f"{null:.2f} + {floor['total_ms']:.2f} + smarthost {sink:.2f}"
    if client:
        parts += f" + client {client:.2f}"
    return [
        _row("CPU per mail until delivered, 4 conn (serve and smarthost)", costs),
        _row(
            f"floor on {cores} cores, notifications delivered",
            f"{rate:.0f} mails/s at most ({parts} ms a mail)",
            f"ceiling {ceiling:.0f}/s",
            f"{rate / ceiling:.3f}",
            "≥ 0.5",
            rate / ceiling >= 0.5,
        ),
    ]


def _growth_rows(data: dict[str, Any]) -> list[Row]:
    sizes = sorted(int(k.split("-")[1]) for k in data if k.startswith("stored-"))
    empty = data[f"stored-{sizes[0]}"]
    out = []
    for size in sizes:
        f = data[f"stored-{size}"]
        rate = f["throughput"]["mails_per_s"]
        ratio = rate / empty["throughput"]["mails_per_s"]
        largest = size == sizes[-1] and size != sizes[0]
        p99 = f["latency"]["p99_ms"]
        out.append(
            _row(
                f"growth, {size:,} stored",
                f"{rate:.0f} mails/s, p99 {p99:.1f} ms",
                f"{sizes[0]:,} stored",
                f"{ratio:.2f}",
                "≥ 0.8" if largest else "",
                (ratio >= 0.8) if largest else None,
            )
        )
    return out


def _fanout_rows(data: dict[str, Any]) -> list[Row]:
    who = f"{data['nosy']:,} nosy + {data['subscribers']:,} subscribers"
    rendered = data["rendered_in_outbox_s"]
    delivered = data["delivered_s"]
    return [
        _row(f"fan-out rendered, {who}", f"{rendered:.2f} s", target="< 10 s", met=rendered < 10),
        _row(
            f"fan-out delivered to sink, {who}",
            f"{delivered:.2f} s" if delivered is not None else "not all delivered",
        ),
    ]


def _unless_accepted(reply: dict[str, int]) -> str:
    """A note when the big mail was not taken (a peak for a refusal measures nothing)."""
    codes = [code for code in reply if not code.startswith(("250", "exit 0"))]
    return f", but answered {', '.join(codes)}" if codes else ""


def _memory_rows(data: dict[str, Any]) -> list[Row]:
    out = []
    names = {
        "serve": "serve",
        "held": "serve, held for a moderator",
        "log": "serve, a quoted-printable log, not base64",
        "ingest": "ingest",
        "ceiling": "the null server",
    }
    for how, name in names.items():
        if how not in data:  # a JSON file from before this case was measured
            continue
        f = data[how]
        size = f.get("mail_bytes", data["mail_bytes"]) / 1e6
        target = how != "ceiling"
        out.append(
            _row(
                f"memory, {size:.0f} MB mail via {name}",
                f"peak {f['peak_rss_mb']:.0f} MB (from {f['rss_before_mb']:.0f} MB)"
                + _unless_accepted(f["reply"]),
                "mail size",
                f"{f['multiple_of_mail']:.2f}×",
                "≤ 3×" if target else "",
                (f["multiple_of_mail"] <= 3) if target else None,
            )
        )
    return out


def _pipe_rows(data: dict[str, Any]) -> list[Row]:
    out = []
    modes = (
        ("handed_over", "to the running gateway, --lmtp"),
        ("handed_over_reading_file", "to the running gateway, found in the file"),
        ("alone", "alone"),
    )
    for mode, label in modes:
        if mode not in data:  # a JSON file from before this mode was measured
            continue
        for parallel in (1, 2):
            f = data[mode][f"{parallel}_at_a_time"]
            target = mode == "handed_over" and parallel == 2
            out.append(
                _row(
                    f"pipe mode {label}, {parallel} at a time",
                    f"{f['mails_per_s']:.1f} mails/s",
                    f"{f['ms_per_mail']:.0f} ms/mail",
                    target="≥ 20/s" if target else "",
                    met=f["mails_per_s"] >= 20 if target else None,
                )
            )
    return out


_BUILDERS = {
    "ingest": _ingest_rows,
    "growth": _growth_rows,
    "fanout": _fanout_rows,
    "memory": _memory_rows,
    "pipe": _pipe_rows,
}


def rows(results: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for name, build in _BUILDERS.items():
        if name in results:
            out.extend(build(results[name]))
    return out


def table(results: dict[str, Any]) -> str:
    """A Markdown table (readable in a terminal, pasteable into the docs)."""
    head = ["measure", "value", "against", "ratio", "target", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in results["table"]:
        lines.append("| " + " | ".join(row[h] for h in head) + " |")
    m = results["machine"]
    lines.append(
        f"\n{m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; Python {m['python']}, "
        f"SQLite {m['sqlite']}; {results['seconds']:.0f} s"
    )
    return "\n".join(lines)
