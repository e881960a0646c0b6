"""DKIM signing, our own DKIM verification, and trusted Authentication-Results.

Keys are made here; DNS is always ``static_resolver`` (tests never touch the network). The
corpus cases check our verdicts against dkimpy's and MimeKit's published oracles.
"""

from __future__ import annotations

import base64
import email
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dkim
import dns.exception
import dns.resolver
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from mailtracker.authresults import Evidence, aligned, parse_authentication_results, parse_header
from mailtracker.config import OutgoingConfig
from mailtracker.dkimcheck import (
    DnsFunc,
    check_signatures,
    dns_resolver,
    static_resolver,
    verify_dkim,
)
from mailtracker.dkimsign import Signer
from mailtracker.errors import ConfigError
from tests.conftest import CORPUS

MAIL = (
    b"From: Bugs tracker <bugs@example.org>\r\nTo: Ann <ann@example.net>\r\n"
    b"Subject: [issue42] Crash on start\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
    b"Message-ID: <n1@example.org>\r\nList-Id: Example bugs <bugs.example.org>\r\n"
    b"Auto-Submitted: auto-generated\r\nX-Mailtracker-Loop: bugs@example.org\r\n"
    b"\r\nAnn changed status: new -> open\r\n"
)
ENCODING = serialization.Encoding.PEM
NO_PASSWORD = serialization.NoEncryption()
PKCS8 = serialization.PrivateFormat.PKCS8


def _pem(key: Any, fmt: serialization.PrivateFormat = PKCS8) -> bytes:
    return bytes(key.private_bytes(ENCODING, fmt, NO_PASSWORD))


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(params=["rsa", "ed25519"])
def signer(request: pytest.FixtureRequest, rsa_key: rsa.RSAPrivateKey) -> Signer:
    key = rsa_key if request.param == "rsa" else ed25519.Ed25519PrivateKey.generate()
    return Signer.from_pem("example.org", "mt", _pem(key))


def _dns(signer: Signer) -> DnsFunc:
    return static_resolver({signer.dns_name: signer.dns_record()})


def test_signed_mail_verifies(signer: Signer) -> None:
    signed, verdict = signer.sign(MAIL), Evidence(True, "dkim", "dkim:example.org")
    assert verify_dkim(signed, "example.org", _dns(signer)) == verdict
    header = signed[: signed.index(b"\r\nFrom:")].decode()
    tags = dict(re.findall(r"(\w+)=([^;]*)", re.sub(r"\s+", "", header)))
    assert header.startswith("DKIM-Signature: ") and signed.endswith(MAIL)
    assert (tags["a"], tags["c"], tags["d"], tags["s"]) == (
        signer.algorithm, "relaxed/relaxed", "example.org", "mt"
    )  # fmt: skip
    assert tags["h"] == "from:to:subject:date:message-id:list-id:auto-submitted"


def test_signing_keeps_lf_line_endings(signer: Signer) -> None:
    lf_mail = MAIL.replace(b"\r\n", b"\n")
    signed = signer.sign(lf_mail)
    assert b"\r" not in signed
    assert verify_dkim(signed, "example.org", _dns(signer)).verified


def test_from_is_signed_even_when_missing(signer: Signer) -> None:
    signed = signer.sign(b"To: a@example.net\r\nSubject: x\r\n\r\nbody\r\n")
    assert b"h=from : to : subject" in signed.replace(b"\r\n ", b" ")
    with pytest.raises(ValueError, match="cannot DKIM-sign"):
        signer.sign(b"no header at all")


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [(b"new -> open", b"new -> closed", "body hash did not verify"),
     (b"Crash on start", b"Crash on exit", "bad signature")],
)  # fmt: skip
def test_tampered_mail_does_not_verify(signer: Signer, old: bytes, new: bytes, reason: str) -> None:
    evidence = verify_dkim(signer.sign(MAIL).replace(old, new), "example.org", _dns(signer))
    assert evidence == Evidence(False, "", f"dkim:fail example.org ({reason})")


