"""Measure ``mailtracker.bounces`` against the sisimai bounce corpus in ``shared/corpus``.

Why a script: the rates in ``docs/bounces.md`` must be reproducible, and the oracle tests in
``tests/test_bounce_parse.py`` import this file so that the numbers they guard and the numbers
the document reports are computed the same way.

    python bench/bounce_oracle.py              # the table for mailtracker.bounces
    python bench/bounce_oracle.py --failures   # ... and every failing file, expected vs got
    python bench/bounce_oracle.py --flufl      # ... and flufl.bounce's detection, if installed

sisimai's ``expected.json`` has one row per bounced recipient (status, reply code, reason,
hard-bounce flag, ARF feedback type) but no addresses, so a file's rows are compared with our
reports as multisets: a status counts as agreeing when as many of our reports carry it as
rows expect it, whatever the order. Rows whose status sisimai made up itself (detail 900 and
above, e.g. ``5.0.911`` for "user unknown" when the report gives no code) are left out of the
status measure; they still count for permanent/temporary, by their class.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import importlib
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
sys.path.insert(0, str(ROOT))

from mailtracker.bounces import (  # noqa: E402  (the project root is put on the path above)
    BounceReport,
    feedback_type,
    is_auto_reply,
    is_bounce,
    parse_bounce,
)

KNOWN_ADDRESS = "nobody@example.invalid"  # an envelope sender that says nothing


@dataclass(frozen=True)
class Row:
    """One bounced recipient as sisimai's tests expect it."""

    status: str
    reply_code: str
    reason: str
    hard: bool
    feedback_type: str

    @property
    def sisimai_status(self) -> bool:
        """A status sisimai invented (x.0.9xx), not one the report states."""
        return bool(self.status) and int(self.status.rsplit(".", 1)[1]) >= 900


@dataclass
class Measure:
    name: str
    passed: int = 0
    total: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def percent(self) -> float:
        return 100.0 * self.passed / self.total if self.total else 0.0

    def add(self, name: str, passed: int, total: int, detail: str = "") -> None:
        self.passed += passed
        self.total += total
        if passed < total:
            self.failures.append(f"{name}: {detail}" if detail else name)


@dataclass(frozen=True)
class Case:
    """One sisimai file with what we made of it."""

    name: str
    raw: bytes
    rows: tuple[Row, ...]
    kind: str  # bounce, delivered, feedback, autoreply
    bounce: bool
    bounce_content_only: bool
    reports: tuple[BounceReport, ...]
    feedback: str | None
    auto_reply: bool
    own: frozenset[str]


def load_expected(corpus: Path = CORPUS) -> dict[str, tuple[Row, ...]]:
    data = json.loads((corpus / "sisimai" / "expected.json").read_text(encoding="utf-8"))
    return {name: tuple(_row(r) for r in rows) for name, rows in data["expected"].items()}


def _row(r: dict[str, Any]) -> Row:
    return Row(r["status"], r["replycode"], r["reason"], r["hardbounce"], r.get("feedbacktype", ""))


def _kind(rows: tuple[Row, ...]) -> str:
    reasons = {row.reason for row in rows}
    for kind, reason in (("feedback", "feedback"), ("autoreply", "vacation")):
        if reason in reasons:
            return kind
    return "delivered" if reasons == {"delivered"} else "bounce"


def envelope_sender(raw: bytes) -> str:
    """What ``mailtracker ingest`` uses without ``--sender``: Return-Path, else From."""
    headers = email.message_from_bytes(raw[:65536], policy=email.policy.compat32)
    value = headers.get("Return-Path") or headers.get("From") or KNOWN_ADDRESS
    return str(value).strip().strip("<>")


def _own(raw: bytes) -> frozenset[str]:
    """The bounce's author (the reporting MTA): a recipient found there is a wrong one. Its
    To may well be the failed recipient too (mail sent to oneself, anonymised samples)."""
    headers = email.message_from_bytes(raw[:65536], policy=email.policy.compat32)
    pairs = email.utils.getaddresses([str(headers.get("from", ""))])
    return frozenset(address.lower() for _, address in pairs if "@" in address)


def run(name: str, raw: bytes, rows: tuple[Row, ...]) -> Case:
    return Case(
        name,
        raw,
        rows,
        _kind(rows),
        is_bounce(raw, envelope_sender(raw)),
        is_bounce(raw, KNOWN_ADDRESS),
        tuple(parse_bounce(raw)),
        feedback_type(raw),
        is_auto_reply(raw),
        _own(raw),
    )


def load_cases(corpus: Path = CORPUS) -> list[Case]:
    folder = corpus / "sisimai" / "maildir" / "bsd"
    return [run(n, (folder / n).read_bytes(), rows) for n, rows in load_expected(corpus).items()]


def _multiset(expected: Iterable[object], got: Iterable[object]) -> int:
    return sum((Counter(expected) & Counter(got)).values())


def measure(cases: list[Case], corpus: Path = CORPUS) -> dict[str, Measure]:
    """Every measure of the table, by key."""
    m = {key: Measure(title) for key, title in TITLES.items()}
    for case in cases:
        _measure_case(m, case)
    _measure_others(m, corpus, {case.name: case for case in cases})
    return m


TITLES = {
    "detected": "detected as a bounce (Return-Path or From as envelope sender)",
    "detected_content": "detected as a bounce by content alone (non-null envelope sender)",
    "recipient": "failed recipients found (per expected row)",
    "count": "files with exactly the expected number of reports (none for success DSNs)",
    "status": "status agrees (rows with a status the report states)",
    "permanent": "permanent/temporary agrees with the status class",
    "hard": "hard bounce agrees with sisimai's hard-bounce flag",
    "reply_code": "SMTP reply code agrees (rows with one)",
    "feedback": "ARF and other complaints: feedback type agrees",
    "auto_reply": "RFC 3834 auto-replies: is_auto_reply and not is_bounce",
    "not_bounce": "complaints and auto-replies not taken for bounces",
    "ordinary": "maildir/not: ordinary mail not taken for a bounce",
    "line_endings": "CRLF and CR-only variants give the LF original's result",
}


