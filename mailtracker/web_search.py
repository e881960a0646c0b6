"""The issue list of the web and the API: filters, paging and full-text search.

Search looks at issue titles and message bodies through the indexes of migration 0008
(SQLite FTS5, PostgreSQL GIN on ``to_tsvector('simple', …)``). Every word must match
(``crash login`` finds both); ``log*`` matches a prefix. To answer within a second on a
million messages, a query reads at most ``MATCH_CAP`` matching messages, the newest first,
and as many titles: an issue whose only match is older than that is not listed, which a
more specific query fixes. Results are issues, newest activity first, like the list itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, false, func, literal_column, or_, select, table
from sqlalchemy import column as sql_column
from sqlalchemy.orm import Session

from mailtracker.models import Address, Issue, IssueLabel, Message, Tracker

__all__ = ["MATCH_CAP", "MAX_PER_PAGE", "Filters", "Page", "search_issues"]

MATCH_CAP = 2000
MAX_PER_PAGE = 100
_MAX_WORDS = 8
_WORD = re.compile(r"(\w{1,64})(\*?)", re.UNICODE)
_NOBODY = ("nobody", "none")
_SIMPLE: Any = literal_column("'simple'::regconfig")


@dataclass(frozen=True)
class Filters:
    """What the issue list asks for; empty strings mean "any"."""

    status: str = ""
    priority: str = ""
    label: str = ""
    assignee: str = ""
    q: str = ""


@dataclass(frozen=True)
class Page:
    issues: list[Issue]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def search_issues(
    session: Session, tracker: str, filters: Filters, page: int, per_page: int
) -> Page:
    """One page of the tracker's issues that pass ``filters``, newest activity first."""
    tracker_id = session.scalar(select(Tracker.id).where(Tracker.name == tracker))
    if tracker_id is None:
        return Page([], 0, page, per_page)
    where = [Issue.tracker_id == tracker_id, *_conditions(session, filters)]
    total = int(session.scalar(select(func.count(Issue.id)).where(*where)) or 0)
    query = (
        select(Issue)
        .where(*where)
        .order_by(Issue.updated_at.desc(), Issue.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return Page(list(session.scalars(query)), total, page, per_page)


def _conditions(session: Session, f: Filters) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if f.status:
        found.append(Issue.status == f.status)
    if f.priority:
        found.append(Issue.priority == f.priority)
    if f.label:
        found.append(Issue.id.in_(select(IssueLabel.issue_id).where(IssueLabel.label == f.label)))
    if f.assignee.lower() in _NOBODY:
        found.append(Issue.assignee_id.is_(None))
    elif f.assignee:
        owners = select(Address.user_id).where(Address.email == f.assignee.strip().lower())
        found.append(Issue.assignee_id.in_(owners))
    if f.q.strip():
        found.append(_matches(session, f.q))
    return found


def _terms(q: str) -> list[tuple[str, bool]]:
    """The words of a query and whether each is a prefix (``word*``); punctuation is
    dropped, so no query can be a syntax error in FTS5 or tsquery."""
    return [(w, bool(star)) for w, star in _WORD.findall(q)][:_MAX_WORDS]


def _matches(session: Session, q: str) -> ColumnElement[bool]:
    terms = _terms(q)
    if not terms:
        return false()
    if session.get_bind().dialect.name == "postgresql":
        return _postgresql(terms)
    return _sqlite(terms)


def _sqlite(terms: list[tuple[str, bool]]) -> ColumnElement[bool]:
    expression = " ".join(f'"{w}"*' if star else f'"{w}"' for w, star in terms)
    bodies = _fts5("messages_fts", expression)
    titles = _fts5("issues_fts", expression)
    return or_(
        Issue.id.in_(select(Message.issue_id).where(Message.id.in_(bodies))),
        Issue.id.in_(titles),
    )


def _fts5(name: str, expression: str) -> Any:
    """The newest ``MATCH_CAP`` rowids of an FTS5 table that match: FTS5 walks its index
    in rowid order, so the limit bounds the work however common the words are."""
    fts = table(name, sql_column("rowid"))
    return (
        select(fts.c.rowid)
        .where(literal_column(name).op("MATCH")(expression))
        .order_by(fts.c.rowid.desc())
        .limit(MATCH_CAP)
    )


def _postgresql(terms: list[tuple[str, bool]]) -> ColumnElement[bool]:
    expression = " & ".join(f"'{w}':*" if star else f"'{w}'" for w, star in terms)
    query = func.to_tsquery(_SIMPLE, expression)
    bodies = (
        select(Message.id)
        .where(func.to_tsvector(_SIMPLE, Message.body).op("@@")(query))
        .order_by(Message.id.desc())
        .limit(MATCH_CAP)
    )
    titles = (
        select(Issue.id)
        .where(func.to_tsvector(_SIMPLE, Issue.title).op("@@")(query))
        .order_by(Issue.id.desc())
        .limit(MATCH_CAP)
        .correlate(None)  # its own scan of issues, not the outer query's row
    )
    return or_(
        Issue.id.in_(select(Message.issue_id).where(Message.id.in_(bodies))),
        Issue.id.in_(titles),
    )
