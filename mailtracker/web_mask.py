"""Address hiding for everything the public sees: ``alice@example.com`` → ``alice@…``.

Public pages, the anonymous API and the downloads never show a person's address whole:
harvesters read issue trackers. The local part stays, because people recognise each other
by it. The tracker's own addresses are the way in, so they stay whole, less any reply token
(``bugs+42+TOKEN@`` → ``bugs+42@``): a token is meant for one recipient's mailbox.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from mailtracker.config import TrackerConfig

__all__ = ["Masker"]

# Wide on purpose: anything that looks like an address is hidden, also inside URLs.
_ADDRESS = re.compile(r"([\w.!#$%&'*+/=?^`{|}~-]+)@([\w-]+(?:\.[\w-]+)*)", re.UNICODE)


class Masker:
    """Hides addresses in values and text; ``enabled=False`` shows them (trusted callers)."""

    def __init__(self, trackers: Iterable[TrackerConfig], *, enabled: bool = True) -> None:
        self._ours = {(t.local_part, t.domain) for t in trackers}
        self.enabled = enabled

    def address(self, value: str | None) -> str | None:
        if value is None or not self.enabled:
            return value
        return self.text(value)

    def text(self, value: str) -> str:
        if not self.enabled or "@" not in value:
            return value
        return _ADDRESS.sub(self._replace, value)

    def _replace(self, match: re.Match[str]) -> str:
        local, domain = match.group(1), match.group(2)
        base, _, rest = local.partition("+")
        if (base.lower(), domain.lower()) in self._ours:
            number = rest.split("+", 1)[0]
            return f"{base}+{number}@{domain}" if number else f"{base}@{domain}"
        return f"{local.split('+', 1)[0]}@…"

    def issue(self, data: dict[str, Any]) -> dict[str, Any]:
        """An ``issue_json`` object with every address and every free text masked."""
        if not self.enabled:
            return data
        out = dict(data, title=self.text(data["title"]), assignee=self.address(data["assignee"]))
        out["nosy"] = [self.text(e) for e in data["nosy"]]
        if "messages" in data:
            out["messages"] = [self._message(m) for m in data["messages"]]
            out["history"] = [self._entry(h) for h in data["history"]]
        return out

    def _message(self, message: dict[str, Any]) -> dict[str, Any]:
        masked = dict(message, author=self.address(message["author"]))
        for key in ("subject", "body", "visible", "evidence"):  # ids name hosts, not people
            if isinstance(message.get(key), str):
                masked[key] = self.text(message[key])
        return masked

    def _entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        changes = [
            {k: self.text(v) if isinstance(v, str) else v for k, v in change.items()}
            for change in entry["changes"]
        ]
        return dict(entry, actor=self.address(entry["actor"]), changes=changes)
