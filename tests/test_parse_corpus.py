"""parse() over the shared real-world corpus (/work/shared/corpus, described in its INDEX.md).

Every RFC 5322 message in it (1,270: single files, and each message of the five mbox files)
must come back as an ``Incoming`` or a ``Rejected`` with a reason, never another exception;
the rejected ones are named below. Where the corpus carries an oracle that is cheap to check
(upstream expectations for subjects, Message-IDs, senders, MIME parts, thread links, visible
replies), the parsed values are compared with it.

Skipped when the corpus is missing, except in CI (``CI`` set), where that fails.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from mailtracker.errors import Rejected
from mailtracker.parse import parse
from mailtracker.values import Incoming
from tests.conftest import CORPUS

# Which files are messages ("msg") or mboxes ("mbox"), as in the corpus's own
# _tools/stdlib_sanity.py. Left out: keys, DNS records, JSON oracles, SOURCE.md, licences,
# the header-less reply-body sets, talon's HTML fragments and signature bodies, and flanker's
# DKIM canonicalisation vectors.
MESSAGES_PER_SOURCE = {
    "cpython-test_email": 48,
    "dkimpy": 13,
    "sisimai": 719,
    "talon": 13,
    "flanker": 48,
    "stalwart-mail-parser": 53,
    "threads-fedora-devel-2010-01": 292,
    "mimekit": 84,
}
REJECTED = {
    # ~3 MB of broken enclosures; flanker's own strict scan refuses it too.
    "flanker/messages/enclosed-endless.eml": "the message has more than 1000 MIME parts",
    # 0 bytes in the corpus snapshot (the upstream file is named "[Announce]").
    "mimekit/openpgp/Announce.eml": "the message is empty",
}
MBOX_SEPARATOR = re.compile(rb"(?m)^From [^\r\n]*\r?\n")


def kind(source: str, rel: str) -> str | None:
    name = rel.rsplit("/", 1)[-1]
    rules = {
        "cpython-test_email": name.startswith("msg_") and rel.endswith(".txt"),
        "dkimpy": rel.startswith("data/")
        and rel.endswith((".msg", ".message", ".baddomain", ".mbox")),
        "sisimai": rel.startswith("maildir/") and rel.endswith(".eml"),
        "talon": rel.endswith(".eml"),
        "flanker": rel.startswith("messages/") and rel.endswith(".eml"),
        "stalwart-mail-parser": rel.endswith(".eml"),
        "mimekit": rel.startswith(("messages/", "partial/"))
        or rel.endswith((".msg", "thunderbird-signed.txt", "Announce.eml")),
    }
    if rel.endswith(".mbox.txt") or source == "threads-fedora-devel-2010-01":
        return "mbox" if rel.endswith((".mbox", ".mbox.txt")) else None
    return "msg" if rules.get(source, False) else None


def split_mbox(data: bytes) -> list[bytes]:
    """The messages of an mbox: the text between ``From `` lines, as upstream splits it."""
    return MBOX_SEPARATOR.split(data)[1:]


def corpus_files() -> Iterator[tuple[str, bytes]]:
    for path in sorted(CORPUS.rglob("*")):
        source, _, rel = path.relative_to(CORPUS).as_posix().partition("/")
        found = kind(source, rel) if path.is_file() else None
        if found == "msg":
            yield f"{source}/{rel}", path.read_bytes()
        elif found == "mbox":
            for index, raw in enumerate(split_mbox(path.read_bytes())):
                yield f"{source}/{rel}#{index}", raw


@cache
def results() -> dict[str, Incoming | Rejected]:
    """Every corpus message parsed once; an unexpected exception is kept as its repr."""
    out: dict[str, Any] = {}
    for name, raw in corpus_files():
        try:
            out[name] = parse(raw)
        except Rejected as exc:
            out[name] = exc
        except Exception as exc:  # the failure the first test reports
            out[name] = repr(exc)
    return out


@pytest.fixture(scope="module")
def parsed() -> dict[str, Incoming | Rejected]:
    if not CORPUS.is_dir():
        message = f"the shared corpus is not at {CORPUS}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run the corpus tests)")
        pytest.skip(message)
    return results()


def mail(parsed: dict[str, Incoming | Rejected], name: str) -> Incoming:
    result = parsed[name]
    assert isinstance(result, Incoming), (name, result)
    return result


def oracle(rel: str) -> Any:
    return json.loads((CORPUS / rel).read_text(encoding="utf-8"))


# --- robustness ----------------------------------------------------------------------------


def test_every_message_parses_or_is_rejected_with_a_reason(parsed: dict[str, Any]) -> None:
    crashed = {name: r for name, r in parsed.items() if isinstance(r, str)}
    assert crashed == {}
    reasons = {name: r.reason for name, r in parsed.items() if isinstance(r, Rejected)}
    assert all(reasons.values())
    assert reasons == REJECTED


def test_message_counts(parsed: dict[str, Any]) -> None:
    per_source = Counter(name.split("/", 1)[0] for name in parsed)
    assert per_source == MESSAGES_PER_SOURCE
    parsed_ok = sum(isinstance(r, Incoming) for r in parsed.values())
    assert (len(parsed), parsed_ok) == (1_270, 1_268)


def clean(text: str) -> bool:
    """Storable text: no lone surrogates (undecoded 8-bit bytes), no NUL."""
    return "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def check_values(incoming: Incoming) -> None:
    texts = [
        incoming.subject,
        incoming.text,
        incoming.from_name,
        incoming.date,
        incoming.html or "",
    ]
    assert all(clean(t) for t in texts)
    assert "\r" not in incoming.text and incoming.text == incoming.text.rstrip()
    assert incoming.message_id and not re.search(r"[\s<>]", incoming.message_id)
    for address in (incoming.from_addr or "a@b", *incoming.to, *incoming.cc):
        assert address == address.lower() and "@" in address and " " not in address
    for a in incoming.attachments:
        assert a.filename and not re.search(r"[/\\]", a.filename), a.filename
        assert not any(unicodedata.category(c) == "Cc" for c in a.filename)
        assert a.content_type == a.content_type.lower() and "/" in a.content_type


def test_parsed_values_are_clean(parsed: dict[str, Any]) -> None:
    for name, result in parsed.items():
        if isinstance(result, Incoming):
            try:
                check_values(result)
            except AssertionError as exc:
                raise AssertionError(name) from exc


def test_python_header_bug_messages_parse(parsed: dict[str, Any]) -> None:
    """INDEX.md: reading To: ``unlisted-recipients:; (no To-header on input)`` through
    CPython 3.11's policy raises AttributeError."""
    for name in (
        "mimekit/messages/delivery-status.txt",
        "mimekit/messages/delivery-status-no-blank-line.txt",
        "mimekit/messages/delivery-status.anonymized.eml",
        "mimekit/mbox/content-length.mbox.txt#27",
    ):
        incoming = mail(parsed, name)
        assert incoming.to == ()
        assert incoming.attachments[0].content_type == "message/delivery-status"


