"""``quarantine show`` diagnoses the quarantined mail with mail-parser, in text and in JSON.

Real malformed mail from the shared corpus is quarantined the way a bug quarantines it (one
pipeline stage replaced by one that raises), then shown through the CLI, on SQLite and on
PostgreSQL. The diagnosis must name the hops of the Received chain from the origin to us with
mail-parser's delays, the defects it finds, the declared and the parsed MIME structure; when
mail-parser itself fails on a mail, the command still shows everything else.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mailtracker import pipeline
from mailtracker.cli import main
from mailtracker.config import Config
from mailtracker.store import Store
from mailtracker.values import Envelope, Incoming
from tests.conftest import CORPUS, MESSAGES

ENCLOSED_BROKEN = "flanker/messages/enclosed-broken.eml"  # 5 hops, boundaries never closed
APACHE_JAMES = "sisimai/maildir/bsd/lhost-apachejames-01.eml"  # qmail stamps, no boundary
POSTFIX_CLOCK = "sisimai/maildir/bsd/lhost-postfix-31.eml"  # a clock 163 days fast
SENDGRID = "sisimai/maildir/bsd/lhost-sendgrid-01.eml"  # mail-parser 4.8 raises on it


def broken_bounce_check(incoming: Incoming, *args: object) -> bool:
    raise RuntimeError(f"bug while looking at <{incoming.message_id}>")


def quarantine(store: Store, config: Config, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Quarantine a corpus mail through the real pipeline, as quarantined mail number 1.

    The bug is injected into the first stage every mail passes, bounces included."""
    raw = (CORPUS / name).read_bytes()
    with monkeypatch.context() as patch:
        patch.setattr(pipeline.bouncing, "looks_like_bounce", broken_bounce_check)
        outcome = pipeline.process(
            store, config, raw, Envelope("postmaster@example.net", ("bugs@example.org",))
        )
    assert outcome.reply == "250 2.0.0 Ok: kept for the administrators (quarantine 1)"


def show_text(config_file: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["quarantine", "show", "1", "-c", str(config_file)]) == 0
    return capsys.readouterr().out.splitlines()


