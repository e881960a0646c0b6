"""Measure ``mailtracker.quotes`` against the reply-stripping oracles in ``shared/corpus``.

Why a script: the pass rates in ``docs/quotes.md`` must be reproducible, and the oracle tests in
``tests/test_quotes.py`` import this file so that the numbers they guard and the numbers the
document reports are computed the same way.

    python bench/quotes_oracle.py               # the table for mailtracker.quotes
    python bench/quotes_oracle.py --failures    # ... and every failing case, expected vs got
    python bench/quotes_oracle.py --candidates  # ... and each reply-parser library importable
    python bench/quotes_oracle.py --strict      # compare blank lines and indentation too
    python bench/quotes_oracle.py --html        # talon's HTML replies via mailtracker.htmltext

Each oracle strips different things, so each is compared with the matching stage of ours:
email_reply_parser (GitHub's Ruby original, Zapier's Python port) hides signatures, so its
``parse_reply`` output is compared with :func:`visible_text`; talon and mail-parser-reply keep
signatures in their reply, so theirs is compared with :func:`strip_quotes`. Texts are compared
as their sequence of non-blank lines, each stripped of surrounding whitespace (the oracles
disagree among themselves on indentation, trailing spaces and blank lines between fragments);
``--strict`` keeps indentation and compares runs of blank lines (collapsed to one) too.
"""

from __future__ import annotations

import argparse
import difflib
import email
import email.policy
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
SETS = ("talon", "email_reply_parser-github", "email-reply-parser-zapier", "mail-parser-reply")

Stripper = Callable[[str], str]


@dataclass(frozen=True)
class Case:
    """One message: its body, what the oracle expects, and which stage of ours it measures."""

    set: str
    name: str
    text: str
    expected: str
    stage: str  # "visible" (quotes and signatures removed) or "quotes" (signatures kept)
    check: str = "equal"  # "nonempty_without_from" (talon's share-block), "no_whitespace"


@dataclass(frozen=True)
class Score:
    set: str
    passed: int
    total: int
    failures: tuple[tuple[Case, str], ...]

    @property
    def percent(self) -> float:
        return 100.0 * self.passed / self.total if self.total else 0.0


def normalise(text: str) -> list[str]:
    """The non-blank lines of ``text``, each stripped: what the comparison looks at."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [line.strip() for line in lines if line.strip()]


def normalise_strict(text: str) -> list[str]:
    """The lines of ``text`` right-stripped, blank runs collapsed to one, outer blanks dropped."""
    lines: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line.strip() or (lines and lines[-1]):
            lines.append(line.rstrip())
    while lines and not lines[-1]:
        lines.pop()
    return lines


def passes(case: Case, got: str, strict: bool = False) -> bool:
    if case.check == "nonempty_without_from":
        return bool(got.strip()) and "From" not in got
    if case.check == "no_whitespace":
        return "".join(got.split()) == "".join(case.expected.split())
    norm = normalise_strict if strict else normalise
    return norm(got) == norm(case.expected)


def load_cases(corpus: Path = CORPUS) -> dict[str, list[Case]]:
    """Every oracle case of the four reply-stripping sets, by set."""
    return {
        "talon": [*_talon_standard(corpus / "talon"), *_talon_inline(corpus / "talon")],
        "email_reply_parser-github": list(_parse_reply_set(corpus, SETS[1])),
        "email-reply-parser-zapier": list(_parse_reply_set(corpus, SETS[2])),
        "mail-parser-reply": list(_mail_parser_reply(corpus / SETS[3])),
    }


def _expected(folder: Path) -> dict[str, object]:
    data = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _first_plain_part(path: Path) -> str:
    """The decoded first text/plain part of an .eml, as talon's test feeds it."""
    with path.open("rb") as handle:
        message = email.message_from_binary_file(handle, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    part = message.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage)
    content = part.get_content()
    assert isinstance(content, str)
    return content