def essentials(incoming: Incoming) -> tuple[Any, ...]:
    message_id = "" if incoming.synthetic_id else incoming.message_id  # a hash of the bytes
    kinds = [(a.filename, a.content_type) for a in incoming.attachments]
    # Not the defects: the policy finds some in CRLF-folded headers and not in LF ones.
    return (
        message_id,
        incoming.subject,
        incoming.from_addr,
        incoming.to,
        incoming.cc,
        incoming.references,
        incoming.text,
        incoming.html,
        kinds,
    )


def test_line_endings_do_not_change_the_result(parsed: dict[str, Any]) -> None:
    """sisimai keeps LF (bsd), CRLF (dos) and CR-only (mac) copies of 56 messages."""
    pairs = 0
    for name in parsed:
        if name.startswith("sisimai/maildir/dos/"):
            lf = name.replace("/dos/", "/bsd/")
            if lf not in parsed:
                continue
            expected = essentials(mail(parsed, lf))
            for variant in (name, name.replace("/dos/", "/mac/")):
                assert essentials(mail(parsed, variant)) == expected, variant
            pairs += 1
    assert pairs == 56


# --- oracles -------------------------------------------------------------------------------


def test_stalwart_subjects_message_ids_and_senders(parsed: dict[str, Any]) -> None:
    checked = 0
    for eml in sorted((CORPUS / "stalwart-mail-parser" / "eml").rglob("*.eml")):
        name = eml.relative_to(CORPUS).as_posix()
        # The first header line is "Fro :" (space before the colon): Python's parser takes
        # the whole mail as a body, stalwart reads on. Obsolete syntax, RFC 5322 4.5.
        if name.endswith("malformed/019.eml"):
            continue
        incoming = mail(parsed, name)
        for header in oracle(str(eml.with_suffix(".json")))["parts"][0]["headers"]:
            value = header["value"]
            if header["name"] == "subject":
                assert incoming.subject == value["Text"], name
            elif header["name"] == "message_id":
                assert incoming.message_id == value["Text"], name
            elif header["name"] == "from":
                address = value["Address"]["List"][0]["address"] or ""
                expected = address.lower() if "@" in address else ""
                assert incoming.from_addr == expected, name
            else:
                continue
            checked += 1
    assert checked == 56


