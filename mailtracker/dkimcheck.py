"""Our own DKIM check: evidence that a mail really comes from the domain in its From header.

Why: From is free text, and this tracker lets mail change issues, so it must know whether the
From domain really sent a mail. Two kinds of evidence count (INTERFACE.md, "verified sender"):

* a DKIM signature (RFC 6376; ed25519 per RFC 8463) that we verify ourselves with dkimpy and
  whose ``d=`` is aligned with the From domain (DMARC relaxed alignment, RFC 7489 §3.1.1):
  this module;
* an ``Authentication-Results`` header (RFC 8601) added by a host the operator trusts,
  saying ``dkim=pass`` for an aligned domain or ``dmarc=pass`` for the From domain:
  ``authresults``, which needs neither dkimpy nor dnspython, so that this module (about
  70 ms to import) is loaded only for mail that needs our own check.

Everything here is pure: DNS comes in as a function (``DnsFunc``; ``static_resolver`` for
tests and offline sites), and nothing raises on hostile input: a broken signature, a DNS
failure or a garbled header is an ``Evidence`` that does not verify, with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import dkim
import dns.exception
import dns.resolver
from dkim.canonicalization import CanonicalizationPolicy
from dkim.util import parse_tag_value

from mailtracker.authresults import Evidence, aligned, norm

__all__ = [
    "DnsFunc",
    "SignatureCheck",
    "check_signatures",
    "dns_resolver",
    "static_resolver",
    "verify_dkim",
]

# RFC 6376 §6.1: verifiers MAY limit how many signatures they try; each costs a DNS lookup.
MAX_SIGNATURES = 8


class DnsFunc(Protocol):
    """What dkimpy 1.1.8 calls: ``dnsfunc(name, timeout=5)``, name as bytes with a trailing
    dot (``b"mt._domainkey.example.org."``); returns the TXT record or None."""

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None: ...


def static_resolver(records: Mapping[str, str]) -> DnsFunc:
    """TXT records from configuration (``authentication.static_dns``), names without the
    trailing dot; lookups ignore case and a trailing dot."""
    table = {norm(name): text.encode("utf-8") for name, text in records.items()}

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        return table.get(norm(name.decode("ascii", "replace")))

    return lookup


def dns_resolver(timeout: float = 5.0) -> DnsFunc:
    """TXT records from DNS through dnspython; this ``timeout`` wins over dkimpy's own."""
    limit = timeout

    def lookup(name: bytes, timeout: float = limit) -> bytes | None:
        try:
            answer = dns.resolver.resolve(
                name.decode("ascii"), "TXT", lifetime=limit, raise_on_no_answer=False
            )
        except (UnicodeDecodeError, dns.resolver.NXDOMAIN):
            return None  # no such name: no key (RFC 6376 §6.1.2, PERMFAIL)
        except dns.exception.DNSException as exc:  # timeout, SERVFAIL: TEMPFAIL
            raise dkim.DnsTimeoutError(str(exc)) from exc
        texts = [b"".join(rdata.strings) for rdata in answer]
        # RFC 6376 §3.6.2.2: several TXT records are ambiguous; prefer the DKIM key record.
        return next((t for t in texts if t.startswith(b"v=DKIM1")), texts[0] if texts else None)

    return lookup


@dataclass(frozen=True)
class SignatureCheck:
    """One DKIM-Signature: its ``d=`` domain, whether it verified, and why not."""

    domain: str
    ok: bool
    reason: str = ""


