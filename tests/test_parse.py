"""parse(): one small .eml per rule under tests/messages/parse-*.eml, exact values asserted."""

from __future__ import annotations

import base64
import hashlib
import os
import tracemalloc
from pathlib import Path

import pytest

from mailtracker import htmltext
from mailtracker.errors import Rejected
from mailtracker.htmltext import html_to_text
from mailtracker.parse import MAX_DEPTH, MAX_PARTS, parse
from mailtracker.values import AttachmentData, Incoming
from tests.conftest import MESSAGES


def read(name: str) -> bytes:
    return (MESSAGES / f"parse-{name}.eml").read_bytes()


def load(name: str) -> Incoming:
    return parse(read(name))


def attachment(filename: str, content_type: str, data: bytes) -> AttachmentData:
    return AttachmentData(filename, content_type, data, hashlib.sha256(data).hexdigest())


# --- body selection ----------------------------------------------------------------------


def test_alternative_takes_the_last_plain_text() -> None:
    mail = load("alternative-last-plain")
    assert mail.text == "Plain, richest version."
    assert mail.html == "<p>HTML version</p>"
    assert mail.attachments == ()
    assert mail.message_id == "alt-1@example.org"
    assert (mail.from_addr, mail.from_name) == ("ann@example.org", "Ann Example")
    assert mail.to == ("bugs@example.org",)
    assert mail.date == "Mon, 1 Jan 2024 10:00:00 +0000"
    assert mail.synthetic_id is False


def test_html_only_mail_becomes_readable_text() -> None:
    mail = load("html-only")
    assert mail.text == (
        "Hello team,\n"
        "the build is broken since this very long line goes on and on well past"
        " seventy-eight characters without a break.\n"
        "\n"
        "1. Not a list & not escaped - really.\n"
        "\n"
        "  * first\n"
        "  * second, see [bug 1](https://example.org/b/1)\n"
        "\n"
        "Example logo Café"
    )
    assert mail.html is not None and mail.html.startswith("<html><head><style>")


def test_html_alternative_with_inline_image() -> None:
    mail = load("alternative-related")
    assert mail.text == "Plain text with [logo]."
    assert mail.html == '<p>HTML with <img src="cid:logo@x" alt="logo"></p>'
    gif = base64.b64decode("R0lGODlhAQABAAAAACw=")
    assert mail.attachments == (attachment("attachment-1", "image/gif", gif),)


def test_empty_plain_alternative_falls_back_to_html() -> None:
    mail = load("empty-plain-with-html")
    assert mail.text == "The real text is only in HTML."
    assert mail.html == "<div>The real text is only in HTML.</div>"


def test_html_body_then_plain_footer() -> None:
    mail = load("html-body-then-footer")
    assert mail.text == "The HTML body.\n\nList footer added by the list server."
    assert mail.html == "<p>The <i>HTML</i> body.</p>"
    second = b"<p>A second HTML part is an attachment.</p>"
    assert mail.attachments == (attachment("attachment-1", "text/html", second),)


def test_inline_text_parts_are_appended_named_ones_attached() -> None:
    mail = load("inline-text-parts")
    assert mail.text == "The body.\n\n-- \ndevel mailing list footer"
    assert mail.attachments == (
        attachment("fix.patch", "text/x-patch", b"--- a/x\n+++ b/x"),
        attachment("attachment-2", "text/plain", b"attached without a name"),
        attachment("attachment-3", "image/png", b"\x89PNG\r\n\x1a\n"),
    )


def test_the_first_part_is_the_body_even_with_a_filename() -> None:
    mail = load("first-part-named")  # McAfee bounces name their text part
    assert mail.text == "--- The following addresses had delivery problems ---"
    later = b"A named part after the first is an attachment."
    assert mail.attachments == (attachment("details.txt", "text/plain", later),)


def test_nul_is_dropped_from_text() -> None:
    # PostgreSQL text columns cannot hold NUL.
    mail = parse(b"From: a@example.org\n\nbody\x00with NUL\n")
    assert mail.text == "bodywith NUL"


def test_signed_mail_body_and_signature() -> None:
    mail = load("signed-pgp")
    assert mail.text == "This text is signed."
    signature = (
        b"-----BEGIN PGP SIGNATURE-----\niQEzBAEBCAAdFiEEexample\n-----END PGP SIGNATURE-----"
    )
    assert mail.attachments == (
        attachment("signature.asc", "application/pgp-signature", signature),
    )


