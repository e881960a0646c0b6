"""Big runs kept out of the parser (``bigparts``: base64 runs and text blocks) change
nothing that ``parse`` returns.

Each mail is parsed twice with the same threshold for the stdlib's big-base64 path
(``payloads.BIG_PAYLOAD``): once with runs elided from ``RUN`` bytes, once with elision off.
The two ``Incoming`` values (raw bytes, texts, attachments and their bytes, defects) must be
equal, whatever the shape: runs in bodies, preambles, epilogues, enclosed messages and
delivery reports, runs that are not base64 at all, bad padding, odd line ends.
"""

from __future__ import annotations

import base64
import hashlib
import quopri
import random
import re

import pytest

from mailtracker import bigparts, payloads
from mailtracker.bigparts import elide
from mailtracker.parse import parse
from mailtracker.values import Incoming
from tests.conftest import CORPUS

RUN = 4096
DATA = bytes(range(256)) * 40  # 10,240 bytes: a base64 run of about 13.8 KB


def b64(data: bytes = DATA, eol: bytes = b"\r\n") -> bytes:
    return base64.encodebytes(data).replace(b"\n", eol)


def parsed(raw: bytes, monkeypatch: pytest.MonkeyPatch, elided: bool) -> Incoming:
    monkeypatch.setattr(payloads, "BIG_PAYLOAD", RUN)
    monkeypatch.setattr(bigparts, "BIG_RUN", RUN if elided else 1 << 62)
    return parse(raw)


def both_ways(raw: bytes, monkeypatch: pytest.MonkeyPatch, runs: int) -> Incoming:
    """The parse with elision, after checking it equals the parse without and that
    ``runs`` runs were elided."""
    monkeypatch.setattr(bigparts, "BIG_RUN", RUN)
    assert len(elide(raw)[1].spans) == runs
    plain = parsed(raw, monkeypatch, elided=False)
    mail = parsed(raw, monkeypatch, elided=True)
    assert mail == plain
    return mail


HEAD = (
    b"From: Ann <ann@example.org>\r\nTo: bugs@example.org\r\nSubject: dump\r\n"
    b"Message-ID: <big-1@example.org>\r\nMIME-Version: 1.0\r\n"
)
MIXED = HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
TEXT = b"--b\r\nContent-Type: text/plain\r\n\r\nSee the dump.\r\n"
ATTACHED = b"--b\r\nContent-Type: application/octet-stream; name=core.bin\r\n"
BASE64 = b"Content-Transfer-Encoding: base64\r\n\r\n"


