"""The one exception tree of mailtracker; each class has exactly one disposition.

::

    MailtrackerError
    ├── ConfigError            bad configuration: one line naming key and file, exit 78
    └── MailError              raised by a pipeline stage about one mail
        ├── Ignored            accept (250 / exit 0) and store nothing: our own loop
        ├── Duplicate          accept (250 / exit 0): this Message-ID is already stored
        ├── Held               accept (250 / exit 0) and keep for a moderator
        ├── Rejected           refuse for good (5xx / exit 65): the reason is for a human
        │   ├── UnknownRecipient   no such tracker address (550 5.1.1 / exit 67)
        │   ├── TooBig             over the size limit (552 5.3.4 / exit 65)
        │   └── NotPermitted       sender may not do this (550 5.7.1 / exit 77)
        └── TempFailure        could not store now, try later (451 4.3.0 / exit 75)

Only ``pipeline.py`` maps these to SMTP replies and exit codes; stages only raise them.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "Duplicate",
    "Held",
    "Ignored",
    "MailError",
    "MailtrackerError",
    "NotPermitted",
    "Rejected",
    "TempFailure",
    "TooBig",
    "UnknownRecipient",
]


class MailtrackerError(Exception):
    """Base of every error mailtracker raises on purpose."""


class ConfigError(MailtrackerError):
    """The configuration cannot be used; the message names the key and the file."""


class MailError(MailtrackerError):
    """A stage decided what happens to one mail; ``reason`` is shown to its sender."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Ignored(MailError):
    """Accept the mail and do nothing with it (a loop of our own notifications)."""


class Duplicate(MailError):
    """The mail is already stored; accepting it again must change nothing."""


class Held(MailError):
    """An unknown sender wrote to a ``moderate`` tracker: keep the mail for an admin."""


class Rejected(MailError):
    """The mail will never be accepted as it is; the reason tells the sender why."""


class UnknownRecipient(Rejected):
    """The recipient is not one of our addresses."""


class TooBig(Rejected):
    """The mail is larger than ``smtp.max_message_size``."""


class NotPermitted(Rejected):
    """The sender is not allowed to do what the mail asks."""


class TempFailure(MailError):
    """Storing failed for a reason that may pass (database down or locked)."""