def test_forwarded_message_is_one_eml_attachment_with_its_bytes() -> None:
    raw = read("forwarded-rfc822")
    mail = parse(raw)
    assert mail.text == "See the forwarded report."
    enclosed = raw[raw.index(b"From: bob@") : raw.index(b"\n--fwd--")]
    assert mail.attachments == (attachment("Original - report.eml", "message/rfc822", enclosed),)


def test_delivery_status_report() -> None:
    mail = load("delivery-status")
    assert mail.text == "Your message could not be delivered."
    status = (
        b"Reporting-MTA: dns; mx.example.net\n\n"
        b"Final-Recipient: rfc822; nobody@example.net\nAction: failed\nStatus: 5.1.1\n\n"
    )
    assert mail.attachments == (
        attachment("attachment-1", "message/delivery-status", status),
        attachment("attachment-2", "text/rfc822-headers", b"From: ann@example.org\nSubject: Hello"),
    )
    assert mail.auto_submitted == "auto-replied"


# --- attachments ---------------------------------------------------------------------------


def test_rfc2231_and_rfc2047_filenames() -> None:
    mail = load("rfc2231-filename")
    assert mail.text == "Three files."
    assert mail.attachments == (
        attachment("€.txt", "application/octet-stream", b"hello\n"),
        attachment("café.txt", "text/plain", b"caf\xe9"),
        attachment("Rapport été.pdf", "application/pdf", b"%PDF-1.4\n"),
    )
    # Outlook and Gmail put RFC 2047 words inside the quoted name (RFC 2047 section 5 says no).
    assert mail.defects == ("InvalidHeaderDefect",)


def test_hostile_filenames_are_sanitised() -> None:
    mail = load("filename-sanitise")
    assert [a.filename for a in mail.attachments] == [
        "passwd",
        "gpj.exe",
        "ab.txt",
        "attachment-4",
    ]
    assert [a.data for a in mail.attachments] == [b"one", b"two", b"three", b"four"]
    assert mail.text == ""


def test_sha256_and_size_of_attachments() -> None:
    (euro, *_) = load("rfc2231-filename").attachments
    assert euro.sha256 == hashlib.sha256(b"hello\n").hexdigest()
    assert euro.size == 6


# --- charsets and line endings ---------------------------------------------------------------


def test_unknown_charset_decodes_as_utf8() -> None:
    mail = load("unknown-charset")
    assert mail.text == "Grüße aus Köln"
    assert mail.subject == "Grüße"


def test_wrong_charset_falls_back_to_latin1() -> None:
    assert load("wrong-charset").text == "Latin-1 bytes labelled UTF-8: café crème"


def test_bogus_charset_names_never_raise() -> None:
    for charset in ("rot13", "base64", "utf\\x00", "undefined", "unicode-escape", "utf-7"):
        raw = (
            b'From: a@example.org\nContent-Type: text/plain; charset="%s"\n\n'
            b"caf\xc3\xa9 \\ud800 +AGQ-\n" % charset.encode()
        )
        text = parse(raw).text
        assert "\ud800" not in text and text.startswith("caf"), charset


def test_8bit_utf8_headers() -> None:
    mail = load("8bit-headers")
    assert (mail.from_addr, mail.from_name) == ("joerg@example.org", "Jörg Müller")
    assert mail.subject == "Grüße in UTF-8"


def test_8bit_latin1_header_falls_back_to_latin1() -> None:
    mail = parse(b"From: Andr\xe9 <andre@example.org>\nSubject: Caf\xe9\n\nbody\n")
    assert (mail.from_name, mail.subject) == ("André", "Café")


def test_8bit_addresses_are_read_one_by_one_as_utf8() -> None:
    """RFC 6532: an address is UTF-8. Junk beside a UTF-8 address used to turn the whole
    header to Latin-1 (``jã¶rg@``), and the junk became a user; now the UTF-8 address is
    kept, one that is not UTF-8 is no address, and a Latin-1 name is still read."""
    mail = parse(
        b"From: d\xff\xfeave@example.com\nSender: J\xc3\xb6rg <j\xc3\xb6rg@b\xc3\xbccher.example>\n"
        b"Cc: d\xff\xfeave@example.com, j\xc3\xb6rg@b\xc3\xbccher.example,\n"
        b" Ren\xe9 <rene@example.fr>\n"
        b"Subject: s\n\nbody\n"
    )
    assert (mail.from_addr, mail.from_name) == ("jörg@bücher.example", "Jörg")
    assert mail.cc == ("jörg@bücher.example", "rene@example.fr")


