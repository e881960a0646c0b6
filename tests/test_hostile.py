"""Hostile input: every mail gets a defined answer, and the server stays up.

Hand-made shapes (huge headers, deep nesting, NUL bytes, invalid UTF-8, 10 000 recipients,
1 000 parts) go through the real SMTP server; random mutations of real corpus messages go
through the pipeline directly, many per second.
"""

from __future__ import annotations

import smtplib
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailtracker.config import Config
from mailtracker.limits import UNLIMITED
from mailtracker.parse import parse
from mailtracker.pipeline import process
from mailtracker.store import Store
from mailtracker.values import Envelope
from tests.conftest import CORPUS, MESSAGES
from tests.harness import running_gateway, send

HEAD = b"From: eve@example.com\r\nTo: bugs@example.org\r\nSubject: hostile\r\n"


def nested(levels: int) -> bytes:
    opening = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(levels)
    )
    closing = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(levels)))
    return HEAD + opening + b"Content-Type: text/plain\r\n\r\ndeep\r\n" + closing


def many_parts(n: int) -> bytes:
    parts = b"".join(b"--p\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(n))
    return HEAD + b'Content-Type: multipart/mixed; boundary="p"\r\n\r\n' + parts + b"--p--\r\n"


HOSTILE = {
    "huge header": HEAD + b"X-Junk: " + b"a" * 200_000 + b"\r\n\r\nbody\r\n",
    "huge folded header": HEAD + b"X-Junk: a\r\n" + b" b\r\n" * 20_000 + b"\r\nbody\r\n",
    "many encoded words": HEAD.replace(b"hostile", b"=?utf-8?q?x?= " * 5_000) + b"\r\nx\r\n",
    "nested 15": nested(15),
    "nested 60": nested(60),
    "1000 parts": many_parts(1_000),
    "1500 parts": many_parts(1_500),
    "NUL bytes": HEAD + b"X-Nul: a\x00b\r\n\r\nbody \x00 with NUL\r\n",
    "invalid UTF-8 headers": b"From: \xff\xfe <eve@example.com>\r\nTo: bugs@example.org\r\n"
    b"Subject: \xc3\x28 broken \xe2\x82\r\n\r\nbody \xff\r\n",
    "10000 To addresses": HEAD
    + b"Cc: "
    + b", ".join(b"user%d@example.net" % i for i in range(10_000))
    + b"\r\n\r\nhi\r\n",
    "no header at all": b"\r\n\r\njust a body\r\n",
    "garbage": bytes(range(256)) * 40,
    "broken boundary": HEAD + b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--y\r\nhi\r\n',
    "unknown charset": HEAD + b"Content-Type: text/plain; charset=x-klingon\r\n\r\nQapla'\r\n",
    "bad base64": HEAD + b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64===\r\n",
}


def test_hostile_mail_over_smtp_gets_an_answer_and_the_server_survives(config: Config) -> None:
    answers: dict[str, int] = {}
    with running_gateway(config) as gateway:
        for n, (name, raw) in enumerate(HOSTILE.items()):
            raw = raw.replace(
                b"Subject:", b"Message-ID: <hostile-%d@example.com>\r\nSubject:" % n, 1
            )
            answers[name] = send(gateway.port, raw, ["bugs@example.org"])[0]
        with smtplib.SMTP("127.0.0.1", gateway.port, timeout=30) as client:
            client.ehlo("client.example.com")
            client.mail("eve@example.com")
            codes = [client.rcpt(f"bugs+{i}@example.org")[0] for i in range(1, 151)]
        assert codes == [250] * 100 + [452] * 50
        assert (
            send(gateway.port, (MESSAGES / "new-issue.eml").read_bytes(), ["bugs@example.org"])[0]
            == 250
        )
    assert all(code == 250 or 500 <= code < 600 for code in answers.values()), answers
    assert answers["nested 15"] == answers["1000 parts"] == 250
    assert answers["nested 60"] == answers["1500 parts"] == 550


def corpus_samples() -> list[bytes]:
    names = [
        "stalwart-mail-parser/eml/malformed/001.eml",
        "flanker/messages/torture.eml",
        "cpython-test_email/msg_02.txt",
        "mimekit/messages/stack-overflow.txt",
    ]
    found = [CORPUS / n for n in names if (CORPUS / n).exists()]
    return [p.read_bytes()[:20_000] for p in found] or [(MESSAGES / "new-issue.eml").read_bytes()]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_real_mail_never_breaks_the_pipeline(
    store: Store, config: Config, data: st.DataObject
) -> None:
    samples = corpus_samples()
    raw = bytearray(data.draw(st.sampled_from(samples)))
    for _ in range(data.draw(st.integers(0, 20))):
        at = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        raw[at : at + 1] = data.draw(st.binary(min_size=0, max_size=8))
    cut = data.draw(st.integers(1, max(len(raw), 1)))
    unlimited = replace(config, limits=UNLIMITED)  # sixty mails from one sender at once
    outcome = process(
        store, unlimited, bytes(raw[:cut]), Envelope("eve@example.com", ("bugs@example.org",))
    )
    code = int(outcome.reply[:3])
    assert code == 250 or 500 <= code < 600, outcome.reply
    assert "quarantine" not in outcome.reply, outcome.reply


@pytest.mark.parametrize("name", ["nested 60", "1500 parts"])
def test_refusals_say_why(store: Store, config: Config, name: str) -> None:
    outcome = process(
        store, config, HOSTILE[name], Envelope("e@example.com", ("bugs@example.org",))
    )
    assert outcome.reply.startswith("550 5.6.0 the message ")


@pytest.mark.parametrize(
    "content_type",
    [b"\x00multipart/", b"text/pl ain", b"image/", b"a/b/c", b"\x00/\x00"],
    ids=["nul", "space", "no-subtype", "two-slashes", "nul-only"],
)
def test_an_invalid_content_type_is_text_plain_and_stored(
    store: Store, config: Config, content_type: bytes
) -> None:
    """RFC 2045 5.2: an invalid type is text/plain. Found by the test above on PostgreSQL,
    whose text columns refuse a NUL: the mail was deferred (451) at every retry."""
    raw = (
        b"From: Eve <eve@example.com>\r\nSubject: odd part\r\nMessage-ID: <ct-1@example.com>\r\n"
        b"Content-Type: " + content_type + b"\r\n\r\nBody text.\r\n"
    )
    outcome = process(store, config, raw, Envelope("eve@example.com", ("bugs@example.org",)))
    assert outcome.reply.startswith("250 2.0.0 Ok: stored as bugs/1"), outcome.reply
    assert parse(raw).text == "Body text."
