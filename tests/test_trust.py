"""Trust through the real SMTP path: reply tokens, DKIM (keys made here, DNS injected through
``static_dns``), Authentication-Results from trusted hosts only, ``verify_senders``, and
DKIM-signed notifications that verify against the published key."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlalchemy import select

from mailtracker import store as queries
from mailtracker import tokens
from mailtracker.config import AuthenticationConfig, Config, OutgoingConfig
from mailtracker.dkimcheck import static_resolver, verify_dkim
from mailtracker.dkimsign import Signer
from mailtracker.models import SigningKey
from mailtracker.serve import Gateway
from mailtracker.store import Store
from tests.conftest import MESSAGES
from tests.harness import running_gateway, send
from tests.inspect_db import outbox, show
from tests.test_end_to_end import maildir_box, wait_for


def rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


ALICE = Signer.from_pem("example.com", "s1", rsa_pem())


def trusting(config: Config, mode: str = "commands", **auth: object) -> Config:
    """``config`` with Alice's domain key published in ``static_dns``."""
    records = {ALICE.dns_name: ALICE.dns_record()}
    authentication = AuthenticationConfig(static_dns=records, **auth)  # type: ignore[arg-type]
    trackers = tuple(replace(t, verify_senders=mode) for t in config.trackers)
    return replace(config, authentication=authentication, trackers=trackers)


def mail(
    body: str, subject: str, message_id: str, sender: str = "alice@example.com", extra: str = ""
) -> bytes:
    return (
        f"{extra}From: {sender}\r\nTo: bugs@example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <{message_id}>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\n"
        f"{body}\r\n"
    ).encode()


@pytest.fixture
def gateway(store: Store, config: Config) -> Iterator[Gateway]:
    """Issue 1 by Alice (a developer), Bob commented, so both have had notifications."""
    with store.write() as session:
        queries.create_user(session, "alice@example.com", "Alice", "developer")
    with running_gateway(trusting(config)) as running:
        assert (
            send(running.port, (MESSAGES / "new-issue.eml").read_bytes(), ["bugs@example.org"])[0]
            == 250
        )
        assert (
            send(
                running.port,
                (MESSAGES / "reply-by-subaddress.eml").read_bytes(),
                ["bugs+1@example.org"],
            )[0]
            == 250
        )
        yield running


def reply_to_of(store: Store, recipient: str) -> str:
    row = next(r for r in reversed(outbox(store)) if r.recipient == recipient)
    value = message_from_bytes(row.raw, policy=policy.default)["Reply-To"]
    return str(value.addresses[0].addr_spec)


def test_signed_command_is_verified_and_applied(gateway: Gateway, store: Store) -> None:
    raw = ALICE.sign(mail("Status: open\r\n\r\nLooking at it.", "Re: [issue1] x", "a-1@x"))
    assert send(gateway.port, raw, ["bugs@example.org"]) == (250, b"2.0.0 Ok: stored as bugs/1")
    issue = show(store)
    assert issue["status"] == "open"
    assert (issue["messages"][-1]["verified"], issue["messages"][-1]["evidence"]) == (
        True,
        "dkim:example.com",
    )


def test_tampered_signature_is_not_evidence(gateway: Gateway, store: Store) -> None:
    raw = ALICE.sign(mail("Status: open\r\n\r\nLooking at it.", "Re: [issue1] x", "a-2@x"))
    code, text = send(gateway.port, raw.replace(b"Looking", b"Laughing"), ["bugs@example.org"])
    assert code == 550
    assert text.decode().startswith(
        "5.7.1 property changes need a verified sender, and this mail carries no proof "
        "that it comes from alice@example.com: sign your mail with DKIM"
    )
    assert show(store)["status"] == "new"


def test_unverified_comment_is_stored_and_marked(gateway: Gateway, store: Store) -> None:
    raw = mail("Just a comment.", "Re: [issue1] x", "a-3@x")
    assert send(gateway.port, raw, ["bugs@example.org"])[0] == 250
    last = show(store)["messages"][-1]
    assert (last["verified"], last["evidence"]) == (False, "dkim:none (no signature)")


def test_reply_token_verifies_its_owner_only(gateway: Gateway, store: Store) -> None:
    address = reply_to_of(store, "alice@example.com")
    assert address.startswith("bugs+1+") and address.endswith("@example.org")
    own = mail("Status: pending\r\n\r\nWaiting for the reporter.", "Re: [issue1] x", "a-4@x")
    assert send(gateway.port, own, [address])[0] == 250
    assert show(store)["status"] == "pending"
    assert show(store)["messages"][-1]["evidence"] == "token:bugs/1"
    # The same address used by someone the notification was forwarded to grants nothing.
    forwarded = mail(
        "Status: closed\r\n\r\nClosing.", "Re: [issue1] x", "m-1@x", sender="mallory@example.net"
    )
    code, _ = send(gateway.port, forwarded, [address])
    assert code == 550 and show(store)["status"] == "pending"
    comment = mail("Interesting.", "Re: [issue1] x", "m-2@x", sender="mallory@example.net")
    assert send(gateway.port, comment, [address])[0] == 250
    last = show(store)["messages"][-1]
    assert (last["author"], last["verified"]) == ("mallory@example.net", False)