def test_cr_only_line_endings() -> None:
    mail = load("cr-only")
    assert mail.subject == "Old Mac line endings"
    assert mail.text == "Line one\nLine two"
    assert (mail.from_addr, mail.message_id) == ("ann@example.org", "cr-1@example.org")


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_gives_the_same_mail(newline: bytes) -> None:
    raw = read("forwarded-rfc822").replace(b"\n", newline)
    mail = parse(raw)
    assert mail.text == "See the forwarded report."
    assert mail.subject == "Fwd: Original / report"
    (forwarded,) = mail.attachments
    assert forwarded.data.startswith(b"From: bob@example.org" + newline + b"To: ")
    assert forwarded.data.endswith(b"The original body.")


# --- headers -----------------------------------------------------------------------------------


def test_encoded_words_folded_and_split_inside_a_character() -> None:
    mail = load("encoded-headers")
    assert mail.subject == "Re: [bugs] Grüßeäö done"
    assert (mail.from_addr, mail.from_name) == ("joerg@example.com", "Jörg Müller")


def test_comment_display_name() -> None:
    mail = load("from-comment-name")
    assert (mail.from_addr, mail.from_name) == ("izzy@example.org", "Dr. Izzy Joseph")


def test_from_falls_back_to_sender() -> None:
    mail = load("from-fallback-sender")
    assert (mail.from_addr, mail.from_name) == ("bot@lists.example.org", "List Bot")


def test_no_author_at_all_is_not_rejected() -> None:
    mail = parse(b"To: bugs@example.org\nSubject: anonymous\n\nWho wrote this?\n")
    assert (mail.from_addr, mail.from_name) == ("", "")
    assert mail.text == "Who wrote this?"


def test_groups_and_junk_recipients() -> None:
    # CPython 3.11 raises AttributeError reading this To: through the policy.
    mail = load("group-recipients")
    assert mail.to == ()
    assert mail.cc == ("bob@example.org", "carol@example.org", "john@example.org")


def test_references_without_brackets() -> None:
    mail = load("references-without-brackets")
    assert mail.in_reply_to == ("parent.123@client.example",)
    assert mail.references == ("root@example.org", "parent.123@client.example", "other@example.org")


def test_references_folded_repeated_and_commented() -> None:
    mail = load("references-folded")
    assert mail.message_id == "folded-1@example.org"
    assert mail.in_reply_to == ("4B4621D4.7070107@gnat.ca",)
    assert mail.references == ("one@example.org", "two@example.org", "three@example.org")


def test_auto_submitted_precedence_and_loop() -> None:
    mail = load("auto-submitted")
    assert mail.auto_submitted == "auto-replied"
    assert mail.precedence == "bulk"
    assert mail.loop == ("bugs@example.org", "docs@example.org")


def test_plain_mail_has_empty_optional_fields() -> None:
    mail = load("from-comment-name")
    assert (mail.auto_submitted, mail.precedence, mail.loop, mail.defects) == ("", "", (), ())
    assert (mail.in_reply_to, mail.references, mail.cc, mail.html) == ((), (), (), None)


# --- Message-ID ----------------------------------------------------------------------------------


def test_missing_message_id_is_synthesised_from_the_bytes() -> None:
    raw = read("no-message-id")
    mail = parse(raw)
    digest = hashlib.sha256(raw).hexdigest()[:32]
    assert mail.message_id == f"{digest}@mailtracker.invalid"
    assert mail.synthetic_id is True
    assert parse(raw).message_id == mail.message_id  # a redelivery stays a duplicate
    assert parse(raw + b"\n").message_id != mail.message_id


def test_empty_message_id_is_synthesised() -> None:
    mail = parse(b"From: a@example.org\nMessage-ID:  <>\n\nbody\n")
    assert mail.synthetic_id is True
    assert mail.message_id.endswith("@mailtracker.invalid")


def test_message_id_without_brackets() -> None:
    assert parse(b"From: a@example.org\nMessage-ID: 12345 \n\nbody\n").message_id == "12345"


def test_raw_is_kept_as_given() -> None:
    raw = read("alternative-last-plain")
    assert parse(raw).raw is raw


# --- what is rejected, and limits ----------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"\r\n\r\n", b"  \n"])
def test_empty_input_is_rejected(raw: bytes) -> None:
    with pytest.raises(Rejected, match=r"^the message is empty$"):
        parse(raw)


def test_headerless_text_is_a_body() -> None:
    assert parse(b"just some words\n").text == "just some words"