def test_added_command_after_signed_length_does_not_verify(rsa_key: rsa.RSAPrivateKey) -> None:
    signer = Signer.from_pem("example.org", "mt", _pem(rsa_key))
    header = dkim.DKIM(MAIL).sign(b"mt", b"example.org", signer.key, length=True)
    forged = header + MAIL + b"status: closed\r\n"
    assert check_signatures(header + MAIL, _dns(signer))[0].ok
    evidence = verify_dkim(forged, "example.org", _dns(signer))
    assert not evidence.verified
    assert "l= leaves part of the body unsigned" in evidence.detail


def test_only_a_signature_aligned_with_from_is_evidence(signer: Signer) -> None:
    other = Signer("mailer.example.com", signer.selector, signer.key)
    signed = other.sign(MAIL)
    assert check_signatures(signed, _dns(other))[0].ok  # valid, but for the wrong domain
    evidence = verify_dkim(signed, "example.org", _dns(other))
    assert evidence == Evidence(False, "", "dkim:mailer.example.com (not aligned with example.org)")
    assert verify_dkim(signer.sign(MAIL), "lists.example.org", _dns(signer)).verified
    assert verify_dkim(signed, "MAILER.Example.COM.", _dns(other)).verified


def test_aligned() -> None:
    for signer_domain in ("example.org", "Example.ORG.", "mail.example.org", "x.y.example.org"):
        assert aligned(signer_domain, "example.org") and aligned("example.org", signer_domain)
    for signer_domain in ("badexample.org", "example.org.evil.net", "org", ""):
        assert not aligned(signer_domain, "example.org") and not aligned("example.org", "")


def test_second_signature_can_verify(rsa_key: rsa.RSAPrivateKey) -> None:
    good = Signer.from_pem("example.org", "mt", _pem(rsa_key))
    broken = Signer("example.org", "gone", good.key)  # its key is not in DNS
    signed = broken.sign(good.sign(MAIL))
    checks = check_signatures(signed, _dns(good))
    assert [check.ok for check in checks] == [False, True]
    assert checks[0].reason == "no key record in DNS"
    assert verify_dkim(signed, "example.org", _dns(good)).verified


def test_failures_are_reasons_not_errors(signer: Signer) -> None:
    def broken(name: bytes, timeout: float = 5) -> bytes | None:
        raise OSError("resolver exploded")

    signed, dns = signer.sign(MAIL), _dns(signer)
    missing = verify_dkim(signed, "example.org", static_resolver({}))
    assert missing.detail == "dkim:fail example.org (no key record in DNS)"
    assert verify_dkim(signed, "example.org", broken).detail.endswith("(resolver exploded)")
    assert verify_dkim(MAIL, "example.org", dns).detail == "dkim:none (no signature)"
    for raw in (b"", b"\x00\xff:junk\n\n", b"DKIM-Signature: junk\r\nFrom: a@example.org\r\n\r\n"):
        assert not verify_dkim(raw, "example.org", dns).verified
    no_from = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=mt; h=to; bh=AA==; b=AA==\r\n"
    evidence = verify_dkim(no_from + MAIL, "example.org", dns)
    assert evidence.detail == "dkim:fail example.org (From is not signed)"


def test_static_resolver_matches_names_like_dkimpy_asks() -> None:
    lookup = static_resolver({"MT._domainkey.Example.org": "v=DKIM1; p=x"})
    assert lookup(b"mt._domainkey.example.org.", timeout=5) == b"v=DKIM1; p=x"
    assert lookup(b"mt._domainkey.example.org") == b"v=DKIM1; p=x"
    assert lookup(b"other._domainkey.example.org.") is None


