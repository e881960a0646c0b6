"""The message mix every measurement sends: the same bytes to the ceiling and to the tracker.

Why a fixed, seeded mix: ratios between the null server and ``serve`` only mean something
when both take the very same mails. The shares follow a busy tracker's day: about 30 % new
issues (some with a Cc'd colleague, who joins the nosy list), about 50 % replies (quoted
text, a signature, every fourth with an attachment), about 20 % commands (a subject suffix
or ``Key: value`` lines at the top of the body). Replies and commands name their issue by
In-Reply-To/References only, the way mail clients do, so the mix works on any database
whatever its issue numbers: the threads they answer are opened by ``warmup_mails`` first.

Every mail carries an ``Authentication-Results`` header from ``AUTHSERV`` (as an MTA running
OpenDKIM adds it), which the bench configuration trusts, so commands are verified and the
DKIM check never reaches for DNS.
"""

from __future__ import annotations

import base64
import quopri
import random
from dataclasses import dataclass

__all__ = [
    "AUTHSERV",
    "DOMAIN",
    "TRACKER",
    "Mail",
    "big_mail",
    "developers",
    "measured_mails",
    "plain_mail",
    "warmup_mails",
]

TRACKER = "tracker@bench.example"
DOMAIN = "example.com"
AUTHSERV = "mx.bench.example"
SENDERS = 400
DEVELOPERS = 20
THREADS = 200
_WORDS = [
    *("crash", "search", "index", "timeout", "login", "page", "error", "slow", "cache"),
    *("user", "report", "upload", "build", "release", "memory", "disk", "mail", "thread"),
    *("queue", "worker", "config", "parser", "server", "client", "request"),
]


@dataclass(frozen=True)
class Mail:
    """One SMTP transaction: envelope and the mail's bytes (CRLF, not yet dot-stuffed)."""

    sender: str
    rcpt: str
    data: bytes
    kind: str


def _sender(rng: random.Random) -> str:
    return f"user{rng.randrange(SENDERS)}@{DOMAIN}"


def developers() -> list[str]:
    """Who may change properties (commands come from them): registered before the run."""
    return [f"dev{k}@{DOMAIN}" for k in range(DEVELOPERS)]


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def _paragraphs(rng: random.Random, count: int) -> list[str]:
    return [" ".join(_sentence(rng, rng.randint(6, 14)) for _ in range(3)) for _ in range(count)]


def _headers(sender: str, subject: str, mid: str, extra: list[str]) -> list[str]:
    return [
        f"Authentication-Results: {AUTHSERV}; dkim=pass header.d={DOMAIN}",
        f"From: {sender.split('@')[0].title()} <{sender}>",
        f"To: {TRACKER}",
        f"Subject: {subject}",
        f"Message-ID: <{mid}>",
        "Date: Tue, 25 Nov 2025 10:00:00 +0000",
        "MIME-Version: 1.0",
        *extra,
    ]


def _plain(headers: list[str], body: str) -> bytes:
    head = [*headers, "Content-Type: text/plain; charset=utf-8"]
    return ("\r\n".join(head) + "\r\n\r\n" + body.replace("\n", "\r\n") + "\r\n").encode()


def _with_attachment(headers: list[str], body: str, name: str, payload: bytes) -> bytes:
    encoded = base64.encodebytes(payload).decode().replace("\n", "\r\n")
    content_type = f'application/octet-stream; name="{name}"'
    return _multipart(headers, body, (content_type, name, "base64"), encoded)


def _multipart(
    headers: list[str], body: str, attached: tuple[str, str, str], encoded: str
) -> bytes:
    """A text part and one attachment: ``attached`` is (its Content-Type, its file name,
    its transfer encoding), ``encoded`` its body in that encoding, with CRLF line ends."""
    boundary = "=-bench-boundary-="
    content_type, name, cte = attached
    parts = [
        "\r\n".join([*headers, f'Content-Type: multipart/mixed; boundary="{boundary}"']),
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "",
        body.replace("\n", "\r\n"),
        f"--{boundary}",
        f"Content-Type: {content_type}",
        f'Content-Disposition: attachment; filename="{name}"',
        f"Content-Transfer-Encoding: {cte}",
        "",
        encoded + f"--{boundary}--",
        "",
    ]
    return "\r\n".join(parts).encode()


def _new_issue(rng: random.Random, tag: str, i: int) -> Mail:
    sender = _sender(rng)
    extra = [f"Cc: {_sender(rng)}"] if rng.random() < 0.4 else []
    title = _sentence(rng, rng.randint(3, 8)).rstrip(".")
    body = "\n\n".join(_paragraphs(rng, rng.randint(1, 4))) + "\n\n-- \nSent from a bench\n"
    data = _plain(_headers(sender, title, f"{tag}-new-{i}@{DOMAIN}", extra), body)
    return Mail(sender, TRACKER, data, "new")


def _thread_headers(rng: random.Random, thread: int, old: list[str]) -> list[str]:
    root = f"warm-{thread}@{DOMAIN}"
    refs = [*old, root]
    return [f"In-Reply-To: <{root}>", "References: " + " ".join(f"<{r}>" for r in refs)]


