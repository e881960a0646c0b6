"""The Jinja2 environment for mail (and later web) templates in the top-level ``templates/``.

``$MAILTRACKER_TEMPLATES`` points elsewhere, so a site can change the wording of its mail
without touching the code. Templates are plain text: no HTML autoescaping for mail.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

__all__ = ["filesize", "mail_environment", "templates_dir"]


def templates_dir() -> Path:
    configured = os.environ.get("MAILTRACKER_TEMPLATES")
    path = Path(configured) if configured else Path(__file__).resolve().parents[1] / "templates"
    if not (path / "mail").is_dir():
        raise FileNotFoundError(
            f"mail templates not found in {path}; install mailtracker from its source tree "
            "(pip install -e .) or set MAILTRACKER_TEMPLATES"
        )
    return path


def filesize(size: int) -> str:
    """``1536`` → ``"1.5 KB"``: sizes as people read them in a mail."""
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


@lru_cache(maxsize=4)
def mail_environment(path: Path | None = None) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(path or templates_dir())),
        autoescape=False,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["filesize"] = filesize
    return env