def test_forged_token_is_refused(gateway: Gateway, store: Store) -> None:
    address = reply_to_of(store, "alice@example.com")
    forged = address.replace("bugs+1+", "bugs+1+9").replace("@", "x@")
    other_issue = address.replace("bugs+1+", "bugs+2+")
    for target in (forged, other_issue):
        code, text = send(gateway.port, mail("hi", "x", f"f-{len(target)}@x"), [target])
        assert code == 550
        assert b"carries a reply token that is not valid" in text or b"has no issue 2" in text


def test_rotated_tokens_keep_working_for_the_grace_period(gateway: Gateway, store: Store) -> None:
    address = reply_to_of(store, "alice@example.com")
    with store.write() as session:
        tokens.rotate(session)
    assert send(gateway.port, mail("Status: open\r\n\r\nok", "Re: x", "r-1@x"), [address])[0] == 250
    with store.write() as session:
        for key in session.scalars(select(SigningKey).where(SigningKey.retired_at.is_not(None))):
            key.retired_at -= tokens.GRACE + timedelta(days=1)
    code, text = send(gateway.port, mail("hi", "Re: x", "r-2@x"), [address])
    assert code == 550 and b"not valid (damaged, forged or expired)" in text


def test_authentication_results_only_from_trusted_hosts(store: Store, config: Config) -> None:
    with store.write() as session:
        queries.create_user(session, "alice@example.com", "Alice", "developer")
    trusted = "Authentication-Results: mx.example.org; dkim=pass header.d=example.com\r\n"
    forged = "Authentication-Results: evil.example.net; dkim=pass header.d=example.com\r\n"
    with running_gateway(
        trusting(config, trusted_authserv_ids=("mx.example.org",), verify_dkim=False)
    ) as running:
        send(running.port, (MESSAGES / "new-issue.eml").read_bytes(), ["bugs@example.org"])
        ok = mail("[ok]", "Re: [issue1] x [status=open]", "ar-1@x", extra=trusted)
        assert send(running.port, ok, ["bugs@example.org"])[0] == 250
        bad = mail("[bad]", "Re: [issue1] x [status=closed]", "ar-2@x", extra=forged)
        assert send(running.port, bad, ["bugs@example.org"])[0] == 550
        below = mail(
            "[below]",
            "Re: [issue1] x [status=closed]",
            "ar-3@x",
            extra=forged + trusted.replace("pass", "fail"),
        )
        assert send(running.port, below, ["bugs@example.org"])[0] == 550
    assert show(store)["status"] == "open"


def test_verify_all_refuses_unverified_mail(store: Store, config: Config) -> None:
    with running_gateway(trusting(config, mode="all")) as running:
        code, text = send(running.port, mail("hello", "New thing", "all-1@x"), ["bugs@example.org"])
        assert code == 550 and b"takes mail only from verified senders" in text
        signed = ALICE.sign(mail("hello", "New thing", "all-2@x"))
        assert send(running.port, signed, ["bugs@example.org"])[0] == 250


def test_notifications_are_dkim_signed(store: Store, config: Config, tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "dkim.pem").write_bytes(key)
    outgoing = OutgoingConfig(
        maildir=config.outgoing.maildir,
        dkim_domain="example.org",
        dkim_selector="mt",
        dkim_private_key=str(tmp_path / "dkim.pem"),
    )
    signing = replace(config, outgoing=outgoing)
    with running_gateway(signing, deliver=True) as running:
        send(running.port, (MESSAGES / "new-issue.eml").read_bytes(), ["bugs@example.org"])
        send(
            running.port,
            (MESSAGES / "reply-by-subaddress.eml").read_bytes(),
            ["bugs+1@example.org"],
        )
        # The delivery worker makes the Maildir; making it here too would race with it.
        wait_for(lambda: maildir_box(Path(config.outgoing.maildir)) is not None)
        box = maildir_box(Path(config.outgoing.maildir))
        assert box is not None
        wait_for(lambda: len(box) >= 2)
    signer = Signer.from_config(outgoing)
    assert signer is not None
    dns = static_resolver({signer.dns_name: signer.dns_record()})
    delivered = [box.get_bytes(k) for k in box.iterkeys()]
    assert len(delivered) == 2
    for raw in delivered:
        assert raw.startswith(b"DKIM-Signature:")
        assert verify_dkim(raw, "example.org", dns).verified
        assert not verify_dkim(raw.replace(b"reproduce", b"REPRODUCE"), "example.org", dns).verified
