"""HTML mail bodies as plain text a person can read in an issue comment.

Mail without a ``text/plain`` alternative still has to become a comment. We use ``html2text``
rather than stripping tags ourselves because it is maintained, copes with the markup real
clients send (Outlook's nested tables and conditional comments, Gmail's ``<div>`` soup) and
keeps what carries meaning: links with their URL, list items as bullets, paragraphs as blank
lines, images as their alt text. Its output is Markdown; we turn off what is only noise in a
plain-text comment: line wrapping, emphasis marks and backslash escapes.

If html2text raises on pathological markup, the stdlib ``html.parser`` strips the tags instead:
a body must never be lost because it could not be pretty.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import html2text

__all__ = ["html_to_text"]

_BLOCK_TAGS = frozenset(
    {"br", "p", "div", "li", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"}
)
_HIDDEN_TAGS = frozenset({"script", "style", "head", "title"})
_BLANK_RUNS = re.compile(r"\n{3,}")


class _Converter(html2text.HTML2Text):
    """html2text with the options for plain-text comments."""

    def __init__(self) -> None:
        super().__init__()
        self.body_width = 0  # no wrapping: the reader's client wraps
        self.unicode_snob = True  # keep "é" and curly quotes, not ASCII look-alikes
        self.ignore_emphasis = True  # no ** and _ around words
        self.images_to_alt = True
        self.inline_links = True
        self.wrap_links = False
        self.skip_internal_links = True

    def handle_data(self, data: str, entity_char: bool = False) -> None:
        # html2text backslash-escapes text that would be Markdown syntax ("1\. ", "\- ", "\\");
        # nobody renders our comments as Markdown, so take its own no-escape path.
        super().handle_data(data, entity_char=True)


class _TagStripper(HTMLParser):
    """The fallback: text of the document, a line break per block element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN_TAGS:
            self.hidden += 1
        elif tag in _BLOCK_TAGS:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_TAGS:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCK_TAGS:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.chunks.append(data)


def html_to_text(html: str) -> str:
    """Readable text of an HTML document: no wrapping, links as ``[text](url)``, ``*`` bullets."""
    try:
        text = _Converter().handle(html)
    except Exception:  # html2text has raised on malformed markup before (tables, entities)
        text = _strip_tags(html)
    return _tidy(text)


def _strip_tags(html: str) -> str:
    stripper = _TagStripper()
    try:
        stripper.feed(html)
        stripper.close()
    except Exception:  # the last resort must not raise either
        return html
    return "".join(stripper.chunks)


def _tidy(text: str) -> str:
    """Trailing spaces off every line (html2text marks ``<br>`` with two), at most one blank
    line in a row, non-breaking spaces as plain spaces."""
    lines = [line.rstrip() for line in text.replace("\xa0", " ").splitlines()]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n")
