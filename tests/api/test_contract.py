"""Property-based tests generated from api/openapi.yaml (schemathesis): every response of the
real server, over real chDB, Redis and Kafka, keeps the document's statuses, content types and
schemas, and no request makes it fail."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import openapi_document
from tests.api.conftest import Keys, bearer

pytestmark = pytest.mark.integration

schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_api_keeps_its_openapi_contract(
    case: schemathesis.Case, api_url: str, keys: Keys
) -> None:
    key = keys.platform_ingest if case.path == "/v1/events" else keys.acme
    case.call_and_validate(
        base_url=api_url,
        headers=bearer(key),
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