def test_flanker_expectations(parsed: dict[str, Any]) -> None:
    expected = oracle("flanker/expected.json")

    def get(rel: str) -> Incoming:
        return mail(parsed, f"flanker/{rel}")

    apache = "messages/apache-message-news-mime.eml"
    assert get(apache).subject == expected[apache]["subject"]
    bilingual = "messages/bilingual-simple.eml"
    assert get(bilingual).subject == expected[bilingual]["subject_decoded"]
    sender = get("messages/from-encoding.eml")
    assert expected["messages/from-encoding.eml"]["from_decoded"] == (
        f'"{sender.from_name}" <{sender.from_addr}>'
    )
    delayed = expected["messages/bounce/delayed.eml"]
    assert get("messages/bounce/delayed.eml").subject == delayed["subject"]
    attached = get("messages/bounce/delayed.eml").attachments
    assert attached[-1].filename == delayed["enclosed_subject"] + ".eml"
    assert [a.content_type for a in attached] == [
        t.split(" ")[0] for t in delayed["part_types"][1:]
    ]
    for rel in ("messages/enclosed.eml", "messages/enclosed-global.eml"):
        enclosed_type = expected[rel]["part1_content_type"].split(";")[0]
        assert [a.content_type for a in get(rel).attachments] == [enclosed_type]
        assert get(rel).to == ("bob@example.com",)
    yahoo = get("messages/complaints/yahoo.eml").attachments[-1]
    assert parse(yahoo.data).html is not None  # enclosed_content_type text/html
    dashed = get("messages/dashed-boundaries.eml")
    assert dashed.text and dashed.html and dashed.attachments == ()


def test_flanker_top_level_parts(parsed: dict[str, Any]) -> None:
    """A text body first, so every other top-level part is one attachment."""
    expected = oracle("flanker/expected.json")
    for rel in (
        "messages/bounce/delayed.eml",
        "messages/bounce/mailbox-full.eml",
        "messages/bounce/no-mx.eml",
        "messages/complaints/aol.eml",
        "messages/complaints/yahoo.eml",
        "messages/disposition-notification.eml",
        "messages/spam/broken-ctype.eml",
    ):
        incoming = mail(parsed, f"flanker/{rel}")
        assert 1 + len(incoming.attachments) == expected[rel]["parts"], rel
        assert incoming.text, rel
    tree = expected["messages/torture.eml"]["tree"]
    top = [node[1:] for node in tree if re.match(r"-[^-]", node)]
    torture = mail(parsed, "flanker/messages/torture.eml")
    assert [a.content_type for a in torture.attachments] == top[1:]


Node = tuple[int, int | None, str]


def thread_nodes(nodes: list[dict[str, Any]], parent: int | None) -> Iterator[Node]:
    """``(mbox index, parent's index, Message-ID)`` of every message in the tree."""
    for node in nodes:
        yield node["idx"], parent, node["message_id"]
        yield from thread_nodes(node["children"], node["idx"])


def test_fedora_thread_links(parsed: dict[str, Any]) -> None:
    """Every Message-ID as the archive has it, and every reply names its archive parent in
    In-Reply-To or References, except where the archive grouped by subject (parents from
    December, idx 6/11/12 under 3) or differently from a JWZ threader (153, 285)."""
    mbox = "threads-fedora-devel-2010-01/2010-January.mbox"
    threads = oracle("threads-fedora-devel-2010-01/expected_threads.json")["threads"]
    nodes = list(thread_nodes(threads, None))
    assert len(nodes) == 292
    unlinked = []
    for idx, parent, message_id in nodes:
        incoming = mail(parsed, f"{mbox}#{idx}")
        assert incoming.message_id == message_id.strip("<>")
        if parent is not None:
            parent_id = mail(parsed, f"{mbox}#{parent}").message_id
            if parent_id not in incoming.in_reply_to + incoming.references:
                unlinked.append(idx)
    assert sorted(unlinked) == [6, 11, 12, 153, 285]


def test_talon_visible_reply_is_in_the_body(parsed: dict[str, Any]) -> None:
    replies = oracle("talon/expected.json")["standard_replies"]
    names = [n for n in replies if not n.startswith("_")]
    assert len(names) == 12
    for rel in names:
        assert replies[rel]["expected_reply"] in mail(parsed, f"talon/{rel}").text, rel


def test_mimekit_mbox_summaries(parsed: dict[str, Any]) -> None:
    """Subject and From of every message, from MimeKit's expected mbox summaries."""
    checked = 0
    for stem in ("content-length", "issue1189"):
        summary = (CORPUS / "mimekit" / "mbox" / f"{stem}-summary.txt").read_text()
        blocks = [b for b in re.split(r"(?m)^From .*\n", summary) if b.strip()]
        for index, block in enumerate(blocks):
            incoming = mail(parsed, f"mimekit/mbox/{stem}.mbox.txt#{index}")
            subject = re.search(r"(?m)^Subject: (.*)$", block)
            author = re.search(r"(?m)^From: .*?([\w.!-]+@[\w.-]+)", block)
            if subject:
                assert incoming.subject == " ".join(subject[1].split()), (stem, index)
            if author and (stem, index) != ("content-length", 6):
                assert incoming.from_addr == author[1].lower(), (stem, index)
            checked += 1
    assert checked == 33
    # "From: develop!nextmime@ebony@sblab.att.com" (UUCP bang path, 1992) is no RFC 5322
    # address; MimeKit cuts it at the second "@", we leave it to the envelope.
    assert mail(parsed, "mimekit/mbox/content-length.mbox.txt#6").from_addr == ""


def test_corpus_path_is_computed_from_the_checkout() -> None:
    assert Path(__file__).resolve().parents[2] / "shared" / "corpus" == CORPUS