def _quoted(rng: random.Random) -> str:
    quoted = "\n".join("> " + p for p in _paragraphs(rng, rng.randint(1, 3)))
    answer = "\n\n".join(_paragraphs(rng, rng.randint(1, 2)))
    return f"{answer}\n\nOn Tue, 25 Nov 2025, someone wrote:\n{quoted}\n\n-- \nA. Bench\n"


def _reply(rng: random.Random, tag: str, i: int, old: list[str]) -> Mail:
    sender = _sender(rng)
    thread = rng.randrange(THREADS)
    headers = _headers(
        sender, f"Re: thread {thread}", f"{tag}-re-{i}@{DOMAIN}", _thread_headers(rng, thread, old)
    )
    body = _quoted(rng)
    if rng.random() < 0.25:
        payload = rng.randbytes(rng.randint(2_000, 40_000))
        data = _with_attachment(headers, body, f"log-{i}.bin", payload)
        return Mail(sender, TRACKER, data, "reply")
    return Mail(sender, TRACKER, _plain(headers, body), "reply")


def _command(rng: random.Random, tag: str, i: int, old: list[str]) -> Mail:
    sender = rng.choice(developers())
    thread = rng.randrange(THREADS)
    status = rng.choice(("open", "pending", "resolved"))
    mid = f"{tag}-cmd-{i}@{DOMAIN}"
    extra = _thread_headers(rng, thread, old)
    if rng.random() < 0.5:
        subject = f"Re: thread {thread} [status={status}; priority={rng.choice(('low', 'high'))}]"
        body = _paragraphs(rng, 1)[0] + "\n"
    else:
        subject = f"Re: thread {thread}"
        body = f"Status: {status}\nLabels: +bench\n\n" + _paragraphs(rng, 1)[0] + "\n"
    return Mail(sender, TRACKER, _plain(_headers(sender, subject, mid, extra), body), "command")


def measured_mails(
    tag: str, count: int, seed: int = 7, old_ids: list[str] | None = None
) -> list[Mail]:
    """``count`` mails of the mix; ``tag`` keeps Message-IDs unique between rounds.

    ``old_ids``: ids of mail stored long ago (the growth seed), named in References the way a
    long thread names its old ancestors, so lookups touch the big tables' indexes."""
    rng = random.Random(f"{seed}-{tag}")
    old = old_ids or []
    mails = []
    for i in range(count):
        ancestors = [rng.choice(old)] if old else []
        pick = rng.random()
        if pick < 0.3:
            mails.append(_new_issue(rng, tag, i))
        elif pick < 0.8:
            mails.append(_reply(rng, tag, i, ancestors))
        else:
            mails.append(_command(rng, tag, i, ancestors))
    return mails


def warmup_mails() -> list[Mail]:
    """The ``THREADS`` issues that replies and commands answer, one per thread root."""
    rng = random.Random(1)
    mails = []
    for thread in range(THREADS):
        sender = _sender(rng)
        extra = [f"Cc: {_sender(rng)}"]
        body = "\n\n".join(_paragraphs(rng, 2)) + "\n"
        headers = _headers(sender, f"thread {thread}", f"warm-{thread}@{DOMAIN}", extra)
        mails.append(Mail(sender, TRACKER, _plain(headers, body), "new"))
    return mails


def plain_mail(tag: str, body: str = "A comment.\n", extra: list[str] | None = None) -> Mail:
    sender = f"user1@{DOMAIN}"
    headers = _headers(sender, f"note {tag}", f"{tag}@{DOMAIN}", extra or [])
    return Mail(sender, TRACKER, _plain(headers, body), "plain")


def big_log_mail(size: int, tag: str = "biglog") -> Mail:
    """A mail of about ``size`` bytes, nearly all of it a log file attached as
    quoted-printable text (as Thunderbird attaches text files with long or 8-bit lines)."""
    sender = f"user2@{DOMAIN}"
    headers = _headers(sender, "the worker's log", f"{tag}@{DOMAIN}", [])
    rng = random.Random(5)
    words = ["retry", "timeout", "connection", "queue", "Grüße", "naïve", "0x7f3a", "ok"]
    lines: list[str] = []
    total = 0
    while total < size - 2_000:
        line = f"2026-11-25 12:{len(lines) % 60:02d} " + " ".join(rng.choices(words, k=14))
        lines.append(line)
        total += len(line.encode()) + 1
    encoded = quopri.encodestring("\n".join(lines).encode())
    keep = int(len(lines) * (size - 2_000) / (len(encoded) + encoded.count(b"\n")))
    log = quopri.encodestring("\n".join(lines[:keep]).encode()).decode().replace("\n", "\r\n")
    attached = ('text/plain; charset=utf-8; name="worker.log"', "worker.log", "quoted-printable")
    data = _multipart(headers, "The log of last night's run.", attached, log + "\r\n")
    return Mail(sender, TRACKER, data, "big")


def big_mail(size: int, tag: str = "big") -> Mail:
    """A mail of about ``size`` bytes, nearly all of it one base64 attachment."""
    sender = f"user2@{DOMAIN}"
    headers = _headers(sender, "a big attachment", f"{tag}@{DOMAIN}", [])
    payload = random.Random(3).randbytes((size - 2_000) * 3 // 4 * 76 // 77)
    data = _with_attachment(headers, "See the dump.\n", "core.bin", payload)
    return Mail(sender, TRACKER, data, "big")
