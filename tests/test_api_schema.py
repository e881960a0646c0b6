"""The OpenAPI document against the real server: schemathesis generates requests for every
documented operation (reads anonymous, writes with a developer's token) and checks each
answer: no server error, a documented status code and content type, a body that matches
the documented schema. Schema-valid data may still be refused (an unknown status, a rule of
``permissions.py``), so "valid data is accepted" is the one check left out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from mailtracker.web_openapi import openapi_document
from tests.web_harness import Tracker, tracker_fixture, web_config


@pytest.fixture(scope="module", params=["sqlite"])
def tracker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Tracker]:
    yield from tracker_fixture(request, tmp_path_factory.mktemp("schema"))


@pytest.fixture(scope="module")
def served_schema(tracker: Tracker) -> Any:
    """The document as the server serves it (its trackers are the fixture's)."""
    return schemathesis.openapi.from_url(tracker.url + "/api/v1/openapi.json")


def _labels() -> list[str]:
    """The operations, read from the document itself at collection time."""
    document = openapi_document(web_config("sqlite://", Path(".")))
    return [r.ok().label for r in schemathesis.openapi.from_dict(document).get_all_operations()]


@pytest.mark.parametrize("label", _labels())
def test_every_operation_keeps_its_contract(
    label: str, tracker: Tracker, served_schema: Any
) -> None:
    operation = next(r.ok() for r in served_schema.get_all_operations() if r.ok().label == label)
    headers = {}
    if operation.method.upper() != "GET":
        headers["Authorization"] = f"Bearer {tracker.tokens['dev']}"

    @given(operation.as_strategy())
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[Phase.explicit, Phase.generate],
    )
    def check(case: Any) -> None:
        case.call_and_validate(
            base_url=tracker.url, headers=headers, excluded_checks=[positive_data_acceptance]
        )

    check()
