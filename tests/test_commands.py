"""The command grammar: subject suffix and body lines, validation and its refusal texts."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailtracker.commands import PROPERTIES, interpret, parse_assignments, split_suffix
from mailtracker.config import TrackerConfig
from mailtracker.errors import Rejected
from mailtracker.values import Edit, Target, TargetKind
from tests.inspect_db import BLANK as MAIL

BUGS = TrackerConfig(name="bugs", address="bugs@example.org", title="Example bugs")
FIXED = replace(BUGS, labels=("crash", "ui"))
NEW = Target("bugs", TargetKind.NEW_ISSUE)
REPLY = Target("bugs", TargetKind.ISSUE, 1)
USERS = {"bob@example.org", "carol@example.org"}


def run(
    subject: str, text: str = "", target: Target = REPLY, tracker: TrackerConfig = BUGS
) -> tuple[str, str, tuple[Edit, ...]]:
    commands = interpret(
        replace(MAIL, subject=subject, text=text), target, tracker, USERS.__contains__
    )
    return commands.title, commands.comment, commands.changes


def refusal(subject: str, text: str = "", tracker: TrackerConfig = BUGS) -> str:
    with pytest.raises(Rejected) as caught:
        run(subject, text, tracker=tracker)
    return caught.value.reason


def test_subject_suffix_on_a_new_issue() -> None:
    title, comment, edits = run("Slow search [ priority = high ;labels=+perf ]", "body", NEW)
    assert title == "Slow search"
    assert comment == "body"
    assert edits == (Edit("priority", "set", "high"), Edit("labels", "add", "perf"))


def test_every_property_in_the_suffix() -> None:
    _, _, edits = run(
        "Re: [issue1] x [status=Resolved; priority=urgent; "
        "assignee=Bob@Example.org; labels=+crash,-ui; nosy=+carol@example.org; "
        "title=A better title]"
    )
    assert edits == (
        Edit("status", "set", "resolved"),
        Edit("priority", "set", "urgent"),
        Edit("assignee", "set", "bob@example.org"),
        Edit("labels", "add", "crash"),
        Edit("labels", "remove", "ui"),
        Edit("nosy", "add", "carol@example.org"),
        Edit("title", "set", "A better title"),
    )


def test_list_without_signs_sets_the_whole_list() -> None:
    _, _, edits = run("x [labels=a, b; nosy=bob@example.org,carol@example.org]")
    assert edits == (
        Edit("labels", "set", "a,b"),
        Edit("nosy", "set", "bob@example.org,carol@example.org"),
    )


def test_body_lines_at_the_top_are_commands_and_removed() -> None:
    _, comment, edits = run("Re: x", "\nStatus: resolved\nPRIORITY:low\n\nThanks!\n-- \nA")
    assert edits == (Edit("status", "set", "resolved"), Edit("priority", "set", "low"))
    assert comment == "Thanks!\n-- \nA"


def test_unknown_body_keys_stay_text() -> None:
    text = "Note: only on Tuesdays.\nStatus: resolved"
    assert run("Re: x", text) == ("", text, ())
    assert run("Re: x", "Hi:\nthere") == ("", "Hi:\nthere", ())


def test_brackets_without_assignments_are_title_text() -> None:
    assert run("[PATCH v2] fix login", "", NEW)[0] == "[PATCH v2] fix login"
    assert split_suffix("Crash [status=open] in the middle") == (
        "Crash [status=open] in the middle",
        None,
    )


def test_refusal_names_every_bad_item_and_the_choices() -> None:
    reason = refusal(
        "x [status=bogus; colour=red; assignee=ghost@example.org]", "Priority: sky-high\n\ntext"
    )
    assert reason == (
        "nothing was changed: "
        "'colour' is not a property; use one of: status, priority, assignee, labels, nosy, "
        "title; status 'bogus' is not one of: new, open, pending, resolved, closed; "
        "assignee 'ghost@example.org' is not a user of Example bugs; "
        "priority 'sky-high' is not one of: low, normal, high, urgent"
    )


def test_other_refusals() -> None:
    assert refusal("x [labels=+nope]", tracker=FIXED) == (
        "nothing was changed: label 'nope' is not one of: crash, ui"
    )
    assert refusal("x [nosy=+dave@example.org]") == (
        "nothing was changed: nosy: 'dave@example.org' is not a user of Example bugs"
    )
    assert refusal("x [title= ]") == "nothing was changed: title cannot be empty"
    assert refusal("x [status=open; priority]") == (
        "nothing was changed: 'priority' has no value; write priority=VALUE"
    )
    assert run("x [status]", "", NEW)[0] == "x [status]"  # no '=': not a command suffix


def test_clearing() -> None:
    assert run("x [priority=; assignee=nobody]")[2] == (
        Edit("priority", "set", ""),
        Edit("assignee", "set", ""),
    )


@given(st.text(max_size=120), st.text(max_size=300))
def test_never_crashes(subject: str, text: str) -> None:
    try:
        run(subject, text, NEW)
    except Rejected as exc:
        assert exc.reason.startswith("nothing was changed: ")


_VALUE = st.text(
    alphabet=st.characters(
        blacklist_characters="[];=,\r\n", blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")
    ),
    min_size=1,
    max_size=20,
)


@given(st.lists(st.tuples(st.sampled_from(PROPERTIES), _VALUE), min_size=1, max_size=5))
def test_suffix_round_trips(pairs: list[tuple[str, str]]) -> None:
    suffix = "; ".join(f"{k}={v}" for k, v in pairs)
    subject, found = split_suffix(f"Some title [{suffix}]")
    assert subject == "Some title"
    assert found is not None
    errors: list[str] = []
    parsed = parse_assignments(found, errors)
    assert errors == []
    assert [(a.key, a.value) for a in parsed] == [(k, v.strip()) for k, v in pairs]
