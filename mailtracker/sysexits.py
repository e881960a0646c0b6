"""Exit codes (sysexits.h) and the one rule that turns an SMTP reply into one.

Why a module of its own: an MTA's pipe reads our verdict from the exit code (Postfix's
pipe(8) bounces on most codes, defers on ``EX_TEMPFAIL``), and the same verdict must come out
whether ``ingest`` ran the pipeline itself or handed the mail to the running gateway over
LMTP and got a reply line back. This module imports nothing, so the pipe pays nothing for it.
"""

from __future__ import annotations

__all__ = [
    "EX_CONFIG",
    "EX_DATAERR",
    "EX_NOINPUT",
    "EX_NOPERM",
    "EX_NOUSER",
    "EX_OK",
    "EX_OSERR",
    "EX_SOFTWARE",
    "EX_TEMPFAIL",
    "EX_USAGE",
    "for_reply",
]

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_NOUSER = 67
EX_SOFTWARE = 70
EX_OSERR = 71
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78


def for_reply(reply: str) -> int:
    """The exit code for an SMTP reply line such as ``550 5.1.1 no such tracker``.

    2xx is success; 4xx is "try again later"; a permanent failure is "no such user" for
    5.1.x (bad destination address, RFC 3463), "permission denied" for 5.7.x (security or
    policy), and "data format error" for the rest (too big, refused content).
    """
    code = reply[:3]
    if code.startswith("2"):
        return EX_OK
    if not code.startswith("5"):
        return EX_TEMPFAIL  # 4xx, and anything unreadable: the MTA keeps the mail
    status = reply[4:].split(" ", 1)[0]
    if status.startswith("5.1."):
        return EX_NOUSER
    if status.startswith("5.7."):
        return EX_NOPERM
    return EX_DATAERR