def test_a_base64_attachment_is_decoded_from_the_mail(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = MIXED + TEXT + ATTACHED + BASE64 + b64() + b"--b--\r\n"
    mail = both_ways(raw, monkeypatch, runs=1)
    assert mail.text == "See the dump."
    assert [(a.filename, a.data) for a in mail.attachments] == [("core.bin", DATA)]
    assert mail.attachments[0].sha256 == hashlib.sha256(DATA).hexdigest()


@pytest.mark.parametrize(
    "body",
    [
        b64(eol=b"\n") + b"--b--\r\n",  # LF line ends
        b64() + b"\r\n\r\n--b--\r\n",  # blank lines before the boundary
        b"\r\n" + b64() + b"--b--\r\n",  # a blank line before the run
        b64()[:-5] + b"\r\n--b--\r\n",  # bad padding: the stdlib decodes it
        b64()[:6000] + b"and a line with blanks\r\n" + b64()[6000:] + b"--b--\r\n",
        b64() + b"--b",  # the mail ends without its closing boundary
        b64(eol=b"\r\n")[:-2],  # and without a line end after the run
    ],
    ids=["lf", "blank-after", "blank-before", "bad-padding", "two-runs", "no-close", "eof"],
)
def test_odd_base64_bodies_decode_as_before(monkeypatch: pytest.MonkeyPatch, body: bytes) -> None:
    raw = MIXED + TEXT + ATTACHED + BASE64 + body
    runs = 2 if b"blanks" in body else 1
    mail = both_ways(raw, monkeypatch, runs=runs)
    assert len(mail.attachments) == 1


def test_a_run_that_is_not_base64_is_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = b"".join(b"line%dofplaintextwithoutblanks\r\n" % i for i in range(400))
    raw = MIXED + TEXT.replace(b"See the dump.\r\n", lines) + b"--b--\r\n"
    mail = both_ways(raw, monkeypatch, runs=1)
    assert mail.text.startswith("line0ofplaintextwithoutblanks\nline1of")


def test_base64_text_and_8bit_text_around_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    words = "Grüße aus Köln, ".encode() * 700
    latin = b"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nd\xe9j\xe0 vu\r\n"
    raw = (
        MIXED
        + b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
        + BASE64
        + b64(words)
        + latin
        + b64()
        + b"\xe9t\xe9\r\n--b--\r\n"
    )
    mail = both_ways(raw, monkeypatch, runs=2)
    assert mail.text.startswith("Grüße aus Köln")


def test_an_enclosed_message_keeps_its_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    inner = (
        b"From: bob@example.org\r\nSubject: the crash\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="i"\r\n\r\n'
        + b64()  # a run as the preamble…
        + b"--i\r\nContent-Type: application/octet-stream\r\n"
        + BASE64
        + b64()
        + b"--i--\r\n"
        + b64()  # … and as the epilogue
    )
    raw = MIXED + TEXT + b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"--b--\r\n"
    mail = both_ways(raw, monkeypatch, runs=3)
    assert mail.attachments[0].filename == "the crash.eml"
    assert mail.attachments[0].data.startswith(b"From: bob@example.org\r\n")
    assert mail.attachments[0].data.count(b64().rstrip()) == 3  # all three runs put back


@pytest.mark.parametrize(
    ("blocks", "runs"),
    [
        (b64() + b"\r\n", 1),
        (b64() + b"\r\n" + b64() + b"\r\n", 2),  # an empty line inside: two text blocks
    ],
    ids=["one-run", "empty-line-inside"],
)
def test_a_delivery_report_keeps_its_header_blocks(
    monkeypatch: pytest.MonkeyPatch, blocks: bytes, runs: int
) -> None:
    """Its empty lines separate header blocks: a run never spans one."""
    report = (
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.org\r\n\r\n"
        + blocks
        + b"Final-Recipient: rfc822; x@example.org\r\nAction: failed\r\n"
    )
    raw = MIXED.replace(b"mixed", b"report") + TEXT + report + b"--b--\r\n"
    both_ways(raw, monkeypatch, runs=runs)


@pytest.mark.parametrize(
    "raw",
    [
        HEAD + b"Content-Transfer-Encoding: base64\r\nContent-Type: image/png\r\n\r\n" + b64(),
        HEAD + b64(),  # no blank line: the run ends the header block (a defect)
        (MIXED + TEXT + ATTACHED + BASE64 + b64() + b"--b--\r\n").replace(b"\r\n", b"\r"),
        MIXED + TEXT + ATTACHED + BASE64 + b64()[:-2] + b"-tail\r\n--b--\r\n",
    ],
    ids=["single-part", "no-separator", "cr-only", "line-goes-on"],
)
def test_other_shapes_parse_as_before(monkeypatch: pytest.MonkeyPatch, raw: bytes) -> None:
    monkeypatch.setattr(bigparts, "BIG_RUN", RUN)
    runs = len(elide(raw)[1].spans)
    both_ways(raw, monkeypatch, runs=runs)


LOG = b"".join(
    b"2026-11-25 12:00:%02d k\xe4se worker %d: retry=%d\r\n" % (i % 60, i, i) for i in range(600)
)


@pytest.mark.parametrize(
    ("cte", "body"),
    [
        (b"8bit", LOG),
        (b"7bit", LOG.replace(b"\xe4", b"a")),
        (
            b"quoted-printable",
            quopri.encodestring(LOG.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n"),
        ),
        (
            b"quoted-printable",
            quopri.encodestring(LOG.replace(b"\r\n", b"\n")).replace(b"\n", b"\r"),
        ),
    ],
    ids=["8bit", "7bit", "qp", "qp-cr-only"],
)
def test_a_text_attachment_is_taken_from_the_mail(
    monkeypatch: pytest.MonkeyPatch, cte: bytes, body: bytes
) -> None:
    """A log file attached whole: one text block, its bytes decoded as the stdlib would."""
    attached = (
        b"--b\r\nContent-Type: text/plain; charset=iso-8859-1; name=worker.log\r\n"
        b"Content-Disposition: attachment; filename=worker.log\r\n"
        b"Content-Transfer-Encoding: " + cte + b"\r\n\r\n"
    )
    raw = MIXED + TEXT + attached + body + b"\r\n--b--\r\n"
    mail = both_ways(raw, monkeypatch, runs=1)
    assert mail.attachments[0].filename == "worker.log"
    assert b"worker 599: retry=599" in mail.attachments[0].data


def test_a_long_8bit_body_is_read_from_the_mail(monkeypatch: pytest.MonkeyPatch) -> None:
    body = b"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n" + LOG + b"\r\n"
    mail = both_ways(MIXED + body + b"--b--\r\n", monkeypatch, runs=1)
    assert mail.text.startswith("2026-11-25 12:00:00 käse worker 0: retry=0\n")


def test_an_enclosed_message_keeps_its_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the empty line that ends a message/rfc822 part's headers come the enclosed
    message's own: a block whose first line looks like a header is never elided."""
    inner = b"From: bob@example.org\r\nSubject: the log\r\n" + LOG + b"\r\n" + LOG
    raw = MIXED + TEXT + b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"--b--\r\n"
    mail = both_ways(raw, monkeypatch, runs=1)  # the enclosed body, not its header block
    assert mail.attachments[0].filename == "the log.eml"


def test_tokens_cannot_be_forged() -> None:
    raw = MIXED + TEXT + ATTACHED + BASE64 + b64(DATA * 120) + b"--b--\r\n"
    first, second = elide(raw)[1], elide(raw)[1]
    assert first.spans and first.prefix != second.prefix
    assert first.token(0) not in raw


def corpus_mails() -> list[bytes]:
    """Every real mail in the shared corpus that has a run to elide at a low threshold."""
    found = []
    for path in sorted(CORPUS.rglob("*")):
        if path.is_file() and path.suffix in (".eml", ".msg", ".txt", "") and path.stat().st_size:
            raw = path.read_bytes()
            if b"\n\n" in raw.replace(b"\r\n", b"\n") and len(raw) < 4_000_000:
                found.append(raw)
    return found


def test_real_mail_parses_the_same_with_runs_elided(monkeypatch: pytest.MonkeyPatch) -> None:
    """The corpus's mails (malformed MIME, bounces, client replies), with runs elided from
    120 bytes, so that every one with some base64 or a paragraph that long has a run
    (571 of them, 535 with text blocks): not one parses differently."""
    monkeypatch.setattr(bigparts, "BIG_RUN", 120)
    mails = [raw for raw in corpus_mails() if elide(raw)[1].spans]
    assert len(mails) > 500  # the oracle must cover real shapes, not a handful
    for raw in mails:
        monkeypatch.setattr(payloads, "BIG_PAYLOAD", 120)
        monkeypatch.setattr(bigparts, "BIG_RUN", 1 << 62)
        try:
            plain: Incoming | Exception = parse(raw)
        except Exception as exc:  # a mail parse refuses must be refused the same way
            plain = exc
        monkeypatch.setattr(bigparts, "BIG_RUN", 120)
        try:
            elided: Incoming | Exception = parse(raw)
        except Exception as exc:
            elided = exc
        if isinstance(plain, Exception):
            assert type(elided) is type(plain) and str(elided) == str(plain)
        else:
            assert elided == plain


# What ``_base64_runs`` did with one regex over the whole mail, before it looked at slices:
# the reference the scan must agree with, span for span.
_STRETCH = re.compile(rb"(?m)^[A-Za-z0-9+/=][A-Za-z0-9+/=\r\n]*")


def regex_runs(raw: bytes, least: int) -> list[tuple[int, int]]:
    spans = []
    for stretch in _STRETCH.finditer(raw):
        start, stop = stretch.span()
        if stop - start < least:
            continue
        end = bigparts._last_line_end(raw, start, stop)
        empty = any(raw.find(e, start, end) >= 0 for e in (b"\n\n", b"\n\r", b"\r\r"))
        if end - start >= least and not empty:
            spans.append((start, end))
    return spans


@pytest.mark.parametrize("least", [2, 7, 40, 121])
def test_the_slice_scan_finds_what_the_regex_found(
    monkeypatch: pytest.MonkeyPatch, least: int
) -> None:
    """Random mails of line ends, alphabet and other bytes, in lines and runs of every
    length around the threshold, odd and even (the scan's slices are half of it)."""
    monkeypatch.setattr(bigparts, "BIG_RUN", least)
    rng = random.Random(least)
    pieces = [b"QUJD", b"x", b"=", b"+/", b"\r\n", b"\n", b"\r", b" ", b"-", b":", b"\xe9"]
    weights = [30, 10, 2, 2, 8, 4, 1, 3, 1, 1, 1]
    found = 0
    for _ in range(400):
        raw = b"".join(rng.choices(pieces, weights, k=rng.randrange(0, 300 + 3 * least)))
        if rng.random() < 0.5:
            raw = b"QUJD" * rng.randrange(least) + raw  # a run from the first byte
        expected = regex_runs(raw, least)
        assert bigparts._base64_runs(raw) == expected, raw
        found += len(expected)
    assert found > 50  # the cases exercise runs, not only their absence
