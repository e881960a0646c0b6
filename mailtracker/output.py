"""How the CLI sub-commands print what they list, so every command looks and parses alike.

People get an aligned table (``(none)`` when it is empty); ``--json`` gets the JSON of
INTERFACE.md, indented and in UTF-8, for scripts. The command modules (``actions.py``,
``user_actions.py``, ``queue_actions.py``) share these two functions instead of each
formatting its own.
"""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["print_json", "table"]


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def table(header: list[str], rows: list[list[str]]) -> None:
    if not rows:
        print("(none)")
        return
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
