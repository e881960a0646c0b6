"""Authentication-Results (RFC 8601): what a trusted border MTA found about a mail.

Why a module of its own: most mail is judged by the header its MTA added, and that needs no
DKIM library; ``dkimcheck`` (dkimpy, dnspython: about 70 ms to import) is loaded only when
we verify a signature ourselves. ``Evidence`` and ``aligned`` are shared by both.
Pure, and never raises on hostile input: a garbled header is evidence that does not verify.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "AuthResults",
    "Evidence",
    "MethodResult",
    "aligned",
    "norm",
    "parse_authentication_results",
    "parse_header",
]


@dataclass(frozen=True)
class Evidence:
    """The verdict on one mail: ``method`` is "dkim", "auth-results" or "" (not verified)."""

    verified: bool
    method: str
    detail: str


def norm(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


def aligned(signer: str, author: str) -> bool:
    """Relaxed alignment (RFC 7489 §3.1.1), approximated without the Public Suffix List:
    equal, or one a subdomain of the other, never a bare TLD. Caveat: a key published by a
    dotted public suffix (``co.uk``, ``github.io``) would count for every domain below it."""
    a, b = norm(signer), norm(author)
    if not a or not b:
        return False
    shorter, longer = sorted((a, b), key=len)
    return a == b or ("." in shorter and longer.endswith("." + shorter))


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
                return norm(self.properties[name].rsplit("@", 1)[-1])
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
    trusted_ids = {norm(host) for host in trusted}
    for value in raw_headers:
        parsed = parse_header(value)
        if parsed and norm(parsed.authserv_id) in trusted_ids:
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
        if result.method == "dmarc" and from_domain and author == norm(from_domain):
            return Evidence(True, "auth-results", f"{where} dmarc=pass header.from={author}")
    said = ", ".join(
        f"{r.method}={r.result} {r.domain('header.d', 'header.i', 'header.from')}".strip()
        for r in parsed.results
    )
    return Evidence(False, "", f"{where} {said or 'no results'} (none aligned with {from_domain})")
