"""DKIM signatures on outgoing notifications (RFC 6376; ed25519-sha256 per RFC 8463).

Why: receivers increasingly drop or junk unsigned mail from a domain that publishes DMARC,
and a signature lets them (and this tracker, when a notification comes back) tell our mail
from a forgery. With ``outgoing.dkim_domain``, ``dkim_selector`` and ``dkim_private_key``
set, every notification is signed relaxed/relaxed (RFC 6376 §3.4: survives the re-folding
and trailing-whitespace changes MTAs make) over the headers a reader relies on.

The key file is read and checked once (``Signer.from_config``, at start-up) and kept in the
form dkimpy signs with, so signing thousands of mails costs no file access or PEM parsing
beyond dkimpy's own.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import dkim
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailtracker.config import OutgoingConfig
from mailtracker.errors import ConfigError

__all__ = ["SIGNED_HEADERS", "Signer"]

# Signed when present; From always (RFC 6376 §5.4: From MUST be signed). The List-* and
# Auto-Submitted fields are signed so that nobody en route can redirect unsubscribes or
# make a notification look like a person's mail.
SIGNED_HEADERS = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "reply-to",
    "list-id",
    "list-post",
    "list-help",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "auto-submitted",
)

_RSA_PEM = b"-----BEGIN RSA PRIVATE KEY-----"
# RFC 8301 §3.2: signers MUST use RSA keys of at least 1024 bits.
MIN_RSA_BITS = 1024


@dataclass(frozen=True)
class Signer:
    """Signs with one key: ``key`` is a PKCS#1 PEM (RSA) or the base64 32-byte seed
    (ed25519), the forms dkimpy takes; build it with ``from_pem`` or ``from_config``."""

    domain: str
    selector: str
    key: bytes = field(repr=False)  # never in a log line or a traceback

    @classmethod
    def from_config(cls, outgoing: OutgoingConfig) -> Signer | None:
        """The configured signer, None when DKIM signing is not configured."""
        names = ("dkim_domain", "dkim_selector", "dkim_private_key")
        values = [getattr(outgoing, name) for name in names]
        if not any(values):
            return None
        for name, value in zip(names, values, strict=True):
            if not value:
                raise ConfigError(f"outgoing.{name} must be set with the other dkim_ keys")
        return cls._load(outgoing.dkim_domain, outgoing.dkim_selector, outgoing.dkim_private_key)

    @classmethod
    def _load(cls, domain: str, selector: str, path: str) -> Signer:
        where = f"outgoing.dkim_private_key: {path}"
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read it ({exc.strerror})") from exc
        try:
            return cls.from_pem(domain, selector, pem)
        except ValueError as exc:
            raise ConfigError(f"{where}: not a usable DKIM private key ({exc})") from exc

    @classmethod
    def from_pem(cls, domain: str, selector: str, pem: bytes) -> Signer:
        """From an unencrypted PEM private key (RSA PKCS#1 or PKCS#8, ed25519 PKCS#8) or a
        base64 ed25519 seed as dkimpy's ``dknewkey`` writes it. Raises ValueError."""
        for name, value in (("domain", domain), ("selector", selector)):
            if not value.isascii() or not value or any(c in value for c in " ;:@\\"):
                raise ValueError(f"{name} {value!r} must be an ASCII (xn--) DNS name")
        seed = _ed25519_seed(pem)
        if seed:
            return cls(domain, selector, base64.b64encode(seed))
        return cls(domain, selector, _dkimpy_key(_load_pem(pem)))

    @property
    def algorithm(self) -> str:
        return "rsa-sha256" if self.key.startswith(_RSA_PEM) else "ed25519-sha256"

    @property
    def dns_name(self) -> str:
        """Where the public key must be published (RFC 6376 §3.6.2.1)."""
        return f"{self.selector}._domainkey.{self.domain}"

    def dns_record(self) -> str:
        """The TXT record to publish at ``dns_name`` (RFC 6376 §3.6.1, RFC 8463 §4)."""
        if self.algorithm == "rsa-sha256":
            public = serialization.load_pem_private_key(self.key, None).public_key()
            der = public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")
        seed = base64.b64decode(self.key)
        raw = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
        return "v=DKIM1; k=ed25519; p=" + base64.b64encode(raw).decode("ascii")

    def sign(self, raw: bytes) -> bytes:
        """``raw`` with a DKIM-Signature header prepended. Raises ValueError if dkimpy
        cannot sign it (a mail this tracker rendered always can)."""
        linesep = b"\r\n" if b"\r\n" in raw else b"\n"
        try:
            message = dkim.DKIM(raw, linesep=linesep)
            include = _headers_to_sign(name for name, _ in message.headers)
            header = message.sign(
                self.selector.encode("ascii"),
                self.domain.encode("ascii"),
                self.key,
                signature_algorithm=self.algorithm.encode("ascii"),
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=include,
            )
        except dkim.DKIMException as exc:
            raise ValueError(f"cannot DKIM-sign: {exc}") from exc
        return bytes(header) + raw


def _headers_to_sign(present: Iterable[bytes]) -> list[bytes]:
    """Each of ``SIGNED_HEADERS`` once per occurrence (dkimpy signs repeats bottom-up)."""
    counts = Counter(name.decode("ascii", "replace").lower() for name in present)
    counts["from"] = max(counts["from"], 1)
    return [name.encode("ascii") for name in SIGNED_HEADERS for _ in range(counts[name])]


def _ed25519_seed(text: bytes) -> bytes:
    """The 32-byte seed if ``text`` is dkimpy's ed25519 key file (base64, one line)."""
    stripped = text.strip()
    if len(stripped) != 44:
        return b""
    try:
        seed = base64.b64decode(stripped, validate=True)
    except binascii.Error:
        return b""
    return seed if len(seed) == 32 else b""


def _load_pem(pem: bytes) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError as exc:  # cryptography's way of saying "encrypted"
        raise ValueError("the key is encrypted; store it without a passphrase") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError("no PEM private key in the file") from exc
    if isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        return key
    raise ValueError(f"{type(key).__name__.lstrip('_')} keys cannot sign DKIM; use RSA or ed25519")


def _dkimpy_key(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    no_password = serialization.NoEncryption()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return base64.b64encode(key.private_bytes_raw())
    if key.key_size < MIN_RSA_BITS:
        raise ValueError(f"RSA key of {key.key_size} bits; DKIM needs at least {MIN_RSA_BITS}")
    pem_format = serialization.PrivateFormat.TraditionalOpenSSL  # PKCS#1, what dkimpy parses
    return key.private_bytes(serialization.Encoding.PEM, pem_format, no_password)