class _Reasons(logging.Handler):
    """Collects what dkimpy logs at ERROR while it swallows a key or DNS failure; its
    ``logger`` is outside the logging hierarchy, so nothing reaches the operator's log."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []
        self.logger = logging.Logger("mailtracker.dkimcheck", logging.ERROR)
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def check_signatures(raw: bytes, dnsfunc: DnsFunc) -> list[SignatureCheck]:
    """Verify every DKIM-Signature (at most ``MAX_SIGNATURES``), whatever its domain."""
    return list(_checks(raw, dnsfunc, lambda domain: True))


def _checks(
    raw: bytes, dnsfunc: DnsFunc, wanted: Callable[[str], bool]
) -> Iterator[SignatureCheck]:
    reasons = _Reasons()
    try:
        message = dkim.DKIM(raw, logger=reasons.logger)
        values = [v for n, v in message.headers if n.lower() == b"dkim-signature"]
    except Exception as exc:  # hostile input: dkimpy's parser may raise anything
        yield SignatureCheck("", False, f"unparsable message ({exc})")
        return
    for index, value in enumerate(values[:MAX_SIGNATURES]):
        tags = _tags(value)
        domain = tags.get(b"d", b"").decode("ascii", "replace").lower()
        if wanted(domain):
            yield SignatureCheck(domain, *_check_one(message, index, tags, dnsfunc, reasons))
        else:
            yield SignatureCheck(domain, False, "not checked")


def _tags(value: bytes) -> dict[bytes, bytes]:
    try:
        return dict(parse_tag_value(value))
    except Exception:  # malformed tag list: dkimpy reports it again when verifying
        return {}


def _check_one(
    message: dkim.DKIM, index: int, tags: dict[bytes, bytes], dnsfunc: DnsFunc, reasons: _Reasons
) -> tuple[bool, str]:
    problem = _our_rules(message, tags)
    if problem:
        return False, problem
    reasons.messages.clear()
    try:
        ok = bool(message.verify(idx=index, dnsfunc=dnsfunc))
    except Exception as exc:  # dkimpy raises DKIMException and, on odd input, others
        return False, _explain(str(exc))
    why = _explain(reasons.messages[-1]) if reasons.messages else "bad signature"
    return ok, "" if ok else why


def _our_rules(message: dkim.DKIM, tags: dict[bytes, bytes]) -> str:
    """Checks dkimpy leaves to the caller; an empty string when the signature may count."""
    signed = [name.strip().lower() for name in tags.get(b"h", b"").split(b":")]
    if tags and b"from" not in signed:
        return "From is not signed"  # RFC 6376 §6.1.1: MUST ignore such a signature
    try:  # RFC 6376 §8.2: with l= anyone may append text (here: commands) to the body
        policy = CanonicalizationPolicy.from_c_value(tags.get(b"c", b"simple/simple"))
        unsigned = b"l" in tags and int(tags[b"l"]) < len(policy.canonicalize_body(message.body))
    except Exception:  # bad c= or l=: dkimpy names the problem when verifying
        return ""
    return "l= leaves part of the body unsigned" if unsigned else ""


_EXPLAIN = (
    ("body hash mismatch", "body hash did not verify"),
    ("missing public key", "no key record in DNS"),
    ("DnsTimeoutError", "DNS lookup failed"),
)


def _explain(message: str) -> str:
    return next((why for start, why in _EXPLAIN if message.startswith(start)), message[:200])


def verify_dkim(raw: bytes, from_domain: str, dnsfunc: DnsFunc) -> Evidence:
    """Pass when a DKIM signature aligned with ``from_domain`` verifies. Never raises.

    Signatures not aligned with the From domain are not checked at all (they could not
    count, and checking them costs DNS lookups a sender chooses).
    """
    checks: list[SignatureCheck] = []
    for check in _checks(raw, dnsfunc, lambda domain: aligned(domain, from_domain)):
        if check.ok:
            return Evidence(True, "dkim", f"dkim:{check.domain}")
        checks.append(check)
    if not checks:
        return Evidence(False, "", "dkim:none (no signature)")
    return Evidence(False, "", "; ".join(_describe(c, from_domain) for c in checks))


def _describe(check: SignatureCheck, from_domain: str) -> str:
    if check.reason == "not checked":
        return f"dkim:{check.domain or '(no d=)'} (not aligned with {from_domain or '(none)'})"
    return f"dkim:fail {check.domain} ({check.reason})"