def test_dns_resolver_without_a_network(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"a.example.": [[b"spf1"], [b"v=DKIM1; ", b"p=x"]], "b.example.": []}

    def resolve(name: str, rdtype: str, **options: Any) -> list[Any]:
        if name == "slow.":
            raise dns.exception.Timeout
        return [type("Txt", (), {"strings": strings}) for strings in answers[name]]

    monkeypatch.setattr(dns.resolver, "resolve", resolve)
    lookup = dns_resolver(timeout=1)
    assert (lookup(b"a.example."), lookup(b"b.example.")) == (b"v=DKIM1; p=x", None)
    with pytest.raises(dkim.DnsTimeoutError):
        lookup(b"slow.")


# --- the corpus: dkimpy's and MimeKit's pre-signed mail -----------------------------------


def _corpus(folder: str) -> Path:
    path = CORPUS / folder
    if not (path / "expected.json").is_file():
        message = f"the shared corpus folder {path} is missing"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run the corpus tests)")
        pytest.skip(message)
    return path


def _dkimpy_cases() -> list[dict[str, Any]]:
    path = CORPUS / "dkimpy" / "expected.json"
    return list(json.loads(path.read_text())["pre_signed"]) if path.is_file() else [{"file": "-"}]


def _record(folder: Path, text: str) -> str:
    """expected.json's TXT value: "@file" stands for a file in data/."""
    return (folder / "data" / text[1:]).read_text().strip() if text.startswith("@") else text


def _from_domain(raw: bytes) -> str:
    author = email.message_from_bytes(raw).get("From", "")
    return str(author).rsplit("@", 1)[-1].strip(" >").lower()


# Valid signatures for a domain other than the author's: ed25519test2.msg is signed by
# d=test.ex, From nobody@example.com; test2.message by d=gmail.com, From cfr@strace.org.
UNALIGNED = {"data/ed25519test2.msg", "data/test2.message"}


@pytest.mark.parametrize("case", _dkimpy_cases(), ids=lambda case: str(case["file"]))
def test_dkimpy_corpus_verdicts(case: dict[str, Any]) -> None:
    folder = _corpus("dkimpy")
    raw = (folder / case["file"]).read_bytes()
    records = case.get("dns", {}).items()  # names with a trailing dot, as dkimpy asks
    dns = static_resolver({name: _record(folder, text) for name, text in records})
    checks = check_signatures(raw, dns)
    assert any(check.ok for check in checks) is case["expect_verify"]
    if checks:
        assert checks[0].ok is case["expect_verify"]  # dkimpy's verdict is on the first
    expected = case["expect_verify"] and case["file"] not in UNALIGNED
    assert verify_dkim(raw, _from_domain(raw), dns).verified is expected


@pytest.mark.parametrize(
    "name", ["gmail.msg", "related.msg", "multipart-no-end-boundary.msg"]
)  # fmt: skip
def test_mimekit_gmail_mail_verifies(name: str) -> None:
    folder = _corpus("mimekit")
    entry = json.loads((folder / "expected.json").read_text())["dkim"][f"dkim/{name}"]
    pub = (folder / "dkim" / "gmail.pub").read_text()
    key = "".join(line for line in pub.splitlines() if not line.startswith("-----"))
    dns = static_resolver({"20120113._domainkey.gmail.com": f"k=rsa; p={key}"})
    raw = (folder / "dkim" / name).read_bytes()
    assert verify_dkim(raw, "gmail.com", dns).verified is entry["expect_verify"]
    assert not verify_dkim(raw.replace(b"\n\n", b"\n\nP.S. forged\n", 1), "gmail.com", dns).verified


def _fields(path: Path) -> list[str]:
    found = email.message_from_bytes(path.read_bytes()).get_all("Authentication-Results")
    return [str(value) for value in found or []]