def _talon_standard(folder: Path) -> Iterator[Case]:
    data = _expected(folder)
    standard = data["standard_replies"]
    assert isinstance(standard, dict)
    for name, spec in sorted(standard.items()):
        if not name.startswith("_"):
            text = _first_plain_part(folder / name)
            yield Case("talon", name, text, spec["expected_reply"], "quotes")
    # Upstream feeds the raw file; our input is a decoded body, so we feed its plain part.
    share = "reply-quotations-share-block.eml"
    text = _first_plain_part(folder / share)
    yield Case("talon", share, text, "", "quotes", "nonempty_without_from")


def _talon_inline(folder: Path) -> Iterator[Case]:
    inline = _expected(folder)["inline_plain_text_cases"]
    assert isinstance(inline, dict)
    seen: dict[str, int] = {}
    for spec in inline["cases"]:
        seen[spec["test"]] = seen.get(spec["test"], 0) + 1
        name = f"{spec['test']}#{seen[spec['test']]}"
        yield Case("talon", name, spec["input"], spec["expected_reply"], "quotes")


def html_cases(corpus: Path = CORPUS) -> list[Case]:
    """talon's HTML replies, as the gateway sees them: converted by mailtracker.htmltext.

    Informational only (the input of mailtracker.quotes is plain text); the oracle compares
    with all whitespace removed.
    """
    from mailtracker.htmltext import html_to_text

    folder = corpus / "talon"
    replies = _expected(folder)["html_replies"]
    assert isinstance(replies, dict)
    return [
        Case(
            "talon-html",
            name,
            html_to_text((folder / name).read_bytes().decode("utf-8", "replace")),
            spec["expected_reply_text_ignoring_whitespace"],
            "quotes",
            "no_whitespace",
        )
        for name, spec in sorted(replies.items())
        if not name.startswith("_")
    ]


def _parse_reply_set(corpus: Path, set_name: str) -> Iterator[Case]:
    folder = corpus / set_name
    computed = _expected(folder)["computed_parse_reply"]
    assert isinstance(computed, dict)
    for name, expected in sorted(computed.items()):
        if not name.startswith("_"):
            text = (folder / "emails" / name).read_text(encoding="utf-8")
            yield Case(set_name, name, text, expected, "visible")


def _mail_parser_reply(folder: Path) -> Iterator[Case]:
    computed = _expected(folder)["computed"]
    assert isinstance(computed, dict)
    for name, spec in sorted(computed.items()):
        if not name.startswith("_"):
            text = (folder / "emails" / name).read_text(encoding="utf-8")
            yield Case(folder.name, name, text, spec["latest_reply"], "quotes")


def score(cases: list[Case], stages: dict[str, Stripper], strict: bool = False) -> Score:
    """Run the stripper of each case's stage over the set's cases."""
    failures = []
    for case in cases:
        got = stages[case.stage](case.text)
        if not passes(case, got, strict):
            failures.append((case, got))
    passed = len(cases) - len(failures)
    return Score(cases[0].set if cases else "", passed, len(cases), tuple(failures))


def ours() -> dict[str, Stripper]:
    from mailtracker.quotes import strip_quotes, visible_text

    return {"visible": visible_text, "quotes": strip_quotes}


def candidates() -> dict[str, dict[str, Stripper]]:
    """The libraries evaluated against ours, those importable here (see docs/quotes.md)."""
    found: dict[str, dict[str, Stripper]] = {}
    for name, factory in _CANDIDATES.items():
        try:
            found[name] = factory()
        except ImportError:
            print(f"({name}: not installed, skipped)", file=sys.stderr)
    return found


def _email_reply_parser() -> dict[str, Stripper]:
    from email_reply_parser import EmailReplyParser  # type: ignore[import-not-found]

    def parse(text: str) -> str:
        return str(EmailReplyParser.parse_reply(text))

    return {"visible": parse, "quotes": parse}