def test_nothing_but_an_mbox_from_line_is_rejected() -> None:
    with pytest.raises(Rejected, match=r"^the message has neither a header nor a body$"):
        parse(b"From nobody Mon Jan  1 00:00:00 2024\n")


def nested(levels: int) -> bytes:
    """A text part ``levels`` multipart levels below the top."""
    opening = [
        b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(levels)
    ]
    closing = [b"--b%d--\n" % i for i in reversed(range(levels))]
    body = b"Content-Type: text/plain\n\nbottom\n"
    return b"From: a@example.org\n" + b"".join(opening) + body + b"".join(closing)


def test_nesting_up_to_the_limit_parses() -> None:
    assert parse(nested(MAX_DEPTH)).text == "bottom"


def test_nesting_beyond_the_limit_is_rejected() -> None:
    with pytest.raises(Rejected, match=r"^the message is nested more than 20 MIME levels deep$"):
        parse(nested(MAX_DEPTH + 1))


def test_nesting_beyond_the_parsers_stack_is_rejected() -> None:
    with pytest.raises(Rejected, match="nested"):
        parse(nested(5000))


def test_enclosed_messages_count_as_levels() -> None:
    inner = b"From: a@example.org\nSubject: inner\n\nbottom\n"
    raw = b"From: a@example.org\nContent-Type: message/rfc822\n\n" * (MAX_DEPTH + 1) + inner
    with pytest.raises(Rejected, match="20 MIME levels"):
        parse(raw)


def many_parts(count: int) -> bytes:
    parts = [b"--b\nContent-Type: text/plain\n\nbody\n"]
    parts += [
        b"--b\nContent-Type: application/octet-stream; name=f%d.bin\n\npart %d\n" % (i, i)
        for i in range(1, count)
    ]
    head = b"From: a@example.org\nContent-Type: multipart/mixed; boundary=b\n\n"
    return head + b"".join(parts) + b"--b--\n"


def test_a_thousand_parts_parse() -> None:
    mail = parse(many_parts(MAX_PARTS))
    assert mail.text == "body"
    assert len(mail.attachments) == MAX_PARTS - 1
    assert mail.attachments[-1] == attachment("f999.bin", "application/octet-stream", b"part 999")


def test_more_parts_are_rejected() -> None:
    with pytest.raises(Rejected, match=r"^the message has more than 1000 MIME parts$"):
        parse(many_parts(MAX_PARTS + 1))


def test_large_attachment_memory() -> None:
    """A 25 MB mail with a 24 MB (encoded) attachment: peak memory stays near 3x the mail."""
    blob = os.urandom(18 * 1024 * 1024)
    head = (
        b"From: a@example.org\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\nsee attached\n--b\n"
        b"Content-Type: application/octet-stream; name=big.bin\n"
        b"Content-Transfer-Encoding: base64\n\n"
    )
    raw = head + base64.encodebytes(blob) + b"--b--\n"
    tracemalloc.start()
    try:
        mail = parse(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert mail.attachments[0].data == blob
    assert peak < 3.5 * len(raw), f"peak {peak / 1e6:.0f} MB for a {len(raw) / 1e6:.0f} MB mail"


# --- htmltext ------------------------------------------------------------------------------------


def test_html_to_text_layout() -> None:
    html = (
        "<p>First paragraph<br>same paragraph</p><p>Second &amp; last</p>"
        "<ol><li>one</li><li>two</li></ol><img src='x.png' alt='A chart'>"
        "<p><a href='https://example.org'>https://example.org</a> and <b>bold</b></p>"
    )
    assert html_to_text(html) == (
        "First paragraph\nsame paragraph\n\nSecond & last\n\n  1. one\n  2. two\n\n"
        "A chart\n\n<https://example.org> and bold"
    )


def test_html_to_text_falls_back_to_stripping_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: object, html: str) -> str:
        raise AssertionError("html2text bug")

    monkeypatch.setattr(htmltext._Converter, "handle", broken)
    html = "<html><style>p {}</style><p>Hello</p><div>world &amp; all</div></html>"
    assert html_to_text(html) == "Hello\n\nworld & all"


def test_html_to_text_survives_pathological_markup() -> None:
    assert html_to_text("<" * 10_000).startswith("<<<")
    assert html_to_text("<div>" * 10_000 + "deep") == "deep"
    assert html_to_text("&#99999999999; <a href='") is not None


def test_paths_are_the_ones_conftest_exposes() -> None:
    assert Path(__file__).resolve().parent / "messages" == MESSAGES