def test_corpus_authentication_results() -> None:
    fields = _fields(_corpus("mimekit") / "dkim" / "gmail.msg")  # real mx.google.com ones
    assert parse_authentication_results(fields, ["mx.google.com"], "gmail.com").verified
    assert not parse_authentication_results(fields, ["mx.example.org"], "gmail.com").verified
    fields = _fields(_corpus("dkimpy") / "data" / "test.message.baddomain")  # header.i only
    assert parse_authentication_results(fields, ["lists.example.org"], "d1.example").verified
    assert not parse_authentication_results(fields, ["lists.example.org"], "example.com").verified


# --- Authentication-Results ---------------------------------------------------------------

TRUSTED = ["mx.example.org"]


def _ar(fields: list[str], from_domain: str = "example.org") -> Any:
    return parse_authentication_results(fields, TRUSTED, from_domain)


OWN = "mx.example.org; dkim=pass header.d=example.org"
AR_CASES = {  # fields top to bottom -> verified for From example.org
    "trusted dkim=pass": ([f"{OWN}; spf=pass smtp.mailfrom=ann@example.org"], True),
    "untrusted host": (["mx.attacker.net; dkim=pass header.d=example.org"], False),
    "untrusted above trusted": (["relay.example.net; dkim=fail", OWN.upper()], True),
    "forged below trusted": (["mx.example.org; dkim=fail header.d=example.org", OWN], False),
    "header.i of a subdomain": (["mx.example.org; dkim=pass header.i=@lists.example.org"], True),
    "another domain": (["mx.example.org; dkim=pass header.d=mailer.example.com"], False),
    "no domain": (["mx.example.org; dkim=pass"], False),
    "dmarc=pass": (["mx.example.org; dmarc=pass (p=reject) header.from=example.org"], True),
    "dmarc=pass subdomain": (["mx.example.org; dmarc=pass header.from=a.example.org"], False),
    "dmarc=fail": (["mx.example.org; dmarc=fail header.from=example.org"], False),
    "dmarc=pass no from": (["mx.example.org; dmarc=pass"], False),
    "none": (["mx.example.org; none"], False),
    "quoted id, method version": (['"mx.example.org"; dkim/1=pass header.d=example.org'], True),
    "upper case": (["mx.example.org; DKIM / 1 = Pass Header.D=Example.ORG"], True),
    "no authserv-id": (["dkim=pass header.d=example.org"], False),
    "not a version": (["mx.example.org extra; dkim=pass header.d=example.org"], False),
    "all quoted": ([f'"{OWN}"'], False),
    "id in a comment": (["(mx.example.org); dkim=pass header.d=example.org"], False),
    "empty": ([""], False),
    "junk": ([";;;==((("], False),
}


@pytest.mark.parametrize(("fields", "verified"), AR_CASES.values(), ids=AR_CASES.keys())
def test_authentication_results(fields: list[str], verified: bool) -> None:
    evidence = _ar(fields)
    assert evidence.verified is verified
    assert evidence.method == ("auth-results" if verified else "")


def test_authentication_results_details() -> None:
    assert _ar([OWN]).detail == "auth-results:mx.example.org dkim=pass header.d=example.org"
    assert _ar(["x.example.net; " + OWN]).detail == "auth-results:none from a trusted host"
    forged = _ar(["mx.example.org; dkim=fail (bad) header.d=example.org", OWN]).detail
    assert forged.startswith("auth-results:mx.example.org dkim=fail example.org (none aligned")


def test_comments_quoted_strings_versions_and_folding() -> None:
    field = (
        "Authentication-Results: mx.example.org (Postfix; v=3.8) 1;\r\n"
        '\tspf=pass (sender "ok"; really) smtp.mailfrom=ann@example.org;\r\n'
        ' dkim=pass (2048-bit key (nested; =) comment) reason="a; b=c"\r\n'
        '  header . d = "example.org" header.i=@example.org header.b=AbC+dE/0=='
    )
    parsed = parse_header(field)
    assert parsed is not None and parsed.authserv_id == "mx.example.org"
    assert [(r.method, r.result) for r in parsed.results] == [("spf", "pass"), ("dkim", "pass")]
    dkim_result = parsed.results[1]
    assert dkim_result.properties["reason"] == "a; b=c"
    assert dkim_result.properties["header.d"] == "example.org"
    assert dkim_result.properties["header.b"] == "AbC+dE/0"
    assert _ar([field]).verified