def _mail_parser_reply_lib() -> dict[str, Stripper]:
    from mailparser_reply import EmailReplyParser  # type: ignore[import-not-found]
    from mailparser_reply.constants import MAIL_LANGUAGES  # type: ignore[import-not-found]

    parser = EmailReplyParser(languages=sorted(MAIL_LANGUAGES))

    def latest(text: str) -> str:
        return str(parser.read(text).latest_reply or "")

    def body(text: str) -> str:
        replies = parser.read(text).replies
        return str(replies[0].body) if replies else ""

    return {"visible": body, "quotes": latest}


def _talon() -> dict[str, Stripper]:
    from talon import quotations  # type: ignore[import-not-found]
    from talon.signature.bruteforce import extract_signature  # type: ignore[import-not-found]

    def reply(text: str) -> str:
        return str(quotations.extract_from_plain(text))

    def visible(text: str) -> str:
        return str(extract_signature(reply(text))[0])

    return {"visible": visible, "quotes": reply}


def _quotequail() -> dict[str, Stripper]:
    import quotequail  # type: ignore[import-not-found]

    def reply(text: str) -> str:
        # unwrap() splits off the quote and its header; quote() would keep "On … wrote:".
        parts = quotequail.unwrap(text)
        if not parts or parts.get("type") != "reply":
            return "\n".join(part for shown, part in quotequail.quote(text) if shown)
        return "\n\n".join(parts.get(k, "") for k in ("text_top", "text_bottom")).strip()

    return {"visible": reply, "quotes": reply}


def _email_reply_extractor() -> dict[str, Stripper]:
    from email_reply_extractor import extract_new_text  # type: ignore[import-not-found]

    def reply(text: str) -> str:
        return str(extract_new_text(text).text)

    return {"visible": reply, "quotes": reply}


_CANDIDATES: dict[str, Callable[[], dict[str, Stripper]]] = {
    "email-reply-parser 0.5.12": _email_reply_parser,
    "mail-parser-reply": _mail_parser_reply_lib,
    "talon": _talon,
    "quotequail": _quotequail,
    "email-reply-extractor": _email_reply_extractor,
}


def table(scores: dict[str, list[Score]]) -> str:
    """A Markdown table: one row per implementation, one column per oracle set."""
    head = "| implementation | " + " | ".join(SETS) + " | all |"
    rule = "|---|" + "---|" * (len(SETS) + 1)
    rows = [head, rule]
    for name, per_set in scores.items():
        cells = [f"{s.passed}/{s.total} ({s.percent:.1f}%)" for s in per_set]
        passed, total = sum(s.passed for s in per_set), sum(s.total for s in per_set)
        cells.append(f"{passed}/{total} ({100.0 * passed / total:.1f}%)")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _show_failures(per_set: list[Score]) -> None:
    for result in per_set:
        for case, got in result.failures:
            print(f"\n### {case.set} / {case.name} ({case.stage})")
            diff = difflib.unified_diff(normalise(case.expected), normalise(got), lineterm="", n=1)
            for line in list(diff)[2:40]:
                print(line[:160])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--failures", action="store_true", help="list the failing cases")
    parser.add_argument("--candidates", action="store_true", help="measure the libraries too")
    parser.add_argument("--strict", action="store_true", help="compare blank lines and indents")
    parser.add_argument("--html", action="store_true", help="talon's HTML replies, informational")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args(argv)
    cases = load_cases(args.corpus)
    implementations = {"mailtracker.quotes": ours()}
    if args.candidates:
        implementations.update(candidates())
    scores = {
        name: [score(cases[s], stages, args.strict) for s in SETS]
        for name, stages in implementations.items()
    }
    print(table(scores))
    if args.html:
        html = score(html_cases(args.corpus), ours())
        print(f"\ntalon HTML replies via html_to_text: {html.passed}/{html.total}")
        scores["mailtracker.quotes"].append(html)
    if args.failures:
        for name, per_set in scores.items():
            print(f"\n## failures of {name}")
            _show_failures(per_set)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
