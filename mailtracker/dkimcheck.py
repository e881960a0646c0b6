"""Evidence that a mail really comes from the domain in its From header.

Why: From is free text, and this tracker lets mail change issues, so it must know whether the
From domain really sent a mail. Two kinds of evidence count (INTERFACE.md, "verified sender"):

* a DKIM signature (RFC 6376; ed25519 per RFC 8463) that we verify ourselves with dkimpy and
  whose ``d=`` is aligned with the From domain (DMARC relaxed alignment, RFC 7489 §3.1.1);
* an ``Authentication-Results`` header (RFC 8601) added by a host the operator trusts,
  saying ``dkim=pass`` for an aligned domain or ``dmarc=pass`` for the From domain.

Everything here is pure: DNS comes in as a function (``DnsFunc``; ``static_resolver`` for
tests and offline sites), and nothing raises on hostile input: a broken signature, a DNS
failure or a garbled header is an ``Evidence`` that does not verify, with the reason.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import dkim
import dns.exception
import dns.resolver
from dkim.canonicalization import CanonicalizationPolicy
from dkim.util import parse_tag_value

__all__ = [
    "AuthResults",
    "DnsFunc",
    "Evidence",
    "MethodResult",
    "SignatureCheck",
    "aligned",
    "check_signatures",
    "dns_resolver",
    "parse_authentication_results",
    "parse_header",
    "static_resolver",
    "verify_dkim",
]

# RFC 6376 §6.1: verifiers MAY limit how many signatures they try; each costs a DNS lookup.
MAX_SIGNATURES = 8


@dataclass(frozen=True)
class Evidence:
    """The verdict on one mail: ``method`` is "dkim", "auth-results" or "" (not verified)."""

    verified: bool
    method: str
    detail: str


class DnsFunc(Protocol):
    """What dkimpy 1.1.8 calls: ``dnsfunc(name, timeout=5)``, name as bytes with a trailing
    dot (``b"mt._domainkey.example.org."``); returns the TXT record or None."""

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None: ...


def _norm(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


def static_resolver(records: Mapping[str, str]) -> DnsFunc:
    """TXT records from configuration (``authentication.static_dns``), names without the
    trailing dot; lookups ignore case and a trailing dot."""
    table = {_norm(name): text.encode("utf-8") for name, text in records.items()}

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        return table.get(_norm(name.decode("ascii", "replace")))

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


def aligned(signer: str, author: str) -> bool:
    """Relaxed alignment (RFC 7489 §3.1.1), approximated without the Public Suffix List:
    equal, or one a subdomain of the other, never a bare TLD. Caveat: a key published by a
    dotted public suffix (``co.uk``, ``github.io``) would count for every domain below it."""
    a, b = _norm(signer), _norm(author)
    if not a or not b:
        return False
    shorter, longer = sorted((a, b), key=len)
    return a == b or ("." in shorter and longer.endswith("." + shorter))


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


# --- Authentication-Results (RFC 8601) -------------------------------------------------


@dataclass(frozen=True)
class MethodResult:
    """One resinfo: ``dkim=pass header.d=example.org`` → method, result, properties."""

    method: str
    result: str
    properties: Mapping[str, str] = field(default_factory=dict)

    def domain(self, *names: str) -> str:
        """The domain in the first property present: ``@example.org`` → ``example.org``."""
        for name in names:
            if self.properties.get(name):
                return _norm(self.properties[name].rsplit("@", 1)[-1])
        return ""


@dataclass(frozen=True)
class AuthResults:
    """One parsed header: who added it and what it found."""

    authserv_id: str
    results: tuple[MethodResult, ...]


_QUOTED = '"'  # a token that starts with this was a quoted-string (RFC 5322 §3.2.4)


def _skip_comment(text: str, i: int) -> int:
    """Index after the comment opened at ``i``; comments nest (RFC 5322 §3.2.2)."""
    depth = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 1
        elif char in "()":
            depth += 1 if char == "(" else -1
            if depth == 0:
                return i + 1
        i += 1
    return i


def _quoted_string(text: str, i: int) -> tuple[str, int]:
    """The content of the quoted-string opened at ``i`` (quoted-pairs undone), next index."""
    chars: list[str] = []
    i += 1
    while i < len(text) and text[i] != '"':
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        chars.append(text[i])
        i += 1
    return "".join(chars), i + 1


def _segments(text: str) -> list[list[str]]:
    """The parts between ";" as tokens: words, quoted strings (marked with ``_QUOTED``) and
    "="; comments and folding whitespace (CFWS) separate tokens and are dropped."""
    segments: list[list[str]] = [[]]
    word: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char in '(";= \t\r\n' and word:
            segments[-1].append("".join(word))
            word = []
        if char == "(":
            i = _skip_comment(text, i)
            continue
        if char == '"':
            content, i = _quoted_string(text, i)
            segments[-1].append(_QUOTED + content)
            continue
        if char == ";":
            segments.append([])
        elif char == "=":
            segments[-1].append(char)
        elif char not in " \t\r\n":
            word.append(char)
        i += 1
    segments[-1].extend(["".join(word)] if word else [])
    return segments


def _text(token: str) -> str:
    return token[1:] if token.startswith(_QUOTED) else token


def _authserv_id(segment: list[str]) -> str:
    """``authserv-id [CFWS authres-version]`` (RFC 8601 §2.2), else "" (malformed)."""
    version_ok = len(segment) == 1 or (len(segment) == 2 and segment[1].isdigit())
    return _text(segment[0]) if version_ok and "=" not in segment else ""


def _key(words: list[str]) -> str:
    """The property name that ends ``words``; CFWS may surround "." and "/" (RFC 8601 §2.2)."""
    joined = re.sub(r"\s*([./])\s*", r"\1", " ".join(words)).split()
    return joined[-1].lower() if joined else ""


def _pairs(segment: list[str]) -> list[tuple[str, str]]:
    """``key = value`` pairs; a stray "=" (base64 padding in ``header.b``) is skipped."""
    pairs: list[tuple[str, str]] = []
    words: list[str] = []
    i = 0
    while i < len(segment):
        token = segment[i]
        if token == "=" and words and i + 1 < len(segment) and segment[i + 1] != "=":
            pairs.append((_key(words), _text(segment[i + 1])))
            i += 1
        if token == "=":
            words = []
        else:
            words.append(_text(token))
        i += 1
    return pairs


def _method_result(segment: list[str]) -> MethodResult | None:
    """``method[/version]=result *(ptype.property=value)`` (RFC 8601 §2.2)."""
    pairs = _pairs(segment)
    if not pairs or not pairs[0][0]:
        return None
    method, result = pairs[0][0].split("/")[0], pairs[0][1].lower()
    return MethodResult(method, result, dict(reversed(pairs[1:])))  # the first one wins


def parse_header(value: str) -> AuthResults | None:
    """One Authentication-Results field (with or without its name), or None if malformed."""
    if value[:23].lower() == "authentication-results:":
        value = value[23:]
    segments = _segments(value)
    authserv_id = _authserv_id(segments[0])
    if not authserv_id:
        return None
    results = (_method_result(segment) for segment in segments[1:])
    return AuthResults(authserv_id, tuple(result for result in results if result))


def parse_authentication_results(
    raw_headers: list[str], trusted: Sequence[str], from_domain: str
) -> Evidence:
    """Judge the topmost Authentication-Results added by a trusted host. Never raises.

    ``raw_headers`` are the fields top to bottom. RFC 8601 §5: only a field whose
    authserv-id names a host we trust may be believed, and any field below the one our
    border MTA added may come from the sender; so only the topmost trusted field counts.
    """
    trusted_ids = {_norm(host) for host in trusted}
    for value in raw_headers:
        parsed = parse_header(value)
        if parsed and _norm(parsed.authserv_id) in trusted_ids:
            return _judge(parsed, from_domain)
    return Evidence(False, "", "auth-results:none from a trusted host")


def _judge(parsed: AuthResults, from_domain: str) -> Evidence:
    """dkim=pass for an aligned d= (or i=), or dmarc=pass for exactly the From domain."""
    where = f"auth-results:{parsed.authserv_id}"
    for result in parsed.results:
        if result.result != "pass":
            continue
        signer = result.domain("header.d", "header.i")
        if result.method == "dkim" and aligned(signer, from_domain):
            return Evidence(True, "auth-results", f"{where} dkim=pass header.d={signer}")
        author = result.domain("header.from")
        if result.method == "dmarc" and from_domain and author == _norm(from_domain):
            return Evidence(True, "auth-results", f"{where} dmarc=pass header.from={author}")
    said = ", ".join(
        f"{r.method}={r.result} {r.domain('header.d', 'header.i', 'header.from')}".strip()
        for r in parsed.results
    )
    return Evidence(False, "", f"{where} {said or 'no results'} (none aligned with {from_domain})")