# --- Signer from configuration -------------------------------------------------------------


def _key_file(kind: str, rsa_key: rsa.RSAPrivateKey) -> bytes:
    ed_key = ed25519.Ed25519PrivateKey.generate()
    secret = serialization.BestAvailableEncryption(b"secret")
    makers: dict[str, Callable[[], bytes]] = {
        "rsa-pkcs8": lambda: _pem(rsa_key),
        "rsa-pkcs1": lambda: _pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL),
        "ed25519-pkcs8": lambda: _pem(ed_key),
        "ed25519-dknewkey": lambda: base64.b64encode(ed_key.private_bytes_raw()) + b"\n",
        "encrypted": lambda: rsa_key.private_bytes(ENCODING, PKCS8, secret),
        "ec": lambda: _pem(ec.generate_private_key(ec.SECP256R1())),
        "garbage": lambda: b"not a key\n",
    }
    return makers[kind]()


def _outgoing(path: Path, **change: str) -> OutgoingConfig:
    key = {"dkim_domain": "example.org", "dkim_selector": "mt", "dkim_private_key": str(path)}
    return OutgoingConfig(**{**key, **change})


@pytest.mark.parametrize("kind", ["rsa-pkcs8", "rsa-pkcs1", "ed25519-pkcs8", "ed25519-dknewkey"])
def test_signer_loads_key_files(kind: str, tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "dkim.pem"
    path.write_bytes(_key_file(kind, rsa_key))
    signer = Signer.from_config(_outgoing(path))
    assert signer is not None and signer.algorithm.startswith(kind.split("-")[0])
    assert verify_dkim(signer.sign(MAIL), "example.org", _dns(signer)).verified


def test_signer_basics(rsa_key: rsa.RSAPrivateKey) -> None:
    assert Signer.from_config(OutgoingConfig()) is None  # DKIM signing is not configured
    der = rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signer = Signer.from_pem("example.org", "mt", _pem(rsa_key))
    assert signer.dns_name == "mt._domainkey.example.org"
    assert signer.dns_record() == "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


@pytest.mark.parametrize(
    ("kind", "change", "message"),
    [
        ("", {}, "{where}: cannot read it (No such file or directory)"),
        ("garbage", {}, "{where}: not a usable DKIM private key (no PEM private key"),
        ("encrypted", {}, "{where}: not a usable DKIM private key (the key is encrypted"),
        ("ec", {}, "keys cannot sign DKIM; use RSA or ed25519"),
        ("rsa-pkcs8", {"dkim_domain": "bücher.example"}, "must be an ASCII (xn--) DNS name"),
        ("rsa-pkcs8", {"dkim_selector": ""}, "outgoing.dkim_selector must be set"),
    ],
)
def test_signer_config_errors(
    kind: str, change: dict[str, str], message: str, tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    path = tmp_path / "dkim.pem"
    if kind:
        path.write_bytes(_key_file(kind, rsa_key))
    where = f"outgoing.dkim_private_key: {path}"
    with pytest.raises(ConfigError, match=re.escape(message.format(where=where))):
        Signer.from_config(_outgoing(path, **change))


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_authentication_results_field_is_safe(field: str) -> None:
    parse_header(field)
    assert parse_authentication_results([field], [field.split(";")[0]], "example.org")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([b"", b"DKIM-Signature: v=1; d=example.org; "]))
def test_any_mail_is_safe(raw: bytes, prefix: bytes) -> None:
    assert not verify_dkim(prefix + raw, "example.org", static_resolver({})).verified
