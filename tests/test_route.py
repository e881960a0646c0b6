"""Addresses, subjects and routing: pure functions, no database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailtracker.addresses import classify
from mailtracker.config import TrackerConfig
from mailtracker.errors import Rejected
from mailtracker.route import route, thread_ids
from mailtracker.subject import clean_title, find_tag, strip_prefixes
from mailtracker.values import TargetKind
from tests.inspect_db import BLANK

BUGS = TrackerConfig(name="bugs", address="bugs@example.org", title="Example bugs")
DOCS = TrackerConfig(name="docs", address="docs@example.org", title="Docs", subject_tag="doc")
TRACKERS = (BUGS, DOCS)


class FakeLookup:
    """The store's answers for one tracker: issues 1-5 exist; ids map to issues."""

    def __init__(self, ids: dict[str, int] | None = None) -> None:
        self.ids = ids or {}

    def issue_exists(self, number: int) -> bool:
        return 1 <= number <= 5

    def issue_for_ids(self, ids: Sequence[str]) -> int | None:
        return next((self.ids[i] for i in ids if i in self.ids), None)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("bugs@example.org", ("bugs", "main", None, "")),
        ("<BUGS@Example.Org>", ("bugs", "main", None, "")),
        ("bugs+42@example.org", ("bugs", "issue", 42, "")),
        ("bugs+42+Ab_9-x@example.org", ("bugs", "issue", 42, "ab_9-x")),
        ("docs+3@example.org", ("docs", "issue", 3, "")),
        ("bugs-bounces+tok@example.org", ("bugs", "bounces", None, "tok")),
    ],
)
def test_our_addresses(address: str, expected: tuple[object, ...]) -> None:
    found = classify(address, TRACKERS)
    assert found is not None
    assert (found.tracker, found.kind, found.number, found.token) == expected


@pytest.mark.parametrize(
    "address",
    [
        "bug@example.org",
        "bugs@example.com",
        "bugs+x@example.org",
        "bugs+0@example.org",
        "bugs+1+@example.org",
        "",
        "bugs+1+a+b@example.org",
        "bugs+1234567890@example.org",
    ],
)
def test_other_addresses_are_not_ours(address: str) -> None:
    assert classify(address, TRACKERS) is None


@pytest.mark.parametrize(
    ("subject", "number"),
    [
        ("[issue42] crash", 42),
        ("Re: AW: [dev] [issue42] crash", 42),
        ("crash [Issue 7]", 7),
        ("SV: VS: Antw: Ang: [issue3]", 3),
        ("issue42 without brackets", None),
        ("[issue]", None),
    ],
)
def test_find_tag(subject: str, number: int | None) -> None:
    assert find_tag(subject, "issue") == number


def test_titles_and_prefixes() -> None:
    assert clean_title("Re: Fwd: AW: crash on login", "issue") == "crash on login"
    assert clean_title("[PATCH] fix login", "issue") == "[PATCH] fix login"
    assert clean_title("Re: [issue4]", "issue") == "(no subject)"
    assert strip_prefixes("Re[2]: [dev-list] RE: hello") == "hello"


@given(st.text(max_size=200))
def test_subject_helpers_never_crash(subject: str) -> None:
    clean_title(subject, "issue")
    strip_prefixes(subject)
    found = find_tag(subject, "issue")
    assert found is None or found >= 0


def test_order_subaddress_then_headers_then_tag() -> None:
    mail = replace(BLANK, in_reply_to=("b@x",), references=("a@x",), subject="[issue5] x")
    lookup = FakeLookup({"a@x": 1, "b@x": 2})
    by_address = classify("bugs+3@example.org", TRACKERS)
    main = classify("bugs@example.org", TRACKERS)
    assert by_address is not None and main is not None
    assert route(mail, by_address, BUGS, lookup).number == 3
    assert route(mail, main, BUGS, lookup).number == 2
    assert route(replace(mail, in_reply_to=()), main, BUGS, lookup).number == 1
    assert route(replace(mail, in_reply_to=(), references=()), main, BUGS, lookup).number == 5
    fresh = route(replace(mail, in_reply_to=(), references=(), subject="x"), main, BUGS, lookup)
    assert fresh.kind is TargetKind.NEW_ISSUE


def test_nearest_reference_first() -> None:
    mail = replace(BLANK, references=("root@x", "mid@x", "leaf@x"), in_reply_to=("leaf@x",))
    assert thread_ids(mail) == ["leaf@x", "mid@x", "root@x"]


def test_missing_issue_is_refused_with_a_reason() -> None:
    main = classify("bugs@example.org", TRACKERS)
    sub = classify("bugs+9@example.org", TRACKERS)
    assert main is not None and sub is not None
    with pytest.raises(Rejected, match=r"the subject tag \[issue9\] names issue 9, but Example"):
        route(replace(BLANK, subject="Re: [issue9] gone"), main, BUGS, FakeLookup())
    with pytest.raises(Rejected, match=r"the address bugs\+9@example\.org names issue 9"):
        route(BLANK, sub, BUGS, FakeLookup())
