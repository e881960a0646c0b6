"""The OpenAPI 3.1 document of ``/api/v1/``, written by hand next to the code it describes.

Written out rather than generated, so that the contract is read and reviewed as one text;
``tests/test_api_schema.py`` runs every documented operation against the real server and
checks each answer against this document, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Any

from mailtracker import __version__
from mailtracker.commands import PROPERTIES
from mailtracker.config import Config
from mailtracker.web_search import MAX_PER_PAGE

__all__ = ["openapi_document"]

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_STRS = {"type": "array", "items": _STR}


def _obj(props: dict[str, Any], required: list[str] | None = None, **extra: Any) -> Any:
    return {"type": "object", "properties": props, "required": required or list(props), **extra}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


# The objects of views.issue_json (``show --json``), field by field.
_ATTACHMENT = {
    "filename": _STR,
    "content_type": _STR,
    "size": {"type": "integer", "minimum": 0},
    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
}
_SUMMARY = {
    "id": _STR,
    "tracker": _STR,
    "number": {"type": "integer", "minimum": 1},
    "title": _STR,
    "status": _STR,
    "priority": _NSTR,
    "assignee": _NSTR,
    "labels": _STRS,
    "nosy": _STRS,
    "created": _NSTR,
    "updated": _NSTR,
}
_MESSAGE = {
    "message_id": _STR,
    "author": _NSTR,
    "date": _STR,
    "subject": _STR,
    "body": _STR,
    "visible": _STR,
    "verified": {"type": "boolean"},
    "evidence": _STR,
    "attachments": {"type": "array", "items": _ref("Attachment")},
}
_TRACKER = {
    "name": _STR,
    "title": _STR,
    "address": _STR,
    "subject_tag": _STR,
    "statuses": _STRS,
    "priorities": _STRS,
    "labels": _STRS,
    "issues": {"type": "integer", "minimum": 0},
}


def _schemas() -> dict[str, Any]:
    change = _obj({"property": _STR, "old": _NSTR, "new": _NSTR}, ["property"])
    history = {"date": _NSTR, "actor": _NSTR, "changes": {"type": "array", "items": change}}
    thread = {
        "messages": {"type": "array", "items": _ref("Message")},
        "history": {"type": "array", "items": _ref("HistoryEntry")},
    }
    return {
        "Error": _obj({"error": _STR}),
        "Tracker": _obj(_TRACKER),
        "Attachment": _obj(_ATTACHMENT),
        "AttachmentLink": _obj({**_ATTACHMENT, "url": _STR, "message_id": _STR}),
        "IssueSummary": _obj(_SUMMARY),
        "Message": _obj(_MESSAGE),
        "HistoryEntry": _obj(history),
        "Issue": _obj({**_SUMMARY, **thread}),
        **_write_schemas(),
    }


def _write_schemas() -> dict[str, Any]:
    one_line = {"type": ["string", "null"], "maxLength": 1000}
    listish = {"oneOf": [one_line, {"type": "array", "items": {"type": "string"}}]}
    props: dict[str, Any] = {
        p: listish if p in ("labels", "nosy") else one_line for p in PROPERTIES
    }
    comment = {"type": "string", "description": "the text of the message, as a mail body"}
    return {
        "NewIssue": _obj(
            {**props, "title": {"type": "string", "minLength": 1}, "comment": comment},
            ["title"],
            additionalProperties=False,
        ),
        "Comment": _obj(
            {**props, "comment": {**comment, "minLength": 1}},
            ["comment"],
            additionalProperties=False,
        ),
        "Change": _obj(
            {**props, "comment": comment}, [], additionalProperties=False, minProperties=1
        ),
    }


def _json(schema: Any, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "a malformed request",
        401: "no API token, or one that is not valid",
        403: "refused by the permission rules, with the reason mail would get",
        404: "no such tracker or issue",
        413: "too big for the tracker",
        422: "refused data, with every problem named (as a mail would be refused)",
        500: "kept for the administrators: it tripped a bug",
        503: "the database is busy or unavailable: try again (Retry-After)",
    }
    return {str(c): _json(_ref("Error"), reasons[c]) for c in codes}


_QUERY = {
    "status": "one of the tracker's statuses",
    "priority": "one of the tracker's priorities",
    "label": "a label",
    "assignee": "the assignee's address, or 'nobody'",
    "q": "words in the title or any message (all must match; word* for a prefix)",
}


def _parameter(name: str, where: str, schema: dict[str, Any], text: str = "") -> Any:
    found: dict[str, Any] = {"name": name, "in": where, "schema": schema}
    if where == "path":
        found["required"] = True
    return found | ({"description": text} if text else {})


def _parameters(config: Config) -> dict[str, Any]:
    names = [t.name for t in config.trackers]
    number = {"type": "integer", "minimum": 1, "maximum": 999_999_999}
    params: dict[str, Any] = {
        "tracker": _parameter("tracker", "path", {"type": "string", "enum": names}),
        "number": _parameter("number", "path", number),
        "page": _parameter("page", "query", {"type": "integer", "minimum": 1, "maximum": 10**6}),
        "per_page": _parameter(
            "per_page", "query", {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE}
        ),
    }
    for name, text in _QUERY.items():
        params[name] = _parameter(name, "query", {"type": "string", "maxLength": 200}, text)
    return params


def _param(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}


def _write_op(summary: str, body: str, params: list[str], created: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [{"token": []}],
        "parameters": [_param(p) for p in params],
        "requestBody": _body(body),
        "responses": {
            "201": _json(_ref("Issue"), created),
            "200": _json(_ref("Issue"), "the same request was made before (Idempotency-Key)"),
            **_errors(400, 401, 403, 404, 413, 422, 500, 503),
        },
    }


_READ: list[dict[str, list[str]]] = [{}, {"token": []}]  # anonymous, or with a token


def _read_op(summary: str, params: list[str], schema: Any, errors: tuple[int, ...]) -> Any:
    return {
        "summary": summary,
        "security": _READ,
        "parameters": [_param(p) for p in params],
        "responses": {"200": _json(schema, summary), **_errors(*errors)},
    }


def _array(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


def _paths() -> dict[str, Any]:
    issue = ["tracker", "number"]
    filters = ["tracker", "status", "priority", "label", "assignee", "q", "page", "per_page"]
    return {
        "/api/v1/trackers": {"get": _read_op("the trackers", [], _array("Tracker"), ())},
        "/api/v1/{tracker}/issues": {
            "get": _read_op(
                "issues, newest activity first (as mailtracker issues --json)",
                filters,
                _array("IssueSummary"),
                (400, 401, 404),
            ),
            "post": _write_op("open an issue", "NewIssue", ["tracker"], "the new issue"),
        },
        "/api/v1/{tracker}/issues/{number}": {
            "get": _read_op(
                "one issue with messages and history (as mailtracker show --json)",
                issue,
                _ref("Issue"),
                (401, 404),
            ),
            "patch": _write_op("change properties", "Change", issue, "changed"),
        },
        "/api/v1/{tracker}/issues/{number}/messages": {
            "post": _write_op("comment", "Comment", issue, "comment added"),
        },
        "/api/v1/{tracker}/issues/{number}/attachments": {
            "get": _read_op(
                "the issue's attachments, with download URLs",
                issue,
                _array("AttachmentLink"),
                (401, 404),
            )
        },
    }


def openapi_document(config: Config) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mailtracker",
            "version": __version__,
            "description": "The tracker's issues as JSON. Writes become mail to the tracker "
            "and pass the same checks; errors carry the reason a mail would get.",
        },
        "servers": [{"url": config.web.base_url.rstrip("/")}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "parameters": _parameters(config),
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
    }