def show_json(config_file: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["quarantine", "show", "1", "--json", "-c", str(config_file)]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def section(lines: list[str], start: str, end: str) -> list[str]:
    return lines[lines.index(start) + 1 : lines.index(end)]


def test_text_shows_hops_defects_and_structure_between_error_and_mail(
    store: Store,
    config: Config,
    config_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    quarantine(store, config, monkeypatch, ENCLOSED_BROKEN)
    lines = show_text(config_file, capsys)
    assert lines[0].startswith("quarantine 1: <4FEEF9B3.7060508@example.net>")
    assert "RuntimeError: bug while looking at <4FEEF9B3.7060508@example.net>" in lines
    diagnosis = section(lines, "--- diagnosis (mail-parser) ---", "--- the mail ---")
    assert diagnosis == [
        'declared Content-Type: multipart/mixed; boundary="===============6195527458677812340=="',
        "parsed structure:",
        "  multipart/mixed",
        "    text/plain",
        "    message/rfc822",
        "      multipart/alternative",
        "        text/plain",
        "        text/html",
        "Received, origin first: 5 hops",
        "   1  2012-06-30T13:05:57Z     origin  from [192.168.1.75] "
        "(95x79x59x37.static-business.nn.ertelecom.ru [95.79.59.37]) by mxa.example.org with ESMTP",
        "   2  2012-06-30T13:05:59Z        +2s  by luna.example.net with SMTP mgrt 8979437",
        "   3  2012-06-30T13:05:59Z        +0s  from mail-p1.example.net "
        "(mail-p1.example.net. [173.193.210.44]) by mx.google.com with ESMTP",
        "   4  2012-06-30T13:05:59Z        +0s  by 10.224.70.144 with SMTP",
        "   5  2012-06-30T13:06:01Z        +2s  by 10.231.77.161 with SMTP",
        "defects: 3",
        "  multipart/mixed: FirstHeaderLineIsContinuationDefect: "
        "A message had a continuation line as its first header line.",
        "  multipart/mixed: CloseBoundaryNotFoundDefect: "
        "A start boundary was found, but not the corresponding close boundary.",
        "  multipart/alternative: CloseBoundaryNotFoundDefect: "
        "A start boundary was found, but not the corresponding close boundary.",
    ]
    assert "Subject: Wow" in lines  # the mail itself still follows


def test_missing_boundary_and_qmail_stamps_without_mail_parser_noise(
    store: Store,
    config: Config,
    config_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    quarantine(store, config, monkeypatch, APACHE_JAMES)
    caplog.set_level(logging.DEBUG)
    lines = show_text(config_file, capsys)
    diagnosis = section(lines, "--- diagnosis (mail-parser) ---", "--- the mail ---")
    structure = section(diagnosis, "parsed structure:", "Received, origin first: 5 hops")
    assert structure == ["  multipart/mixed", "    multipart/alternative"]  # no parts found
    assert diagnosis[-3:] == [
        "defects: 2",
        "  multipart/alternative: MissingHeaderBodySeparatorDefect: "
        "Found line with no leading whitespace and no colon before blank line.",
        "  multipart/alternative: NoBoundaryInMultipartDefect: "
        "A message claimed to be a multipart but had no boundary parameter.",
    ]
    hop3 = "   3  2013-06-12T02:22:13Z        +0s  Received: (qmail 19083 invoked from network);"
    assert hop3 + " 12 Jun 2013 02:22:13 -0000" in diagnosis  # no clauses: shown whole
    # mail-parser warns "Email content 'alternative' not handled" on this mail: not here
    assert [r for r in caplog.records if r.name.startswith("mailparser")] == []


def test_json_has_the_diagnosis_as_fields(
    store: Store,
    config: Config,
    config_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    quarantine(store, config, monkeypatch, POSTFIX_CLOCK)
    data = show_json(config_file, capsys)
    assert (data["id"], data["status"], data["mail_from"], data["rcpt_tos"]) == (
        1,
        "held",
        "postmaster@example.net",
        ["bugs@example.org"],
    )
    assert (
        data["error"]
        == "RuntimeError: bug while looking at <20170429233445.EEEEEEEE2@nyaaan.example.com>"
    )
    assert data["traceback"].startswith("Traceback") and data["traceback"].endswith(data["error"])
    assert "Subject: Undelivered Mail Returned to Sender" in data["mail"]
    diagnosis = data["diagnosis"]
    assert diagnosis["error"] is None
    assert diagnosis["declared_content_type"].startswith("multipart/report;")
    assert [h["hop"] for h in diagnosis["hops"]] == [1, 2, 3]
    assert [(h["from"], h["by"], h["with"], h["delay"]) for h in diagnosis["hops"]] == [
        (None, "nyaaan.example.com (Postfix)", None, None),
        (
            "nyaaan.example.com ([192.0.2.222]:22222)",
            "neko.example.com",
            "esmtps (TLSv1.2:ECDHE-RSA-AES256-GCM-SHA384:256) (Exim 4.87)",
            -14083200.0,  # the origin's clock is 163 days ahead
        ),
        ("neko.example.com", "neko.example.com (Dovecot)", "LMTP", 0.0),
    ]
    assert diagnosis["hops"][0]["date"] == "Thu, 9 Oct 2017 23:34:45 +0900 (JST)"
    assert diagnosis["hops"][0]["date_utc"] == "2017-10-09T14:34:45Z"
    assert diagnosis["defect_count"] == 4
    assert diagnosis["defects"][1] == {
        "where": "date-headers",
        "kind": "DateHeaderDefect",
        "detail": "received[2] (hop 1): weekday-mismatch",
    }
    assert diagnosis["structure"][:3] == [
        {"depth": 0, "content_type": "multipart/report"},
        {"depth": 1, "content_type": "text/plain"},
        {"depth": 1, "content_type": "message/delivery-status"},
    ]


def test_a_diagnosis_that_fails_is_reported_and_the_rest_still_shown(
    store: Store,
    config: Config,
    config_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """mail-parser 4.8 raises AttributeError on this real bounce (a part's start boundary is
    missing, and the message has no epilogue to look for it in)."""
    quarantine(store, config, monkeypatch, SENDGRID)
    lines = show_text(config_file, capsys)
    diagnosis = section(lines, "--- diagnosis (mail-parser) ---", "--- the mail ---")
    failure = "AttributeError: 'NoneType' object has no attribute 'index'"
    assert diagnosis == [f"mail-parser could not diagnose this mail: {failure}"]
    assert "Traceback (most recent call last):" in lines
    assert "Subject: Undelivered Mail Returned to Sender" in lines
    data = show_json(config_file, capsys)
    assert data["diagnosis"] == {
        "error": failure,
        "declared_content_type": None,
        "structure": [],
        "hops": [],
        "defect_count": 0,
        "defects": [],
    }
    assert data["message_id"] == "201210310946.q9V9khov007138@nijo.example.jp"


def test_ingest_never_loads_mail_parser(config_file: Path) -> None:
    """The diagnosis is imported inside ``quarantine show``: an MTA's ingest does not pay."""
    code = (
        "import sys; from mailtracker.cli import main; "
        "print(main(sys.argv[1:]), 'mailparser' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "ingest", "-c", str(config_file)],
        input=(MESSAGES / "new-issue.eml").read_bytes(),
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        timeout=120,
        check=False,
    )
    assert done.stdout.decode().split() == ["0", "False"], done.stderr.decode()
