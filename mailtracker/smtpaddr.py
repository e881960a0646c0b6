"""The address in a MAIL FROM or RCPT TO argument, parsed once per distinct argument.

aiosmtpd (1.4.6, ``SMTP._getaddr``) parses the argument with the stdlib's address parser
and, on every call, also defines a ``typing.Protocol`` class for a type hint: about 70 µs a
command on the bench machine, half of it making that class. The same arguments recur (the
tracker's address at nearly every RCPT, each sender's address), so ``command_address``
keeps the last few thousand answers; ``receive.GatewaySMTP`` uses it. Its answers are
aiosmtpd's, which ``tests/test_smtpaddr.py`` holds it to, with one exception: the stdlib's
(private) parser also fails on some malformed arguments with ``IndexError``,
``AttributeError`` or ``UnboundLocalError`` (``MAIL FROM:bob@``; found by fuzzing), which
aiosmtpd lets through to its exception hook, where a bug answers 451 and the client would
retry for days. Here any failure to read the argument means a malformed address, which
aiosmtpd answers ``553 5.1.3``, a permanent refusal.
"""

from __future__ import annotations

from email._header_value_parser import AddrSpec, AngleAddr, get_addr_spec, get_angle_addr
from functools import lru_cache

__all__ = ["command_address"]

# Arguments are at most one SMTP command line (512 bytes): a full cache is about 2 MB.
CACHED_ARGUMENTS = 4096


@lru_cache(maxsize=CACHED_ARGUMENTS)
def command_address(arg: str) -> tuple[str | None, str | None]:
    """``(address, rest)`` of an SMTP command argument as aiosmtpd reads it: ``("", "")``
    for none, ``(None, None)`` when it does not parse; the local-part limit is the caller's."""
    if not arg:
        return "", ""
    address: AngleAddr | AddrSpec
    try:
        if arg.lstrip().startswith("<"):
            address, rest = get_angle_addr(arg)
        else:
            address, rest = get_addr_spec(arg)
        return str(address.addr_spec), rest
    except Exception:  # HeaderParseError, or the parser's own crashes on malformed input
        return None, None