def _measure_case(m: dict[str, Measure], case: Case) -> None:
    n = case.name
    if case.kind in ("bounce", "delivered"):
        m["detected"].add(n, case.bounce, 1)
        m["detected_content"].add(n, case.bounce_content_only, 1)
    else:
        m["not_bounce"].add(n, not case.bounce, 1, case.kind)
    if case.kind == "feedback":
        got = case.feedback
        m["feedback"].add(n, got == case.rows[0].feedback_type, 1, f"{got!r}")
    if case.kind == "autoreply":
        m["auto_reply"].add(n, case.auto_reply and not case.bounce, 1)
    if case.kind == "bounce":
        _measure_reports(m, case)
    if case.kind == "delivered":
        m["count"].add(n, not case.reports, 1, f"success DSN, got {case.reports}")


def _measure_reports(m: dict[str, Measure], case: Case) -> None:
    rows, got, n = case.rows, case.reports, case.name
    detail = f"expected {[(r.status, r.reply_code, r.reason, r.hard) for r in rows]} got {got}"
    named = [r for r in got if "@" in r.recipient and r.recipient not in case.own]
    m["recipient"].add(n, min(len(rows), len(named)), len(rows), detail)
    m["count"].add(n, len(got) == len(rows), 1, detail)
    stated = [r.status for r in rows if r.status and not r.sisimai_status]
    m["status"].add(n, _multiset(stated, [r.status for r in got]), len(stated), detail)
    classes = [r.status.startswith("5") for r in rows]
    m["permanent"].add(n, _multiset(classes, [r.permanent for r in got]), len(rows), detail)
    m["hard"].add(n, _multiset([r.hard for r in rows], [r.hard for r in got]), len(rows), detail)
    codes = [r.reply_code for r in rows if r.reply_code]
    m["reply_code"].add(n, _multiset(codes, [r.reply_code for r in got]), len(codes), detail)


def _measure_others(m: dict[str, Measure], corpus: Path, cases: dict[str, Case]) -> None:
    maildir = corpus / "sisimai" / "maildir"
    for path in sorted((maildir / "not").glob("*.eml")):
        raw = path.read_bytes()
        m["ordinary"].add(path.name, not is_bounce(raw, envelope_sender(raw)), 1)
    for variant in ("dos", "mac"):
        for path in sorted((maildir / variant).glob("*.eml")):
            # 8 samples have no LF original in bsd/: the CRLF one is then the reference, and
            # both must at least be taken for bounces
            reference = cases.get(path.name) or run(
                path.name, (maildir / "dos" / path.name).read_bytes(), ()
            )
            got = run(path.name, path.read_bytes(), ())
            same = _verdicts(got) == _verdicts(reference) and (path.name in cases or got.bounce)
            m["line_endings"].add(f"{variant}/{path.name}", same, 1)


def _verdicts(case: Case) -> tuple[object, ...]:
    return case.bounce, case.bounce_content_only, case.reports, case.feedback, case.auto_reply


def table(measures: dict[str, Measure]) -> str:
    lines = ["| measure | passed | total | rate |", "|---|---:|---:|---:|"]
    for mm in measures.values():
        lines.append(f"| {mm.name} | {mm.passed} | {mm.total} | {mm.percent:.1f}% |")
    return "\n".join(lines)


def flufl_detection(cases: list[Case]) -> str:
    """flufl.bounce's verdict on the same bounces (any address, temporary or permanent),
    for the library decision in docs/bounces.md; it gives no status or diagnostic."""
    try:  # imported by name: an optional, untyped package
        all_failures = importlib.import_module("flufl.bounce").all_failures
    except ImportError:
        return "flufl.bounce is not installed (pip install flufl.bounce==6.0.0 to compare)"
    bounces = [case for case in cases if case.kind == "bounce"]
    found = [_flufl_addresses(all_failures, case.raw) for case in bounces]
    files = sum(bool(addresses) for addresses in found)
    rows = sum(min(len(c.rows), len(a)) for c, a in zip(bounces, found, strict=True))
    junk = sum(any("@" not in a or '"' in a for a in addresses) for addresses in found)
    total = sum(len(case.rows) for case in bounces)
    return (
        f"flufl.bounce: an address in {files} of {len(bounces)} bounces, "
        f"{rows} of {total} failed recipients, {junk} files with a non-address among them"
    )


def _flufl_addresses(all_failures: Callable[[Any], Any], raw: bytes) -> set[str]:
    try:
        temporary, permanent = all_failures(email.message_from_bytes(raw))
    except Exception:
        return set()
    return {a.decode("latin-1") if isinstance(a, bytes) else str(a) for a in temporary | permanent}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--failures", action="store_true", help="list each failing file")
    parser.add_argument("--flufl", action="store_true", help="also measure flufl.bounce")
    args = parser.parse_args(argv)
    if not (CORPUS / "sisimai").is_dir():
        print(f"no corpus at {CORPUS}", file=sys.stderr)
        return 1
    cases = load_cases()
    measures = measure(cases)
    print(table(measures))
    if args.flufl:
        print("\n" + flufl_detection(cases))
    if args.failures:
        for mm in measures.values():
            print(f"\n## {mm.name}: {len(mm.failures)} failing\n" + "\n".join(mm.failures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
